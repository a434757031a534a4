"""Faults on a real three-node cluster: the jobs survive and the cluster heals.

One stack serves every test, in file order. Before the first fault a set of
jobs is registered through the API (not through the stack config, so no
`pulumi up` can put back a job the cluster lost), among them `tick`, an
`@every 1s` job pinned to exactly one server. After each fault the cluster
must be whole again, by itself or after ONE `pulumi up`, and every node must
hold exactly the job definitions registered before the faults (their managed
fields: name, schedule, tags, executor, executor_config, ...).

A recorder thread keeps every execution of `tick` (Dkron keeps only the last
100 per job) and the leader over time, so the last test can count the runs
that happened twice across all the faults.

The Docker daemon restart stops every container on its engine, so it runs on
an engine of the suite's own: a one-host lab (`testing.lab`, a dockerd in a
network namespace) with a second cluster holding the same jobs, and its own
recorder. The machine's dockerd is never signalled.

Every node keeps its IP address through every fault. Raft knows servers by
address, and before nodes had fixed addresses a daemon restart (which starts
every container at once) could hand node A the address node B had; Dkron
4.0.5's leader then removed B as a stale server, and about one run in five
ended with a cluster that never elected a leader again. The stop/start fault
now starts the nodes in the reverse order of their addresses to provoke
exactly that, and every heal checks that the addresses did not move.

A fault the cluster does not heal from fails, and the fault tests after it
are skipped (they would only report the same broken cluster).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import re
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker
import pytest
import requests

from components.dkron_client import DkronClient, DkronError
from components.docker_objects import engine
from components.docker_objects.engine_ref import locator
from components.health import observe
from components.job_provider import managed_job
from nodeside.catchup import OFF_KEY, WINDOW_KEY
from testing.harness import (
    TestStack,
    caught_up_starts,
    derived_base_image,
    eventually,
    free_port_block,
    missed_due_times,
    register_jobs,
    remove_image,
    watcher_lines,
)
from testing.lab import Lab, lab_session

# Timing-sensitive (self-healing within a minute, missed due times): `make test` runs this
# module alone, after the others, not beside them on a busy 2-core machine.
pytestmark = pytest.mark.alone

NODES = [{"name": "f1"}, {"name": "f2"}, {"name": "f3"}]
# The daemon restart's engine: a lab of one host, with names and a subnet no other lab uses.
LAB_PREFIX = "dkd"
LAB_SUBNET = "10.213.81.0/24"
ONE_SERVER = {"server": "true:1"}
TICK = {
    "name": "tick",
    "schedule": "@every 1s",
    "tags": ONE_SERVER,
    "executor": "shell",
    "executor_config": {"command": "echo tick"},
}
# Due every 5 s: a fault that leaves the cluster without a leader past its due time makes the
# catch-up watcher start it once; its runs are counted for missed due times.
BEAT = {**TICK, "name": "beat", "schedule": "@every 5s", "executor_config": {"command": "echo beat"}}
BEAT_EVERY_S = 5.0
JOBS: list[dict[str, Any]] = [
    TICK,
    BEAT,
    {
        "name": "backup",
        "displayname": "Nightly backup",
        "schedule": "0 30 2 * * *",
        "timezone": "Europe/Paris",
        "owner": "ops",
        "owner_email": "ops@example.com",
        "tags": ONE_SERVER,
        "metadata": {"team": "ops"},
        "retries": 2,
        "concurrency": "forbid",
        "executor": "shell",
        "executor_config": {"command": "echo backup", "shell": "true", "env": "MODE=full", "timeout": "30s"},
    },
    {
        "name": "parent-job",
        "schedule": "@manually",
        "tags": ONE_SERVER,
        "executor": "shell",
        "executor_config": {"command": "echo parent"},
    },
    {
        "name": "child-job",
        "parent_job": "parent-job",
        "tags": ONE_SERVER,
        "executor": "shell",
        "executor_config": {"command": "echo child"},
    },
    {
        "name": "probe",
        "schedule": "@every 1h",
        "tags": ONE_SERVER,
        "executor": "http",
        "executor_config": {"method": "GET", "url": "http://127.0.0.1:8080/health", "expectCode": "200"},
    },
    {
        "name": "paused",
        "schedule": "@hourly",
        "disabled": True,
        "executor": "shell",
        "executor_config": {"command": "echo never"},
    },
]
JOB_NAMES = sorted(job["name"] for job in JOBS)
# How long a cluster whose containers all run may take to be whole by itself
# before the test falls back to one `pulumi up` (it takes 2-5 s when it works).
SELF_HEAL_S = 60


# --- the recorder ------------------------------------------------------------------------


@dataclass
class Recorder:
    """Every execution of `tick` seen on any node, and the leader over time."""

    stack: TestStack
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    beats: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the catch-up watchers logged, read every few seconds: a container a fault or
    # an update replaces takes its log with it.
    watcher: dict[str, dict[str, Any]] = field(default_factory=dict)
    leaders: list[tuple[float, str | None]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tick-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        last_executions = 0.0
        while not self._stop.is_set():
            leader = self.stack.leader_name()
            with self._lock:
                self.leaders.append((time.time(), leader))
            # Dkron keeps the last 100 executions: at one a second, every few seconds is plenty.
            if time.monotonic() - last_executions >= 3:
                self.collect()
                self.collect_watcher_lines()
                last_executions = time.monotonic()
            self._stop.wait(1)

    def collect(self) -> None:
        for node in self.stack.node_names():
            try:
                with DkronClient(self.stack.api_url(node), timeout_s=3) as client:
                    found = client.executions("tick")
                    beats = client.executions("beat")
            except (requests.RequestException, DkronError, ValueError):
                continue  # this node is down or still starting: ask the next one
            with self._lock:
                self.polls += 1
                for kept, executions in ((self.executions, found), (self.beats, beats)):
                    for execution in executions:
                        key = str(
                            execution.get("id") or f"{execution['started_at']}-{execution['node_name']}"
                        )
                        kept[key] = execution
            return

    def collect_watcher_lines(self) -> None:
        with contextlib.suppress(Exception):  # the engine may be restarting
            lines = _watcher_lines(self.stack, since=time.time() - 120)
            with self._lock:
                for line in lines:
                    self.watcher[json.dumps(line, sort_keys=True)] = line

    def watcher_lines_between(self, since: float, until: float) -> list[dict[str, Any]]:
        self.collect_watcher_lines()
        with self._lock:
            lines = list(self.watcher.values())
        stamped = [
            (line, line.get("started") or line.get("since") or line.get("started_by") or line.get("due"))
            for line in lines
        ]
        return [line for line, at in stamped if at and since <= _iso(str(at)) <= until]

    def beat_starts(self) -> list[float]:
        with self._lock:
            return sorted({int(e["group"]) / 1e9 for e in self.beats.values()})

    def snapshot(self) -> tuple[list[dict[str, Any]], list[tuple[float, str | None]]]:
        with self._lock:
            return list(self.executions.values()), list(self.leaders)

    def fault(self, name: str) -> dict[str, Any]:
        """Open the record of one fault; the test fills in how it healed."""
        record: dict[str, Any] = {"fault": name, "at": time.time()}
        self.faults.append(record)
        return record


# --- helpers -----------------------------------------------------------------------------


def _api(stack: TestStack) -> dict[str, str]:
    return {n: stack.api_url(n) for n in stack.node_names()}


def _engine(stack: TestStack) -> str | None:
    """The one engine the stack's nodes run on, as the last update recorded it (None: the local one)."""
    (ref,) = {info.get("engine") or None for info in stack.last_outputs["nodes"].values()}
    return ref


def _containers(stack: TestStack) -> dict[str, str]:
    """Each node's container locator (its name, and its engine unless local)."""
    return {n: locator(stack.container(n), _engine(stack)) for n in stack.node_names()}


def _problems(stack: TestStack) -> list[str]:
    return observe(_api(stack), _containers(stack)).problems(stack.node_names())


def _leader(stack: TestStack, nodes: list[str] | None = None) -> str | None:
    return observe({n: stack.api_url(n) for n in nodes or stack.node_names()}).leader


def _jobs_on(stack: TestStack, node: str) -> dict[str, dict[str, Any]]:
    with DkronClient(stack.api_url(node), timeout_s=5) as client:
        return {job["name"]: managed_job(job) for job in client.list_jobs()}


def _job_differences(expected: dict[str, dict[str, Any]], live: dict[str, dict[str, Any]]) -> list[str]:
    found = [f"{name}: missing" for name in sorted(set(expected) - set(live))]
    found += [f"{name}: not registered by the test" for name in sorted(set(live) - set(expected))]
    for name in sorted(set(expected) & set(live)):
        for key, value in expected[name].items():
            if live[name].get(key) != value:
                found.append(f"{name}.{key}: was {value!r}, now {live[name].get(key)!r}")
    return found


def _assert_jobs_identical(stack: TestStack, expected: dict[str, dict[str, Any]], nodes: list[str]) -> None:
    """Every node in `nodes` holds exactly the `expected` job definitions.

    A node that has just rejoined may still be replaying the Raft log, so give
    its replica a little time; a definition that differs is reported field by field.
    """
    seen: dict[str, list[str]] = {}

    def identical() -> bool:
        for node in nodes:
            seen[node] = _job_differences(expected, _jobs_on(stack, node))
        return not any(seen.values())

    try:
        eventually(f"the job definitions on {', '.join(nodes)}", identical, 30)
    except AssertionError as err:
        raise AssertionError(f"{err}; differences: {json.dumps(seen, indent=1)}") from None


def _container_states(stack: TestStack) -> dict[str, dict[str, Any]]:
    with engine(_engine(stack)) as client:
        states = {}
        for node in stack.node_names():
            with contextlib.suppress(docker.errors.NotFound):
                container = client.containers.get(stack.container(node))
                states[node] = {
                    "id": container.id,
                    "running": container.status == "running",
                    "started_at": container.attrs["State"]["StartedAt"],
                }
        return states


def _kill(stack: TestStack, node: str) -> None:
    with engine(_engine(stack)) as client:
        client.containers.get(stack.container(node)).kill()


def _heal(faults: Faults, record: dict[str, Any], self_heal_s: float = SELF_HEAL_S) -> None:
    """Whole again by itself (if every container runs), else after ONE `pulumi up`.

    If it is not, and the nodes' logs show the known Dkron bug, the test is an
    expected failure and the cluster is marked broken for the tests after it.
    """
    stack = faults.stack
    started = time.monotonic()
    states = _container_states(stack)
    all_running = len(states) == len(NODES) and all(s["running"] for s in states.values())
    how = "by itself"
    whole = all_running and _wait_whole(stack, self_heal_s)
    up_error: Exception | None = None
    if not whole:
        how = "after one pulumi up"
        up_started = time.monotonic()
        try:
            stack.up()
        except Exception as err:  # noqa: BLE001 - judged below, with the cluster's state
            up_error = err
        record["up_s"] = round(time.monotonic() - up_started, 1)
        # The update's own gates waited for the cluster to be whole; allow a moment for a
        # view taken right after it.
        whole = up_error is None and _wait_whole(stack, 30)
    record["addresses_after"] = _addresses(stack)
    if not whole:
        problems = _problems(stack)
        record.update(healed=False, problems=problems)
        with contextlib.suppress(Exception):  # reads need no leader: is the data still there?
            record["jobs_intact"] = all(
                not _job_differences(faults.expected_jobs, _jobs_on(stack, n)) for n in stack.node_names()
            )
        print("FAULT", json.dumps(record))
        faults.broken_by = record["fault"]
        if up_error is not None:
            raise AssertionError(f"one pulumi up failed: {up_error}") from up_error
        raise AssertionError(f"not whole after one pulumi up: {problems}")
    record["healed"] = how
    record["heal_s"] = round(time.monotonic() - started, 1)
    record["healed_at"] = time.time()
    record["catch_ups"] = _watcher_lines(stack, since=record["at"])
    print("FAULT", json.dumps(record))
    # Fixed addresses: whatever happened, every node is back at its own.
    assert record["addresses_after"] == record["addresses_before"], record
    recorded = {n: info["address"] for n, info in stack.outputs()["nodes"].items()}
    assert record["addresses_after"] == recorded, record


def _watcher_lines(stack: TestStack, since: float) -> list[dict[str, Any]]:
    """What the catch-up watchers logged since ``since`` (every node's log)."""
    return watcher_lines([stack.container(n) for n in stack.node_names()], since, _engine(stack))


def _addresses(stack: TestStack) -> dict[str, str | None]:
    """Each node container's IP address on the cluster network (None if not running)."""
    with engine(_engine(stack)) as client:
        found: dict[str, str | None] = {}
        for node in stack.node_names():
            try:
                networks = client.containers.get(stack.container(node)).attrs["NetworkSettings"]["Networks"]
            except docker.errors.NotFound:
                found[node] = None
                continue
            if "host" in networks:  # on its host's network: the address the node advertises
                found[node] = _advertised_address(stack, node)
                continue
            found[node] = next((n["IPAddress"] or None for n in networks.values()), None)
        return found


def _advertised_address(stack: TestStack, node: str) -> str | None:
    """The address the node's own member list gives it (None if it does not answer)."""
    with contextlib.suppress(requests.RequestException, DkronError, ValueError), stack.client(node) as client:
        return next((str(m["Addr"]) for m in client.members() if m.get("Name") == node), None)
    return None


def _require_working_cluster(faults: Faults) -> None:
    if faults.broken_by:
        pytest.skip(f"the cluster was broken by an earlier fault ({faults.broken_by})")


def _wait_whole(stack: TestStack, timeout_s: float) -> bool:
    try:
        eventually("the cluster to be whole", lambda: _problems(stack) == [], timeout_s, poll_s=2)
    except AssertionError:
        return False
    return True


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _started(execution: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(execution["started_at"]).replace("Z", "+00:00")).timestamp()


def _tick_ran_since(recorder: Recorder, since: float) -> bool:
    recorder.collect()
    executions, _ = recorder.snapshot()
    return any(_started(e) > since for e in executions)


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Faults:
    stack: TestStack
    recorder: Recorder
    expected_jobs: dict[str, dict[str, Any]]
    images: list[str] = field(default_factory=list)
    broken_by: str | None = None


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    port_base = free_port_block(len(NODES))
    stack = TestStack(NODES, ports={"bind_address": "127.0.0.1", "api_port_base": port_base})
    stack.port_base = port_base
    with _faults_on(stack) as state:
        yield state


@pytest.fixture(scope="module")
def lab_faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Faults, Lab]]:
    """The same jobs on a cluster whose three nodes run on a one-host lab's engine."""
    with lab_session(LAB_PREFIX, LAB_SUBNET, tmp_path_factory.mktemp("lab"), hosts=1) as lab:
        hosts = {"h1": lab.stack_host("h1")}
        with _faults_on(TestStack([{**node, "host": "h1"} for node in NODES], hosts=hosts)) as state:
            yield state, lab


@contextlib.contextmanager
def _faults_on(stack: TestStack) -> Iterator[Faults]:
    """Deploys the stack, registers the jobs through the API and starts the recorder; then
    destroys the stack, even on failure."""
    recorder: Recorder | None = None
    images: list[str] = []
    try:
        stack.up(refresh=False)
        with stack.client("f1") as client:
            register_jobs(client, JOBS)  # the parent before its child
        eventually(
            "every node to list every job",
            lambda: all(sorted(_jobs_on(stack, n)) == JOB_NAMES for n in stack.node_names()),
            30,
        )
        expected = _jobs_on(stack, "f1")
        # Dkron stored what was sent, and every replica agrees.
        assert expected == {job["name"]: managed_job(job) for job in JOBS}
        _assert_jobs_identical(stack, expected, stack.node_names())
        recorder = Recorder(stack)
        recorder.start()
        # A few seconds of runs before the first fault: the counts below cover time on both sides.
        eventually("five runs of tick", lambda: _runs_recorded(recorder) >= 5, 30)
        yield Faults(stack, recorder, expected, images)
    finally:
        if recorder is not None:
            recorder.stop()
        stack.close()
        for tag in images:
            remove_image(tag)


# --- the faults --------------------------------------------------------------------------


def _open_fault(faults: Faults, name: str) -> dict[str, Any]:
    """Start the record of one fault, on a cluster that is whole (given a minute to be)."""
    _require_working_cluster(faults)
    whole = _wait_whole(faults.stack, 60)
    assert whole, f"not whole before {name}: {_problems(faults.stack)}"
    addresses = _addresses(faults.stack)
    record = faults.recorder.fault(name)
    record["addresses_before"] = addresses
    return record


def _kill_and_heal(faults: Faults, fault: str, victim: str) -> None:
    stack, recorder = faults.stack, faults.recorder
    leader = _leader(stack)
    assert leader, _problems(stack)
    record = _open_fault(faults, fault)
    record.update(victim=victim, leader_before=leader)
    _kill(stack, victim)
    killed_at = time.time()
    survivors = [n for n in stack.node_names() if n != victim]

    # The survivors keep (or elect) a leader, hold every job, and keep running tick.
    new_leader = eventually(
        "a leader among the survivors",
        lambda: (found := _leader(stack, survivors)) in survivors and found,
        60,
    )
    record["leader_after"] = new_leader
    _assert_jobs_identical(stack, faults.expected_jobs, survivors)
    eventually("a run of tick after the kill", lambda: _tick_ran_since(recorder, killed_at + 1), 60)

    _heal(faults, record)
    _assert_jobs_identical(stack, faults.expected_jobs, stack.node_names())


def test_leader_killed(faults: Faults) -> None:
    leader = _leader(faults.stack)
    assert leader
    _kill_and_heal(faults, "leader killed", leader)


def test_follower_killed(faults: Faults) -> None:
    _require_working_cluster(faults)
    leader = _leader(faults.stack)
    assert leader
    follower = next(n for n in faults.stack.node_names() if n != leader)
    _kill_and_heal(faults, "follower killed", follower)


def test_node_killed_in_the_middle_of_a_rolling_update(faults: Faults) -> None:
    stack = faults.stack
    _require_working_cluster(faults)
    tag = derived_base_image(f"dkron-iac/{stack.cluster_name}-base:faults", "LABEL dkron-iac.test=faults")
    faults.images.append(tag)
    before = _container_states(stack)
    stack.configure(lambda c: c.setdefault("image", {}).update(base_image=tag))

    record = _open_fault(faults, "node killed mid rolling update")
    outcome: dict[str, Any] = {}

    def roll() -> None:
        started = time.monotonic()
        try:
            # Interrupted on purpose: the next one finishes it.
            stack.up(expect_no_changes=False)
            outcome["up"] = "succeeded"
        except Exception as err:  # noqa: BLE001 - the fault may well fail this update
            reasons = [
                line.strip() for line in str(err).splitlines() if re.search(r"\w(Unhealthy|Error): ", line)
            ]
            outcome["up"] = f"failed: {(reasons or [str(err)[-200:]])[0][:300]}"
        outcome["up_s"] = round(time.monotonic() - started, 1)

    rollout = threading.Thread(target=roll, name="rollout", daemon=True)
    rollout.start()

    # Wait for the first node's new container to be up, then kill another node.
    first: str | None = None
    deadline = time.monotonic() + 600
    while first is None and rollout.is_alive() and time.monotonic() < deadline:
        now = _container_states(stack)
        replaced = [n for n, s in now.items() if s["id"] != before[n]["id"] and s["running"]]
        first = replaced[0] if replaced else None
        if first is None:
            time.sleep(0.5)
    assert first is not None, f"no node was replaced (update: {outcome.get('up', 'still running')})"
    leader = _leader(stack, [n for n in stack.node_names() if n != first])
    # The leader is replaced last, so it still runs the old image: the worst node to lose now.
    victim = leader if leader and leader != first else next(n for n in stack.node_names() if n != first)
    _kill(stack, victim)
    record.update(first_replaced=first, victim=victim, leader_before=leader)

    rollout.join(timeout=1200)
    assert not rollout.is_alive(), "the interrupted update did not end"
    record["interrupted_up"] = outcome["up"]
    record["interrupted_up_s"] = outcome["up_s"]

    _heal(faults, record, self_heal_s=0)  # always one more `pulumi up`: the rollout is unfinished
    # Every node now runs the new image.
    with engine() as client:
        for node in stack.node_names():
            image = client.containers.get(stack.container(node)).image
            assert image.labels.get("dkron-iac.test") == "faults", f"{node} runs {image.tags}"
    _assert_jobs_identical(stack, faults.expected_jobs, stack.node_names())


def _daily_at(name: str, due: datetime, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """A once-a-day job whose time of day is ``due``: `@daily`, with the due time forced."""
    return {
        "name": name,
        "schedule": f"{due.second} {due.minute} {due.hour} * * *",
        "tags": ONE_SERVER,
        "metadata": metadata or {},
        "executor": "shell",
        "executor_config": {"command": f"echo {name}"},
    }


def test_every_node_stopped_and_started(faults: Faults) -> None:
    """Also: daily jobs due while every node is down are caught up once, unless they opt out or are
    older than their window."""
    stack = faults.stack
    _require_working_cluster(faults)
    due = datetime.fromtimestamp(math.ceil(time.time()) + 15, UTC)
    dailies = [
        _daily_at("daily", due),
        _daily_at("daily-off", due, {OFF_KEY: "off"}),
        _daily_at("daily-window", due, {WINDOW_KEY: "1s"}),
    ]
    with stack.client(stack.node_names()[0]) as client:
        for job in dailies:
            client.upsert_job(job)
    faults.expected_jobs.update({job["name"]: managed_job(job) for job in dailies})
    _assert_jobs_identical(stack, faults.expected_jobs, stack.node_names())
    time.sleep(3)  # the watchers note a never-run job's next due time every 2 s

    record = _open_fault(faults, "every node stopped and started")
    names = list(_containers(stack).values())
    subprocess.run(["docker", "stop", *names], check=True, capture_output=True, timeout=180)
    record["stopped_s"] = round(time.time() - record["at"], 1)
    assert time.time() < due.timestamp(), (
        f"stopping took {record['stopped_s']} s: the daily jobs were due before"
    )
    time.sleep(max(0.0, due.timestamp() + 2 - time.time()))  # the due time passes with every node down
    # All at once, in the reverse order of their addresses: left to Docker, the first
    # to start would take the lowest free address, another node's.
    before = record["addresses_before"]
    assert all(before.values()), before
    by_address = sorted(stack.node_names(), key=lambda n: ipaddress.ip_address(before[n]), reverse=True)
    subprocess.run(
        ["docker", "start", *(stack.container(n) for n in by_address)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    _heal(faults, record)
    _assert_jobs_identical(stack, faults.expected_jobs, stack.node_names())

    # Caught up once, by the leader's watcher, and said so in its log; the others not at all.
    ran = eventually("the daily job's catch-up", lambda: _executions_of(stack, "daily") or None, 30)
    assert len({e["group"] for e in ran}) == 1, ran
    assert _started(ran[0]) >= due.timestamp() + 2, ran
    logged = _watcher_lines(stack, since=record["at"])
    runs = [line for line in logged if line["event"] == "run" and line["job"] == "daily"]
    assert len(runs) == 1, logged
    assert datetime.fromisoformat(runs[0]["due"]) == due, runs
    time.sleep(3)  # what would come late comes now
    assert _executions_of(stack, "daily-off") == []
    assert _executions_of(stack, "daily-window") == []
    too_old = [line for line in _watcher_lines(stack, since=record["at"]) if line["event"] == "too-old"]
    assert [line["job"] for line in too_old] == ["daily-window"], too_old
    assert len({e["group"] for e in _executions_of(stack, "daily")}) == 1


def _executions_of(stack: TestStack, job: str) -> list[dict[str, Any]]:
    with DkronClient(stack.api_url(stack.node_names()[0]), timeout_s=5) as client:
        return list(client.executions(job))


# --- what the faults did to the one-server job --------------------------------------------


def _double_runs(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scheduled seconds in which `tick` ran twice.

    A run is one execution group (the leader's clock when it dispatched the
    run). It ran twice if its group has two executions, or if two groups were
    dispatched within the same second to different nodes.
    """
    doubles = []
    for second, runs in sorted(_runs_by_second(executions).items()):
        groups: dict[int, list[str]] = defaultdict(list)
        for run in runs:
            groups[int(run["group"])].append(str(run["node_name"]))
        same_group = any(len(nodes) > 1 for nodes in groups.values())
        different_nodes = len({str(run["node_name"]) for run in runs}) > 1
        if same_group or different_nodes:
            doubles.append({"second": second, "groups": {str(g): n for g, n in groups.items()}})
    return doubles


def _leader_terms(leaders: list[tuple[float, str | None]]) -> int:
    """How many times a leader took over, as the recorder saw it.

    A new term is counted when the leader differs from the last one seen, or
    when the same node leads again after a time without a leader (all nodes
    were down, or none knew a leader: there was an election).
    """
    terms, last, gap = 0, None, True
    for _, leader in leaders:
        if leader is None:
            gap = True
            continue
        if leader != last or gap:
            terms += 1
        last, gap = leader, False
    return terms


def test_one_server_job_double_runs_across_the_faults(faults: Faults) -> None:
    """Count the runs of the `server: true:1` job that happened twice.

    What Dkron guarantees: nothing like exactly-once. A job tagged `true:1`
    is dispatched to one node per run, and only the leader's scheduler
    dispatches; the scheduler is rebuilt on each election and missed runs are
    not caught up (issues 998, 1210), so faults lose runs. Across a leader
    change nothing fences the old leader's last dispatch against the new
    leader's first one. What bounds doubles in 4.0.5 (`Agent.Run`): before
    dispatching, the leader commits the job's next run time through Raft, and
    a deposed leader cannot commit, so two leaders can only both dispatch in
    the second where one term ends and the next begins: at most one double
    run per leader take-over. That is the bound asserted; the measured count
    is printed as DOUBLE_RUNS.
    """
    _assert_runs_across_faults(faults)


def _assert_runs_across_faults(faults: Faults) -> None:
    recorder = faults.recorder
    assert recorder.faults, "no fault was injected"
    # The data covers the faults: tick ran again after the last one that healed (a cluster
    # left broken by a fault, whose test then failed, runs nothing; its runs up to it still count).
    healed = [record for record in recorder.faults if "healed_at" in record]
    assert healed, recorder.faults
    if not faults.broken_by:
        last_healed = max(record["healed_at"] for record in healed)
        eventually("a run of tick after the last fault", lambda: _tick_ran_since(recorder, last_healed), 60)
    recorder.collect()
    executions, leaders = recorder.snapshot()
    assert executions, "no execution of tick was recorded"
    first = min(_started(e) for e in executions)
    # tick is due every second; faults lose runs, but most seconds must be covered,
    # or the count below would say little.
    span = time.time() - first
    assert len(executions) >= span / 2, f"only {len(executions)} executions of tick in {span:.0f} s"

    doubles = _double_runs(executions)
    terms = _leader_terms(leaders)
    per_fault = {}
    for record in recorder.faults:
        end = record.get("healed_at", time.time())
        window = [e for e in executions if record["at"] <= _started(e) <= end]
        lines = recorder.watcher_lines_between(record["at"] - 2 * BEAT_EVERY_S, end + 2 * BEAT_EVERY_S)
        caught_up = caught_up_starts(lines, "beat")
        beats = [
            t
            for t in recorder.beat_starts()
            if record["at"] - 2 * BEAT_EVERY_S <= t <= end + 2 * BEAT_EVERY_S
        ]
        per_fault[record["fault"]] = {
            "healed": record.get("healed", False),
            "seconds": round(end - record["at"]),
            "runs": len(window),
            "doubles": sum(1 for d in doubles if record["at"] <= d["second"] <= end + 1),
            "beat_runs": len(beats),
            "beat_missed": missed_due_times(beats, BEAT_EVERY_S, caught_up),
            "catch_ups": [
                {
                    k: line.get(k)
                    for k in ("container", "event", "job", "due", "late_s", "started")
                    if k in line
                }
                for line in lines
                if line["event"] != "watching"
            ],
        }
    same_node = sum(
        1
        for second_runs in _runs_by_second(executions).values()
        if len({int(r["group"]) for r in second_runs}) > 1 and len({r["node_name"] for r in second_runs}) == 1
    )
    print(
        "DOUBLE_RUNS",
        len(doubles),
        json.dumps(
            {
                "executions": len(executions),
                "polls": recorder.polls,
                "recorded_s": round(time.time() - first),
                "leader_terms": terms,
                "same_node_same_second": same_node,
                "per_fault": per_fault,
                "doubles": doubles,
            }
        ),
    )
    assert terms >= 1
    assert len(doubles) <= terms, f"{len(doubles)} double runs for {terms} leader terms: {doubles}"
    # Due times of `beat` that fell with no leader were caught up: none left without a run.
    beat_missed = {fault: figures["beat_missed"] for fault, figures in per_fault.items()}
    print("MISSED_RUNS", json.dumps(beat_missed))
    assert not any(beat_missed.values()), per_fault
    beat_doubles = _double_runs(list(recorder.beats.values()))
    assert beat_doubles == [], beat_doubles


def _runs_by_second(executions: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    by_second: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for execution in executions:
        by_second[int(execution["group"]) // 1_000_000_000].append(execution)
    return by_second


# --- the Docker daemon restarted, on an engine of the test's own -------------------------


def _runs_recorded(recorder: Recorder) -> int:
    recorder.collect()
    return len(recorder.snapshot()[0])


def test_docker_daemon_restarted(lab_faults: tuple[Faults, Lab]) -> None:
    """The engine's daemon stopped (SIGTERM: it stops every container first) and started again;
    `unless-stopped` brings the nodes back with it. Then the same checks on its recorder as the
    last test makes on the other cluster's."""
    faults, lab = lab_faults
    stack = faults.stack
    before = _container_states(stack)
    old_pid = lab.daemon_pid("h1", "dockerd")
    record = _open_fault(faults, "docker daemon restarted")
    try:
        lab.stop_daemon("h1", "dockerd")
    finally:
        lab.start_host("h1")  # even if the old one took too long
    record["daemon_down_s"] = round(time.time() - record["at"], 1)
    assert lab.daemon_pid("h1", "dockerd") not in (None, old_pid)

    eventually(
        "every node's container running again",
        lambda: all(s["running"] for s in _container_states(stack).values()),
        120,
    )
    after = _container_states(stack)
    # The same containers, each started again by the new daemon.
    assert {n: s["id"] for n, s in after.items()} == {n: s["id"] for n, s in before.items()}
    assert all(after[n]["started_at"] != before[n]["started_at"] for n in after), (before, after)
    _heal(faults, record)
    _assert_jobs_identical(stack, faults.expected_jobs, stack.node_names())
    _assert_runs_across_faults(faults)
