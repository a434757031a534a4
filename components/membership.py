"""Taking nodes out of the cluster without losing quorum.

Dkron drops a server from Raft only when it leaves gracefully; a server that
died stays a voter until someone runs `dkron raft remove-peer`. When nodes
leave the stack config, a `NodeRemoval` step per node (chained, the leader
last, after every node of the new config is healthy) stops the node's
container with SIGTERM, so it leaves, makes sure its Raft peer is gone
(removing it by hand if the node was dead), and waits until the remaining
nodes are whole. Pulumi then deletes the container and, unless retained, the
volume.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

from components.health import observe, raft_peers, wait_until_healthy


class UnsafeRemoval(ValueError):
    """Removing this many voters at once could leave the cluster without quorum."""


def removed_nodes(previous_nodes: Mapping[str, Any] | None, current: Sequence[str]) -> list[str]:
    """Nodes the stack ran last time that are no longer in its config."""
    return [name for name in (previous_nodes or {}) if name not in current]


def removal_order(removed: Sequence[str], leader: str | None) -> list[str]:
    """Followers first, the current leader last."""
    return [n for n in removed if n != leader] + [n for n in removed if n == leader]


def check_removal_safe(stack: str, voters: Sequence[str], removed: Sequence[str]) -> None:
    """Refuse to remove as many voters as could break the quorum in one update.

    The removals are applied one after another, but a node can die while
    another is leaving; keeping the remaining voters a majority of the current
    ones means the cluster keeps its quorum whatever the order.
    """
    if not removed:
        return
    remaining = len(voters) - len(removed)
    if remaining * 2 > len(voters):
        return
    at_most = (len(voters) - 1) // 2
    raise UnsafeRemoval(
        f"stack '{stack}': cluster.nodes: removing {len(removed)} of {len(voters)} voters "
        f"({', '.join(removed)}) in one update would leave {remaining}, not a majority of "
        f"{len(voters)}, so a single failure during the change could lose the quorum. "
        f"Remove at most {at_most} node(s) per `pulumi up`, and run it again for the rest."
    )


def _wait_peer_gone(node: str, containers: Mapping[str, str], leader: str | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if leader and node not in raft_peers(containers[leader]):
            return True
        time.sleep(1)
    return False


class NodeRemovalProvider(ResourceProvider):
    """Takes one node out: graceful leave, then its Raft peer removed for sure."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        from components.docker_resources import docker_client

        node, api_urls, containers = props["node"], props["api_urls"], props["containers"]
        was_running = False
        client = docker_client()
        try:
            try:
                container = client.containers.get(props["container"])
                was_running = container.status == "running"
                # `docker stop`: SIGTERM makes the agent leave gracefully, and a
                # stopped container is not restarted by its restart policy.
                container.stop(timeout=int(props["stop_timeout_s"]))
            except Exception:  # noqa: BLE001, S110 - a missing container is a dead node: handled below
                pass
        finally:
            client.close()

        leader = observe(api_urls).leader
        how = "left gracefully"
        if not (was_running and _wait_peer_gone(node, containers, leader, timeout_s=20)):
            # The node died without leaving: remove its peer by hand.
            leader = observe(api_urls).leader
            if leader is None:
                raise RuntimeError(f"removing node {node!r}: the remaining nodes have no leader")
            client = docker_client()
            try:
                result = client.containers.get(containers[leader]).exec_run(
                    ["dkron", "raft", "remove-peer", f"--peer-id={node}"]
                )
            finally:
                client.close()
            if result.exit_code != 0:
                raise RuntimeError(
                    f"removing node {node!r}: `dkron raft remove-peer` on {leader} failed: "
                    + result.output.decode(errors="replace").strip()[:300]
                )
            how = "raft peer removed"
        view = wait_until_healthy(
            api_urls=api_urls,
            containers=containers,
            expected=props["expected"],
            timeout_s=float(props["timeout_s"]),
            what=f"after removing node {node!r}",
        )
        if node in (view.raft_peers or {}):
            raise RuntimeError(f"removing node {node!r}: it is still a Raft peer")
        return CreateResult(id_=f"removed-{node}", outs={**props, "how": how})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[], stables=[], delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class NodeRemoval(pulumi.dynamic.Resource, module="membership", name="NodeRemoval"):
    """One node leaving the cluster for good (see the module docstring)."""

    how: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        node: str,
        container: str,
        api_urls: dict[str, str],
        containers: dict[str, str],
        expected: list[str],
        stop_timeout_s: int,
        timeout_s: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NodeRemovalProvider(),
            resource_name,
            {
                "node": node,
                "container": container,
                "api_urls": api_urls,
                "containers": containers,
                "expected": expected,
                "stop_timeout_s": stop_timeout_s,
                "timeout_s": timeout_s,
                "how": None,
            },
            opts,
        )
