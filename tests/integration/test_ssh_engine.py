"""ssh:// engines and API tunnels through a real sshd.

The module starts its own sshd on 127.0.0.1:<free port> with a host key and
an authorized key made for it, whose sessions reach the local engine
(``SetEnv DOCKER_HOST``). Everything is removed at the end, even on failure:
the sshd and its sessions, the shared ssh connection, the key files.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from components.docker_objects import DockerResourceError, engine, ssh_command
from components.docker_objects.ssh import FIRST_ANSWER_S
from components.tunnels import ApiTunnels
from testing.harness import eventually, free_port_block

SSHD = Path("/usr/sbin/sshd")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sshd:
    pid: int
    port: int
    identity: Path
    known_hosts: Path
    other_known_hosts: Path  # the right host, another key

    def ref(self, *, known_hosts: Path | None = None) -> str:
        return f"ssh://root@127.0.0.1:{self.port}?identity={self.identity}&known_hosts={known_hosts or self.known_hosts}"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _kill_tree(pid: int) -> None:
    """``pid`` and its descendants, children first (each parent still there to reap them)."""
    children = _children(pid)
    for child in children:
        _kill_tree(child)
    with contextlib.suppress(AssertionError):
        eventually("sshd to reap its sessions", lambda: not _children(pid), 2, 0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _ssh_processes() -> set[int]:
    return {pid for pid in _children(os.getpid()) if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh"}


_SSH_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _ssh_before() -> None:
    """Ssh processes of this pytest that were there before the test (another file's tunnels)."""
    _SSH_BEFORE.clear()
    _SSH_BEFORE.update(_ssh_processes())


def _ssh_children() -> list[int]:
    """The ssh processes the test started and left running."""
    return sorted(_ssh_processes() - _SSH_BEFORE)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    assert SSHD.exists(), f"{SSHD} is missing: `make setup` installs openssh-server"
    root = tmp_path_factory.mktemp("sshd")
    port = free_port_block(1)
    host_key = root / "host_ed25519"
    host_pub = _keygen(host_key)
    other_pub = _keygen(root / "other_host_ed25519")
    identity = root / "id_ed25519"
    (root / "authorized_keys").write_text(_keygen(identity) + "\n")
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    other_known_hosts = root / "other_known_hosts"
    other_known_hosts.write_text(f"[127.0.0.1]:{port} {other_pub}\n")
    docker_host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"AllowTcpForwarding local\nSetEnv DOCKER_HOST={docker_host}\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    server = Sshd(proc.pid, port, identity, known_hosts, other_known_hosts)
    try:
        eventually("the test sshd to listen", lambda: _listening(port) or proc.poll() is not None, 10, 0.1)
        assert proc.poll() is None, (root / "sshd.log").read_text()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            # The shared connection would otherwise linger for its ControlPersist time.
            subprocess.run(
                [*ssh_command(server.ref()), "-O", "exit"], capture_output=True, timeout=5, check=False
            )
        _kill_tree(proc.pid)
        proc.wait()
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ssh_engine_lists_and_makes_objects_on_the_engine_behind(sshd: Sshd) -> None:
    with engine() as local:
        local_id = local.info()["ID"]
    threads = threading.active_count()
    started = time.monotonic()
    with engine(sshd.ref()) as remote:
        # The engine behind the sshd is this machine's. (Not compared by listing everything on
        # it: other test modules make and remove objects there at the same time.)
        assert remote.info()["ID"] == local_id
        name = f"t-sshengine-{secrets.token_hex(4)}"
        volume = remote.volumes.create(name, labels={"dkron-iac.test": "ssh-engine"})
        try:
            assert [v.name for v in remote.volumes.list(filters={"name": name})] == [name]
            with engine() as local:
                assert local.volumes.get(name).attrs["Labels"] == {"dkron-iac.test": "ssh-engine"}
        finally:
            volume.remove()
    first_s = time.monotonic() - started
    # Later calls ride on the shared ssh connection.
    started = time.monotonic()
    for _ in range(5):
        with engine(sshd.ref()) as remote:
            remote.ping()
    again_s = (time.monotonic() - started) / 5
    print(f"ssh engine: first use {first_s:.2f} s, then {again_s:.3f} s per engine() + ping")
    assert again_s < 1.0
    assert not _ssh_children()
    assert threading.active_count() == threads


def test_a_host_key_not_in_known_hosts_is_refused(sshd: Sshd) -> None:
    ref = sshd.ref(known_hosts=sshd.other_known_hosts)
    refused = r"cannot reach the Docker engine at ssh://.*Host key verification failed"
    with pytest.raises(DockerResourceError, match=refused), engine(ref):
        pass
    assert not _ssh_children()


def test_an_unreachable_host_fails_fast_naming_it() -> None:
    port = free_port_block(1)
    ref = f"ssh://root@127.0.0.1:{port}"
    started = time.monotonic()
    refused = f"cannot reach the Docker engine at {ref}: ssh: .*Connection refused"
    with pytest.raises(DockerResourceError, match=refused), engine(ref):
        pass
    assert time.monotonic() - started < 5


def test_a_link_gone_quiet_fails_within_seconds_and_comes_back(sshd: Sshd) -> None:
    with engine(sshd.ref()) as remote:  # the shared connection is up
        remote.ping()
    frozen = [sshd.pid, *_children(sshd.pid)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # like a cut link: nothing answers, nothing refuses
    try:
        started = time.monotonic()
        with (
            pytest.raises(DockerResourceError, match="cannot reach the Docker engine at ssh://"),
            engine(sshd.ref()),
        ):
            pass
        failed_s = time.monotonic() - started
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    print(f"ssh engine: a link gone quiet fails after {failed_s:.1f} s")
    assert failed_s < FIRST_ANSWER_S + 2
    with engine(sshd.ref()) as remote:
        assert remote.ping()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "hello.txt").write_text("hello through the tunnel\n")
    port = free_port_block(1)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), lambda *a: _Quiet(*a, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def _hello(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/hello.txt", timeout=3).text


def test_api_tunnels_forward_and_come_back_after_their_ssh_dies(sshd: Sshd, web_server: int) -> None:
    local = free_port_block(1)
    with ApiTunnels({local: (sshd.ref(), web_server)}) as tunnels:
        assert tunnels.wait_ready(10) == {}
        assert _hello(local) == "hello through the tunnel\n"
        killed = tunnels.pids()[local]
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        started = time.monotonic()
        eventually(
            "the tunnel's ssh to be started again",
            lambda: tunnels.pids()[local] not in (None, killed),
            10,
            0.1,
        )
        assert tunnels.wait_ready(10) == {}
        back_s = time.monotonic() - started
        assert _hello(local) == "hello through the tunnel\n"
        print(f"API tunnel: back {back_s:.2f} s after its ssh was killed")
    assert not _ssh_children()
    assert not _listening(local)


def test_api_tunnels_come_back_with_their_host(sshd: Sshd, web_server: int) -> None:
    local = free_port_block(1)
    with ApiTunnels({local: (sshd.ref(), web_server)}) as tunnels:
        assert tunnels.wait_ready(10) == {}
        first = tunnels.pids()[local]
        frozen = [sshd.pid, *_children(sshd.pid)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)  # the host stops answering
        try:
            # Its keepalives give up after ~6 s; the keeper starts another ssh.
            eventually("the tunnel's ssh to give up", lambda: tunnels.pids()[local] != first, 15, 0.2)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        back = time.monotonic()
        assert tunnels.wait_ready(15) == {}
        assert _hello(local) == "hello through the tunnel\n"
        print(f"API tunnel: back {time.monotonic() - back:.2f} s after its host answered again")
    assert not _ssh_children()


def test_api_tunnels_say_which_forward_is_not_ready(sshd: Sshd, web_server: int) -> None:
    taken, down = free_port_block(1), free_port_block(1)
    with socket.socket() as holder:  # someone else's listener on the local port
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        down_ref = f"ssh://root@127.0.0.1:{free_port_block(1)}"
        with ApiTunnels({taken: (sshd.ref(), web_server), down: (down_ref, web_server)}) as tunnels:
            not_ready = tunnels.wait_ready(3)
            assert set(not_ready) == {down}, not_ready
            assert "Connection refused" in not_ready[down]
    assert not _ssh_children()


def _gone(pid: int) -> bool:
    """``pid`` has ended (a zombie waiting for a parent that does not reap counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_api_tunnels_end_with_their_process_even_on_sigkill(sshd: Sshd, web_server: int) -> None:
    local = free_port_block(1)
    program = (
        "import time\n"
        "from components.tunnels import ApiTunnels\n"
        f"tunnels = ApiTunnels({{{local}: ({sshd.ref()!r}, {web_server})}})\n"
        "tunnels.start()\n"
        "assert tunnels.wait_ready(10) == {}\n"
        f"print(tunnels.pids()[{local}], flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        ssh = int(proc.stdout.readline())
        assert not _gone(ssh)
        assert _hello(local) == "hello through the tunnel\n"
    finally:
        proc.kill()
        proc.wait()
    eventually("the tunnel's ssh to end with the process that started it", lambda: _gone(ssh), 5, 0.1)
    assert not _listening(local)
