"""Dkron jobs as Pulumi resources: the ``DkronJob`` dynamic provider.

A job is written through whichever node answers (Dkron forwards writes to the
leader), retried with backoff until ``timeout_s``, so a write issued while the
leader is being replaced lands once a new one is elected. After a write the
job is read back and every field we manage is compared with what was sent:
Dkron ignores JSON fields it does not know (``starts_at`` before 4.0.9), and a
silently dropped setting must fail the deployment, not hide in the state.

State and diffs:

- Inputs: ``api_urls`` (every node's API base URL), ``job`` (the
  ``POST /v1/jobs`` body built by ``components.jobs.job_payload``) and
  ``timeout_s``. Outputs add what the server computes (``status``, ``next``,
  ``success_count``, ``error_count``, ``last_success``, ``last_error``);
  those never cause a diff.
- ``diff`` compares the managed job fields after filling in Dkron's defaults
  on both sides (``concurrency`` "allow", empty strings and maps, ``retries``
  0, times as UTC instants), so what Dkron echoes back never shows as a
  change. A new ``job.name`` is a new job: replace.
- ``api_urls`` or ``timeout_s`` changing alone is an update that writes
  nothing to Dkron: the state must hold the current URLs, because ``delete``
  and ``read`` only have the state to go by.
- ``read`` (``pulumi refresh``) returns the live job as both outputs and
  inputs, so an edit made outside Pulumi shows up as a diff and the next
  ``pulumi up`` writes the declared job back. A job that is gone is reported
  with an empty ID, and the engine drops it from the state. When no node
  answers at all for a few seconds (every container gone or stopped),
  ``read`` keeps the state as it is instead of failing: the same
  ``pulumi up --refresh`` is what brings the nodes back (with their data,
  jobs included), and a refresh that fails would stop it before it starts.

Import: ``pulumi import`` hands ``read`` only the ID. ``read`` then takes the
API URL from ``DKRON_API_URL`` (one URL, or several separated by commas). As of
Pulumi 3.260 the SDK's dynamic provider host fails before it reaches ``read``
on import (it needs the pickled provider from the state; pulumi/pulumi#16175),
so in practice adoption happens through ``create``, which upserts: declaring a
job that already exists in Dkron takes it over.

Secrets: the provider process sees plain values. A job with secret env values
arrives as a secret ``job`` input; the engine marks the ``job`` output secret
again because it has the same name, and no error message here quotes
``executor_config.env``.

Parent jobs: Dkron refuses a job whose parent does not exist yet and a delete
of a job that still has children, so declare a child ``DkronJob`` with
``depends_on`` its parent's resource.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC
from typing import Any, TypeVar

import pulumi
import requests
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components.api_access import authorize_props
from components.dkron_client import DkronClient, DkronError, DkronUnavailable, retry
from components.jobs import JOB_NAME, JobSpec, job_payload, parse_rfc3339
from components.provider_values import is_known, text_map

__all__ = [
    "API_URL_ENV",
    "MANAGED_FIELDS",
    "SERVER_FIELDS",
    "DkronJob",
    "DkronJobError",
    "DkronJobProvider",
    "changed_job_fields",
    "job_from_live",
    "managed_job",
]

T = TypeVar("T")

API_URL_ENV = "DKRON_API_URL"
DEFAULT_TIMEOUT_S = 120

# Job fields the stack declares, with the value Dkron stores when one is left out.
_MANAGED_DEFAULTS: dict[str, Any] = {
    "name": "",
    "displayname": "",
    "schedule": "",
    "timezone": "",
    "owner": "",
    "owner_email": "",
    "disabled": False,
    "tags": {},
    "metadata": {},
    "retries": 0,
    "parent_job": "",
    "concurrency": "allow",
    "executor": "",
    "executor_config": {},
    "processors": {},
    "ephemeral": False,
    "starts_at": None,
    "expires_at": None,
}
MANAGED_FIELDS = tuple(_MANAGED_DEFAULTS)
SERVER_FIELDS = ("status", "next", "success_count", "error_count", "last_success", "last_error")
_TEXT_MAPS = ("tags", "metadata", "executor_config")
_TIMES = ("starts_at", "expires_at")
_BOOLS = ("disabled", "ephemeral")
# Never quoted in messages: may hold secret values.
_REDACTED = ("executor_config.env",)

_READ_BACK_S = 10.0  # how long a follower's replica may lag behind a write
# Reads need no leader: a refresh that reaches no node for this long finds the cluster down.
_REFRESH_UNREACHABLE_S = 5.0
# Once one read found no node answering, the other reads of the same refresh (same
# provider process) try each node once instead of waiting again.
_DOWN_MEMO_S = 60.0
_down_since: dict[tuple[str, ...], float] = {}
_POLL_S = 0.25


# Jobs a `DkronJobSet` has written in this provider process. A stack deployed
# before the job set had one `DkronJob` per job; the update that moves it to
# the set creates the set first and deletes those resources last (the engine
# deletes what the program no longer declares after every other step), and
# all dynamic resources of an update share one provider process.
_handed_over: set[str] = set()


def hand_over(names: Iterable[str]) -> None:
    """Note that a job set manages these jobs now (see ``DkronJobProvider.delete``)."""
    _handed_over.update(names)


class DkronJobError(RuntimeError):
    """A job operation failed in a way retrying will not fix."""


# --- normalising and comparing jobs ------------------------------------------------


def _instant(value: Any) -> str | None:
    """An RFC3339 time as a canonical UTC string (Dkron stores times in UTC)."""
    if value in (None, ""):
        return None
    try:
        return parse_rfc3339(str(value)).astimezone(UTC).isoformat()
    except ValueError:
        return str(value)


def managed_job(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The managed fields of a job body or of Dkron's answer, defaults filled in.

    Two jobs Dkron treats alike compare equal: missing and empty values, maps
    that Dkron returns as null, ints that come back from the engine as floats,
    times written with another offset.
    """
    job = job or {}
    out: dict[str, Any] = {}
    for field, default in _MANAGED_DEFAULTS.items():
        value = job.get(field)
        if field in _TEXT_MAPS:
            out[field] = text_map(value)
        elif field == "processors":
            out[field] = {str(name): text_map(conf) for name, conf in (value or {}).items()}
        elif field in _TIMES:
            out[field] = _instant(value)
        elif field in _BOOLS:
            out[field] = bool(value)
        elif field == "retries":
            out[field] = int(value or 0)
        else:
            out[field] = str(value) if value else default
    return out


def _leaves(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(path, value) for each value; an empty map is a value of its own."""
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            yield from _leaves(f"{prefix}.{key}", value[key])
    else:
        yield prefix, value


def changed_job_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Paths (``job.schedule``, ``job.tags.python``) of managed values that differ."""
    before = dict(_leaves("job", managed_job(old)))
    after = dict(_leaves("job", managed_job(new)))
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def job_from_live(live: Mapping[str, Any], declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A job body describing the live job, for ``read``'s inputs.

    Fields that match ``declared`` (the body in the state) keep its spelling,
    so a refresh without drift leaves the state as it was; others take the
    live value. Defaults are left out, like ``job_payload`` does.
    """
    live_fields = managed_job(live)
    declared = declared or {}
    declared_fields = managed_job(declared)
    body: dict[str, Any] = {}
    for field, value in live_fields.items():
        if value == declared_fields[field] and field in declared:
            body[field] = declared[field]
        elif value != _MANAGED_DEFAULTS[field] or field in ("name", "executor"):
            body[field] = live.get(field) if field in _TIMES else value
    return body


def mismatch_message(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> str:
    parts = []
    sent_leaves = dict(_leaves("job", managed_job(sent)))
    stored_leaves = dict(_leaves("job", managed_job(stored)))
    for path in changed_job_fields(sent, stored):
        if path in _REDACTED:
            parts.append(f"{path} differs")
        else:
            parts.append(f"{path}: sent {sent_leaves.get(path)!r}, stored {stored_leaves.get(path)!r}")
    return "; ".join(parts)


# --- talking to the cluster ----------------------------------------------------------


def api_urls_of(props: Mapping[str, Any]) -> list[str]:
    """The API URLs a provider's inputs name; their credentials (``api_auth``) are used for
    every call to them from now on (`components.api_access.authorize`)."""
    authorize_props(props)
    urls = [str(url) for url in props.get("api_urls") or []]
    if not urls:
        urls = [url.strip() for url in os.environ.get(API_URL_ENV, "").split(",") if url.strip()]
    if not urls:
        raise DkronJobError(
            f"no Dkron API URL: the resource state has no api_urls and {API_URL_ENV} is not set"
            " (set it to a node's API, e.g. http://127.0.0.1:8081)"
        )
    return urls


def timeout_of(props: Mapping[str, Any]) -> float:
    return float(props.get("timeout_s") or DEFAULT_TIMEOUT_S)


def on_any_node(
    urls: Sequence[str],
    action: Callable[[DkronClient], T],
    client_for: Callable[[str], DkronClient] | None = None,
) -> T:
    """``action`` on the first node that answers; the last failure if none does.

    Connection failures and 5xx answers move on to the next node; a 4xx answer
    is final. ``retry`` around this rides out a leader election. Each call
    makes and closes its own clients, unless ``client_for`` lends them.
    """
    last: Exception | None = None
    for url in urls:
        client = client_for(url) if client_for else DkronClient(url)
        try:
            return action(client)
        except DkronError as err:
            if not err.retryable:
                raise
            last = err
        except (requests.ConnectionError, requests.Timeout) as err:
            last = err
        finally:
            if client_for is None:
                client.close()
    assert last is not None
    raise last


def _server_fields(live: Mapping[str, Any] | None) -> dict[str, Any]:
    live = live or {}
    return {field: live.get(field) for field in SERVER_FIELDS}


def _get(urls: Sequence[str], name: str, timeout_s: float) -> dict[str, Any] | None:
    return retry(
        f"reading Dkron job {name!r}",
        lambda: on_any_node(urls, lambda client: client.get_job(name)),
        timeout_s=timeout_s,
    )


def _refresh_get(urls: Sequence[str], name: str, timeout_s: float) -> dict[str, Any] | None:
    """``_get`` for ``read``: DkronUnavailable soon when no node answers (see the module docstring)."""
    key = tuple(sorted(urls))
    down_at = _down_since.get(key)
    recently_down = down_at is not None and time.monotonic() - down_at < _DOWN_MEMO_S
    try:
        live = _get(urls, name, 0.0 if recently_down else min(timeout_s, _REFRESH_UNREACHABLE_S))
    except DkronUnavailable:
        _down_since[key] = time.monotonic()
        raise
    _down_since.pop(key, None)
    return live


def send_job(client: DkronClient, job: Mapping[str, Any], missing_parent: str) -> str:
    """Upsert ``job`` through ``client``; the node's URL.

    A refusal that asking again would only repeat (4xx) becomes ``DkronJobError``;
    ``missing_parent`` says what to do when Dkron lacks the job's parent.
    """
    name = str(job["name"])
    try:
        client.upsert_job(dict(job))
    except DkronError as err:
        if err.status == 404 and job.get("parent_job"):
            raise DkronJobError(
                f"Dkron has no parent job {job['parent_job']!r} for job {name!r}; create the parent"
                f" first ({missing_parent})"
            ) from err
        if not err.retryable:
            raise DkronJobError(f"Dkron refused job {name!r}: {err}") from err
        raise
    return client.base_url


def _write(urls: Sequence[str], job: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """Upsert ``job`` and return it as Dkron stored it."""
    name = str(job["name"])
    deadline = time.monotonic() + timeout_s

    def upsert(client: DkronClient) -> str:
        return send_job(client, job, "declare the child with depends_on its parent's DkronJob")

    writer = retry(f"writing Dkron job {name!r}", lambda: on_any_node(urls, upsert), timeout_s=timeout_s)
    # Read back from the node that took the write first: it forwarded the write
    # to the leader, and its replica catches up within moments.
    readers = [writer, *(url for url in urls if url.rstrip("/") != writer)]
    read_until = min(deadline, time.monotonic() + _READ_BACK_S)
    while True:
        remaining = max(deadline - time.monotonic(), 1.0)
        live = _get(readers, name, remaining)
        if live is not None and managed_job(live) == managed_job(job):
            return live
        if time.monotonic() >= read_until:
            break
        time.sleep(_POLL_S)
    if live is None:
        raise DkronJobError(f"Dkron accepted job {name!r} but does not return it on {writer}")
    raise DkronJobError(
        f"Dkron stored job {name!r} differently from what was sent ({mismatch_message(job, live)});"
        " this Dkron version may not support one of these fields"
    )


def delete_job(urls: Sequence[str], name: str, timeout_s: float) -> None:
    """Delete the job; a job that is already gone is fine."""

    def delete(client: DkronClient) -> None:
        if client.delete_job(name):
            return
        # Dkron answers 404 to any failed delete, not only a missing job.
        live = client.get_job(name)
        if live is None:
            return
        children = live.get("dependent_jobs") or []
        if children:
            raise DkronJobError(
                f"Dkron will not delete job {name!r} while jobs depend on it ({', '.join(children)});"
                " delete them first (declare children with depends_on their parent's DkronJob)"
            )
        raise DkronError(f"DELETE of job {name!r} on {client.base_url} failed (no leader?)", 503)

    retry(f"deleting Dkron job {name!r}", lambda: on_any_node(urls, delete), timeout_s=timeout_s)


# --- the provider ---------------------------------------------------------------------


def wire_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job body as Dkron's JSON decoder takes it.

    Numbers reach the provider process as floats (the engine's wire format has
    no ints), and Dkron refuses ``"retries": 2.0`` for its uint field.
    """
    return {
        field: int(value) if isinstance(value, float) and value.is_integer() else value
        for field, value in job.items()
    }


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "api_urls": api_urls_of(props),
        "job": wire_job(props["job"]),
        "timeout_s": int(timeout_of(props)),
        **auth_of(props),
    }


def auth_of(props: Mapping[str, Any]) -> dict[str, Any]:
    """The API's credentials as the inputs hold them, kept in the outputs: a deletion, which
    sees only the outputs, calls the API with them."""
    return {"api_auth": props["api_auth"]} if props.get("api_auth") else {}


class DkronJobProvider(ResourceProvider):
    """CRUD for one Dkron job; the resource ID is the job name."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        job = news.get("job")
        if is_known(job):
            name = job.get("name") if isinstance(job, Mapping) else None
            if not isinstance(name, str) or not JOB_NAME.match(name):
                failures.append(
                    CheckFailure(
                        "job", "must be a job body with a name of lowercase letters, digits, '_', '-'"
                    )
                )
        urls = news.get("api_urls")
        if is_known(urls) and (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in urls)
        ):
            failures.append(CheckFailure("api_urls", "must be a non-empty list of http(s):// base URLs"))
        timeout = news.get("timeout_s")
        if is_known(timeout) and not (isinstance(timeout, int | float) and timeout > 0):
            failures.append(CheckFailure("timeout_s", "must be a positive number of seconds"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old_job, new_job = olds.get("job"), news.get("job")
        if not is_known(new_job):
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        changed = changed_job_fields(old_job, new_job)
        replaces = [path for path in changed if path == "job.name"]
        connection = not is_known(news.get("api_urls")) or (
            sorted(olds.get("api_urls") or []) != sorted(news.get("api_urls") or [])
            or timeout_of(olds) != timeout_of(news)
        )
        return DiffResult(
            changes=bool(changed or connection),
            replaces=replaces,
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = _inputs(props)
        urls, job, timeout = inputs["api_urls"], inputs["job"], inputs["timeout_s"]
        name = str(job["name"])
        existed = _get(urls, name, timeout) is not None
        try:
            live = _write(urls, job, timeout)
        except DkronJobError:
            # Create must leave nothing behind when it fails.
            if not existed:
                delete_job(urls, name, timeout)
            raise
        return CreateResult(name, {**inputs, **_server_fields(live)})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = _inputs(news)
        urls, job, timeout = inputs["api_urls"], inputs["job"], inputs["timeout_s"]
        live = None
        if managed_job(olds.get("job")) == managed_job(job):
            # Connection settings only: nothing to write, unless the job vanished meanwhile.
            live = _get(urls, id_, timeout)
        if live is None:
            live = _write(urls, job, timeout)
        return UpdateResult({**inputs, **_server_fields(live)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if id_ in _handed_over:
            # A `DkronJobSet` of the same update wrote this job and manages it
            # now: dropping this older resource must leave the job in Dkron.
            return
        delete_job(api_urls_of(props), id_, timeout_of(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        urls, timeout = api_urls_of(props), timeout_of(props)
        try:
            live = _refresh_get(urls, id_, timeout)
        except DkronUnavailable:
            if not props.get("job"):
                raise  # an import: there is no state to keep
            # No node answers: keep what the state says (see the module docstring).
            kept = _inputs(props)
            return ReadResult(id_, {**kept, **_server_fields(props)}, kept)
        if live is None:
            return ReadResult(id_="", outs={})
        inputs = {
            "api_urls": urls,
            "job": job_from_live(live, props.get("job")),
            "timeout_s": int(timeout),
        }
        return ReadResult(id_, {**inputs, **_server_fields(live)}, inputs)


class DkronJob(Resource, module="dkron", name="DkronJob"):
    """A Dkron job, kept as the stack declares it.

    ``secret_env`` holds the resolved values of ``job.secret_env`` (env var name
    -> secret Output); with any, the whole ``job`` input and output are secrets.
    """

    api_urls: pulumi.Output[list[str]]
    job: pulumi.Output[dict[str, Any]]
    timeout_s: pulumi.Output[int]
    status: pulumi.Output[str]
    next: pulumi.Output[str]
    success_count: pulumi.Output[int]
    error_count: pulumi.Output[int]
    last_success: pulumi.Output[str | None]
    last_error: pulumi.Output[str | None]

    def __init__(
        self,
        resource_name: str,
        job: JobSpec,
        api_urls: pulumi.Input[Sequence[pulumi.Input[str]]],
        timeout_s: int = DEFAULT_TIMEOUT_S,
        secret_env: Mapping[str, pulumi.Output[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        missing = sorted(set(job.secret_env) - set(secret_env or {}))
        if missing:
            raise ValueError(f"job {job.name!r}: no secret value given for env {', '.join(missing)}")
        body: pulumi.Input[dict[str, Any]]
        if job.secret_env:
            values = pulumi.Output.all(**{var: (secret_env or {})[var] for var in job.secret_env})
            body = pulumi.Output.secret(values.apply(lambda resolved: job_payload(job, resolved)))
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["job"])
            )
        else:
            body = job_payload(job)
        props: dict[str, Any] = {
            "api_urls": api_urls,
            "job": body,
            "timeout_s": timeout_s,
            **dict.fromkeys(SERVER_FIELDS),
        }
        super().__init__(DkronJobProvider(), resource_name, props, opts)
