"""Host ports for each node's API, stable across membership changes.

A node keeps the port it was given: its own `api_port` if set, else the port
it had after the last update (from the stack's `nodes` output), else the
first free port from `api_port_base`. Deriving ports from list positions
alone would move every later node's port when a node is removed, and so
restart them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from components.spec import ClusterSpec


def _previous_port(info: Any) -> int | None:
    try:
        return urlsplit(str(info["api_url"])).port
    except (KeyError, TypeError, ValueError):
        return None


def assign_api_ports(spec: ClusterSpec, previous_nodes: Mapping[str, Any] | None) -> dict[str, int]:
    ports = {n.name: n.api_port for n in spec.nodes if n.api_port is not None}
    used = set(ports.values())
    for node in spec.nodes:
        if node.name in ports:
            continue
        port = _previous_port((previous_nodes or {}).get(node.name))
        if port is not None and port not in used:
            ports[node.name] = port
            used.add(port)
    next_port = spec.ports.api_port_base
    for node in spec.nodes:
        if node.name in ports:
            continue
        while next_port in used:
            next_port += 1
        ports[node.name] = next_port
        used.add(next_port)
    return {n.name: ports[n.name] for n in spec.nodes}
