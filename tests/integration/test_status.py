"""`make status` on a real cluster: whole, with a node killed, with no leader.

One three-node stack for the module; the test that kills nodes brings them
back with `pulumi up`, as an operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from components.docker_objects import engine
from testing import harness
from testing.harness import ROOT, TestStack, eventually

NODES = [{"name": "node1"}, {"name": "node2"}, {"name": "node3"}]
TICK = {"name": "tick", "schedule": "@every 2s", "executor": "shell", "executor_config": {"command": "true"}}


def status(stack: str, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "scripts/status.py", stack, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def status_json(stack: str) -> tuple[int, dict[str, Any]]:
    code, out = status(stack, "--json")
    return code, json.loads(out)


def status_when(stack: str, exit_code: int) -> dict[str, Any] | None:
    """The status as JSON once it exits with `exit_code` (for `eventually`)."""
    code, data = status_json(stack)
    return data if code == exit_code else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestStack]:
    with harness.test_stack(NODES, jobs=[TICK]) as stack:
        stack.up(refresh=False)
        yield stack


def test_a_whole_cluster_is_healthy_node_by_node_and_job_by_job(cluster: TestStack) -> None:
    # The job has run at least once.
    data = eventually(
        "a run of tick", lambda: (d := status_when(cluster.name, 0)) and d["jobs"][0]["success_count"] and d
    )
    assert data["verdict"] == "healthy"
    assert data["problems"] == []
    assert data["leader"] == cluster.outputs()["leader"]
    for node in data["nodes"]:
        assert node["state"] == "running"
        assert node["serf"] == "alive"
        assert node["voter"] is True
        assert node["raft"] == ("leader" if node["name"] == data["leader"] else "follower")
        assert node["version"] == "4.0.5"
        assert node["image"].startswith("dkron-iac/")
        assert node["uptime_s"] >= 0
        assert node["api_url"] == cluster.api_url(node["name"])
    [tick] = data["jobs"]
    assert (tick["name"], tick["schedule"], tick["last_result"]) == ("tick", "@every 2s", "success")
    assert (tick["caught_up"], tick["missed"]) == (0, 0)
    assert tick["state"] == "ok"
    assert data["job_counts"] == {"ok": 1, "failing": 0, "late": 0, "caught up": 0, "disabled": 0}

    # The table, through make: colourless when piped, exit 0.
    done = subprocess.run(
        ["make", "--no-print-directory", "status", f"STACK={cluster.name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"HEALTHY  stack {cluster.name}  leader {data['leader']}")
    assert "\x1b[" not in done.stdout
    for name in ("node1", "node2", "node3"):
        assert name in done.stdout
    # The jobs summed up; a job that is fine is listed only with ALL=1.
    assert "jobs 1: 1 ok, 0 failing, 0 late, 0 caught up, 0 disabled" in done.stdout
    assert f"no job needs attention (every job: make status STACK={cluster.name} ALL=1)" in done.stdout
    assert "tick" not in done.stdout
    every = subprocess.run(
        ["make", "--no-print-directory", "status", f"STACK={cluster.name}", "ALL=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert every.returncode == 0, every.stdout + every.stderr
    assert "tick" in every.stdout


def test_a_killed_node_degrades_it_and_a_lost_majority_breaks_it_until_up_brings_them_back(
    cluster: TestStack,
) -> None:
    leader = cluster.outputs()["leader"]
    first, second = [n for n in cluster.node_names() if n != leader]
    with engine() as client:
        client.containers.get(cluster.container(first)).kill()

    data = eventually("degraded", lambda: status_when(cluster.name, 1), timeout_s=30)
    assert data["verdict"] == "degraded"
    assert data["leader"] == leader
    down = {n["name"]: n for n in data["nodes"]}[first]
    assert down["state"] == "exited"
    assert down["api_error"] == "connection refused"
    assert f"{first}: container exited" in data["problems"]
    code, text = status(cluster.name)
    assert code == 1
    assert text.startswith(f"DEGRADED  stack {cluster.name}  leader {leader}")

    with engine() as client:
        client.containers.get(cluster.container(second)).kill()
    data = eventually("broken", lambda: status_when(cluster.name, 2), timeout_s=30)
    assert data["verdict"] == "broken"
    assert data["leader"] is None
    assert data["problems"][0] == "no leader agreed by a majority of the nodes"
    code, text = status(cluster.name)
    assert code == 2
    assert text.startswith(f"BROKEN  stack {cluster.name}  leader none")

    cluster.up()
    data = eventually("healthy again", lambda: status_when(cluster.name, 0), timeout_s=60)
    assert [n["state"] for n in data["nodes"]] == ["running"] * 3


def test_a_stack_that_is_not_deployed_or_does_not_exist_exits_2_saying_so() -> None:
    stack = TestStack(NODES)
    try:
        code, text = status(stack.name)
        assert code == 2
        assert f"stack '{stack.name}' is not deployed" in text
    finally:
        stack.close()
    code, data = status_json("no-such-stack")
    assert code == 2
    assert data["error"].startswith("no stack 'no-such-stack'")
