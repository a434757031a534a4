"""Rolling replacement: one node at a time, the Raft leader last.

Pulumi replaces independent containers in parallel, which would take the
whole cluster down. The cluster component instead chains the nodes with
`depends_on`: container -> gate -> next container -> gate ... A gate is a
dynamic resource whose create/update blocks until the cluster is whole again
(see `components.health`), so the next container is not even registered, and
so not stopped, before the one before it is back. A gate failure stops the
update there, leaving every later node untouched.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.api_access import authorize_props
from components.health import restart_container, summary, wait_until_healthy
from components.spec import ClusterSpec
from components.spec import version_key as _version

# Dkron releases whose agents cannot run side by side with the previous ones
# (4.0.9 renamed its gRPC service, so a 4.0.8 and a 4.0.9 node cannot talk).
INCOMPATIBLE_BOUNDARIES: tuple[tuple[str, str], ...] = (("4.0.8", "4.0.9"),)


def rollout_order(nodes: Sequence[str], leader: str | None, down: Collection[str] = ()) -> list[str]:
    """Nodes that are down (or new) first, then the other followers, the leader last.

    Bringing a down node back before stopping a live one keeps the quorum:
    stopping a live follower while another node is down could leave too few.
    """
    first = [n for n in nodes if n in down and n != leader]
    followers = [n for n in nodes if n not in down and n != leader]
    return first + followers + ([leader] if leader is not None and leader in nodes else [])


class IncompatibleVersionChange(ValueError):
    """A version change the user has not allowed would split the cluster."""


def incompatible_change(old: str | None, new: str) -> tuple[str, str] | None:
    """The upstream boundary a change from `old` to `new` crosses, if any."""
    if not old or old == new:
        return None
    low, high = sorted((_version(old), _version(new)))
    for before, after in INCOMPATIBLE_BOUNDARIES:
        if low <= _version(before) and _version(after) <= high:
            return before, after
    return None


def check_version_change(stack: str, spec: ClusterSpec, old: str | None) -> None:
    """Refuse, unless allowed, a version change agents cannot roll through."""
    new = spec.image.dkron_version
    boundary = incompatible_change(old, new)
    if boundary is None or spec.rollout.allow_incompatible_version_change:
        return
    raise IncompatibleVersionChange(
        f"stack '{stack}': cluster.image.dkron_version = '{new}': the cluster runs {old}, and "  # noqa: S608
        f"{boundary[0]} and {boundary[1]} agents cannot talk to each other (the gRPC service "
        "was renamed), so a rolling update would leave old and new nodes unable to form a "
        "quorum. Set cluster.rollout.allow_incompatible_version_change: true to accept a "
        "rollout during which the cluster may have no leader."
    )


class NodeGateProvider(ResourceProvider):
    """Blocks until the cluster is whole after `node`'s container (re)started."""

    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        authorize_props(props)

        def nudge(_view: Any) -> None:
            # Dkron only tries to bootstrap when a member-join event arrives;
            # servers that all met before their event loops started wait
            # forever. Restarting one makes the others see it join again.
            # Called only when every node sees the others and none has a
            # leader, so it never fires on a cluster that works.
            restart_container(props["containers"][props["node"]])

        view = wait_until_healthy(
            api_urls=props["api_urls"],
            containers=props["containers"],
            expected=props["expected"],
            timeout_s=float(props["timeout_s"]),
            what=f"after starting node {props['node']!r}",
            on_stall=nudge if props.get("nudge") else None,
        )
        return {**props, "observed": summary(view)}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"gate-{props['node']}", outs=self._wait(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._wait(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # The gate re-checks when its node's container is new; it is never
        # replaced, so it never cascades a replacement. A membership change
        # alone restarts nothing here (new nodes' own gates wait for the whole
        # cluster), so it is no change: a preview shows no gate for it.
        watched = ("node", "container_id")
        changes = [key for key in watched if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changes), replaces=[], stables=["node"], delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class NodeGate(pulumi.dynamic.Resource, module="rollout", name="NodeGate"):
    """Waits, after its node's container starts, until the cluster is whole."""

    observed: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        resource_name: str,
        node: str,
        container_id: pulumi.Input[str],
        api_urls: dict[str, str],
        containers: dict[str, str],
        expected: list[str],
        timeout_s: int,
        nudge: bool = False,
        api_auth: pulumi.Input[Mapping[str, str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NodeGateProvider(),
            resource_name,
            {
                "api_auth": api_auth,
                "node": node,
                "container_id": container_id,
                "api_urls": api_urls,
                "containers": containers,
                "expected": expected,
                "timeout_s": timeout_s,
                "nudge": nudge,
                "observed": None,
            },
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["api_auth"])
            ),
        )
