"""A stack deployed with the single-module Docker layout keeps working after it.

Pulumi stores each dynamic provider pickled by reference in the state, so a
stack deployed before `components/docker_objects/` existed names
`components.docker_resources.<Provider>` for each of its Docker resources.
This test deploys a one-node stack with the project as it was then (main at
`OLD_LAYOUT`, unpacked from git into a temporary directory, on the same
backend), then refreshes, updates and destroys it with the code of this tree.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from components.dkron_client import DkronClient
from testing.harness import ROOT, TestStack, eventually

pytestmark = pytest.mark.integration

# The last commit with the whole Docker layer in components/docker_resources.py.
OLD_LAYOUT = "f2c5db5"
DOCKER_TYPES = ("DockerNetwork", "DockerVolume", "DockerImage", "DockerContainer")


def _has_commit(rev: str) -> bool:
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], check=False)
    return found.returncode == 0


def _old_tree(into: Path) -> Path:
    """The project at `OLD_LAYOUT`, sharing this tree's virtualenv."""
    archive = into / "old.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", f"--output={archive}", OLD_LAYOUT], check=True
    )
    tree = into / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    (tree / ".venv").symlink_to(ROOT / ".venv")
    return tree


def _provider_modules(stack: TestStack) -> dict[str, set[str]]:
    """Docker resource type -> the modules its pickled providers name, from inputs and outputs."""
    # The pickled provider is a secret: only an export that shows secrets has it.
    exported = subprocess.run(
        ["pulumi", "stack", "export", "--show-secrets", "--stack", stack.name, "--cwd", str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deployment = json.loads(exported)["deployment"]
    found: dict[str, set[str]] = {}
    for resource in deployment["resources"]:
        kind = resource["type"].rpartition(":")[2]
        if kind not in DOCKER_TYPES:
            continue
        for props in (resource.get("inputs") or {}, resource.get("outputs") or {}):
            pickled = props.get("__provider")
            if isinstance(pickled, dict):  # a secret: {<sig>: ..., "plaintext": <JSON text>}
                pickled = json.loads(pickled.get("plaintext", "null"))
            if isinstance(pickled, str):
                payload = base64.b64decode(pickled)
                module = "components.docker_resources" if b"docker_resources" in payload else "other"
                if b"components.docker_objects." in payload:
                    module = "components.docker_objects"
                found.setdefault(kind, set()).add(module)
    return found


def _leader(outputs: dict[str, Any]) -> str:
    with DkronClient(outputs["nodes"]["a"]["api_url"]) as client:
        return str(eventually("a leader", client.leader)["Name"])


@pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH (make test sets it up)"
)
@pytest.mark.skipif(
    not _has_commit(OLD_LAYOUT), reason=f"needs commit {OLD_LAYOUT} (a shallow clone lacks it)"
)
def test_a_stack_deployed_with_the_old_layout_refreshes_updates_and_destroys(tmp_path: Path) -> None:
    assert os.environ.get("PULUMI_BACKEND_URL"), "source scripts/env.sh: both trees must share one backend"
    stack = TestStack([{"name": "a"}])
    try:
        # The stack file (with its secrets salt) goes to the old tree as is.
        old_tree = _old_tree(tmp_path)
        shutil.copy(stack.config_file, old_tree / "stacks" / stack.config_file.name)
        old = auto.select_stack(stack_name=stack.name, work_dir=str(old_tree))
        old_outputs = old.up(on_output=stack._echo, color="never").outputs
        assert _leader({k: v.value for k, v in old_outputs.items()}) == "a"
        assert _provider_modules(stack) == {kind: {"components.docker_resources"} for kind in DOCKER_TYPES}

        # This tree's code on the same state: refresh reads every object through
        # the old pickles, and the update finds the same cluster.
        stack.stack.refresh(on_output=stack._echo, color="never")
        outputs = stack.up(refresh=True)
        assert _leader(outputs) == "a"
        assert outputs["leader"] == "a"
        # The update rebuilt the image in place (its build context's path moved
        # with the tree) and changed nothing else; now there is nothing to do.
        preview = stack.preview()
        assert set(preview.change_summary) == {"same"}, preview.change_summary
        # Every resource now holds this tree's pickles (its inputs), and those the
        # update left as they were still hold the old ones (their outputs, which
        # `delete` unpickles): the destroy below goes through the old module too.
        modules = _provider_modules(stack)
        assert all("components.docker_objects" in found for found in modules.values()), modules
        assert any("components.docker_resources" in found for found in modules.values()), modules

        stack.destroy()
        assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    finally:
        stack.close()
