"""The cluster spec loader: defaults, and errors a user can act on."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from components.spec import ClusterConfigError, ClusterSpec, load_cluster_spec, version_key


def three_nodes() -> dict[str, Any]:
    return {
        "name": "dev",
        "nodes": [
            {"name": "dkron1", "tags": {"python": "daily"}},
            {"name": "dkron2", "tags": {"python": "daily"}},
            {"name": "dkron3", "log_level": "debug"},
        ],
    }


def with_changes(**changes: Any) -> dict[str, Any]:
    raw = three_nodes()
    raw.update(copy.deepcopy(changes))
    return raw


def with_node(index: int, **changes: Any) -> dict[str, Any]:
    raw = three_nodes()
    raw["nodes"][index].update(changes)
    return raw


def names(*node_names: str) -> list[dict[str, Any]]:
    return [{"name": name} for name in node_names]


def test_valid_config_loads_with_defaults() -> None:
    spec = load_cluster_spec("dev", three_nodes())

    assert [node.name for node in spec.nodes] == ["dkron1", "dkron2", "dkron3"]
    assert spec.nodes[0].tags == {"python": "daily"}
    assert spec.dkron.log_level == "info"
    assert spec.dkron.disable_usage_stats is True
    assert spec.dkron.gossip_encryption is True
    assert spec.dkron.raft_multiplier == 1
    assert spec.ports.bind_address == "127.0.0.1"
    assert spec.image.dkron_version == "4.0.5"
    assert spec.persistence.retain_volumes_on_destroy is False
    assert spec.rollout.node_timeout_seconds == 180
    assert spec.rebootstrap is False
    assert spec.jobs == []
    assert spec.job_files == []


def test_helpers_name_docker_objects() -> None:
    raw = three_nodes()
    raw["nodes"][2]["api_port"] = 9000
    spec = load_cluster_spec("dev", raw)
    first, _, third = spec.nodes

    assert spec.container_name(first) == "dev-dkron1"
    assert spec.volume_name(third) == "dev-dkron3-data"
    assert spec.network_name == "dev-net"
    assert spec.image_tag == "dkron-iac/dev-node:4.0.5"
    assert spec.node("dkron3") is third
    with pytest.raises(KeyError):
        spec.node("nope")


def test_spec_is_frozen() -> None:
    spec = load_cluster_spec("dev", three_nodes())
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


def test_single_node_cluster_is_allowed() -> None:
    assert len(load_cluster_spec("dev", {"name": "solo", "nodes": names("a")}).nodes) == 1


def test_jobs_and_job_files_are_carried() -> None:
    job = {"name": "hello", "schedule": "@every 1m", "unknown": {"kept": True}}
    spec = load_cluster_spec("dev", with_changes(jobs=[job], job_files=["jobs/more.yaml"]))
    assert spec.jobs == [job]
    assert spec.job_files == ["jobs/more.yaml"]


# (config, field path, bad value, other text the message must contain)
BAD_CONFIGS = {
    "duplicate node names": (
        with_changes(nodes=names("a", "b", "a")),
        "cluster.nodes[2].name",
        "'a'",
        "unique",
    ),
    "uppercase node name": (
        with_node(1, name="Node_1"),
        "cluster.nodes[1].name",
        "'Node_1'",
        "lowercase",
    ),
    "node name ending with dash": (
        with_node(0, name="node-"),
        "cluster.nodes[0].name",
        "'node-'",
        "lowercase",
    ),
    "two nodes": (
        with_changes(nodes=names("a", "b")),
        "cluster.nodes",
        "['a', 'b']",
        "odd",
    ),
    "four nodes": (
        with_changes(nodes=names("a", "b", "c", "d")),
        "cluster.nodes",
        "'d'",
        "no majority",
    ),
    "zero nodes": (with_changes(nodes=[]), "cluster.nodes", "[]", "at least one node"),
    "port clash": (
        with_changes(
            nodes=[
                {"name": "dkron1", "api_port": 9000},
                {"name": "dkron2", "api_port": 9000},
                {"name": "dkron3"},
            ]
        ),
        "cluster.nodes[1].api_port",
        "9000",
        "'dkron1'",
    ),
    "base leaves no room": (
        with_changes(ports={"api_port_base": 65534}),
        "cluster.ports.api_port_base",
        "65534",
        "65536",
    ),
    "port too low": (
        with_node(0, api_port=80),
        "cluster.nodes[0].api_port",
        "80",
        "1024",
    ),
    "port too high": (
        with_node(0, api_port=70000),
        "cluster.nodes[0].api_port",
        "70000",
        "65535",
    ),
    "derived port too high": (
        with_changes(ports={"api_port_base": 65534}),
        "cluster.ports.api_port_base",
        "65534",
        "65536",
    ),
    "bad bind address": (
        with_changes(ports={"bind_address": "localhost"}),
        "cluster.ports.bind_address",
        "'localhost'",
        "IPv4",
    ),
    "unknown top-level key": (
        with_changes(nodez=[]),
        "cluster.nodez",
        "nodez",
        "allowed: name, nodes, dkron, image, ports, network, persistence, rollout, rebootstrap, jobs, job_files",
    ),
    "unknown node key": (
        with_node(0, tagz={}),
        "cluster.nodes[0].tagz",
        "tagz",
        "allowed: name, tags, api_port, ipv4_address, log_level",
    ),
    "unknown image setting": (
        with_changes(image={"dkron_tag": "4.0.5"}),
        "cluster.image.dkron_tag",
        "dkron_tag",
        "allowed: base_image, dkron_image, dkron_version",
    ),
    "tag value with a count": (
        with_node(0, tags={"python": "daily:1"}),
        "cluster.nodes[0].tags.python",
        "'daily:1'",
        "':'",
    ),
    "tag value with a space": (
        with_node(0, tags={"python": "every day"}),
        "cluster.nodes[0].tags.python",
        "'every day'",
        "letters, digits",
    ),
    "reserved tag key": (
        with_node(1, tags={"role": "worker"}),
        "cluster.nodes[1].tags",
        "'role'",
        "set by Dkron",
    ),
    "non-string tag value": (
        with_node(1, tags={"python": 1}),
        "cluster.nodes[1].tags.python",
        "1",
        "string",
    ),
    "bad dkron_version": (
        with_changes(image={"dkron_version": "v4.0"}),
        "cluster.image.dkron_version",
        "'v4.0'",
        "4.0.5",
    ),
    "bad image reference": (
        with_changes(image={"dkron_image": "Dkron/Dkron:latest"}),
        "cluster.image.dkron_image",
        "'Dkron/Dkron:latest'",
        "lowercase",
    ),
    "raft_multiplier 11": (
        with_changes(dkron={"raft_multiplier": 11}),
        "cluster.dkron.raft_multiplier",
        "11",
        "10",
    ),
    "bad log level": (
        with_node(2, log_level="trace"),
        "cluster.nodes[2].log_level",
        "'trace'",
        "'debug', 'info', 'warn' or 'error'",
    ),
    "bad cluster name": (
        with_changes(name="Dev"),
        "cluster.name",
        "'Dev'",
        "lowercase",
    ),
    "rollout timeout too short": (
        with_changes(rollout={"node_timeout_seconds": 1}),
        "cluster.rollout.node_timeout_seconds",
        "1",
        "10",
    ),
    "section that is not a mapping": (
        with_changes(dkron="fast"),
        "cluster.dkron",
        "'fast'",
        "mapping",
    ),
    "missing node name": (
        with_changes(nodes=[{"tags": {}}]),
        "cluster.nodes[0].name",
        "name",
        "missing",
    ),
    "subnet with host bits": (
        with_changes(network={"subnet": "172.24.5.1/24"}),
        "cluster.network.subnet",
        "'172.24.5.1/24'",
        "host bits set",
    ),
    "subnet too small": (
        with_changes(network={"subnet": "172.24.5.0/28"}),
        "cluster.network.subnet",
        "'172.24.5.0/28'",
        "/16 to /26",
    ),
    "IPv6 subnet": (
        with_changes(network={"subnet": "fd00::/64"}),
        "cluster.network.subnet",
        "'fd00::/64'",
        "IPv4 network in CIDR form",
    ),
    "node address without a subnet": (
        with_node(0, ipv4_address="172.24.5.10"),
        "cluster.nodes[0].ipv4_address",
        "'172.24.5.10'",
        "needs network.subnet",
    ),
    "node address in Docker's half": (
        {**with_node(1, ipv4_address="172.24.5.200"), "network": {"subnet": "172.24.5.0/24"}},
        "cluster.nodes[1].ipv4_address",
        "'172.24.5.200'",
        "172.24.5.2 - 172.24.5.127",
    ),
    "node address is the gateway": (
        {**with_node(1, ipv4_address="172.24.5.1"), "network": {"subnet": "172.24.5.0/24"}},
        "cluster.nodes[1].ipv4_address",
        "'172.24.5.1'",
        "after the network address and the gateway",
    ),
    "node address not an address": (
        with_node(2, ipv4_address="172.24.5.300"),
        "cluster.nodes[2].ipv4_address",
        "'172.24.5.300'",
        "must be an IPv4 address",
    ),
}


@pytest.mark.parametrize(("raw", "path", "value", "detail"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_rejected_with_a_useful_message(
    raw: dict[str, Any], path: str, value: str, detail: str
) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("dev", raw)

    lines = [line for line in caught.value.problems if f": {path}" in line]
    assert lines, f"no problem reported at {path}: {caught.value}"
    line = lines[0]
    assert line.startswith("stack 'dev': ")
    assert value in line
    assert detail in line
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_even_node_count_explains_why() -> None:
    with pytest.raises(
        ClusterConfigError,
        match=r"2k nodes tolerates no more failures than one of 2k-1",
    ):
        load_cluster_spec("dev", with_changes(nodes=names("a", "b")))


@pytest.mark.parametrize("raw", [None, {}])
def test_missing_config_says_which_key_to_set(raw: dict[str, Any] | None) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("prod", raw)
    message = str(caught.value)
    assert message.startswith("stack 'prod': ")
    assert "'dkron-cluster:cluster'" in message
    assert "stacks/Pulumi.prod.yaml" in message


def test_every_problem_is_reported_on_its_own_line() -> None:
    raw = with_changes(name="Dev", dkron={"raft_multiplier": 0, "log_level": "loud"})
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("dev", raw)
    assert len(caught.value.problems) == 3
    assert all(line.startswith("stack 'dev': cluster.") for line in caught.value.problems)


def test_direct_construction_enforces_cluster_rules() -> None:
    with pytest.raises(ValueError, match=r"cluster.nodes\[1\].name = 'a': duplicate"):
        ClusterSpec.model_validate({"name": "dev", "nodes": names("a", "a", "b")})


def test_two_nodes_with_one_address_are_rejected() -> None:
    raw = three_nodes()
    raw["network"] = {"subnet": "172.24.5.0/24"}
    raw["nodes"][0]["ipv4_address"] = "172.24.5.20"
    raw["nodes"][2]["ipv4_address"] = "172.24.5.20"
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("dev", raw)
    (line,) = caught.value.problems
    assert line.startswith("stack 'dev': cluster.nodes[2].ipv4_address = '172.24.5.20': clashes with")


def test_a_subnet_too_small_for_the_nodes_is_rejected() -> None:
    raw = with_changes(nodes=names(*(f"n{i}" for i in range(31))), network={"subnet": "172.24.5.0/26"})
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_spec("dev", raw)
    assert caught.value.problems == (
        "stack 'dev': cluster.network.subnet = '172.24.5.0/26': has room for 30 node addresses, not 31;"
        " use a larger subnet",
    )


def test_versions_compare_as_three_numbers() -> None:
    assert version_key("4.0.9") == (4, 0, 9)
    assert version_key("4.0.9-rc1") == (4, 0, 9)
    assert version_key("4.0.10") > version_key("4.0.9")


@pytest.mark.parametrize("text", ["4.0", "v4.0.5", "4.0.5.1", "latest", ""])
def test_a_version_that_is_not_x_y_z_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be a version like 4\.0\.5"):
        version_key(text)
