"""A lab of real Docker hosts on one machine, for tests and for a user to try.

Each host is a network namespace with its own address on a private bridge the
lab makes, its own containerd and dockerd, and an sshd that takes one key made
for the lab, so `ssh://` engines are exercised for real. Everything is found
again by name (namespaces, links, pidfiles, directories), so `down()` works
from a fresh `Lab` in another process, and `up()` and `down()` are both
idempotent.

Facts this rests on (see the toolchain notes): a namespace is entered with
`nsenter --net=` (`ip netns exec` remounts /sys and dockerd then stops with
"Devices cgroup isn't mounted"); host-networked containers on a lab engine
listen on the namespace's address; a name lookup inside a namespace can hang,
so everything here is an address.

Every process of a host (daemons, shims, containers, ssh sessions) sits in
one cgroup subtree `dkron-lab/<prefix>/hN`, so losing the machine is one walk
of that tree with SIGKILL, with the namespace's processes as a second net.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from components import api_access

RUN_ROOT = Path("/run/dkron-lab")
DATA_ROOT = Path("/var/lib/dkron-lab")
NETNS_DIR = Path("/run/netns")
CGROUP_MOUNTS = Path("/sys/fs/cgroup")
CGROUP_BASE = "dkron-lab"
SSH_PORT = 22
TLS_PORT = 2376
# Names of what `up()` writes into the state directory; `down()` removes exactly these.
STATE_FILES = ("id_ed25519", "id_ed25519.pub", "known_hosts", "ssh_config", "hosts.json", "images.tar")
STATE_DIRS = ("hosts", "tls", "tls-client")
# Daemons this process started (any lab), reaped once killed so no zombie is left behind.
_CHILDREN: list[subprocess.Popen[bytes]] = []
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")


class LabError(RuntimeError):
    """The lab could not be brought up or down; the message says which host and which step."""


@dataclass(frozen=True)
class LabHost:
    """One host of the lab: its names, its address and where its daemons keep their files."""

    name: str
    address: str
    netns: str
    veth: str
    run_dir: Path
    data_dir: Path
    state_dir: Path

    @property
    def docker_socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    def pidfile(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def log(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.log"


class Lab:
    """N Docker hosts in network namespaces on a bridge `<prefix>br0`, host k at `.(10+k)`."""

    def __init__(self, prefix: str, subnet: str, hosts: int = 3, *, state_dir: Path) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(
                f"lab prefix {prefix!r}: 1 to 4 characters, a lowercase letter then letters or digits"
            )
        network = ipaddress.IPv4Network(subnet)
        if network.prefixlen > 24:
            raise ValueError(f"lab subnet {subnet}: need at least a /24")
        if not 1 <= hosts <= 9:
            raise ValueError(f"lab hosts {hosts}: 1 to 9")
        self.prefix = prefix
        self.network = network
        self.state_dir = Path(state_dir).resolve()
        self.bridge = f"{prefix}br0"
        self.bridge_address = str(network.network_address + 1)
        self._cgroup = f"{CGROUP_BASE}/{prefix}"
        self._hosts = {
            f"h{k}": LabHost(
                name=f"h{k}",
                address=str(network.network_address + 10 + k),
                netns=f"{prefix}-h{k}",
                veth=f"{prefix}-h{k}",
                run_dir=RUN_ROOT / prefix / f"h{k}",
                data_dir=DATA_ROOT / prefix / f"h{k}",
                state_dir=self.state_dir / "hosts" / f"h{k}",
            )
            for k in range(1, hosts + 1)
        }

    # --- what tests and users read -------------------------------------------------------

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def tls_client_dir(self) -> Path:
        return self.state_dir / "tls-client"

    @property
    def hosts(self) -> dict[str, str]:
        """Host name -> address."""
        return {name: host.address for name, host in self._hosts.items()}

    def host(self, name: str) -> LabHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(
                f"lab {self.prefix} has no host {name!r}; it has {', '.join(self._hosts)}"
            ) from None

    def ssh_url(self, name: str) -> str:
        return f"ssh://root@{self.host(name).address}"

    def stack_host(self, name: str) -> dict[str, str]:
        """The host as a stack file's `cluster.hosts` entry names it: its engine through SSH, with
        the lab's key and known hosts, and its address."""
        return {
            "docker": self.ssh_url(name),
            "address": self.host(name).address,
            "ssh_identity": str(self.key),
            "ssh_known_hosts": str(self.known_hosts),
        }

    def engine_ref(self, name: str) -> str:
        """The host's engine through SSH, with the lab's key and known hosts (the design's engine ref)."""
        return (
            f"{self.ssh_url(name)}?identity={quote(str(self.key))}&known_hosts={quote(str(self.known_hosts))}"
        )

    def tls_engine_ref(self, name: str) -> str:
        return f"tcp://{self.host(name).address}:{TLS_PORT}?tls={quote(str(self.tls_client_dir))}"

    def docker_socket(self, name: str) -> Path:
        return self.host(name).docker_socket

    def ssh(self, name: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs a command on a host through the lab's ssh_config (the session's DOCKER_HOST is the host's engine)."""
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), name, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def load_images(self, *images: str, names: list[str] | None = None) -> None:
        """Copies images from this machine's engine to hosts' engines (all by default): saved once, loaded in parallel."""
        archive = self.state_dir / "images.tar"
        try:
            _run("docker", "save", "-o", str(archive), *images)

            def load(host: LabHost) -> None:
                _run("docker", "-H", f"unix://{host.docker_socket}", "load", "-q", "-i", str(archive))

            self._each_host(load, [self.host(name) for name in names or self._hosts])
        finally:
            archive.unlink(missing_ok=True)

    def run_in(self, name: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs a command in a host's network namespace, from this machine."""
        return subprocess.run(
            ["nsenter", f"--net={self.host(name).netns_path}", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # --- up -------------------------------------------------------------------------------

    def up(self) -> float:
        """Brings every host up (idempotent) and waits until engines and sshds answer; returns seconds taken."""
        started = time.monotonic()
        _require_tools()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self._make_keys()
        self._network_up()
        self._write_client_files()
        self._each_host(self._host_up)
        return time.monotonic() - started

    def _each_host(self, action: Callable[[LabHost], None], hosts: list[LabHost] | None = None) -> None:
        chosen = list(self._hosts.values()) if hosts is None else hosts
        with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
            for future in [pool.submit(action, host) for host in chosen]:
                future.result()

    def _make_keys(self) -> None:
        if not self.key.exists():
            _run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"dkron-lab-{self.prefix}",
                "-f",
                str(self.key),
            )
        tls = self.state_dir / "tls"
        tls.mkdir(exist_ok=True)
        ca_key, ca_cert = tls / "ca-key.pem", tls / "ca.pem"
        if not ca_cert.exists():
            _run(
                *("openssl", "req", "-x509", "-new", "-nodes", "-days", "30"),
                *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-keyout", str(ca_key), "-out", str(ca_cert), "-subj", f"/CN=dkron-lab-{self.prefix} CA"),
                *("-addext", "basicConstraints=critical,CA:TRUE"),
                *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            )
        client = self.tls_client_dir
        client.mkdir(exist_ok=True)
        if not (client / "cert.pem").exists():
            _issue_cert(
                tls,
                client / "key.pem",
                client / "cert.pem",
                "dkron-lab client",
                "extendedKeyUsage=clientAuth",
            )
        shutil.copyfile(ca_cert, client / "ca.pem")
        for host in self._hosts.values():
            host.state_dir.mkdir(parents=True, exist_ok=True)
            host_key = host.state_dir / "ssh_host_ed25519_key"
            if not host_key.exists():
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(host_key))
            if not (host.state_dir / "tls-cert.pem").exists():
                _issue_cert(
                    tls,
                    host.state_dir / "tls-key.pem",
                    host.state_dir / "tls-cert.pem",
                    host.name,
                    f"subjectAltName=IP:{host.address}\nextendedKeyUsage=serverAuth",
                )

    def _network_up(self) -> None:
        # Another bridge (another lab, a Docker network) on an overlapping subnet would take this lab's traffic.
        for route in json.loads(_run("ip", "-j", "-4", "route", "show") or "[]"):
            dst, dev = route.get("dst", "default"), route.get("dev", "")
            theirs = dst != "default" and dev != self.bridge
            if theirs and ipaddress.IPv4Network(dst, strict=False).overlaps(self.network):
                raise LabError(
                    f"lab {self.prefix}: subnet {self.network} overlaps {dst} on {dev}; give the lab another subnet"
                )
        if not _link_exists(self.bridge):
            _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "replace", f"{self.bridge_address}/{self.network.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # Docker sets FORWARD to DROP and bridged frames pass iptables: let the lab's hosts talk.
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        rule += ["-m", "comment", "--comment", f"dkron-lab {self.prefix}"]
        if shutil.which("iptables") and _quiet("iptables", "-C", *rule) != 0:
            _run("iptables", "-I", *rule)
        for host in self._hosts.values():
            if not host.netns_path.exists():
                _run("ip", "netns", "add", host.netns)
            if not _link_exists(host.veth):
                _run(
                    "ip",
                    "link",
                    "add",
                    host.veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.netns,
                )
            _run("ip", "link", "set", host.veth, "master", self.bridge, "up")
            ns = ["ip", "-n", host.netns]
            _run(*ns, "addr", "replace", f"{host.address}/{self.network.prefixlen}", "dev", "eth0")
            _run(*ns, "link", "set", "eth0", "up")
            _run(*ns, "link", "set", "lo", "up")

    def _write_client_files(self) -> None:
        known, config, listing = [], [], {}
        for host in self._hosts.values():
            host_pub = (host.state_dir / "ssh_host_ed25519_key.pub").read_text().split()
            known.append(f"{host.address} {host_pub[0]} {host_pub[1]}")
            config.append(
                f"Host {host.name}\n"
                f"  HostName {host.address}\n"
                f"  Port {SSH_PORT}\n"
                "  User root\n"
                f"  IdentityFile {self.key}\n"
                "  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  StrictHostKeyChecking yes\n"
                "  BatchMode yes\n"
                "  ConnectTimeout 5\n"
                "  LogLevel ERROR\n"
            )
            listing[host.name] = {
                "address": host.address,
                "ssh": self.ssh_url(host.name),
                "docker_socket": f"unix://{host.docker_socket}",
                "engine_ref": self.engine_ref(host.name),
                "tls_engine_ref": self.tls_engine_ref(host.name),
            }
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join(config))
        (self.state_dir / "hosts.json").write_text(json.dumps(listing, indent=2) + "\n")

    def _host_up(self, host: LabHost) -> None:
        # Daemons left by a lab with other keys and certs (another state dir) are replaced, not reused.
        owner = host.run_dir / "state-dir"
        if owner.exists() and owner.read_text() != str(self.state_dir):
            self.stop_host(host.name)
        host.run_dir.mkdir(parents=True, exist_ok=True)
        owner.write_text(str(self.state_dir))
        host.data_dir.mkdir(parents=True, exist_ok=True)
        for leaf in ("daemons", "containers"):
            for hierarchy in _cgroup_hierarchies():
                (hierarchy / self._host_cgroup(host) / leaf).mkdir(parents=True, exist_ok=True)
        if not self._alive(host, "containerd"):
            host.containerd_socket.unlink(missing_ok=True)
            self._spawn(host, "containerd", self._containerd_argv(host))
        if not self._alive(host, "sshd"):
            self._spawn(host, "sshd", self._sshd_argv(host))
        _wait_for(f"{host.name}: containerd socket", lambda: _unix_connects(host.containerd_socket), 30, host)
        if not self._alive(host, "dockerd"):
            self._spawn(host, "dockerd", self._dockerd_argv(host))
        _wait_for(
            f"{host.name}: dockerd answering /_ping", lambda: _docker_ping(host.docker_socket), 60, host
        )
        _wait_for(
            f"{host.name}: sshd on {host.address}:{SSH_PORT}",
            lambda: self._ssh_engine_answers(host),
            30,
            host,
        )

    def _ssh_engine_answers(self, host: LabHost) -> bool:
        """The lab key logs in and the session's docker talks to this host's engine."""
        try:
            done = self.ssh(host.name, "docker", "info", "--format", "{{.DockerRootDir}}", timeout=8)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0 and done.stdout.strip() == str(host.data_dir / "docker")

    def _containerd_argv(self, host: LabHost) -> list[str]:
        config = host.state_dir / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{host.data_dir / "containerd"}"\n'
            f'state = "{host.run_dir / "containerd"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",'
            ' "io.containerd.snapshotter.v1.aufs"]\n'
            f'[grpc]\n  address = "{host.containerd_socket}"\n'
            f'[ttrpc]\n  address = "{host.containerd_socket}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{host.data_dir / "containerd-opt"}"\n'
        )
        return ["containerd", "--config", str(config)]

    def _dockerd_argv(self, host: LabHost) -> list[str]:
        config = host.state_dir / "daemon.json"
        config.write_text("{}\n")
        tls = self.state_dir / "tls"
        return [
            *("dockerd", "--config-file", str(config)),
            *("--containerd", str(host.containerd_socket)),
            *("--data-root", str(host.data_dir / "docker")),
            *("--exec-root", str(host.run_dir / "docker")),
            *("--pidfile", str(host.pidfile("dockerd"))),
            *("-H", f"unix://{host.docker_socket}"),
            *("-H", f"tcp://{host.address}:{TLS_PORT}"),
            *("--tlsverify", "--tlscacert", str(tls / "ca.pem")),
            *(
                "--tlscert",
                str(host.state_dir / "tls-cert.pem"),
                "--tlskey",
                str(host.state_dir / "tls-key.pem"),
            ),
            *("--bridge=none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false"),
            *("--storage-driver", _root_storage_driver()),
            *("--exec-opt", "native.cgroupdriver=cgroupfs"),
            *("--cgroup-parent", f"/{self._host_cgroup(host)}/containers"),
        ]

    def _sshd_argv(self, host: LabHost) -> list[str]:
        config = host.state_dir / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}:{SSH_PORT}\n"
            f"HostKey {host.state_dir / 'ssh_host_ed25519_key'}\n"
            f"PidFile {host.pidfile('sshd')}\n"
            f"AuthorizedKeysFile {self.key}.pub\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # The state dir may sit under a world-writable /tmp (tests), which StrictModes refuses.
            "StrictModes no\n"
            "AllowTcpForwarding yes\n"
            "AllowStreamLocalForwarding yes\n"
            "PrintMotd no\n"
            "MaxStartups 100\n"
            f"SetEnv DOCKER_HOST=unix://{host.docker_socket}\n"
        )
        return ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]

    def _host_cgroup(self, host: LabHost) -> str:
        return f"{self._cgroup}/{host.name}"

    def _spawn(self, host: LabHost, daemon: str, argv: list[str]) -> None:
        """Starts a daemon in the host's namespace and cgroup, outliving this process."""
        procs = [str(h / self._host_cgroup(host) / "daemons" / "cgroup.procs") for h in _cgroup_hierarchies()]
        # The shell joins the cgroup first, so everything the daemon starts is tracked from its first instant.
        join = "".join(f'echo $$ > "{path}" && ' for path in procs)
        script = f'{join}exec nsenter --net="{host.netns_path}" "$@"'
        with host.log(daemon).open("ab") as log:
            proc = subprocess.Popen(
                ["sh", "-c", script, "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _CHILDREN.append(proc)
        if daemon != "dockerd":  # dockerd writes its own pidfile
            host.pidfile(daemon).write_text(f"{proc.pid}\n")

    def _alive(self, host: LabHost, daemon: str) -> bool:
        pid = _read_pid(host.pidfile(daemon))
        return pid is not None and _in_netns(pid, host.netns_path)

    def status(self) -> dict[str, dict[str, bool]]:
        """Per host: is its namespace there, is each daemon running, does its engine answer."""
        return {
            host.name: {
                "namespace": host.netns_path.exists(),
                "link": _link_up(host.veth),
                **{daemon: self._alive(host, daemon) for daemon in ("containerd", "dockerd", "sshd")},
                "engine": _docker_ping(host.docker_socket),
            }
            for host in self._hosts.values()
        }

    # --- faults ---------------------------------------------------------------------------

    def stop_host(self, name: str) -> None:
        """The whole machine lost: SIGKILL every process of the host (containers, shims, daemons, sessions)."""
        host = self.host(name)
        for _ in range(200):
            pids = self._host_pids(host)
            if not pids:
                _CHILDREN[:] = [child for child in _CHILDREN if child.poll() is None]
                for daemon in ("containerd", "dockerd", "sshd"):
                    host.pidfile(daemon).unlink(
                        missing_ok=True
                    )  # dockerd refuses to start over a zombie's pid
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        raise LabError(f"lab {self.prefix} {name}: processes {sorted(self._host_pids(host))} survive SIGKILL")

    def start_host(self, name: str) -> None:
        """Starts the host's daemons again; dockerd restarts containers that have a restart policy."""
        self._host_up(self.host(name))

    def daemon_pid(self, name: str, daemon: str) -> int | None:
        """The running daemon's process id (None: not running)."""
        host = self.host(name)
        pid = _read_pid(host.pidfile(daemon))
        return pid if pid is not None and _in_netns(pid, host.netns_path) else None

    def stop_daemon(self, name: str, daemon: str = "dockerd", timeout_s: float = 180) -> None:
        """Stops one daemon of the host as its service manager would: SIGTERM, then wait until it
        has exited (dockerd first stops its containers). `start_host` starts it again."""
        host = self.host(name)
        pid = self.daemon_pid(name, daemon)
        if pid is None:
            raise LabError(f"lab {self.prefix} {name}: {daemon} is not running")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while not _is_zombie(pid):
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.prefix} {name}: {daemon} ({pid}) still runs {timeout_s:.0f}s after SIGTERM"
                )
            time.sleep(0.1)
        _CHILDREN[:] = [child for child in _CHILDREN if child.poll() is None]
        host.pidfile(daemon).unlink(missing_ok=True)  # dockerd refuses to start over a zombie's pid

    def cut(self, name: str) -> None:
        """No packet passes to or from the host (its bridge port goes down; the other end loses carrier)."""
        _run("ip", "link", "set", self.host(name).veth, "down")

    def heal(self, name: str) -> None:
        _run("ip", "link", "set", self.host(name).veth, "up")

    def _host_pids(self, host: LabHost) -> set[int]:
        pids: set[int] = set()
        for hierarchy in _cgroup_hierarchies():
            tree = hierarchy / self._host_cgroup(host)
            if tree.exists():
                for procs in tree.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
        pids.update(_netns_pids(host.netns_path))
        for daemon in ("containerd", "dockerd", "sshd"):
            pid = _read_pid(host.pidfile(daemon))
            if pid is not None and _in_netns(pid, host.netns_path):
                pids.add(pid)
        pids.discard(os.getpid())
        return {pid for pid in pids if not _is_zombie(pid)}

    # --- down -----------------------------------------------------------------------------

    def down(self) -> float:
        """Removes everything the lab made (idempotent); returns seconds taken."""
        started = time.monotonic()
        self._each_host(self._host_down)
        if _link_exists(self.bridge):
            _run("ip", "link", "del", self.bridge)
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        rule += ["-m", "comment", "--comment", f"dkron-lab {self.prefix}"]
        while shutil.which("iptables") and _quiet("iptables", "-C", *rule) == 0:
            _run("iptables", "-D", *rule)
        _remove_cgroup_tree(self._cgroup)
        for mount in _all_cgroup_mounts():
            with contextlib.suppress(OSError):
                (mount / CGROUP_BASE).rmdir()
        for top in (RUN_ROOT, DATA_ROOT):
            with contextlib.suppress(OSError):
                (top / self.prefix).rmdir()
                top.rmdir()
        for file in STATE_FILES:
            (self.state_dir / file).unlink(missing_ok=True)
        for directory in STATE_DIRS:
            shutil.rmtree(self.state_dir / directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.state_dir.rmdir()
        return time.monotonic() - started

    def _host_down(self, host: LabHost) -> None:
        if host.netns_path.exists() or host.run_dir.exists():
            self.stop_host(host.name)
        for root in (host.run_dir, host.data_dir):
            _unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)
            if root.exists():
                raise LabError(f"lab {self.prefix} {host.name}: could not remove {root}")
        # The root end first: deleting it takes its peer; a namespace's links go away only asynchronously.
        if _link_exists(host.veth):
            _quiet("ip", "link", "del", host.veth)
        if host.netns_path.exists():
            _run("ip", "netns", "del", host.netns)
        _remove_cgroup_tree(self._host_cgroup(host))

    def leftovers(self) -> list[str]:
        """What of this lab still exists on the machine (empty after `down()`)."""
        found = [f"namespace {h.netns}" for h in self._hosts.values() if h.netns_path.exists()]
        found += [f"interface {link}" for link in _links() if link.startswith(self.prefix)]
        for host in self._hosts.values():
            found += [f"process {pid} of {host.name}" for pid in sorted(self._host_pids(host))]
        found += [
            f"mount {m}"
            for m in _mounts()
            if m.startswith((f"{RUN_ROOT / self.prefix}/", f"{DATA_ROOT / self.prefix}/"))
        ]
        found += [f"directory {d}" for d in (RUN_ROOT / self.prefix, DATA_ROOT / self.prefix) if d.exists()]
        found += [f"cgroup {m / self._cgroup}" for m in _all_cgroup_mounts() if (m / self._cgroup).exists()]
        found += [
            f"state {self.state_dir / f}"
            for f in (*STATE_FILES, *STATE_DIRS)
            if (self.state_dir / f).exists()
        ]
        return found


@contextlib.contextmanager
def lab_session(prefix: str, subnet: str, state_dir: Path, hosts: int = 3) -> Iterator[Lab]:
    """A lab that is up for the `with` block and always brought down after it (also on failure)."""
    lab = Lab(prefix, subnet, hosts, state_dir=state_dir)
    try:
        lab.up()
        yield lab
    finally:
        api_access.close_all()  # this process's API tunnels to the lab's hosts go with them
        lab.down()


# --- machine helpers ----------------------------------------------------------------------


def _require_tools() -> None:
    missing = [
        t
        for t in ("ip", "nsenter", "containerd", "dockerd", "docker", "ssh", "ssh-keygen", "openssl")
        if not shutil.which(t)
    ]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("sshd")
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)}: run `make setup` (it installs them from Debian)")


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _quiet(*argv: str) -> int:
    return subprocess.run(argv, capture_output=True, check=False).returncode


def _issue_cert(ca_dir: Path, key: Path, cert: Path, common_name: str, extensions: str) -> None:
    csr, ext = key.with_suffix(".csr"), key.with_suffix(".ext")
    ext.write_text(extensions + "\n")
    _run(
        *("openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}"),
    )
    _run(
        *("openssl", "x509", "-req", "-in", str(csr), "-days", "30", "-extfile", str(ext)),
        *(
            "-CA",
            str(ca_dir / "ca.pem"),
            "-CAkey",
            str(ca_dir / "ca-key.pem"),
            "-CAcreateserial",
            "-out",
            str(cert),
        ),
    )
    csr.unlink()
    ext.unlink()


_storage_driver: str | None = None


def _root_storage_driver() -> str:
    """The machine's own engine's storage driver (overlay2 when it does not answer)."""
    global _storage_driver
    if _storage_driver is None:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.Driver}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        _storage_driver = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "overlay2"
    return _storage_driver


def _links() -> list[str]:
    return os.listdir("/sys/class/net")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _link_up(name: str) -> bool:
    try:
        return bool(int(Path("/sys/class/net", name, "flags").read_text(), 16) & 0x1)  # IFF_UP
    except OSError:
        return False


def _cgroup_hierarchies() -> list[Path]:
    """Where the lab tracks its processes: the cgroup v2 tree, or the v1 hierarchies (pids first)."""
    if (CGROUP_MOUNTS / "cgroup.controllers").exists():
        return [CGROUP_MOUNTS]
    return [CGROUP_MOUNTS / "pids"] if (CGROUP_MOUNTS / "pids" / "cgroup.procs").exists() else []


def _all_cgroup_mounts() -> list[Path]:
    if (CGROUP_MOUNTS / "cgroup.controllers").exists():
        return [CGROUP_MOUNTS]
    return (
        [p for p in CGROUP_MOUNTS.iterdir() if (p / "cgroup.procs").exists()]
        if CGROUP_MOUNTS.exists()
        else []
    )


def _remove_cgroup_tree(relative: str) -> None:
    """Removes a cgroup subtree bottom-up in every hierarchy (dockerd makes its containers' cgroups in each)."""
    for mount in _all_cgroup_mounts():
        tree = mount / relative
        if not tree.exists():
            continue
        for directory in sorted(
            (p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _netns_inode(netns_path: Path) -> int | None:
    try:
        return netns_path.stat().st_ino
    except OSError:
        return None


def _in_netns(pid: int, netns_path: Path) -> bool:
    inode = _netns_inode(netns_path)
    try:
        return inode is not None and os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]"
    except OSError:
        return False


def _netns_pids(netns_path: Path) -> set[int]:
    inode = _netns_inode(netns_path)
    if inode is None:
        return set()
    wanted = f"net:[{inode}]"
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/net") == wanted:
                    pids.add(int(entry))
    return pids


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _mounts() -> list[str]:
    """Mount points of this mount namespace (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def _unmount_under(root: Path) -> None:
    """Unmounts what a killed engine left under its directories, deepest first."""
    prefix = f"{root}/"
    for _ in range(5):
        leftovers = sorted(
            (m for m in _mounts() if m.startswith(prefix) or m == str(root)), key=len, reverse=True
        )
        if not leftovers:
            return
        for point in leftovers:
            if _quiet("umount", point) != 0:
                _quiet("umount", "--lazy", point)
    raise LabError(f"mounts left under {root}: {leftovers}")


def _unix_connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _docker_ping(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(1024)
        except OSError:
            return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float, host: LabHost) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            logs = "; ".join(
                f"{d}: {_tail(host.log(d))}"
                for d in ("containerd", "dockerd", "sshd")
                if host.log(d).exists()
            )
            raise LabError(f"{what}: no answer within {timeout_s:.0f}s ({logs})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
