"""Rolling replacement on a real three-node cluster.

An image change replaces every node, one at a time, the leader last; a
recorded timeline (Docker events plus a leader poller) shows it. A tag change
replaces one node. A node that cannot start halts the rollout with quorum
intact, and fixing the config finishes it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker
import pytest
from pulumi import automation as auto

from components.docker_objects import engine
from components.health import observe
from testing.harness import (
    TestStack,
    caught_up_starts,
    derived_base_image,
    eventually,
    missed_due_times,
    remove_image,
    tick_job,
    watcher_lines,
)

NODES: list[dict[str, Any]] = [
    {"name": "n1", "tags": {"python": "daily"}},
    {"name": "n2", "tags": {"python": "daily"}},
    {"name": "n3"},
]
TICK = tick_job(command="true")


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestStack]:
    stack = TestStack(NODES)
    images: list[str] = []
    stack.derived_images = images  # type: ignore[attr-defined]
    try:
        stack.up(refresh=False)
        with stack.client("n1") as client:
            client.upsert_job(TICK)
        yield stack
    finally:
        stack.close()
        for tag in images:
            remove_image(tag)


@dataclass
class Timeline:
    """Container lifecycle events and the leader over time, for one stack."""

    stack: TestStack
    events: list[dict[str, Any]] = field(default_factory=list)
    leaders: list[tuple[float, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Timeline:
        self.started = time.time()
        # Docker's events are read as they happen: the engine keeps only its last 256
        # (health checks and execs count), and other suites on the engine push a stack's
        # first events out before an update ends.
        self._engine = contextlib.ExitStack()
        client = self._engine.enter_context(engine())
        self._stream = client.api.events(
            since=int(self.started) - 1,
            filters={"type": "container", "label": f"dkron-iac.stack={self.stack.name}"},
            decode=True,
        )
        self._threads = [
            threading.Thread(target=self._poll_leader, daemon=True),
            threading.Thread(target=self._read_events, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.finished = time.time()
        time.sleep(1)  # the last events of the update on their way
        self._stop.set()
        self._stream.close()
        for thread in self._threads:
            thread.join(10)
        self._engine.close()

    def _read_events(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed under the read: done
            for e in self._stream:
                if e.get("Action") in ("create", "start", "kill", "die", "stop", "destroy"):
                    self.events.append(
                        {
                            "node": e["Actor"]["Attributes"].get("dkron-iac.node"),
                            "action": e["Action"],
                            "t": e["timeNano"] / 1e9,
                        }
                    )

    def _poll_leader(self) -> None:
        api = {n: self.stack.api_url(n) for n in self.stack.node_names()}
        while not self._stop.is_set():
            self.leaders.append((time.time(), observe(api).leader))
            self._stop.wait(0.5)

    def downtime(self) -> dict[str, list[tuple[float, float]]]:
        """Per node, the windows from its container dying to the new one starting."""
        windows: dict[str, list[tuple[float, float]]] = {}
        down_since: dict[str, float] = {}
        for event in sorted(self.events, key=lambda e: e["t"]):
            node = event["node"]
            if event["action"] in ("kill", "die", "stop") and node not in down_since:
                down_since[node] = event["t"]
            elif event["action"] == "start" and node in down_since:
                windows.setdefault(node, []).append((down_since.pop(node), event["t"]))
        for node, since in down_since.items():
            windows.setdefault(node, []).append((since, self.finished))
        return windows


def container_ids(stack: TestStack) -> dict[str, str]:
    with engine() as client:
        return {n: client.containers.get(stack.container(n)).id for n in stack.node_names()}


def images_in_use(stack: TestStack) -> tuple[set[str], set[str]]:
    """The IDs of the images carrying the stack's label, and of those its nodes run."""
    with engine() as client:
        labelled = {i.id for i in client.images.list(filters={"label": f"dkron-iac.stack={stack.name}"})}
        running = {client.containers.get(stack.container(n)).image.id for n in stack.node_names()}
        return labelled, running


def tick_executions(stack: TestStack) -> list[dict[str, Any]]:
    for node in stack.node_names():
        with contextlib.suppress(Exception), stack.client(node) as client:
            return list(client.executions("tick"))
    return []


def tick_runs(stack: TestStack, since: float, until: float) -> int:
    def started(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["started_at"].replace("Z", "+00:00")).timestamp()

    groups = {e["group"] for e in tick_executions(stack) if since <= started(e) < until}
    return len(groups)


def test_preview_lists_replacements_followers_first_leader_last(cluster: TestStack) -> None:
    leader = observe({n: cluster.api_url(n) for n in cluster.node_names()}).leader
    tag = derived_base_image(f"dkron-iac/{cluster.cluster_name}-base:v2", "LABEL rev=2")
    cluster.derived_images.append(tag)  # type: ignore[attr-defined]
    cluster.configure(lambda c: c.setdefault("image", {}).update(base_image=tag))

    cluster.log.clear()
    cluster.preview()
    text = "\n".join(cluster.log)
    lines = text.splitlines()
    replaced = [
        lines[i + 2].strip().rstrip("]").rsplit("::dkron-", 1)[1]
        for i, line in enumerate(lines)
        if "DockerContainer: (replace)" in line
    ]
    assert sorted(replaced) == sorted(cluster.node_names()), text
    assert replaced[-1] == leader, f"order {replaced}, leader {leader}"


def test_image_change_rolls_one_node_at_a_time_leader_last(cluster: TestStack) -> None:
    before_ids = container_ids(cluster)
    _, old_image = images_in_use(cluster)
    leader_before = observe({n: cluster.api_url(n) for n in cluster.node_names()}).leader
    with Timeline(cluster) as timeline:
        # Checked once the timeline has Docker's events: the engine keeps only its last 256,
        # and on a shared engine other stacks' events push the first nodes' out meanwhile.
        cluster.up(expect_no_changes=False)
    cluster.expect_no_changes()
    after_ids = container_ids(cluster)
    assert all(before_ids[n] != after_ids[n] for n in cluster.node_names()), "every node replaced"
    # The image the nodes ran before is gone; only the one they run now is left.
    labelled, new_image = images_in_use(cluster)
    assert len(new_image) == 1, new_image
    assert new_image != old_image
    assert labelled == new_image

    windows = timeline.downtime()
    assert set(windows) == set(cluster.node_names()), windows
    spans = sorted((start, end, node) for node, ws in windows.items() for start, end in ws)
    for (_, end, node), (start, _, next_node) in itertools.pairwise(spans):
        assert end <= start, f"{node} was still down when {next_node} went down: {spans}"
    assert spans[-1][2] == leader_before, f"leader {leader_before} not last: {spans}"

    # Runs of the @every 2s job, per step: from the node going down to the next
    # node going down (or the end). Dkron does not catch up; the watcher does.
    report = {}
    bounds = [start for start, _, _ in spans] + [timeline.finished]
    for (start, end, node), step_end in zip(spans, bounds[1:], strict=True):
        expected = int((step_end - start) // 2)
        seen = tick_runs(cluster, start, step_end)
        report[node] = {
            "down_s": round(end - start, 2),
            "step_s": round(step_end - start, 1),
            "leader_step": node == leader_before,
            "expected_runs": expected,
            "runs": seen,
            "missed": max(expected - seen, 0),
        }
    print("ROLLOUT", json.dumps({"total_s": round(timeline.finished - timeline.started, 1), "steps": report}))
    assert cluster.outputs()["leader"] in cluster.node_names()
    # The job ran again after the rollout.
    finished = time.time()
    eventually("tick runs after the rollout", lambda: tick_runs(cluster, finished, time.time() + 60) > 0, 30)
    # No due time was left without a run (the leader step's gap ends with a caught-up run), and
    # no run happened twice.
    groups = sorted({int(e["group"]) for e in tick_executions(cluster)})
    starts = [g / 1e9 for g in groups if timeline.started - 4 <= g / 1e9]
    lines = watcher_lines([cluster.container(n) for n in cluster.node_names()], timeline.started)
    caught_up = caught_up_starts(lines, "tick")
    print("CATCH_UPS", json.dumps([line for line in lines if line["event"] in ("run", "imminent")]))
    assert missed_due_times(starts, 2.0, caught_up) == 0, (starts, lines)
    seconds = [g // 1_000_000_000 for g in groups]
    assert len(seconds) == len(set(seconds)), f"tick ran twice in one second: {groups}"


def test_tag_change_on_one_node_replaces_only_that_node(cluster: TestStack) -> None:
    before = container_ids(cluster)
    cluster.configure(lambda c: c["nodes"][2].update(tags={"tier": "light"}))
    cluster.up()
    after = container_ids(cluster)
    assert before["n3"] != after["n3"]
    assert before["n1"] == after["n1"]
    assert before["n2"] == after["n2"]
    with cluster.client("n3") as client:
        me = next(m for m in client.members() if m["Name"] == "n3")
    assert me["Tags"]["tier"] == "light"


def test_broken_node_halts_rollout_with_quorum_then_fix_completes(cluster: TestStack) -> None:
    good_base = cluster.cluster["image"]["base_image"]
    broken = derived_base_image(
        f"dkron-iac/{cluster.cluster_name}-base:broken", "ENV DKRON_DATA_DIR=/dev/null/data"
    )
    cluster.derived_images.append(broken)  # type: ignore[attr-defined]
    before = container_ids(cluster)
    leader = observe({n: cluster.api_url(n) for n in cluster.node_names()}).leader
    cluster.configure(lambda c: c["image"].update(base_image=broken))

    with pytest.raises(auto.CommandError) as failure:
        cluster.up()
    message = str(failure.value)
    first = next(n for n in cluster.node_names() if n != leader)
    assert cluster.container(first) in message, message

    # Only the first node was touched; the other two keep quorum and a leader.
    after = container_ids_present(cluster)
    others = [n for n in cluster.node_names() if n != first]
    assert all(after.get(n) == before[n] for n in others), (before, after)
    view = observe({n: cluster.api_url(n) for n in others})
    assert view.leader in others

    cluster.configure(lambda c: c["image"].update(base_image=good_base))
    cluster.up()
    labelled, running = images_in_use(cluster)
    assert labelled == running, "the broken image was left behind"
    api = {n: cluster.api_url(n) for n in cluster.node_names()}
    containers = {n: cluster.container(n) for n in cluster.node_names()}
    assert observe(api, containers).problems(cluster.node_names()) == []


def container_ids_present(stack: TestStack) -> dict[str, str]:
    with engine() as client:
        found = {}
        for node in stack.node_names():
            with contextlib.suppress(docker.errors.NotFound):
                found[node] = client.containers.get(stack.container(node)).id
        return found
