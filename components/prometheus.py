"""The bundled Prometheus server's config and alert rules, as text (pure).

It scrapes every node twice, both from the node exporter beside the agent:
Dkron's own metrics (``enable-prometheus``), which the exporter passes on from
the agent (whose API wants the stack's token, which Prometheus does not hold),
and the exporter's own (`nodeside/exporter.py`): what the alert rules need and
Dkron 4.0.5 does not export (who leads, who votes, how each job's last run went).
Targets are the nodes' names on the cluster network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from components.node_config import EXPORTER_PORT
from components.pki import EXPIRY_WARNING_DAYS
from components.spec import ClusterSpec
from nodeside.catchup import LATE_AFTER_S
from nodeside.exporter import DKRON_METRICS_PATH
from nodeside.schedule import go_duration_seconds

ALERTMANAGER_CONFIG_PATH = "/etc/prometheus/dkron-iac-alertmanager.yml"
ALERTMANAGER_DATA_PATH = "/var/lib/prometheus/alertmanager"
ALERTMANAGER_PORT = 9093
ALERTMANAGER_HOST = "alertmanager"  # its name on the cluster network
CONFIG_PATH = "/etc/prometheus/dkron-iac.yml"
RULES_PATH = "/etc/prometheus/dkron-iac-rules.yml"
DATA_PATH = "/var/lib/prometheus/metrics2"
PORT = 9090
# The uid and gid of the servers' user (the packages' `prometheus`), fixed in their images:
# a system id, which Debian's packages keep, and one the data volumes are given to.
SERVER_UID = 990
SERVER_USER = f"{SERVER_UID}:{SERVER_UID}"
# How long Prometheus keeps samples (on its volume, `DATA_PATH`).
RETENTION = "7d"
DKRON_JOB = "dkron"
EXPORTER_JOB = "dkron-iac-node"

# A job's runs count as stopped once the first due time after its last run passed this long ago
# unserved; `make status` calls the job late after the same time.
RUNS_STOPPED_AFTER_S = int(LATE_AFTER_S)
# The leader's `dkron_iac_raft_voter{peer}` with the peer as its `node`.
VOTER_BY_NODE = 'label_replace(dkron_iac_raft_voter, "node", "$1", "peer", "(.+)")'
# How many evaluations in a row a condition must hold before it fires (a leader election or a
# node restarting in a rolling update lasts a scrape or two).
HOLD_EVALUATIONS = 3


def command() -> list[str]:
    return [
        "prometheus",
        f"--config.file={CONFIG_PATH}",
        f"--storage.tsdb.path={DATA_PATH}",
        f"--web.listen-address=:{PORT}",
        f"--storage.tsdb.retention.time={RETENTION}",
    ]


def scrape_config(spec: ClusterSpec, nodes: Sequence[str]) -> str:
    """prometheus.yml: every node's Dkron metrics and node exporter, and the rules."""
    interval = spec.metrics.prometheus.scrape_interval

    def targets(port: int) -> list[dict[str, Any]]:
        return [{"targets": [f"{node}:{port}"], "labels": {"node": node}} for node in nodes]

    config = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"cluster": spec.name},
        },
        "rule_files": [RULES_PATH],
        "scrape_configs": [
            {
                "job_name": DKRON_JOB,
                "metrics_path": DKRON_METRICS_PATH,
                "static_configs": targets(EXPORTER_PORT),
            },
            {"job_name": EXPORTER_JOB, "metrics_path": "/metrics", "static_configs": targets(EXPORTER_PORT)},
        ],
    }
    if spec.metrics.alertmanager.enabled:
        target = f"{ALERTMANAGER_HOST}:{ALERTMANAGER_PORT}"
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_command() -> list[str]:
    return [
        "prometheus-alertmanager",
        f"--config.file={ALERTMANAGER_CONFIG_PATH}",
        f"--storage.path={ALERTMANAGER_DATA_PATH}",
        f"--web.listen-address=:{ALERTMANAGER_PORT}",
        # One Alertmanager: no gossip with peers.
        "--cluster.listen-address=",
    ]


def alertmanager_config(spec: ClusterSpec) -> str:
    """alertmanager.yml: every alert to one receiver, which posts to the configured webhooks
    (none: the alerts are only shown, in its UI and API)."""
    receiver: dict[str, Any] = {"name": "dkron-iac"}
    urls = spec.metrics.alertmanager.webhook_urls
    if urls:
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True} for url in urls]
    config = {
        "route": {
            "receiver": "dkron-iac",
            "group_by": ["alertname", "cluster"],
            "group_wait": "10s",
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }
    return yaml.safe_dump(config, sort_keys=False)


def alert_rules(spec: ClusterSpec) -> dict[str, Any]:
    """The alert rules: what each one watches, and for how long it must hold."""
    interval = int(go_duration_seconds(spec.metrics.prometheus.scrape_interval) or 10)
    hold = f"{interval * HOLD_EVALUATIONS}s"
    rules = [
        {
            "alert": "DkronNoLeader",
            # No node says it leads (or none answers at all).
            "expr": "(max(dkron_iac_node_is_leader) or vector(0)) == 0",
            "for": hold,
            "labels": {"severity": "critical"},
            "annotations": {"summary": "No Dkron node leads: no job runs until a majority is back."},
        },
        {
            "alert": "DkronNodeNotVoter",
            # While a node leads: a server it reports as not a voter, or a configured node (a
            # scrape target) it does not report as one (gone from the Raft configuration).
            "expr": f"(min by (node) ({VOTER_BY_NODE}) == 0"
            f' or max by (node) (up{{job="{EXPORTER_JOB}"}}) unless on (node) max by (node) ({VOTER_BY_NODE}))'
            " and on () (max(dkron_iac_node_is_leader) == 1)",
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {"summary": "Dkron node {{ $labels.node }} is not a Raft voter."},
        },
        {
            "alert": "DkronJobLastRunFailed",
            "expr": "max by (dkron_job) (dkron_iac_job_last_run_failed) == 1",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "The last run of job {{ $labels.dkron_job }} failed."},
        },
        {
            "alert": "DkronJobRunsStopped",
            "expr": f"min by (dkron_job) (dkron_iac_job_unserved_due_seconds) > {RUNS_STOPPED_AFTER_S}",
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Job {{ $labels.dkron_job }} was due over "
                f"{RUNS_STOPPED_AFTER_S}s ago and has not run since."
            },
        },
        {
            "alert": "DkronNodeDown",
            "expr": f'up{{job="{DKRON_JOB}"}} == 0',
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {"summary": "Dkron node {{ $labels.node }} does not answer its metrics scrape."},
        },
        {
            "alert": "DkronNodeCertificateEnding",
            # `make up` renews a certificate well before this (security.renew_within_days).
            "expr": "min by (node) (dkron_iac_node_certificate_expiry_timestamp_seconds) - time()"
            f" < {EXPIRY_WARNING_DAYS} * 86400",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The certificate of Dkron node {{ $labels.node }} ends within "
                f"{EXPIRY_WARNING_DAYS} days: run `make up` to make a new one."
            },
        },
    ]
    return {"groups": [{"name": "dkron-iac", "rules": rules}]}


def rules_file(spec: ClusterSpec) -> str:
    return yaml.safe_dump(alert_rules(spec), sort_keys=False, width=200)
