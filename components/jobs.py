"""Dkron jobs as a stack declares them: the spec, its validation, the API body.

Pure code: no Pulumi, no network. A job is checked here, before anything is
sent, against what Dkron 4 itself accepts (``dkron/job.go`` ``Validate``, the
``extcron`` schedule parser over robfig/cron v3, the shell and http executors)
and against what makes a job useful on this cluster: a job whose tags match no
node, or that names an executor or processor plugin the node image does not
have, could never run, and is an error.

Every problem is one line naming the stack, where the job was declared
(``cluster.jobs[i]`` or the job file), the field, the bad value and what is
allowed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from components.spec import ClusterSpec

__all__ = [
    "AVAILABLE_EXECUTORS",
    "AVAILABLE_PROCESSORS",
    "HTTP_CONFIG_KEYS",
    "JOB_NAME",
    "SHELL_CONFIG_KEYS",
    "JobConfigError",
    "JobSpec",
    "check_schedule",
    "cluster_node_tags",
    "go_duration_seconds",
    "job_payload",
    "load_jobs",
    "parse_rfc3339",
    "validate_jobs",
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

# First Dkron release that stores starts_at; older servers drop it silently.
_STARTS_AT_SINCE = (4, 0, 9)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONFIG_KEY_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_TAG_COUNT = re.compile(r"^[1-9][0-9]*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
_MAX_SHOWN_VALUE = 120

# --- schedules -------------------------------------------------------------------

# Handled by robfig/cron (so they also take a TZ= prefix).
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Handled by Dkron before robfig sees the spec: exact matches only, no TZ= prefix.
_DKRON_DESCRIPTORS = ("@minutely", "@manually")
_ALLOWED_SCHEDULES = (
    "6-field cron with seconds first ('0 30 2 * * *'), "
    f"{', '.join(_CRON_DESCRIPTORS + _DKRON_DESCRIPTORS)}, "
    "'@every <duration>' ('@every 1m30s'), '@at <RFC3339 time>', "
    "optionally prefixed by 'TZ=<zone> ' or 'CRON_TZ=<zone> '"
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: Mapping[str, int] | None = None

    def allowed(self) -> str:
        text = f"{self.low}-{self.high}"
        if self.names:
            names = list(self.names)
            text += f" or {names[0].upper()}-{names[-1].upper()}"
        return text


_FIELDS = (
    _CronField("seconds", 0, 59),
    _CronField("minutes", 0, 59),
    _CronField("hours", 0, 23),
    _CronField("day-of-month", 1, 31),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 0, 6, _WEEKDAYS),
)


def check_schedule(schedule: str, job_name: str) -> None:
    """Raise ValueError unless Dkron 4 accepts ``schedule`` for job ``job_name``.

    ``~`` is replaced the way Dkron does it (a value derived from the job's
    name, per field) before the fields are checked, so a hash that lands out
    of range here would also be refused by Dkron.
    """
    if schedule != schedule.strip():
        raise ValueError("must not start or end with spaces")
    if schedule in _DKRON_DESCRIPTORS:
        return
    if schedule.startswith("@at "):
        try:
            parse_rfc3339(schedule.removeprefix("@at "))
        except ValueError as err:
            raise ValueError(
                f"'@at' needs an RFC3339 time such as '@at 2030-01-31T23:00:00Z': {err}"
            ) from None
        return
    spec = _hashed(schedule, job_name)
    zone_prefix = re.match(r"^(?:CRON_TZ|TZ)=(\S*) +", spec)
    if zone_prefix:
        _check_zone(zone_prefix.group(1), "the TZ= prefix")
        spec = spec[zone_prefix.end() :]
        if spec in _DKRON_DESCRIPTORS or spec.startswith("@at "):
            raise ValueError(
                f"Dkron does not take a TZ= prefix before {spec.split()[0]}; set the job's timezone instead"
            )
    if spec.startswith("@"):
        _check_descriptor(spec)
        return
    fields = spec.split()
    if len(fields) == len(_FIELDS) - 1:
        cron_part = schedule[zone_prefix.end() :] if zone_prefix else schedule
        prefix = schedule[: zone_prefix.end()] if zone_prefix else ""
        names = " ".join(field.name for field in _FIELDS)
        raise ValueError(
            f"is a 5-field cron expression, but Dkron expects 6 fields with seconds first ({names});"
            f" the 6-field equivalent is {prefix + '0 ' + cron_part!r}"
        )
    if len(fields) != len(_FIELDS):
        raise ValueError(f"has {len(fields)} fields; allowed: {_ALLOWED_SCHEDULES}")
    try:
        for field, text in zip(_FIELDS, fields, strict=True):
            _check_cron_field(field, text)
    except ValueError as err:
        if spec != schedule:
            raise ValueError(
                f"{err} (after Dkron replaced '~' with values derived from the job name)"
            ) from None
        raise


def _hashed(schedule: str, job_name: str) -> str:
    """Dkron's ``scheduleHash``: each ``~`` becomes a value derived from the name."""
    if "~" not in schedule:
        return schedule
    name_hash = sum(ord(char) for char in job_name)
    parts = schedule.split(" ")
    index = 0
    for position, part in enumerate(parts):
        if part.startswith("@"):
            return schedule
        if part.startswith(("TZ=", "CRON_TZ=")):
            continue
        if "~" in part:
            value = {
                2: name_hash % 24,
                3: name_hash % 28 + 1,
                4: name_hash % 12 + 1,
                5: name_hash % 7,
            }.get(index, name_hash % 60)
            parts[position] = part.replace("~", str(value))
        index += 1
    return " ".join(parts)


def _check_descriptor(spec: str) -> None:
    if spec in _CRON_DESCRIPTORS:
        return
    if spec.startswith("@every "):
        duration = spec.removeprefix("@every ")
        seconds = go_duration_seconds(duration)
        if seconds is None:
            raise ValueError(f"'@every' needs a Go duration such as 30s, 1m30s or 2h, not {duration!r}")
        if seconds < 1:
            raise ValueError("'@every' needs a duration of at least 1s (Dkron rounds shorter ones up to 1s)")
        return
    raise ValueError(f"unknown descriptor {spec.split()[0]!r}; allowed: {_ALLOWED_SCHEDULES}")


def _check_cron_field(field: _CronField, text: str) -> None:
    """One cron field as robfig/cron parses it: lists of ranges with steps."""
    for item in text.split(","):
        problem = _cron_item_problem(field, item)
        if problem:
            raise ValueError(
                f"{field.name} field {text!r}: {problem}; allowed: {field.allowed()}, '*', '?', '~',"
                " lists (a,b), ranges (a-b) and steps (*/n, a-b/n)"
            )


def _cron_item_problem(field: _CronField, item: str) -> str | None:
    range_text, _, step_text = item.partition("/")
    if "/" in step_text:
        return f"{item!r} has more than one '/'"
    if range_text in ("*", "?"):
        low, high = field.low, field.high
    else:
        bounds = range_text.split("-")
        if len(bounds) > 2:
            return f"{item!r} has more than one '-'"
        values = [value for value in (_cron_value(field, bound) for bound in bounds) if value is not None]
        if len(values) != len(bounds):
            return f"{item!r} is not a number or name"
        low, high = values[0], values[-1]
        if step_text and len(bounds) == 1:
            high = field.high  # robfig: "a/n" means a-max/n
        if low < field.low or high > field.high:
            return f"{item!r} is out of range"
        if low > high:
            return f"{item!r} starts after it ends"
    if step_text and (not step_text.isdigit() or int(step_text) == 0):
        return f"{item!r} needs a positive whole step"
    return None


def _cron_value(field: _CronField, text: str) -> int | None:
    if field.names and text.lower() in field.names:
        return field.names[text.lower()]
    return int(text) if text.isdigit() else None


def go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration without sign ('1m30s', '2h', '0'); None if invalid."""
    if text == "0":
        return 0.0
    total, position = 0.0, 0
    for match in _GO_DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_DURATION_UNITS_S[match.group(2)]
        position = match.end()
    return total if position == len(text) and text else None


def parse_rfc3339(text: str) -> datetime:
    """An RFC3339 time as Go's time.RFC3339 parses it (offset or Z required)."""
    if not _RFC3339.match(text):
        raise ValueError(
            "must be an RFC3339 time with a zone, e.g. 2030-01-31T23:00:00Z or 2030-01-31T23:00:00+02:00"
        )
    return datetime.fromisoformat(text)


def _check_zone(zone: str, what: str) -> None:
    if zone in ("UTC", "Local"):
        return
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{what} {zone!r} is not a known time zone; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


# --- the job spec ------------------------------------------------------------------


class _Problems(tuple[tuple[str, Any, str], ...]):
    """(field path, value, message) for rules that span several fields."""

    def __str__(self) -> str:
        return "; ".join(f"{path} = {_shown(value)}: {message}" for path, value, message in self)


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
            _check_zone(value, "time zone")
        return value

    @field_validator("owner_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not _EMAIL.match(value):
            raise ValueError("must be an email address like ops@example.com")
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
        problems = _Problems(self._rule_problems())
        if problems:
            raise PydanticCustomError("job_rules", "{problems}", {"problems": problems})
        return self

    def _rule_problems(self) -> Iterator[tuple[str, Any, str]]:
        if self.parent_job == self.name:
            yield "parent_job", self.parent_job, "a job cannot be its own parent"
        if self.schedule or not self.parent_job:
            if not self.schedule:
                yield (
                    "schedule",
                    self.schedule,
                    (
                        "is required (only a job with a parent_job may leave it empty);"
                        f" allowed: {_ALLOWED_SCHEDULES}"
                    ),
                )
            else:
                try:
                    check_schedule(self.schedule, self.name)
                except ValueError as err:
                    yield "schedule", self.schedule, str(err)
        yield from self._config_problems()
        if self.secret_env and self.executor != "shell":
            yield "secret_env", self.secret_env, "only a shell job has an environment to put secrets in"
        clashing = sorted(set(self.secret_env) & _env_names(self.executor_config.get("env", "")))
        if clashing:
            yield (
                f"secret_env.{clashing[0]}",
                self.secret_env[clashing[0]],
                ("is also set in executor_config.env; set each variable in one place"),
            )
        if (
            self.starts_at
            and self.expires_at
            and parse_rfc3339(self.expires_at) <= parse_rfc3339(self.starts_at)
        ):
            yield "expires_at", self.expires_at, f"must be after starts_at ({self.starts_at})"

    def _config_problems(self) -> Iterator[tuple[str, Any, str]]:
        config = self.executor_config
        allowed = _ALLOWED_CONFIG[self.executor]
        for key in config:
            if key not in allowed:
                yield (
                    f"executor_config.{key}",
                    config[key],
                    (f"unknown {self.executor} executor setting; allowed: {', '.join(allowed)}"),
                )
        for key in _REQUIRED_CONFIG[self.executor]:
            if not config.get(key, "").strip():
                yield (
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
                    yield f"executor_config.{key}", config[key], str(err)


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


# --- errors ----------------------------------------------------------------------


class JobConfigError(ValueError):
    """The stack's jobs are invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 3] + "..."


def _line(stack: str, where: str, path: str, value: Any, message: str) -> str:
    return f"stack {stack!r}: {where}.{path} = {_shown(value)}: {message}"


def _location(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            path += f".{part}"
        else:
            path += f"[{part!r}]"
    return path.lstrip(".")


def _validation_lines(stack: str, where: str, exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
        if kind == "job_rules":
            lines.extend(
                _line(stack, where, path, bad, message) for path, bad, message in error["ctx"]["problems"]
            )
        elif kind == "missing":
            lines.append(f"stack {stack!r}: {where}.{_location(loc)}: required setting is missing")
        elif kind == "extra_forbidden":
            allowed = f"unknown job setting; allowed: {', '.join(JobSpec.model_fields)}"
            lines.append(_line(stack, where, _location(loc), value, allowed))
        elif not loc:
            lines.append(f"stack {stack!r}: {where} = {_shown(value)}: a job must be a mapping of settings")
        else:
            message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "must be", 1)
            lines.append(_line(stack, where, _location(loc), value, message))
    return lines


# --- loading and cross-job checks --------------------------------------------------


def _file_jobs(path: str, root: Path) -> list[Any]:
    """The job list in one YAML file: a list, or a mapping with a ``jobs`` list."""
    full = root / path
    try:
        content = yaml.safe_load(full.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read {full}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"is not valid YAML: {str(err).splitlines()[0]}") from None
    if isinstance(content, Mapping) and set(content) == {"jobs"}:
        content = content["jobs"]
    if content is None:
        return []
    if not isinstance(content, list):
        raise ValueError("must hold a list of jobs, or a mapping with one key 'jobs' holding that list")
    return content


def load_jobs(
    stack: str, raw_jobs: Sequence[Mapping[str, Any]], job_files: Sequence[str], root: Path
) -> list[JobSpec]:
    """The stack's jobs: ``cluster.jobs`` inline, then each of ``job_files`` in order.

    Relative file paths are taken from ``root`` (the project directory). Raises
    ``JobConfigError`` listing every problem found in every job.
    """
    sources: list[tuple[str, Any]] = [(f"cluster.jobs[{i}]", raw) for i, raw in enumerate(raw_jobs)]
    problems: list[str] = []
    for file_index, path in enumerate(job_files):
        try:
            entries = _file_jobs(path, root)
        except ValueError as err:
            problems.append(f"stack {stack!r}: cluster.job_files[{file_index}] = {path!r}: {err}")
            continue
        sources.extend((f"{path}: jobs[{i}]", raw) for i, raw in enumerate(entries))
    specs: list[JobSpec] = []
    for where, raw in sources:
        try:
            spec = JobSpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_validation_lines(stack, where, exc))
            continue
        spec._source = where
        specs.append(spec)
    if problems:
        raise JobConfigError(problems)
    return specs


def cluster_node_tags(cluster: ClusterSpec) -> dict[str, dict[str, str]]:
    """Each node's tags as jobs see them: the node's own plus those the agent sets."""
    agent_tags = {
        "role": "dkron",
        "server": "true",
        "dc": cluster.dkron.datacenter,
        "region": cluster.dkron.region,
        "version": cluster.image.dkron_version,
    }
    return {node.name: {**agent_tags, **node.tags} for node in cluster.nodes}


def validate_jobs(
    stack: str,
    jobs: Sequence[JobSpec],
    node_tags: Mapping[str, Mapping[str, str]],
    *,
    dkron_version: str | None = None,
) -> None:
    """Rules across jobs and against the cluster; raises ``JobConfigError``.

    ``node_tags`` maps each node name to the tags jobs can select it by
    (``cluster_node_tags`` adds the ones the agent sets itself). With
    ``dkron_version``, fields that version ignores are errors too.
    """
    where = [job._source or f"cluster.jobs[{i}]" for i, job in enumerate(jobs)]
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if job.name in first:
            problems.append(
                _line(
                    stack,
                    where[i],
                    "name",
                    job.name,
                    f"duplicate job name (also {where[first[job.name]]}); job names must be unique",
                )
            )
        first.setdefault(job.name, i)
    for i, job in enumerate(jobs):
        if job.parent_job and job.parent_job not in first:
            problems.append(
                _line(
                    stack,
                    where[i],
                    "parent_job",
                    job.parent_job,
                    "is not a job of this stack; the stack manages all of its jobs, so a parent must be"
                    f" declared with them (declared: {', '.join(sorted(first)) or 'none'})",
                )
            )
    problems.extend(_cycle_problems(stack, jobs, where))
    problems.extend(_tag_problems(stack, jobs, where, node_tags))
    if dkron_version and _version(dkron_version) < _STARTS_AT_SINCE:
        since = ".".join(map(str, _STARTS_AT_SINCE))
        problems.extend(
            _line(
                stack,
                where[i],
                "starts_at",
                job.starts_at,
                f"needs Dkron {since} or later; this cluster runs {dkron_version}, which ignores it",
            )
            for i, job in enumerate(jobs)
            if job.starts_at
        )
    if problems:
        raise JobConfigError(problems)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3])


def _cycle_problems(stack: str, jobs: Sequence[JobSpec], where: Sequence[str]) -> Iterator[str]:
    """One line per cycle of parent_job links, at the first job declared on it."""
    parent = {job.name: job.parent_job for job in jobs if job.parent_job}
    reported: set[str] = set()
    for i, job in enumerate(jobs):
        chain = [job.name]
        while chain[-1] in parent and parent[chain[-1]] not in chain:
            chain.append(parent[chain[-1]])
        if parent.get(chain[-1]) != job.name or reported & set(chain):
            continue  # no cycle through this job, or already reported
        reported.update(chain)
        loop = " -> ".join([*chain, job.name])
        yield _line(
            stack,
            where[i],
            "parent_job",
            job.parent_job,
            f"parent jobs form a cycle ({loop}); none of them could ever run",
        )


def _tag_problems(
    stack: str, jobs: Sequence[JobSpec], where: Sequence[str], node_tags: Mapping[str, Mapping[str, str]]
) -> Iterator[str]:
    for i, job in enumerate(jobs):
        if not job.tags:
            continue
        wanted = {key: value.partition(":")[0] for key, value in job.tags.items()}
        if any(all(tags.get(key) == value for key, value in wanted.items()) for tags in node_tags.values()):
            continue
        nodes = (
            "; ".join(f"{node} {dict(sorted(tags.items()))}" for node, tags in node_tags.items())
            or "no nodes"
        )
        yield _line(
            stack,
            where[i],
            "tags",
            job.tags,
            "matches no node, and a job that can never run is an error (every tag must equal the"
            f" node's tag, the part before ':' for a count); node tags: {nodes}",
        )


# --- the API body ------------------------------------------------------------------


def job_payload(spec: JobSpec, secret_env_values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON body for ``POST /v1/jobs``: the fields that differ from Dkron's defaults.

    ``secret_env_values`` maps each of ``spec.secret_env``'s variable names to
    its resolved value; they are appended to ``executor_config.env``. Error
    messages never quote a secret value.
    """
    body = spec.model_dump(exclude={"secret_env"}, exclude_defaults=True)
    body["name"] = spec.name
    body["executor"] = spec.executor
    if not spec.secret_env:
        return body
    values = secret_env_values or {}
    missing = sorted(set(spec.secret_env) - set(values))
    if missing:
        raise ValueError(f"job {spec.name!r}: no value for secret env {', '.join(missing)}")
    entries = [body["executor_config"]["env"]] if spec.executor_config.get("env") else []
    for var in spec.secret_env:
        if "," in values[var]:
            raise ValueError(
                f"job {spec.name!r}: the secret for env {var} (config key {spec.secret_env[var]!r}) contains"
                " ',', which Dkron's shell executor cannot pass (it splits env on commas)"
            )
        entries.append(f"{var}={values[var]}")
    body["executor_config"] = {**body.get("executor_config", {}), "env": ",".join(entries)}
    return body
