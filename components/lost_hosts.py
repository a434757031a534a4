"""Hosts whose Docker engine does not answer, and what an update does about them.

A host that is down or cut off must not stop the loop. The providers keep what
the state records for objects on it when refreshing, and drop them from the
state without deleting them when the update removes them
(`docker_objects.provider`). This module finds such hosts before the update and
says, one line per host, which nodes are there and what becomes of them, and
how to clean the machine if it ever comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from components import naming
from components.docker_objects import engine
from components.docker_objects.engine_ref import parse_engine_ref
from components.docker_objects.errors import EngineUnreachable

PROBE_TIMEOUT_S = 10


@dataclass(frozen=True)
class HostRecord:
    """A host as the last update recorded it: its engine, address and nodes."""

    engine: str
    address: str
    nodes: tuple[str, ...]


def recorded_hosts(previous_nodes: Mapping[str, Any]) -> dict[str, HostRecord]:
    """The hosts the last update put nodes on, from its `nodes` output."""
    found: dict[str, dict[str, Any]] = {}
    for node, record in sorted(previous_nodes.items()):
        host = record.get("host")
        if host and record.get("engine"):
            entry = found.setdefault(
                host, {"engine": record["engine"], "address": record.get("address", ""), "nodes": []}
            )
            entry["nodes"].append(node)
    return {h: HostRecord(e["engine"], e["address"], tuple(e["nodes"])) for h, e in found.items()}


def _why_unreachable(ref: str) -> str | None:
    try:
        with engine(ref, timeout_s=PROBE_TIMEOUT_S) as client:
            client.ping()
    except EngineUnreachable as err:
        return str(err).split(": ", 1)[-1]
    return None


def unreachable(hosts: Mapping[str, HostRecord]) -> dict[str, str]:
    """Of `hosts`, those whose engine does not answer, each with what the attempt said.
    An engine that answers with an error is not unreachable: the update reports that itself."""
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        answers = dict(
            zip(hosts, pool.map(_why_unreachable, (h.engine for h in hosts.values())), strict=True)
        )
    return {host: why for host, why in answers.items() if why is not None}


def docker_command(ref: str) -> str:
    """How a person reaches engine `ref` with the docker CLI."""
    parsed = parse_engine_ref(ref)
    if parsed is None:
        return "docker"
    if parsed.scheme == "ssh":
        return f"docker -H {ref.split('?', 1)[0]}"
    return f"docker -H {parsed.base_url}"


def host_lines(
    cluster: str,
    hosts: Mapping[str, HostRecord],
    unreachable_hosts: Mapping[str, str],
    declared_hosts: Mapping[str, Any],
    placement: Mapping[str, str],
) -> list[str]:
    """One line per unreachable host: which nodes, what the update does with them, and for a
    host removed from the config, the command that cleans the machine if it comes back.

    `placement` is each configured node's host in the new config.
    """
    lines = []
    for host, why in sorted(unreachable_hosts.items()):
        record = hosts[host]
        staying = [n for n in record.nodes if placement.get(n) == host]
        leaving = [n for n in record.nodes if placement.get(n) != host]
        where = f"host {host} ({record.address or record.engine})"
        fate = []
        if staying:
            fate.append(f"{', '.join(staying)} kept as recorded, changed once {host} answers again")
        for node in leaving:
            to = f"created on {placement[node]}" if node in placement else "removed from the cluster"
            fate.append(f"{node} {to}")
        said = f"{where} does not answer ({why}): " + "; ".join(fate)
        if leaving:
            objects = [naming.container_name(cluster, n) for n in leaving]
            volumes = [naming.volume_name(cluster, n) for n in leaving]
            docker = docker_command(record.engine)
            said += (
                f". Their containers ({', '.join(objects)}) and volumes ({', '.join(volumes)}) on {host} are"
                " dropped from the state, not deleted"
            )
            if host not in declared_hosts:
                said += (
                    f"; if {host} ever comes back, clean it: {docker} rm -f"
                    f" {' '.join(objects)} && {docker} volume rm {' '.join(volumes)}"
                )
        lines.append(said)
    return lines
