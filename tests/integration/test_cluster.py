"""A real three-node cluster from one `pulumi up`, and what users rely on it for.

The tests share one stack and run in file order: formation, tag-targeted
Python jobs, leader failover, and losing every container.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.docker_objects import engine
from components.health import ClusterView, observe, raft_peers
from testing.harness import TestStack, eventually

NODES = [
    {"name": "alpha", "tags": {"python": "daily"}},
    {"name": "bravo", "tags": {"python": "daily"}},
    {"name": "charlie", "tags": {"tier": "light"}},
]
TAGGED = {"alpha", "bravo"}

PY_JOB = {
    "name": "py-daily",
    "schedule": "@every 1s",
    "tags": {"python": "daily:1"},
    "concurrency": "forbid",
    "executor": "shell",
    "executor_config": {"command": "python3 /opt/dkron-jobs/hello.py"},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestStack]:
    stack = TestStack(NODES)
    try:
        stack.outputs_after_up = stack.up(refresh=False)  # type: ignore[attr-defined]
        yield stack
        stack.destroy()
        left = stack.docker_objects()
        assert left["containers"] == [], left
        assert left["networks"] == [], left
    finally:
        stack.close()


def _views(stack: TestStack) -> ClusterView:
    api = {n: stack.api_url(n) for n in stack.node_names()}
    return observe(api, {n: stack.container(n) for n in stack.node_names()})


def _whole(stack: TestStack, expected: list[str]) -> ClusterView | None:
    api = {n: stack.api_url(n) for n in expected}
    view = observe(api, {n: stack.container(n) for n in expected})
    return view if not view.problems(expected) else None


@pytest.mark.smoke
def test_one_pulumi_up_forms_a_cluster_every_node_agrees_on(cluster: TestStack) -> None:
    outputs = cluster.outputs_after_up  # type: ignore[attr-defined]
    view = _views(cluster)
    assert view.problems(cluster.node_names()) == []
    leaders = {node.leader for node in view.nodes.values()}
    assert len(leaders) == 1, leaders
    assert outputs["leader"] in cluster.node_names()
    assert outputs["leader"] == view.leader
    for node in view.nodes.values():
        assert node.alive_servers == set(cluster.node_names())
    leader = view.leader
    assert leader is not None  # implied by the two asserts on outputs["leader"] above
    voters = {p.node for p in raft_peers(cluster.container(leader)).values() if p.voter}
    assert voters == set(cluster.node_names())
    assert outputs["bootstrap"] == {"state": "formed", "members": cluster.node_names()}
    assert set(outputs["nodes"]) == set(cluster.node_names())
    assert outputs["nodes"]["alpha"]["tags"] == {"python": "daily"}
    assert outputs["dkron_version"]


def _runs(stack: TestStack, job: str, node: str = "alpha") -> list[dict[str, Any]]:
    with stack.client(node) as client:
        # A run still going has finished_at at Go's zero time, and no result yet.
        return [
            e for e in client.executions(job) if not str(e.get("finished_at") or "0001").startswith("0001")
        ]


def test_tagged_python_job_runs_once_per_run_on_a_tagged_node(cluster: TestStack) -> None:
    with cluster.client("alpha") as client:
        client.upsert_job(PY_JOB)

    def six_finished_runs() -> list[dict[str, Any]] | None:
        finished = _runs(cluster, "py-daily")
        return finished if len(finished) >= 6 else None

    runs = eventually("6 finished runs", six_finished_runs, 90)

    by_run: dict[str, list[dict[str, Any]]] = {}
    for execution in runs:
        by_run.setdefault(str(execution["group"]), []).append(execution)
    assert len(by_run) >= 5
    for group, executions in by_run.items():
        assert len(executions) == 1, f"run {group} ran on {[e['node_name'] for e in executions]}"
    assert {e["node_name"] for e in runs} <= TAGGED
    assert all(e["success"] for e in runs), [e.get("output") for e in runs if not e["success"]]
    # The script from the image ran, and its output is in the record.
    assert all("hello from" in e["output"] and "python 3" in e["output"] for e in runs)


def test_killing_the_leader_elects_a_new_one_and_jobs_keep_running(cluster: TestStack) -> None:
    old_leader = _views(cluster).leader
    assert old_leader
    survivors = [n for n in cluster.node_names() if n != old_leader]
    with engine() as client:
        client.containers.get(cluster.container(old_leader)).kill()
    killed_at = time.time()

    def new_leader() -> str | None:
        view = observe({n: cluster.api_url(n) for n in survivors})
        return view.leader if view.leader in survivors else None

    elected = eventually("a new leader among the survivors", new_leader, 60)
    assert elected != old_leader

    def ran_since_kill() -> bool:
        return any(_started(e) > killed_at + 1 for e in _runs(cluster, "py-daily", survivors[0]))

    eventually("a run of py-daily after the failover", ran_since_kill, 60)

    # `pulumi up` brings the dead node back and waits for the cluster to be whole.
    cluster.up()
    assert _whole(cluster, cluster.node_names())


def _started(execution: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(execution["started_at"].replace("Z", "+00:00")).timestamp()


def test_removing_every_container_keeps_every_job(cluster: TestStack) -> None:
    extra = [{**PY_JOB, "name": f"keep-{i}", "schedule": "@every 1h"} for i in range(5)]
    with cluster.client("alpha") as client:
        for job in extra:
            client.upsert_job(job)

    def every_job_everywhere() -> list[str] | None:
        # Reads are served from each node's replica: wait until all agree.
        seen = []
        for node in cluster.node_names():
            with cluster.client(node) as node_client:
                seen.append(sorted(j["name"] for j in node_client.list_jobs()))
        return (
            seen[0]
            if all(s == seen[0] for s in seen) and {j["name"] for j in extra} <= set(seen[0])
            else None
        )

    before = eventually("every node to hold every job", every_job_everywhere, 30)

    cluster.remove_containers()

    cluster.up()
    assert _whole(cluster, cluster.node_names())
    for node in cluster.node_names():
        with cluster.client(node) as node_client:
            after = sorted(j["name"] for j in node_client.list_jobs())
        assert after == before, f"{node} has {after}, expected {before}"
