"""Where each node runs when a stack declares hosts: its host, engine and ports.

Pure: no Docker, no Pulumi. A node keeps the Serf and gRPC/Raft ports it was
given, like its API port (``components.ports``): its own ``serf_port`` /
``rpc_port`` if set, else the port it had after the last update while it stays
on the same host (from the stack's ``nodes`` output), else the first port free
on its host from 8946 (Serf) / 6868 (gRPC). Handing ports out by position alone
would move a later node's ports when an earlier one is removed, and so restart
it. A node moved to another host starts there afresh, with fresh ports.

Ports on one host are shared by every node on it (host networking): no node's
Serf or gRPC port ever equals another port in use there, API ports included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from components.config_errors import StackConfigError, in_stack
from components.ports import assign_api_ports
from components.spec import MAX_PORT, ClusterSpec, HostSpec

SERF_PORT_BASE = 8946
RPC_PORT_BASE = 6868


class PlacementError(StackConfigError):
    """The ports a stack asks for cannot be given on a host; one line per problem."""


@dataclass(frozen=True)
class NodePlacement:
    """Where one node runs: its host, that host's engine ref, the host's address and the node's ports there."""

    host: str
    engine: str
    address: str
    serf_port: int
    rpc_port: int


def _absolute(path: str, project_root: Path) -> str:
    return str((project_root / Path(path).expanduser()).resolve())


def _option(key: str, path: str, project_root: Path) -> str:
    return f"{key}={quote(_absolute(path, project_root), safe='/')}"


def engine_ref(host: HostSpec, project_root: Path) -> str:
    """The engine ref of ``host``: its ``docker`` URL with its files as absolute-path options."""
    options: list[str] = []
    if host.scheme == "ssh":
        if host.ssh_identity:
            options.append(_option("identity", host.ssh_identity, project_root))
        if host.ssh_known_hosts:
            options.append(_option("known_hosts", host.ssh_known_hosts, project_root))
    elif host.scheme == "tcp" and host.tls_dir:
        options.append(_option("tls", host.tls_dir, project_root))
    return host.docker + (f"?{'&'.join(options)}" if options else "")


def host_engines(spec: ClusterSpec, project_root: Path) -> dict[str, str]:
    """Every declared host's engine ref, by host name (empty without hosts)."""
    return {name: engine_ref(host, project_root) for name, host in spec.hosts.items()}


def _in_stack(stack: str | None, line: str) -> str:
    return line if stack is None else in_stack(stack, line)


def _previous_port(info: Any, host: str, key: str) -> int | None:
    """The port ``key`` a node had after the last update, if it was on ``host`` then."""
    try:
        if info["host"] != host:
            return None
        port = info[key]
    except (KeyError, TypeError):
        return None
    return port if isinstance(port, int) and not isinstance(port, bool) else None


def place_nodes(
    spec: ClusterSpec,
    previous_nodes: Mapping[str, Any] | None,
    project_root: Path,
    *,
    stack: str | None = None,
) -> dict[str, NodePlacement]:
    """Each node's placement, by node name, in config order (empty without hosts).

    ``previous_nodes`` is the stack's ``nodes`` output from the last update
    (per node: ``host``, ``serf_port``, ``rpc_port``, ``api_url``). An explicit
    Serf or gRPC port that is a handed-out API port on its host is a
    ``PlacementError`` (lines start "stack '<stack>': " when ``stack`` is given).
    """
    if not spec.hosts:
        return {}
    previous = previous_nodes or {}
    host_of = {node.name: str(node.host) for node in spec.nodes}
    used: dict[str, set[int]] = {name: set() for name in spec.hosts}
    api_owner: dict[tuple[str, int], str] = {}
    for name, port in assign_api_ports(spec, previous).items():
        used[host_of[name]].add(port)
        api_owner[host_of[name], port] = name
    problems: list[str] = []
    chosen: dict[tuple[str, str], int] = {}
    keys = ("serf_port", "rpc_port")
    for index, node in enumerate(spec.nodes):
        for key in keys:
            port = getattr(node, key)
            if port is None:
                continue
            owner = api_owner.get((host_of[node.name], port))
            if owner is not None:
                # Validation refused clashes between explicit ports; this one hit a handed-out API port.
                problems.append(
                    f"cluster.nodes[{index}].{key} = {port}: clashes with the API port handed to node {owner!r}"
                    f" on host {node.host!r}; choose another port, or give {owner!r} an explicit api_port"
                )
            used[host_of[node.name]].add(port)
            chosen[node.name, key] = port
    if problems:
        raise PlacementError([_in_stack(stack, problem) for problem in problems])
    for node in spec.nodes:
        host = host_of[node.name]
        for key in keys:
            kept = _previous_port(previous.get(node.name), host, key)
            if (node.name, key) not in chosen and kept is not None and kept not in used[host]:
                used[host].add(kept)
                chosen[node.name, key] = kept
    for node in spec.nodes:
        host = host_of[node.name]
        for key, base in zip(keys, (SERF_PORT_BASE, RPC_PORT_BASE), strict=True):
            if (node.name, key) in chosen:
                continue
            port = base
            while port in used[host]:
                port += 1
            if port > MAX_PORT:
                problem = f"cluster.hosts.{host}: no free {key} left on this host from {base} to {MAX_PORT}"
                raise PlacementError([_in_stack(stack, problem)])
            used[host].add(port)
            chosen[node.name, key] = port
    engines = host_engines(spec, project_root)
    return {
        node.name: NodePlacement(
            host=host_of[node.name],
            engine=engines[host_of[node.name]],
            address=spec.hosts[host_of[node.name]].address,
            serf_port=chosen[node.name, "serf_port"],
            rpc_port=chosen[node.name, "rpc_port"],
        )
        for node in spec.nodes
    }
