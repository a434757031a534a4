"""Which nodes leave, in which order, and when a removal is refused."""

from typing import Any

import pytest

from components.membership import (
    UnsafeRemoval,
    check_removal_safe,
    removal_order,
    removed_nodes,
    stray_voters,
)


def test_removed_nodes_are_those_gone_from_the_config() -> None:
    previous: dict[str, dict[str, Any]] = {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}}
    assert removed_nodes(previous, ["a", "b", "c"]) == ["d", "e"]
    assert removed_nodes(None, ["a"]) == []


def test_the_leader_leaves_last() -> None:
    assert removal_order(["d", "e", "a"], leader="d") == ["e", "a", "d"]
    assert removal_order(["d", "e"], leader="a") == ["d", "e"]


@pytest.mark.parametrize(
    ("voters", "removed"),
    [(["a", "b", "c", "d", "e"], ["d", "e"]), (["a", "b", "c"], ["c"]), (["a", "b", "c"], [])],
)
def test_removals_that_keep_a_majority_are_allowed(voters: list[str], removed: list[str]) -> None:
    check_removal_safe("dev", voters, removed)


@pytest.mark.parametrize(
    ("voters", "removed", "at_most"),
    [(["a", "b", "c"], ["b", "c"], 1), (["a", "b", "c", "d", "e"], ["c", "d", "e"], 2)],
)
def test_removals_that_leave_no_majority_are_refused(
    voters: list[str], removed: list[str], at_most: int
) -> None:
    with pytest.raises(UnsafeRemoval, match=f"Remove at most {at_most} node") as refused:
        check_removal_safe("dev", voters, removed)
    assert "stack 'dev': cluster.nodes" in str(refused.value)


def test_stray_voters_are_the_peers_outside_the_config() -> None:
    assert stray_voters(["a", "b", "c", "node1"], ["a", "b", "c", "d"]) == ["node1"]
    assert stray_voters(["z", "a", "y"], ["a"]) == ["y", "z"]
    assert stray_voters(["a", "b"], ["a", "b", "c"]) == []


def test_a_leaving_leader_is_not_asked_for_the_peers_a_configured_node_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n5 leaves while n4, also on its way out, still leads: n4 is not among the
    # configured containers, so Raft's configuration is read on one that is.
    import components.membership as membership
    from components.health import RaftPeer

    asked: list[str] = []

    def peers(container: str) -> dict[str, RaftPeer]:
        asked.append(container)
        return {n: RaftPeer(n, "", "Follower", True) for n in ("n1", "n2", "n3", "n4")}

    monkeypatch.setattr(membership, "raft_peers", peers)
    containers = {"n1": "c-n1", "n2": "c-n2", "n3": "c-n3"}
    assert membership._wait_peer_gone("n5", containers, "n4", timeout_s=5)
    assert asked == ["c-n1"]
