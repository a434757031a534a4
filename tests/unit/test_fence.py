"""`nodeside.fence`: a node the cluster has given to another address stays out."""

from __future__ import annotations

from components.node_config import agent_command
from components.spec import load_cluster_spec
from nodeside.fence import addresses_claiming, peer_addresses, read_config

CONFIG = """advertise-addr: 10.0.0.13:8946
node-name: n3
retry-interval: 5s
retry-join:
- 10.0.0.11:8946
- 10.0.0.12:8946
- 10.0.0.13:8946
rpc-port: 6869
server: true
"""

LISTING = """Node        ID  Address          State     Voter
n1          n1  10.0.0.11:6868   leader    true
n2          n2  10.0.0.12:6868   follower  true
(unknown)   n3  10.0.0.14:6868   follower  true
"""


def test_the_node_name_and_join_hosts_are_read_from_the_config_the_program_writes() -> None:
    assert read_config(CONFIG) == ("n3", ["10.0.0.11", "10.0.0.12", "10.0.0.13"])


def test_peers_are_asked_on_the_default_port_and_the_nodes_own_but_not_itself() -> None:
    assert peer_addresses(["10.0.0.11", "10.0.0.13", "10.0.0.11"], "10.0.0.13:6869") == [
        "10.0.0.11:6868",
        "10.0.0.11:6869",
        "10.0.0.13:6868",
    ]


def test_only_another_address_under_the_nodes_own_id_counts() -> None:
    assert addresses_claiming("n3", "10.0.0.13:6868", [LISTING, ""]) == ["10.0.0.14:6868"]
    assert addresses_claiming("n3", "10.0.0.14:6868", [LISTING]) == []
    assert addresses_claiming("n1", "10.0.0.11:6868", [LISTING]) == []
    assert addresses_claiming("n3", "10.0.0.13:6868", ["", "error"]) == []


def test_nodes_on_hosts_start_behind_the_fence() -> None:
    spec = load_cluster_spec("t", {"name": "c", "nodes": [{"name": "n1"}]})
    command = agent_command(spec, 8181, exporter=False, fenced=True)
    assert command[:2] == ["sh", "-c"]
    assert command[2].startswith("PYTHONPATH=/opt/dkron-iac python3 -m nodeside.fence && ")
    assert command[2].endswith("exec dkron agent --config /etc/dkron/dkron.yml")
    assert "nodeside.fence" not in " ".join(agent_command(spec, 8181))
