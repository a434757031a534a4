"""The catch-up watcher: a run that fell due while the cluster had no leader is started once.

Dkron never runs what fell due without a leader: the next leader schedules
every job from the moment it takes over. This watcher runs beside the agent
in every node's container (`python3 -m nodeside.catchup`, standard library
only) and acts only on the node that leads:

- While the cluster has a working leader, every watcher notes when it last
  saw one and each job's next due time, also in a file on the node's data
  volume (a node that restarts replays Raft's log, and Dkron then recomputes
  every job's next due time from the moment of the replay: the due time the
  outage swallowed would be gone).
- When its own node becomes leader, it reads every job. A job's missed due
  time is the first one after its last run (Dkron keeps when runs ended, and
  that survives a replay), or, for a job that never ran, the next due time
  noted before the outage. If that is before this leadership began, after
  the last working leader was seen (less a margin: a job disabled for days
  missed nothing in this outage), and the job's window still holds one of
  the due times since, the watcher starts the job once through the API and
  says so in the node's log.

Why a run is never started twice for one due time: a new leader's scheduler
counts an `@every` job anew from the moment it starts (after a Raft barrier),
so the watcher waits for that start (`scheduler_started` at `/debug/vars`)
and knows when the leader's own first run comes. A missed due time that run
serves (at its time, or late by less than an interval) is left to it; any
other is started at least 0.45 of an interval away from every regular run,
at once or half an interval after the leader's first run. Just before
starting, the watcher reads the job's kept runs (a run in progress shows
there), keeps that distance with the clock of that moment, and checks that
its own node still leads: the API hands a run to whoever leads now.

Per job, metadata ``dkron-iac.catch-up: "off"`` turns it off and
``dkron-iac.catch-up-window`` (a Go duration) replaces the stack's window.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .schedule import every_seconds, go_duration_seconds, next_due

OFF_KEY = "dkron-iac.catch-up"
WINDOW_KEY = "dkron-iac.catch-up-window"
LOG_PREFIX = "dkron-iac catch-up:"

API_ENV = "CATCHUP_API"
WINDOW_ENV = "CATCHUP_WINDOW_S"
STATE_ENV = "CATCHUP_STATE"

POLL_S = 0.2
"""How often the watcher asks its agent whether it leads (leadership is seen this late at most)."""
SCAN_FOR_S = 15.0
"""How long after taking over the watcher keeps reading the jobs (the scheduler may start late)."""
NOTE_EVERY_S = 2.0
"""How often, while there is a leader, the watcher notes the jobs' next due times."""
OUTAGE_MARGIN_S = 60.0
"""A leader may stop scheduling a little before it stops leading (a graceful stop): due times
this long before the last working leader was seen still count as missed."""
IMMINENT_S = 0.25
"""A catch-up starts at least this long before or after a regular run of the job."""
SPACING = 0.45
"""... and at least this fraction of the job's interval (two runs closer than half an interval
serve one due time twice, as a reader of the runs sees it) ..."""
SPACING_CAP_S = 5.0
"""... but never needs more than this (an hourly job is caught up even a minute before its run)."""
SCHEDULER_WAIT_S = 30.0
"""How long a new leader's watcher waits for its scheduler to start (Dkron first commits a barrier)."""
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
LATE_AFTER_S = 30.0
"""How long a due time may pass unserved before a job counts as late (`make status`) or its runs as
stopped (the alert rule): a run normally starts within a second of its due time."""


@dataclass(frozen=True)
class Decision:
    """What the watcher does about one job at one moment."""

    job: str
    action: str
    """``run``, ``too-old`` (missed, but outside its window), ``imminent`` (the job's own schedule
    runs it in a moment) or ``wait`` (a due time still ahead that the new schedule skips)."""
    due: datetime
    """The due time Dkron stored and nobody ran."""
    in_window: datetime | None = None
    """The first due time inside the window (the run that is caught up)."""
    not_before: datetime | None = None
    """For a run: not before this moment (half an interval after the leader's first run)."""
    first_regular: datetime | None = None
    """For a run now: the earliest the leader's own schedule runs the job next."""
    later: tuple[datetime, datetime] | None = None
    """For a run now: when to run instead if the moment has come too near ``first_regular``, and
    the regular run after that moment."""


def parse_time(text: object) -> datetime | None:
    """A time as Dkron's API writes it (RFC3339, nanoseconds); None for Go's zero time or nothing."""
    if not isinstance(text, str) or not text:
        return None
    head, _, rest = text.partition(".")
    zone = ""
    if rest:
        digits = rest.rstrip("Z").split("+")[0].split("-")[0]
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment if moment > EPOCH else None


def last_run(job: Mapping[str, Any]) -> datetime | None:
    """When the job's last run ended (Dkron keeps it through a replay), None if it never ran."""
    ended = [t for t in (parse_time(job.get("last_success")), parse_time(job.get("last_error"))) if t]
    return max(ended, default=None)


def last_run_failed(job: Mapping[str, Any]) -> bool | None:
    """Whether the job's last run failed (None: it never ran)."""
    ended = last_run(job)
    if ended is None:
        return None
    success, error = parse_time(job.get("last_success")), parse_time(job.get("last_error"))
    return error == ended and error != success


def missed_due(job: Mapping[str, Any], noted_next: datetime | None) -> datetime | None:
    """The first due time after the job's last run (or, never run, its noted next due time)."""
    ended = last_run(job)
    if ended is not None:
        schedule = str(job.get("schedule", ""))
        every = every_seconds(schedule)
        if every is not None:  # Dkron counts from the start of the run, on a whole second
            return ended.replace(microsecond=0) + timedelta(seconds=every)
        return next_due(schedule, str(job.get("name", "")), ended, str(job.get("timezone") or ""))
    stored = parse_time(job.get("next"))
    return min((t for t in (noted_next, stored) if t), default=None)


def scheduled(job: Mapping[str, Any]) -> bool:
    """Whether Dkron's scheduler runs the job by itself (enabled, with a schedule, not a child)."""
    schedule = str(job.get("schedule", ""))
    return not (job.get("disabled") or job.get("parent_job") or schedule in ("", "@manually"))


def due_unserved(job: Mapping[str, Any], now: datetime) -> datetime | None:
    """The first due time after the job's last run, if it has passed: no run has served it yet
    (what `make status` calls late and the node exporter's runs-stopped alert watches)."""
    if not scheduled(job):
        return None
    due = missed_due(job, None)
    return due if due is not None and due <= now else None


def decide(
    job: Mapping[str, Any],
    now: datetime,
    leader_since: datetime,
    outage_from: datetime | None,
    window_s: float,
    noted_next: datetime | None = None,
    scheduler_from: tuple[datetime, datetime] | None = None,
) -> Decision | None:
    """Whether ``job`` missed a run while there was no leader, and what to do about it.

    ``leader_since``: when this node's leadership began (as seen); ``outage_from``:
    when a working leader was last seen before it (None if never); ``noted_next``:
    the job's next due time as noted then; ``scheduler_from``: the moments between
    which this leader's scheduler started (an `@every` job's first run counts from
    then), by default the fraction of a second before ``leader_since``.
    """
    name = str(job.get("name", ""))
    schedule = str(job.get("schedule", ""))
    metadata = job.get("metadata") or {}
    if not scheduled(job):
        return None
    if str(metadata.get(OFF_KEY, "")).lower() in ("off", "false", "no"):
        return None
    due = missed_due(job, noted_next)
    if due is None:
        return None
    every = every_seconds(schedule)
    if scheduler_from is None:
        scheduler_from = (leader_since - timedelta(seconds=POLL_S), leader_since)
    earliest, latest = _regular_runs(job, now, scheduler_from)
    if every is None and due >= leader_since:
        return None  # not missed: the leader's own schedule has it
    spacing = _spacing(job, due)
    swallowed = every is not None and latest - due >= timedelta(seconds=every)
    if due >= earliest - timedelta(seconds=spacing) and not swallowed:
        return None  # the leader's own first run serves it, at its time or within an interval
    if due > now:  # an @every due time the new leader's schedule skips: caught up when it is due
        return Decision(name, "wait", due)
    if outage_from is not None and due < outage_from - timedelta(seconds=OUTAGE_MARGIN_S):
        return None  # stale: it was disabled then, or its schedule changed; no outage lost it
    window = go_duration_seconds(str(metadata.get(WINDOW_KEY, ""))) or window_s
    in_window = _first_due_from(job, due, now - timedelta(seconds=window))
    if in_window is None or in_window > now:
        return Decision(name, "too-old", due)
    # Too close to the leader's first run, which may come a whole interval or more after the
    # missed time: half an interval after it, unless that run turns out to have served it.
    later = None
    if swallowed and every is not None:
        later = (latest + timedelta(seconds=every / 2), latest + timedelta(seconds=every))
    if earliest - now >= timedelta(seconds=spacing):
        return Decision(name, "run", due, in_window, first_regular=earliest, later=later)
    if later is not None:
        return Decision(name, "run", due, in_window, not_before=later[0], first_regular=later[1])
    return Decision(name, "imminent", due, in_window)


def _spacing(job: Mapping[str, Any], due: datetime) -> float:
    """How far a caught-up run must keep from the job's regular runs: less than half an interval
    apart, two runs look like one due time served twice."""
    interval = (_next_after(job, due) - due).total_seconds()
    return max(IMMINENT_S, min(SPACING * interval, SPACING_CAP_S))


def _next_after(job: Mapping[str, Any], due: datetime) -> datetime:
    """The job's due time after ``due`` on the same schedule."""
    schedule = str(job["schedule"])
    every = every_seconds(schedule)
    if every is not None:
        return due + timedelta(seconds=every)
    following = next_due(schedule, str(job["name"]), due, str(job.get("timezone") or ""))
    return following or due + timedelta(days=3650)


def served(job: Mapping[str, Any], due: datetime, starts: list[datetime]) -> bool:
    """Whether a run started for ``due``: at it, or late but before the next due time (a leader's
    `@every` schedule counts anew from its take-over, so its first run may come within an interval)."""
    until = _next_after(job, due) - timedelta(seconds=0.5)
    return any(due - timedelta(seconds=0.5) <= start < until for start in starts)


def _first_due_from(job: Mapping[str, Any], due: datetime, start: datetime) -> datetime | None:
    """The first due time at or after ``start``, counting from the missed ``due``."""
    if due >= start:
        return due
    schedule = str(job["schedule"])
    every = every_seconds(schedule)
    if every is not None:
        return due + timedelta(seconds=every * math.ceil((start - due).total_seconds() / every))
    return next_due(schedule, str(job["name"]), start - timedelta(seconds=1), str(job.get("timezone") or ""))


def _regular_runs(
    job: Mapping[str, Any], now: datetime, scheduler_from: tuple[datetime, datetime]
) -> tuple[datetime, datetime]:
    """The earliest and the latest moment the leader's own schedule runs the job next.

    An `@every` job is first run one interval after the scheduler started, counted from
    the whole second (Dkron's cron library): known to the second unless the start's bounds
    straddle one. A calendar schedule's next time does not depend on the leader.
    """
    schedule = str(job["schedule"])
    every = every_seconds(schedule)
    if every is not None:
        first, last = (moment.replace(microsecond=0) + timedelta(seconds=every) for moment in scheduler_from)
        return first, last
    upcoming = next_due(schedule, str(job["name"]), now, str(job.get("timezone") or ""))
    upcoming = upcoming or now + timedelta(days=3650)
    return upcoming, upcoming


class Api:
    """The local agent's HTTP API."""

    def __init__(self, base: str) -> None:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"{API_ENV} must be an http:// URL, not {base!r}")
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method)  # noqa: S310 (http only: __init__)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as err:
            return err.code, None

    def leads(self) -> bool:
        status, _ = self.call("GET", "/v1/isleader", timeout=2.0)
        return status == 200

    def has_leader(self) -> bool:
        status, body = self.call("GET", "/v1/leader", timeout=2.0)
        return status == 200 and bool(body)

    def jobs(self) -> list[dict[str, Any]]:
        status, body = self.call("GET", "/v1/jobs")
        return list(body) if status == 200 and isinstance(body, list) else []

    def job(self, name: str) -> dict[str, Any] | None:
        status, body = self.call("GET", f"/v1/jobs/{urllib.parse.quote(name, safe='')}")
        return body if status == 200 and isinstance(body, dict) else None

    def scheduler_started(self) -> bool | None:
        """Whether the agent's scheduler runs (Dkron's `scheduler_started` variable; None: not told)."""
        status, body = self.call("GET", "/debug/vars", timeout=2.0)
        if status != 200 or not isinstance(body, dict) or "scheduler_started" not in body:
            return None
        return bool(body["scheduler_started"])

    def starts(self, name: str) -> list[datetime]:
        """When the job's kept runs were dispatched (their execution groups)."""
        status, body = self.call("GET", f"/v1/jobs/{urllib.parse.quote(name, safe='')}/executions")
        if status != 200 or not isinstance(body, list):
            return []
        return [
            datetime.fromtimestamp(int(execution["group"]) / 1e9, UTC)
            for execution in body
            if isinstance(execution, dict) and str(execution.get("group", "")).isdigit()
        ]

    def run(self, name: str) -> int:
        status, _ = self.call("POST", f"/v1/jobs/{urllib.parse.quote(name, safe='')}/run", timeout=10.0)
        return status


class Notes:
    """What this node saw while the cluster had a working leader, kept on the data volume.

    ``next`` holds, per job, its schedule and the first due time not yet served.
    A node that restarts replays Raft's log, and Dkron recomputes every job's
    next due time from the moment of the replay, skipping the due times the
    outage swallowed; so a noted due time stays until the job has run since it
    (or its schedule changed), even when Dkron now says later.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.leader_seen_at: datetime | None = None
        self.next: dict[str, tuple[str, datetime]] = {}
        self._written = 0.0
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
                self.leader_seen_at = parse_time(saved.get("leader_seen_at"))
                self.next = {
                    name: (str(schedule), due)
                    for name, (schedule, text) in saved.get("next", {}).items()
                    if (due := parse_time(text))
                }
            except (OSError, ValueError, TypeError, AttributeError):
                pass

    def copy(self) -> Notes:
        """What is noted now, apart from the file (what a new leadership decides on)."""
        copied = Notes(None)
        copied.leader_seen_at, copied.next = self.leader_seen_at, dict(self.next)
        return copied

    def due(self, name: str) -> datetime | None:
        return self.next[name][1] if name in self.next else None

    def note_jobs(self, jobs: list[dict[str, Any]], now: datetime) -> None:
        """Note the jobs' next due times. A job missing from ``jobs`` keeps its note for two days:
        a node still applying Raft's log lists only some jobs."""
        forget = now - timedelta(days=2)
        noted = {name: note for name, note in self.next.items() if note[1] > forget}
        for job in jobs:
            name, schedule, due = str(job["name"]), str(job.get("schedule", "")), parse_time(job.get("next"))
            if due is None:
                continue
            before = self.next.get(name)
            ran = last_run(job)
            if before and before[0] == schedule and before[1] < due and (ran is None or ran < before[1]):
                due = before[1]  # not served yet: Dkron's later time is a replay's
            noted[name] = (schedule, due)
        self.next = noted

    def save(self, leader_seen_at: datetime | None) -> None:
        if leader_seen_at is not None:
            self.leader_seen_at = leader_seen_at
        if self.path is None or time.monotonic() - self._written < 2.0:
            return
        self._written = time.monotonic()
        saved = {
            "leader_seen_at": self.leader_seen_at.isoformat() if self.leader_seen_at else None,
            "next": {name: [schedule, due.isoformat()] for name, (schedule, due) in self.next.items()},
        }
        try:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved))
            tmp.replace(self.path)
        except OSError:
            pass


def log(event: str, **fields: object) -> None:
    """One line on the agent's output (the container's log)."""
    text = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
    print(f"{LOG_PREFIX} {event} {json.dumps(text, sort_keys=True)}", flush=True)


def parse_log(text: str) -> list[dict[str, Any]]:
    """The watcher's lines in a node's log, as dicts with their ``event`` (for tests and status)."""
    found = []
    for line in text.splitlines():
        _, sep, rest = line.partition(LOG_PREFIX)
        if not sep:
            continue
        event, _, fields = rest.strip().partition(" ")
        try:
            found.append({"event": event, **json.loads(fields or "{}")})
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class Leadership:
    """One leadership of this node, as its watcher saw it begin."""

    since: datetime
    """When the watcher saw its node lead."""
    scheduler_from: tuple[datetime, datetime]
    """Between which moments the node's scheduler started (Dkron starts it after a barrier)."""
    noted: Notes
    """What was noted before this leadership began."""

    def decide(self, job: Mapping[str, Any], now: datetime, window_s: float) -> Decision | None:
        noted_next = self.noted.due(str(job.get("name", "")))
        return decide(
            job, now, self.since, self.noted.leader_seen_at, window_s, noted_next, self.scheduler_from
        )


def catch_up(
    api: Api,
    leadership: Leadership,
    window_s: float,
    done: set[str],
    held: dict[str, float],
    pending: dict[str, tuple[Decision, dict[str, Any]]],
) -> bool:
    """Start each job this leadership found missed, once; ``done`` holds ``job@due`` already handled,
    ``held`` those to look at again later (monotonic time), ``pending`` runs put off until a moment.
    True while something is left to look at.
    """
    now = datetime.now(UTC)
    waiting = False
    for job in api.jobs():
        decision = leadership.decide(job, now, window_s)
        if decision is None:
            continue
        key = f"{decision.job}@{decision.due.isoformat()}"
        if key in done or key in pending:
            continue
        if decision.action == "wait":
            waiting = True
        elif decision.action != "run":
            done.add(key)
            log(decision.action, job=decision.job, due=decision.due, window_s=window_s)
        elif decision.not_before is not None:
            pending[key] = (decision, job)
        elif held.get(key, 0.0) > time.monotonic():
            waiting = True
        elif not _attempt(api, key, decision, job, done, held, pending):
            return False
    for key, (decision, job) in list(pending.items()):
        soon = datetime.now(UTC) + timedelta(seconds=POLL_S)
        if (decision.not_before is not None and decision.not_before > soon) or held.get(
            key, 0.0
        ) > time.monotonic():
            continue
        if decision.not_before is not None:  # started on time, not up to a poll later
            time.sleep(max(0.0, (decision.not_before - datetime.now(UTC)).total_seconds()))
        if not _attempt(api, key, decision, job, done, held, pending):
            return False
    return waiting or bool(pending) or any(t > time.monotonic() for k, t in held.items() if k not in done)


def _attempt(
    api: Api,
    key: str,
    decision: Decision,
    job: dict[str, Any],
    done: set[str],
    held: dict[str, float],
    pending: dict[str, tuple[Decision, dict[str, Any]]],
) -> bool:
    """Start one decided run if it still holds at this moment; False if this node no longer leads."""
    put_off = decision.not_before is not None
    again = api.job(decision.job)
    if again is None or (not put_off and again.get("next") != job.get("next")):
        # A run started meanwhile moves the stored next time, and so does a leader still
        # applying Raft's log: look again in a second, when either shows (a run as its last run).
        _again_in(1.0, key, decision, job, held, pending)
        return True
    # Every run that started since the job was read shows here, also one still in progress.
    starts = api.starts(decision.job)
    if served(job, decision.due, starts):
        done.add(key)
        pending.pop(key, None)
        log("served", job=decision.job, due=decision.due)
        return True
    moment = datetime.now(UTC)
    spacing = timedelta(seconds=_spacing(job, decision.due))
    if decision.first_regular is not None and decision.first_regular - moment < spacing:
        # Decided a moment ago, now too near the leader's own first run.
        if decision.later is not None:
            moment_later, after = decision.later
            pending[key] = (
                replace(decision, not_before=moment_later, first_regular=after, later=None),
                job,
            )
        else:
            done.add(key)
            log("imminent", job=decision.job, due=decision.due)
        return True
    if any(abs(moment - start) < spacing for start in starts):
        _again_in(0.5, key, decision, job, held, pending)
        return True
    # A watcher whose node no longer leads would start the run through the new leader.
    if not api.leads():
        return False
    try:
        status = api.run(decision.job)
    except OSError as err:  # it may have started: the next look sees its run, or tries again
        _again_in(2.0, key, decision, job, held, pending)
        log("retry", job=decision.job, due=decision.due, error=repr(err))
        return True
    if status not in (200, 202):  # e.g. the scheduler has not started yet: the next scan tries again
        _again_in(0.5, key, decision, job, held, pending)
        log("retry", job=decision.job, due=decision.due, status=status)
        return True
    # Dkron answers once the run has ended; a run handed to a node that just died (Serf still
    # holds it alive for a few seconds) never started, and the due time is still unserved.
    if not any(start >= moment - timedelta(seconds=0.05) for start in api.starts(decision.job)):
        _again_in(0.3, key, decision, job, held, pending)
        log("lost", job=decision.job, due=decision.due, started=moment)
        return True
    done.add(key)
    pending.pop(key, None)
    due = decision.in_window or decision.due
    log(
        "run",
        job=decision.job,
        due=due,
        first_missed=decision.due,
        started=moment,
        late_s=round((moment - due).total_seconds(), 3),
        put_off=put_off,
    )
    return True


def _again_in(
    seconds: float,
    key: str,
    decision: Decision,
    job: dict[str, Any],
    held: dict[str, float],
    pending: dict[str, tuple[Decision, dict[str, Any]]],
) -> None:
    """Look at a decided run again in ``seconds``. A due time the leader's first run swallows is kept
    as decided: decided again after that run, the job's last run would hide it."""
    if decision.later is None and decision.not_before is None:
        held[key] = time.monotonic() + seconds
        return
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    pending[key] = (replace(decision, not_before=max(moment, decision.not_before or moment)), job)


def scheduler_start(api: Api, follower_seen: datetime, leader_since: datetime) -> tuple[datetime, datetime]:
    """Between which moments the new leader's scheduler started: polled every few hundredths of a
    second until it runs, as its first `@every` runs count from then."""
    earliest = max(follower_seen, leader_since - timedelta(seconds=SCHEDULER_WAIT_S))
    deadline = time.monotonic() + SCHEDULER_WAIT_S
    while time.monotonic() < deadline:
        asked = datetime.now(UTC)
        started = api.scheduler_started()
        if started is None:  # not told: assume it started as the leadership was seen
            return (leader_since - timedelta(seconds=POLL_S), leader_since)
        if started:
            return (earliest, datetime.now(UTC))
        earliest = asked
        time.sleep(0.03)
    return (earliest, datetime.now(UTC))


def main() -> None:
    api = Api(os.environ.get(API_ENV, "http://127.0.0.1:8080"))
    window_s = float(os.environ.get(WINDOW_ENV, "86400"))
    state = os.environ.get(STATE_ENV, "")
    notes = Notes(Path(state) if state else None)
    log("watching", api=api.base, window_s=window_s, leader_seen_at=notes.leader_seen_at)
    leadership: Leadership | None = None
    follower_seen = datetime.now(UTC)  # the last moment the node was seen not leading
    done: set[str] = set()
    held: dict[str, float] = {}
    pending: dict[str, tuple[Decision, dict[str, Any]]] = {}
    waiting = False
    last_note = 0.0
    # A restarted node's watcher keeps the last working leader it saw before the restart until
    # a leader has been back for a while: a leader that comes and goes at start-up is not one.
    first_leader: float | None = None if notes.leader_seen_at else time.monotonic() - SCAN_FOR_S

    def note(now: datetime) -> None:
        nonlocal last_note
        if time.monotonic() - last_note > NOTE_EVERY_S:
            last_note = time.monotonic()
            notes.note_jobs(api.jobs(), now)
        settled = first_leader is not None and time.monotonic() - first_leader >= SCAN_FOR_S
        notes.save(now if settled else None)

    while True:
        try:
            now = datetime.now(UTC)
            if api.leads():
                first_leader = first_leader or time.monotonic()
                if leadership is None:
                    noted = notes.copy()  # what was true before this leadership
                    log("leading", since=now, leader_seen_at=noted.leader_seen_at)
                    started = scheduler_start(api, follower_seen, now)
                    leadership = Leadership(now, started, noted)
                    log("scheduler", started_from=started[0], started_by=started[1])
                if waiting or now - leadership.since < timedelta(seconds=SCAN_FOR_S):
                    waiting = catch_up(api, leadership, window_s, done, held, pending)
                note(now)
            else:
                follower_seen, leadership, waiting = now, None, False
                pending.clear()
                if api.has_leader():
                    first_leader = first_leader or time.monotonic()
                    note(now)
        except OSError:
            pass  # the agent is starting or stopping: ask again
        except Exception as err:  # noqa: BLE001 (the watcher outlives a surprise; it says what it was)
            log("error", error=repr(err))
        time.sleep(POLL_S)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
