"""A stack with jobs deployed by earlier code moves to the job set with nothing lost.

Earlier code had one ``DkronJob`` resource per job, pickled by reference as
``components.job_provider.DkronJobProvider``, while ``components/jobs.py`` was
one module. This test deploys a one-node stack with jobs using the project as
it was then (``OLD_LAYOUT``, from git) and runs one of them; this tree's code
then refreshes it (the pickled job providers load), and its update creates the
``DkronJobSet`` and drops the old resources without deleting a job: both stay
in Dkron as declared, run history included, and the next preview is quiet.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from components.dkron_client import DkronClient
from testing.harness import TestStack, eventually
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


def _ran(client: DkronClient, names: tuple[str, ...]) -> dict[str, int] | None:
    """Each job's success count, once every one of them has succeeded."""
    counts = {}
    for name in names:
        job = client.get_job(name)
        counts[name] = int((job or {}).get("success_count") or 0)
    return counts if all(counts.values()) else None


def _job_steps(stack: TestStack) -> dict[str, str]:
    """Job resource name (`DkronJob` or `DkronJobSet`) -> what a preview of this tree would do to it."""
    steps: dict[str, str] = {}

    def record(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.type.endswith((":DkronJob", ":DkronJobSet")):
            steps[pre.metadata.urn.rpartition("::")[2]] = str(pre.metadata.op.value)

    stack.stack.preview(on_event=record, color="never")
    return steps


@pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH (make test sets it up)"
)
@pytest.mark.skipif(
    not _has_commit(OLD_LAYOUT), reason=f"needs commit {OLD_LAYOUT} (a shallow clone lacks it)"
)
def test_jobs_deployed_with_the_old_layout_move_to_the_job_set_and_destroy(tmp_path: Path) -> None:
    stack = TestStack([{"name": "a"}], jobs=JOBS)
    try:
        old_tree = _old_tree(tmp_path)
        shutil.copy(stack.config_file, old_tree / "stacks" / stack.config_file.name)
        old = auto.select_stack(stack_name=stack.name, work_dir=str(old_tree))
        old_outputs = old.up(on_output=stack._echo, color="never").outputs
        assert old_outputs["jobs"].value == ["after-hello", "hello"]
        with DkronClient(old_outputs["nodes"].value["a"]["api_url"]) as client:
            client.run_job("hello")
            ran = eventually("hello and its child run", lambda: _ran(client, ("hello", "after-hello")), 60)

        # This tree's code on the same state: the pickled job providers load and
        # refresh; the update creates the set and drops the old resources.
        stack.stack.refresh(on_output=stack._echo, color="never")
        assert _job_steps(stack) == {"job-hello": "delete", "job-after-hello": "delete", "jobs": "create"}
        outputs = stack.up(refresh=False)
        assert _leader(outputs) == "a"
        with stack.client("a") as client:
            live = {job["name"]: job for job in client.list_jobs()}
            assert _ran(client, ("hello", "after-hello")) == ran, "the run history changed"
        assert sorted(live) == ["after-hello", "hello"]
        assert live["hello"]["tags"] == {"server": "true"}
        assert live["hello"]["executor_config"] == {"command": "echo hello", "shell": "true"}
        assert live["hello"]["metadata"] == {"runs": "2"}
        assert live["hello"]["dependent_jobs"] == ["after-hello"]
        assert _job_steps(stack) == {"jobs": "same"}

        stack.destroy()
        assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    finally:
        stack.close()
