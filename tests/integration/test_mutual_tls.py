"""Mutual TLS on the RPC port: a cluster made without it moves onto it in one
previewed step, and then nothing without the stack's certificate commands it.

One three-node stack on the local engine, made with `security.mutual_tls:
false` (as every stack made before TLS runs), with `tick` due every 2 s. The
first test moves it onto TLS and measures what the move costs; the second
attacks the RPC port from the host and from a container on the cluster's own
network (the worst place on one engine: it reaches every node's port), with
the stack's image and so the same `dkron` command, and checks that nothing
changed; a copy of a node's own certificate, from the same place, works.
"""

from __future__ import annotations

import itertools
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from components import pki
from components.docker_objects.client import engine
from components.health import raft_peers
from components.node_config import CONFIG_PATH, NODE_KEY_ENV, TLS_CA_PATH, TLS_CERT_PATH
from testing.harness import (
    TestStack,
    caught_up_starts,
    eventually,
    missed_due_times,
    tick_job,
    watcher_lines,
)

pytestmark = pytest.mark.integration

NODES = ["n1", "n2", "n3"]
TICK = tick_job()
RPC_PORT = 6868


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    made = TestStack([{"name": n} for n in NODES], security={"mutual_tls": False}, jobs=[TICK])
    try:
        made.up()
        yield made
    finally:
        made.close()


def _in_node(stack: TestStack, node: str, *command: str) -> str:
    with engine() as client:
        result = client.containers.get(stack.container(node)).exec_run(list(command))
    return result.output.decode(errors="replace")


class LeaderWatch:
    """Asks every node for the leader four times a second; keeps when none named one."""

    def __init__(self, stack: TestStack) -> None:
        self.stack = stack
        self.without: list[float] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaderWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.polls += 1
            if self.stack.leader_name() is None:
                self.without.append(time.monotonic())
            self._stop.wait(0.25)

    def longest_gap_s(self) -> float:
        """The longest stretch of consecutive polls that found no leader."""
        longest, start, last = 0.0, None, None
        for at in self.without:
            if last is None or at - last > 1.0:
                start = at
            last = at
            longest = max(longest, at - (start or at))
        return longest + (0.25 if self.without else 0.0)


def test_a_stack_made_without_tls_moves_onto_it_in_one_previewed_step(stack: TestStack) -> None:
    with stack.client("n1") as client:
        eventually("tick to run", lambda: (client.get_job("tick") or {}).get("success_count", 0) >= 3, 30)
        before = client.get_job("tick") or {}
        history = {e["id"] for e in client.executions("tick")}
    assert "tls" not in yaml.safe_load(_in_node(stack, "n1", "cat", CONFIG_PATH))

    stack.configure(lambda cluster: cluster.pop("security"))  # the default: mutual TLS
    said = stack.preview()
    text = said.stdout + said.stderr
    assert "mutual TLS: every node stops at once" in text, text

    started = time.time()
    with LeaderWatch(stack) as watch:
        outputs = stack.up()
    print(f"no leader for {watch.longest_gap_s():.1f} s of the move ({watch.polls} polls)")

    assert outputs["voters"] == NODES
    assert sorted(outputs["certificates"]) == NODES
    for node in NODES:
        config = yaml.safe_load(_in_node(stack, node, "cat", CONFIG_PATH))
        assert config["tls"]["ca-file"] == TLS_CA_PATH, node
    with engine() as client:
        logs = client.containers.get(stack.container("n1")).logs().decode(errors="replace")
    assert "mutual TLS on the RPC port" in logs
    # The CA's key and the nodes' keys are secrets in the state: an export shows ciphertext.
    exported = stack.export_as_user()
    assert "StackCA" in exported
    assert "PRIVATE KEY" not in exported

    with stack.client(outputs["leader"]) as client:
        eventually(
            "tick to run after the move",
            lambda: (client.get_job("tick") or {}).get("success_count", 0) > before["success_count"] + 2,
            60,
        )
        after = client.executions("tick")
        # The node's key (and the gossip key) reached the agent, which dropped them:
        # a job does not inherit them.
        client.upsert_job(
            {
                "name": "printenv",
                "schedule": "@manually",
                "executor": "shell",
                "executor_config": {"command": "env"},
            }
        )
        client.run_job("printenv")
        printed = eventually("printenv's output", lambda: client.executions("printenv") or None, 30)
        assert "HOME=" in printed[0]["output"]
        assert NODE_KEY_ENV not in printed[0]["output"]
        assert "DKRON_ENCRYPT" not in printed[0]["output"]
        client.delete_job("printenv")
    # Nothing lost: the job's history from before the move is still there.
    assert history <= {e["id"] for e in after}
    starts = sorted(datetime.fromisoformat(e["started_at"]).timestamp() for e in after if e["started_at"])
    starts = [s for s in starts if s >= started - 10]
    caught = caught_up_starts(watcher_lines([stack.container(n) for n in NODES], started - 10), "tick")
    assert missed_due_times(starts, 2.0, caught) == 0, (starts, caught)
    # One run per due time: no two runs of tick within 0.9 s.
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(starts)), starts


# --- from outside ------------------------------------------------------------------------


def _address(stack: TestStack, node: str) -> str:
    return str(stack.outputs()["nodes"][node]["address"])


def _other_ca_files(into: Path) -> Path:
    """A CA that is not the stack's, with a node certificate it signed, as a node's files."""
    ca = pki.make_ca("intruder")
    issued = pki.issue(ca, "n1", ["n1", "localhost"], ["127.0.0.1"], days=30)
    return _credentials(into, ca.cert_pem, issued.cert_pem, issued.key_pem)


def _credentials(into: Path, ca_pem: str, cert_pem: str, key_pem: str) -> Path:
    into.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name, text in {"ca.pem": ca_pem, "cert.pem": cert_pem, "key.pem": key_pem}.items():
        (into / name).write_text(text)
        (into / name).chmod(0o644)
    config = {
        "tls": {"ca-file": "/creds/ca.pem", "cert-file": "/creds/cert.pem", "key-file": "/creds/key.pem"}
    }
    (into / "dkron.yml").write_text(yaml.safe_dump(config))
    (into / "dkron.yml").chmod(0o644)
    return into


def _stolen_node_files(stack: TestStack, node: str, into: Path) -> Path:
    """A node's own CA, certificate and key, as whoever holds them has them."""
    with engine() as client:
        env = client.containers.get(stack.container(node)).attrs["Config"]["Env"]
    key = next(e.split("=", 1)[1] for e in env if e.startswith(f"{NODE_KEY_ENV}="))
    return _credentials(
        into, _in_node(stack, node, "cat", TLS_CA_PATH), _in_node(stack, node, "cat", TLS_CERT_PATH), key
    )


def _outsider(stack: TestStack, args: list[str], creds: Path | None) -> tuple[int, str]:
    """`dkron <args>` in a throwaway container of the stack's image on the cluster
    network (with `creds` as its config, or none: a plain client)."""
    with engine() as client:
        node = client.containers.get(stack.container("n1"))
        network = next(iter(node.attrs["NetworkSettings"]["Networks"]))
        config = "/creds/dkron.yml" if creds else "/nonexistent/dkron.yml"
        container = client.containers.run(
            node.image.id,
            entrypoint=["dkron", *args, "--config", config],
            network=network,
            volumes={str(creds): {"bind": "/creds", "mode": "ro"}} if creds else {},
            detach=True,
            labels={"dkron-iac.stack": stack.name},
        )
        try:
            code = int(container.wait(timeout=60)["StatusCode"])
            return code, container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)


def _handshake_refused(address: str, creds: Path | None) -> bool:
    """A TLS client on the RPC port (with `creds`' certificate, or none) is turned away."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if creds is not None:
        context.load_cert_chain(creds / "cert.pem", creds / "key.pem")
    try:
        with (
            socket.create_connection((address, RPC_PORT), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            # TLS 1.3: the server checks the client's certificate after the
            # client's side of the handshake; its verdict comes with the first read.
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return tls.recv(64) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    except TimeoutError:
        return False  # accepted, waiting for more: not refused


def _plain_raft_refused(address: str) -> bool:
    """Raft's own framing in clear (an AppendEntries type byte and garbage) is dropped."""
    with socket.create_connection((address, RPC_PORT), timeout=5) as raw:
        raw.sendall(b"\x00" + b"\x81\xa4Term\x01" * 40)
        try:
            answer = raw.recv(64)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        # Closed, or a TLS alert record and closed: never a Raft answer.
        return answer == b"" or answer[:1] == b"\x15"


def test_nothing_without_the_stacks_certificate_commands_the_cluster(
    stack: TestStack, tmp_path: Path
) -> None:
    leader = stack.leader_name()
    assert leader is not None
    peers_before = raft_peers(stack.container(leader))
    with stack.client(leader) as client:
        jobs_before = sorted(j["name"] for j in client.list_jobs())
    other_ca = _other_ca_files(tmp_path / "other")
    target = f"{_address(stack, 'n2')}:{RPC_PORT}"

    # gRPC from the cluster's own network: in clear, and with another CA's certificate.
    for creds in (None, other_ca):
        for args in (["raft", "list-peers"], ["raft", "remove-peer", "--peer-id", "n2"]):
            code, said = _outsider(stack, [*args, "--rpc-addr", target], creds)
            assert code != 0, (args, creds, said)
            assert "Peer removed" not in said, said
            assert "leader" not in said, said
    # From the host: a TLS client without a certificate or with another CA's, and Raft in clear.
    for node in NODES:
        address = _address(stack, node)
        assert _handshake_refused(address, None), node
        assert _handshake_refused(address, other_ca), node
        assert _plain_raft_refused(address), node

    # Nothing changed: the same peers, the same jobs, the same leader.
    assert raft_peers(stack.container(leader)) == peers_before
    with stack.client(leader) as client:
        assert sorted(j["name"] for j in client.list_jobs()) == jobs_before
    assert stack.leader_name() == leader

    # The control: the same commands with a node's own credentials work from there.
    own = _stolen_node_files(stack, "n1", tmp_path / "own")
    code, said = _outsider(stack, ["raft", "list-peers", "--rpc-addr", target], own)
    assert code == 0, said
    assert all(f"{node} " in said for node in NODES), said
    assert not _handshake_refused(_address(stack, "n2"), own)


def test_dkron_raft_commands_in_a_node_use_its_certificate(stack: TestStack) -> None:
    said = _in_node(
        stack, "n1", "dkron", "raft", "list-peers", "--rpc-addr", f"{_address(stack, 'n1')}:{RPC_PORT}"
    )
    assert said.splitlines()[0].split() == ["Node", "ID", "Address", "State", "Voter"], said
    assert sorted(line.split()[0] for line in said.splitlines()[1:] if line.strip()) == NODES
    assert "Version: 4.0.5" in _in_node(stack, "n1", "dkron", "version")
