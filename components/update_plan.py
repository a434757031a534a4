"""What an update does, planned before a single resource is declared.

Pure: a function of the spec, what the stack recorded at its last update, the
cluster network's subnet and what was seen live when the update began (a
`components.health.LiveView`). Nothing here talks to a node or to Docker;
`DkronCluster` declares its resources from the `UpdatePlan` made here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.addressing import assign_addresses, network_layout
from components.change_summary import ClusterChange
from components.docker_objects.client import locator
from components.health import LiveView
from components.membership import removal_order, removed_nodes
from components.node_config import BootstrapPlan, HostNetwork, node_settings, secured, wanted_transport
from components.placement import NodePlacement
from components.ports import assign_api_ports
from components.privilege import node_privileges
from components.rollout import rollout_order
from components.spec import ClusterSpec
from components.transport import transport_moves

LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - a published API; the README says what that exposes


def api_url(
    spec: ClusterSpec, port: int, placement: NodePlacement | None = None, https: bool | None = None
) -> str:
    """Where this machine reaches a node's API: over HTTPS when the stack has mutual TLS
    (``https`` says otherwise for a node as it runs before an update moves it).

    On one engine: the published port (on loopback when published everywhere).
    On a host: the host's address when the API is published there; else its
    loopback, which an `ssh://` host's URL reaches through an SSH tunnel on the
    same port of this machine's loopback. The URL names the tunnel after a `#`
    (`components.tunnels.reach`: whoever calls the API opens it), and a
    `unix://` engine's loopback is this machine's own.
    """
    host = spec.ports.bind_address
    scheme = "https" if (spec.security.mutual_tls if https is None else https) else "http"
    if host == EVERY_INTERFACE:
        return f"{scheme}://{LOOPBACK if placement is None else placement.address}:{port}"
    if placement is not None and placement.engine.startswith("ssh://"):
        return f"{scheme}://{LOOPBACK}:{port}#{placement.engine}"
    return f"{scheme}://{host}:{port}"


def node_api_urls(
    spec: ClusterSpec, ports: Mapping[str, int], placements: Mapping[str, NodePlacement] | None = None
) -> dict[str, str]:
    """Each configured node's API URL, from its published port (`assign_api_ports`)."""
    placed = placements or {}
    return {n.name: api_url(spec, ports[n.name], placed.get(n.name)) for n in spec.nodes}


def host_networks(
    spec: ClusterSpec, ports: Mapping[str, int], placements: Mapping[str, NodePlacement]
) -> dict[str, HostNetwork]:
    """Where each node listens on its host (several hosts; {} on one engine)."""
    http_ip = EVERY_INTERFACE if spec.ports.bind_address == EVERY_INTERFACE else LOOPBACK
    return {
        name: HostNetwork(
            address=p.address,
            serf_port=p.serf_port,
            rpc_port=p.rpc_port,
            api_port=ports[name],
            http_ip=http_ip,
        )
        for name, p in placements.items()
    }


def serf_endpoints(placements: Mapping[str, NodePlacement]) -> dict[str, str]:
    """Each placed node's Serf address, which the others join through."""
    return {name: f"{p.address}:{p.serf_port}" for name, p in placements.items()}


def observation_targets(
    spec: ClusterSpec,
    previous_nodes: Mapping[str, Any],
    placements: Mapping[str, NodePlacement] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Whom to ask before planning: the configured nodes' API URLs (as each node runs
    now: a node an update moves to HTTPS still serves plain HTTP), and those the last
    update recorded for the nodes gone from the config."""
    ports = assign_api_ports(spec, previous_nodes)
    placed = placements or {}
    api_urls = {
        n.name: api_url(
            spec,
            ports[n.name],
            placed.get(n.name),
            secured(previous_nodes[n.name]) if n.name in previous_nodes else None,
        )
        for n in spec.nodes
    }
    removed = removed_nodes(previous_nodes, list(api_urls))
    return api_urls, {n: str(previous_nodes[n]["api_url"]) for n in removed}


class HostsChange(ValueError):
    """A deployed stack asked to move between one engine and several hosts."""


def check_hosts_change(stack: str, spec: ClusterSpec, previous_nodes: Mapping[str, Any]) -> None:
    """Refuse moving a deployed cluster between one engine and hosts in place.

    On one engine nodes talk over a Docker network that a node on another
    host cannot join, so a rolling move would split the cluster half way.
    """
    if not previous_nodes:
        return
    had_hosts = any("host" in dict(record) for record in previous_nodes.values())
    if had_hosts == bool(spec.hosts):
        return
    if spec.hosts:
        what = "declares hosts, but the cluster runs on one Docker engine"
    else:
        what = "declares no hosts, but the cluster runs on hosts"
    raise HostsChange(
        f"stack '{stack}': cluster.hosts: the config {what}. Nodes on one engine talk over its Docker"
        " network and nodes on hosts over the hosts' addresses, so the cluster cannot move between"
        " them one node at a time. Deploy the new layout as a new stack (or `make destroy` this one"
        " first: that loses its jobs unless they are in the config)."
    )


def recorded_container(record: Mapping[str, Any]) -> str:
    """A node's container as its record names it: on a host, with the host's engine."""
    return locator(str(record["container"]), record.get("engine") or None)


def gate_expectation(order: Sequence[str], position: int, alive_now: set[str], rolling: bool) -> list[str]:
    """The nodes that must be whole once the node at `position` has started.

    In a rollout: every node already handled, plus the later ones that were
    alive when the update began. A later node that is down now is brought
    back by its own step; waiting for it here would wait forever.
    """
    if not rolling:
        return sorted(order)
    return sorted(n for i, n in enumerate(order) if i <= position or n in alive_now)


def start_after(order: Sequence[str], rolling: bool, forming: bool) -> dict[str, str | None]:
    """The node whose step each node's container waits for (None: it starts at once).

    Rolling: the node before it, behind that node's gate. Without a leader,
    the node before it, once that node's container runs. Forming a new
    cluster: the first node alone, then every other one together once it
    runs. Dkron bootstraps on member-join events, which a node handles only
    once its event loop runs; servers that all meet before that wait forever
    (three `docker run`s at once stall in some rounds). A running first node
    sees every later one join, the last of them with all the servers there.
    """
    if forming and not rolling:
        return {n: (order[0] if i else None) for i, n in enumerate(order)}
    return {n: (order[i - 1] if i else None) for i, n in enumerate(order)}


@dataclass(frozen=True)
class UpdatePlan:
    """Everything `DkronCluster` needs to declare an update, as plain data."""

    ports: Mapping[str, int]
    """Each configured node's published API port."""
    api_urls: Mapping[str, str]
    """Each configured node's API URL (from `ports`)."""
    containers: Mapping[str, str]
    """Each configured node's container: its name, with its host's engine on a host
    (a container locator, `components.docker_objects.client.locator`)."""
    addresses: Mapping[str, str]
    """Each configured node's fixed address on the cluster network, or its host's address."""
    network: Mapping[str, str]
    """The cluster network's subnet, gateway and range for Docker's own picks ({} on hosts)."""
    placements: Mapping[str, NodePlacement]
    """Each node's host, engine and ports (several hosts; {} on one engine)."""
    host_networks: Mapping[str, HostNetwork]
    """Where each node listens on its host (several hosts; {} on one engine)."""
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
    after: Mapping[str, str | None]
    """The node whose step each node's container waits for: its gate when
    rolling, else its container (`start_after`)."""
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
    transport_stop: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The containers (as recorded) of the nodes whose transport changes: all
    stopped at once before any node starts again (`components.transport`)."""

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
        self,
        previous_image: Mapping[str, Any],
        image: Mapping[str, Any],
        gossip_encryption: bool,
        unreachable_hosts: frozenset[str] = frozenset(),
        mutual_tls: bool = True,
    ) -> ClusterChange:
        """The inputs of the change summary a preview opens with."""
        return ClusterChange(
            previous_nodes=self.previous_nodes,
            nodes=self.nodes,
            previous_image=previous_image,
            image=image,
            order=list(self.order),
            # Not rolling: nobody goes last, every node starts at once.
            leader=self.leader if self.rolling else None,
            down=self.down,
            removed=list(self.removed),
            dead=frozenset(self.dead),
            gossip_encryption=gossip_encryption,
            unreachable_hosts=unreachable_hosts,
            transport_moves=tuple(self.transport_stop),
            mutual_tls=mutual_tls,
        )


def plan_update(
    spec: ClusterSpec,
    bootstrap: BootstrapPlan,
    previous_nodes: Mapping[str, Any],
    previous_removed: Mapping[str, Any],
    subnet: ipaddress.IPv4Network | None,
    live: LiveView,
    placements: Mapping[str, NodePlacement] | None = None,
) -> UpdatePlan:
    """Plan an update of the cluster from plain data; see `UpdatePlan`.

    On one engine `subnet` is the cluster network's; with `placements` (every
    node on a host) there is no cluster network and `subnet` is None.
    """
    placed = dict(placements or {})
    ports = assign_api_ports(spec, previous_nodes)
    api_urls = node_api_urls(spec, ports, placed)
    configured = sorted(api_urls)

    # With a live leader, replace nodes one at a time, the leader last.
    # Without one (a new stack, or every node down) there is no quorum to
    # protect, and waiting for health node by node would wait forever:
    # start them all, one after another, then wait for the whole cluster.
    # Moving between plain RPC and mutual TLS cannot roll (`components.transport`):
    # every node of the old transport stops at once, then all start as above.
    moving = transport_moves(wanted_transport(spec), previous_nodes)
    rolling = live.leader is not None and not moving
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
    # On hosts a node's address is its host's, and it listens on its own ports there.
    networks = host_networks(spec, ports, placed)
    if placed:
        addresses = {n: p.address for n, p in placed.items()}
    else:
        if subnet is None:
            raise ValueError("one engine: the cluster network's subnet is needed")
        addresses = assign_addresses(spec, subnet, previous_nodes)
    nodes: dict[str, dict[str, Any]] = {}
    for node in spec.nodes:
        record: dict[str, Any] = {
            "container": spec.container_name(node),
            "api_url": api_urls[node.name],
            "address": addresses[node.name],
            "tags": dict(node.tags),
            "config": node_settings(spec, node, bootstrap, networks.get(node.name)),
            "user": node_privileges(spec, node).runs_as,
        }
        if node.name in placed:
            where = placed[node.name]
            record.update(
                host=where.host, engine=where.engine, serf_port=where.serf_port, rpc_port=where.rpc_port
            )
        nodes[node.name] = record
    return UpdatePlan(
        ports=ports,
        api_urls=api_urls,
        containers={name: recorded_container(record) for name, record in nodes.items()},
        addresses=addresses,
        network=network_layout(subnet) if subnet is not None and not placed else {},
        placements=placed,
        host_networks=networks,
        leader=live.leader,
        rolling=rolling,
        alive=frozenset(alive),
        down=frozenset(live.down),
        order=tuple(order),
        after=start_after(order, rolling, forming=bootstrap.state == "new"),
        expected=expected,
        # The last of those that formed the cluster: the same for the stack's
        # life, so a gate's `nudge` never shows as a change.
        nudge=bootstrap.members[-1],
        removed=tuple(removed),
        dead=tuple(dead),
        removed_containers={n: recorded_container(previous_nodes[n]) for n in removed},
        earlier=earlier,
        removal_expected=removal_expected,
        nodes=nodes,
        previous_nodes=previous_nodes,
        transport_stop={n: recorded_container(previous_nodes[n]) for n in moving},
    )
