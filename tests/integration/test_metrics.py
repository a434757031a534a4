"""Metrics and alerts on a real cluster: the bundled Prometheus scrapes every node,
each alert rule fires in the condition it names and clears when it ends, and the
Alertmanager posts what fires to a webhook.

One three-node stack for the module (scraping every 2 s, so each rule holds
6 s before it fires); the tests run in order, and those that kill nodes
bring them back with `pulumi up`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pulumi import automation as auto

from components import prometheus as prometheus_config
from components.docker_objects import engine
from components.membership import remove_raft_peer
from testing import harness
from testing.harness import TestStack, eventually
from tests.integration.test_status import status_json

NODES: list[dict[str, Any]] = [
    {"name": "node1", "tags": {"slot": "a"}},
    {"name": "node2", "tags": {"slot": "b"}},
    {"name": "node3", "tags": {"slot": "c"}},
]
FAIL_FLAG = "/tmp/dkron-iac-test-fail"  # noqa: S108 - a flag file inside the node containers
JOBS = [
    {
        "name": "flaky",
        "schedule": "@every 2s",
        "tags": {"slot": "a"},
        "executor": "shell",
        "executor_config": {"command": f"test ! -e {FAIL_FLAG}"},
    }
]


# A webhook receiver for the Alertmanager: prints what it is posted.
HOOK = """
import http.server
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        print(self.rfile.read(int(self.headers["Content-Length"])).decode(), flush=True)
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("", 8080), Hook).serve_forever()
"""


def hook_name(stack: TestStack) -> str:
    return f"{stack.cluster_name}-hook"


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestStack]:
    with harness.test_stack(NODES, jobs=JOBS) as stack:
        prometheus_port = stack.port_base + len(NODES) + 1
        stack.configure(
            lambda c: c.update(
                metrics={
                    "prometheus": {"enabled": True, "port": prometheus_port, "scrape_interval": "2s"},
                    "alertmanager": {
                        "enabled": True,
                        "port": prometheus_port + 1,
                        "webhook_urls": [f"http://{hook_name(stack)}:8080/"],
                    },
                }
            )
        )
        outputs = stack.up(refresh=False)
        with engine() as client:
            # On the cluster network, where its container name resolves; the stack's label
            # has the stack's clean-up remove it.
            client.containers.run(
                harness.BASE_IMAGE,
                ["python3", "-c", HOOK],
                name=hook_name(stack),
                network=outputs["network"]["name"],
                labels={"dkron-iac.stack": stack.name},
                detach=True,
            )
        yield stack


def prometheus(stack: TestStack) -> str:
    return str(stack.last_outputs["prometheus"]["url"])


def query(stack: TestStack, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{prometheus(stack)}/api/v1/query", params={"query": expr}, timeout=5).json()
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def firing(stack: TestStack) -> set[tuple[str, str]]:
    """(alert, what it is about) for every firing alert."""
    alerts = requests.get(f"{prometheus(stack)}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {
        (
            a["labels"]["alertname"],
            a["labels"].get("dkron_job") or a["labels"].get("node") or "",
        )
        for a in alerts
        if a["state"] == "firing"
    }


def fires(stack: TestStack, alert: tuple[str, str], timeout_s: float = 60) -> None:
    eventually(f"{alert} firing", lambda: alert in firing(stack), timeout_s=timeout_s)


def clears(stack: TestStack, alert: tuple[str, str], timeout_s: float = 90) -> None:
    eventually(f"{alert} cleared", lambda: alert not in firing(stack), timeout_s=timeout_s)


def leader_of(stack: TestStack) -> str:
    with stack.client(stack.node_names()[0]) as client:
        found = eventually("a leader", client.leader)
    return str(found["Name"])


def test_prometheus_scrapes_every_node_on_loopback_and_nothing_fires_at_rest(cluster: TestStack) -> None:
    url = prometheus(cluster)
    assert url == f"http://127.0.0.1:{cluster.port_base + len(NODES) + 1}"
    ports = subprocess.run(
        ["docker", "port", cluster.last_outputs["prometheus"]["container"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ports.strip() == f"9090/tcp -> 127.0.0.1:{cluster.port_base + len(NODES) + 1}", ports
    alertmanager = cluster.last_outputs["alertmanager"]
    published = subprocess.run(
        ["docker", "port", alertmanager["container"]], capture_output=True, text=True, check=True
    ).stdout
    assert published.strip() == f"9093/tcp -> 127.0.0.1:{cluster.port_base + len(NODES) + 2}", published

    def every_target_up() -> bool:
        targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["node"]) for t in targets if t["health"] == "up"}
        return seen == {(job, n) for job in ("dkron", "dkron-iac-node") for n in cluster.node_names()}

    eventually("every node scraped", every_target_up, timeout_s=60)
    # Dkron's own metrics from each node, and the exporter's.
    nodes = set(cluster.node_names())
    eventually(
        "Dkron's metrics from every node",
        lambda: {
            r["metric"]["node"]
            for r in query(cluster, 'count by (node) ({job="dkron", __name__=~"dkron_.+"})')
        }
        == nodes,
    )
    leader = leader_of(cluster)
    eventually(
        "the leader's own word",
        lambda: [r["metric"]["node"] for r in query(cluster, "dkron_iac_node_is_leader == 1")] == [leader],
    )
    voters = eventually("voters", lambda: query(cluster, "dkron_iac_raft_voter"))
    assert {(r["metric"]["peer"], r["value"][1]) for r in voters} == {(n, "1") for n in nodes}
    eventually(
        "a run of flaky", lambda: query(cluster, 'dkron_iac_job_last_run_failed{dkron_job="flaky"} == 0')
    )
    # An alert that fired while the exporters were still starting (they start 10 s after the
    # agent) resolves at the next evaluations; at rest nothing stays firing.
    eventually("nothing firing at rest", lambda: firing(cluster) == set(), 60)
    # `make status` names the servers beside the nodes.
    code, data = status_json(cluster.name)
    assert code == 0
    assert data["prometheus"] == {
        "url": url,
        "container": cluster.last_outputs["prometheus"]["container"],
        "state": "running",
    }
    assert data["alertmanager"]["state"] == "running"

    # Deployed as it is, the stack has nothing to change.
    result = cluster.preview()
    assert set(result.change_summary) == {auto.OpType.SAME}, result.change_summary


def oldest_samples(stack: TestStack) -> dict[str, float]:
    """When Prometheus's oldest sample (within the hour) of each node's exporter `up` was taken."""
    series = query(stack, f'up{{job="{prometheus_config.EXPORTER_JOB}"}}[1h]')
    return {r["metric"]["node"]: float(r["values"][0][0]) for r in series}


def test_prometheus_keeps_its_samples_and_the_alertmanager_its_silences_when_replaced(
    cluster: TestStack,
) -> None:
    """Both keep their data on a volume of their own, given to their user (issue 25: each
    update replaced the Prometheus container, and it started again with no history)."""
    before = eventually(
        "samples of every node", lambda: len(found := oldest_samples(cluster)) == len(NODES) and found
    )
    alertmanager = cluster.last_outputs["alertmanager"]["url"]
    now = datetime.now(UTC)
    silence = {
        "matchers": [{"name": "alertname", "value": "DkronIacTestKept", "isRegex": False}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test_metrics",
        "comment": "must survive a replacement",
    }
    silence_id = requests.post(f"{alertmanager}/api/v2/silences", json=silence, timeout=5).json()["silenceID"]
    servers = {role: cluster.last_outputs[role]["container"] for role in ("prometheus", "alertmanager")}
    data = {
        "prometheus": prometheus_config.DATA_PATH,
        "alertmanager": prometheus_config.ALERTMANAGER_DATA_PATH,
    }
    with engine() as client:
        ids = {role: client.containers.get(name).id for role, name in servers.items()}
        for role, name in servers.items():
            owner = client.containers.get(name).exec_run(["stat", "-c", "%u:%g", data[role]])
            assert owner.output.decode().strip() == prometheus_config.SERVER_USER, role

    replaced_at = time.time()
    cluster.up(replace=[cluster.urn("DockerContainer", f"dkron-{role}") for role in servers])
    with engine() as client:
        assert all(client.containers.get(name).id != ids[role] for role, name in servers.items())
    latest = f'timestamp(up{{job="{prometheus_config.EXPORTER_JOB}"}}) > {replaced_at}'
    eventually("every node scraped since the replacement", lambda: len(query(cluster, latest)) == len(NODES))
    assert oldest_samples(cluster) == before
    kept = eventually(
        "the silence back",
        lambda: requests.get(f"{alertmanager}/api/v2/silence/{silence_id}", timeout=5).json(),
    )
    assert kept["status"]["state"] == "active"
    assert kept["comment"] == silence["comment"]


def test_a_job_whose_last_run_failed_fires_until_a_run_succeeds(cluster: TestStack) -> None:
    def flag(present: bool) -> None:
        with engine() as client:
            for node in cluster.node_names():
                command = ["touch", FAIL_FLAG] if present else ["rm", "-f", FAIL_FLAG]
                assert client.containers.get(cluster.container(node)).exec_run(command).exit_code == 0

    flag(True)
    fires(cluster, ("DkronJobLastRunFailed", "flaky"))
    # Prometheus hands it to the Alertmanager, which posts it to the webhook.
    alertmanager = cluster.last_outputs["alertmanager"]["url"]
    received = requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert {"alertname": "DkronJobLastRunFailed", "dkron_job": "flaky"}.items() <= next(
        a["labels"] for a in received if a["labels"]["alertname"] == "DkronJobLastRunFailed"
    ).items()

    def posted() -> bool:
        with engine() as client:
            log = client.containers.get(hook_name(cluster)).logs().decode()
        return '"alertname":"DkronJobLastRunFailed"' in log and '"dkron_job":"flaky"' in log

    eventually("the alert posted to the webhook", posted, timeout_s=40)
    flag(False)
    clears(cluster, ("DkronJobLastRunFailed", "flaky"), timeout_s=30)


def test_certificates_ending_within_thirty_days_fire_and_degrade_the_status_until_renewed(
    cluster: TestStack,
) -> None:
    # Node certificates of 20 days (made again within 10): each ends inside the 30 days the
    # alert and `make status` watch for, as a certificate an update never renewed would.
    cluster.configure(lambda c: c.update(security={"node_certificate_days": 20, "renew_within_days": 10}))
    cluster.up()
    for node in cluster.node_names():
        fires(cluster, ("DkronNodeCertificateEnding", node))
    code, data = status_json(cluster.name)
    assert code == 1, data
    assert sorted(p.split(":")[0] for p in data["problems"] if "certificate ends in 19d" in p) == sorted(
        cluster.node_names()
    ), data["problems"]

    # The default again: a year. The nodes roll onto new certificates and it clears.
    cluster.configure(lambda c: c.pop("security"))
    cluster.up()
    for node in cluster.node_names():
        clears(cluster, ("DkronNodeCertificateEnding", node), timeout_s=60)
    code, data = status_json(cluster.name)
    assert not [p for p in data["problems"] if "certificate" in p], data["problems"]


def test_lost_nodes_fire_down_not_voter_runs_stopped_and_no_leader_until_up_brings_them_back(
    cluster: TestStack,
) -> None:
    leader = leader_of(cluster)
    follower, other = (n for n in cluster.node_names() if n != leader)
    slot = next(node["tags"]["slot"] for node in NODES if node["name"] == follower)
    pinned = {
        "name": "pinned",
        "schedule": "@every 2s",
        "tags": {"slot": f"{slot}:1"},
        "executor": "shell",
        "executor_config": {"command": "true"},
    }
    with cluster.client(leader) as client:
        client.upsert_job(pinned)
        eventually("a run of pinned", lambda: (client.get_job("pinned") or {}).get("success_count"))

    # A follower dies and leaves the Raft configuration: the leader keeps a majority of what
    # is left, but the node is no voter and the only node the job may run on is gone.
    with engine() as docker_client:
        docker_client.containers.get(cluster.container(follower)).kill()
    # The leader adds a member Serf still holds alive back as a voter at its next reconcile:
    # the peer is removed once Serf has marked the node failed (status 4).
    with cluster.client(leader) as client:
        eventually(
            f"Serf to mark {follower} failed",
            lambda: any(m["Name"] == follower and m.get("Status") == 4 for m in client.members()),
            60,
        )
    remove_raft_peer(cluster.container(leader), follower, "test")
    fires(cluster, ("DkronNodeDown", follower), timeout_s=30)
    fires(cluster, ("DkronNodeNotVoter", follower), timeout_s=30)
    fires(cluster, ("DkronJobRunsStopped", "pinned"), timeout_s=90)
    assert ("DkronNoLeader", "") not in firing(cluster)

    with engine() as docker_client:
        docker_client.containers.get(cluster.container(other)).kill()
    fires(cluster, ("DkronNoLeader", ""), timeout_s=60)

    cluster.up()
    for alert in (
        ("DkronNoLeader", ""),
        ("DkronNodeDown", follower),
        ("DkronNodeDown", other),
        ("DkronNodeNotVoter", follower),
        ("DkronJobRunsStopped", "pinned"),
    ):
        clears(cluster, alert)
