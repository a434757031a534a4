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

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

from components.api_access import authorize_props
from components.dkron_client import MEMBER_ALIVE, DkronClient, DkronError
from components.docker_objects.client import engine, split_locator
from components.health import observe, raft_peers, wait_until_healthy
from components.node_config import dkron_cli


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


# How long a by-hand peer removal waits for Serf to stop seeing the node alive.
# Serf marks a dead member failed after its suspicion timeout (about 10 s for
# a few nodes, seen here); until then the leader's reconcile adds the peer back.
SERF_DEATH_WAIT_S = 30.0


class StrayVoter(RuntimeError):
    """A Raft voter that is not in the config is alive: it cannot be removed safely."""


def _wait_peer_gone(node: str, containers: Mapping[str, str], leader: str | None, timeout_s: float) -> bool:
    """Wait until Raft's configuration no longer holds `node`. Read on the leader,
    or, while the leader is itself a node on its way out (it leaves last, so it
    is not among `containers`), on a configured node: its replica follows."""
    if not leader:
        return False
    ask = containers.get(leader) or next(iter(containers.values()))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a node that just left may not answer yet
            if node not in raft_peers(ask):
                return True
        time.sleep(1)
    return False


def alive_in_serf(api_urls: Mapping[str, str], node: str) -> list[str]:
    """The answering nodes whose Serf still holds `node` alive.

    Dkron's leader re-adds every alive Serf server as a Raft voter on each
    reconcile (every 60 s, and on member events), so a peer removed while any
    of them still sees the member alive can come back.
    """
    seeing: list[str] = []
    for name, url in api_urls.items():
        if name == node:
            continue
        try:
            with DkronClient(url, timeout_s=3) as client:
                members = client.members()
        except (requests.RequestException, DkronError, ValueError):
            continue
        if any(m.get("Name") == node and m.get("Status") == MEMBER_ALIVE for m in members):
            seeing.append(name)
    return seeing


def wait_until_not_alive(api_urls: Mapping[str, str], node: str, timeout_s: float) -> list[str]:
    """Wait until no answering node's Serf holds `node` alive; return who still does."""
    deadline = time.monotonic() + timeout_s
    while True:
        seeing = alive_in_serf(api_urls, node)
        if not seeing or time.monotonic() >= deadline:
            return seeing
        time.sleep(1)


def remove_raft_peer(leader_container: str, node: str, what: str) -> None:
    """`dkron raft remove-peer` on the leader (its container locator)."""
    where, name = split_locator(leader_container)
    with engine(where, timeout_s=20) as client:
        result = client.containers.get(name).exec_run(dkron_cli("raft", "remove-peer", f"--peer-id={node}"))
    if result.exit_code != 0:
        raise RuntimeError(
            f"{what}: `dkron raft remove-peer --peer-id={node}` in {leader_container} failed: "
            + result.output.decode(errors="replace").strip()[:300]
        )


def remove_dead_peer(
    api_urls: Mapping[str, str], containers: Mapping[str, str], node: str, what: str
) -> None:
    """Remove a dead node's Raft peer so that it stays removed.

    The removal waits until Serf no longer sees the member alive (else the
    leader's next reconcile adds it back), and refuses while it does.
    """
    seeing = wait_until_not_alive(api_urls, node, SERF_DEATH_WAIT_S)
    if seeing:
        raise StrayVoter(
            f"{what}: node {node!r} is still alive in Serf as seen by {', '.join(seeing)} after "
            f"{SERF_DEATH_WAIT_S:.0f}s, so Dkron would add its Raft peer back. Stop whatever runs as "
            f"{node!r} (or put it back in the stack config), then run `pulumi up` again."
        )
    _remove_on_leader(api_urls, containers, node, what)


# How long a peer removal keeps trying through an election: a node that loses
# the leadership between being read as leader and being asked refuses it, and
# the remaining nodes may be electing when a leaving leader has just gone.
LEADER_WAIT_S = 30.0


def _remove_on_leader(
    api_urls: Mapping[str, str],
    containers: Mapping[str, str],
    node: str,
    what: str,
    timeout_s: float = LEADER_WAIT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        leader = observe(api_urls).leader
        try:
            if leader is None:
                raise RuntimeError(f"{what}: the remaining nodes have no leader after {timeout_s:.0f}s")
            remove_raft_peer(containers[leader], node, what)
            return
        except Exception:
            if leader is not None and _peer_gone(containers[leader], node):
                return  # removed by the attempt that failed to answer, or by the node's own leave
            if time.monotonic() >= deadline:
                raise
        time.sleep(1)


def _peer_gone(container: str, node: str) -> bool:
    try:
        return node not in raft_peers(container)
    except Exception:  # noqa: BLE001 - unknown: try the removal again
        return False


def stray_voters(voters: Sequence[str], configured: Sequence[str]) -> list[str]:
    """Raft voters that are not nodes of the config."""
    return sorted(set(voters) - set(configured))


def remove_stray_voters(
    api_urls: Mapping[str, str], containers: Mapping[str, str], voters: Sequence[str]
) -> list[str]:
    """End of update: make Raft's voters the config's nodes (like Consul's
    autopilot dead-server clean-up). A voter outside the config that no node's
    Serf sees alive is removed; removing a dead voter takes no vote away from
    the quorum, it only lowers the count the quorum is a majority of. One that
    is alive fails the update: it is some agent we do not manage (or one whose
    container a failed update left running), and removing it by hand would not
    last. Returns the removed voters."""
    stray = stray_voters(voters, list(api_urls))
    # A node that just died is still alive in Serf for a few seconds.
    seen = {node: wait_until_not_alive(api_urls, node, SERF_DEATH_WAIT_S) for node in stray}
    alive = {node: who for node, who in seen.items() if who}
    if alive:
        raise StrayVoter(
            "at the end of the update: Raft voters not in the stack config are alive: "
            + "; ".join(f"{node!r} (seen alive by {', '.join(who)})" for node, who in sorted(alive.items()))
            + ". Each holds a vote the config does not know about. Stop them (or add them to "
            "cluster.nodes), then run `pulumi up` again: dead voters outside the config are removed."
        )
    for node in stray:  # every one seen dead just above: no second wait
        _remove_on_leader(api_urls, containers, node, f"removing stray voter {node!r}")
    return stray


class NodeRemovalProvider(ResourceProvider):
    """Takes one node out: graceful leave, then its Raft peer removed for sure."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        authorize_props(props)
        node, api_urls, containers = props["node"], props["api_urls"], props["containers"]
        was_running = False
        where, name = split_locator(props["container"])
        try:
            with engine(where) as client:
                container = client.containers.get(name)
                was_running = container.status == "running"
                # `docker stop`: SIGTERM makes the agent leave gracefully, and a
                # stopped container is not restarted by its restart policy.
                container.stop(timeout=int(props["stop_timeout_s"]))
        except Exception:  # noqa: BLE001, S110 - a missing container (or host) is a dead node: handled below
            pass

        leader = observe(api_urls).leader
        how = "left gracefully"
        if not (was_running and _wait_peer_gone(node, containers, leader, timeout_s=20)):
            # Dead, or a leave Dkron did not turn into a peer removal in time.
            remove_dead_peer(api_urls, containers, node, f"removing node {node!r}")
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
        api_auth: pulumi.Input[Mapping[str, str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NodeRemovalProvider(),
            resource_name,
            {
                "api_auth": api_auth,
                "node": node,
                "container": container,
                "api_urls": api_urls,
                "containers": containers,
                "expected": expected,
                "stop_timeout_s": stop_timeout_s,
                "timeout_s": timeout_s,
                "how": None,
            },
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["api_auth"])
            ),
        )
