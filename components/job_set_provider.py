"""All of a stack's Dkron jobs as one resource: the ``DkronJobSet`` dynamic provider.

One resource per job cost one engine step per job, and the local backend
writes the whole checkpoint after every step: 500 jobs took 18x a plain REST
loop. The set is one step whatever the count; inside it, the provider works
per job:

- ``diff`` compares job by job (managed fields, Dkron's defaults filled in,
  as ``components.job_provider.managed_job`` does) and ``update`` writes only
  the jobs that changed and deletes only those no longer declared.
- Writes go out in parallel, one level of the parent tree at a time, parents
  first (Dkron refuses a child whose parent does not exist yet); deletes go
  children first. Every request is retried with backoff until ``timeout_s``,
  so a write issued during a leader election lands once a new leader is in.
- After the writes one ``GET /v1/jobs`` reads every job back and compares
  each with what was sent: a setting Dkron dropped fails the update, naming
  the job and the field.
- ``read`` (refresh) lists the jobs once and puts the live body of each
  managed job in the state, so an edit or delete made outside Pulumi shows
  in the next diff as that job's change, and the next ``up`` writes it back.
  When no node answers for a few seconds, ``read`` keeps the state as it is
  (the same ``up --refresh`` brings stopped nodes back).

State:

- Inputs: ``api_urls``, ``jobs`` (name -> ``POST /v1/jobs`` body),
  ``secret_jobs`` (the same for jobs with secret env values: a secret as a
  whole, so it is encrypted in the state), ``prune_unmanaged`` and
  ``timeout_s``.
- Output ``unmanaged``: each job in Dkron the set does not manage, as a
  digest of its managed fields, as of the last refresh or write. Declaring
  such a job unchanged (``make jobs-export``) is then no change at all; with
  ``prune_unmanaged`` they are deleted. A digest, not the body: a job made by
  hand may carry secrets in its env. Bookkeeping, not something a person acts
  on: it is a secret in the state, and Pulumi shows no diff of a secret
  output, so a refresh that finds 5,000 jobs made by hand prints no line per
  job (the program's summary counts them instead, `components.job_changes`).
  The key and its shape are those of the stacks deployed before: a stack whose
  state holds it in clear takes the secret form at its next update.

A failed update leaves the state as it was before the update; every write is
an upsert and every delete accepts a job already gone, so the next ``up``
does what is left and nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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

from components.dkron_client import DkronClient, DkronError, DkronUnavailable, retry
from components.job_provider import (
    DEFAULT_TIMEOUT_S,
    DkronJobError,
    api_urls_of,
    auth_of,
    changed_job_fields,
    delete_job,
    hand_over,
    job_from_live,
    managed_job,
    mismatch_message,
    on_any_node,
    send_job,
    timeout_of,
    wire_job,
)
from components.jobs import JOB_NAME
from components.provider_values import is_known

__all__ = [
    "SET_ID",
    "DkronJobSet",
    "DkronJobSetProvider",
    "JobSetChanges",
    "digest",
    "job_set_changes",
    "levels",
]

SET_ID = "jobs"
# Requests in flight at once. Dkron's leader appends concurrent writes to its
# Raft log in batches, so parallel writes cost fewer disk syncs than a loop; 16
# wrote 500 jobs fastest here (against 8 and 32), in about a third of a loop's time.
WORKERS = 16
_READ_BACK_S = 10.0
_POLL_S = 0.2
_REFRESH_UNREACHABLE_S = 5.0


# --- what changes ----------------------------------------------------------------------


def digest(job: Mapping[str, Any]) -> str:
    """A short fingerprint of a job's managed fields."""
    canonical = json.dumps(managed_job(job), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def declared(props: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every job of the set, plain and secret, by name."""
    jobs = {str(n): dict(b) for n, b in (props.get("jobs") or {}).items()}
    jobs.update({str(n): dict(b) for n, b in (props.get("secret_jobs") or {}).items()})
    return jobs


class JobSetChanges:
    """What an update of the set does, job by job."""

    def __init__(self, write: dict[str, list[str]], delete: list[str]) -> None:
        self.write = write
        """Jobs to write -> the field paths that change (["(new)"] for a job new to Dkron)."""
        self.delete = delete
        """Jobs the set managed and no longer declares."""

    def __bool__(self) -> bool:
        return bool(self.write or self.delete)


def job_set_changes(olds: Mapping[str, Any], news: Mapping[str, Any]) -> JobSetChanges:
    """Per job: what ``news`` changes against the state ``olds``.

    A job the set did not manage but that Dkron holds exactly as declared (its
    digest in ``olds["unmanaged"]``) is taken over without a write.
    """
    before, after = declared(olds), declared(news)
    unmanaged = olds.get("unmanaged") or {}
    write: dict[str, list[str]] = {}
    for name, body in after.items():
        if name in before:
            fields = changed_job_fields(before[name], body)
            if fields:
                write[name] = fields
        elif unmanaged.get(name) != digest(body):
            write[name] = ["(new)"]
    return JobSetChanges(write, sorted(set(before) - set(after)))


def levels(jobs: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Job names grouped by depth in the parent tree: roots first.

    A parent outside ``jobs`` counts as a root's parent (it exists already or
    Dkron says so). Validation ruled out cycles; one left here is cut.
    """
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str]) -> int:
        if name not in depth:
            parent = str(jobs[name].get("parent_job") or "")
            if parent in jobs and parent not in seen:
                depth[name] = depth_of(parent, seen | {name}) + 1
            else:
                depth[name] = 0
        return depth[name]

    for name in jobs:
        depth_of(name, frozenset({name}))
    grouped: dict[int, list[str]] = {}
    for name in sorted(jobs):
        grouped.setdefault(depth[name], []).append(name)
    return [grouped[d] for d in sorted(grouped)]


# --- talking to the cluster ----------------------------------------------------------------


class _Clients:
    """One Dkron client per node and thread, kept for the whole operation."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[DkronClient] = []
        self._lock = threading.Lock()

    def get(self, url: str) -> DkronClient:
        mine: dict[str, DkronClient] = self._local.__dict__.setdefault("clients", {})
        if url not in mine:
            mine[url] = DkronClient(url, timeout_s=10.0)
            with self._lock:
                self._all.append(mine[url])
        return mine[url]

    def close(self) -> None:
        for client in self._all:
            client.close()


def _list(urls: Sequence[str], timeout_s: float, clients: _Clients) -> dict[str, dict[str, Any]]:
    jobs = retry(
        "listing Dkron jobs",
        lambda: on_any_node(urls, lambda client: client.list_jobs(), clients.get),
        timeout_s=timeout_s,
    )
    return {str(job["name"]): job for job in jobs}


def _write_one(urls: Sequence[str], job: Mapping[str, Any], timeout_s: float, clients: _Clients) -> None:
    def upsert(client: DkronClient) -> str:
        return send_job(client, job, "declare the parent in this stack")

    retry(
        f"writing Dkron job {job['name']!r}",
        lambda: on_any_node(urls, upsert, clients.get),
        timeout_s=timeout_s,
    )


def _in_parallel(names: Sequence[str], action: Callable[[str], None]) -> dict[str, Exception]:
    """``action`` for every name, WORKERS at a time; the failures by name."""
    failures: dict[str, Exception] = {}

    def one(name: str) -> None:
        try:
            action(name)
        except Exception as err:  # noqa: BLE001 - every failure is reported below
            failures[name] = err

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(one, names))
    return failures


def _raise_failures(what: str, failures: Mapping[str, Exception]) -> None:
    if not failures:
        return
    names = sorted(failures)
    lines = [f"{name}: {failures[name]}" for name in names[:10]]
    more = f"\n  ... and {len(names) - 10} more" if len(names) > 10 else ""
    raise DkronJobError(f"{what} failed for {len(names)} job(s):\n  " + "\n  ".join(lines) + more)


class _Session:
    """One operation's connection to the cluster: URLs, deadline, clients."""

    def __init__(self, props: Mapping[str, Any]) -> None:
        self.urls = api_urls_of(props)
        self.timeout_s = timeout_of(props)
        self.clients = _Clients()

    def leader_first(self) -> None:
        """Ask the leader first: a follower forwards each write to it, one more hop."""
        for url in self.urls:
            with (
                DkronClient(url, timeout_s=2.0) as client,
                contextlib.suppress(DkronError, requests.RequestException),
            ):
                if client.is_leader():
                    self.urls = [url, *(u for u in self.urls if u != url)]
                    return

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.clients.close()

    def live(self, timeout_s: float | None = None) -> dict[str, dict[str, Any]]:
        return _list(self.urls, self.timeout_s if timeout_s is None else timeout_s, self.clients)

    def write(self, jobs: Mapping[str, Mapping[str, Any]]) -> None:
        """Write ``jobs``, a level of the parent tree at a time, parents first."""
        for level in levels(jobs):
            failures = _in_parallel(
                level, lambda name: _write_one(self.urls, jobs[name], self.timeout_s, self.clients)
            )
            _raise_failures("writing Dkron jobs", failures)

    def delete(self, names: Sequence[str], bodies: Mapping[str, Mapping[str, Any]]) -> None:
        """Delete ``names``, children first (``bodies`` tell who is whose parent)."""
        tree = {name: bodies.get(name) or {} for name in names}
        for level in reversed(levels(tree)):
            failures = _in_parallel(level, lambda name: delete_job(self.urls, name, self.timeout_s))
            _raise_failures("deleting Dkron jobs", failures)

    def read_back(self, written: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The live jobs once every written job reads back as sent (a follower may lag)."""
        until = time.monotonic() + _READ_BACK_S
        while True:
            live = self.live()
            wrong = {
                name: job for name, job in written.items() if managed_job(live.get(name)) != managed_job(job)
            }
            if not wrong or time.monotonic() >= until:
                break
            time.sleep(_POLL_S)
        problems = []
        for name in sorted(wrong):
            if name not in live:
                problems.append(f"{name}: Dkron accepted it but does not return it")
            else:
                problems.append(
                    f"{name}: stored differently from what was sent ({mismatch_message(wrong[name], live[name])});"
                    " this Dkron version may not support one of these fields"
                )
        if problems:
            raise DkronJobError("Dkron jobs not stored as declared:\n  " + "\n  ".join(problems))
        return live


def _unmanaged(live: Mapping[str, Mapping[str, Any]], managed: Mapping[str, Any]) -> dict[str, str]:
    return {name: digest(job) for name, job in sorted(live.items()) if name not in managed}


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "api_urls": api_urls_of(props),
        "jobs": {str(n): wire_job(b) for n, b in (props.get("jobs") or {}).items()},
        "secret_jobs": {str(n): wire_job(b) for n, b in (props.get("secret_jobs") or {}).items()},
        "prune_unmanaged": bool(props.get("prune_unmanaged")),
        "timeout_s": int(timeout_of(props)),
        **auth_of(props),
    }


def _apply(
    session: _Session,
    inputs: Mapping[str, Any],
    write: Sequence[str],
    delete: Sequence[str],
    olds: Mapping[str, Any],
) -> dict[str, str]:
    """Writes, then deletes, then (with ``prune_unmanaged``) the prune; the ``unmanaged`` output."""
    jobs = declared(inputs)
    to_write = {name: jobs[name] for name in write}
    session.write(to_write)
    # Written first: a job moving to a new parent leaves the old one before it goes.
    session.delete(delete, declared(olds))
    hand_over(jobs)
    live = session.read_back(to_write)
    if inputs["prune_unmanaged"]:
        extra = sorted(set(live) - set(jobs))
        if extra:
            session.delete(extra, live)
            live = {name: job for name, job in live.items() if name not in extra}
    return _unmanaged(live, jobs)


class DkronJobSetProvider(ResourceProvider):
    """CRUD for every job of a stack at once; the resource ID is ``SET_ID``."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        seen: set[str] = set()
        for field in ("jobs", "secret_jobs"):
            jobs = news.get(field)
            if not is_known(jobs):
                continue
            if not isinstance(jobs, Mapping):
                failures.append(CheckFailure(field, "must be a map of job name -> job body"))
                continue
            for name, body in jobs.items():
                if not JOB_NAME.match(str(name)) or not isinstance(body, Mapping) or body.get("name") != name:
                    failures.append(
                        CheckFailure(field, f"{name!r}: must map a job name to a body with that name")
                    )
                if name in seen:
                    failures.append(CheckFailure(field, f"{name!r} is declared twice"))
                seen.add(str(name))
        urls = news.get("api_urls")
        if is_known(urls) and (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in urls)
        ):
            failures.append(CheckFailure("api_urls", "must be a non-empty list of http(s):// base URLs"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if not (is_known(news.get("jobs")) and is_known(news.get("secret_jobs"))):
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        changes = job_set_changes(olds, news)
        names = set(declared(news))
        prune = bool(news.get("prune_unmanaged")) and any(
            name not in names for name in olds.get("unmanaged") or {}
        )
        settings = not is_known(news.get("api_urls")) or (
            sorted(olds.get("api_urls") or []) != sorted(news.get("api_urls") or [])
            or timeout_of(olds) != timeout_of(news)
            or bool(olds.get("prune_unmanaged")) != bool(news.get("prune_unmanaged"))
        )
        return DiffResult(
            changes=bool(changes) or prune or settings, replaces=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = _inputs(props)
        jobs = declared(inputs)
        with _Session(inputs) as session:
            session.leader_first()
            live = session.live()
            write = [name for name, body in jobs.items() if managed_job(live.get(name)) != managed_job(body)]
            try:
                unmanaged = _apply(session, inputs, write, [], {})
            except DkronJobError:
                # Leave nothing new behind: jobs that existed stay as they were written.
                new = [name for name in write if name not in live]
                with_bodies = {name: jobs[name] for name in new}
                # The error being raised is the one to report, not a failed clean-up.
                with contextlib.suppress(DkronJobError, DkronUnavailable):
                    session.delete(new, with_bodies)
                raise
        return CreateResult(SET_ID, {**inputs, "unmanaged": unmanaged})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = _inputs(news)
        changes = job_set_changes(olds, inputs)
        with _Session(inputs) as session:
            session.leader_first()
            unmanaged = _apply(session, inputs, sorted(changes.write), changes.delete, olds)
        return UpdateResult({**inputs, "unmanaged": unmanaged})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        with _Session(props) as session:
            session.leader_first()
            session.delete(sorted(declared(props)), declared(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        inputs = _inputs(props)
        with _Session(inputs) as session:
            try:
                live = session.live(min(session.timeout_s, _REFRESH_UNREACHABLE_S))
            except DkronUnavailable:
                # No node answers: keep the state (see the module docstring).
                kept = {**inputs, "unmanaged": props.get("unmanaged") or {}}
                return ReadResult(id_, kept, inputs)
        for field in ("jobs", "secret_jobs"):
            inputs[field] = {
                name: job_from_live(live[name], body) for name, body in inputs[field].items() if name in live
            }
        return ReadResult(id_, {**inputs, "unmanaged": _unmanaged(live, declared(inputs))}, inputs)


class DkronJobSet(Resource, module="dkron", name="DkronJobSet"):
    """Every job a stack declares, kept as declared, one resource for all."""

    api_urls: pulumi.Output[list[str]]
    jobs: pulumi.Output[dict[str, Any]]
    secret_jobs: pulumi.Output[dict[str, Any]]
    prune_unmanaged: pulumi.Output[bool]
    timeout_s: pulumi.Output[int]
    unmanaged: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        resource_name: str,
        jobs: Mapping[str, Mapping[str, Any]],
        secret_jobs: pulumi.Input[Mapping[str, Any]],
        api_urls: pulumi.Input[Sequence[pulumi.Input[str]]],
        prune_unmanaged: bool = False,
        timeout_s: int = DEFAULT_TIMEOUT_S,
        api_auth: pulumi.Input[Mapping[str, str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "api_auth": api_auth,
            "api_urls": api_urls,
            "jobs": dict(jobs),
            "secret_jobs": pulumi.Output.secret(secret_jobs),
            "prune_unmanaged": prune_unmanaged,
            "timeout_s": timeout_s,
            "unmanaged": None,
        }
        # Pulumi's own diff of a map prints every entry, changed or not (a dynamic
        # provider cannot give it a per-path diff): 500 jobs would bury the one that
        # changes. The program's summary above the resources names each job and
        # field instead (`components.job_changes`).
        # `unmanaged` is bookkeeping (see the module docstring): as a secret, no diff shows it.
        opts = pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                additional_secret_outputs=["secret_jobs", "unmanaged", "api_auth"], hide_diffs=["jobs"]
            ),
        )
        super().__init__(DkronJobSetProvider(), resource_name, props, opts)
