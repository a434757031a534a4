"""A cluster on several Docker hosts: real engines, real SSH, real links.

The lab (`testing.lab`) makes four hosts on this machine, each its own network
namespace with its own address on a private bridge, its own containerd and
dockerd, and an sshd; the stack reaches every engine over `ssh://` and every
node's API through an SSH tunnel to the host's loopback. One stack serves
every test, in file order: it forms on h1, h2 and h3, rolls an update across
them, moves a node to h4, then loses the leader's whole host, then has the
leader's host cut off by a partition. Each test starts from a whole cluster.
The test reaches the APIs as the program does: each node's recorded API URL
names its SSH tunnel, which the first call opens (`components.tunnels`).

`tick` (`@every 2s`, `server: true:1`) runs throughout; a run that happened
twice (two executions in one scheduled second) fails the test that saw it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from components.dkron_client import DkronClient, DkronError
from components.docker_objects import engine
from components.docker_objects.client import split_locator
from components.health import observe, raft_peers
from testing import intruder
from testing.harness import TestStack, derived_base_image, eventually, remove_image, tick_job
from testing.lab import Lab, lab_session

LAB_PREFIX = "dkh"
LAB_SUBNET = "10.213.79.0/24"
LAB_HOSTS = 4
PLACEMENT = {"n1": "h1", "n2": "h2", "n3": "h3"}
TICK = tick_job()


@dataclass
class HostsCluster:
    lab: Lab
    stack: TestStack
    broken_by: str | None = None

    def nodes(self) -> list[str]:
        return self.stack.node_names()

    def placement(self) -> dict[str, str]:
        return {n["name"]: n["host"] for n in self.stack.cluster["nodes"]}

    def up(self) -> dict[str, Any]:
        return self.stack.up()

    def api(self, nodes: list[str] | None = None) -> dict[str, str]:
        return {n: self.stack.api_url(n) for n in nodes or self.nodes()}

    def containers(self) -> dict[str, str]:
        recorded = self.stack.outputs()["nodes"]
        return {n: f"{recorded[n]['container']}@{recorded[n]['engine']}" for n in self.nodes()}

    def problems(self) -> list[str]:
        return observe(self.api(), self.containers()).problems(self.nodes())

    def leader(self, nodes: list[str] | None = None) -> str | None:
        return observe(self.api(nodes)).leader

    def whole(self, timeout_s: float) -> bool:
        try:
            eventually("the cluster to be whole", lambda: self.problems() == [], timeout_s, poll_s=2)
        except AssertionError:
            return False
        return True

    def require_whole(self, what: str) -> None:
        if self.broken_by:
            pytest.skip(f"the cluster was broken by an earlier test ({self.broken_by})")
        if not self.whole(60):
            self.broken_by = what
            raise AssertionError(f"not whole before {what}: {self.problems()}")

    def heal(self, what: str) -> str:
        """Whole again by itself, else after ONE `pulumi up`; says which."""
        if self.whole(60):
            return "by itself"
        try:
            self.up()
        except Exception:
            self.broken_by = what
            raise
        if not self.whole(30):
            self.broken_by = what
            raise AssertionError(f"{what}: not whole after one pulumi up: {self.problems()}")
        return "after one pulumi up"

    def executions(self, nodes: list[str] | None = None) -> list[dict[str, Any]]:
        for node in nodes or self.nodes():
            with (
                contextlib.suppress(requests.RequestException, DkronError, ValueError),
                DkronClient(self.stack.api_url(node), timeout_s=4) as client,
            ):
                return client.executions("tick")
        return []

    def jobs_on(self, node: str) -> list[str]:
        with DkronClient(self.stack.api_url(node), timeout_s=5) as client:
            return sorted(job["name"] for job in client.list_jobs())

    def host_containers(self, host: str) -> list[str]:
        with engine(self.lab.engine_ref(host)) as client:
            label = f"dkron-iac.stack={self.stack.name}"
            return sorted(c.name for c in client.containers.list(all=True, filters={"label": label}))


def _started(execution: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(execution["started_at"]).replace("Z", "+00:00")).timestamp()


def doubled_runs(executions: list[dict[str, Any]]) -> list[int]:
    """Scheduled seconds in which `tick` ran more than once (a group is one dispatch)."""
    count: Counter[int] = Counter(int(e["group"]) // 1_000_000_000 for e in executions)
    return sorted(second for second, runs in count.items() if runs > 1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_session(LAB_PREFIX, LAB_SUBNET, Path(tmp_path_factory.mktemp("lab")), LAB_HOSTS) as made:
        yield made


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[HostsCluster]:
    hosts = {name: lab.stack_host(name) for name in lab.hosts}
    nodes = [{"name": node, "host": host} for node, host in PLACEMENT.items()]
    stack = TestStack(nodes, hosts=hosts, jobs=[TICK])
    try:
        yield HostsCluster(lab, stack)
    finally:
        stack.close()


def test_forms_across_three_hosts(cluster: HostsCluster) -> None:
    outputs = cluster.up()
    nodes = outputs["nodes"]
    # Outputs name each node's host; each container runs there and nowhere else.
    assert {n: nodes[n]["host"] for n in nodes} == PLACEMENT
    for node, host in PLACEMENT.items():
        assert cluster.host_containers(host) == [cluster.stack.container(node)]
        assert nodes[node]["address"] == cluster.lab.hosts[host]
        where, name = split_locator(cluster.containers()[node])
        assert name == cluster.stack.container(node)
        assert where == nodes[node]["engine"]
    assert sorted(outputs["voters"]) == sorted(PLACEMENT)
    assert outputs["leader"] in PLACEMENT
    assert cluster.problems() == []
    # Each node's config speaks the hosts' addresses and its own ports there.
    config = nodes["n1"]["config"]
    assert config["bind-addr"] == f"{cluster.lab.hosts['h1']}:{nodes['n1']['serf_port']}"
    assert sorted(config["retry-join"]) == sorted(
        f"{cluster.lab.hosts[h]}:{nodes[n]['serf_port']}" for n, h in PLACEMENT.items()
    )
    # The API stays on each host's loopback: not reachable on the host's address.
    port = urlsplit(nodes["n2"]["api_url"]).port
    for scheme in ("http", "https"):
        with pytest.raises(requests.RequestException):
            requests.get(f"{scheme}://{cluster.lab.hosts['h2']}:{port}/health", timeout=3, verify=False)  # noqa: S501
    # Jobs: registered through the tunnels, and `tick` runs on exactly one server a time.
    assert all(cluster.jobs_on(n) == ["tick"] for n in PLACEMENT)
    eventually("tick to run", lambda: len(cluster.executions()) >= 2, 30)
    # Gossip is encrypted across hosts.
    with DkronClient(cluster.stack.api_url("n1")) as client:
        assert client.agent()["serf"]["encrypted"] in ("true", True)


def test_nothing_on_another_lab_host_commands_the_cluster(cluster: HostsCluster, tmp_path: Path) -> None:
    """From h4 (a host of the lab with no node yet): the stack's own `dkron` command
    in clear and with another CA's certificate, a TLS client without a certificate
    or with another CA's, and Raft in clear, at every node's RPC port; then the
    same command with a copy of n1's credentials, which works from there."""
    cluster.require_whole("attacks from another host")
    outputs = cluster.stack.outputs()
    nodes = outputs["nodes"]
    targets = {n: f"{nodes[n]['address']}:{nodes[n]['rpc_port']}" for n in PLACEMENT}
    h1 = cluster.lab.engine_ref("h1")
    with engine(h1) as client:
        image = client.containers.get(cluster.stack.container("n1")).image
    tag = image.tags[0]
    cluster.lab.load_images(tag, names=["h4"])
    h4 = cluster.lab.engine_ref("h4")
    labels = {"dkron-iac.stack": cluster.stack.name}
    leader = cluster.leader()
    assert leader is not None
    peers_before = raft_peers(cluster.containers()[leader])
    stranger = intruder.other_ca(tmp_path / "other")

    for node, target in targets.items():
        for creds in (None, stranger):
            for args in (["raft", "list-peers"], ["raft", "remove-peer", "--peer-id", "n2"]):
                code, said = intruder.dkron(tag, [*args, "--rpc-addr", target], creds, h4, labels=labels)
                assert code != 0, (node, args, creds, said)
                assert "Peer removed" not in said, said
        address, port = target.split(":")
        for probe in (
            ["handshake", address, port],
            ["handshake", address, port, str(stranger)],
            ["raft", address, port],
        ):
            done = cluster.lab.run_in("h4", sys.executable, "-m", "testing.intruder", *probe)
            assert done.stdout.strip() == "refused", (node, probe, done.stdout, done.stderr)

    assert raft_peers(cluster.containers()[leader]) == peers_before
    assert cluster.leader() == leader
    assert all(cluster.jobs_on(n) == ["tick"] for n in PLACEMENT)
    # The control: n1's own credentials, copied to h4, work there.
    own = intruder.node_credentials(cluster.stack.container("n1"), tmp_path / "own", h1)
    code, said = intruder.dkron(
        tag, ["raft", "list-peers", "--rpc-addr", targets["n2"]], own, h4, labels=labels
    )
    assert code == 0, said
    assert all(f" {n} " in f" {said} " for n in PLACEMENT), said
    done = cluster.lab.run_in(
        "h4", sys.executable, "-m", "testing.intruder", "handshake", *targets["n2"].split(":"), str(own)
    )
    assert done.stdout.strip() == "accepted", done.stdout + done.stderr


def test_no_process_on_a_nodes_host_commands_its_api(cluster: HostsCluster, tmp_path: Path) -> None:
    """On hosts a node's API listens on the host's loopback, which every process of the host
    shares: from h2's own network, without the token, with a wrong one and with another CA's
    certificate, in clear and over HTTPS, nothing is read or changed; the token works."""
    cluster.require_whole("calls from a node's own host")
    outputs = cluster.stack.outputs()
    port = urlsplit(outputs["nodes"]["n2"]["api_url"]).port
    base = f"https://127.0.0.1:{port}"
    stranger = intruder.other_ca(tmp_path / "other")
    for args in (["-"], ["not-the-token"], ["-", str(stranger)]):
        done = cluster.lab.run_in("h2", sys.executable, "-m", "testing.intruder", "api", base, *args)
        assert done.stdout.strip() == "refused", (args, done.stdout, done.stderr)
    assert all(cluster.jobs_on(n) == ["tick"] for n in PLACEMENT)
    # The control: the stack's token, on the same host.
    done = cluster.lab.run_in(
        "h2", sys.executable, "-m", "testing.intruder", "api", base, outputs["api_auth"]["token"]
    )
    assert done.stdout.strip() == "accepted", done.stdout + done.stderr


def test_rolling_update_across_hosts(cluster: HostsCluster) -> None:
    cluster.require_whole("the rolling update")
    leader = cluster.leader()
    assert leader is not None
    before = {n: _container_id(cluster, n) for n in PLACEMENT}
    down_counts: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            view = observe(cluster.api())
            down_counts.append(sum(1 for v in view.nodes.values() if v.error is not None))
            stop.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.time()
    try:
        # A new image: built here, loaded onto each host before any node goes.
        base = derived_base_image(f"dkron-iac/{cluster.stack.name}-base:v2", "LABEL dkron-iac.test=hosts")
        cluster.stack.configure(lambda c: c.setdefault("image", {}).update(base_image=base))
        cluster.up()
    finally:
        stop.set()
        remove_image(f"dkron-iac/{cluster.stack.name}-base:v2")
        watcher.join(10)
    after = {n: _container_id(cluster, n) for n in PLACEMENT}
    assert all(after[n] != before[n] for n in PLACEMENT), "every node replaced"
    starts = {n: _container_started(cluster, n) for n in PLACEMENT}
    # One node down at a time, the leader last.
    assert max(down_counts) <= 1, down_counts
    assert max(starts, key=lambda n: starts[n]) == leader, (starts, leader)
    assert cluster.problems() == []
    doubled = doubled_runs([e for e in cluster.executions() if _started(e) >= started])
    assert doubled == [], doubled


def test_moving_a_node_to_another_host(cluster: HostsCluster) -> None:
    cluster.require_whole("the move")

    def move(config: dict[str, Any]) -> None:
        next(n for n in config["nodes"] if n["name"] == "n3")["host"] = "h4"

    cluster.stack.configure(move)
    outputs = cluster.up()
    assert outputs["nodes"]["n3"]["host"] == "h4"
    assert cluster.host_containers("h4") == [cluster.stack.container("n3")]
    assert cluster.host_containers("h3") == []
    with engine(cluster.lab.engine_ref("h3")) as client:
        assert [v.name for v in client.volumes.list()] == [], "the old volume went with the node"
    assert cluster.problems() == []
    # It started empty on h4 and caught up from the leader.
    eventually("n3 to hold the jobs", lambda: cluster.jobs_on("n3") == ["tick"], 30)
    assert sorted(outputs["voters"]) == sorted(PLACEMENT)


def test_scale_out_and_in_across_hosts(cluster: HostsCluster) -> None:
    cluster.require_whole("scaling")
    before = {n: _container_id(cluster, n) for n in cluster.nodes()}

    def grow(config: dict[str, Any]) -> None:
        config["nodes"] += [{"name": "n4", "host": "h3"}, {"name": "n5", "host": "h1"}]

    cluster.stack.configure(grow)
    outputs = cluster.up()
    assert sorted(outputs["voters"]) == ["n1", "n2", "n3", "n4", "n5"]
    assert cluster.host_containers("h3") == [cluster.stack.container("n4")]
    # Joining nodes restart nobody.
    assert {n: _container_id(cluster, n) for n in before} == before
    eventually("n5 to hold the jobs", lambda: cluster.jobs_on("n5") == ["tick"], 30)

    def shrink(config: dict[str, Any]) -> None:
        config["nodes"] = [n for n in config["nodes"] if n["name"] not in ("n4", "n5")]

    cluster.stack.configure(shrink)
    outputs = cluster.up()
    assert sorted(outputs["voters"]) == ["n1", "n2", "n3"]
    assert cluster.host_containers("h3") == []
    assert cluster.host_containers("h1") == [cluster.stack.container("n1")]
    assert {n: _container_id(cluster, n) for n in before} == before
    assert cluster.problems() == []


def test_a_dead_node_on_a_host_is_replaced(cluster: HostsCluster) -> None:
    cluster.require_whole("a dead node")
    where, name = split_locator(cluster.containers()["n2"])
    with engine(where) as client:
        client.containers.get(name).remove(force=True)
    outputs = cluster.up()
    assert sorted(outputs["voters"]) == sorted(PLACEMENT)
    assert cluster.host_containers("h2") == [cluster.stack.container("n2")]
    assert cluster.problems() == []


def test_a_tls_engine_answers(cluster: HostsCluster) -> None:
    # tcp:// with the lab's client certificates: the same engine as over ssh.
    with (
        engine(cluster.lab.tls_engine_ref("h1")) as over_tls,
        engine(cluster.lab.engine_ref("h1")) as over_ssh,
    ):
        assert over_tls.info()["DockerRootDir"] == over_ssh.info()["DockerRootDir"]
        assert sorted(c.name for c in over_tls.containers.list()) == cluster.host_containers("h1")


def test_losing_a_whole_host(cluster: HostsCluster) -> None:
    cluster.require_whole("losing a host")
    leader = cluster.leader()
    assert leader is not None
    host = cluster.placement()[leader]
    survivors = [n for n in cluster.nodes() if n != leader]
    cluster.lab.stop_host(host)
    lost_at = time.time()
    try:
        new_leader = eventually(
            "the other two to agree on a leader",
            lambda: (found := cluster.leader(survivors)) in survivors and found,
            60,
        )
        assert new_leader in survivors
        ran = eventually(
            "tick to run on a surviving host",
            lambda: [e for e in cluster.executions(survivors) if _started(e) > lost_at + 1],
            60,
        )
        assert all(e["node_name"] in survivors for e in ran)
    finally:
        cluster.lab.start_host(host)
    cluster.heal("losing a host")
    doubled = doubled_runs([e for e in cluster.executions() if _started(e) >= lost_at - 5])
    assert doubled == [], doubled


def test_partition_cuts_off_the_leaders_host(cluster: HostsCluster) -> None:
    cluster.require_whole("the partition")
    leader = cluster.leader()
    assert leader is not None
    host = cluster.placement()[leader]
    majority = [n for n in cluster.nodes() if n != leader]
    cluster.lab.cut(host)
    try:
        new_leader = eventually(
            "the majority to elect a leader",
            lambda: (found := cluster.leader(majority)) in majority and found,
            60,
        )
        assert new_leader in majority
        # A job written while the partition lasts reaches the cut-off node after it heals.
        with DkronClient(cluster.stack.api_url(str(new_leader))) as client:
            client.upsert_job({**TICK, "name": "during-partition", "schedule": "@every 1h"})
    finally:
        cluster.lab.heal(host)
    cluster.heal("the partition")
    eventually(
        "every node to hold the same jobs",
        lambda: all(cluster.jobs_on(n) == ["during-partition", "tick"] for n in cluster.nodes()),
        60,
    )


def _container_info(cluster: HostsCluster, node: str) -> dict[str, Any]:
    where, name = split_locator(cluster.containers()[node])
    with engine(where) as client:
        return dict(client.containers.get(name).attrs)


def _container_id(cluster: HostsCluster, node: str) -> str:
    return str(_container_info(cluster, node)["Id"])


def _container_started(cluster: HostsCluster, node: str) -> str:
    return str(_container_info(cluster, node)["State"]["StartedAt"])
