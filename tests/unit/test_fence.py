"""`nodeside.fence`: a node the cluster has given to another address stays out."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
    assert "nodeside.catchup &" in command[2]  # the watcher beside the agent, after the fence
    assert command[:2] == ["sh", "-c"]
    assert command[2].startswith("PYTHONPATH=/opt/dkron-iac python3 -m nodeside.fence || exit $?; ")
    assert command[2].endswith("exec dkron agent --config /etc/dkron/dkron.yml")
    assert "nodeside.fence" not in " ".join(agent_command(spec, 8181))


def test_the_agent_does_not_start_when_the_fence_says_no(tmp_path: Path) -> None:
    spec = load_cluster_spec("t", {"name": "c", "nodes": [{"name": "n1"}]})
    script = agent_command(spec, 8181, exporter=True, fenced=True)[2]
    # The real command line, with stand-ins that say what ran.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, code in (
        ("python3", 'echo "python3 $*" >> ran; [ "$2" != nodeside.fence ] || exit 3'),
        ("dkron", "echo dkron >> ran"),
        ("sleep", "true"),
        ("nice", "true"),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{code}\n")
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=False
    )
    assert done.returncode == 3
    assert (tmp_path / "ran").read_text().splitlines() == ["python3 -m nodeside.fence"]
