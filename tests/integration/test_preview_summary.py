"""What a preview says, on one real three-node stack.

The stack is first deployed by the program as it was when dkron.yml held the
gossip key; the first update with this program moves the key into the
environment, which replaces every node once, one at a time, and the preview
says so. Then previews of a tag change, an image change, a Dkron version
change and a scale-out must each say, before the resource list, which node
changes and why; none of them is applied.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import docker
import pytest
from pulumi import automation as auto

from components.change_summary import HEADER, KEY_MOVES, NO_CHANGE
from components.health import observe
from components.node_config import CONFIG_PATH, ENCRYPT_ENV
from testing.harness import BASE_IMAGE, ROOT, SETUP_VERSIONS, TestStack
from tests.integration.test_rollout import container_ids

# The last commit whose program wrote the gossip key into dkron.yml.
KEY_IN_FILE_COMMIT = "ec9f52a0cd4147468bc87e6b4ab33e5503b46332"

# "  n3 (follower): replace: ..." or "  n4: new"; the resource list below is indented further.
NODE_LINE = re.compile(r"  [a-z][a-z0-9-]*( \([^)]*\))?: ")

NODES: list[dict[str, Any]] = [
    {"name": "n1", "tags": {"tier": "light"}},
    {"name": "n2", "tags": {"tier": "light"}},
    {"name": "n3", "tags": {"tier": "light"}},
]


def old_program(into: Path) -> Path:
    """The project at KEY_IN_FILE_COMMIT, runnable with this checkout's virtualenv."""
    archive = subprocess.run(
        ["git", "archive", KEY_IN_FILE_COMMIT], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    stack = TestStack([dict(n) for n in NODES])
    old_dir = Path(tempfile.mkdtemp(prefix="dkron-iac-old-"))
    try:
        old = old_program(old_dir)
        shutil.copy(stack.config_file, old / "stacks" / stack.config_file.name)
        before = auto.create_or_select_stack(stack_name=stack.name, work_dir=str(old))
        before.up(on_output=stack._echo, color="never")
        stack.last_outputs = stack.outputs()
        # These tests are about rolling updates; the move onto mutual TLS restarts every
        # node at once (tests/integration/test_mutual_tls.py), so this stack stays in clear.
        stack.configure(lambda c: c.update(security={"mutual_tls": False}))
        yield stack
    finally:
        stack.close()
        shutil.rmtree(old_dir, ignore_errors=True)


def leader(stack: TestStack) -> str:
    found = observe({n: stack.api_url(n) for n in stack.node_names()}).leader
    assert found is not None
    return found


def summary_lines(text: str) -> list[str]:
    """The summary's node lines from a preview's output (header, then two-space indented lines)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if HEADER in line or NO_CHANGE in line)
    if NO_CHANGE in lines[start]:
        return []
    return list(itertools.takewhile(NODE_LINE.match, lines[start + 1 :]))


def preview(stack: TestStack) -> tuple[auto.PreviewResult, str]:
    """A preview through the Automation API: its result and its whole output (diagnostics go to stderr)."""
    result = stack.preview()
    return result, result.stdout + "\n" + result.stderr


def make_preview(stack: TestStack) -> str:
    """`make preview`'s own script, as a user runs it; its stdout (it puts the summary there too)."""
    done = subprocess.run(
        ["scripts/stack.sh", "preview", stack.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rollout_steps(log: list[str]) -> list[tuple[str, str]]:
    """From an update's output: each node's old container going, and its gate passing, in order."""
    steps = []
    for line in log:
        if found := re.search(r"DockerContainer dkron-([a-z0-9-]+) deleting original", line):
            steps.append(("stop", found[1]))
        elif found := re.search(r"NodeGate dkron-([a-z0-9-]+)-gate updated", line):
            steps.append(("whole", found[1]))
    return steps


def gossip_key(stack: TestStack, node: str) -> str:
    client = docker.from_env(version="auto")
    try:
        env = client.containers.get(stack.container(node)).attrs["Config"]["Env"]
    finally:
        client.close()
    return next(item.split("=", 1)[1] for item in env if item.startswith(f"{ENCRYPT_ENV}="))


def file_in_container(stack: TestStack, node: str, path: str) -> str:
    client = docker.from_env(version="auto")
    try:
        chunks, _ = client.containers.get(stack.container(node)).get_archive(path)
        with tarfile.open(fileobj=BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            assert member is not None
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read().decode()
    finally:
        client.close()


def container_logs(stack: TestStack, node: str) -> str:
    client = docker.from_env(version="auto")
    try:
        return client.containers.get(stack.container(node)).logs().decode(errors="replace")
    finally:
        client.close()


def test_a_stack_from_before_moves_the_key_out_of_the_file_in_one_rolling_update(stack: TestStack) -> None:
    old_file = file_in_container(stack, "n1", CONFIG_PATH)
    assert "encrypt:" in old_file, "the old program is expected to write the key into dkron.yml"
    first_leader = leader(stack)
    followers = [n for n in stack.node_names() if n != first_leader]

    _, text = preview(stack)
    assert summary_lines(text) == [
        *(f"  {n} (follower): replace: {KEY_MOVES}; runs as root -> dkron" for n in followers),
        f"  {first_leader} (leader, last): replace: {KEY_MOVES}; runs as root -> dkron",
    ], text

    before = container_ids(stack)
    stack.log.clear()
    stack.up()
    after = container_ids(stack)
    assert all(before[n] != after[n] for n in stack.node_names())
    # One node at a time, the leader last: each old container goes only once the
    # previous node's gate saw the cluster whole (the engine's own account; Docker's
    # event buffer can overflow while other suites run).
    assert rollout_steps(stack.log) == [
        step for node in [*followers, first_leader] for step in (("stop", node), ("whole", node))
    ], "\n".join(stack.log)

    # The key kept its value and the gossip is still encrypted, now from the environment.
    key = gossip_key(stack, "n1")
    assert key
    assert key in old_file
    for node in stack.node_names():
        config = file_in_container(stack, node, CONFIG_PATH)
        assert "encrypt" not in config
        assert key not in config
        with stack.client(node) as client:
            assert client.agent()["serf"]["encrypted"] == "true", node
        assert key not in container_logs(stack, node)
    assert key not in json.dumps(stack.outputs())
    assert key not in stack.export_as_user(), "the state holds the gossip key in plain text"

    # Nothing changed since: the preview lists no resource change and says so.
    result, text = preview(stack)
    assert set(result.change_summary) == {auto.OpType.SAME}, result.change_summary
    assert NO_CHANGE in text
    assert summary_lines(text) == []


def test_tag_change_preview_names_the_tag_before_the_resources_and_shows_the_line(stack: TestStack) -> None:
    node = next(n for n in stack.node_names() if n != leader(stack))
    index = stack.node_names().index(node)
    stack.configure(lambda c: c["nodes"][index].update(tags={"tier": "heavy"}))
    try:
        text = make_preview(stack)
    finally:
        stack.configure(lambda c: c["nodes"][index].update(tags={"tier": "light"}))

    line = f"  {node} (follower): replace: tags.tier light -> heavy"
    assert summary_lines(text) == [line], text
    lines = text.splitlines()
    summary_at = next(i for i, s in enumerate(lines) if s.endswith(line))
    first_resource = next(i for i, s in enumerate(lines) if "DockerContainer" in s)
    assert summary_at < first_resource, text
    # The changed line of dkron.yml shows; no secret stands in for it, no gate input flips.
    resources = lines[first_resource:]
    assert any(s.strip() == '~ tier: "light" => "heavy"' for s in resources), text
    assert not [s for s in resources if "dkron.yml" in s and "[secret]" in s], text
    assert not [s for s in resources if "nudge" in s and ("=>" in s or s.strip().startswith(("~", "+", "-")))]


def test_image_change_preview_replaces_every_node_leader_last(stack: TestStack) -> None:
    first = leader(stack)
    followers = [n for n in stack.node_names() if n != first]
    other = f"{BASE_IMAGE}-other"  # never built: a preview does not build
    stack.configure(lambda c: c.setdefault("image", {}).update(base_image=other))
    try:
        _, text = preview(stack)
    finally:
        stack.configure(lambda c: c["image"].pop("base_image"))
    reason = f"replace: image rebuilt (base image {BASE_IMAGE} -> {other})"
    assert summary_lines(text) == [
        *(f"  {n} (follower): {reason}" for n in followers),
        f"  {first} (leader, last): {reason}",
    ], text


def test_dkron_version_change_preview_says_from_which_version_to_which(stack: TestStack) -> None:
    first = leader(stack)
    now = SETUP_VERSIONS["DKRON_VERSION"]
    major, minor, patch = now.split("-")[0].split(".")
    later = f"{major}.{minor}.{int(patch) + 1}"  # never built: a preview does not build
    stack.configure(
        lambda c: c.setdefault("image", {}).update(
            dkron_version=later, dkron_image=f"dkron-iac/dkron:{later}"
        )
    )
    try:
        _, text = preview(stack)
    finally:
        stack.configure(lambda c: c.pop("image"))
    lines = summary_lines(text)
    assert [line.split(":", 1)[0].strip() for line in lines][-1] == f"{first} (leader, last)", text
    assert len(lines) == 3
    assert all(line.endswith(f": replace: image rebuilt (Dkron {now} -> {later})") for line in lines), text


def test_scale_out_preview_lists_only_the_new_nodes(stack: TestStack) -> None:
    stack.configure(lambda c: c["nodes"].extend([{"name": "n4"}, {"name": "n5"}]))
    try:
        result, text = preview(stack)
    finally:
        stack.configure(lambda c: c.update(nodes=c["nodes"][:3]))
    assert summary_lines(text) == ["  n4: new", "  n5: new"], text
    # A volume, a container and a gate each; no existing node's resource changes. The job
    # set records the new nodes' API URLs (its delete and refresh go by them); it writes no job.
    changes = {op: n for op, n in result.change_summary.items() if op != auto.OpType.SAME}
    assert changes == {auto.OpType.CREATE: 6, auto.OpType.UPDATE: 1}, text
    assert "dkron:DkronJobSet: (update)" in text, text
