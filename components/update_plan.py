"""What an update does, planned before a single resource is declared.

Pure: a function of the spec, what the stack recorded at its last update, the
cluster network's subnet and what was seen live when the update began (a
`components.health.LiveView`). Nothing here talks to a node or to Docker;
`DkronCluster` declares its resources from the `UpdatePlan` made here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.addressing import assign_addresses, network_layout
from components.change_summary import ClusterChange
from components.health import LiveView
from components.membership import removal_order, removed_nodes
from components.node_config import BootstrapPlan, node_settings
from components.ports import assign_api_ports
from components.rollout import rollout_order
from components.spec import ClusterSpec


def api_url(spec: ClusterSpec, port: int) -> str:
    host = spec.ports.bind_address
    if host == "0.0.0.0":  # noqa: S104 - published on every interface; reach it via loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def node_api_urls(spec: ClusterSpec, ports: Mapping[str, int]) -> dict[str, str]:
    """Each configured node's API URL, from its published port (`assign_api_ports`)."""
    return {n.name: api_url(spec, ports[n.name]) for n in spec.nodes}


def observation_targets(
    spec: ClusterSpec, previous_nodes: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Whom to ask before planning: the configured nodes' API URLs, and those
    the last update recorded for the nodes gone from the config."""
    api_urls = node_api_urls(spec, assign_api_ports(spec, previous_nodes))
    removed = removed_nodes(previous_nodes, list(api_urls))
    return api_urls, {n: str(previous_nodes[n]["api_url"]) for n in removed}


def gate_expectation(order: Sequence[str], position: int, alive_now: set[str], rolling: bool) -> list[str]:
    """The nodes that must be whole once the node at `position` has started.

    In a rollout: every node already handled, plus the later ones that were
    alive when the update began. A later node that is down now is brought
    back by its own step; waiting for it here would wait forever.
    """
    if not rolling:
        return sorted(order)
    return sorted(n for i, n in enumerate(order) if i <= position or n in alive_now)


@dataclass(frozen=True)
class UpdatePlan:
    """Everything `DkronCluster` needs to declare an update, as plain data."""

    ports: Mapping[str, int]
    """Each configured node's published API port."""
    api_urls: Mapping[str, str]
    """Each configured node's API URL (from `ports`)."""
    containers: Mapping[str, str]
    """Each configured node's container name."""
    addresses: Mapping[str, str]
    """Each configured node's fixed address on the cluster network."""
    network: Mapping[str, str]
    """The cluster network's subnet, gateway and range for Docker's own picks."""
    leader: str | None
    """The leader when the update began (None: nobody leads)."""
    rolling: bool
    """Replace nodes one at a time behind gates (a leader answers), or start them all."""
    alive: frozenset[str]
    """Configured nodes that answered with a leader when the update began."""
    down: frozenset[str]
    """Configured nodes whose API did not answer."""
    order: tuple[str, ...]
    """The order nodes are declared and replaced in: down ones first, the leader last."""
    expected: Mapping[str, tuple[str, ...]]
    """What each node's gate waits to see whole once that node has started."""
    nudge: str
    """The node whose gate may restart it to kick a stalled bootstrap."""
    removed: tuple[str, ...]
    """Nodes gone from the config since the last update, in removal order (leader last)."""
    dead: tuple[str, ...]
    """Of `removed`, those whose API did not answer (only known when rolling): their
    Raft peer goes before anything else changes."""
    removed_containers: Mapping[str, str]
    """The container of each node in `removed`, as the last update recorded it."""
    earlier: Mapping[str, Mapping[str, Any]]
    """Removals of earlier updates still out of the config: their steps stay declared."""
    removal_expected: Mapping[str, tuple[str, ...]]
    """What each removal step (dead, live and earlier ones) expects whole."""
    nodes: Mapping[str, Mapping[str, Any]]
    """What each node is deployed with: the stack's `nodes` output."""
    previous_nodes: Mapping[str, Mapping[str, Any]]
    """The stack's `nodes` output of its last update (for the change summary)."""

    @property
    def live_removed(self) -> tuple[str, ...]:
        """Removed nodes that still answer: they leave once the new config is whole."""
        return tuple(n for n in self.removed if n not in self.dead)

    @property
    def removed_record(self) -> dict[str, Any]:
        """The stack's `removed` output: earlier removals and this update's."""
        return {
            **{n: dict(r) for n, r in self.earlier.items()},
            **{n: {"container": self.removed_containers[n]} for n in self.removed},
        }

    def change(
        self, previous_image: Mapping[str, Any], image: Mapping[str, Any], gossip_encryption: bool
    ) -> ClusterChange:
        """The inputs of the change summary a preview opens with."""
        return ClusterChange(
            previous_nodes=self.previous_nodes,
            nodes=self.nodes,
            previous_image=previous_image,
            image=image,
            order=list(self.order),
            leader=self.leader,
            down=self.down,
            removed=list(self.removed),
            dead=frozenset(self.dead),
            gossip_encryption=gossip_encryption,
        )


def plan_update(
    spec: ClusterSpec,
    bootstrap: BootstrapPlan,
    previous_nodes: Mapping[str, Any],
    previous_removed: Mapping[str, Any],
    subnet: ipaddress.IPv4Network,
    live: LiveView,
) -> UpdatePlan:
    """Plan an update of the cluster from plain data; see `UpdatePlan`."""
    ports = assign_api_ports(spec, previous_nodes)
    api_urls = node_api_urls(spec, ports)
    configured = sorted(api_urls)

    # With a live leader, replace nodes one at a time, the leader last.
    # Without one (a new stack, or every node down) there is no quorum to
    # protect, and waiting for health node by node would wait forever:
    # start them all, one after another, then wait for the whole cluster.
    rolling = live.leader is not None
    order = rollout_order([n.name for n in spec.nodes], live.leader, live.down)
    alive = set(live.alive)
    expected = {n: tuple(gate_expectation(order, i, alive, rolling)) for i, n in enumerate(order)}

    # Nodes gone from the config. Dead ones lose their Raft peer before
    # anything else changes: their addresses may be handed to new
    # containers, where Raft would keep calling them. Live ones leave
    # gracefully once the new config is whole, the leader last.
    removed = removal_order(removed_nodes(previous_nodes, list(api_urls)), live.leader)
    dead = [n for n in removed if rolling and n in live.dead_removed]
    # Removal steps of earlier updates stay declared while their node stays
    # out of the config: their diff is always empty, so a preview lists
    # nothing for them, where dropping them would show as a deletion.
    earlier = {n: r for n, r in previous_removed.items() if n not in api_urls and n not in removed}
    removal_expected = {
        **{n: tuple(configured) for n in earlier},
        **{n: tuple(configured) for n in removed},
        **{n: tuple(sorted(alive)) for n in dead},
    }

    # Fixed addresses: Raft knows servers by address, and Docker's own
    # picks depend on start order (an engine restart can swap them).
    addresses = assign_addresses(spec, subnet, previous_nodes)
    nodes = {
        node.name: {
            "container": spec.container_name(node),
            "api_url": api_urls[node.name],
            "address": addresses[node.name],
            "tags": dict(node.tags),
            "config": node_settings(spec, node, bootstrap),
        }
        for node in spec.nodes
    }
    return UpdatePlan(
        ports=ports,
        api_urls=api_urls,
        containers={n.name: spec.container_name(n) for n in spec.nodes},
        addresses=addresses,
        network=network_layout(subnet),
        leader=live.leader,
        rolling=rolling,
        alive=frozenset(alive),
        down=frozenset(live.down),
        order=tuple(order),
        expected=expected,
        # The last of those that formed the cluster: the same for the stack's
        # life, so a gate's `nudge` never shows as a change.
        nudge=bootstrap.members[-1],
        removed=tuple(removed),
        dead=tuple(dead),
        removed_containers={n: previous_nodes[n]["container"] for n in removed},
        earlier=earlier,
        removal_expected=removal_expected,
        nodes=nodes,
        previous_nodes=previous_nodes,
    )
