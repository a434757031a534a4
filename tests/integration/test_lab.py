"""The lab of Docker hosts on this machine: real engines, real sshds, real links.

One lab for the module (prefix `dkt`, its own subnet), always brought down at
the end, which then checks nothing of it is left on the machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.harness import BASE_IMAGE, eventually
from testing.lab import Lab, LabError, lab_session

PREFIX = "dkt"
SUBNET = "10.213.78.0/24"
WEB_PORT = 8080
# Prints the HTTP status of a URL, or 0 when nothing answers; run in a host's namespace or here.
HTTP_STATUS = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).status)\n"
    "except OSError:\n"
    "    print(0)\n"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    made = Lab(PREFIX, SUBNET, state_dir=tmp_path_factory.mktemp("lab") / "state")
    with lab_session(made.prefix, str(made.network), made.state_dir) as up:
        yield up
    assert up.leftovers() == []


@pytest.fixture(scope="module")
def web(lab: Lab) -> str:
    """A host-networked web server on h1 (restart policy `always`); its URL."""
    socket = f"unix://{lab.docker_socket('h1')}"
    lab.load_images(BASE_IMAGE, names=["h1"])
    address = lab.hosts["h1"]
    subprocess.run(
        [
            *(
                "docker",
                "-H",
                socket,
                "run",
                "-d",
                "--name",
                "web",
                "--restart",
                "always",
                "--network",
                "host",
            ),
            *(BASE_IMAGE, "python3", "-m", "http.server", "--bind", address, str(WEB_PORT)),
        ],
        check=True,
        capture_output=True,
    )
    url = f"http://{address}:{WEB_PORT}/"
    eventually("the web server answers", lambda: http_status(url) == 200 or None, timeout_s=30, poll_s=0.2)
    return url


def http_status(
    url: str, *, lab: Lab | None = None, from_host: str | None = None, timeout_s: float = 2
) -> int:
    """The HTTP status of `url` from this machine's namespace, or from a lab host's (0: no answer)."""
    argv = [sys.executable, "-c", HTTP_STATUS, url, str(timeout_s)]
    if lab is not None and from_host is not None:
        done = lab.run_in(from_host, *argv, timeout=timeout_s + 10)
    else:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout_s + 10)
    return int(done.stdout.strip() or 0)


def test_every_engine_answers_through_ssh_with_its_own_data_root(lab: Lab) -> None:
    for name in lab.hosts:
        done = lab.ssh(name, "docker", "info", "--format", "{{.DockerRootDir}}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(lab.host(name).data_dir / "docker")
    config = lab.ssh_config.read_text()
    assert all(f"HostName {address}" in config for address in lab.hosts.values())
    assert lab.engine_ref("h2") == (
        f"ssh://root@{lab.hosts['h2']}?identity={lab.key}&known_hosts={lab.known_hosts}"
    )


def test_a_host_networked_container_is_reachable_from_other_hosts_and_this_machine(
    lab: Lab, web: str
) -> None:
    assert http_status(web, lab=lab, from_host="h2") == 200
    assert http_status(web, lab=lab, from_host="h3") == 200
    assert http_status(web) == 200


def test_cut_stops_every_packet_and_heal_restores_them(lab: Lab, web: str) -> None:
    lab.cut("h1")
    try:
        assert http_status(web, timeout_s=1) == 0
        assert http_status(web, lab=lab, from_host="h2", timeout_s=1) == 0
        assert lab.status()["h1"]["link"] is False
    finally:
        lab.heal("h1")
    eventually(
        "h1 answers again",
        lambda: http_status(web, lab=lab, from_host="h2") == 200 or None,
        timeout_s=10,
        poll_s=0.2,
    )
    assert http_status(web) == 200


def test_tls_engine_answers_with_the_lab_client_certs(lab: Lab) -> None:
    certs = lab.tls_client_dir
    address = lab.hosts["h3"]
    assert lab.tls_engine_ref("h3") == f"tcp://{address}:2376?tls={certs}"
    tls = [
        f"--tlscacert={certs / 'ca.pem'}",
        f"--tlscert={certs / 'cert.pem'}",
        f"--tlskey={certs / 'key.pem'}",
    ]
    done = subprocess.run(
        [
            "docker",
            "--tlsverify",
            *tls,
            "-H",
            f"tcp://{address}:2376",
            "info",
            "--format",
            "{{.DockerRootDir}}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(lab.host("h3").data_dir / "docker")
    # Without a client certificate the engine refuses.
    anonymous = subprocess.run(
        ["docker", "--tlsverify", f"--tlscacert={certs / 'ca.pem'}", "-H", f"tcp://{address}:2376", "info"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert anonymous.returncode != 0


def test_stop_host_loses_the_machine_and_start_host_brings_it_back(lab: Lab, web: str) -> None:
    lab.stop_host("h1")
    assert lab.status()["h1"] == {
        "namespace": True,
        "link": True,
        "containerd": False,
        "dockerd": False,
        "sshd": False,
        "engine": False,
    }
    assert http_status(web, timeout_s=1) == 0
    assert lab.ssh("h1", "true").returncode != 0

    started = time.monotonic()
    lab.start_host("h1")
    assert time.monotonic() - started < 30
    assert all(lab.status()["h1"].values())
    # dockerd restarts the `always` container as it starts.
    eventually(
        "the web server is back on h1", lambda: http_status(web) == 200 or None, timeout_s=30, poll_s=0.2
    )
    assert http_status(web, lab=lab, from_host="h3") == 200


def test_down_and_up_are_idempotent(tmp_path: Path) -> None:
    # A second, one-host lab, so the module's lab stays up for the other tests.
    small = Lab("dku", "10.213.88.0/24", hosts=1, state_dir=tmp_path / "state")
    try:
        small.up()
        small.up()
        assert all(small.status()["h1"].values())
    finally:
        small.down()
    small.down()
    assert small.leftovers() == []


def test_a_subnet_another_bridge_routes_is_refused(lab: Lab, tmp_path: Path) -> None:
    clash = Lab("dkv", str(lab.network), hosts=1, state_dir=tmp_path / "state")
    with pytest.raises(LabError, match=f"overlaps {lab.network} on {lab.bridge}"):
        clash.up()
    clash.down()
    assert clash.leftovers() == []
