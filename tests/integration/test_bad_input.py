"""Malformed stack configs fail `pulumi preview` and touch nothing.

One throwaway stack is reused: each case rewrites its config file (as a user
edits `stacks/Pulumi.<stack>.yaml`) from a valid base, runs a real preview
through the Automation API, and checks that

- the preview fails with one error line naming the stack, the setting's path
  and the bad value;
- no Docker object carries the stack's label and no node image was built;
- the stack's state holds no resource (nothing but, at most, the Stack).

Nothing is ever deployed, so each case costs one preview (about a second).
A control case first shows the base config previews cleanly, so every
failure below is due to the one bad setting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components import naming
from components.docker_objects import engine
from testing.harness import TestStack

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
    change: Callable[[dict[str, Any]], Any]
    """Makes the (deep-copied) valid base config bad; if it returns a value, that is written instead."""
    expected: str
    """What the error line must say after "stack '<name>': ": path and bad value."""


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
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


def _jobs(*jobs: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda cluster: cluster.__setitem__("jobs", [copy.deepcopy(j) for j in jobs])


def _job(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GOOD_JOB), **changes}


def _shell(**config: str) -> dict[str, str]:
    return {"command": "true", **config}


def _port_clash(cluster: dict[str, Any]) -> None:
    cluster["nodes"][0]["api_port"] = 23456
    cluster["nodes"][2]["api_port"] = 23456


# Addresses from TEST-NET-1 (RFC 5737): nothing is ever reached there, validation stops the preview first.
HOST_ADDRESSES = {"h1": "192.0.2.11", "h2": "192.0.2.12", "h3": "192.0.2.13"}


def _on_hosts(*placement: str) -> Callable[[dict[str, Any]], None]:
    """A change declaring hosts h1..h3 (ssh:// engines) and putting node i on ``placement[i]``."""

    def change(cluster: dict[str, Any]) -> None:
        cluster["hosts"] = {
            name: {"docker": f"ssh://root@{address}", "address": address}
            for name, address in HOST_ADDRESSES.items()
        }
        for node, host in zip(cluster["nodes"], placement, strict=True):
            node["host"] = host

    return change


def _then(*changes: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    def change(cluster: dict[str, Any]) -> None:
        for each in changes:
            each(cluster)

    return change


CASES = [
    # --- the cluster ----------------------------------------------------------------
    Case("duplicate-node-names", _set("nodes.2.name", "n1"), "cluster.nodes[2].name = 'n1'"),
    Case("invalid-node-name", _set("nodes.1.name", "Node_2"), "cluster.nodes[1].name = 'Node_2'"),
    Case(
        "even-node-count",
        lambda c: c.__setitem__("nodes", c["nodes"][:2]),
        "cluster.nodes = ['n1', 'n2']",
    ),
    Case("zero-nodes", _set("nodes", []), "cluster.nodes = []"),
    Case("explicit-port-clash", _port_clash, "cluster.nodes[2].api_port = 23456"),
    Case("api-port-below-1024", _set("nodes.0.api_port", 80), "cluster.nodes[0].api_port = 80"),
    Case(
        "bad-bind-address",
        _set("ports.bind_address", "300.1.1.1"),
        "cluster.ports.bind_address = '300.1.1.1'",
    ),
    Case(
        "hostname-bind-address",
        _set("ports.bind_address", "localhost"),
        "cluster.ports.bind_address = 'localhost'",
    ),
    Case(
        "port-base-overflows",
        _set("ports.api_port_base", 65534),
        "cluster.ports.api_port_base = 65534",
    ),
    # An unknown setting: the bad value is the key itself, named in the path.
    Case("unknown-top-level-key", _set("replicas", 3), "cluster.replicas: unknown setting"),
    Case("unknown-node-key", _set("nodes.0.port", 9000), "cluster.nodes[0].port: unknown setting"),
    Case("unknown-image-key", _set("image.tag", "latest"), "cluster.image.tag: unknown setting"),
    Case(
        "tag-value-with-colon",
        _set("nodes.0.tags.python", "daily:1"),
        "cluster.nodes[0].tags.python = 'daily:1'",
    ),
    Case("reserved-tag-key", _set("nodes.1.tags.server", "yes"), "cluster.nodes[1].tags: key 'server'"),
    Case("bad-dkron-version", _set("image.dkron_version", "4.0"), "cluster.image.dkron_version = '4.0'"),
    Case(
        "bad-base-image",
        _set("image.base_image", "Not An Image"),
        "cluster.image.base_image = 'Not An Image'",
    ),
    Case("raft-multiplier-too-high", _set("dkron.raft_multiplier", 11), "cluster.dkron.raft_multiplier = 11"),
    Case("raft-multiplier-zero", _set("dkron.raft_multiplier", 0), "cluster.dkron.raft_multiplier = 0"),
    Case("bad-log-level", _set("dkron.log_level", "verbose"), "cluster.dkron.log_level = 'verbose'"),
    Case("bad-cluster-name", _set("name", "Bad_Name"), "cluster.name = 'Bad_Name'"),
    Case(
        "rollout-timeout-too-short",
        _set("rollout.node_timeout_seconds", 5),
        "cluster.rollout.node_timeout_seconds = 5",
    ),
    Case(
        "subnet-with-host-bits",
        _set("network.subnet", "172.24.9.7/24"),
        "cluster.network.subnet = '172.24.9.7/24'",
    ),
    Case(
        "node-address-without-subnet",
        _set("nodes.1.ipv4_address", "172.24.9.20"),
        "cluster.nodes[1].ipv4_address = '172.24.9.20'",
    ),
    # Found only against the live engine: Docker's default bridge holds 172.17.0.0/16.
    Case(
        "subnet-overlaps-docker-bridge",
        _set("network.subnet", "172.17.3.0/24"),
        "cluster.network.subnet = '172.17.3.0/24': overlaps Docker network 'bridge'",
    ),
    # --- several hosts --------------------------------------------------------------
    Case("host-without-hosts", _set("nodes.0.host", "h1"), "cluster.nodes[0].host = 'h1'"),
    Case("unknown-host", _on_hosts("h1", "h2", "h9"), "cluster.nodes[2].host = 'h9': unknown host"),
    Case(
        "two-hosts-one-address",
        _then(_on_hosts("h1", "h2", "h3"), _set("hosts.h3.address", HOST_ADDRESSES["h1"])),
        f"cluster.hosts.h3.address = '{HOST_ADDRESSES['h1']}': clashes with the address of host 'h1'",
    ),
    Case(
        "port-clash-on-one-host",
        _then(
            _on_hosts("h1", "h1", "h1"),
            _set("nodes.0.serf_port", 23457),
            _set("nodes.1.rpc_port", 23457),
        ),
        "cluster.nodes[1].rpc_port = 23457: clashes with the serf_port of node 'n1' on host 'h1'",
    ),
    Case(
        "placement-loses-quorum-with-a-host",
        _on_hosts("h1", "h1", "h2"),
        "cluster.hosts.h1 = ['n1', 'n2']: carries 2 of the 3 nodes",
    ),
    Case(
        "ssh-engine-without-user",
        _then(_on_hosts("h1", "h2", "h3"), _set("hosts.h2.docker", "ssh://192.0.2.12")),
        "cluster.hosts.h2.docker = 'ssh://192.0.2.12': must name the SSH user",
    ),
    Case(
        "subnet-with-hosts",
        _then(_on_hosts("h1", "h2", "h3"), _set("network.subnet", "172.24.9.0/24")),
        "cluster.network.subnet = '172.24.9.0/24': means nothing with hosts",
    ),
    Case("cluster-not-a-mapping", lambda c: ["n1", "n2", "n3"], "cluster = ['n1', 'n2', 'n3']"),
    # --- jobs -----------------------------------------------------------------------
    Case(
        "job-five-field-cron",
        _jobs(_job(schedule="30 2 * * *")),
        "cluster.jobs[0].schedule = '30 2 * * *'",
    ),
    Case("job-bad-every", _jobs(_job(schedule="@every 1x")), "cluster.jobs[0].schedule = '@every 1x'"),
    Case(
        "job-bad-timezone", _jobs(_job(timezone="Mars/Olympus")), "cluster.jobs[0].timezone = 'Mars/Olympus'"
    ),
    Case("job-unknown-executor", _jobs(_job(executor="kafka")), "cluster.jobs[0].executor = 'kafka'"),
    Case(
        "job-shell-env-with-comma",
        _jobs(_job(executor_config=_shell(env="GREETING=hello,world"))),
        "cluster.jobs[0].executor_config.env = 'GREETING=hello,world'",
    ),
    Case(
        "job-missing-parent",
        _jobs(_job(name="child", schedule="", parent_job="nope")),
        "cluster.jobs[0].parent_job = 'nope'",
    ),
    Case(
        "job-tags-match-no-node",
        _jobs(_job(tags={"gpu": "true:1"})),
        "cluster.jobs[0].tags = {'gpu': 'true:1'}",
    ),
    Case(
        "job-duplicate-names",
        _jobs(_job(), _job(schedule="@every 1m")),
        "cluster.jobs[1].name = 'tick'",
    ),
    Case("job-uppercase-name", _jobs(_job(name="Tick")), "cluster.jobs[0].name = 'Tick'"),
    Case(
        "job-processor-not-installed",
        _jobs(_job(processors={"log": {}})),
        "cluster.jobs[0].processors = {'log': {}}",
    ),
    Case(
        "root-tags-match-no-node",
        _set("security", {"run_as_root_tags": {"tier": "legacy"}}),
        "cluster.security.run_as_root_tags = {'tier': 'legacy'}",
    ),
    Case(
        "job-file-missing",
        _set("job_files", ["jobs/does-not-exist.yaml"]),
        "cluster.job_files[0] = 'jobs/does-not-exist.yaml'",
    ),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    test_stack = TestStack(NODES, jobs=[copy.deepcopy(GOOD_JOB)])
    test_stack.base = copy.deepcopy(test_stack.cluster)  # type: ignore[attr-defined]
    try:
        yield test_stack
    finally:
        test_stack.close()


def _configure(stack: TestStack, change: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the stack's config: the valid base with one change."""
    base: dict[str, Any] = stack.base  # type: ignore[attr-defined]
    replacement: list[Any] = []

    def rewrite(cluster: dict[str, Any]) -> None:
        cluster.clear()
        cluster.update(copy.deepcopy(base))
        result = change(cluster)
        if result is not None:
            replacement.append(result)

    stack.configure(rewrite)
    if replacement:
        _write_cluster_value(stack, replacement[0])


def _write_cluster_value(stack: TestStack, value: Any) -> None:
    """Write the config file by hand: `value` under the key, or no key at all if `value` is None."""
    content = yaml.safe_load(stack.config_file.read_text()) or {}
    config = content.setdefault("config", {})
    if value is None:
        config.pop(CONFIG_KEY, None)
    else:
        config[CONFIG_KEY] = value
    stack.config_file.write_text(yaml.safe_dump(content, sort_keys=False))


def _failed_preview(stack: TestStack) -> list[str]:
    """Run a preview that must fail; the problem lines it printed, each from "stack '<name>': " on.

    A problem list is one multi-line diagnostic: only its first line carries "error: ".
    """
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.preview()
    marker = f"stack {stack.name!r}: "
    return [line[line.index(marker) :] for line in str(failure.value).splitlines() if marker in line]


def _assert_nothing_made(stack: TestStack) -> None:
    assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    with engine() as client:
        images = client.images.list(filters={"reference": naming.image_repository(stack.cluster_name)})
    assert images == [], images
    deployment = stack.stack.export_stack().deployment or {}
    kinds = [r.get("type") for r in deployment.get("resources") or []]
    assert set(kinds) <= {"pulumi:pulumi:Stack"}, kinds


def test_base_config_previews_cleanly(stack: TestStack) -> None:
    _configure(stack, lambda _: None)
    result = stack.preview()
    assert result.change_summary.get(auto.OpType.CREATE, 0) > 0, result.change_summary
    _assert_nothing_made(stack)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_config_fails_preview_naming_stack_path_and_value(stack: TestStack, case: Case) -> None:
    _configure(stack, case.change)
    errors = _failed_preview(stack)
    prefix = f"stack {stack.name!r}: {case.expected}"
    assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)


def test_missing_cluster_config_fails_preview(stack: TestStack) -> None:
    _configure(stack, lambda _: None)
    _write_cluster_value(stack, None)
    assert CONFIG_KEY not in stack.config_file.read_text()
    errors = _failed_preview(stack)
    prefix = f"stack {stack.name!r}: cluster: no cluster config; set {CONFIG_KEY!r}"
    assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)


def test_every_problem_is_reported_at_once(stack: TestStack) -> None:
    """Several bad settings: one line each, not just the first."""

    def many(cluster: dict[str, Any]) -> None:
        _set("nodes.1.name", "Node_2")(cluster)
        _set("dkron.raft_multiplier", 11)(cluster)
        _set("ports.bind_address", "localhost")(cluster)

    _configure(stack, many)
    errors = _failed_preview(stack)
    for expected in (
        "cluster.nodes[1].name = 'Node_2'",
        "cluster.dkron.raft_multiplier = 11",
        "cluster.ports.bind_address = 'localhost'",
    ):
        prefix = f"stack {stack.name!r}: {expected}"
        assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)
