"""The `hosts` config: engine URLs, addresses, node placement rules, and errors a user can act on."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.spec import EVERY_INTERFACE, ClusterConfigError, load_cluster_spec, max_nodes_per_host


def three_hosts() -> dict[str, Any]:
    return {
        "name": "lab",
        "hosts": {
            "h1": {"docker": "ssh://root@10.213.77.11", "address": "10.213.77.11"},
            "h2": {"docker": "ssh://root@10.213.77.12:2222", "address": "10.213.77.12"},
            "h3": {"docker": "unix:///run/h3/docker.sock", "address": "10.213.77.13"},
        },
        "nodes": [
            {"name": "n1", "host": "h1"},
            {"name": "n2", "host": "h2"},
            {"name": "n3", "host": "h3"},
        ],
    }


def with_changes(**changes: Any) -> dict[str, Any]:
    raw = three_hosts()
    raw.update(copy.deepcopy(changes))
    return raw


def with_host(name: str, **changes: Any) -> dict[str, Any]:
    raw = three_hosts()
    raw["hosts"][name].update(changes)
    return raw


def with_node(index: int, **changes: Any) -> dict[str, Any]:
    raw = three_hosts()
    raw["nodes"][index].update(changes)
    return raw


def problems(raw: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("lab", raw)
    return caught.value.problems


def test_hosts_load_with_their_settings() -> None:
    raw = with_host("h1", ssh_identity=".lab/id_ed25519", ssh_known_hosts=".lab/known_hosts")
    raw["hosts"]["h2"] = {
        "docker": "tcp://10.213.77.12:2376",
        "address": "10.213.77.12",
        "tls_dir": "/etc/tls",
    }
    raw["ports"] = {"bind_address": EVERY_INTERFACE}
    raw["nodes"][1].update(serf_port=7946, rpc_port=7373)
    spec = load_cluster_spec("lab", raw)

    assert list(spec.hosts) == ["h1", "h2", "h3"]
    assert spec.hosts["h1"].ssh_identity == ".lab/id_ed25519"
    assert spec.hosts["h1"].scheme == "ssh"
    assert spec.hosts["h2"].tls_dir == "/etc/tls"
    assert spec.hosts["h3"].scheme == "unix"
    assert [node.host for node in spec.nodes] == ["h1", "h2", "h3"]
    assert (spec.nodes[1].serf_port, spec.nodes[1].rpc_port) == (7946, 7373)
    assert spec.placement.accept_quorum_loss_on_host_failure is False


def test_without_hosts_nothing_changes() -> None:
    spec = load_cluster_spec("dev", {"name": "dev", "nodes": [{"name": "a"}]})
    assert spec.hosts == {}
    assert spec.nodes[0].host is None
    assert spec.nodes[0].serf_port is None


def test_one_host_may_carry_every_node() -> None:
    raw = three_hosts()
    raw["hosts"] = {"h1": raw["hosts"]["h1"]}
    raw["nodes"] = [{"name": f"n{i}", "host": "h1"} for i in range(3)]
    assert len(load_cluster_spec("lab", raw).nodes) == 3


def test_a_placement_that_loses_the_quorum_is_allowed_when_the_stack_accepts_it() -> None:
    raw = with_node(1, host="h1")
    raw["placement"] = {"accept_quorum_loss_on_host_failure": True}
    assert load_cluster_spec("lab", raw).placement.accept_quorum_loss_on_host_failure


def test_five_nodes_may_put_two_on_a_host() -> None:
    raw = three_hosts()
    raw["nodes"] = [{"name": f"n{i}", "host": h} for i, h in enumerate(["h1", "h1", "h2", "h2", "h3"])]
    assert len(load_cluster_spec("lab", raw).nodes) == 5


@pytest.mark.parametrize(("total", "allowed"), [(1, 0), (3, 1), (5, 2), (7, 3)])
def test_a_host_may_carry_less_than_half_the_nodes(total: int, allowed: int) -> None:
    assert max_nodes_per_host(total) == allowed


# (config, field path, bad value, other text the message must contain)
BAD_CONFIGS = {
    "unknown scheme": (
        with_host("h1", docker="http://10.213.77.11:2375"),
        "cluster.hosts.h1.docker",
        "'http://10.213.77.11:2375'",
        "unix:///path/to/docker.sock, tcp://host:port or ssh://user@host[:port]",
    ),
    "ssh without a user": (
        with_host("h1", docker="ssh://10.213.77.11"),
        "cluster.hosts.h1.docker",
        "'ssh://10.213.77.11'",
        "ssh://user@host[:port]",
    ),
    "ssh with a password": (
        with_host("h1", docker="ssh://root:secret@10.213.77.11"),
        "cluster.hosts.h1.docker",
        "'ssh://root:secret@10.213.77.11'",
        "no password",
    ),
    "ssh with a bad port": (
        with_host("h1", docker="ssh://root@10.213.77.11:99999"),
        "cluster.hosts.h1.docker",
        "'ssh://root@10.213.77.11:99999'",
        "port from 1 to 65535",
    ),
    "ssh with options in the URL": (
        with_host("h1", docker="ssh://root@10.213.77.11?identity=/k"),
        "cluster.hosts.h1.docker",
        "'ssh://root@10.213.77.11?identity=/k'",
        "ssh_identity",
    ),
    "tcp without a port": (
        with_host("h1", docker="tcp://10.213.77.11", tls_dir="/etc/tls"),
        "cluster.hosts.h1.docker",
        "'tcp://10.213.77.11'",
        "tcp://host:port",
    ),
    "tcp with a path": (
        with_host("h1", docker="tcp://10.213.77.11:2376/v1", tls_dir="/etc/tls"),
        "cluster.hosts.h1.docker",
        "'tcp://10.213.77.11:2376/v1'",
        "tcp://host:port",
    ),
    "unix with a relative path": (
        with_host("h3", docker="unix://run/h3/docker.sock"),
        "cluster.hosts.h3.docker",
        "'unix://run/h3/docker.sock'",
        "absolute path",
    ),
    "address not IPv4": (
        with_host("h2", address="h2.example"),
        "cluster.hosts.h2.address",
        "'h2.example'",
        "IPv4",
    ),
    "loopback address": (
        with_host("h2", address="127.0.0.1"),
        "cluster.hosts.h2.address",
        "'127.0.0.1'",
        "not loopback",
    ),
    "unspecified address": (
        with_host("h2", address=EVERY_INTERFACE),
        "cluster.hosts.h2.address",
        f"'{EVERY_INTERFACE}'",
        "not loopback (127.x) or 0.0.0.0",
    ),
    "bad host name": (
        with_changes(hosts={"H1": {"docker": "unix:///run/d.sock", "address": "10.0.0.1"}}),
        "cluster.hosts",
        "'H1'",
        "lowercase",
    ),
    "unknown host setting": (
        with_host("h1", identity="/k"),
        "cluster.hosts.h1.identity",
        "identity",
        "allowed: docker, address, ssh_identity, ssh_known_hosts, tls_dir",
    ),
    "missing docker": (
        with_changes(hosts={"h1": {"address": "10.0.0.1"}}),
        "cluster.hosts.h1.docker",
        "docker",
        "missing",
    ),
    "identity on a unix host": (
        with_host("h3", ssh_identity="/k"),
        "cluster.hosts.h3.ssh_identity",
        "'/k'",
        "only for an ssh:// engine; host 'h3' uses unix://",
    ),
    "known_hosts on a tcp host": (
        {
            **with_host("h2", docker="tcp://10.213.77.12:2376", tls_dir="/t", ssh_known_hosts="/kh"),
            "ports": {"bind_address": EVERY_INTERFACE},
        },
        "cluster.hosts.h2.ssh_known_hosts",
        "'/kh'",
        "only for an ssh:// engine",
    ),
    "tcp without tls_dir": (
        {**with_host("h2", docker="tcp://10.213.77.12:2376"), "ports": {"bind_address": EVERY_INTERFACE}},
        "cluster.hosts.h2.docker",
        "'tcp://10.213.77.12:2376'",
        "needs tls_dir",
    ),
    "tls_dir on an ssh host": (
        with_host("h1", tls_dir="/etc/tls"),
        "cluster.hosts.h1.tls_dir",
        "'/etc/tls'",
        "only for a tcp:// engine; host 'h1' uses ssh://",
    ),
    "tcp host with the API on loopback": (
        with_host("h2", docker="tcp://10.213.77.12:2376", tls_dir="/t"),
        "cluster.hosts.h2.docker",
        "'tcp://10.213.77.12:2376'",
        "use ssh://user@host for this host, or publish the API with ports.bind_address 0.0.0.0",
    ),
    "two hosts with one address": (
        with_host("h3", address="10.213.77.11"),
        "cluster.hosts.h3.address",
        "'10.213.77.11'",
        "clashes with the address of host 'h1'",
    ),
    "two hosts with one engine": (
        with_host("h2", docker="ssh://root@10.213.77.11"),
        "cluster.hosts.h2.docker",
        "'ssh://root@10.213.77.11'",
        "is the engine of host 'h1' too",
    ),
    "unknown host": (
        with_node(2, host="h4"),
        "cluster.nodes[2].host",
        "'h4'",
        "unknown host; declared hosts: h1, h2, h3",
    ),
    "unknown host, close to a declared one": (
        with_node(2, host="hh3"),
        "cluster.nodes[2].host",
        "'hh3'",
        "did you mean 'h3'?",
    ),
    "node without a host": (
        with_node(1, host=None),
        "cluster.nodes[1].host",
        "None",
        "required with hosts: every node names the host it runs on; declared hosts: h1, h2, h3",
    ),
    "host without hosts": (
        {"name": "dev", "nodes": [{"name": "a", "host": "h1"}]},
        "cluster.nodes[0].host",
        "'h1'",
        "needs hosts",
    ),
    "serf_port without hosts": (
        {"name": "dev", "nodes": [{"name": "a", "serf_port": 7946}]},
        "cluster.nodes[0].serf_port",
        "7946",
        "needs hosts",
    ),
    "rpc_port without hosts": (
        {"name": "dev", "nodes": [{"name": "a", "rpc_port": 7373}]},
        "cluster.nodes[0].rpc_port",
        "7373",
        "needs hosts",
    ),
    "serf_port too low": (
        with_node(0, serf_port=946),
        "cluster.nodes[0].serf_port",
        "946",
        "1024",
    ),
    "rpc_port too high": (
        with_node(0, rpc_port=70000),
        "cluster.nodes[0].rpc_port",
        "70000",
        "65535",
    ),
    "subnet with hosts": (
        with_changes(network={"subnet": "172.24.5.0/24"}),
        "cluster.network.subnet",
        "'172.24.5.0/24'",
        "means nothing with hosts",
    ),
    "node address with hosts": (
        with_node(0, ipv4_address="172.24.5.10"),
        "cluster.nodes[0].ipv4_address",
        "'172.24.5.10'",
        "host networking",
    ),
    "bind address neither loopback nor every interface": (
        with_changes(ports={"bind_address": "10.213.77.11"}),
        "cluster.ports.bind_address",
        "'10.213.77.11'",
        "with hosts must be 127.0.0.1",
    ),
    "unsafe placement": (
        with_node(1, host="h1"),
        "cluster.hosts.h1",
        "['n1', 'n2']",
        "carries 2 of the 3 nodes, so losing host 'h1' loses the quorum (2 of 3 needed); at most 1 of 3",
    ),
}


@pytest.mark.parametrize(("raw", "path", "value", "detail"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_hosts_config_is_rejected_with_a_useful_message(
    raw: dict[str, Any], path: str, value: str, detail: str
) -> None:
    found = problems(raw)
    lines = [line for line in found if line.startswith(f"stack 'lab': {path} = ") or f": {path}" in line]
    assert lines, f"no problem reported at {path}: {found}"
    line = lines[0]
    assert line.startswith("stack 'lab': ")
    assert value in line
    assert detail in line


def test_a_missing_host_lists_the_declared_ones() -> None:
    (line,) = problems(with_node(1, host=None))
    assert line == (
        "stack 'lab': cluster.nodes[1].host = None: required with hosts: every node names the host it runs on;"
        " declared hosts: h1, h2, h3"
    )


# --- ports on one host ---------------------------------------------------------------


def two_on_h1(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    raw = three_hosts()
    raw["nodes"] = [
        {"name": "n1", "host": "h1", **first},
        {"name": "n2", "host": "h1", **second},
        {"name": "n3", "host": "h2"},
        {"name": "n4", "host": "h2"},
        {"name": "n5", "host": "h3"},
    ]
    return raw


@pytest.mark.parametrize(
    ("first", "second", "path", "whose"),
    [
        ({"serf_port": 9000}, {"serf_port": 9000}, "nodes[1].serf_port", "the serf_port of node 'n1'"),
        ({"rpc_port": 9000}, {"rpc_port": 9000}, "nodes[1].rpc_port", "the rpc_port of node 'n1'"),
        ({"api_port": 9000}, {"serf_port": 9000}, "nodes[1].serf_port", "the api_port of node 'n1'"),
        ({"serf_port": 9000}, {"rpc_port": 9000}, "nodes[1].rpc_port", "the serf_port of node 'n1'"),
        ({"rpc_port": 9000}, {"api_port": 9000}, "nodes[1].api_port", "the rpc_port of node 'n1'"),
        ({"serf_port": 9000, "rpc_port": 9000}, {}, "nodes[0].rpc_port", "its own serf_port"),
        ({"api_port": 9000, "rpc_port": 9000}, {}, "nodes[0].rpc_port", "its own api_port"),
    ],
)
def test_two_ports_on_one_host_clash(
    first: dict[str, Any], second: dict[str, Any], path: str, whose: str
) -> None:
    (line,) = problems(two_on_h1(first, second))
    assert line == (
        f"stack 'lab': cluster.{path} = 9000: clashes with {whose} on host 'h1'; nodes on one host need"
        " distinct ports (api_port, serf_port and rpc_port all count)"
    )


def test_the_same_port_on_two_hosts_is_fine() -> None:
    raw = two_on_h1({"serf_port": 9000}, {})
    raw["nodes"][2]["serf_port"] = 9000
    raw["nodes"][3]["rpc_port"] = 9001
    raw["nodes"][4]["rpc_port"] = 9001
    assert len(load_cluster_spec("lab", raw).nodes) == 5


def test_two_api_ports_clash_once_across_the_cluster() -> None:
    raw = two_on_h1({"api_port": 9000}, {"api_port": 9000})
    (line,) = problems(raw)
    assert line.startswith(
        "stack 'lab': cluster.nodes[1].api_port = 9000: clashes with the API port of node 'n1'"
    )
    raw = two_on_h1({"api_port": 9000}, {})
    raw["nodes"][2]["api_port"] = 9000
    (line,) = problems(raw)
    assert line.startswith(
        "stack 'lab': cluster.nodes[2].api_port = 9000: clashes with the API port of node 'n1'"
    )


# --- placement ---------------------------------------------------------------------


def test_unsafe_placement_names_host_nodes_and_the_limit() -> None:
    (line,) = problems(with_node(1, host="h1"))
    assert line == (
        "stack 'lab': cluster.hosts.h1 = ['n1', 'n2']: carries 2 of the 3 nodes, so losing host 'h1' loses"
        " the quorum (2 of 3 needed); at most 1 of 3 nodes may share a host. Spread the nodes over the hosts,"
        " or set placement.accept_quorum_loss_on_host_failure: true"
    )


def test_unsafe_placement_says_when_there_are_too_few_hosts() -> None:
    raw = three_hosts()
    del raw["hosts"]["h3"]
    raw["nodes"][2]["host"] = "h2"
    (line,) = problems(raw)
    assert line.startswith("stack 'lab': cluster.hosts.h2 = ['n2', 'n3']: carries 2 of the 3 nodes")
    assert "(3 nodes need at least 3 hosts)" in line


def test_one_node_on_one_of_two_hosts_is_unsafe() -> None:
    raw = three_hosts()
    raw["nodes"] = [{"name": "n1", "host": "h1"}]
    (line,) = problems(raw)
    assert line.startswith("stack 'lab': cluster.hosts.h1 = ['n1']: carries 1 of the 1 nodes")
    assert "a single node is always lost with its host" in line


def test_five_nodes_three_on_a_host_is_unsafe() -> None:
    raw = three_hosts()
    raw["nodes"] = [{"name": f"n{i}", "host": h} for i, h in enumerate(["h1", "h1", "h1", "h2", "h3"])]
    (line,) = problems(raw)
    assert "carries 3 of the 5 nodes" in line
    assert "(3 of 5 needed); at most 2 of 5 nodes may share a host" in line


def test_every_problem_is_reported_at_once() -> None:
    raw = with_host("h3", address="10.213.77.11")
    raw["nodes"][0]["host"] = "h9"
    raw["network"] = {"subnet": "172.24.5.0/24"}
    found = problems(raw)
    assert [line.split(" = ")[0] for line in found] == [
        "stack 'lab': cluster.hosts.h3.address",
        "stack 'lab': cluster.network.subnet",
        "stack 'lab': cluster.nodes[0].host",
    ]
