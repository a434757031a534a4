"""The cluster network's subnet and each node's fixed address on it.

Raft knows its servers by address. Left to Docker, a node's address depends
on the order containers start, so a restart of the engine can hand node A the
address node B had, and Dkron's leader then removes B as a stale server at
A's address. Fixed addresses rule that out: every node keeps its address
across container, engine and host restarts and across replacements.

Like API ports, a subnet and an address stay with the stack and the node:
the configured value if set, else the one recorded in the stack's outputs
at the last update, else a free one.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

from components.spec import FIRST_NODE_HOST, ClusterSpec, docker_ip_range, node_host_range

# Where the program looks for a free subnet when the stack configures none:
# inside Docker's own 172.16.0.0/12 default, above the /16s Docker hands out
# first (172.17, 172.18, ...), below 172.31 (common as a cloud VPC range).
SUBNET_POOL = ipaddress.IPv4Network("172.24.0.0/14")
SUBNET_PREFIX = 24


class AddressConflict(ValueError):
    """The cluster's subnet cannot be used or changed as configured."""


def recorded_subnet(previous_network: Any) -> str | None:
    """The subnet in the stack's `network` output from its last update."""
    if isinstance(previous_network, Mapping) and previous_network.get("subnet"):
        return str(previous_network["subnet"])
    return None


def choose_subnet(
    stack: str,
    spec: ClusterSpec,
    recorded: str | None,
    docker_subnets: Mapping[str, Iterable[str]],
    deployed: bool = False,
) -> ipaddress.IPv4Network:
    """The subnet the cluster network has (or will have).

    `docker_subnets` maps every Docker network's name to its IPv4 subnets.
    The network of this cluster is skipped when looking for overlaps, and an
    existing one with a subnet (say, from a first update that failed before
    recording its outputs) is kept. `deployed` says the stack recorded nodes
    at its last update: one that recorded no subnet with them was deployed
    before nodes had fixed addresses, and is refused.
    """
    configured = spec.network.subnet
    if recorded is None and deployed:
        raise AddressConflict(
            f"stack {stack!r}: cluster.network: the stack was deployed before nodes had fixed addresses"
            " (its outputs record no subnet). Moving to them would restart every node at a new address at"
            " once, which the Raft state on the volumes cannot follow. Destroy the stack (`make destroy`)"
            " and deploy it again: jobs in the stack config come back, jobs added through the API do not."
        )
    if recorded is not None:
        if configured is not None and ipaddress.IPv4Network(configured) != ipaddress.IPv4Network(recorded):
            raise AddressConflict(
                f"stack {stack!r}: cluster.network.subnet = {configured!r}: the cluster runs on {recorded}, and"
                " a subnet cannot change under a running cluster (Raft knows every node by its address). Set"
                f" it back to {recorded!r} or remove the setting; to move the cluster, destroy the stack and"
                " deploy it again."
            )
        return ipaddress.IPv4Network(recorded)
    others: list[tuple[str, ipaddress.IPv4Network]] = []
    for name, subnets in docker_subnets.items():
        for text in subnets:
            parsed = _ipv4_network(text)
            if parsed is not None and name != spec.network_name:
                others.append((name, parsed))
    if configured is not None:
        wanted = ipaddress.IPv4Network(configured)
        for name, other in others:
            if wanted.overlaps(other):
                raise AddressConflict(
                    f"stack {stack!r}: cluster.network.subnet = {configured!r}: overlaps Docker network"
                    f" {name!r} ({other}); choose a subnet no other Docker network uses"
                )
        return wanted
    own = [_ipv4_network(s) for s in docker_subnets.get(spec.network_name, [])]
    if own and own[0] is not None:
        return own[0]
    free = free_subnet(spec.network_name, (other for _, other in others))
    if free is None:
        raise AddressConflict(
            f"stack {stack!r}: cluster.network.subnet: no free /{SUBNET_PREFIX} left in {SUBNET_POOL} among"
            f" {len(others)} Docker network subnets; set cluster.network.subnet to a free IPv4 subnet"
        )
    return free


def free_subnet(network_name: str, taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """The first /24 of the pool that overlaps none of `taken`, or None.

    The search starts at a place derived from the network's name, so stacks
    deployed side by side (tests, say) rarely race for the same subnet.
    """
    used = list(taken)
    candidates = list(SUBNET_POOL.subnets(new_prefix=SUBNET_PREFIX))
    start = zlib.crc32(network_name.encode()) % len(candidates)
    for offset in range(len(candidates)):
        candidate = candidates[(start + offset) % len(candidates)]
        if not any(candidate.overlaps(subnet) for subnet in used):
            return candidate
    return None


def _ipv4_network(value: Any) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return None  # IPv6, or not a network at all


def network_layout(subnet: ipaddress.IPv4Network) -> dict[str, str]:
    """The network's IPAM settings: subnet, gateway, and Docker's own range."""
    return {
        "subnet": str(subnet),
        "gateway": str(subnet.network_address + 1),
        "ip_range": str(docker_ip_range(subnet)),
    }


def assign_addresses(
    spec: ClusterSpec, subnet: ipaddress.IPv4Network, previous_nodes: Mapping[str, Any] | None
) -> dict[str, str]:
    """Each node's fixed address: configured, else kept, else the next free one.

    A free address is taken from the subnet's `FIRST_NODE_HOST`th address on,
    skipping every address the last update recorded, so a new node does not
    take the address of a node removed in the same update (Raft may still
    call that one). Only when nothing else is left is such an address reused.
    """
    previous = previous_nodes or {}
    first, last = node_host_range(subnet)
    addresses = {n.name: n.ipv4_address for n in spec.nodes if n.ipv4_address is not None}
    used = set(addresses.values())
    for node in spec.nodes:
        if node.name in addresses:
            continue
        kept = _recorded_address(previous.get(node.name))
        if kept is not None and first <= kept <= last and str(kept) not in used:
            addresses[node.name] = str(kept)
            used.add(str(kept))
    recorded = {str(a) for a in map(_recorded_address, previous.values()) if a is not None}
    start = max(int(first), int(subnet.network_address) + FIRST_NODE_HOST)

    def free() -> Iterator[str]:
        for number in chain(range(start, int(last) + 1), range(int(first), start)):
            address = str(ipaddress.IPv4Address(number))
            if address not in used:
                yield address

    for node in spec.nodes:
        if node.name in addresses:
            continue
        address = next((a for a in free() if a not in recorded), None) or next(free(), None)
        if address is None:
            raise AddressConflict(
                f"cluster {spec.name!r}: no free node address left in {first} - {last}; use a larger"
                " cluster.network.subnet"
            )
        addresses[node.name] = address
        used.add(address)
    return {n.name: addresses[n.name] for n in spec.nodes}


def _recorded_address(info: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(info["address"]))
    except (KeyError, TypeError, ValueError):
        return None


def docker_network_subnets(client: Any) -> dict[str, list[str]]:
    """Every Docker network's name and IPv4 subnets, from a docker-py client."""
    found: dict[str, list[str]] = {}
    for network in client.api.networks():
        pools = (network.get("IPAM") or {}).get("Config") or []
        found[network["Name"]] = [p["Subnet"] for p in pools if p.get("Subnet") and ":" not in p["Subnet"]]
    return found
