"""A soak under repeated faults: a three-host cluster, one random fault after another.

The stack runs `tick` (`@every 2s`, `server: true:1`) on h1, h2 and h3 of a lab.
Every `every_s` seconds one fault strikes one host, drawn from a seeded random
generator (the seed is printed, so a failing run can be replayed):

- ``kill``: the node's container is killed, then `pulumi up` brings it back
  (as `make up` would);
- ``cut``: no packet reaches the host for `CUT_S` seconds;
- ``stop``: every process of the host is killed, and the host is started again
  `STOP_S` seconds later (Docker starts the node again: its restart policy).

Each fault is healed and the cluster seen whole again before the next one.
Throughout, a recorder reads the job's executions (Dkron keeps 100), who leads,
and every node container's log (the catch-up watcher's decisions and the
agent's own lines), so a run served twice can be explained afterwards.

What it counts, from the execution groups (one group is one dispatch):

- *doubles*: two runs of one due time. A leader's `@every` schedule starts
  over when it takes over, so due times are 2 s apart only within one
  leadership; two runs closer than `DOUBLE_S` serve one due time twice.
- *missed*: due times with no run (`harness.missed_due_times`: a gap of two
  intervals or more, unless a catch-up run ends it).

`python -m testing.soak --seconds 600 [--seed N]` makes its own lab (prefix
`dks`, 10.213.86.0/24) and stack, prints the report as JSON, and removes both.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from components.dkron_client import DkronClient
from components.docker_objects import engine
from nodeside.catchup import parse_log

from .harness import TestStack, caught_up_starts, missed_due_times, tick_job
from .lab import Lab, lab_session

LAB_PREFIX = "dks"
LAB_SUBNET = "10.213.86.0/24"
PLACEMENT = {"n1": "h1", "n2": "h2", "n3": "h3"}
EVERY_S = 2.0
DOUBLE_S = 0.9
"""Two runs of a job due every 2 s closer than this serve one due time twice."""
CUT_S = 8.0
STOP_S = 10.0
KINDS = ("kill", "cut", "stop")
WHOLE_WITHIN_S = 120.0
HANDED_ON = "did not answer; handing the run to another"
"""The agent's line when a one-node run goes to another node (agent/dispatch.go)."""
GAP_MARKS = ("catch-up", "leadership", "AgentRun", "Starting scheduler", "did not answer", "error dialing")
"""The log lines that explain a gap: who led, what the watcher and its guard did, where runs went."""


@dataclass
class Recorder:
    """What the soak saw, read every few seconds from a background thread."""

    stack: TestStack
    lab: Lab
    started: float = field(default_factory=time.time)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    """Per container id: its log as last read (a container replaced takes its log with it)."""
    leaders: list[tuple[float, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.collect()

    def _run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            leader = self.stack.leader_name()
            with self._lock:
                self.leaders.append((time.time(), leader))
            if time.monotonic() - last >= 4:
                self.collect()
                last = time.monotonic()
            self._stop.wait(1)

    def collect(self) -> None:
        """Read the executions from the first node that answers, and every container's log."""
        for node in self.stack.node_names():
            try:
                with DkronClient(self.stack.api_url(node), timeout_s=3) as client:
                    found = client.executions("tick")
            except Exception:  # noqa: BLE001, S112 (down or starting: ask the next node)
                continue
            with self._lock:
                for execution in found:
                    self.executions[f"{execution['group']}/{execution['node_name']}"] = execution
            break
        for node in self.stack.node_names():
            self.read_log(node)

    def read_log(self, node: str) -> None:
        with contextlib.suppress(Exception), engine(self.lab.engine_ref(PLACEMENT[node])) as client:
            container = client.containers.get(self.stack.container(node))
            text = container.logs(since=int(self.started), timestamps=True).decode(errors="replace")
            with self._lock:
                self.logs[f"{node}/{container.id[:12]}"] = text

    def starts(self) -> list[tuple[float, str]]:
        """Every dispatch (execution group) with the node that ran it, in time order."""
        with self._lock:
            runs = {int(e["group"]): str(e["node_name"]) for e in self.executions.values()}
        return sorted((group / 1e9, node) for group, node in runs.items() if group / 1e9 >= self.started)

    def watcher_lines(self) -> list[dict[str, Any]]:
        with self._lock:
            logs = dict(self.logs)
        return [
            {"container": name, **line}
            for name, text in logs.items()
            for line in parse_log(text)
            if line["event"] != "watching"
        ]

    def leaderless(self, since: float, until: float) -> bool:
        """Whether the cluster had no leader, or changed leader, between ``since`` and ``until``."""
        with self._lock:
            seen = [leader for at, leader in self.leaders if since - 1 <= at <= until]
        return None in seen or len(set(seen)) > 1

    def count_lines(self, mark: str) -> int:
        """How many log lines, in every container seen, hold ``mark``."""
        with self._lock:
            return sum(text.count(mark) for text in self.logs.values())

    def log_lines_near(self, moment: float, around_s: float = 6.0) -> list[str]:
        """The containers' log lines stamped within ``around_s`` of ``moment`` (Dkron's and the watcher's)."""
        with self._lock:
            logs = dict(self.logs)
        picked = []
        for name, text in logs.items():
            for line in text.splitlines():
                stamp = _stamp(line)
                if stamp is not None and abs(stamp - moment) <= around_s:
                    picked.append((stamp, f"{name}: {line}"))
        return [line for _, line in sorted(picked)]


def _stamp(line: str) -> float | None:
    """When Docker took the log line (its RFC 3339 prefix, nanoseconds cut to microseconds)."""
    head = line.split(" ", 1)[0]
    whole, _, fraction = head.rstrip("Z").partition(".")
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00").timestamp()
    return None


@dataclass
class Soak:
    lab: Lab
    stack: TestStack
    seed: int
    seconds: float
    every_s: float = 25.0
    faults: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> dict[str, Any]:
        rng = random.Random(self.seed)
        print(f"soak: seed {self.seed}, {self.seconds:.0f} s, a fault every {self.every_s:.0f} s", flush=True)
        recorder = Recorder(self.stack, self.lab)
        recorder.start()
        began = time.monotonic()
        try:
            while time.monotonic() - began < self.seconds:
                slot = time.monotonic()
                kind, host = rng.choice(KINDS), rng.choice(sorted(PLACEMENT.values()))
                self.faults.append(self._fault(recorder, kind, host))
                time.sleep(max(0.0, self.every_s - (time.monotonic() - slot)))
        finally:
            time.sleep(2 * EVERY_S)
            recorder.stop()
        return self.report(recorder)

    def _fault(self, recorder: Recorder, kind: str, host: str) -> dict[str, Any]:
        node = next(n for n, h in PLACEMENT.items() if h == host)
        record: dict[str, Any] = {"fault": kind, "host": host, "node": node, "at": time.time()}
        print(f"soak: {kind} {host} ({node}) at {time.strftime('%H:%M:%S')}", flush=True)
        if kind == "kill":
            recorder.read_log(node)
            with engine(self.lab.engine_ref(host)) as client:
                client.containers.get(self.stack.container(node)).kill()
            recorder.read_log(node)
            self.stack.up(expect_no_changes=False)
        elif kind == "cut":
            self.lab.cut(host)
            time.sleep(CUT_S)
            self.lab.heal(host)
        else:
            recorder.read_log(node)
            self.lab.stop_host(host)
            time.sleep(STOP_S)
            self.lab.start_host(host)
        record["back"] = time.time()
        record["whole_after_s"] = self._wait_whole()
        record["until"] = time.time()
        record["leader_lost"] = recorder.leaderless(record["at"], record["until"])
        return record

    def _wait_whole(self) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < WHOLE_WITHIN_S:
            with contextlib.suppress(Exception):
                if self.stack.problems() == []:
                    return round(time.monotonic() - started, 1)
            time.sleep(1)
        return None

    def report(self, recorder: Recorder) -> dict[str, Any]:
        runs = recorder.starts()
        lines = recorder.watcher_lines()
        # A catch-up counts when a run started with it (one handed to a node that just died never does).
        # (A guarded catch-up's start is its run's own group, to the microsecond: hence the small slack.)
        caught_up = [
            c for c in caught_up_starts(lines, "tick") if any(-0.001 <= at - c < 0.5 for at, _ in runs)
        ]
        doubles: list[dict[str, Any]] = [
            {"first": a, "second": b, "apart_s": round(b[0] - a[0], 3)}
            for a, b in itertools.pairwise(runs)
            if b[0] - a[0] < DOUBLE_S
        ]
        starts = [at for at, _ in runs]
        first, last = (starts[0], starts[-1]) if starts else (0.0, 0.0)
        return {
            "seed": self.seed,
            "seconds": self.seconds,
            "faults": self.faults,
            "fault_counts": {kind: sum(f["fault"] == kind for f in self.faults) for kind in KINDS},
            "leader_lost": sum(bool(f["leader_lost"]) for f in self.faults),
            "unhealed": sum(f["whole_after_s"] is None for f in self.faults),
            "runs": len(runs),
            "due": int((last - first) // EVERY_S) + 1 if starts else 0,
            "doubles": doubles,
            "missed": missed_due_times(starts, EVERY_S, caught_up),
            "gaps": self._gaps(starts, caught_up),
            "caught_up": len(caught_up),
            "watcher": dict(Counter(str(line["event"]) for line in lines)),
            "handed_on": recorder.count_lines(HANDED_ON),
            "evidence": {f"{d['first'][0]:.3f}": recorder.log_lines_near(d["first"][0]) for d in doubles[:5]},
            "gap_evidence": {
                f"{gap['from']:.3f}": [
                    line
                    for line in recorder.log_lines_near(
                        (gap["from"] + gap["to"]) / 2, (gap["to"] - gap["from"]) / 2 + 2
                    )
                    if any(mark in line for mark in GAP_MARKS)
                ]
                for gap in self._gaps(starts, caught_up)[:8]
            },
            "catch_ups": [
                {k: v for k, v in line.items() if k != "event"} | {"event": line["event"]} for line in lines
            ],
        }

    def _gaps(self, starts: list[float], caught_up: list[float]) -> list[dict[str, Any]]:
        """Each gap that left due times without a run, with the fault in progress or just before."""
        found = []
        for earlier, later in itertools.pairwise(starts):
            missed = missed_due_times([earlier, later], EVERY_S, caught_up)
            if missed:
                fault = max((f for f in self.faults if f["at"] <= later), key=lambda f: f["at"], default=None)
                found.append(
                    {
                        "from": round(earlier, 3),
                        "to": round(later, 3),
                        "missed": missed,
                        "fault": f"{fault['fault']} {fault['host']} at {fault['at']:.1f}" if fault else None,
                        "leader_lost": bool(fault and fault["leader_lost"]),
                    }
                )
        return found


@contextlib.contextmanager
def soak_cluster(
    state_dir: Path, prefix: str = LAB_PREFIX, subnet: str = LAB_SUBNET
) -> Iterator[tuple[Lab, TestStack]]:
    """The soak's lab of three hosts and its stack, removed afterwards (also on failure)."""
    with lab_session(prefix, subnet, state_dir, 3) as lab:
        hosts = {name: lab.stack_host(name) for name in lab.hosts}
        nodes = [{"name": node, "host": host} for node, host in PLACEMENT.items()]
        stack = TestStack(nodes, hosts=hosts, jobs=[tick_job()])
        try:
            stack.up()
            yield lab, stack
        finally:
            stack.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--every", type=float, default=25.0, help="seconds between faults")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    with tempfile.TemporaryDirectory(prefix="soak-") as state, soak_cluster(Path(state)) as (lab, stack):
        report = Soak(lab, stack, seed, args.seconds, args.every).run()
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if not report["doubles"] else 1


if __name__ == "__main__":
    sys.exit(main())
