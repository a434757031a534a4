"""Hundreds of jobs and jobs made by hand, on a real three-node cluster.

- 500 jobs (parents and children among them) in one `pulumi up`, each on every
  node as declared; one of them changed: the preview names that job and field
  alone; no change: nothing to do; one invalid job among 500 fails the preview
  with its name and field, and nothing is written.
- Jobs made through the API: the preview lists them, `make jobs-export` writes
  them as a job file, the stack takes them over with one edit and no change,
  and `jobs.prune_unmanaged` deletes the ones left undeclared.
- 5,000 jobs made through the API: `make preview` counts them, names ten and
  gives `make jobs-export`, with no line per job; `make status` counts the jobs
  by state and lists only the one that fails; taking over and pruning still work.
- A stack deployed by the program from before, whose state holds the hand-made
  jobs' digests in clear, previews with no line per job and updates with no change.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components.job_provider import managed_job
from components.job_set_provider import digest
from testing.harness import (
    ROOT,
    TestStack,
    assert_previewed,
    eventually,
    hand_made_jobs,
    has_commit,
    make_by_hand,
    preview_ops,
    project_at,
)
from testing.processes import descendants, exited
from tests.integration.test_jobs_layout_compat import _job_steps

pytestmark = pytest.mark.integration

NODES = [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]
COUNT = 500


def bulk(count: int) -> list[dict[str, Any]]:
    """`count` jobs; every tenth has the one before it as parent."""
    jobs: list[dict[str, Any]] = []
    for i in range(count):
        job: dict[str, Any] = {
            "name": f"bulk-{i:03d}",
            "executor": "shell",
            "executor_config": {"command": f"echo {i}"},
        }
        if i % 10 == 9:
            job["parent_job"] = f"bulk-{i - 1:03d}"
        else:
            job["schedule"] = f"@every {24 + i % 5}h"
        jobs.append(job)
    return jobs


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    test_stack = TestStack(NODES)
    try:
        test_stack.up(refresh=False)
        yield test_stack
    finally:
        test_stack.close()


def _live(stack: TestStack, node: str) -> dict[str, dict[str, Any]]:
    with stack.client(node) as client:
        return {str(job["name"]): job for job in client.list_jobs()}


def _all_as_declared(
    stack: TestStack, jobs: list[dict[str, Any]], extra: frozenset[str] = frozenset()
) -> bool:
    """Every node holds exactly `jobs` (plus `extra` names), each as declared."""
    for node in stack.node_names():
        live = _live(stack, node)
        missing = [j["name"] for j in jobs if j["name"] not in live]
        wrong = [
            j["name"] for j in jobs if j["name"] in live and managed_job(live[j["name"]]) != managed_job(j)
        ]
        unexpected = set(live) - {j["name"] for j in jobs} - extra
        if missing or wrong or unexpected:
            raise AssertionError(
                f"{node}: missing {missing[:5]}, not as declared {wrong[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
    return True


def test_five_hundred_jobs_in_one_up_then_one_changed_then_none(stack: TestStack) -> None:
    jobs = bulk(COUNT)
    stack.set_jobs(jobs)
    preview = stack.preview()
    assert_previewed(preview, f"job changes: {COUNT} new; 0 unchanged", "+ bulk-000: new", "+ bulk-499: new")

    started = time.monotonic()
    outputs = stack.up()
    print(f"JOBS500 up took {time.monotonic() - started:.1f}s")
    assert len(outputs["jobs"]) == COUNT
    eventually(f"all {COUNT} jobs on every node", lambda: _all_as_declared(stack, jobs), 60)
    parent = _live(stack, "n2")["bulk-008"]
    assert parent["dependent_jobs"] == ["bulk-009"], parent

    # One job changed among 500: the preview names it and its field, nothing else.
    changed = copy.deepcopy(jobs)
    changed[123]["schedule"] = "@every 2h"
    stack.set_jobs(changed)
    preview = stack.preview()
    assert_previewed(preview, f"job changes: 1 changed; {COUNT - 1} unchanged", "~ bulk-123: schedule")
    assert set(re.findall(r"[~+-] (bulk-\d+):", preview.stdout + preview.stderr)) == {"bulk-123"}
    assert preview_ops(preview).get("update") == 1
    started = time.monotonic()
    stack.up()
    print(f"JOBS500 one change took {time.monotonic() - started:.1f}s")
    eventually("the changed job on every node", lambda: _all_as_declared(stack, changed), 30)

    started = time.monotonic()
    preview = stack.preview()
    print(f"JOBS500 no-change preview took {time.monotonic() - started:.1f}s")
    assert set(preview_ops(preview)) == {"same"}
    assert_previewed(preview, f"no job changes ({COUNT} jobs)")


def test_an_update_killed_half_way_is_finished_by_the_next_up(stack: TestStack) -> None:
    before = copy.deepcopy(stack.cluster["jobs"])
    assert len(before) == COUNT, "the previous test left its jobs"
    after = copy.deepcopy(before)
    for job in after:
        job["executor_config"] = {"command": f"{job['executor_config']['command']} v2"}
    stack.set_jobs(after)

    def rewritten() -> int:
        live = _live(stack, "n1")
        return sum(
            live[j["name"]]["executor_config"].get("command") == j["executor_config"]["command"]
            for j in after
        )

    # `make up` as a user runs it, killed (make, the CLI and what shares its process
    # group) once the first jobs are rewritten: a crash in the middle of the update.
    up = subprocess.Popen(
        ["make", "up", f"STACK={stack.name}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        done = eventually("the first jobs rewritten", lambda: rewritten() or None, 120, poll_s=0.05)
        started = descendants(up.pid)
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    # The engine starts the language host and the providers in process groups of their
    # own: they end because their engine is gone, not because the kill reached them.
    plugins = [
        command
        for command in started.values()
        if "pulumi-language-python " in command or "pulumi-dynamic-provider.py" in command
    ]
    assert len(plugins) >= 2, started
    with contextlib.suppress(AssertionError):
        eventually("the killed update's processes gone", lambda: all(map(exited, started)) or None, 30, 0.2)
    survivors = {pid: command for pid, command in started.items() if not exited(pid)}
    assert not survivors, f"left running by the killed update: {survivors}"
    left = rewritten()
    print(f"CRASH killed with {done} of {COUNT} jobs rewritten ({left} once everything stopped)")
    assert left < COUNT, "the update finished before the kill: it tested nothing"

    # The next `make up` removes the dead process's lock, finds the state of the last
    # finished update, and does what is left.
    again = subprocess.run(
        ["make", "up", f"STACK={stack.name}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "removed the update lock of process" in again.stderr, again.stderr[-2000:]
    eventually(f"all {COUNT} jobs as declared on every node", lambda: _all_as_declared(stack, after), 60)
    preview = stack.preview()
    assert set(preview_ops(preview)) == {"same"}, preview_ops(preview)
    assert_previewed(preview, f"no job changes ({COUNT} jobs)")


def test_one_invalid_job_among_five_hundred_fails_the_preview_and_writes_nothing(stack: TestStack) -> None:
    before = copy.deepcopy(stack.cluster["jobs"])
    assert len(before) == COUNT, "the previous test left its jobs"
    broken = copy.deepcopy(before)
    broken[321]["schedule"] = "every day"
    broken.append(
        {"name": "new-one", "schedule": "@daily", "executor": "shell", "executor_config": {"command": "true"}}
    )
    stack.set_jobs(broken)
    try:
        with pytest.raises(auto.CommandError) as failed:
            stack.up()
        assert "cluster.jobs[321].schedule = 'every day'" in str(failed.value)
        assert "new-one" not in _live(stack, "n1")
        _all_as_declared(stack, before)
    finally:
        stack.set_jobs(before)


def _export(stack: TestStack, out: Path, jobs: str = "") -> subprocess.CompletedProcess[str]:
    """`make jobs-export` as a user runs it."""
    args = ["make", "jobs-export", f"STACK={stack.name}", f"OUT={out}"]
    if jobs:
        args.append(f"JOBS={jobs}")
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def test_jobs_made_by_hand_are_listed_exported_taken_over_and_pruned(
    stack: TestStack, tmp_path: Path
) -> None:
    declared = [
        {"name": "kept", "schedule": "@daily", "executor": "shell", "executor_config": {"command": "true"}}
    ]
    stack.set_jobs(declared)
    stack.up()
    by_hand: list[dict[str, Any]] = [
        {
            "name": "hand-parent",
            "schedule": "0 15 3 * * *",
            "timezone": "Europe/Paris",
            "owner": "ops",
            "tags": {"server": "true:1"},
            "metadata": {"team": "ops"},
            "retries": 2,
            "concurrency": "forbid",
            "executor": "shell",
            "executor_config": {"command": "echo parent", "shell": "true", "timeout": "30s"},
        },
        {
            "name": "hand-child",
            "parent_job": "hand-parent",
            "executor": "shell",
            "executor_config": {"command": "echo child"},
        },
        {
            "name": "hand-http",
            "schedule": "@every 6h",
            "disabled": True,
            "executor": "http",
            "executor_config": {"method": "GET", "url": "http://127.0.0.1:9/", "expectCode": "200"},
        },
        {"name": "stray", "schedule": "@hourly", "executor": "shell", "executor_config": {"command": "true"}},
    ]
    with stack.client("n1") as client:
        for job in by_hand:
            client.upsert_job(job)
    eventually("the hand-made jobs on every node", lambda: _all_as_declared(stack, [*declared, *by_hand]), 30)

    # The preview lists what no stack declares (make preview refreshes first, as here).
    stack.stack.refresh(on_output=stack._echo, color="never")
    assert_previewed(
        stack.preview(),
        "jobs in Dkron that no stack declares (4), left alone: hand-child, hand-http, hand-parent, stray",
    )

    # Exported by name; the child's parent comes along.
    out = tmp_path / "taken-over.yaml"
    done = _export(stack, out, "hand-child,hand-http")
    assert done.returncode == 0, done.stderr
    assert "also exporting 'hand-parent'" in done.stdout
    assert f"pulumi config set --stack {stack.name} --path 'cluster.job_files[0]' {out}" in done.stdout
    written = yaml.safe_load(out.read_text())["jobs"]
    assert [job["name"] for job in written] == ["hand-child", "hand-http", "hand-parent"]
    assert all("status" not in job and "next" not in job and "success_count" not in job for job in written)
    # Asking again for a file that exists does not overwrite it.
    again = _export(stack, out, "stray")
    assert again.returncode == 2
    assert "exists" in again.stderr

    # One edit (the job file added) and the three are taken over with no change at all.
    stack.configure(lambda cluster: cluster.__setitem__("job_files", [str(out)]))
    preview = stack.preview()
    assert_previewed(
        preview,
        "= hand-child: taken over, no change",
        "= hand-http: taken over, no change",
        "= hand-parent: taken over, no change",
        "left alone: stray",
    )
    assert set(preview_ops(preview)) == {"same"}, preview_ops(preview)
    outputs = stack.up()
    assert outputs["jobs"] == ["hand-child", "hand-http", "hand-parent", "kept"]

    # Pruning: the preview lists the job to delete first, the up deletes it alone.
    stack.set_project_config("jobs", {"prune_unmanaged": True})
    stack.stack.refresh(on_output=stack._echo, color="never")
    preview = stack.preview()
    assert_previewed(preview, "- stray: delete (no stack declares it; jobs.prune_unmanaged is on)")
    assert preview_ops(preview).get("update") == 1
    stack.up()
    eventually("stray pruned, the rest kept", lambda: _all_as_declared(stack, [*declared, *by_hand[:3]]), 30)
    # A rename replaces the job: the preview says so, the up creates the new name and deletes the old.
    renamed = [{**declared[0], "name": "kept-renamed"}]
    stack.set_jobs(renamed)
    assert_previewed(
        stack.preview(),
        "+- kept -> kept-renamed: renamed, so replaced (creates kept-renamed, deletes kept;",
    )
    stack.up()
    eventually("kept renamed", lambda: _all_as_declared(stack, [*renamed, *by_hand[:3]]), 30)

    nothing = _export(stack, tmp_path / "none.yaml")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to export" in nothing.stdout
    assert set(preview_ops(stack.preview())) == {"same"}


BY_HAND = 5000


def _make(stack: TestStack, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A make target on the stack as a user runs it (`make preview` puts everything on stdout)."""
    return subprocess.run(
        ["make", "--no-print-directory", target, f"STACK={stack.name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _job_lines(text: str) -> list[str]:
    """The lines that name one of the hand-made bulk jobs on a line of its own (a diff entry or a row)."""
    return [line for line in text.splitlines() if re.match(r"\s*[-+~]?\s*k\d{5}\b", line)]


def test_thousands_of_jobs_made_by_hand_are_counted_in_the_preview_and_the_status(
    stack: TestStack, tmp_path: Path
) -> None:
    declared = [
        {"name": "kept", "schedule": "@daily", "executor": "shell", "executor_config": {"command": "true"}}
    ]
    stack.set_project_config("jobs", None)
    stack.configure(lambda cluster: cluster.update(jobs=declared, job_files=[]))
    stack.up()
    leftovers = set(_live(stack, "n1")) - {"kept"}
    if leftovers:  # an earlier test's jobs, now undeclared: start from the declared job alone
        with stack.client("n1") as client:
            for name in sorted(leftovers, key=lambda n: n != "hand-child"):
                client.delete_job(name)
    failing = {
        "name": "hand-failing",
        "schedule": "@every 2s",
        "executor": "shell",
        "executor_config": {"command": "false"},
    }
    paused = {**failing, "name": "hand-paused", "disabled": True}
    make_by_hand(stack.api_url("n1"), [*hand_made_jobs(BY_HAND), failing, paused])
    eventually(
        "the hand-made jobs on every node",
        lambda: all(len(_live(stack, n)) == BY_HAND + 3 for n in stack.node_names()) or None,
        60,
    )

    # The preview, as `make preview` prints it: the count, ten names, the export command;
    # no line per job (the refresh used to print each job's digest, then every name on one line).
    preview = _make(stack, "preview")
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    text = preview.stdout
    print(f"BYHAND make preview: {len(text.splitlines())} lines\n{text}")
    names = ", ".join(["hand-failing", "hand-paused", *(f"k{i:05d}" for i in range(8))])
    assert (
        f"jobs in Dkron that no stack declares ({BY_HAND + 2}), left alone: {names} and {BY_HAND + 2 - 10} more"
        in text
    ), text[-3000:]
    assert f"make jobs-export STACK={stack.name} (writes them all to a job file)" in text
    assert _job_lines(text) == [], _job_lines(text)[:5]
    assert not re.search(r"^\s*[-+~]?\s*unmanaged\s*:", text, re.MULTILINE)  # the digests' diff
    assert len(text.splitlines()) < 80, text[-3000:]

    # The status sums the jobs up and lists the failing one alone; JSON=1 holds every job.
    eventually(
        "hand-failing failed",
        lambda: _live(stack, "n1")["hand-failing"].get("error_count") or None,
        60,
    )
    status = _make(stack, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    print(f"BYHAND make status: {len(status.stdout.splitlines())} lines\n{status.stdout}")
    assert (
        f"jobs {BY_HAND + 3}: {BY_HAND + 1} ok, 1 failing, 0 late, 0 caught up, 1 disabled" in status.stdout
    )
    assert "jobs that need attention (1 of" in status.stdout
    assert "hand-failing" in status.stdout
    assert "hand-paused" not in status.stdout
    assert _job_lines(status.stdout) == []
    assert len(status.stdout.splitlines()) < 30, status.stdout
    every = _make(stack, "status", "JSON=1")
    data = json.loads(every.stdout)
    assert len(data["jobs"]) == BY_HAND + 3
    assert data["job_counts"]["failing"] == 1

    # Taking some over (declared as they are, in a job file) needs no write, and the preview
    # names ten; pruning the rest names ten and counts the others. (Not thousands taken over:
    # the stack output `jobs` lists the managed jobs, and Pulumi prints a line for each new one.)
    with stack.client("n1") as client:
        client.delete_job("hand-failing")  # it would not stay as declared: it keeps running
    half = 25
    taken = hand_made_jobs(half)
    job_file = tmp_path / "taken-over.yaml"
    job_file.write_text(yaml.safe_dump({"jobs": taken}, sort_keys=False))
    stack.configure(lambda cluster: cluster.update(job_files=[str(job_file)]))
    preview = _make(stack, "preview")
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    assert f"job changes: {half} taken over; 1 unchanged" in preview.stdout
    assert "= k00000: taken over, no change" in preview.stdout
    assert (
        f"  = ... and {half - 10} more taken over, no change (the stack's job files list them)"
        in preview.stdout
    )
    assert len([line for line in preview.stdout.splitlines() if "taken over, no change" in line]) == 11
    stack.stack.refresh(on_output=stack._echo, color="never")  # as `make up` does first
    assert set(preview_ops(stack.preview())) == {"same"}
    stack.set_project_config("jobs", {"prune_unmanaged": True})
    preview = _make(stack, "preview")
    assert preview.returncode == 0, preview.stdout[-3000:]
    pruned = BY_HAND - half + 1
    assert f"job changes: {half} taken over, {pruned} pruned; 1 unchanged" in preview.stdout
    assert f"  - ... and {pruned - 10} more no stack declares; every one before the prune:" in preview.stdout
    assert len([line for line in preview.stdout.splitlines() if "no stack declares" in line]) == 11
    stack.up()
    eventually("the rest pruned", lambda: _all_as_declared(stack, [*declared, *taken]), 60)
    stack.set_project_config("jobs", None)


# The program before the `unmanaged` digests became a secret: its state holds them in clear.
DIGESTS_IN_CLEAR = "7fe0114278c959016a06dd61b8b3b015fe8827f1"


@pytest.mark.skipif(not has_commit(DIGESTS_IN_CLEAR), reason=f"needs commit {DIGESTS_IN_CLEAR}")
def test_a_stack_deployed_before_with_jobs_made_by_hand_previews_and_updates_quietly(tmp_path: Path) -> None:
    declared = [
        {"name": "kept", "schedule": "@daily", "executor": "shell", "executor_config": {"command": "true"}}
    ]
    stack = TestStack([{"name": "a"}], jobs=declared)
    try:
        old_tree = project_at(DIGESTS_IN_CLEAR, tmp_path / "old")
        shutil.copy(stack.config_file, old_tree / "stacks" / stack.config_file.name)
        old = auto.select_stack(stack_name=stack.name, work_dir=str(old_tree))
        old.up(on_output=stack._echo, color="never")
        stack.last_outputs = stack.outputs()
        by_hand = hand_made_jobs(300)
        make_by_hand(stack.api_url("a"), by_hand)
        # The earlier program's refresh puts every hand-made job's digest in the state, in clear.
        old.refresh(on_output=stack._echo, color="never")
        live = _live(stack, "a")
        assert digest(live["k00000"]) in stack.export_as_user()

        # This program: the preview says what it always did (nothing to do) and no digest or
        # name per job; the update changes nothing, and the digests go out of the clear.
        preview = _make(stack, "preview")
        assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
        assert "jobs in Dkron that no stack declares (300), left alone: k00000," in preview.stdout
        assert _job_lines(preview.stdout) == [], _job_lines(preview.stdout)[:5]
        # (The node image is rebuilt: its context is this checkout, not the old tree; the nodes
        # move to mutual TLS, so the set is updated to call them over HTTPS, writing no job.)
        assert _job_steps(stack) == {"jobs": "update"}
        stack.up()  # and the harness's refreshed preview proposes no change
        assert digest(live["k00000"]) not in stack.export_as_user()

        # More jobs by hand: the refresh finds them and still prints no line per job.
        make_by_hand(stack.api_url("a"), hand_made_jobs(300, prefix="m"))
        preview = _make(stack, "preview")
        assert "jobs in Dkron that no stack declares (600), left alone:" in preview.stdout
        assert not [line for line in preview.stdout.splitlines() if re.match(r"\s*[-+~]?\s*m\d{5}\b", line)]
        assert set(preview_ops(stack.preview())) == {"same"}
    finally:
        stack.close()
