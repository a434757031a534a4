"""The lab's names and references, without bringing anything up."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.lab import Lab


def test_hosts_sit_at_ten_plus_k_on_the_bridge_with_short_interface_names(tmp_path: Path) -> None:
    lab = Lab("dkl", "10.213.77.0/24", state_dir=tmp_path)
    assert lab.hosts == {"h1": "10.213.77.11", "h2": "10.213.77.12", "h3": "10.213.77.13"}
    assert lab.bridge == "dklbr0"
    assert lab.bridge_address == "10.213.77.1"
    longest = Lab("abcd", "10.213.77.0/24", 9, state_dir=tmp_path)
    assert all(len(name) <= 15 for name in (longest.bridge, *(longest.host(h).veth for h in longest.hosts)))


def test_engine_references_name_the_lab_key_known_hosts_and_certs(tmp_path: Path) -> None:
    lab = Lab("dkl", "10.213.77.0/24", state_dir=tmp_path)
    assert lab.ssh_url("h1") == "ssh://root@10.213.77.11"
    assert lab.engine_ref("h1") == (
        f"ssh://root@10.213.77.11?identity={tmp_path}/id_ed25519&known_hosts={tmp_path}/known_hosts"
    )
    assert lab.tls_engine_ref("h2") == f"tcp://10.213.77.12:2376?tls={tmp_path}/tls-client"
    assert lab.docker_socket("h3") == Path("/run/dkron-lab/dkl/h3/docker.sock")


@pytest.mark.parametrize(
    ("prefix", "subnet", "hosts"),
    [
        ("toolong", "10.0.0.0/24", 3),
        ("Dk", "10.0.0.0/24", 3),
        ("dkl", "10.0.0.0/25", 3),
        ("dkl", "10.0.0.0/24", 0),
    ],
)
def test_refuses_what_would_not_fit(tmp_path: Path, prefix: str, subnet: str, hosts: int) -> None:
    with pytest.raises(ValueError, match="lab "):
        Lab(prefix, subnet, hosts, state_dir=tmp_path)


def test_an_unknown_host_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="has no host 'h4'; it has h1, h2, h3"):
        Lab("dkl", "10.213.77.0/24", state_dir=tmp_path).host("h4")
