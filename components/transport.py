"""Moving a cluster between transports: one short full restart.

A node with the stack's TLS and one without cannot talk gRPC or Raft to each
other, so the move cannot roll node by node: half way, neither half would
have a quorum it could reach. Instead, the update's first step stops every
node at once, without a graceful leave (a leave would take the node out of
Raft's configuration, which the restarted cluster needs whole), and keeps
Docker from restarting them; then every node starts again, one after
another, with its data and the new transport, and the cluster elects a
leader as soon as a majority is back. Jobs due in between are served by the
catch-up watcher once a leader is elected (README, "Mutual TLS").

The same step moves a cluster whose RPC port already has mutual TLS to the
HTTPS API that wants the stack's token (`node_config.transport`): rolling,
the program and its steps would have to know, call by call, which nodes of a
half-rolled cluster speak which.

`TransportStep` is declared on every stack. It does its work when it is
created or replaced (its `transport` changed); otherwise its diff is empty,
so an update that changes nothing shows nothing for it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import docker
import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

from components.docker_objects.client import engine, split_locator
from components.docker_objects.errors import DockerResourceError
from components.node_config import PLAIN, RPC_TLS, transport

# How long the step waits for a killed container to be seen stopped.
STOP_WAIT_S = 30.0


def transport_moves(wanted: str, previous_nodes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The recorded nodes whose transport is not the one the config wants (sorted)."""
    return sorted(n for n, record in previous_nodes.items() if transport(record) != wanted)


def step_transport(props: Mapping[str, Any]) -> str:
    """The transport a step's state names (states written before the HTTPS API hold a
    `mutual_tls` flag: true was mutual TLS on the RPC port alone)."""
    if "transport" in props:
        return str(props["transport"])
    return RPC_TLS if props.get("mutual_tls") else PLAIN


def stop_without_leaving(locator: str) -> bool:
    """Kill a node's container (no graceful leave) and keep Docker from
    restarting it; False when there is no such container (or engine)."""
    where, name = split_locator(locator)
    try:
        with engine(where, timeout_s=20) as client:
            container = client.containers.get(name)
            container.update(restart_policy={"Name": "no"})
            with contextlib.suppress(docker.errors.APIError):  # already stopped
                container.kill()
            deadline = time.monotonic() + STOP_WAIT_S
            while container.status == "running":
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"container {locator} still runs {STOP_WAIT_S:.0f}s after it was killed"
                    )
                time.sleep(0.25)
                container.reload()
    except (docker.errors.APIError, requests.RequestException, DockerResourceError):
        return False  # gone already, or its engine with it: nothing to stop
    return True


class TransportStepProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        stopped = [node for node, locator in sorted(props["stop"].items()) if stop_without_leaving(locator)]
        return CreateResult(id_="transport", outs={**props, "stopped": stopped})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        moved = step_transport(olds) != step_transport(news)
        return DiffResult(
            changes=moved,
            replaces=["transport"] if moved else [],
            stables=[],
            delete_before_replace=False,
        )


class TransportStep(pulumi.dynamic.Resource, module="rollout", name="TransportStep"):
    """Stops every node of `stop` at once when the cluster changes transport."""

    stopped: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        transport: str,
        stop: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            TransportStepProvider(),
            resource_name,
            {"transport": transport, "stop": dict(stop), "stopped": None},
            opts,
        )
