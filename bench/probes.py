"""What the benchmark observes: cluster health, job runs, container events and memory.

Plain functions over the project's own health checks (`components.health`) and
Dkron client, plus the Docker SDK. No timing policy here: `run.py` decides what
is measured against what.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from components.dkron_client import DkronClient
from components.docker_objects import engine
from components.health import observe, raft_peers


def docker_answers() -> bool:
    with engine() as client:
        return bool(client.ping())


# --- health --------------------------------------------------------------------------


def whole(api_urls: Mapping[str, str]) -> bool:
    """One leader every node agrees on, and every node sees all of them as alive servers."""
    view = observe(api_urls)
    if view.problems(list(api_urls)):
        return False
    return all(node.leader == view.leader for node in view.nodes.values())


def agreed_leader(api_urls: Mapping[str, str]) -> str | None:
    """The leader every node in `api_urls` names, or None."""
    view = observe(api_urls)
    leaders = {node.leader if node.error is None else None for node in view.nodes.values()}
    if len(leaders) == 1:
        return next(iter(leaders))
    return None


def wait_until(check: Callable[[], Any], timeout_s: float, poll_s: float = 0.25) -> float | None:
    """Poll `check` until it is truthy; the monotonic time it first was, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)


def wait_whole(
    api_urls: Mapping[str, str], timeout_s: float, stall_s: float
) -> tuple[float | None, str | None]:
    """Poll until the cluster is whole: (monotonic time it was, None), or (None, why not).

    Gives up early once every node has seen all the others alive for
    `stall_s` without any of them electing a leader: Dkron only tries to
    bootstrap on a member-join event, so such a cluster waits forever.
    """
    names = list(api_urls)
    deadline = time.monotonic() + timeout_s
    stalled_since: float | None = None
    while True:
        view = observe(api_urls)
        problems = view.problems(names)
        now = time.monotonic()
        if not problems:
            return now, None
        if view.leaderless_but_connected(names):
            stalled_since = stalled_since or now
            if now - stalled_since >= stall_s:
                return None, (
                    f"stalled: for {stall_s:.0f} s every node saw all {len(names)} as alive servers,"
                    " and none knew a leader"
                )
        else:
            stalled_since = None
        if now >= deadline:
            return None, f"not whole after {timeout_s:.0f} s: " + "; ".join(problems)[:400]
        time.sleep(0.25)


def voters(container: str) -> list[str]:
    """The Raft voters as the agent in `container` knows them."""
    return sorted(peer.node for peer in raft_peers(container).values() if peer.voter)


class HealthWatcher:
    """Polls in the background and remembers when the cluster was first whole."""

    def __init__(self, api_urls: Mapping[str, str], poll_s: float = 0.5) -> None:
        self.api_urls = dict(api_urls)
        self.poll_s = poll_s
        self.first_whole: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set() and self.first_whole is None:
            with contextlib.suppress(Exception):
                if whole(self.api_urls):
                    self.first_whole = time.monotonic()
            self._stop.wait(self.poll_s)


# --- job runs ------------------------------------------------------------------------


def started_at(execution: Mapping[str, Any]) -> float:
    """An execution's start as a Unix time (Dkron reports RFC3339 with nanoseconds)."""
    text = str(execution["started_at"]).replace("Z", "+00:00")
    # Python 3.11 takes at most 6 fractional digits.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


def executions(api_urls: Iterable[str], job: str) -> list[dict[str, Any]]:
    """The job's recorded executions, from the first node that answers."""
    for url in api_urls:
        with contextlib.suppress(Exception), DkronClient(url, timeout_s=3) as client:
            return client.executions(job)
    return []


class RunCollector:
    """Keeps every run of a job it sees (Dkron keeps only the last 100 per job)."""

    def __init__(self, api_urls: Iterable[str], job: str, poll_s: float = 5.0) -> None:
        self.api_urls = list(api_urls)
        self.job = job
        self.poll_s = poll_s
        self.runs: dict[str, float] = {}  # execution group -> start (Unix time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def collect(self) -> None:
        for execution in executions(self.api_urls, self.job):
            with contextlib.suppress(KeyError, ValueError):
                group = str(execution["group"])
                self.runs[group] = min(self.runs.get(group, float("inf")), started_at(execution))

    def __enter__(self) -> RunCollector:
        self.collect()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.collect()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.collect()

    def runs_between(self, since: float, until: float) -> int:
        return sum(1 for start in self.runs.values() if since <= start < until)


# --- Docker --------------------------------------------------------------------------


def container_events(
    label: str, since: float, until: float, engine_ref: str | None = None
) -> list[dict[str, Any]]:
    """Lifecycle events of the containers carrying `label` on one engine (the local one by default), oldest first."""
    with engine(engine_ref) as client:
        raw = client.api.events(
            since=int(since) - 1,
            until=int(until) + 2,
            filters={"type": "container", "label": label},
            decode=True,
        )
        events = [
            {
                "node": event["Actor"]["Attributes"].get("dkron-iac.node"),
                "action": event["Action"],
                "t": event["timeNano"] / 1e9,
            }
            for event in raw
            if event.get("Action") in ("create", "start", "kill", "die", "stop", "destroy")
        ]
    return sorted((e for e in events if since - 1 <= e["t"] <= until + 2), key=lambda e: e["t"])


def _memory_mib(stats: Mapping[str, Any]) -> float:
    """Memory in use as `docker stats` shows it: usage minus the inactive page cache."""
    memory = stats.get("memory_stats") or {}
    usage = float(memory.get("usage") or 0)
    details = memory.get("stats") or {}
    # cgroup v1 reports total_inactive_file, v2 inactive_file.
    inactive = float(details.get("total_inactive_file", details.get("inactive_file", 0)) or 0)
    if inactive < usage:
        usage -= inactive
    return usage / 2**20


def memory_mib(containers: Sequence[str], samples: int = 3, gap_s: float = 2.0) -> dict[str, float]:
    """Median of a few memory samples per container, in MiB."""
    seen: dict[str, list[float]] = {name: [] for name in containers}
    with engine() as client:
        for sample in range(samples):
            if sample:
                time.sleep(gap_s)
            for name in containers:
                stats = client.api.stats(name, stream=False, one_shot=True)
                seen[name].append(_memory_mib(stats))
    return {name: round(statistics.median(values), 1) for name, values in seen.items()}


def other_containers(exclude_prefixes: Sequence[str]) -> int:
    """Running containers that are not this benchmark's: load from other work on the machine."""
    with engine() as client:
        names = [c.name for c in client.containers.list()]
    return sum(1 for name in names if not name.startswith(tuple(exclude_prefixes)))
