"""Waiting for a whole cluster: it ends early when a node's container stays stopped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

import components.health
from components.health import ClusterUnhealthy, ClusterView, NodeView, wait_until_healthy

NODES = ("a", "b", "c")
CONTAINERS = {n: f"c-{n}" for n in NODES}
URLS = {n: f"http://127.0.0.1:{9000 + i}" for i, n in enumerate(NODES)}


class World:
    """What the nodes answer and which containers Docker reports stopped, per poll."""

    def __init__(self, down: set[str], stopped: dict[str, str]) -> None:
        self.down = down
        self.stopped = stopped
        self.polls = 0
        self.asked: list[list[str]] = []

    def observe(
        self, api_urls: Mapping[str, str], _containers: Mapping[str, str] | None = None
    ) -> ClusterView:
        self.polls += 1
        alive = frozenset(n for n in api_urls if n not in self.down)
        return ClusterView(
            nodes={
                n: NodeView(n, error="ConnectionError: refused")
                if n in self.down
                else NodeView(n, leader="a", alive_servers=alive)
                for n in api_urls
            }
        )

    def stopped_containers(self, _containers: Mapping[str, str], nodes: Iterable[str]) -> dict[str, str]:
        asked = list(nodes)
        self.asked.append(asked)
        return {n: status for n, status in self.stopped.items() if n in asked}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    state = World(down=set(), stopped={})
    monkeypatch.setattr(components.health, "observe", state.observe)
    monkeypatch.setattr(components.health, "stopped_containers", state.stopped_containers)
    return state


def test_a_stopped_container_ends_the_wait_long_before_the_timeout(world: World) -> None:
    world.down, world.stopped = {"c"}, {"c": "exited"}

    with pytest.raises(ClusterUnhealthy) as caught:
        wait_until_healthy(URLS, CONTAINERS, NODES, 60, "after starting node 'a'", 0.01, stopped_grace_s=0.05)

    message = str(caught.value)
    assert message.startswith("after starting node 'a': the cluster cannot become healthy: node 'c'")
    assert "(container 'c-c') is exited and Docker is not restarting it" in message
    assert world.polls < 100  # ended after the grace, not at the 60 s timeout
    assert all(asked == ["c"] for asked in world.asked)  # only silent nodes are looked up


def test_a_node_that_is_down_but_running_is_waited_for_until_the_timeout(world: World) -> None:
    world.down = {"c"}  # its agent is starting: the container runs

    with pytest.raises(ClusterUnhealthy) as caught:
        wait_until_healthy(URLS, CONTAINERS, NODES, 0.2, "at the end", 0.01, stopped_grace_s=0.05)

    assert "the cluster was not healthy within 0s" in str(caught.value)


def test_a_stopped_node_that_is_not_expected_does_not_matter(world: World) -> None:
    world.down, world.stopped = {"c"}, {"c": "exited"}

    view = wait_until_healthy(URLS, CONTAINERS, ["a", "b"], 5, "gate", 0.01, stopped_grace_s=0.05)

    assert view.leader == "a"
    assert world.asked == []
