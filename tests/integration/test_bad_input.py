"""Malformed stack configs fail `pulumi preview` and touch nothing.

The cases are `testing.bad_configs`; `tests/unit/test_bad_config.py` checks
every one's error line through the program's config steps. Here one case of
each family (cluster, several hosts, jobs), the cases only the live engine
finds, a missing config and several problems at once go through a real
preview. One throwaway stack is reused: each case rewrites its config file
(as a user edits `stacks/Pulumi.<stack>.yaml`) from a valid base, runs a real
preview through the Automation API, and checks that

- the preview fails with one error line naming the stack, the setting's path
  and the bad value;
- no Docker object carries the stack's label and no node image was built;
- the stack's state holds no resource (nothing but, at most, the Stack).

Nothing is ever deployed, so each case costs one preview (about a second).
A control case first shows the base config previews cleanly, so every
failure below is due to the one bad setting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components import naming
from components.docker_objects import engine
from testing.bad_configs import CASES, CONFIG_KEY, GOOD_JOB, NODES, Case, set_path
from testing.harness import TestStack

# Through a real preview: the first case of each family, and every case only the engine finds
# (the unit tests run every other case through the program's config steps).
PREVIEWED = [
    case
    for index, case in enumerate(CASES)
    if case.family == "engine" or all(other.family != case.family for other in CASES[:index])
]


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    test_stack = TestStack(NODES, jobs=[copy.deepcopy(GOOD_JOB)])
    test_stack.base = copy.deepcopy(test_stack.cluster)  # type: ignore[attr-defined]
    try:
        yield test_stack
    finally:
        test_stack.close()


def _configure(stack: TestStack, change: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the stack's config: the valid base with one change."""
    base: dict[str, Any] = stack.base  # type: ignore[attr-defined]
    replacement: list[Any] = []

    def rewrite(cluster: dict[str, Any]) -> None:
        cluster.clear()
        cluster.update(copy.deepcopy(base))
        result = change(cluster)
        if result is not None:
            replacement.append(result)

    stack.configure(rewrite)
    if replacement:
        _write_cluster_value(stack, replacement[0])


def _write_cluster_value(stack: TestStack, value: Any) -> None:
    """Write the config file by hand: `value` under the key, or no key at all if `value` is None."""
    content = yaml.safe_load(stack.config_file.read_text()) or {}
    config = content.setdefault("config", {})
    if value is None:
        config.pop(CONFIG_KEY, None)
    else:
        config[CONFIG_KEY] = value
    stack.config_file.write_text(yaml.safe_dump(content, sort_keys=False))


def _failed_preview(stack: TestStack) -> list[str]:
    """Run a preview that must fail; the problem lines it printed, each from "stack '<name>': " on.

    A problem list is one multi-line diagnostic: only its first line carries "error: ".
    """
    with pytest.raises(auto.errors.CommandError) as failure:
        stack.preview()
    marker = f"stack {stack.name!r}: "
    return [line[line.index(marker) :] for line in str(failure.value).splitlines() if marker in line]


def _assert_nothing_made(stack: TestStack) -> None:
    assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    with engine() as client:
        images = client.images.list(filters={"reference": naming.image_repository(stack.cluster_name)})
    assert images == [], images
    deployment = stack.stack.export_stack().deployment or {}
    kinds = [r.get("type") for r in deployment.get("resources") or []]
    assert set(kinds) <= {"pulumi:pulumi:Stack"}, kinds


def test_base_config_previews_cleanly(stack: TestStack) -> None:
    _configure(stack, lambda _: None)
    result = stack.preview()
    assert result.change_summary.get(auto.OpType.CREATE, 0) > 0, result.change_summary
    _assert_nothing_made(stack)


@pytest.mark.parametrize("case", PREVIEWED, ids=[case.id for case in PREVIEWED])
def test_bad_config_fails_preview_naming_stack_path_and_value(stack: TestStack, case: Case) -> None:
    _configure(stack, case.change)
    errors = _failed_preview(stack)
    prefix = f"stack {stack.name!r}: {case.expected}"
    assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)


def test_missing_cluster_config_fails_preview(stack: TestStack) -> None:
    _configure(stack, lambda _: None)
    _write_cluster_value(stack, None)
    assert CONFIG_KEY not in stack.config_file.read_text()
    errors = _failed_preview(stack)
    prefix = f"stack {stack.name!r}: cluster: no cluster config; set {CONFIG_KEY!r}"
    assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)


def test_every_problem_is_reported_at_once(stack: TestStack) -> None:
    """Several bad settings: one line each, not just the first."""

    def many(cluster: dict[str, Any]) -> None:
        set_path("nodes.1.name", "Node_2")(cluster)
        set_path("dkron.raft_multiplier", 11)(cluster)
        set_path("ports.bind_address", "localhost")(cluster)

    _configure(stack, many)
    errors = _failed_preview(stack)
    for expected in (
        "cluster.nodes[1].name = 'Node_2'",
        "cluster.dkron.raft_multiplier = 11",
        "cluster.ports.bind_address = 'localhost'",
    ):
        prefix = f"stack {stack.name!r}: {expected}"
        assert any(line.startswith(prefix) for line in errors), f"no line starting {prefix!r} in {errors}"
    _assert_nothing_made(stack)
