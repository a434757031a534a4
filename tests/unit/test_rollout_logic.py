"""Rollout planning and health judgement: plain functions, no Pulumi runtime, no cluster."""

from __future__ import annotations

from typing import Any

import pytest

from components.health import ClusterView, NodeView, RaftPeer, parse_raft_peers
from components.rollout import (
    IncompatibleVersionChange,
    NodeGateProvider,
    check_version_change,
    incompatible_change,
    rollout_order,
)
from components.spec import ClusterSpec, load_cluster_spec
from components.update_plan import gate_expectation

NODES = ("node1", "node2", "node3")

# `dkron raft list-peers` on node1 of a three-node cluster.
RAFT_TABLE = """\
Node   ID     Address          State     Voter
node3  node3  172.22.0.2:6868  follower  true
node1  node1  172.22.0.4:6868  leader    true
node2  node2  172.22.0.3:6868  follower  true
"""


# --- rollout order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leader", "order"),
    [
        ("node2", ["node1", "node3", "node2"]),
        ("node1", ["node2", "node3", "node1"]),
        ("node3", ["node1", "node2", "node3"]),
        (None, ["node1", "node2", "node3"]),
        ("node9", ["node1", "node2", "node3"]),
    ],
    ids=["leader-in-the-middle", "leader-first", "leader-already-last", "no-leader", "leader-not-in-config"],
)
def test_rollout_order_is_config_order_with_the_leader_last(leader: str | None, order: list[str]) -> None:
    assert rollout_order(NODES, leader) == order


# --- Dkron version changes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "boundary"),
    [
        ("4.0.8", "4.0.9", ("4.0.8", "4.0.9")),
        ("4.0.5", "4.1.2", ("4.0.8", "4.0.9")),
        ("4.0.9", "4.0.8", ("4.0.8", "4.0.9")),
        ("4.0.8", "4.0.9-rc1", ("4.0.8", "4.0.9")),
        ("4.0.9", "4.1.2", None),
        ("4.0.5", "4.0.8", None),
        ("4.0.5", "4.0.5", None),
        (None, "4.1.2", None),
    ],
    ids=["across", "over", "downgrade", "to-prerelease", "after", "before", "same", "new-stack"],
)
def test_incompatible_change_names_the_boundary_crossed(
    old: str | None, new: str, boundary: tuple[str, str] | None
) -> None:
    assert incompatible_change(old, new) == boundary


def versioned(version: str, *, allow: bool = False) -> ClusterSpec:
    return load_cluster_spec(
        "prod",
        {
            "name": "prod",
            "nodes": [{"name": n} for n in NODES],
            "image": {"dkron_version": version},
            "rollout": {"allow_incompatible_version_change": allow},
        },
    )


def test_crossing_the_boundary_is_refused_naming_stack_field_and_value() -> None:
    with pytest.raises(IncompatibleVersionChange) as refused:
        check_version_change("prod", versioned("4.0.9"), "4.0.8")

    message = str(refused.value)
    assert "stack 'prod'" in message
    assert "cluster.image.dkron_version = '4.0.9'" in message
    assert "runs 4.0.8" in message
    assert "cluster.rollout.allow_incompatible_version_change: true" in message


@pytest.mark.parametrize(
    ("spec", "old"),
    [
        (versioned("4.0.9", allow=True), "4.0.8"),
        (versioned("4.1.2"), "4.0.9"),
        (versioned("4.0.9"), "4.0.9"),
        (versioned("4.0.9"), None),
    ],
    ids=["allowed", "compatible", "unchanged", "new-stack"],
)
def test_other_version_changes_pass(spec: ClusterSpec, old: str | None) -> None:
    check_version_change("prod", spec, old)


# --- what a gate waits for -------------------------------------------------------------


def test_without_a_rollout_every_gate_expects_every_node() -> None:
    order = ["node3", "node1", "node2"]
    for position in range(3):
        assert gate_expectation(order, position, alive_now=set(), rolling=False) == list(NODES)


def test_rolling_gates_expect_handled_nodes_and_later_ones_alive_at_the_start() -> None:
    order = ["node1", "node3", "node2"]
    alive = set(NODES)

    assert [gate_expectation(order, i, alive, rolling=True) for i in range(3)] == [list(NODES)] * 3


def test_rolling_gate_does_not_expect_a_later_node_that_is_down() -> None:
    order = ["node1", "node3", "node2"]
    alive = {"node1", "node2"}

    assert gate_expectation(order, 0, alive, rolling=True) == ["node1", "node2"]
    # Once its own step has started it, the dead node must be back.
    assert gate_expectation(order, 1, alive, rolling=True) == list(NODES)
    assert gate_expectation(order, 2, alive, rolling=True) == list(NODES)


def test_rolling_gate_expects_an_earlier_node_even_if_it_was_down() -> None:
    assert gate_expectation(["node1", "node3", "node2"], 1, {"node2"}, rolling=True) == list(NODES)


# --- Raft peers --------------------------------------------------------------------------


def test_parse_raft_peers_reads_the_cli_table() -> None:
    assert parse_raft_peers(RAFT_TABLE) == {
        "node3": RaftPeer(node="node3", address="172.22.0.2:6868", state="follower", voter=True),
        "node1": RaftPeer(node="node1", address="172.22.0.4:6868", state="leader", voter=True),
        "node2": RaftPeer(node="node2", address="172.22.0.3:6868", state="follower", voter=True),
    }


def test_parse_raft_peers_keeps_non_voters_and_skips_other_lines() -> None:
    row = "node2  node2  172.22.0.3:6868  follower"
    text = "\n" + RAFT_TABLE.replace(f"{row}  true", f"{row}  false") + "some trailing log line\n"

    peers = parse_raft_peers(text)

    assert sorted(peers) == list(NODES)
    assert [p.node for p in peers.values() if not p.voter] == ["node2"]


def test_parse_raft_peers_of_an_empty_table() -> None:
    assert parse_raft_peers("Node  ID  Address  State  Voter\n") == {}


# --- judging a cluster view ----------------------------------------------------------------


def answering(name: str, leader: str | None = "node1", sees: tuple[str, ...] = NODES) -> NodeView:
    return NodeView(name=name, leader=leader, alive_servers=frozenset(sees))


def voters(*names: str) -> dict[str, RaftPeer]:
    return {n: RaftPeer(node=n, address=f"{n}:6868", state="follower", voter=True) for n in names}


def healthy(**changes: Any) -> ClusterView:
    nodes = {n: answering(n) for n in NODES}
    raft = changes.pop("raft_peers", voters(*NODES))
    return ClusterView(nodes={**nodes, **changes}, raft_peers=raft)


def test_healthy_view_has_no_problems() -> None:
    assert healthy().problems(NODES) == []


def test_a_node_not_answering_is_a_problem() -> None:
    view = healthy(node2=NodeView(name="node2", error="ConnectionError: refused"))

    assert view.problems(NODES) == ["node2: API not answering (ConnectionError: refused)"]


def test_a_node_never_asked_is_a_problem() -> None:
    view = ClusterView(nodes={n: answering(n) for n in ("node1", "node2")}, raft_peers=voters(*NODES))

    assert view.problems(NODES) == ["node3: API not answering (not asked)"]


def test_nodes_disagreeing_on_the_leader_is_a_problem() -> None:
    view = healthy(node3=answering("node3", leader="node3"))

    assert view.problems(NODES) == ["nodes disagree on the leader: node1, node3"]


def test_a_node_without_a_leader_is_a_problem() -> None:
    view = healthy(node2=answering("node2", leader=None))

    assert view.problems(NODES) == ["node2: sees no leader"]


def test_a_missing_alive_server_is_a_problem() -> None:
    view = healthy(node1=answering("node1", sees=("node1", "node2")))

    assert view.problems(NODES) == ["node1: does not see node3 as alive servers"]


def test_raft_configuration_lacking_a_voter_is_a_problem() -> None:
    non_voter = {**voters("node1", "node2"), "node3": RaftPeer("node3", "node3:6868", "follower", False)}

    assert healthy(raft_peers=non_voter).problems(NODES) == ["raft configuration lacks voters node3"]
    assert healthy(raft_peers=voters("node1")).problems(NODES) == [
        "raft configuration lacks voters node2, node3"
    ]


def test_unknown_raft_configuration_is_a_problem_only_with_an_error() -> None:
    nodes = {n: answering(n) for n in NODES}

    assert ClusterView(nodes=nodes, raft_error="exec failed").problems(NODES) == [
        "raft peers unknown: exec failed"
    ]
    assert ClusterView(nodes=nodes).problems(NODES) == []


def test_nodes_not_expected_are_not_judged() -> None:
    view = healthy(node3=NodeView(name="node3", error="ConnectionError: refused"))

    assert view.problems(["node1", "node2"]) == []


def test_leader_is_the_one_every_answering_node_names() -> None:
    assert healthy().leader == "node1"
    assert healthy(node3=NodeView(name="node3", error="Timeout")).leader == "node1"
    assert healthy(node3=answering("node3", leader="node3")).leader is None
    assert ClusterView(nodes={n: NodeView(name=n, error="refused") for n in NODES}).leader is None


def test_leaderless_but_connected() -> None:
    stalled = ClusterView(nodes={n: answering(n, leader=None) for n in NODES})

    assert stalled.leaderless_but_connected(NODES)
    assert not healthy().leaderless_but_connected(NODES)
    partly = ClusterView(nodes={**stalled.nodes, "node2": answering("node2", leader=None, sees=("node2",))})
    assert not partly.leaderless_but_connected(NODES)
    one_down = ClusterView(nodes={**stalled.nodes, "node3": NodeView(name="node3", error="refused")})
    assert not one_down.leaderless_but_connected(NODES)


# --- the gate's diff ----------------------------------------------------------------------


def gate_props(**changes: Any) -> dict[str, Any]:
    return {
        "node": "node1",
        "container_id": "c0ffee",
        "api_urls": {n: f"http://127.0.0.1:{8081 + i}" for i, n in enumerate(NODES)},
        "containers": {n: f"dev-{n}" for n in NODES},
        "expected": list(NODES),
        "timeout_s": 180,
        "nudge": False,
        "observed": {"leader": "node1"},
        **changes,
    }


def test_gate_diff_without_changes() -> None:
    diff = NodeGateProvider().diff("gate-node1", gate_props(), gate_props(observed=None))

    assert diff.changes is False
    assert diff.replaces == []


def test_gate_rechecks_in_place_when_its_container_is_new_never_replaced() -> None:
    diff = NodeGateProvider().diff("gate-node1", gate_props(), gate_props(container_id="beef"))

    assert diff.changes is True
    assert diff.replaces == []
    assert diff.delete_before_replace is False


@pytest.mark.parametrize(
    "change",
    [
        {"expected": ["node1", "node2"]},
        {"nudge": True},
        {"timeout_s": 60},
        {"api_urls": {"node1": "http://127.0.0.1:9000"}, "containers": {"node1": "dev-node1"}},
    ],
    ids=["membership", "nudge", "timeout", "urls"],
)
def test_gate_inputs_that_start_no_container_are_no_change(change: dict[str, Any]) -> None:
    # They only steer the next wait; showing them as an update would say nothing true.
    diff = NodeGateProvider().diff("gate-node1", gate_props(), gate_props(**change))

    assert diff.changes is False


def test_rollout_brings_down_nodes_back_before_touching_live_ones() -> None:
    assert rollout_order(["n1", "n2", "n3"], "n2", down={"n3"}) == ["n3", "n1", "n2"]
    # A new node counts as down: it joins before anything is restarted.
    assert rollout_order(["n1", "n2", "n3", "n4"], "n1", down={"n4"}) == ["n4", "n2", "n3", "n1"]
