"""Node placement on hosts: engine refs, and Serf/gRPC ports that stay with their nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.placement import (
    RPC_PORT_BASE,
    SERF_PORT_BASE,
    NodePlacement,
    PlacementError,
    host_engines,
    place_nodes,
)
from components.spec import EVERY_INTERFACE, ClusterSpec, load_cluster_spec

ROOT = Path("/work/project")
HOSTS: dict[str, Any] = {
    "h1": {"docker": "ssh://root@10.213.77.11", "address": "10.213.77.11"},
    "h2": {"docker": "ssh://root@10.213.77.12:2222", "address": "10.213.77.12"},
    "h3": {"docker": "unix:///run/h3/docker.sock", "address": "10.213.77.13"},
}


def spec(*nodes: dict[str, Any], hosts: dict[str, Any] | None = None, **extra: Any) -> ClusterSpec:
    raw = {
        "name": "lab",
        "hosts": HOSTS if hosts is None else hosts,
        "nodes": list(nodes),
        "placement": {"accept_quorum_loss_on_host_failure": True},
        **extra,
    }
    return load_cluster_spec("unit", raw)


def on(host: str, *names: str) -> list[dict[str, Any]]:
    return [{"name": name, "host": host} for name in names]


def ports(placements: dict[str, NodePlacement]) -> dict[str, tuple[str, int, int]]:
    return {name: (p.host, p.serf_port, p.rpc_port) for name, p in placements.items()}


def recorded(placements: dict[str, NodePlacement], api_ports: dict[str, int]) -> dict[str, Any]:
    """The stack's `nodes` output as the last update would have left it."""
    return {
        name: {
            "host": p.host,
            "serf_port": p.serf_port,
            "rpc_port": p.rpc_port,
            "api_url": f"http://127.0.0.1:{api_ports[name]}",
        }
        for name, p in placements.items()
    }


def test_without_hosts_nothing_is_placed() -> None:
    plain = load_cluster_spec("unit", {"name": "c", "nodes": [{"name": "a"}]})
    assert place_nodes(plain, {}, ROOT) == {}
    assert host_engines(plain, ROOT) == {}


def test_a_new_stack_hands_out_ports_per_host_from_the_bases() -> None:
    s = spec(*on("h1", "a", "b"), *on("h2", "c", "d"), *on("h3", "e"))
    placed = place_nodes(s, {}, ROOT)
    assert ports(placed) == {
        "a": ("h1", SERF_PORT_BASE, RPC_PORT_BASE),
        "b": ("h1", SERF_PORT_BASE + 1, RPC_PORT_BASE + 1),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE),
        "d": ("h2", SERF_PORT_BASE + 1, RPC_PORT_BASE + 1),
        "e": ("h3", SERF_PORT_BASE, RPC_PORT_BASE),
    }
    assert placed["c"] == NodePlacement(
        host="h2",
        engine="ssh://root@10.213.77.12:2222",
        address="10.213.77.12",
        serf_port=SERF_PORT_BASE,
        rpc_port=RPC_PORT_BASE,
    )
    assert list(placed) == ["a", "b", "c", "d", "e"]


def test_explicit_ports_come_first_and_the_rest_go_around_them() -> None:
    s = spec(
        {"name": "a", "host": "h1"},
        {"name": "b", "host": "h1", "serf_port": SERF_PORT_BASE, "rpc_port": 7000},
        {"name": "c", "host": "h2"},
    )
    assert ports(place_nodes(s, {}, ROOT)) == {
        "a": ("h1", SERF_PORT_BASE + 1, RPC_PORT_BASE),
        "b": ("h1", SERF_PORT_BASE, 7000),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE),
    }


def test_handed_out_ports_never_take_an_api_port_on_the_host() -> None:
    s = spec(
        {"name": "a", "host": "h1", "api_port": SERF_PORT_BASE},
        {"name": "b", "host": "h1"},
        {"name": "c", "host": "h2", "api_port": RPC_PORT_BASE},
        ports={"api_port_base": SERF_PORT_BASE + 1},
    )
    # b gets API port 8947 (the next one from the base), so Serf moves on to 8948.
    assert ports(place_nodes(s, {}, ROOT)) == {
        "a": ("h1", SERF_PORT_BASE + 2, RPC_PORT_BASE),
        "b": ("h1", SERF_PORT_BASE + 3, RPC_PORT_BASE + 1),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE + 1),
    }


def test_an_explicit_port_on_a_handed_out_api_port_is_refused() -> None:
    s = spec({"name": "a", "host": "h1"}, {"name": "b", "host": "h1", "serf_port": 8081}, *on("h2", "c"))
    with pytest.raises(PlacementError) as caught:
        place_nodes(s, {}, ROOT, stack="lab")
    assert caught.value.problems == (
        "stack 'lab': cluster.nodes[1].serf_port = 8081: clashes with the API port handed to node 'a' on host"
        " 'h1'; choose another port, or give 'a' an explicit api_port",
    )


def test_adding_and_removing_nodes_keeps_the_other_nodes_ports() -> None:
    first = spec(*on("h1", "a", "b"), *on("h2", "c"))
    placed = place_nodes(first, {}, ROOT)
    api = {"a": 8081, "b": 8082, "c": 8083}

    # a removed, d added on h1 and e on h2: b and c keep theirs, the newcomers take the free ones.
    second = spec(*on("h1", "b", "d"), *on("h2", "c", "e"), *on("h3", "f"))
    again = place_nodes(second, recorded(placed, api), ROOT)
    assert ports(again) == {
        "b": ("h1", SERF_PORT_BASE + 1, RPC_PORT_BASE + 1),
        "d": ("h1", SERF_PORT_BASE, RPC_PORT_BASE),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE),
        "e": ("h2", SERF_PORT_BASE + 1, RPC_PORT_BASE + 1),
        "f": ("h3", SERF_PORT_BASE, RPC_PORT_BASE),
    }


def test_a_moved_node_gets_fresh_ports_on_its_new_host() -> None:
    previous = {
        "a": {"host": "h1", "serf_port": 9100, "rpc_port": 9101},
        "b": {"host": "h2", "serf_port": 9200, "rpc_port": 9201},
    }
    s = spec(*on("h1", "a"), *on("h3", "b"), *on("h2", "c"))
    assert ports(place_nodes(s, previous, ROOT)) == {
        "a": ("h1", 9100, 9101),
        "b": ("h3", SERF_PORT_BASE, RPC_PORT_BASE),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE),
    }


def test_an_explicit_port_wins_over_a_remembered_one() -> None:
    previous = {"a": {"host": "h1", "serf_port": 9100, "rpc_port": 9101}}
    s = spec({"name": "a", "host": "h1"}, {"name": "b", "host": "h1", "rpc_port": 9101}, *on("h2", "c"))
    assert ports(place_nodes(s, previous, ROOT)) == {
        "a": ("h1", 9100, RPC_PORT_BASE),
        "b": ("h1", SERF_PORT_BASE, 9101),
        "c": ("h2", SERF_PORT_BASE, RPC_PORT_BASE),
    }


def test_a_remembered_port_that_is_now_an_api_port_is_given_up() -> None:
    previous = {"a": {"host": "h1", "serf_port": 9000, "rpc_port": 9001}}
    s = spec({"name": "a", "host": "h1"}, {"name": "b", "host": "h1", "api_port": 9000}, *on("h2", "c"))
    assert ports(place_nodes(s, previous, ROOT))["a"] == ("h1", SERF_PORT_BASE, 9001)


@pytest.mark.parametrize(
    "info",
    [
        None,
        "garbage",
        {"host": "h1"},
        {"host": "h1", "serf_port": "9100", "rpc_port": True},
        {"serf_port": 9100},
    ],
)
def test_an_unreadable_record_is_ignored(info: Any) -> None:
    s = spec(*on("h1", "a"), *on("h2", "b"), *on("h3", "c"))
    assert ports(place_nodes(s, {"a": info}, ROOT))["a"] == ("h1", SERF_PORT_BASE, RPC_PORT_BASE)


def test_engine_refs_carry_absolute_file_options() -> None:
    hosts = {
        "h1": {
            "docker": "ssh://root@10.213.77.11",
            "address": "10.213.77.11",
            "ssh_identity": ".lab/id_ed25519",
            "ssh_known_hosts": "/etc/lab/known hosts",
        },
        "h2": {"docker": "ssh://ops@10.213.77.12:2222", "address": "10.213.77.12", "ssh_identity": "/k/id"},
        "h3": {"docker": "tcp://10.213.77.13:2376", "address": "10.213.77.13", "tls_dir": "tls/h3"},
        "h4": {"docker": "unix:///run/h4/docker.sock", "address": "10.213.77.14"},
    }
    s = spec(
        *on("h1", "a"), *on("h2", "b"), *on("h3", "c"), hosts=hosts, ports={"bind_address": EVERY_INTERFACE}
    )
    assert host_engines(s, ROOT) == {
        "h1": "ssh://root@10.213.77.11?identity=/work/project/.lab/id_ed25519&known_hosts=/etc/lab/known%20hosts",
        "h2": "ssh://ops@10.213.77.12:2222?identity=/k/id",
        "h3": "tcp://10.213.77.13:2376?tls=/work/project/tls/h3",
        "h4": "unix:///run/h4/docker.sock",
    }
    assert place_nodes(s, {}, ROOT)["c"].engine == "tcp://10.213.77.13:2376?tls=/work/project/tls/h3"
