"""One Dkron job as a stack declares it: ``JobSpec`` and the checks of its fields.

A job is checked against what Dkron 4 itself accepts (``dkron/job.go``
``Validate``, the shell and http executors) and against what the node image
has: an executor or processor plugin it lacks is an error, not a job that
silently never runs. Rules across jobs and against the cluster are in
``components.jobs.loading``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from components.config_errors import Problem, StackConfigError, raise_problems
from nodeside.catchup import OFF_KEY as CATCH_UP_OFF_KEY
from nodeside.catchup import WINDOW_KEY as CATCH_UP_WINDOW_KEY
from nodeside.schedule import (
    ALLOWED_SCHEDULES,
    check_schedule,
    check_zone,
    go_duration_seconds,
    parse_rfc3339,
)

__all__ = [
    "AVAILABLE_EXECUTORS",
    "AVAILABLE_PROCESSORS",
    "HTTP_CONFIG_KEYS",
    "JOB_NAME",
    "PLUGIN_EXECUTORS",
    "PLUGIN_PROCESSORS",
    "SHELL_CONFIG_KEYS",
    "JobConfigError",
    "JobSpec",
]

JOB_NAME = re.compile(r"^[a-z0-9_-]+$")

# Built into the dkron binary; every other executor and every processor is a
# separate dkron-executor-* / dkron-processor-* binary the node image lacks.
AVAILABLE_EXECUTORS = ("shell", "http")
PLUGIN_EXECUTORS = ("gcppubsub", "grpc", "kafka", "nats", "rabbitmq")
AVAILABLE_PROCESSORS: tuple[str, ...] = ()
PLUGIN_PROCESSORS = ("files", "fluent", "log", "syslog")

SHELL_CONFIG_KEYS = ("command", "shell", "env", "cwd", "timeout", "mem_limit", "payload", "su")
HTTP_CONFIG_KEYS = (
    "method",
    "url",
    "headers",
    "body",
    "timeout",
    "expectCode",
    "expectBody",
    "debug",
    "tlsNoVerifyPeer",
    "tlsCertificateFile",
    "tlsCertificateKeyFile",
    "tlsRootCAsFile",
)
_REQUIRED_CONFIG = {"shell": ("command",), "http": ("method", "url")}
_ALLOWED_CONFIG = {"shell": SHELL_CONFIG_KEYS, "http": HTTP_CONFIG_KEYS}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONFIG_KEY_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_TAG_COUNT = re.compile(r"^[1-9][0-9]*$")
_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


class JobConfigError(StackConfigError):
    """The stack's jobs are invalid; ``problems`` holds one line per problem."""


def _scalar_text(value: Any) -> Any:
    """YAML scalars as the strings Dkron stores (true -> 'true', 30 -> '30')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _text_values(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _scalar_text(item) for key, item in value.items()}
    return value


class JobSpec(BaseModel):
    """One Dkron job: the fields of Dkron 4's job API plus ``secret_env``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique job name: lowercase letters, digits, '_' and '-'.")
    displayname: str = Field(default="", description="Shown instead of the name in the UI.")
    schedule: str = Field(
        default="",
        description="When to run; may be empty only for a job with a parent_job (Dkron ignores it then).",
    )
    timezone: str = Field(
        default="", description="IANA zone the schedule is evaluated in; empty = the server's."
    )
    owner: str = Field(default="", description="Who owns the job.")
    owner_email: str = Field(default="", description="Owner's email address, for notifications.")
    disabled: bool = Field(default=False, description="A disabled job is kept but never runs.")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Node tags the job runs on; 'value:N' runs it on N of the matching nodes.",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Free-form labels the API can filter jobs by."
    )
    retries: int = Field(default=0, ge=0, description="Re-runs of a failed execution, on the same node.")
    parent_job: str = Field(
        default="", description="Run after this job (declared in the same stack) succeeds."
    )
    concurrency: Literal["allow", "forbid"] = Field(
        default="allow", description="'forbid' skips a run while the previous one is still running."
    )
    executor: str = Field(description=f"What runs the job: {' or '.join(AVAILABLE_EXECUTORS)}.")
    executor_config: dict[str, str] = Field(
        default_factory=dict, description="The executor's settings (shell: command, env, ...)."
    )
    processors: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Execution output processors and their settings."
    )
    ephemeral: bool = Field(default=False, description="Delete the job after its first success.")
    starts_at: str | None = Field(
        default=None, description="RFC3339 time before which the job does not run (Dkron 4.0.9+)."
    )
    expires_at: str | None = Field(
        default=None, description="RFC3339 time after which the job no longer runs."
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Shell env var name -> name of a Pulumi secret config key holding its value.",
    )

    # Where the job was declared (``cluster.jobs[2]`` or a file), for messages.
    _source: str = PrivateAttr(default="")

    @field_validator("executor_config", "tags", "metadata", mode="before")
    @classmethod
    def _yaml_scalars(cls, value: Any) -> Any:
        return _text_values(value)

    @field_validator("processors", mode="before")
    @classmethod
    def _processor_scalars(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: {} if conf is None else _text_values(conf) for key, conf in value.items()}
        return value

    @field_validator("timezone", mode="before")
    @classmethod
    def _no_zone(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.match(value):
            raise ValueError("must be 1 or more lowercase letters, digits, '_' or '-' (Dkron's rule)")
        return value

    @field_validator("parent_job")
    @classmethod
    def _parent_name(cls, value: str) -> str:
        if value and not JOB_NAME.match(value):
            raise ValueError("must be a job name: lowercase letters, digits, '_' or '-'")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value:
            check_zone(value, "time zone")
        return value

    @field_validator("owner_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not _EMAIL.match(value):
            raise ValueError("must be an email address like ops@example.com")
        return value

    @field_validator("metadata")
    @classmethod
    def _catch_up_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if value.get(CATCH_UP_OFF_KEY, "on").lower() not in ("on", "off", "true", "false", "yes", "no"):
            raise ValueError(f"{CATCH_UP_OFF_KEY!r} must be 'off' (no catch-up for this job) or 'on'")
        window = value.get(CATCH_UP_WINDOW_KEY)
        if window is not None and (go_duration_seconds(window) or 0) < 1:
            raise ValueError(
                f"{CATCH_UP_WINDOW_KEY!r} must be a Go duration of at least 1s, such as 30m or 6h"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            target, sep, count = tag.partition(":")
            if not key or not target or (sep and not _TAG_COUNT.match(count)):
                raise ValueError(
                    f"tag {key!r}: {tag!r} must be 'value' (every matching node runs the job) or"
                    " 'value:N' with a whole N >= 1 (N of the matching nodes run it)"
                )
        return value

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value not in AVAILABLE_EXECUTORS:
            raise ValueError(
                f"unknown or unavailable executor; available: {', '.join(AVAILABLE_EXECUTORS)}"
                f" ({', '.join(PLUGIN_EXECUTORS)} are separate plugin binaries the node image does not have)"
            )
        return value

    @field_validator("processors")
    @classmethod
    def _processors(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unavailable = sorted(set(value) - set(AVAILABLE_PROCESSORS))
        if unavailable:
            available = ", ".join(AVAILABLE_PROCESSORS) or "none"
            raise ValueError(
                f"processor {unavailable[0]!r} is not installed; available: {available} ("
                f"{', '.join(PLUGIN_PROCESSORS)} are separate dkron-processor-* binaries; Dkron would skip"
                " a missing one silently)"
            )
        return value

    @field_validator("starts_at", "expires_at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rfc3339(value)
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, str]) -> dict[str, str]:
        for var, key in value.items():
            if not _ENV_NAME.match(var):
                raise ValueError(f"{var!r} must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if not _CONFIG_KEY_NAME.match(key):
                raise ValueError(f"{var!r}: {key!r} must be the name of a Pulumi secret config key")
        return value

    @model_validator(mode="after")
    def _job_rules(self) -> JobSpec:
        raise_problems(self._rule_problems())
        return self

    def _rule_problems(self) -> Iterator[Problem]:
        if self.parent_job == self.name:
            yield Problem("parent_job", self.parent_job, "a job cannot be its own parent")
        if self.schedule or not self.parent_job:
            if not self.schedule:
                yield Problem(
                    "schedule",
                    self.schedule,
                    (
                        "is required (only a job with a parent_job may leave it empty);"
                        f" allowed: {ALLOWED_SCHEDULES}"
                    ),
                )
            else:
                try:
                    check_schedule(self.schedule, self.name)
                except ValueError as err:
                    yield Problem("schedule", self.schedule, str(err))
        yield from self._config_problems()
        if self.secret_env and self.executor != "shell":
            yield Problem(
                "secret_env", self.secret_env, "only a shell job has an environment to put secrets in"
            )
        clashing = sorted(set(self.secret_env) & _env_names(self.executor_config.get("env", "")))
        if clashing:
            yield Problem(
                f"secret_env.{clashing[0]}",
                self.secret_env[clashing[0]],
                ("is also set in executor_config.env; set each variable in one place"),
            )
        if (
            self.starts_at
            and self.expires_at
            and parse_rfc3339(self.expires_at) <= parse_rfc3339(self.starts_at)
        ):
            yield Problem("expires_at", self.expires_at, f"must be after starts_at ({self.starts_at})")

    def _config_problems(self) -> Iterator[Problem]:
        config = self.executor_config
        allowed = _ALLOWED_CONFIG[self.executor]
        for key in config:
            if key not in allowed:
                yield Problem(
                    f"executor_config.{key}",
                    config[key],
                    (f"unknown {self.executor} executor setting; allowed: {', '.join(allowed)}"),
                )
        for key in _REQUIRED_CONFIG[self.executor]:
            if not config.get(key, "").strip():
                yield Problem(
                    f"executor_config.{key}",
                    config.get(key),
                    f"is required for the {self.executor} executor",
                )
        checks = _SHELL_CHECKS if self.executor == "shell" else _HTTP_CHECKS
        for key, check in checks.items():
            if config.get(key):
                try:
                    check(config[key])
                except ValueError as err:
                    yield Problem(f"executor_config.{key}", config[key], str(err))


def _env_pairs(env: str) -> dict[str, str]:
    """``K=V,K2=V2`` as Dkron's shell executor splits it (on every comma)."""
    pairs: dict[str, str] = {}
    if not env:
        return pairs
    for entry in env.split(","):
        name, sep, value = entry.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise ValueError(
                f"entry {entry!r} is not NAME=value; Dkron splits env on every comma, so a value cannot"
                " contain ',' (pass such a value another way, e.g. in the command or a file)"
            )
        pairs[name] = value
    return pairs


def _env_names(env: str) -> set[str]:
    """Variable names set in ``env``, skipping malformed entries (reported elsewhere)."""
    return {entry.partition("=")[0] for entry in env.split(",") if "=" in entry}


def _check_env(env: str) -> None:
    _env_pairs(env)


def _check_duration(text: str) -> None:
    if go_duration_seconds(text) is None:
        raise ValueError("must be a Go duration such as 30s, 5m or 1h30m")


def _check_bool(text: str) -> None:
    if text not in _GO_BOOLS:
        raise ValueError("must be true or false")


def _check_base64(text: str) -> None:
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("must be base64 (Dkron decodes it and writes it to the command's stdin)") from None


def _check_seconds(text: str) -> None:
    if not text.isdigit():
        raise ValueError("must be a whole number of seconds")


def _check_headers(text: str) -> None:
    try:
        headers = json.loads(text)
    except json.JSONDecodeError:
        headers = None
    if not isinstance(headers, list) or not all(isinstance(h, str) and ":" in h for h in headers):
        raise ValueError('must be a JSON list of "Name: value" strings, e.g. ["Accept: application/json"]')


def _check_codes(text: str) -> None:
    if not all(code.strip().isdigit() for code in text.split(",")):
        raise ValueError("must be an HTTP status code or a comma-separated list of them, e.g. 200,201")


def _check_url(text: str) -> None:
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError("must be an http:// or https:// URL")


_SHELL_CHECKS = {
    "env": _check_env,
    "timeout": _check_duration,
    "shell": _check_bool,
    "payload": _check_base64,
}
_HTTP_CHECKS = {
    "url": _check_url,
    "headers": _check_headers,
    "timeout": _check_seconds,
    "expectCode": _check_codes,
    "tlsNoVerifyPeer": _check_bool,
}
