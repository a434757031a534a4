"""Malformed stack configs, each with what its error line must say.

Shared by the unit tests, which run every case through the program's config
steps (no engine, no Pulumi), and by the integration tests, which preview one
case of each family for real. Each case changes a valid base config (`base`)
in one place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config_errors import StackConfigError
from components.jobs import cluster_node_tags, load_jobs, validate_jobs
from components.spec import load_cluster_spec

NODES: list[dict[str, Any]] = [
    {"name": "n1", "tags": {"python": "daily"}},
    {"name": "n2", "tags": {"python": "daily"}},
    {"name": "n3"},
]
GOOD_JOB: dict[str, Any] = {
    "name": "tick",
    "schedule": "@every 10s",
    "tags": {"server": "true:1"},
    "executor": "shell",
    "executor_config": {"command": "true"},
}
CONFIG_KEY = "dkron-cluster:cluster"


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    """Which part of the program finds it: "cluster", "hosts", "jobs" or "engine" (only against
    the live engine, so only in a real preview)."""
    change: Callable[[dict[str, Any]], Any]
    """Makes the (deep-copied) valid base config bad; if it returns a value, that is written instead."""
    expected: str
    """What the error line must say after "stack '<name>': ": path and bad value."""


def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting `path` ("nodes.1.name", "image.base_image") to `value`."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]

    def change(cluster: dict[str, Any]) -> None:
        target: Any = cluster
        for part in parts[:-1]:
            if isinstance(part, str) and part not in target:
                target[part] = {}
            target = target[part]
        target[parts[-1]] = value

    return change


def jobs(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda cluster: cluster.__setitem__("jobs", [copy.deepcopy(j) for j in entries])


def job(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GOOD_JOB), **changes}


def shell(**config: str) -> dict[str, str]:
    return {"command": "true", **config}


def port_clash(cluster: dict[str, Any]) -> None:
    cluster["nodes"][0]["api_port"] = 23456
    cluster["nodes"][2]["api_port"] = 23456


# Addresses from TEST-NET-1 (RFC 5737): nothing is ever reached there, validation stops the preview first.
HOST_ADDRESSES = {"h1": "192.0.2.11", "h2": "192.0.2.12", "h3": "192.0.2.13"}


def on_hosts(*placement: str) -> Callable[[dict[str, Any]], None]:
    """A change declaring hosts h1..h3 (ssh:// engines) and putting node i on ``placement[i]``."""

    def change(cluster: dict[str, Any]) -> None:
        cluster["hosts"] = {
            name: {"docker": f"ssh://root@{address}", "address": address}
            for name, address in HOST_ADDRESSES.items()
        }
        for node, host in zip(cluster["nodes"], placement, strict=True):
            node["host"] = host

    return change


def then(*changes: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    def change(cluster: dict[str, Any]) -> None:
        for each in changes:
            each(cluster)

    return change


CASES = [
    # --- the cluster ----------------------------------------------------------------
    Case("duplicate-node-names", "cluster", set_path("nodes.2.name", "n1"), "cluster.nodes[2].name = 'n1'"),
    Case(
        "invalid-node-name", "cluster", set_path("nodes.1.name", "Node_2"), "cluster.nodes[1].name = 'Node_2'"
    ),
    Case(
        "even-node-count",
        "cluster",
        lambda c: c.__setitem__("nodes", c["nodes"][:2]),
        "cluster.nodes = ['n1', 'n2']",
    ),
    Case("zero-nodes", "cluster", set_path("nodes", []), "cluster.nodes = []"),
    Case("explicit-port-clash", "cluster", port_clash, "cluster.nodes[2].api_port = 23456"),
    Case(
        "api-port-below-1024", "cluster", set_path("nodes.0.api_port", 80), "cluster.nodes[0].api_port = 80"
    ),
    Case(
        "bad-bind-address",
        "cluster",
        set_path("ports.bind_address", "300.1.1.1"),
        "cluster.ports.bind_address = '300.1.1.1'",
    ),
    Case(
        "hostname-bind-address",
        "cluster",
        set_path("ports.bind_address", "localhost"),
        "cluster.ports.bind_address = 'localhost'",
    ),
    Case(
        "port-base-overflows",
        "cluster",
        set_path("ports.api_port_base", 65534),
        "cluster.ports.api_port_base = 65534",
    ),
    # An unknown setting: the bad value is the key itself, named in the path.
    Case("unknown-top-level-key", "cluster", set_path("replicas", 3), "cluster.replicas: unknown setting"),
    Case(
        "unknown-node-key",
        "cluster",
        set_path("nodes.0.port", 9000),
        "cluster.nodes[0].port: unknown setting",
    ),
    Case(
        "unknown-image-key", "cluster", set_path("image.tag", "latest"), "cluster.image.tag: unknown setting"
    ),
    Case(
        "tag-value-with-colon",
        "cluster",
        set_path("nodes.0.tags.python", "daily:1"),
        "cluster.nodes[0].tags.python = 'daily:1'",
    ),
    Case(
        "reserved-tag-key",
        "cluster",
        set_path("nodes.1.tags.server", "yes"),
        "cluster.nodes[1].tags: key 'server'",
    ),
    Case(
        "bad-dkron-version",
        "cluster",
        set_path("image.dkron_version", "4.0"),
        "cluster.image.dkron_version = '4.0'",
    ),
    Case(
        "bad-base-image",
        "cluster",
        set_path("image.base_image", "Not An Image"),
        "cluster.image.base_image = 'Not An Image'",
    ),
    Case(
        "raft-multiplier-too-high",
        "cluster",
        set_path("dkron.raft_multiplier", 11),
        "cluster.dkron.raft_multiplier = 11",
    ),
    Case(
        "raft-multiplier-zero",
        "cluster",
        set_path("dkron.raft_multiplier", 0),
        "cluster.dkron.raft_multiplier = 0",
    ),
    Case(
        "bad-log-level",
        "cluster",
        set_path("dkron.log_level", "verbose"),
        "cluster.dkron.log_level = 'verbose'",
    ),
    Case("bad-cluster-name", "cluster", set_path("name", "Bad_Name"), "cluster.name = 'Bad_Name'"),
    Case(
        "rollout-timeout-too-short",
        "cluster",
        set_path("rollout.node_timeout_seconds", 5),
        "cluster.rollout.node_timeout_seconds = 5",
    ),
    Case(
        "subnet-with-host-bits",
        "cluster",
        set_path("network.subnet", "172.24.9.7/24"),
        "cluster.network.subnet = '172.24.9.7/24'",
    ),
    Case(
        "node-address-without-subnet",
        "cluster",
        set_path("nodes.1.ipv4_address", "172.24.9.20"),
        "cluster.nodes[1].ipv4_address = '172.24.9.20'",
    ),
    # Found only against the live engine: Docker's default bridge holds 172.17.0.0/16.
    Case(
        "subnet-overlaps-docker-bridge",
        "engine",
        set_path("network.subnet", "172.17.3.0/24"),
        "cluster.network.subnet = '172.17.3.0/24': overlaps Docker network 'bridge'",
    ),
    # --- several hosts --------------------------------------------------------------
    Case("host-without-hosts", "hosts", set_path("nodes.0.host", "h1"), "cluster.nodes[0].host = 'h1'"),
    Case("unknown-host", "hosts", on_hosts("h1", "h2", "h9"), "cluster.nodes[2].host = 'h9': unknown host"),
    Case(
        "two-hosts-one-address",
        "hosts",
        then(on_hosts("h1", "h2", "h3"), set_path("hosts.h3.address", HOST_ADDRESSES["h1"])),
        f"cluster.hosts.h3.address = '{HOST_ADDRESSES['h1']}': clashes with the address of host 'h1'",
    ),
    Case(
        "port-clash-on-one-host",
        "hosts",
        then(
            on_hosts("h1", "h1", "h1"),
            set_path("nodes.0.serf_port", 23457),
            set_path("nodes.1.rpc_port", 23457),
        ),
        "cluster.nodes[1].rpc_port = 23457: clashes with the serf_port of node 'n1' on host 'h1'",
    ),
    Case(
        "placement-loses-quorum-with-a-host",
        "hosts",
        on_hosts("h1", "h1", "h2"),
        "cluster.hosts.h1 = ['n1', 'n2']: carries 2 of the 3 nodes",
    ),
    Case(
        "ssh-engine-without-user",
        "hosts",
        then(on_hosts("h1", "h2", "h3"), set_path("hosts.h2.docker", "ssh://192.0.2.12")),
        "cluster.hosts.h2.docker = 'ssh://192.0.2.12': must name the SSH user",
    ),
    Case(
        "subnet-with-hosts",
        "hosts",
        then(on_hosts("h1", "h2", "h3"), set_path("network.subnet", "172.24.9.0/24")),
        "cluster.network.subnet = '172.24.9.0/24': means nothing with hosts",
    ),
    Case("cluster-not-a-mapping", "cluster", lambda c: ["n1", "n2", "n3"], "cluster = ['n1', 'n2', 'n3']"),
    # --- jobs -----------------------------------------------------------------------
    Case(
        "job-five-field-cron",
        "jobs",
        jobs(job(schedule="30 2 * * *")),
        "cluster.jobs[0].schedule = '30 2 * * *'",
    ),
    Case("job-bad-every", "jobs", jobs(job(schedule="@every 1x")), "cluster.jobs[0].schedule = '@every 1x'"),
    Case(
        "job-bad-timezone",
        "jobs",
        jobs(job(timezone="Mars/Olympus")),
        "cluster.jobs[0].timezone = 'Mars/Olympus'",
    ),
    Case("job-unknown-executor", "jobs", jobs(job(executor="kafka")), "cluster.jobs[0].executor = 'kafka'"),
    Case(
        "job-shell-env-with-comma",
        "jobs",
        jobs(job(executor_config=shell(env="GREETING=hello,world"))),
        "cluster.jobs[0].executor_config.env = 'GREETING=hello,world'",
    ),
    Case(
        "job-missing-parent",
        "jobs",
        jobs(job(name="child", schedule="", parent_job="nope")),
        "cluster.jobs[0].parent_job = 'nope'",
    ),
    Case(
        "job-tags-match-no-node",
        "jobs",
        jobs(job(tags={"gpu": "true:1"})),
        "cluster.jobs[0].tags = {'gpu': 'true:1'}",
    ),
    Case(
        "job-duplicate-names",
        "jobs",
        jobs(job(), job(schedule="@every 1m")),
        "cluster.jobs[1].name = 'tick'",
    ),
    Case("job-uppercase-name", "jobs", jobs(job(name="Tick")), "cluster.jobs[0].name = 'Tick'"),
    Case(
        "job-processor-not-installed",
        "jobs",
        jobs(job(processors={"log": {}})),
        "cluster.jobs[0].processors = {'log': {}}",
    ),
    Case(
        "root-tags-match-no-node",
        "cluster",
        set_path("security", {"run_as_root_tags": {"tier": "legacy"}}),
        "cluster.security.run_as_root_tags = {'tier': 'legacy'}",
    ),
    Case(
        "job-file-missing",
        "jobs",
        set_path("job_files", ["jobs/does-not-exist.yaml"]),
        "cluster.job_files[0] = 'jobs/does-not-exist.yaml'",
    ),
]


def bad_config(base: dict[str, Any], case: Case) -> Any:
    """The value to write under the config key: a copy of ``base`` with the case's change."""
    cluster = copy.deepcopy(base)
    replaced = case.change(cluster)
    return cluster if replaced is None else replaced


def config_problems(stack: str, raw: Any, root: Path) -> list[str]:
    """The problem lines the program's config steps report (`__main__.main`, in its order),
    before it reads the stack's state or asks an engine anything."""
    try:
        spec = load_cluster_spec(stack, raw)
        found = load_jobs(stack, spec.jobs, spec.job_files, root)
        validate_jobs(stack, found, cluster_node_tags(spec), dkron_version=spec.image.dkron_version)
    except StackConfigError as err:
        return list(err.problems)
    return []
