"""Least privilege on real nodes: who the agent and its jobs run as, and what they may touch.

A one-node stack shows what a job sees (through its execution output in the
Dkron API): its uid and the agent's are the image's user, it has no
capability, cannot gain any, and can write only /tmp and the data volume; the
blog's Python job still runs. Opting the node back into root by tag warns in
the preview and gives the job uid 0. A three-node stack deployed as root by
the program as it was before (`git archive` of `ROOT_COMMIT`) rolls to the
user with its jobs, their runs and its Raft configuration intact.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from components.change_summary import TO_TLS
from components.dkron_client import DkronClient
from components.docker_objects import engine
from components.health import raft_peers
from components.node_config import DATA_DIR
from components.privilege import AGENT_UID, TMP
from testing.harness import ROOT, TestStack, eventually

pytestmark = pytest.mark.integration

# The last commit whose nodes ran as root.
ROOT_COMMIT = "02630fb"

# What a job reports: its uid, its agent's (pid 1), its capabilities, and
# whether it can create a file in each place.
PLACES = ("/etc", "/", "/usr/local/bin", "/opt/dkron-jobs", TMP, DATA_DIR)
PROBE = "; ".join(
    [
        "echo uid=$(id -u)",
        "echo agent=$(awk '/^Uid:/{print $2}' /proc/1/status)",
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -d '\\t' | sed 's/:/=/'",
        *(
            f"if touch {place.rstrip('/')}/probe-file 2>/dev/null; then echo write:{place}=yes;"
            f" rm -f {place.rstrip('/')}/probe-file; else echo write:{place}=no; fi"
            for place in PLACES
        ),
    ]
)
NO_CAPS = "0000000000000000"
# A job that runs on one server per run.
KEPT = {"name": "kept", "tags": {"server": "true:1"}, "executor_config": {"command": "echo kept"}}


def _finished(client: DkronClient, name: str) -> list[dict[str, Any]]:
    return [e for e in client.executions(name) if str(e.get("finished_at") or "").startswith("2")]


def run_once(client: DkronClient, job: dict[str, Any]) -> dict[str, Any]:
    """Create (or update) `job`, run by hand only, run it once, and return that run."""
    earlier = len(_finished(client, job["name"]))
    client.upsert_job({"schedule": "@manually", "executor": "shell", **job})
    client.run_job(job["name"])

    def finished() -> dict[str, Any] | None:
        done = _finished(client, job["name"])
        return max(done, key=lambda e: str(e["started_at"])) if len(done) > earlier else None

    return eventually(f"a finished run of {job['name']}", finished, timeout_s=30, poll_s=0.5)


def counted(client: DkronClient, name: str) -> dict[str, Any] | None:
    """The job once its last run is counted (success_count > 0)."""
    job = client.get_job(name)
    return job if job and job.get("success_count") else None


def probe(client: DkronClient) -> dict[str, str]:
    execution = run_once(client, {"name": "probe", "executor_config": {"command": PROBE, "shell": "true"}})
    assert execution["success"], execution["output"]
    return dict(line.split("=", 1) for line in execution["output"].splitlines() if "=" in line)


def test_the_agent_and_its_jobs_are_unprivileged_unless_a_tag_opts_the_node_into_root() -> None:
    stack = TestStack([{"name": "solo", "tags": {"python": "daily", "tier": "legacy"}}])
    try:
        outputs = stack.up(refresh=False)
        assert outputs["nodes"]["solo"]["user"] == "dkron"
        with DkronClient(stack.api_url("solo")) as client:
            eventually("a leader", client.leader)
            seen = probe(client)
            assert seen["uid"] == seen["agent"] == str(AGENT_UID), seen
            # No capability, none to be had: the bounding set is empty and
            # setuid binaries (su) cannot raise privileges.
            assert seen["CapEff"] == seen["CapBnd"] == NO_CAPS, seen
            assert seen["NoNewPrivs"] == "1", seen
            assert {p: seen[f"write:{p}"] for p in PLACES} == {
                "/etc": "no",
                "/": "no",
                "/usr/local/bin": "no",
                "/opt/dkron-jobs": "no",
                TMP: "yes",
                DATA_DIR: "yes",
            }, seen

            # The blog's job: a Python script on the one node tagged python=daily.
            hello = run_once(
                client,
                {
                    "name": "python-daily",
                    "tags": {"python": "daily:1"},
                    "executor_config": {"command": "python3 /opt/dkron-jobs/hello.py"},
                },
            )
            assert hello["success"], hello["output"]
            assert hello["output"].startswith("hello from solo at "), hello["output"]

        # Back onto root, by tag: said in the preview, then done.
        stack.configure(lambda c: c.update(security={"run_as_root_tags": {"tier": "legacy"}}))
        preview = stack.preview()
        said = preview.stdout + preview.stderr
        assert "nodes running as root (security.run_as_root_tags {tier: legacy}): solo." in said, said
        assert "solo (leader, last): replace: runs as dkron -> root" in said, said
        stack.up()
        with DkronClient(stack.api_url("solo")) as client:
            eventually("a leader", client.leader)
            seen = probe(client)
            assert seen["uid"] == seen["agent"] == "0", seen
            assert seen["write:/etc"] == "yes", seen
    finally:
        stack.close()


def _old_program(into: Path) -> Path:
    """The project at ROOT_COMMIT, runnable with this checkout's virtualenv."""
    archive = subprocess.run(
        ["git", "archive", ROOT_COMMIT], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


def _in_container(container: str, *command: str) -> str:
    with engine() as client:
        code, output = client.containers.get(container).exec_run(list(command))
    text = output.decode(errors="replace")
    assert code == 0, text
    return text


def test_a_stack_deployed_as_root_rolls_to_the_user_with_its_jobs_and_raft_state(tmp_path: Path) -> None:
    stack = TestStack([{"name": "n1"}, {"name": "n2"}, {"name": "n3"}])
    try:
        old = _old_program(tmp_path / "old")
        shutil.copy(stack.config_file, old / "stacks" / stack.config_file.name)
        before = auto.create_or_select_stack(stack_name=stack.name, work_dir=str(old))
        before.up(on_output=stack._echo, color="never")
        stack.last_outputs = stack.outputs()
        containers = {n: stack.container(n) for n in stack.node_names()}
        # As the issue found them: root, and the Raft data root's.
        assert _in_container(containers["n1"], "id", "-u").strip() == "0"
        assert _in_container(containers["n1"], "stat", "-c", "%u", f"{DATA_DIR}/raft/raft.db").strip() == "0"

        with DkronClient(stack.api_url("n1")) as client:
            leader = str(eventually("a leader", client.leader)["Name"])
            ran = run_once(client, KEPT)
            assert ran["success"], ran
            kept = eventually("kept's run counted", lambda: counted(client, "kept"))
            job_names = sorted(j["name"] for j in client.list_jobs())
        peers_before = raft_peers(containers[leader])
        assert sorted(p.node for p in peers_before.values() if p.voter) == ["n1", "n2", "n3"]

        said = stack.preview()
        text = said.stdout + said.stderr
        # The same update moves the stack onto mutual TLS: every node restarts at once,
        # and nothing of Raft's state, the jobs or their runs may be lost on the way.
        assert f"  {TO_TLS}" in text, text
        for node in stack.node_names():
            line = next(line for line in text.splitlines() if line.startswith(f"  {node}: replace: "))
            assert "; runs as root -> dkron; API http://127.0.0.1:" in line, text
            assert line.endswith(f" -> {stack.api_url(node).replace('http://', 'https://')}"), line
        outputs = stack.up()

        assert outputs["voters"] == ["n1", "n2", "n3"], outputs
        assert {n: r["user"] for n, r in outputs["nodes"].items()} == dict.fromkeys(
            stack.node_names(), "dkron"
        )
        for node, container in containers.items():
            # The agent is the user now, and every file of its data is the user's.
            assert _in_container(container, "awk", "/^Uid:/{print $2}", "/proc/1/status").strip() == str(
                AGENT_UID
            )
            assert _in_container(container, "find", DATA_DIR, "!", "-uid", str(AGENT_UID)) == "", node
            with DkronClient(stack.api_url(node)) as client:
                # Reads are served from each node's own replica of the Raft log.
                assert sorted(j["name"] for j in client.list_jobs()) == job_names, node
                job = client.get_job("kept")
                assert job is not None, node
                assert job["success_count"] == kept["success_count"] == 1, (node, job)
                assert job["last_success"] == kept["last_success"], (node, job)
                assert [e["output"].strip() for e in client.executions("kept")] == ["kept"], node
        leader_now = outputs["leader"]
        peers_after = raft_peers(containers[leader_now])
        assert {p.node: p.voter for p in peers_after.values()} == {n: True for n in stack.node_names()}
        with DkronClient(stack.api_url(leader_now)) as client:
            again = run_once(client, KEPT)
            assert again["success"], again
    finally:
        stack.close()
