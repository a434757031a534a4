"""Membership changes on a real cluster: scale out, scale in, dead and wiped nodes.

After every step the Raft voters must equal the configured nodes and every
job registered before must still be there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from components import naming
from components.docker_objects import engine
from components.health import observe, raft_peers
from testing.harness import TestStack, eventually

JOBS: list[dict[str, Any]] = [
    {
        "name": f"member-job-{i}",
        "schedule": "@every 1h",
        "executor": "shell",
        "executor_config": {"command": "true"},
    }
    for i in range(5)
]


def nodes(*names: str) -> list[dict[str, Any]]:
    return [{"name": name} for name in names]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestStack]:
    # Five API ports reserved up front: the stack grows to five nodes.
    stack = TestStack(nodes("a", "b", "c", "d", "e"))
    stack.configure(lambda c: c.update(nodes=nodes("a", "b", "c")))
    try:
        stack.up(refresh=False)
        with stack.client("a") as client:
            for job in JOBS:
                client.upsert_job(job)
        yield stack
    finally:
        stack.close()


def configured(stack: TestStack) -> list[str]:
    return [n["name"] for n in stack.cluster["nodes"]]


def api_url(stack: TestStack, node: str) -> str:
    return stack.api_url(node)


def voters(stack: TestStack) -> set[str]:
    names = configured(stack)
    view = observe({n: api_url(stack, n) for n in names})
    assert view.leader, "no leader"
    return {p.node for p in raft_peers(stack.container(view.leader)).values() if p.voter}


def job_names(stack: TestStack, node: str) -> list[str]:
    from components.dkron_client import DkronClient

    with DkronClient(api_url(stack, node)) as client:
        return sorted(j["name"] for j in client.list_jobs())


def assert_whole(stack: TestStack, outputs: dict[str, Any]) -> None:
    names = configured(stack)
    assert voters(stack) == set(names)
    assert sorted(outputs["voters"]) == sorted(names)
    assert sorted(outputs["nodes"]) == sorted(names)
    expected_jobs = sorted(j["name"] for j in JOBS)
    for node in names:
        assert [j for j in job_names(stack, node) if j.startswith("member-job")] == expected_jobs, node


def test_scale_out_to_five_joins_new_voters_without_restarting_others(cluster: TestStack) -> None:
    before = container_ids(cluster, ["a", "b", "c"])
    cluster.configure(lambda c: c.update(nodes=nodes("a", "b", "c", "d", "e")))
    outputs = cluster.up()
    assert_whole(cluster, outputs)
    assert container_ids(cluster, ["a", "b", "c"]) == before, "existing nodes were restarted"
    assert outputs["bootstrap"]["members"] == ["a", "b", "c"]


def test_scale_in_with_a_dead_node_removes_its_peer(cluster: TestStack) -> None:
    # "e" dies without leaving (no restart policy to bring it back).
    with engine() as client:
        victim = client.containers.get(cluster.container("e"))
        victim.update(restart_policy={"Name": "no"})
        victim.kill(signal="SIGKILL")
    cluster.configure(lambda c: c.update(nodes=nodes("a", "b", "c")))
    outputs = cluster.up()
    assert_whole(cluster, outputs)
    left = cluster.docker_objects()
    assert sorted(left["containers"]) == sorted(cluster.container(n) for n in ("a", "b", "c"))


def test_removing_too_many_voters_at_once_is_refused_before_anything_changes(cluster: TestStack) -> None:
    before = container_ids(cluster, ["a", "b", "c"])
    cluster.configure(lambda c: c.update(nodes=nodes("a")))
    with pytest.raises(auto.CommandError, match="removing 2 of 3 voters") as failure:
        cluster.up()
    assert "Remove at most 1 node" in str(failure.value)
    assert container_ids(cluster, ["a", "b", "c"]) == before
    cluster.configure(lambda c: c.update(nodes=nodes("a", "b", "c")))


def test_dead_follower_replaced_by_a_new_node(cluster: TestStack) -> None:
    leader = observe({n: api_url(cluster, n) for n in configured(cluster)}).leader
    dead = next(n for n in ("a", "b", "c") if n != leader)
    with engine() as client:
        victim = client.containers.get(cluster.container(dead))
        victim.update(restart_policy={"Name": "no"})
        victim.kill(signal="SIGKILL")
    survivors = [n for n in ("a", "b", "c") if n != dead]
    cluster.configure(lambda c: c.update(nodes=nodes(*survivors, "d")))
    outputs = cluster.up()
    assert_whole(cluster, outputs)


def test_node_with_a_lost_volume_rejoins_and_catches_up(cluster: TestStack) -> None:
    names = configured(cluster)
    leader = observe({n: api_url(cluster, n) for n in names}).leader
    wiped = next(n for n in names if n != leader)
    with engine() as client:
        client.containers.get(cluster.container(wiped)).remove(force=True)
        client.volumes.get(naming.volume_name(cluster.cluster_name, wiped)).remove(force=True)
    outputs = cluster.up()
    assert_whole(cluster, outputs)
    assert leader is not None, "no leader"
    eventually(
        f"{wiped} to hold every job",
        lambda: job_names(cluster, wiped) == job_names(cluster, leader),
        60,
    )


def container_ids(stack: TestStack, names: list[str]) -> dict[str, str]:
    with engine() as client:
        return {n: client.containers.get(stack.container(n)).id for n in names}
