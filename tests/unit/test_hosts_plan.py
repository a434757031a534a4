"""Planning a cluster on several hosts from plain data: dkron.yml, bootstrap,
API URLs, container locators and what the stack records. No Docker, no mocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.docker_objects.client import split_locator
from components.health import LiveView
from components.node_config import bootstrap_plan, dkron_cli, node_settings
from components.placement import NodePlacement, place_nodes
from components.spec import ClusterSpec, load_cluster_spec
from components.update_plan import (
    HostsChange,
    UpdatePlan,
    check_hosts_change,
    plan_update,
    serf_endpoints,
)

ROOT = Path("/srv/project")
HOSTS = {
    "h1": {"docker": "ssh://root@10.0.0.11", "address": "10.0.0.11", "ssh_identity": "keys/lab"},
    "h2": {"docker": "ssh://root@10.0.0.12:2222", "address": "10.0.0.12"},
    "h3": {"docker": "unix:///run/h3/docker.sock", "address": "10.0.0.13"},
}


def spec(where: dict[str, str] | None = None, **changes: Any) -> ClusterSpec:
    nodes = [{"name": n, "host": h} for n, h in (where or {"n1": "h1", "n2": "h2", "n3": "h3"}).items()]
    raw = {"name": "multi", "hosts": HOSTS, "nodes": nodes, "ports": {"api_port_base": 8181}, **changes}
    return load_cluster_spec("lab", raw)


def planned(
    cluster: ClusterSpec, previous: dict[str, Any] | None = None, live: LiveView | None = None
) -> UpdatePlan:
    placements = place_nodes(cluster, previous or {}, ROOT)
    formed = {"state": "formed", "members": ["n1", "n2", "n3"]} if previous else None
    boot = bootstrap_plan(cluster, formed, serf_endpoints(placements))
    return plan_update(cluster, boot, previous or {}, {}, None, live or LiveView(), placements)


def test_a_node_on_a_host_listens_on_the_hosts_address_and_its_own_ports() -> None:
    p = planned(spec())
    config = p.nodes["n1"]["config"]
    assert config["bind-addr"] == "10.0.0.11:8946"
    assert config["advertise-addr"] == "10.0.0.11:8946"
    assert config["rpc-port"] == 6868
    # The API stays on the host's loopback.
    assert config["http-addr"] == "127.0.0.1:8181"
    assert config["retry-join"] == ["10.0.0.11:8946", "10.0.0.12:8946", "10.0.0.13:8946"]


def test_the_record_names_each_nodes_host_engine_and_ports() -> None:
    p = planned(spec())
    record = p.nodes["n2"]
    assert record["host"] == "h2"
    assert record["address"] == "10.0.0.12"
    assert (record["serf_port"], record["rpc_port"]) == (8946, 6868)
    assert record["engine"].startswith("ssh://root@10.0.0.12:2222")
    assert p.network == {}
    # The container is reached through its host's engine.
    assert split_locator(p.containers["n2"]) == (record["engine"], "multi-n2")


def test_api_urls_name_the_ssh_tunnel_and_a_unix_engine_is_this_machine() -> None:
    p = planned(spec())
    url, _, via = p.api_urls["n1"].partition("#")
    assert url == "https://127.0.0.1:8181"
    assert via == p.nodes["n1"]["engine"]
    assert "identity=/srv/project/keys/lab" in via
    assert p.api_urls["n3"] == "https://127.0.0.1:8183"


def test_a_published_api_is_reached_on_the_hosts_address() -> None:
    p = planned(spec(ports={"bind_address": "0.0.0.0", "api_port_base": 8181}))  # noqa: S104
    assert p.api_urls["n1"] == "https://10.0.0.11:8181"
    assert p.nodes["n1"]["config"]["http-addr"] == "0.0.0.0:8181"


def test_two_nodes_on_one_host_get_their_own_ports() -> None:
    cluster = spec(
        {"n1": "h1", "n2": "h1", "n3": "h2", "n4": "h2", "n5": "h3"},
    )
    p = planned(cluster)
    assert p.nodes["n1"]["config"]["bind-addr"] == "10.0.0.11:8946"
    assert p.nodes["n2"]["config"]["bind-addr"] == "10.0.0.11:8947"
    assert p.nodes["n2"]["config"]["rpc-port"] == 6869


def test_the_join_list_is_kept_while_a_recorded_endpoint_is_a_nodes() -> None:
    before = planned(spec())
    record = {
        "state": "formed",
        "members": ["n1", "n2", "n3"],
        "join": before.nodes["n1"]["config"]["retry-join"],
    }
    moved = spec({"n1": "h1", "n2": "h2", "n3": "h1"}, placement={"accept_quorum_loss_on_host_failure": True})
    placements = place_nodes(moved, before.nodes, ROOT)
    plan = bootstrap_plan(moved, record, serf_endpoints(placements))
    # n3 moved: its old endpoint stays in the list, so n1 and n2 are not restarted.
    assert list(plan.endpoints) == record["join"]
    assert plan.record()["join"] == record["join"]


def test_a_new_list_once_no_recorded_endpoint_is_left() -> None:
    cluster = spec()
    placements = place_nodes(cluster, {}, ROOT)
    plan = bootstrap_plan(
        cluster, {"state": "formed", "members": ["n1"], "join": ["10.9.9.9:8946"]}, serf_endpoints(placements)
    )
    assert plan.endpoints == ("10.0.0.11:8946", "10.0.0.12:8946", "10.0.0.13:8946")


def test_one_engine_configs_do_not_change() -> None:
    cluster = load_cluster_spec("dev", {"name": "dev", "nodes": [{"name": "a"}]})
    config = node_settings(cluster, cluster.nodes[0], bootstrap_plan(cluster, None))
    assert "bind-addr" not in config
    assert config["retry-join"] == ["a:8946"]
    assert bootstrap_plan(cluster, None).record() == {"state": "formed", "members": ["a"]}


def test_the_dkron_cli_is_told_the_rpc_address_when_the_container_says() -> None:
    command = dkron_cli("raft", "list-peers")
    assert command[:2] == ["sh", "-c"]
    assert command[2].startswith("exec dkron raft list-peers ")
    assert "NODE_RPC_ADDR" in command[2]


def test_moving_a_deployed_stack_between_one_engine_and_hosts_is_refused() -> None:
    one_engine = {"a": {"container": "dev-a", "api_url": "http://127.0.0.1:8081"}}
    with pytest.raises(HostsChange, match=r"stack 'lab': cluster.hosts: .*declares hosts"):
        check_hosts_change("lab", spec(), one_engine)
    on_hosts = planned(spec()).nodes
    plain = load_cluster_spec("lab", {"name": "multi", "nodes": [{"name": "n1"}]})
    with pytest.raises(HostsChange, match="declares no hosts"):
        check_hosts_change("lab", plain, on_hosts)
    check_hosts_change("lab", spec(), on_hosts)
    check_hosts_change("lab", spec(), {})


def test_removed_nodes_are_found_on_their_recorded_host() -> None:
    before = planned(spec({"n1": "h1", "n2": "h2", "n3": "h3", "n4": "h1", "n5": "h2"}))
    after = planned(spec(), previous=dict(before.nodes), live=LiveView(leader="n1", alive=frozenset({"n1"})))
    assert after.removed == ("n4", "n5")
    assert split_locator(after.removed_containers["n4"]) == (before.nodes["n4"]["engine"], "multi-n4")


def test_every_nodeplacement_field_is_set() -> None:
    placements = place_nodes(spec(), {}, ROOT)
    assert placements["n3"] == NodePlacement(
        host="h3", engine="unix:///run/h3/docker.sock", address="10.0.0.13", serf_port=8946, rpc_port=6868
    )
