"""The catch-up watcher: a run that fell due while the cluster had no leader is started once.

Dkron never runs what fell due without a leader: the next leader schedules
every job from the moment it takes over. This watcher runs beside the agent
in every node's container (`python3 -m dkron_iac_jobs.catchup`, standard
library only) and acts only on the node that leads:

- While another node leads, it notes when it last saw a working leader
  (also in a file on the data volume, so a restart of every node keeps it).
- When its own node becomes leader, it reads every job. Dkron stores, at
  each run, when the job falls due next (``next``); a ``next`` that is still
  before this leadership began is a run nobody started. If it fell due after
  the last working leader was seen (less a margin) and within the job's
  window, the watcher starts the job once through the API and logs it.

Why a run is never started twice for one due time: Dkron's run writes the
job's new ``next`` through Raft before it runs anything, so once a run
started (by Dkron or a watcher) ``next`` has moved on and no watcher sees the
old due time again; a watcher on a node that lost leadership cannot start a
run at all (the write needs the leader). The watcher reads the job again
just before the run and stays away when the job's own schedule will run it
within a second anyway.

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
OUTAGE_MARGIN_S = 60.0
"""A leader may stop scheduling a little before it stops leading (a graceful stop): due times
this long before the last working leader was seen still count as missed."""
IMMINENT_S = 1.0
"""A job its own schedule runs within this long is left to it (two runs in one second otherwise)."""
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    """What the watcher does about one job at one moment."""

    job: str
    action: str
    """``run``, ``too-old`` (missed, but outside its window) or ``imminent``."""
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


def decide(
    job: Mapping[str, Any],
    now: datetime,
    leader_since: datetime,
    outage_from: datetime | None,
    window_s: float,
) -> Decision | None:
    """Whether ``job`` missed a run while there was no leader, and what to do about it.

    ``leader_since``: when this node's leadership began (as seen); ``outage_from``:
    when a working leader was last seen before it (None if never).
    """
    name = str(job.get("name", ""))
    schedule = str(job.get("schedule", ""))
    metadata = job.get("metadata") or {}
    if job.get("disabled") or job.get("parent_job") or schedule in ("", "@manually"):
        return None
    if str(metadata.get(OFF_KEY, "")).lower() in ("off", "false", "no"):
        return None
    due = parse_time(job.get("next"))
    if due is None or due >= leader_since:
        return None  # not missed: the leader's own schedule has it
    if outage_from is not None and due < outage_from - timedelta(seconds=OUTAGE_MARGIN_S):
        return None  # stale: it was disabled then, or its schedule changed; no outage lost it
    window = go_duration_seconds(str(metadata.get(WINDOW_KEY, ""))) or window_s
    in_window = _first_due_from(job, due, now - timedelta(seconds=window))
    if in_window is None or in_window >= leader_since:
        return Decision(name, "too-old", due)
    if _regular_run(job, now, leader_since) - now < timedelta(seconds=IMMINENT_S):
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

    def run(self, name: str) -> int:
        status, _ = self.call("POST", f"/v1/jobs/{urllib.parse.quote(name, safe='')}/run", timeout=30.0)
        return status


class LeaderSeen:
    """When this node last saw a working leader, kept on the data volume across restarts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.at: datetime | None = None
        self._written = 0.0
        if path is not None and path.exists():
            try:
                self.at = parse_time(json.loads(path.read_text()).get("leader_seen_at"))
            except (OSError, ValueError, AttributeError):
                self.at = None

    def saw(self, now: datetime) -> None:
        self.at = now
        if self.path is not None and time.monotonic() - self._written > 2.0:
            self._written = time.monotonic()
            try:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"leader_seen_at": now.isoformat()}))
                tmp.replace(self.path)
            except OSError:
                pass


def log(event: str, **fields: object) -> None:
    """One line on the agent's output (the container's log)."""
    text = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
    print(f"{LOG_PREFIX} {event} {json.dumps(text, sort_keys=True)}", flush=True)


def catch_up(
    api: Api, leader_since: datetime, outage_from: datetime | None, window_s: float, done: set[str]
) -> None:
    """Start each job this leadership found missed, once; ``done`` holds ``job@due`` already handled."""
    now = datetime.now(UTC)
    for job in api.jobs():
        decision = decide(job, now, leader_since, outage_from, window_s)
        if decision is None:
            continue
        key = f"{decision.job}@{decision.due.isoformat()}"
        if key in done:
            continue
        if decision.action != "run":
            done.add(key)
            log(decision.action, job=decision.job, due=decision.due, window_s=window_s)
            continue
        again = api.job(decision.job)  # what another run may have changed meanwhile
        if again is None or parse_time(again.get("next")) != decision.due:
            done.add(key)
            continue
        started = datetime.now(UTC)
        status = api.run(decision.job)
        if status in (200, 202):
            done.add(key)
            late = (started - (decision.in_window or decision.due)).total_seconds()
            log(
                "run",
                job=decision.job,
                due=decision.in_window,
                first_missed=decision.due,
                started=started,
                late_s=round(late, 3),
            )
        else:  # e.g. the scheduler has not started yet: the next scan tries again
            log("retry", job=decision.job, due=decision.due, status=status)


def main() -> None:
    api = Api(os.environ.get(API_ENV, "http://127.0.0.1:8080"))
    window_s = float(os.environ.get(WINDOW_ENV, "86400"))
    state = os.environ.get(STATE_ENV, "")
    seen = LeaderSeen(Path(state) if state else None)
    log("watching", api=api.base, window_s=window_s, leader_seen_at=seen.at)
    leader_since: datetime | None = None
    outage_from: datetime | None = None
    done: set[str] = set()
    while True:
        try:
            now = datetime.now(UTC)
            if api.leads():
                if leader_since is None:
                    leader_since, outage_from = now, seen.at
                    log("leading", since=leader_since, leader_seen_at=outage_from)
                if now - leader_since < timedelta(seconds=SCAN_FOR_S):
                    catch_up(api, leader_since, outage_from, window_s, done)
                seen.saw(now)
            else:
                leader_since = None
                if api.has_leader():
                    seen.saw(now)
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
