"""Dead Raft voters stay removed, and every update ends with the config's voters.

Dkron 4.0.5's leader re-adds every server Serf holds alive as a Raft voter on
each reconcile (every 60 s and on member events). A peer removed while Serf
still held the dead member alive came back (issue 16). These tests kill real
containers, wait past a reconcile and read Raft's configuration from the
leader.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from components.docker_objects import engine
from components.health import observe, raft_peers
from testing.harness import TestStack, eventually

# Dkron's ReconcileInterval (dkron/leader.go), plus margin.
RECONCILE_S = 60
WATCH_S = RECONCILE_S + 15


def nodes(*names: str) -> list[dict[str, Any]]:
    return [{"name": name} for name in names]


def configured(stack: TestStack) -> list[str]:
    return stack.node_names()


def leader_of(stack: TestStack) -> str:
    names = configured(stack)
    view = observe({n: stack.api_url(n) for n in names})
    assert view.leader, f"no leader agreed: {view}"
    return view.leader


def peers(stack: TestStack) -> set[str]:
    """Every Raft peer (voter or not) in the leader's configuration."""
    return set(raft_peers(stack.container(leader_of(stack))))


def assert_voters_are_the_config(stack: TestStack, outputs: dict[str, Any]) -> None:
    names = sorted(configured(stack))
    assert sorted(outputs["voters"]) == names
    assert sorted(peers(stack)) == names


def watch_peers(stack: TestStack, seconds: float) -> list[set[str]]:
    """Raft's peers every few seconds for `seconds`: what a reconcile might change."""
    seen: list[set[str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(peers(stack))
        time.sleep(5)
    seen.append(peers(stack))
    return seen


def kill_and_remove(stack: TestStack, container: str) -> None:
    with engine() as client:
        client.containers.get(container).remove(force=True)


@pytest.fixture
def stack() -> Iterator[TestStack]:
    # Six API ports reserved: the stack grows to five nodes and adds a sixth.
    test_stack = TestStack(nodes("a", "b", "c", "d", "e", "f"))
    test_stack.configure(lambda c: c.update(nodes=nodes("a", "b", "c")))
    try:
        yield test_stack
    finally:
        test_stack.close()


def test_dead_follower_dropped_and_new_node_added_in_one_edit_stays_out_after_reconcile(
    stack: TestStack,
) -> None:
    # The sequence of the report: 3 nodes, out to 5, back to 3.
    stack.up(refresh=False)
    stack.configure(lambda c: c.update(nodes=nodes("a", "b", "c", "d", "e")))
    stack.up()
    stack.configure(lambda c: c.update(nodes=nodes("a", "b", "c")))
    assert_voters_are_the_config(stack, stack.up())

    # A follower's container is lost, and in one edit it leaves the config
    # while a new node comes in.
    leader = leader_of(stack)
    dead = next(n for n in ("a", "b", "c") if n != leader)
    kill_and_remove(stack, stack.container(dead))
    survivors = [n for n in ("a", "b", "c") if n != dead]
    stack.configure(lambda c: c.update(nodes=nodes(*survivors, "f")))
    outputs = stack.up()
    assert any(f"{dead}: removed (dead: its Raft peer is removed first)" in line for line in stack.log), (
        "the preview did not say the dead node is removed first"
    )
    assert_voters_are_the_config(stack, outputs)

    # Across Dkron's own reconcile the dead peer must not come back.
    history = watch_peers(stack, WATCH_S)
    back = [sorted(p) for p in history if dead in p]
    assert not back, f"{dead} came back as a Raft peer within {WATCH_S}s: {back}"
    assert history[-1] == set(configured(stack))
    assert sorted(stack.outputs()["voters"]) == sorted(configured(stack))
    # The removals are done: a preview of the unchanged config lists nothing.
    preview = stack.preview()
    assert set(preview.change_summary) == {"same"}, preview.change_summary
    assert sorted(stack.outputs()["removed"]) == sorted({"d", "e", dead})


def _start_extra_server(stack: TestStack, name: str) -> str:
    """A Dkron server the stack does not know, joined to its cluster by hand.

    It runs the stack's own image, a copy of a node's rendered config with
    another node name and the node's environment (the gossip key is there), as
    someone trying a node out by hand would.
    """
    source = stack.container("a")
    with engine() as client:
        node_a = client.containers.get(source)
        config = node_a.exec_run(["cat", "/etc/dkron/dkron.yml"]).output.decode()
        config = config.replace("node-name: a\n", f"node-name: {name}\n")
        assert f"node-name: {name}\n" in config
        script = (
            f"mkdir -p /etc/dkron && printf %s {shlex.quote(config)} > /etc/dkron/dkron.yml"
            " && exec dkron agent --config /etc/dkron/dkron.yml"
        )
        network = next(iter(node_a.attrs["NetworkSettings"]["Networks"]))
        extra = client.containers.run(
            node_a.attrs["Config"]["Image"],
            ["sh", "-c", script],
            name=stack.container(name),
            hostname=name,
            network=network,
            environment=[e for e in node_a.attrs["Config"]["Env"] if e.startswith("DKRON_")],
            # Root: without the volume a node gets, the image's user can make
            # neither /etc/dkron nor the data folder.
            user="0:0",
            # The stack's label: its clean-up removes this container even if the test fails.
            labels={"dkron-iac.stack": stack.name},
            detach=True,
        )
        return str(extra.name)


def test_stray_voters_outside_the_config_alive_fail_the_update_and_dead_are_removed(
    stack: TestStack,
) -> None:
    stack.up(refresh=False)
    extra = _start_extra_server(stack, "x")
    eventually("x to become a Raft voter", lambda: "x" in peers(stack), 90)

    # Alive and not in the config: the update fails naming it and what to do.
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert "'x'" in message
    assert "not in the stack config are alive" in message
    assert "Stop them (or add them to cluster.nodes)" in message
    assert "x" in peers(stack), "a live stray voter was removed"

    # Killed, its container gone, its peer still there: the next update,
    # with nothing changed in the config, removes the peer for good.
    kill_and_remove(stack, extra)
    assert "x" in peers(stack)
    outputs = stack.up()
    assert any("removed Raft peers not in the config: x" in line for line in stack.log)
    assert_voters_are_the_config(stack, outputs)
