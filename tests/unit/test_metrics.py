"""Metrics from plain data: the node exporter's answer, the Prometheus config and rules, the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from components import prometheus
from components.spec import ClusterConfigError, load_cluster_spec
from nodeside.exporter import exposition, samples, voter_rows

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
PEERS = """Node   ID     Address           State     Voter
node1  node1  172.24.5.10:6868  leader    true
node2  node2  172.24.5.11:6868  follower  true
node3  node3  172.24.5.12:6868  follower  false
"""


def member(name: str, status: int = 1) -> dict[str, Any]:
    return {"Name": name, "Status": status, "Tags": {"server": "true"}}


def test_the_leader_reports_every_alive_server_and_raft_peer_as_voter_or_not() -> None:
    found = samples(
        True, True, [member("node1"), member("node2"), member("node4")], voter_rows(PEERS), [], NOW
    )
    voters = {labels["peer"]: value for name, labels, value in found if name == "dkron_iac_raft_voter"}
    assert voters == {"node1": 1.0, "node2": 1.0, "node3": 0.0, "node4": 0.0}
    assert ("dkron_iac_node_is_leader", {}, 1.0) in found
    # A follower says nothing about voters.
    follower = samples(False, True, [member("node1")], None, [], NOW)
    assert [name for name, _, _ in follower] == ["dkron_iac_node_is_leader", "dkron_iac_node_sees_leader"]


def test_jobs_report_their_last_run_and_how_long_a_due_time_went_unserved() -> None:
    jobs: list[dict[str, Any]] = [
        {
            "name": "failing",
            "schedule": "@every 10s",
            "last_success": "2026-12-01T11:59:40Z",
            "last_error": "2026-12-01T11:59:55Z",
            "success_count": 4,
            "error_count": 2,
        },
        {
            "name": "stopped",
            "schedule": "@every 10s",
            "last_success": (NOW - timedelta(seconds=70)).isoformat(),
        },
        {"name": "new", "schedule": "@daily"},
    ]
    found = {
        (name, labels.get("dkron_job")): value
        for name, labels, value in samples(False, False, [], None, jobs, NOW)
    }
    assert found[("dkron_iac_job_last_run_failed", "failing")] == 1.0
    assert found[("dkron_iac_job_error_total", "failing")] == 2.0
    assert found[("dkron_iac_job_unserved_due_seconds", "failing")] == 0.0
    assert found[("dkron_iac_job_last_run_failed", "stopped")] == 0.0
    assert found[("dkron_iac_job_unserved_due_seconds", "stopped")] == 60.0
    assert ("dkron_iac_job_last_run_failed", "new") not in found
    assert found[("dkron_iac_node_sees_leader", None)] == 0.0


def test_the_exposition_names_each_family_once_and_keeps_timestamps_whole() -> None:
    text = exposition(
        [
            ("dkron_iac_job_success_total", {"dkron_job": 'a"b'}, 3.0),
            ("dkron_iac_job_success_total", {"dkron_job": "c"}, 1.0),
            ("dkron_iac_job_last_success_timestamp_seconds", {"dkron_job": "c"}, 1796126400.5),
        ]
    )
    assert text.count("# TYPE dkron_iac_job_success_total counter") == 1
    assert 'dkron_iac_job_success_total{dkron_job="a\\"b"} 3.0' in text
    assert 'dkron_iac_job_last_success_timestamp_seconds{dkron_job="c"} 1796126400.5' in text


def spec(**prom: Any) -> Any:
    return load_cluster_spec(
        "dev",
        {
            "name": "dkron-dev",
            "nodes": [{"name": "node1"}, {"name": "node2"}, {"name": "node3"}],
            "metrics": {"prometheus": {"enabled": True, **prom}},
        },
    )


def test_prometheus_scrapes_both_endpoints_of_every_node_and_loads_the_rules() -> None:
    config = yaml.safe_load(prometheus.scrape_config(spec(scrape_interval="5s"), ["node1", "node2", "node3"]))
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == [prometheus.RULES_PATH]
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    # Dkron's own metrics too come from the exporter, which passes them on from the agent's socket.
    assert jobs["dkron"][0] == {"targets": ["node1:9180"], "labels": {"node": "node1"}}
    paths = {job["job_name"]: job["metrics_path"] for job in config["scrape_configs"]}
    assert paths == {"dkron": "/dkron/metrics", "dkron-iac-node": "/metrics"}
    assert [c["targets"] for c in jobs["dkron-iac-node"]] == [["node1:9180"], ["node2:9180"], ["node3:9180"]]


def test_each_alert_rule_watches_its_condition_held_for_three_evaluations() -> None:
    rules = {
        r["alert"]: r
        for r in yaml.safe_load(prometheus.rules_file(spec(scrape_interval="5s")))["groups"][0]["rules"]
    }
    assert set(rules) == {
        "DkronNoLeader",
        "DkronNodeNotVoter",
        "DkronJobLastRunFailed",
        "DkronJobRunsStopped",
        "DkronNodeDown",
        "DkronNodeCertificateEnding",
    }
    assert "dkron_iac_node_is_leader" in rules["DkronNoLeader"]["expr"]
    assert rules["DkronNodeCertificateEnding"]["expr"].endswith("- time() < 30 * 86400")
    assert rules["DkronNoLeader"]["for"] == "15s"
    assert "for" not in rules["DkronJobLastRunFailed"]
    assert rules["DkronJobRunsStopped"]["expr"].endswith("> 30")


def test_prometheus_settings_are_checked_with_the_stack_and_the_setting_named() -> None:
    with pytest.raises(ClusterConfigError) as caught:
        spec(port=8082, scrape_interval="1.5s")
    text = "\n".join(caught.value.problems)
    assert "cluster.metrics.prometheus.scrape_interval = '1.5s': must be a whole number of seconds" in text
    with pytest.raises(
        ClusterConfigError, match=r"cluster.metrics.prometheus.port = 8082: clashes with a node's API port"
    ):
        load_cluster_spec(
            "dev",
            {
                "name": "d",
                "nodes": [{"name": "a"}],
                "ports": {"api_port_base": 8082},
                "metrics": {"prometheus": {"enabled": True, "port": 8082}},
            },
        )
    hosts = {
        "name": "lab",
        "hosts": {"h1": {"docker": "ssh://root@10.0.0.11", "address": "10.0.0.11"}},
        "nodes": [{"name": "n1", "host": "h1"}],
        "metrics": {"prometheus": {"enabled": True}},
    }
    with pytest.raises(
        ClusterConfigError,
        match=r"stack 'lab': cluster.metrics.prometheus.enabled = True: the bundled Prometheus runs on one Docker engine only",
    ):
        load_cluster_spec("lab", hosts)
    assert spec().metrics.prometheus.port == 9090


def test_an_alertmanager_gets_every_alert_and_posts_them_to_the_webhooks() -> None:
    with_am = load_cluster_spec(
        "dev",
        {
            "name": "dkron-dev",
            "nodes": [{"name": "node1"}],
            "metrics": {
                "prometheus": {"enabled": True},
                "alertmanager": {"enabled": True, "webhook_urls": ["http://hook:8080/alerts"]},
            },
        },
    )
    config = yaml.safe_load(prometheus.scrape_config(with_am, ["node1"]))
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    assert "alerting" not in yaml.safe_load(prometheus.scrape_config(spec(), ["node1"]))
    am = yaml.safe_load(prometheus.alertmanager_config(with_am))
    assert am["route"]["receiver"] == "dkron-iac"
    assert am["receivers"] == [
        {"name": "dkron-iac", "webhook_configs": [{"url": "http://hook:8080/alerts", "send_resolved": True}]}
    ]


def test_alertmanager_settings_are_checked() -> None:
    base: dict[str, Any] = {"name": "d", "nodes": [{"name": "a"}]}
    with pytest.raises(
        ClusterConfigError,
        match=r"cluster.metrics.alertmanager.enabled = True: needs metrics.prometheus.enabled",
    ):
        load_cluster_spec("dev", {**base, "metrics": {"alertmanager": {"enabled": True}}})
    with pytest.raises(ClusterConfigError, match=r"cluster.metrics.alertmanager.port = 9090: clashes with"):
        load_cluster_spec(
            "dev",
            {
                **base,
                "metrics": {"prometheus": {"enabled": True}, "alertmanager": {"enabled": True, "port": 9090}},
            },
        )
    with pytest.raises(
        ClusterConfigError, match=r"webhook_urls.*'ftp://x' is not an http:// or https:// URL"
    ):
        load_cluster_spec("dev", {**base, "metrics": {"alertmanager": {"webhook_urls": ["ftp://x"]}}})
