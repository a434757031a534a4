"""What "the cluster is whole" means, and waiting for it.

A cluster is healthy when every configured node answers its API, sees itself
and every other configured node as an alive server, all of them name the same
leader, and the leader's Raft configuration holds every configured node as a
voter. Observations are plain data so the judgement can be tested without a
cluster.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from components.dkron_client import MEMBER_ALIVE, DkronClient, DkronError
from components.docker_objects.client import engine, split_locator
from components.node_config import dkron_cli
from nodeside.exporter import peer_rows


class ClusterUnhealthy(RuntimeError):
    """The cluster did not become healthy before the deadline."""


@dataclass(frozen=True)
class NodeView:
    """One node's answer: who it thinks leads, and which servers it sees alive."""

    name: str
    error: str | None = None
    leader: str | None = None
    alive_servers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RaftPeer:
    node: str
    address: str
    state: str
    voter: bool


@dataclass(frozen=True)
class ClusterView:
    nodes: Mapping[str, NodeView]
    raft_peers: Mapping[str, RaftPeer] | None = None
    raft_error: str | None = None
    observed_at: float = field(default_factory=time.time)

    @property
    def leader(self) -> str | None:
        """The leader every answering node agrees on, else None."""
        leaders = {view.leader for view in self.nodes.values() if view.error is None and view.leader}
        if len(leaders) == 1:
            return next(iter(leaders))
        return None

    def leaderless_but_connected(self, expected: Sequence[str]) -> bool:
        """Every expected node answers and sees all the others, yet none has a leader."""
        views = [self.nodes.get(name) for name in expected]
        return all(
            v is not None and v.error is None and v.leader is None and set(expected) <= v.alive_servers
            for v in views
        )

    def problems(self, expected: Sequence[str]) -> list[str]:
        """Why the cluster is not whole for the `expected` nodes; empty if it is."""
        found: list[str] = []
        for name in expected:
            view = self.nodes.get(name)
            if view is None or view.error is not None:
                found.append(f"{name}: API not answering ({view.error if view else 'not asked'})")
                continue
            if view.leader is None:
                found.append(f"{name}: sees no leader")
            missing = sorted(set(expected) - view.alive_servers)
            if missing:
                found.append(f"{name}: does not see {', '.join(missing)} as alive servers")
        leaders = {v.leader for v in self.nodes.values() if v.error is None and v.leader}
        if len(leaders) > 1:
            found.append(f"nodes disagree on the leader: {', '.join(sorted(leaders))}")
        if self.raft_peers is None:
            if self.raft_error:
                found.append(f"raft peers unknown: {self.raft_error}")
        else:
            missing_peers = sorted(set(expected) - {p.node for p in self.raft_peers.values() if p.voter})
            if missing_peers:
                found.append(f"raft configuration lacks voters {', '.join(missing_peers)}")
        return found


@dataclass(frozen=True)
class LiveView:
    """The cluster as an update finds it, before it changes anything: plain data
    that `components.update_plan.plan_update` plans from."""

    leader: str | None = None
    """The leader every answering node agrees on (None: a new stack, or no quorum)."""
    alive: frozenset[str] = frozenset()
    """Configured nodes that answer and see a leader."""
    down: frozenset[str] = frozenset()
    """Configured nodes whose API does not answer."""
    dead_removed: frozenset[str] = frozenset()
    """Nodes gone from the config whose API does not answer (asked only when a leader answers)."""

    @classmethod
    def of(cls, view: ClusterView, dead_removed: frozenset[str] = frozenset()) -> LiveView:
        return cls(
            leader=view.leader,
            alive=frozenset(n for n, v in view.nodes.items() if v.error is None and v.leader),
            down=frozenset(n for n, v in view.nodes.items() if v.error is not None),
            dead_removed=dead_removed,
        )


def observe_node(name: str, api_url: str, timeout_s: float = 3.0) -> NodeView:
    try:
        with DkronClient(api_url, timeout_s=timeout_s) as client:
            leader = client.leader()
            members = client.members()
    except (requests.RequestException, DkronError, ValueError) as err:
        return NodeView(name=name, error=f"{type(err).__name__}: {err}"[:200])
    return NodeView(
        name=name,
        leader=leader["Name"] if leader else None,
        alive_servers=frozenset(
            m["Name"]
            for m in members
            if m.get("Status") == MEMBER_ALIVE and m.get("Tags", {}).get("server") == "true"
        ),
    )


def parse_raft_peers(text: str) -> dict[str, RaftPeer]:
    """Parse the table `dkron raft list-peers` prints (`nodeside.exporter.peer_rows`)."""
    return {
        server_id: RaftPeer(node=server_id, address=address, state=state, voter=voter)
        for server_id, address, state, voter in peer_rows(text)
    }


def restart_container(container: str, timeout_s: int = 60) -> None:
    """Restart a node's container (a container locator); SIGTERM first, so the agent leaves cleanly."""

    where, name = split_locator(container)
    with engine(where) as client:
        client.containers.get(name).restart(timeout=timeout_s)


def stopped_containers(containers: Mapping[str, str], nodes: Iterable[str]) -> dict[str, str]:
    """Of `nodes`, those whose container exists but neither runs nor is being
    restarted by Docker: node -> the container's status. A container that does
    not exist (yet) is not listed, nor is anything when Docker cannot be asked
    (a host that is down or cut off is no evidence that its container stopped)."""

    found: dict[str, str] = {}
    by_engine: dict[str | None, dict[str, str]] = {}
    for node in nodes:
        where, name = split_locator(containers[node])
        by_engine.setdefault(where, {})[node] = name
    for where, names in by_engine.items():
        try:
            with engine(where, timeout_s=10) as client:
                for node, name in names.items():
                    state: Mapping[str, Any] = {
                        "Running": True
                    }  # missing, or the engine is busy: no evidence
                    with contextlib.suppress(Exception):
                        state = client.containers.get(name).attrs.get("State") or {}
                    if not state.get("Running") and not state.get("Restarting"):
                        found[node] = str(state.get("Status"))
        except Exception:  # noqa: BLE001, S112 - no engine to ask: no answer is no evidence
            continue
    return found


def raft_peers(container: str) -> dict[str, RaftPeer]:
    """The Raft configuration as the agent in `container` knows it.

    There is no HTTP endpoint for Raft peers: ask the CLI inside the container
    (a container locator).
    """

    where, name = split_locator(container)
    with engine(where, timeout_s=20) as client:
        result = client.containers.get(name).exec_run(dkron_cli("raft", "list-peers"))
    output = result.output.decode(errors="replace")
    if result.exit_code != 0:
        raise RuntimeError(f"dkron raft list-peers in {name} failed: {output.strip()[:200]}")
    return parse_raft_peers(output)


def observe(api_urls: Mapping[str, str], containers: Mapping[str, str] | None = None) -> ClusterView:
    """Ask every node; if they agree on a leader, read its Raft configuration."""
    nodes = {name: observe_node(name, url) for name, url in api_urls.items()}
    view = ClusterView(nodes=nodes)
    leader = view.leader
    if containers is None or leader is None or leader not in containers:
        return view
    try:
        return ClusterView(nodes=nodes, raft_peers=raft_peers(containers[leader]))
    except Exception as err:  # noqa: BLE001 - any failure here just means "not yet"
        return ClusterView(nodes=nodes, raft_error=str(err)[:200])


def observe_live(api_urls: Mapping[str, str], removed_urls: Mapping[str, str]) -> LiveView:
    """Ask the configured nodes (`api_urls`) and, if a leader answers, the nodes
    gone from the config (`removed_urls`: their last recorded API URLs)."""
    view = observe(api_urls)
    rolling = view.leader is not None
    dead = frozenset(n for n, url in removed_urls.items() if rolling and observe_node(n, url).error)
    return LiveView.of(view, dead)


# How often a wait asks again. A poll is a few local HTTP calls (and one
# `docker exec` once a leader is agreed); a node rejoins in well under a
# second, so a longer interval is most of a rollout step's wait.
POLL_S = 0.2

# How long an expected node's container may stay stopped before a wait gives up
# (Docker restarts crashed containers itself; a `docker restart` stops one briefly).
STOPPED_GRACE_S = 10.0


def wait_until_healthy(
    api_urls: Mapping[str, str],
    containers: Mapping[str, str],
    expected: Sequence[str],
    timeout_s: float,
    what: str,
    poll_s: float = POLL_S,
    on_stall: Callable[[ClusterView], None] | None = None,
    stall_after_s: float = 15.0,
    stopped_grace_s: float = STOPPED_GRACE_S,
) -> ClusterView:
    """Poll until the cluster is whole for `expected`, or raise naming what was seen.

    `on_stall` is called once if, after `stall_after_s`, every expected node
    sees all the others alive but none of them has a leader. An expected node
    whose container has stayed stopped (not running, and Docker not
    restarting it) for `stopped_grace_s` ends the wait at once: the cluster
    cannot become whole before the next update replaces that container.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    stalled = False
    stopped_since: dict[str, float] = {}
    while True:
        view = observe(api_urls, containers)
        problems = view.problems(expected)
        if not problems:
            return view
        silent = [n for n in expected if n not in view.nodes or view.nodes[n].error is not None]
        stopped = stopped_containers(containers, silent) if silent else {}
        now = time.monotonic()
        stopped_since = {n: stopped_since.get(n, now) for n in stopped}
        gone = sorted(n for n, since in stopped_since.items() if now - since >= stopped_grace_s)
        if gone:
            raise ClusterUnhealthy(
                f"{what}: the cluster cannot become healthy: "
                + ", ".join(f"node {n!r} (container {containers[n]!r}) is {stopped[n]}" for n in gone)
                + f" and Docker is not restarting it (seen for {stopped_grace_s:.0f}s); the next update"
                " replaces it. Last seen: " + "; ".join(problems)
            )
        if (
            on_stall is not None
            and not stalled
            and time.monotonic() - started > stall_after_s
            and view.leaderless_but_connected(expected)
        ):
            stalled = True
            on_stall(view)
        if time.monotonic() >= deadline:
            raise ClusterUnhealthy(
                f"{what}: the cluster was not healthy within {timeout_s:.0f}s; last seen: "
                + "; ".join(problems)
            )
        time.sleep(poll_s)


def summary(view: ClusterView) -> dict[str, Any]:
    """A JSON-friendly picture of a view, for outputs and error reports."""
    return {
        "leader": view.leader,
        "nodes": {
            n: {"error": v.error, "leader": v.leader, "alive_servers": sorted(v.alive_servers)}
            for n, v in view.nodes.items()
        },
        "raft_voters": sorted(p.node for p in (view.raft_peers or {}).values() if p.voter),
    }
