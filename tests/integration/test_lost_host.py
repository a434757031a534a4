"""A host lost for good, on the lab: its node moved to another host in one edit.

The lab makes four hosts; the stack forms on h1, h2 and h3 with `tick`
(`@every 2s`, `server: true:1`) running throughout. h3 is then stopped for good
(every process of the machine killed) and the stack file edited as the README
says: h3's node moved to h4 and h3 removed from `hosts`. One `make up` moves
it; h3 then comes back with its old container, which must stay out of the
cluster; last, the stack is destroyed while another host is down.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.dkron_client import DkronClient
from components.docker_objects import engine
from nodeside.catchup import parse_log
from testing.harness import (
    TestStack,
    caught_up_starts,
    eventually,
    missed_due_times,
    preview_ops,
    tick_job,
    watcher_lines,
)
from testing.lab import Lab, lab_session

LAB_PREFIX = "dkg"
LAB_SUBNET = "10.213.85.0/24"
PLACEMENT = {"n1": "h1", "n2": "h2", "n3": "h3"}
TICK = tick_job()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_session(LAB_PREFIX, LAB_SUBNET, Path(tmp_path_factory.mktemp("lab")), 4) as made:
        yield made


@pytest.fixture(scope="module")
def stack(lab: Lab) -> Iterator[TestStack]:
    hosts = {name: lab.stack_host(name) for name in lab.hosts}
    nodes = [{"name": node, "host": host} for node, host in PLACEMENT.items()]
    made = TestStack(nodes, hosts=hosts, jobs=[TICK])
    try:
        yield made
    finally:
        made.close()


def _client(stack: TestStack, node: str) -> DkronClient:
    return DkronClient(stack.api_url(node), timeout_s=5)


def _tick(stack: TestStack, node: str) -> dict[str, Any]:
    with _client(stack, node) as client:
        job = client.get_job("tick")
    assert job is not None
    return job


def _doubled(stack: TestStack, node: str) -> list[int]:
    """Scheduled seconds in which `tick` ran more than once (a group is one dispatch)."""
    with _client(stack, node) as client:
        runs = Counter(int(e["group"]) // 1_000_000_000 for e in client.executions("tick"))
    return sorted(second for second, count in runs.items() if count > 1)


def _starts(stack: TestStack, node: str, into: set[int]) -> set[int]:
    """Add the dispatch times (execution groups, ns) of `tick`'s last 100 runs to ``into``."""
    with _client(stack, node) as client:
        into.update(int(e["group"]) for e in client.executions("tick"))
    return into


def _alive_members(stack: TestStack, node: str) -> dict[str, str]:
    with _client(stack, node) as client:
        return {m["Name"]: m["Addr"] for m in client.members() if m.get("Status") == 1}


def test_a_node_moves_off_a_host_lost_for_good_in_one_up(lab: Lab, stack: TestStack) -> None:
    outputs = stack.up()
    assert sorted(outputs["voters"]) == sorted(PLACEMENT)
    eventually("tick to run a few times", lambda: _tick(stack, "n1")["success_count"] >= 3, 30)
    began = time.time()
    groups = _starts(stack, "n1", set())
    lab.stop_host("h3")
    counted = _tick(stack, "n1")["success_count"]

    def move(cluster: dict[str, Any]) -> None:
        next(n for n in cluster["nodes"] if n["name"] == "n3")["host"] = "h4"
        del cluster["hosts"]["h3"]

    stack.configure(move)
    # The preview says what becomes of h3's node before anything is done.
    preview = stack.preview()
    _starts(stack, "n1", groups)  # Dkron keeps 100 runs: read them before the update, too
    said = preview.stdout + preview.stderr
    address = lab.hosts["h3"]
    assert f"host h3 ({address}) does not answer (ssh: connect to host {address} port 22" in said, said[
        -3000:
    ]
    assert f"n3 created on h4. Their containers ({stack.container('n3')}) and volumes" in said
    assert "on h3 are dropped from the state, not deleted; if h3 ever comes back" in said
    assert "moves off h3, which does not answer: created on h4;" in said  # the node-by-node summary
    ops = preview_ops(preview)
    # n3's volume, container and certificate (it names the new host's address); h3's image.
    assert (ops.get("replace"), ops.get("delete")) == (3, 1), ops

    outputs = stack.up()
    assert outputs["nodes"]["n3"]["host"] == "h4"
    assert sorted(outputs["voters"]) == sorted(PLACEMENT)
    eventually("the cluster whole on h1, h2 and h4", lambda: stack.problems() == [], 60, poll_s=2)
    assert _alive_members(stack, "n1")["n3"] == lab.hosts["h4"]
    eventually("n3 to hold the job", lambda: _tick(stack, "n3")["name"] == "tick", 30)
    # The job's counters came through; no due time was served twice.
    assert _tick(stack, "n3")["success_count"] >= counted
    assert _doubled(stack, "n1") == []
    # The moved node's catch-up watcher runs with the stack's rules, and every due time since h3
    # was lost had a run (one the outage swallowed is caught up once, by the leader's watcher).
    _starts(stack, "n1", groups)
    lines = []
    for node, host in (("n1", "h1"), ("n2", "h2"), ("n3", "h4")):
        lines += watcher_lines([stack.container(node)], began, lab.engine_ref(host))
    with engine(lab.engine_ref("h4")) as h4:
        moved_log = h4.containers.get(stack.container("n3")).logs().decode(errors="replace")
    watching = [line for line in parse_log(moved_log) if line["event"] == "watching"]
    assert [line["window_s"] for line in watching] == [86400.0], moved_log[-3000:]
    starts = sorted(g / 1e9 for g in groups if g / 1e9 >= began - 4)
    caught_up = caught_up_starts(lines, "tick")
    # Until Serf marks h3's node failed (seconds), the leader may hand it a run; the agent hands
    # it on to another node once its dial gives up (10 s), but a run handed before h3 was cut off
    # and lost with it is gone: one such due time alone, two under the full suite's load (seen
    # once in a parallel run: Serf's failure detection took over 2 s more).
    assert missed_due_times(starts, 2.0, caught_up) <= 2, (starts, lines)
    # Done in one update: nothing left to do.
    assert set(preview_ops(stack.preview())) == {"same"}


def test_a_declared_host_that_does_not_answer_leaves_the_rest_to_update(lab: Lab, stack: TestStack) -> None:
    assert stack.problems() == [], "the move left the cluster broken"
    lab.stop_host("h2")
    hourly = {**TICK, "name": "hourly", "schedule": "@hourly"}
    stack.set_jobs([TICK, hourly])
    try:
        preview = stack.preview()
        said = preview.stdout + preview.stderr
        address = lab.hosts["h2"]
        assert f"host h2 ({address}) does not answer (ssh: connect to host {address} port 22" in said
        assert "n2 kept as recorded" in said
        assert "on h2, which does not answer: kept as recorded" in said
        stack.up()
        for node in ("n1", "n3"):
            assert _tick(stack, node)["name"] == "tick"
            with _client(stack, node) as client:
                assert sorted(j["name"] for j in client.list_jobs()) == ["hourly", "tick"]
    finally:
        lab.start_host("h2")
    stack.up()
    eventually("the cluster whole again", lambda: stack.problems() == [], 90, poll_s=2)

    def n2_jobs() -> list[str]:  # n2 is whole before it has applied the log to its job store
        with _client(stack, "n2") as client:
            return sorted(j["name"] for j in client.list_jobs())

    eventually("n2 to hold both jobs", lambda: n2_jobs() == ["hourly", "tick"], 30)
    assert set(preview_ops(stack.preview())) == {"same"}


def test_the_lost_host_back_with_its_old_node_leaves_the_cluster_as_it_is(lab: Lab, stack: TestStack) -> None:
    assert stack.problems() == [], "the move left the cluster broken"
    old = stack.container("n3")
    back_at = int(time.time())
    lab.start_host("h3")
    # Docker starts the old node again (its restart policy); the fence keeps its agent from starting.
    with engine(lab.engine_ref("h3")) as h3:

        def fenced() -> bool:
            logs = h3.containers.get(old).logs(since=back_at).decode(errors="replace")
            return f"gives node n3 to {lab.hosts['h4']}:" in logs and "stays out" in logs

        eventually("the old n3 to stay out", fenced, 90, poll_s=2)
    before = _tick(stack, "n1")["success_count"]
    eventually("tick to run on", lambda: _tick(stack, "n1")["success_count"] >= before + 10, 60)
    # The cluster is as it was: n3 is the one on h4, no run twice. (Whether the leader is the one
    # from before is not asked: under the whole suite's load Raft has been seen to hold an election
    # of its own here, with the old node's agent, the only thing that could have disturbed it, never
    # started; that is asserted below.)
    eventually("the cluster whole", lambda: stack.problems() == [], 60, poll_s=2)
    assert _alive_members(stack, "n1")["n3"] == lab.hosts["h4"]
    assert _doubled(stack, "n1") == []
    with engine(lab.engine_ref("h3")) as h3:
        logs = h3.containers.get(old).logs(since=back_at).decode(errors="replace")
    # Over those ten runs the old node's agent never started.
    assert "Dkron agent starting" not in logs, logs[-8000:]
    assert set(preview_ops(stack.preview())) == {"same"}


def test_destroy_with_a_host_down_removes_what_it_reaches_and_says_what_it_left(
    lab: Lab, stack: TestStack
) -> None:
    lab.stop_host("h2")
    out: list[str] = []
    stack.stack.destroy(on_output=out.append, color="never")
    said = "\n".join(out)
    assert f"{stack.container('n2')}: dropped from the state and left where it is" in said, said[-3000:]
    for host in ("h1", "h4"):
        with engine(lab.engine_ref(host)) as client:
            label = f"dkron-iac.stack={stack.name}"
            assert client.containers.list(all=True, filters={"label": label}) == []
            assert client.volumes.list(filters={"label": label}) == []
