"""`make status`: the live cluster at a glance, read from the nodes themselves.

Three parts, kept apart so the judgement is tested on plain data:

- `read_status` asks the live cluster (each node's API, its container on
  its engine, the Raft configuration, the catch-up watchers' log lines),
  starting from what the stack's outputs say was deployed;
- `judge` turns what was seen into healthy, degraded or broken;
- `render` and `as_json` show it to a person or a script: the table sums the
  jobs up by state and lists those that need attention (thousands of rows
  would bury them, and take seconds to draw); the JSON, and the table with
  `every_job`, hold every job.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from components.api_access import authorize_outputs
from components.dkron_client import DkronClient, DkronError
from components.docker_objects.client import engine, split_locator
from components.health import ClusterView, RaftPeer, observe, raft_peers
from components.pki import EXPIRY_WARNING_DAYS
from components.update_plan import recorded_container
from nodeside.catchup import (
    CAUGHT_UP_EVENTS,
    LATE_AFTER_S,
    due_unserved,
    last_run_failed,
    parse_log,
    parse_time,
)

Verdict = Literal["healthy", "degraded", "broken"]
JobState = Literal["late", "failing", "caught up", "disabled", "ok"]

JOB_STATES: tuple[JobState, ...] = ("ok", "failing", "late", "caught up", "disabled")
"""The states the table sums the jobs up by, in its order."""
NEEDS_ATTENTION: tuple[JobState, ...] = ("late", "failing", "caught up")
"""The states of the jobs the table lists: the most pressing first."""
LISTED = 50
"""At most this many jobs that need attention are listed; the rest are counted."""

EXIT_CODES: dict[Verdict, int] = {"healthy": 0, "degraded": 1, "broken": 2}
"""`make status`'s exit code for each verdict; a stack that cannot be read exits 2 as well."""

# Serf's member status numbers as the API reports them.
SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


@dataclass(frozen=True)
class NodeStatus:
    name: str
    api_url: str
    container: str
    host: str | None = None
    state: str = "unknown"
    """The container's state as Docker reports it (running, exited, ...; missing: no such container)."""
    started_at: str | None = None
    uptime_s: float | None = None
    image: str | None = None
    serf: str = "unknown"
    """Its Serf status as the cluster sees it (the leader's view, else any answering node's)."""
    raft: str = "unknown"
    """leader, follower, or absent (not in the Raft configuration)."""
    voter: bool | None = None
    version: str | None = None
    sees_leader: str | None = None
    api_error: str | None = None
    certificate_ends: str | None = None
    """When the node's certificate of the stack's CA ends (None: the stack runs without mutual TLS)."""


@dataclass(frozen=True)
class JobStatus:
    name: str
    schedule: str
    disabled: bool
    next: str | None
    last_success: str | None
    last_error: str | None
    success_count: int
    error_count: int
    last_result: str
    """success, failed, or never."""
    late_since: str | None = None
    """A due time that passed without a run (more than `LATE_AFTER_S` ago)."""
    caught_up: int | None = None
    """Runs the catch-up watcher started for it, from the logs of the nodes' current containers."""
    missed: int | None = None
    """Due times the watcher found missed but too old to run (outside the window)."""
    state: JobState = "ok"
    """The most pressing of: late, failing (its last run failed), caught up (the watcher ran it
    or found a run too old to start), disabled; else ok (a job that never ran included)."""


@dataclass(frozen=True)
class ClusterStatus:
    stack: str
    verdict: Verdict
    leader: str | None
    problems: list[str]
    nodes: list[NodeStatus]
    jobs: list[JobStatus]
    jobs_error: str | None = None
    prometheus: dict[str, str] | None = None
    """The bundled Prometheus server's URL, container and the container's state (None: not run)."""
    alertmanager: dict[str, str] | None = None
    """The same for the Alertmanager."""
    observed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def job_counts(self) -> dict[JobState, int]:
        """How many jobs are in each state, every state named."""
        counts = dict.fromkeys(JOB_STATES, 0)
        for job in self.jobs:
            counts[job.state] += 1
        return counts


class StatusUnavailable(RuntimeError):
    """The stack cannot be read (not deployed, or its outputs name no nodes)."""


# --- judging -------------------------------------------------------------------------------------


def _shorten(line: str, error: str | None) -> str:
    return line.replace(error, short_error(error)) if error else line


def _ending_soon(seconds_left: float) -> bool:
    """A node certificate this close to its end is a problem (the alert rule says the same)."""
    return seconds_left < EXPIRY_WARNING_DAYS * 86400


def certificate_problems(nodes: Sequence[NodeStatus], now: datetime) -> list[str]:
    """One line per node whose certificate ends within `EXPIRY_WARNING_DAYS` (or has ended)."""
    lines = []
    for node in nodes:
        ends = parse_time(node.certificate_ends)
        if ends is None:
            continue
        left = (ends - now).total_seconds()
        if _ending_soon(left):
            when = f"ended {_duration(-left)} ago" if left <= 0 else f"ends in {_duration(left)}"
            lines.append(f"{node.name}: its certificate {when}: `make up` makes a new one (rolling)")
    return lines


def majority_leader(view: ClusterView, expected: Sequence[str]) -> str | None:
    """The leader a majority of the configured nodes name, else None."""
    leader = view.leader
    if leader is None:
        return None
    agreeing = [n for n in expected if (v := view.nodes.get(n)) and v.error is None and v.leader == leader]
    return leader if len(agreeing) * 2 > len(expected) else None


def judge(view: ClusterView, expected: Sequence[str], states: Mapping[str, str]) -> tuple[Verdict, list[str]]:
    """Healthy (whole), degraded (a majority agrees on a leader, something is missing) or
    broken (no leader agreed by a majority), with what is wrong."""
    problems = [f"{n}: container {states[n]}" for n in expected if states.get(n, "running") != "running"]
    problems += [
        _shorten(line, view.nodes[n].error) if (n := line.split(":", 1)[0]) in view.nodes else line
        for line in view.problems(expected)
    ]
    if majority_leader(view, expected) is None:
        return "broken", ["no leader agreed by a majority of the nodes", *problems]
    return ("degraded" if problems else "healthy"), problems


def short_error(error: str) -> str:
    """An API error as a table shows it: what happened, not the whole exception."""
    if "Connection refused" in error or "NewConnectionError" in error:
        return "connection refused"
    if "Timeout" in error or "timed out" in error:
        return "timed out"
    return error[:80]


def job_state(late: bool, failed: bool, caught_up: int, missed: int, disabled: bool) -> JobState:
    """A job's state as the table sums it up: the most pressing of what holds."""
    if late:
        return "late"
    if failed:
        return "failing"
    if caught_up or missed:
        return "caught up"
    return "disabled" if disabled else "ok"


def watcher_lines_by_job(
    lines: Sequence[Mapping[str, Any]] | None,
) -> dict[str, list[Mapping[str, Any]]] | None:
    """The catch-up watchers' log lines grouped by job (None: unknown), so each job finds its own
    at once among thousands."""
    if lines is None:
        return None
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for line in lines:
        if "job" in line:
            grouped.setdefault(str(line["job"]), []).append(line)
    return grouped


def job_status(
    job: Mapping[str, Any], now: datetime, watcher: Mapping[str, Sequence[Mapping[str, Any]]] | None
) -> JobStatus:
    """One job's line, from Dkron's job record and the watchers' log lines by job
    (`watcher_lines_by_job`; None: unknown)."""
    name = str(job.get("name", ""))
    success, error = parse_time(job.get("last_success")), parse_time(job.get("last_error"))
    failed = last_run_failed(job)
    result = "never" if failed is None else ("failed" if failed else "success")
    due = due_unserved(job, now)
    late = due if due is not None and (now - due).total_seconds() > LATE_AFTER_S else None
    mine = (watcher or {}).get(name, [])
    caught_up = sum(1 for line in mine if line["event"] in CAUGHT_UP_EVENTS)
    missed = sum(1 for line in mine if line["event"] == "too-old")
    return JobStatus(
        name=name,
        schedule=str(job.get("schedule") or ""),
        disabled=bool(job.get("disabled")),
        next=_iso(parse_time(job.get("next"))),
        last_success=_iso(success),
        last_error=_iso(error),
        success_count=int(job.get("success_count") or 0),
        error_count=int(job.get("error_count") or 0),
        last_result=result,
        late_since=_iso(late),
        caught_up=None if watcher is None else caught_up,
        missed=None if watcher is None else missed,
        state=job_state(late is not None, bool(failed), caught_up, missed, bool(job.get("disabled"))),
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


# --- reading the live cluster --------------------------------------------------------------------

_FRACTION = re.compile(r"\.(\d{6})\d*")


def docker_time(text: str | None) -> datetime | None:
    """A Docker timestamp (RFC 3339 with nanoseconds); None for Docker's zero time."""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(_FRACTION.sub(r".\1", text).replace("Z", "+00:00"))


@dataclass
class _Container:
    state: str = "unknown"
    started_at: datetime | None = None
    image: str | None = None
    log: list[dict[str, Any]] | None = None


def _read_container(locator: str, with_log: bool = True) -> _Container:
    where, name = split_locator(locator)
    try:
        with engine(where, timeout_s=10) as client:
            try:
                container = client.containers.get(name)
            except Exception:  # noqa: BLE001 - docker.errors.NotFound and friends
                return _Container(state="missing", log=[])
            attrs = container.attrs
            state = attrs.get("State") or {}
            image_id = str(attrs.get("Image", ""))
            # Containers are made from the image's ID: show the tag it carries.
            tags: list[str] = []
            with contextlib.suppress(Exception):
                tags = client.images.get(image_id).tags
            image = f"{tags[0] if tags else image_id[7:19]}"
            log = parse_log(container.logs().decode(errors="replace")) if with_log else []
            return _Container(
                state=str(state.get("Status") or "unknown"),
                started_at=docker_time(state.get("StartedAt")),
                image=image,
                log=log,
            )
    except Exception:  # noqa: BLE001 - an engine that does not answer: the state is unknown
        return _Container()


def _first_answer(urls: Sequence[str], ask: Any) -> Any:
    for url in urls:
        with (
            contextlib.suppress(requests.RequestException, DkronError, ValueError),
            DkronClient(url) as client,
        ):
            return ask(client)
    return None


def _raft_configuration(
    view: ClusterView, containers: Mapping[str, str], order: Sequence[str]
) -> dict[str, RaftPeer]:
    """The Raft configuration: the leader's (`observe` read it), else any running node's own."""
    if view.raft_peers is not None:
        return dict(view.raft_peers)
    for node in order:
        with contextlib.suppress(Exception):
            return raft_peers(containers[node])
    return {}


def _server(output: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A server beside the nodes (its stack output), with its container's state."""
    if not output:
        return None
    state = _read_container(str(output["container"]), with_log=False).state
    return {"url": str(output["url"]), "container": str(output["container"]), "state": state}


def read_status(stack: str, outputs: Mapping[str, Any]) -> ClusterStatus:
    """Ask every node the stack's outputs name, and judge what they say."""
    records: Mapping[str, Mapping[str, Any]] = outputs.get("nodes") or {}
    if not records:
        raise StatusUnavailable(
            f"stack '{stack}' is not deployed (its outputs name no nodes): run `make up STACK={stack}`"
        )
    names = sorted(records)
    authorize_outputs(outputs)
    api_urls = {n: str(records[n]["api_url"]) for n in names}
    containers = {n: recorded_container(records[n]) for n in names}
    seen = {n: _read_container(containers[n]) for n in names}
    view = observe(api_urls, containers)
    verdict, problems = judge(view, names, {n: seen[n].state for n in names})
    leader = majority_leader(view, names)

    answering = [n for n in names if view.nodes[n].error is None]
    # Serf and jobs as the leader sees them, else as any answering node does.
    asked = [api_urls[n] for n in ([leader] if leader else []) + answering]
    members = _first_answer(asked, lambda c: c.members()) or []
    serf = {str(m.get("Name")): SERF_STATUS.get(int(m.get("Status", 0)), "unknown") for m in members}
    peers = _raft_configuration(view, containers, [n for n in ([leader] if leader else []) + answering])
    versions = {
        n: _first_answer([api_urls[n]], lambda c: c.agent().get("agent", {}).get("version"))
        for n in answering
    }

    now = datetime.now(UTC)
    nodes = []
    for n in names:
        box, peer, answer = seen[n], peers.get(n), view.nodes[n]
        running = box.state == "running" and box.started_at is not None
        nodes.append(
            NodeStatus(
                name=n,
                api_url=api_urls[n],
                container=containers[n],
                host=records[n].get("host"),
                state=box.state,
                started_at=_iso(box.started_at),
                uptime_s=round((now - box.started_at).total_seconds())
                if running and box.started_at
                else None,
                image=box.image,
                serf=serf.get(n, "unknown"),
                raft=("leader" if n == leader else "follower")
                if peer
                else ("absent" if peers else "unknown"),
                voter=peer.voter if peer else (False if peers else None),
                version=versions.get(n),
                sees_leader=answer.leader,
                api_error=short_error(answer.error) if answer.error else None,
                certificate_ends=(outputs.get("certificates") or {}).get(n),
            )
        )
    expiring = certificate_problems(nodes, now)
    if expiring:
        problems += expiring
        verdict = "degraded" if verdict == "healthy" else verdict

    jobs_error = None
    jobs: list[JobStatus] = []
    raw_jobs = _first_answer(asked, lambda c: c.list_jobs())
    if raw_jobs is None:
        jobs_error = "no node answered" if not asked else "the jobs could not be read"
    else:
        logs = [box.log for box in seen.values()]
        lines = None if any(log is None for log in logs) else [line for log in logs for line in log or []]
        watcher = watcher_lines_by_job(lines)
        jobs = [job_status(job, now, watcher) for job in sorted(raw_jobs, key=lambda j: str(j.get("name")))]
    return ClusterStatus(
        prometheus=_server(outputs.get("prometheus")),
        alertmanager=_server(outputs.get("alertmanager")),
        stack=stack,
        verdict=verdict,
        leader=leader,
        problems=problems,
        nodes=nodes,
        jobs=jobs,
        jobs_error=jobs_error,
    )


# --- showing it ----------------------------------------------------------------------------------

VERDICT_STYLE: dict[Verdict, str] = {"healthy": "bold green", "degraded": "bold yellow", "broken": "bold red"}


def as_json(status: ClusterStatus) -> dict[str, Any]:
    """Every fact, every job included, with the job counts by state and the exit code."""
    return {**asdict(status), "job_counts": status.job_counts, "exit_code": status.exit_code}


def _ago(text: str | None, now: datetime) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    words = _duration(abs(seconds))
    return f"in {words}" if seconds > 0 else f"{words} ago"


def _duration(seconds: float) -> str:
    """42s, 5m07s, 3h05m, 2d04h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _mark(value: str, good: bool, bad: bool = False) -> Text:
    return Text(value, style="green" if good else ("red" if bad else "yellow"))


def render(status: ClusterStatus, every_job: bool = False) -> Group:
    """The status as a person reads it: a headline, the problems, the nodes, then the jobs
    summed up by state and those that need attention (`every_job`: every job)."""
    now = parse_time(status.observed_at) or datetime.now(UTC)
    headline = Text.assemble(
        (f"{status.verdict.upper()}", VERDICT_STYLE[status.verdict]),
        f"  stack {status.stack}  leader ",
        (status.leader or "none", "bold" if status.leader else "bold red"),
        f"  ({status.observed_at})",
    )
    parts: list[Any] = [headline]
    for problem in status.problems:
        parts.append(Text(f"  - {problem}", style="yellow" if status.verdict == "degraded" else "red"))

    several_hosts = any(node.host for node in status.nodes)
    nodes = Table(title="nodes", title_justify="left", show_edge=False)
    columns = [
        "node",
        *(["host"] if several_hosts else []),
        "container",
        "serf",
        "raft",
        "voter",
        "version",
        "image",
        "api",
        "uptime",
        *(["cert ends"] if any(node.certificate_ends for node in status.nodes) else []),
    ]
    for column in columns:
        nodes.add_column(column)
    for node in status.nodes:
        row: list[Any] = [Text(node.name, style="bold" if node.raft == "leader" else "")]
        if several_hosts:
            row.append(node.host or "-")
        row += [
            _mark(node.state, node.state == "running", node.state != "unknown"),
            _mark(node.serf, node.serf == "alive", node.serf in ("failed", "left")),
            _mark(node.raft, node.raft in ("leader", "follower"), node.raft == "absent"),
            _mark({True: "yes", False: "no", None: "?"}[node.voter], node.voter is True, node.voter is False),
            node.version or ("-" if node.api_error else "?"),
            node.image or "-",
            node.api_url.partition("#")[0],
            _duration(node.uptime_s) if node.uptime_s is not None else "-",
        ]
        if "cert ends" in columns:
            row.append(_certificate_cell(node.certificate_ends, now))
        nodes.add_row(*row)
    parts.append(nodes)
    for role, server in (("prometheus", status.prometheus), ("alertmanager", status.alertmanager)):
        if server:
            state = server["state"]
            parts.append(
                Text.assemble(
                    f"{role} ", server["url"], " ", _mark(state, state == "running", state != "unknown")
                )
            )

    if status.jobs_error:
        parts.append(Text(f"jobs: unknown ({status.jobs_error})", style="red"))
    elif not status.jobs:
        parts.append(Text("jobs: none"))
    else:
        parts += _jobs_part(status, now, every_job)
    return Group(*parts)


def _certificate_cell(ends: str | None, now: datetime) -> Text:
    moment = parse_time(ends)
    if moment is None:
        return Text("-")
    left = (moment - now).total_seconds()
    return _mark(_ago(ends, now), not _ending_soon(left), _ending_soon(left))


_STATE_STYLE: dict[JobState, str] = {
    "ok": "green",
    "failing": "red",
    "late": "red",
    "caught up": "yellow",
    "disabled": "",
}


def _jobs_part(status: ClusterStatus, now: datetime, every_job: bool) -> list[Any]:
    counts = status.job_counts
    summary = Text(f"jobs {len(status.jobs)}: ")
    for i, state in enumerate(JOB_STATES):
        summary.append(", " if i else "")
        summary.append(f"{counts[state]} {state}", style=_STATE_STYLE[state] if counts[state] else "")
    every = f"every job: make status STACK={status.stack} ALL=1"
    if every_job:
        return [summary, _jobs_table("jobs", status.jobs, now)]
    pressing = sorted(
        (job for job in status.jobs if job.state in NEEDS_ATTENTION),
        key=lambda job: NEEDS_ATTENTION.index(job.state),
    )
    if not pressing:
        return [summary, Text(f"no job needs attention ({every})")]
    shown = pressing[:LISTED]
    title = f"jobs that need attention ({len(pressing)} of {len(status.jobs)}; {every})"
    parts: list[Any] = [summary, _jobs_table(title, shown, now)]
    if len(pressing) > len(shown):
        parts.append(Text(f"... and {len(pressing) - len(shown)} more that need attention ({every})"))
    return parts


def _jobs_table(title: str, jobs: Sequence[JobStatus], now: datetime) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in (
        "job",
        "state",
        "schedule",
        "next",
        "last run",
        "last success",
        "last error",
        "ok/failed",
        "caught up",
        "missed",
        "late",
    ):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.name,
            Text(job.state, style=_STATE_STYLE[job.state]),
            job.schedule + (" (disabled)" if job.disabled else ""),
            _ago(job.next, now),
            _mark(job.last_result, job.last_result == "success", job.last_result == "failed"),
            _ago(job.last_success, now),
            _ago(job.last_error, now),
            f"{job.success_count}/{job.error_count}",
            "?" if job.caught_up is None else str(job.caught_up),
            "?" if job.missed is None else str(job.missed),
            _mark(f"since {_ago(job.late_since, now)}", False, True) if job.late_since else "-",
        )
    return table


def console(stream: Any = None) -> Console:
    """A console that colours only a terminal (rich's own detection; NO_COLOR is honoured too)."""
    out = Console(file=stream, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        # A pipe or a file has no width: wide enough that no column is cut.
        out = Console(file=stream, highlight=False, soft_wrap=False, width=240)
    return out
