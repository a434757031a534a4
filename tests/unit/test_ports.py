"""API ports stay with their nodes when the membership changes."""

from typing import Any

from components.ports import assign_api_ports
from components.spec import ClusterSpec, load_cluster_spec


def spec(*nodes: dict[str, Any]) -> ClusterSpec:
    return load_cluster_spec("unit", {"name": "c", "nodes": list(nodes), "ports": {"api_port_base": 9000}})


def test_new_stack_hands_out_ports_from_the_base_around_explicit_ones() -> None:
    s = spec({"name": "a"}, {"name": "b", "api_port": 9001}, {"name": "c"})
    assert assign_api_ports(s, {}) == {"a": 9000, "b": 9001, "c": 9002}


def test_removing_a_node_does_not_move_the_others() -> None:
    previous = {n: {"api_url": f"http://127.0.0.1:{p}"} for n, p in (("a", 9000), ("b", 9001), ("c", 9002))}
    s = spec({"name": "b"}, {"name": "c"}, {"name": "d"})
    assert assign_api_ports(s, previous) == {"b": 9001, "c": 9002, "d": 9000}


def test_an_explicit_port_wins_over_a_remembered_one() -> None:
    previous = {"a": {"api_url": "http://127.0.0.1:9000"}, "b": {"api_url": "http://127.0.0.1:9001"}}
    s = spec({"name": "a"}, {"name": "b", "api_port": 9000}, {"name": "c"})
    assert assign_api_ports(s, previous) == {"a": 9001, "b": 9000, "c": 9002}
