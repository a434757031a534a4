"""A stack with jobs deployed while ``components/jobs.py`` was one module keeps working.

The ``DkronJob`` provider is pickled by reference into the state as
``components.job_provider.DkronJobProvider``; it imports ``components.jobs``,
now a package. This test deploys a one-node stack with jobs using the project
as it was then (``OLD_LAYOUT``, from git), then previews, updates and destroys
it with the code of this tree: the jobs show no change (their payloads and
diffs are what they were) and stay in Dkron as declared.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from testing.harness import TestStack
from tests.integration.test_layout_compat import OLD_LAYOUT, _has_commit, _leader, _old_tree

pytestmark = pytest.mark.integration

JOBS: list[dict[str, Any]] = [
    {
        "name": "hello",
        "schedule": "@every 1h",
        "executor": "shell",
        # YAML scalars that are not strings: the payload holds them as Dkron stores them.
        "executor_config": {"command": "echo hello", "shell": True},
        "tags": {"server": True},
        "metadata": {"runs": 2},
    },
    {
        "name": "after-hello",
        "parent_job": "hello",
        "executor": "shell",
        "executor_config": {"command": "echo after"},
    },
]


def _job_steps(stack: TestStack) -> dict[str, str]:
    """DkronJob resource name -> what a preview of this tree would do to it."""
    steps: dict[str, str] = {}

    def record(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.type.endswith(":DkronJob"):
            steps[pre.metadata.urn.rpartition("::")[2]] = str(pre.metadata.op.value)

    stack.stack.preview(on_event=record, color="never")
    return steps


@pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH (make test sets it up)"
)
@pytest.mark.skipif(
    not _has_commit(OLD_LAYOUT), reason=f"needs commit {OLD_LAYOUT} (a shallow clone lacks it)"
)
def test_jobs_deployed_with_the_old_layout_update_and_destroy(tmp_path: Path) -> None:
    stack = TestStack([{"name": "a"}], jobs=JOBS)
    try:
        old_tree = _old_tree(tmp_path)
        shutil.copy(stack.config_file, old_tree / "stacks" / stack.config_file.name)
        old = auto.select_stack(stack_name=stack.name, work_dir=str(old_tree))
        old_outputs = old.up(on_output=stack._echo, color="never").outputs
        assert old_outputs["jobs"].value == ["after-hello", "hello"]

        # This tree's code on the same state: the pickled job providers load,
        # refresh reads the jobs back, and neither job has anything to change.
        stack.stack.refresh(on_output=stack._echo, color="never")
        assert _job_steps(stack) == {"job-hello": "same", "job-after-hello": "same"}
        outputs = stack.up(refresh=False)
        assert _leader(outputs) == "a"
        with stack.client("a") as client:
            live = client.get_job("hello")
        assert live is not None
        assert live["tags"] == {"server": "true"}
        assert live["executor_config"] == {"command": "echo hello", "shell": "true"}
        assert live["metadata"] == {"runs": "2"}

        stack.destroy()
        assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    finally:
        stack.close()
