"""`make status`'s judgement and display, from plain data (no cluster)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

from components.health import ClusterView, NodeView, RaftPeer
from components.status import (
    LISTED,
    ClusterStatus,
    JobState,
    JobStatus,
    NodeStatus,
    as_json,
    console,
    docker_time,
    job_status,
    judge,
    majority_leader,
    render,
    short_error,
    watcher_lines_by_job,
)

NODES = ["a", "b", "c"]
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def view(
    leaders: dict[str, str | None], down: frozenset[str] = frozenset(), voters: set[str] | None = None
) -> ClusterView:
    alive = frozenset(n for n in NODES if n not in down)
    nodes = {
        n: NodeView(n, error="ConnectionError: [Errno 111] Connection refused")
        if n in down
        else NodeView(n, leader=leaders.get(n), alive_servers=alive)
        for n in NODES
    }
    peers = {
        n: RaftPeer(n, f"10.0.0.{i}:6868", "follower", n in (voters or set(NODES)))
        for i, n in enumerate(NODES)
    }
    return ClusterView(nodes=nodes, raft_peers=peers)


def test_a_whole_cluster_is_healthy() -> None:
    verdict, problems = judge(view(dict.fromkeys(NODES, "a")), NODES, dict.fromkeys(NODES, "running"))
    assert (verdict, problems) == ("healthy", [])


def test_one_node_down_with_the_quorum_kept_is_degraded_and_says_which() -> None:
    states = {"a": "running", "b": "running", "c": "exited"}
    verdict, problems = judge(view({"a": "a", "b": "a"}, down=frozenset({"c"})), NODES, states)
    assert verdict == "degraded"
    assert "c: container exited" in problems
    assert "c: API not answering (connection refused)" in problems


def test_a_node_that_is_not_a_voter_degrades_the_cluster() -> None:
    verdict, problems = judge(
        view(dict.fromkeys(NODES, "a"), voters={"a", "b"}), NODES, dict.fromkeys(NODES, "running")
    )
    assert verdict == "degraded"
    assert any("lacks voters c" in p for p in problems)


def test_no_leader_agreed_by_a_majority_is_broken() -> None:
    # Two of three down: the survivor may still name the old leader for a moment.
    lone = view({"a": "a"}, down=frozenset({"b", "c"}))
    assert majority_leader(lone, NODES) is None
    verdict, problems = judge(lone, NODES, {"a": "running", "b": "exited", "c": "exited"})
    assert verdict == "broken"
    assert problems[0] == "no leader agreed by a majority of the nodes"
    # Nodes that answer but name no leader.
    assert judge(view(dict.fromkeys(NODES)), NODES, dict.fromkeys(NODES, "running"))[0] == "broken"


def job(**fields: object) -> dict[str, object]:
    return {"name": "report", "schedule": "@every 10s", "success_count": 3, "error_count": 1, **fields}


def test_a_job_whose_last_run_failed_says_so() -> None:
    line = job_status(
        job(
            last_success="2026-12-01T11:59:40Z",
            last_error="2026-12-01T11:59:50Z",
            next="2026-12-01T12:00:00Z",
        ),
        NOW,
        {},
    )
    assert line.last_result == "failed"
    assert (line.success_count, line.error_count) == (3, 1)
    assert line.late_since is None
    assert (
        job_status(
            job(last_success="2026-12-01T11:59:55Z", last_error="2026-12-01T11:59:50Z"), NOW, {}
        ).last_result
        == "success"
    )
    assert job_status(job(), NOW, {}).last_result == "never"


def test_a_job_is_late_once_a_due_time_has_passed_unserved_for_a_while() -> None:
    stale = job(last_success=(NOW - timedelta(minutes=5)).isoformat())
    assert (
        job_status(stale, NOW, {}).late_since
        == (NOW - timedelta(minutes=5) + timedelta(seconds=10)).isoformat()
    )
    # A disabled job or a manual one is never late.
    assert job_status({**stale, "disabled": True}, NOW, {}).late_since is None
    assert job_status({**stale, "schedule": "@manually"}, NOW, {}).late_since is None
    # Just due: not late yet.
    assert job_status(job(last_success=(NOW - timedelta(seconds=15)).isoformat()), NOW, {}).late_since is None


def test_caught_up_and_missed_runs_come_from_the_watchers_lines_and_are_unknown_without_them() -> None:
    lines = [
        {"event": "run", "job": "report", "due": "x"},
        {"event": "run", "job": "other"},
        {"event": "too-old", "job": "report"},
        {"event": "leading"},
    ]
    line = job_status(job(), NOW, watcher_lines_by_job(lines))
    assert (line.caught_up, line.missed) == (1, 1)
    unknown = job_status(job(), NOW, None)
    assert (unknown.caught_up, unknown.missed) == (None, None)


def status(verdict: str = "degraded") -> ClusterStatus:
    return ClusterStatus(
        stack="dev",
        verdict=verdict,  # type: ignore[arg-type]
        leader="a",
        problems=["c: container exited"],
        nodes=[
            NodeStatus(
                "a",
                "http://127.0.0.1:8081",
                "dkron-dev-a",
                state="running",
                serf="alive",
                raft="leader",
                voter=True,
                version="4.0.5",
                uptime_s=4000,
            ),
            NodeStatus(
                "c",
                "http://127.0.0.1:8083",
                "dkron-dev-c",
                state="exited",
                serf="failed",
                raft="follower",
                voter=True,
            ),
        ],
        jobs=[JobStatus("report", "@daily", False, None, None, None, 0, 0, "never", caught_up=0, missed=0)],
        observed_at=NOW.isoformat(),
    )


def test_the_table_has_no_colour_codes_when_not_a_terminal() -> None:
    stream = io.StringIO()
    console(stream).print(render(status()))
    text = stream.getvalue()
    assert "\x1b[" not in text
    assert text.startswith("DEGRADED  stack dev  leader a")
    assert "c: container exited" in text
    assert "1h06m" in text  # a's uptime
    assert "jobs 1: 1 ok, 0 failing, 0 late, 0 caught up, 0 disabled" in text
    assert "no job needs attention (every job: make status STACK=dev ALL=1)" in text
    assert "report" not in text
    assert "host" not in text  # one engine: no host column
    every = io.StringIO()
    console(every).print(render(status(), every_job=True))
    assert "report" in every.getvalue()
    assert "@daily" in every.getvalue()


def test_a_job_is_summed_up_by_the_most_pressing_state() -> None:
    failed = {"last_success": "2026-12-01T11:59:40Z", "last_error": "2026-12-01T11:59:50Z"}
    stale = {"last_success": (NOW - timedelta(minutes=5)).isoformat()}
    assert job_status(job(), NOW, {}).state == "ok"
    assert job_status(job(**failed, next="2026-12-01T12:00:05Z"), NOW, {}).state == "failing"
    assert job_status(job(**stale), NOW, {}).state == "late"
    assert job_status(job(**stale, disabled=True), NOW, {}).state == "disabled"
    caught = watcher_lines_by_job([{"event": "run", "job": "report"}])
    assert job_status(job(), NOW, caught).state == "caught up"
    too_old = watcher_lines_by_job([{"event": "too-old", "job": "report"}])
    assert job_status(job(), NOW, too_old).state == "caught up"
    assert job_status(job(**failed, disabled=True), NOW, caught).state == "failing"


def many(count: int, state: JobState = "ok") -> list[JobStatus]:
    result = "failed" if state == "failing" else "never"
    return [
        JobStatus(
            f"k{i:05d}", "@hourly", False, None, None, None, 0, 0, result, caught_up=0, missed=0, state=state
        )
        for i in range(count)
    ]


def test_thousands_of_jobs_are_counted_by_state_and_only_those_that_need_attention_listed() -> None:
    jobs = [
        *many(5000),
        JobStatus("broken", "@hourly", False, None, None, None, 0, 3, "failed", state="failing"),
        JobStatus(
            "stuck",
            "@every 10s",
            False,
            None,
            None,
            None,
            5,
            0,
            "success",
            late_since=NOW.isoformat(),
            state="late",
        ),
        JobStatus("paused", "@hourly", True, None, None, None, 0, 0, "never", state="disabled"),
        JobStatus(
            "after-outage",
            "@hourly",
            False,
            None,
            None,
            None,
            1,
            0,
            "success",
            caught_up=1,
            missed=0,
            state="caught up",
        ),
    ]
    big = ClusterStatus(**{**status("healthy").__dict__, "jobs": jobs, "problems": []})
    assert big.job_counts == {"ok": 5000, "failing": 1, "late": 1, "caught up": 1, "disabled": 1}
    stream = io.StringIO()
    console(stream).print(render(big))
    text = stream.getvalue()
    assert "jobs 5004: 5000 ok, 1 failing, 1 late, 1 caught up, 1 disabled" in text
    assert "jobs that need attention (3 of 5004; every job: make status STACK=dev ALL=1)" in text
    rows = [
        line.split()[0]
        for line in text.splitlines()
        if line.split() and line.split()[0] in ("stuck", "broken", "after-outage")
    ]
    assert rows == ["stuck", "broken", "after-outage"]  # late first, then failing, then caught up
    assert "k00000" not in text
    assert "paused" not in text
    assert len(text.splitlines()) < 20
    # JSON holds every job and the counts.
    data = as_json(big)
    assert len(data["jobs"]) == 5004
    assert data["job_counts"]["ok"] == 5000


def test_a_long_list_of_jobs_that_need_attention_is_cut_with_the_count_of_the_rest() -> None:
    big = ClusterStatus(**{**status("healthy").__dict__, "jobs": many(200, "failing")})
    stream = io.StringIO()
    console(stream).print(render(big))
    text = stream.getvalue()
    assert f"... and {200 - LISTED} more that need attention (every job: make status STACK=dev ALL=1)" in text
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith("k0")) == LISTED


def test_several_hosts_add_a_host_column_and_the_servers_beside_the_nodes_get_a_line() -> None:
    placed = status()
    placed = ClusterStatus(
        **{
            **placed.__dict__,
            "nodes": [NodeStatus(**{**n.__dict__, "host": "h1"}) for n in placed.nodes],
            "prometheus": {
                "url": "http://127.0.0.1:9090",
                "container": "dkron-dev-prometheus",
                "state": "running",
            },
            "alertmanager": {
                "url": "http://127.0.0.1:9093",
                "container": "dkron-dev-alertmanager",
                "state": "exited",
            },
        }
    )
    stream = io.StringIO()
    console(stream).print(render(placed))
    text = stream.getvalue()
    assert " host " in text
    assert "prometheus http://127.0.0.1:9090 running" in text
    assert "alertmanager http://127.0.0.1:9093 exited" in text


def test_json_carries_the_verdict_and_its_exit_code() -> None:
    data = json.loads(json.dumps(as_json(status("broken"))))
    assert (data["verdict"], data["exit_code"]) == ("broken", 2)
    assert data["nodes"][1]["state"] == "exited"
    assert as_json(status("healthy"))["exit_code"] == 0
    assert as_json(status("degraded"))["exit_code"] == 1


def test_docker_times_and_errors_read_plainly() -> None:
    assert docker_time("2026-12-01T04:51:21.123456789Z") == datetime(
        2026, 12, 1, 4, 51, 21, 123456, tzinfo=UTC
    )
    assert docker_time("0001-01-01T00:00:00Z") is None
    assert short_error("ConnectionError: ... Connection refused')") == "connection refused"
    assert short_error("ReadTimeout: read timed out") == "timed out"
