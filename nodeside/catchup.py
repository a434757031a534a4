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

Why a run is never started twice for one due time: the watcher only works out
what an outage swallowed; the agent's catch-up guard (`agent/catchup.go`, on the
node's socket) has the last word. In the leader's own process it starts the run
only if this node leads, its scheduler has started, that scheduler has not run
the job since it started and will not within a second, and no run of the job
began at or after the due time (one an earlier leader dispatched, or one an
earlier leader's watcher started). A stack without mutual TLS runs Dkron's own
API, which has no guard: there the watcher estimates the scheduler's first run
from when it saw the leadership begin, reads the job again and asks which jobs
run before it starts one through the API, and leaves a job alone when its own
schedule runs it within a second anyway (issue 33 measured doubles under
repeated faults on that path).

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import local_api
from .schedule import every_seconds, go_duration_seconds, next_due

OFF_KEY = "dkron-iac.catch-up"
WINDOW_KEY = "dkron-iac.catch-up-window"
LOG_PREFIX = "dkron-iac catch-up:"

API_ENV = "CATCHUP_API"
WINDOW_ENV = "CATCHUP_WINDOW_S"
STATE_ENV = "CATCHUP_STATE"
CAUGHT_UP_EVENTS = ("run", "deferred")
"""The watcher's log events of a catch-up started (deferred: to a second after the scheduler's run)."""
GUARD_PATH = "/iac/v1/catch-up/"
"""The agent's catch-up guard, on the node's socket (agent/catchup.go)."""

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
"""A catch-up must start at least this long before the second in which the job's own schedule runs
it next (due times are whole seconds): never two runs of a job in one second."""
GUARD_SLACK_S = 1.0
"""With the agent's guard, due times up to this long after the estimated first run of the new
scheduler are still asked about (the estimate may be that early)."""
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
    guarded: bool = False,
) -> Decision | None:
    """Whether ``job`` missed a run while there was no leader, and what to do about it.

    ``leader_since``: when this node's leadership began (as seen); ``outage_from``:
    when a working leader was last seen before it (None if never); ``noted_next``:
    the job's next due time as noted then. ``guarded``: the agent's catch-up guard
    has the last word (`Api.catch_up`), with the scheduler's own times, and the estimate
    of the scheduler's first run only keeps the watcher from asking about due times well
    past it; without the guard (a stack without mutual TLS) the estimate decides.
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
    regular = _regular_run(job, now, leader_since)
    if every_seconds(schedule) is None and due >= leader_since:
        return None  # not missed: the leader's own schedule has it
    # The estimate of the scheduler's first run may be a second early (it starts after a Raft
    # barrier, counted on a whole second); with the guard, the due times of that second are its
    # to weigh against the scheduler's real times.
    slack = GUARD_SLACK_S if guarded else -IMMINENT_S
    if due >= regular + timedelta(seconds=slack):
        return None  # served by the leader's own schedule (an @every job restarts when a leader takes over)
    if due > now:  # an @every due time the new leader's schedule may skip: looked at when it is due
        return Decision(name, "wait", due)
    if outage_from is not None and due < outage_from - timedelta(seconds=OUTAGE_MARGIN_S):
        return None  # stale: it was disabled then, or its schedule changed; no outage lost it
    window = go_duration_seconds(str(metadata.get(WINDOW_KEY, ""))) or window_s
    in_window = _first_due_from(job, due, now - timedelta(seconds=window))
    if in_window is None or in_window > now:
        return Decision(name, "too-old", due)
    if not guarded and regular - now < timedelta(seconds=IMMINENT_S):
        return Decision(name, "imminent", due, in_window)
    return Decision(name, "run", due, in_window)


def _first_due_from(job: Mapping[str, Any], due: datetime, start: datetime) -> datetime | None:
    """The first due time at or after ``start``, counting from the missed ``due``."""
    if due >= start:
        return due
    schedule = str(job["schedule"])
    every = every_seconds(schedule)
    if every is not None:
        return due + timedelta(seconds=every * math.ceil((start - due).total_seconds() / every))
    return next_due(schedule, str(job["name"]), start - timedelta(seconds=1), str(job.get("timezone") or ""))


def _regular_run(job: Mapping[str, Any], now: datetime, leader_since: datetime) -> datetime:
    """The earliest the leader's own schedule may run the job next."""
    schedule = str(job["schedule"])
    every = every_seconds(schedule)
    if every is not None:
        # Scheduled when the leader took over (seen up to POLL_S late), on a whole second.
        taken_over = leader_since - timedelta(seconds=POLL_S)
        return taken_over.replace(microsecond=0) + timedelta(seconds=every)
    upcoming = next_due(schedule, str(job["name"]), now, str(job.get("timezone") or ""))
    return upcoming or now + timedelta(days=3650)


class Api:
    """The local agent's HTTP API."""

    def __init__(self, base: str) -> None:
        self.base = local_api.check_base(base, API_ENV)

    def call(self, method: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return local_api.call_json(self.base, method, path, timeout)

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

    def running(self) -> set[str]:
        """Jobs with an execution in progress anywhere in the cluster, as far as it answers quickly.

        Dkron asks every server it still holds alive; one that just died makes the
        answer wait or fail, and the run that was missed should not wait for that.
        """
        try:
            status, body = self.call("GET", "/v1/busy", timeout=1.5)
        except OSError:
            return set()
        if status != 200 or not isinstance(body, list):
            return set()
        return {str(execution.get("job_name")) for execution in body if isinstance(execution, dict)}

    def run(self, name: str) -> int:
        status, _ = self.call("POST", f"/v1/jobs/{urllib.parse.quote(name, safe='')}/run", timeout=10.0)
        return status

    guarded = True
    """Whether the agent serves the catch-up guard (our agent's socket does; a stack without
    mutual TLS runs Dkron's API, which answers 404, and the watcher then decides alone)."""

    def catch_up(self, name: str, due: datetime) -> tuple[int, dict[str, Any]]:
        """Ask the agent's guard to start ``name`` for ``due``: 202 started, 409 with the reason not
        (``verdict``: not-leading, no-scheduler, not-scheduled, scheduled-run, imminent, served)."""
        query = urllib.parse.urlencode({"due": due.isoformat()})
        path = f"{GUARD_PATH}{urllib.parse.quote(name, safe='')}?{query}"
        status, body = local_api.call(self.base, "POST", path, timeout=5.0)
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}


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


def catch_up(
    api: Api, leader_since: datetime, noted: Notes, window_s: float, done: set[str], held: dict[str, float]
) -> bool:
    """Start each job this leadership found missed, once; ``done`` holds ``job@due`` already handled,
    ``held`` those to look at again later (monotonic time).

    ``noted``: what was noted before this leadership began. True while something is left to look at.
    """
    now = datetime.now(UTC)
    jobs = api.jobs()
    running: set[str] | None = None
    waiting = False
    for job in jobs:
        name = str(job.get("name", ""))
        decision = decide(
            job, now, leader_since, noted.leader_seen_at, window_s, noted.due(name), api.guarded
        )
        if decision is None:
            continue
        key = f"{decision.job}@{decision.due.isoformat()}"
        if key in done:
            continue
        if decision.action == "wait":
            waiting = True
            continue
        if decision.action != "run":
            done.add(key)
            log(decision.action, job=decision.job, due=decision.due, window_s=window_s)
            continue
        if held.get(key, 0.0) > time.monotonic():
            waiting = True
            continue
        if api.guarded:
            outcome = _guarded(api, decision, key, done, held)
            if outcome is not None:
                waiting = waiting or outcome
                continue
        running = api.running() if running is None else running
        if decision.job in running:
            done.add(key)
            log("running", job=decision.job, due=decision.due)
            continue
        again = api.job(decision.job)
        if again is None or again.get("next") != job.get("next"):
            # A run started meanwhile moves the stored next time, and so does a leader still
            # applying Raft's log: look again in a second, when either shows (a run as its last run).
            held[key] = time.monotonic() + 1.0
            waiting = True
            continue
        started = datetime.now(UTC)
        try:
            status = api.run(decision.job)
        except OSError as err:  # it may have started: the next look sees its run, or tries again
            held[key] = time.monotonic() + 2.0
            waiting = True
            log("retry", job=decision.job, due=decision.due, error=repr(err))
            continue
        if status in (200, 202):
            done.add(key)
            due = decision.in_window or decision.due
            log(
                "run",
                job=decision.job,
                due=due,
                first_missed=decision.due,
                started=started,
                late_s=round((started - due).total_seconds(), 3),
            )
        else:  # e.g. the scheduler has not started yet: the next scan tries again
            held[key] = time.monotonic() + 0.5
            waiting = True
            log("retry", job=decision.job, due=decision.due, status=status)
    return waiting


GUARD_HOLDS = {"no-scheduler": 0.2, "not-leading": 1.0}
"""Verdicts of the guard that are asked again after so many seconds; the others are final."""


def _guarded(api: Api, decision: Decision, key: str, done: set[str], held: dict[str, float]) -> bool | None:
    """Let the agent's guard decide and start the run; True: ask again later, False: done,
    None: the agent has no guard (the watcher decides alone from now on)."""
    due = decision.in_window or decision.due
    try:
        status, answer = api.catch_up(decision.job, due)
    except OSError as err:  # it may have started: the guard sees its run when asked again
        held[key] = time.monotonic() + 1.0
        log("retry", job=decision.job, due=decision.due, error=repr(err))
        return True
    if status == 404:
        api.guarded = False
        return None
    verdict = str(answer.get("verdict", ""))
    if status == 202:
        done.add(key)
        # The run's execution group (nanoseconds), cut to microseconds: never after the run's start.
        started = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=int(answer.get("group", 0)) // 1000
        )
        log(  # deferred: it starts a second after the scheduler's own imminent run (the agent logs it)
            "deferred" if verdict == "deferred" else "run",
            job=decision.job,
            due=due,
            first_missed=decision.due,
            started=started,
            late_s=round((started - due).total_seconds(), 3),
        )
        return False
    if status == 409 and verdict and verdict not in GUARD_HOLDS:
        done.add(key)
        log(verdict, job=decision.job, due=due, detail=answer.get("detail", ""))
        return False
    held[key] = time.monotonic() + GUARD_HOLDS.get(verdict, 0.5)
    if verdict != "no-scheduler":  # the scheduler starts within moments of the leadership: not worth a line
        log("retry", job=decision.job, due=decision.due, status=status, verdict=verdict)
    return True


def main() -> None:
    api = Api(os.environ.get(API_ENV, "http://127.0.0.1:8080"))
    window_s = float(os.environ.get(WINDOW_ENV, "86400"))
    state = os.environ.get(STATE_ENV, "")
    notes = Notes(Path(state) if state else None)
    log("watching", api=api.base, window_s=window_s, leader_seen_at=notes.leader_seen_at)
    leader_since: datetime | None = None
    noted = Notes(None)
    done: set[str] = set()
    held: dict[str, float] = {}
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
                if leader_since is None:
                    leader_since = now
                    noted = notes.copy()  # what was true before this leadership
                    log("leading", since=leader_since, leader_seen_at=noted.leader_seen_at)
                if waiting or now - leader_since < timedelta(seconds=SCAN_FOR_S):
                    waiting = catch_up(api, leader_since, noted, window_s, done, held)
                note(now)
            else:
                leader_since, waiting = None, False
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
