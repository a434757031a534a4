"""Mutual TLS on the RPC port and the HTTPS API: a cluster made without them moves
onto them in one previewed step, and then nothing without the stack's certificate
or token commands it.

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
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from components.docker_objects.client import engine
from components.health import raft_peers
from components.node_config import API_TOKEN_ENV, CONFIG_PATH, NODE_KEY_ENV, TLS_CA_PATH
from testing import intruder
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


# Asks the agent in its own container who leads: on its socket (mutual TLS), else on its
# plain loopback API. From inside, so the watch needs no credentials while the move makes them.
LEADER_PROBE = (
    "from nodeside import local_api\n"
    "for base in ('unix:///tmp/dkron-iac-api.sock', 'http://127.0.0.1:8080'):\n"
    "    try:\n"
    "        status, body = local_api.call(base, 'GET', '/v1/leader', 2.0)\n"
    "    except OSError:\n"
    "        continue\n"
    "    print('leader' if status == 200 and body.strip() not in (b'', b'null') else 'none')\n"
    "    break\n"
)


def leader_seen_inside(stack: TestStack) -> bool:
    """Whether any node's agent, asked in its container, names a leader."""
    with engine() as client:
        for node in NODES:
            try:
                done = client.containers.get(stack.container(node)).exec_run(
                    ["python3", "-c", LEADER_PROBE], environment={"PYTHONPATH": "/opt/dkron-iac"}
                )
            except Exception:  # noqa: BLE001, S112 - replaced or stopped right now: it names no one
                continue
            if done.output.decode(errors="replace").strip() == "leader":
                return True
    return False


class LeaderWatch:
    """Asks the nodes for the leader (from inside, `leader_seen_inside`) about four times a
    second; keeps when none named one."""

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
            if not leader_seen_inside(self.stack):
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
        assert outputs["nodes"][node]["api_url"].startswith("https://127.0.0.1:"), node
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
        assert API_TOKEN_ENV not in printed[0]["output"]
        assert outputs["api_auth"]["token"] not in printed[0]["output"]
        assert "DKRON_ENCRYPT" not in printed[0]["output"]
        client.delete_job("printenv")
    # Nothing lost: the job's history from before the move is still there.
    assert history <= {e["id"] for e in after}
    starts = sorted(datetime.fromisoformat(e["started_at"]).timestamp() for e in after if e["started_at"])
    starts = [s for s in starts if s >= started - 10]
    caught = caught_up_starts(watcher_lines([stack.container(n) for n in NODES], started - 10), "tick")
    assert missed_due_times(starts, 2.0, caught) == 0, (starts, caught)
    # One run per due time (two runs of tick within 0.9 s serve one due time), but for
    # the one the catch-up watcher and the new leader's scheduler may both serve once
    # the leader is lost (issue 33, README "Missed runs": at most one per lost leader).
    doubles = [(a, b) for a, b in itertools.pairwise(starts) if b - a < 0.9]
    print(f"runs served twice in the move: {doubles}")
    assert len(doubles) <= 1, (doubles, starts)


# --- from outside ------------------------------------------------------------------------


def _address(stack: TestStack, node: str) -> str:
    return str(stack.outputs()["nodes"][node]["address"])


def _outsider(stack: TestStack, args: list[str], creds: Path | None) -> tuple[int, str]:
    """`dkron <args>` in a throwaway container of the stack's image on the cluster network."""
    with engine() as client:
        node = client.containers.get(stack.container("n1"))
        network = next(iter(node.attrs["NetworkSettings"]["Networks"]))
        image = str(node.image.id)
    return intruder.dkron(image, args, creds, network=network, labels={"dkron-iac.stack": stack.name})


def test_nothing_without_the_stacks_certificate_commands_the_cluster(
    stack: TestStack, tmp_path: Path
) -> None:
    leader = stack.leader_name()
    assert leader is not None
    peers_before = raft_peers(stack.container(leader))
    with stack.client(leader) as client:
        jobs_before = sorted(j["name"] for j in client.list_jobs())
    other_ca = intruder.other_ca(tmp_path / "other")
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
        assert intruder.handshake_refused(address, RPC_PORT, None), node
        assert intruder.handshake_refused(address, RPC_PORT, other_ca), node
        assert intruder.plain_raft_refused(address, RPC_PORT), node

    # Nothing changed: the same peers, the same jobs, the same leader.
    assert raft_peers(stack.container(leader)) == peers_before
    with stack.client(leader) as client:
        assert sorted(j["name"] for j in client.list_jobs()) == jobs_before
    assert stack.leader_name() == leader

    # The control: the same commands with a node's own credentials work from there.
    own = intruder.node_credentials(stack.container("n1"), tmp_path / "own")
    code, said = _outsider(stack, ["raft", "list-peers", "--rpc-addr", target], own)
    assert code == 0, said
    assert all(f"{node} " in said for node in NODES), said
    assert not intruder.handshake_refused(_address(stack, "n2"), RPC_PORT, own)


def test_the_api_answers_only_the_stacks_token_or_certificate(stack: TestStack, tmp_path: Path) -> None:
    """Each node's published API: HTTPS with a certificate of the stack's CA, and nothing
    without the token (as a bearer, or as a browser's login for the UI) or a client
    certificate of the CA; another CA's certificate or a wrong token get nothing."""
    outputs = stack.outputs()
    token, ca = outputs["api_auth"]["token"], outputs["api_auth"]["ca"]
    (tmp_path / "ca.pem").write_text(ca)
    other = intruder.other_ca(tmp_path / "other")
    own = intruder.node_credentials(stack.container("n1"), tmp_path / "own")
    jobs_before = sorted(j["name"] for j in stack.client("n1").list_jobs())
    for node in NODES:
        base = outputs["nodes"][node]["api_url"]
        for token_tried, creds in ((None, None), ("not-the-token", None), (None, other)):
            assert intruder.api_refused(base, token_tried, creds), (node, token_tried, creds)
        refused = requests.get(f"{base}/v1/jobs", verify=str(tmp_path / "ca.pem"), timeout=5)
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        # The node's certificate is of the stack's CA and names the address called.
        bearer = requests.get(
            f"{base}/v1/jobs",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(tmp_path / "ca.pem"),
            timeout=5,
        )
        assert sorted(j["name"] for j in bearer.json()) == jobs_before
        # A person in a browser: any user name, the token as the password, on the UI.
        page = requests.get(f"{base}/ui/", auth=("me", token), verify=str(tmp_path / "ca.pem"), timeout=5)
        assert page.status_code == 200, page.status_code
        assert "<html" in page.text.lower(), page.text[:200]
        # A client certificate of the stack's CA needs no token.
        certified = requests.get(
            f"{base}/v1/leader",
            cert=(str(own / "cert.pem"), str(own / "key.pem")),
            verify=str(tmp_path / "ca.pem"),
            timeout=5,
        )
        assert certified.status_code == 200, certified.text
        assert certified.json()["Name"] in NODES
    # Nothing the refused calls tried happened.
    assert sorted(j["name"] for j in stack.client("n1").list_jobs()) == jobs_before
    assert sorted(stack.outputs()["voters"]) == NODES
    assert stack.problems() == []
    # From the cluster's own network (a container beside the nodes), the same.
    with engine() as client:
        network = next(
            iter(client.containers.get(stack.container("n1")).attrs["NetworkSettings"]["Networks"])
        )
        image = str(client.containers.get(stack.container("n1")).image.id)
    said = intruder.api_probe(
        image,
        f"https://{_address(stack, 'n2')}:8080",
        network=network,
        labels={"dkron-iac.stack": stack.name},
    )
    assert said.startswith("refused"), said


def test_dkron_raft_commands_in_a_node_use_its_certificate(stack: TestStack) -> None:
    said = _in_node(
        stack, "n1", "dkron", "raft", "list-peers", "--rpc-addr", f"{_address(stack, 'n1')}:{RPC_PORT}"
    )
    assert said.splitlines()[0].split() == ["Node", "ID", "Address", "State", "Voter"], said
    assert sorted(line.split()[0] for line in said.splitlines()[1:] if line.strip()) == NODES
    assert "Version: 4.0.5" in _in_node(stack, "n1", "dkron", "version")
