"""Jobs declared in the stack config, deployed by a real `pulumi up` on a real three-node cluster.

Every job of a stack is one `DkronJobSet` resource: an update of any number of
jobs is one `update` step of it, and the preview's job summary (the lines the
program prints above the resources) names each job and the fields it changes.

The tests share one stack and run in file order; each sets the stack's `jobs:`
to what it needs (so the previous test's jobs are deleted by its `up`):
create/update/delete; drift fixed by `up` after an edit or a delete made
through the API; adopting a job made by hand; a child job running after its
parent; chained job updates that ride out the leader being killed; `up
--refresh` bringing back a cluster whose containers are all gone; 100 jobs in
one update; secret env values that reach the job but never the state (and a
missing or plain-text key that fails the preview); and, last, `destroy` with
every container already gone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest
from pulumi import automation as auto

from components.docker_objects import engine
from components.health import observe
from testing.harness import TestStack, assert_previewed, eventually, preview_ops

NODES = [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]
ONE_SERVER = {"server": "true:1"}
# How Pulumi marks a secret value in an exported state.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - a marker, not a password

BACKUP = {
    "name": "backup",
    "displayname": "Nightly backup",
    "schedule": "@every 1h",
    "owner": "ops",
    "owner_email": "ops@example.com",
    "tags": ONE_SERVER,
    "metadata": {"team": "ops"},
    "retries": 2,
    "concurrency": "forbid",
    "executor": "shell",
    "executor_config": {"command": "echo backup", "timeout": "30s"},
}
REPORT = {
    "name": "report",
    "schedule": "0 30 2 * * *",
    "timezone": "Europe/Paris",
    "executor": "shell",
    "executor_config": {"command": "echo report", "shell": "true"},
}
PARENT = {
    "name": "parent-job",
    "schedule": "@manually",
    "tags": ONE_SERVER,
    "executor": "shell",
    "executor_config": {"command": "echo parent; sleep 1", "shell": "true"},
}
CHILD = {
    "name": "child-job",
    "parent_job": "parent-job",
    "tags": ONE_SERVER,
    "executor": "shell",
    "executor_config": {"command": "echo child"},
}


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    test_stack = TestStack(NODES)
    try:
        test_stack.up(refresh=False)
        yield test_stack
    finally:
        test_stack.close()


# --- helpers --------------------------------------------------------------------------


def _api(stack: TestStack, nodes: list[str] | None = None) -> dict[str, str]:
    return {n: stack.api_url(n) for n in nodes or stack.node_names()}


def _live(stack: TestStack, node: str, name: str) -> dict[str, Any] | None:
    with stack.client(node) as client:
        return client.get_job(name)


def _mismatches(declared: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """Declared fields (secret_env aside) that Dkron does not hold as declared."""
    if live is None:
        return ["job is missing"]
    return [
        f"{key}: declared {value!r}, Dkron has {live.get(key)!r}"
        for key, value in declared.items()
        if key != "secret_env" and _comparable(key, live.get(key)) != _comparable(key, value)
    ]


def _comparable(key: str, value: Any) -> Any:
    """The shell env as a set of entries: their order does not matter."""
    if key == "executor_config" and isinstance(value, dict) and "env" in value:
        return {**value, "env": set(value["env"].split(","))}
    return value


def _wait_declared(
    stack: TestStack, job: dict[str, Any], nodes: list[str] | None = None, timeout_s: float = 30
) -> dict[str, dict[str, Any]]:
    """Wait until every node (of `nodes`) returns `job` as declared; their answers."""

    def check() -> dict[str, dict[str, Any]]:
        found = {}
        for node in nodes or stack.node_names():
            live = _live(stack, node, job["name"])
            problems = _mismatches(job, live)
            if problems:
                raise AssertionError(f"{node}: job {job['name']!r}: {'; '.join(problems)}")
            assert live is not None
            found[node] = live
        return found

    return eventually(f"job {job['name']!r} as declared on every node", check, timeout_s, poll_s=0.5)


def _wait_gone(stack: TestStack, name: str, timeout_s: float = 30) -> None:
    def check() -> bool:
        present = [n for n in stack.node_names() if _live(stack, n, name) is not None]
        if present:
            raise AssertionError(f"job {name!r} still on {present}")
        return True

    eventually(f"job {name!r} gone from every node", check, timeout_s, poll_s=0.5)


def _op_counts(changes: Mapping[auto.OpType, int] | None) -> dict[str, int]:
    # Typed as OpType keys, but they are the plain strings of the engine's JSON (OpType is a str enum).
    return {op: count for op, count in (changes or {}).items()}


def _last_updatepreview_ops(stack: TestStack) -> dict[str, int]:
    history = stack.stack.history(page_size=1)
    assert history, "the stack has no update history"
    return _op_counts(history[0].resource_changes)


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _finished(execution: dict[str, Any]) -> bool:
    finished = execution.get("finished_at") or ""
    return bool(finished) and not finished.startswith("0001-")


def _finished_runs(stack: TestStack, name: str) -> list[dict[str, Any]]:
    with stack.client(stack.node_names()[0]) as client:
        return [e for e in client.executions(name) if _finished(e)]


def _whole(stack: TestStack) -> bool:
    view = observe(_api(stack), {n: stack.container(n) for n in stack.node_names()})
    problems = view.problems(stack.node_names())
    if problems:
        raise AssertionError("; ".join(problems))
    return True


# --- tests -----------------------------------------------------------------------------


def test_declared_jobs_are_created_updated_and_deleted(stack: TestStack) -> None:
    stack.set_jobs([BACKUP, REPORT])
    outputs = stack.up()
    assert outputs["jobs"] == ["backup", "report"]
    _wait_declared(stack, BACKUP)
    _wait_declared(stack, REPORT)

    # Change one job's schedule and command: the preview names the job and its fields, the up makes it.
    changed = {**BACKUP, "schedule": "@every 2h", "executor_config": {"command": "echo backup v2"}}
    stack.set_jobs([changed, REPORT])
    preview = stack.preview()
    assert preview_ops(preview).get("update") == 1
    assert_previewed(
        preview,
        "job changes: 1 changed; 1 unchanged",
        "~ backup: executor_config.command, executor_config.timeout, schedule",
    )
    assert "~ report" not in preview.stdout + preview.stderr
    stack.up()
    assert _last_updatepreview_ops(stack).get("update") == 1, _last_updatepreview_ops(stack)
    backup = _wait_declared(stack, changed)["n1"]
    assert backup["executor_config"] == {"command": "echo backup v2"}  # the old timeout is gone too
    _wait_declared(stack, REPORT)

    # Remove one from the config: it is deleted from Dkron, the other stays.
    stack.set_jobs([changed])
    assert_previewed(stack.preview(), "- report: delete")
    outputs = stack.up()
    assert outputs["jobs"] == ["backup"]
    _wait_gone(stack, "report")
    _wait_declared(stack, changed)


def test_an_edit_made_through_the_api_shows_in_preview_and_up_reverts_it(stack: TestStack) -> None:
    stack.set_jobs([BACKUP])
    stack.up()
    _wait_declared(stack, BACKUP)

    edited = {**BACKUP, "schedule": "@every 5m", "executor_config": {"command": "echo edited by hand"}}
    with stack.client("n2") as client:
        client.upsert_job(edited)
    _wait_declared(stack, edited)

    stack.stack.refresh(on_output=stack._echo, color="never")
    preview = stack.preview()
    changes = preview_ops(preview)
    assert changes.get("update") == 1, changes
    assert set(changes) <= {"update", "same"}, changes
    # The hand edit dropped the timeout too: three fields differ from the declared job.
    assert_previewed(preview, "~ backup: executor_config.command, executor_config.timeout, schedule")

    stack.up()
    _wait_declared(stack, BACKUP)
    assert set(preview_ops(stack.preview())) == {"same"}


def test_a_job_deleted_through_the_api_is_recreated_by_up(stack: TestStack) -> None:
    stack.set_jobs([BACKUP])
    with stack.client("n3") as client:
        assert client.delete_job("backup")
    _wait_gone(stack, "backup")

    stack.stack.refresh(on_output=stack._echo, color="never")
    assert_previewed(stack.preview(), "+ backup: new")
    stack.up(refresh=True)
    _wait_declared(stack, BACKUP)
    assert _last_updatepreview_ops(stack).get("update") == 1, _last_updatepreview_ops(stack)


def test_a_job_made_by_hand_is_adopted_when_declared(stack: TestStack) -> None:
    by_hand = {
        "name": "adopted",
        "schedule": "@every 10m",
        "metadata": {"made": "by-hand"},
        "retries": 5,
        "executor": "shell",
        "executor_config": {"command": "echo by hand", "env": "A=1"},
    }
    with stack.client("n1") as client:
        client.upsert_job(by_hand)
    _wait_declared(stack, by_hand)
    assert_previewed(
        stack.preview(),
        "jobs in Dkron that no stack declares (1), left alone: adopted",
        f"take them over: make jobs-export STACK={stack.name} JOBS=adopted",
    )

    declared = {
        "name": "adopted",
        "schedule": "@every 1h",
        "owner": "platform",
        "tags": ONE_SERVER,
        "executor": "shell",
        "executor_config": {"command": "echo declared"},
    }
    stack.set_jobs([BACKUP, declared])
    assert_previewed(
        stack.preview(), "= adopted: taken over, changes executor_config.command, executor_config.env,"
    )
    outputs = stack.up()
    assert outputs["jobs"] == ["adopted", "backup"]
    live = _wait_declared(stack, declared)
    # The declared definition replaced the hand-made one as a whole.
    for node, job in live.items():
        assert not job.get("metadata"), (node, job.get("metadata"))
        assert not job.get("retries"), (node, job.get("retries"))
        assert job["executor_config"] == {"command": "echo declared"}, node
    assert set(preview_ops(stack.preview())) == {"same"}


def test_a_child_job_runs_after_its_parent_succeeds(stack: TestStack) -> None:
    stack.set_jobs([BACKUP, PARENT, CHILD])
    stack.up()
    parent = _wait_declared(stack, PARENT)
    _wait_declared(stack, CHILD)
    assert all(job["dependent_jobs"] == ["child-job"] for job in parent.values()), parent
    assert not _finished_runs(stack, "child-job")

    with stack.client("n2") as client:
        client.run_job("parent-job")
    parent_runs = eventually("a finished run of parent-job", lambda: _finished_runs(stack, "parent-job"), 60)
    child_runs = eventually("a finished run of child-job", lambda: _finished_runs(stack, "child-job"), 60)

    assert len(parent_runs) == 1, parent_runs
    assert len(child_runs) == 1, child_runs
    parent_run, child_run = parent_runs[0], child_runs[0]
    assert parent_run["success"], parent_run
    assert child_run["success"], child_run
    assert "parent" in parent_run["output"]
    assert "child" in child_run["output"]
    assert _instant(child_run["started_at"]) >= _instant(parent_run["finished_at"]), (parent_run, child_run)

    # Removing both: the child goes first (Dkron refuses to delete a parent with children).
    stack.set_jobs([BACKUP])
    outputs = stack.up()
    assert outputs["jobs"] == ["backup"]
    _wait_gone(stack, "child-job")
    _wait_gone(stack, "parent-job")


def _chain(version: str, length: int = 15) -> list[dict[str, Any]]:
    """Jobs that each have the previous one as parent: `pulumi up` updates them one after another."""
    jobs = []
    for i in range(length):
        job: dict[str, Any] = {
            "name": f"chain-{i:02d}",
            "tags": ONE_SERVER,
            "executor": "shell",
            "executor_config": {"command": f"echo {version} {i}"},
        }
        job.update({"schedule": "@manually"} if i == 0 else {"parent_job": f"chain-{i - 1:02d}"})
        jobs.append(job)
    return jobs


def test_job_updates_issued_while_the_leader_is_killed_complete(stack: TestStack) -> None:
    stack.set_jobs([BACKUP, *_chain("v1")])
    stack.up(refresh=False)
    old_leader = observe(_api(stack)).leader
    assert old_leader in stack.node_names()
    survivors = [n for n in stack.node_names() if n != old_leader]

    # New commands for the whole chain. The set writes it one level of the
    # parent tree at a time (each child after its parent), so the leader is
    # killed as the update starts and the later writes are issued while
    # there is no leader, or a new one is being elected.
    chain = _chain("v2")
    stack.set_jobs([BACKUP, *chain])
    started = time.monotonic()
    marks: dict[str, float] = {}
    done: list[float] = []
    errors: list[BaseException] = []
    leaders: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def kill_leader() -> None:
        with engine() as client:
            client.containers.get(stack.container(old_leader)).kill()

    def on_event(event: auto.EngineEvent) -> None:
        pre, outs = event.resource_pre_event, event.res_outputs_event
        step = pre or outs
        if step is None or step.metadata.op != "update" or not step.metadata.type.endswith(":DkronJobSet"):
            return
        if outs:
            done.append(time.monotonic() - started)
        elif "killed" not in marks:
            marks["update started"] = time.monotonic() - started
            try:
                kill_leader()
            except Exception as err:  # noqa: BLE001 - reported by the assertions below
                errors.append(err)
            marks["killed"] = time.monotonic() - started

    def poll_leader() -> None:
        while not stop.is_set():
            leaders.append((time.monotonic() - started, observe(_api(stack, survivors)).leader))
            stop.wait(0.2)

    poller = threading.Thread(target=poll_leader, daemon=True)
    poller.start()
    try:
        result = stack.stack.up(on_output=stack._echo, on_event=on_event, refresh=True, color="never")
    finally:
        stop.set()
        poller.join()
    took = time.monotonic() - started

    assert not errors, errors
    assert "killed" in marks, "the up never updated the chain"
    assert result.summary.result == "succeeded"
    changes = _op_counts(result.summary.resource_changes)
    assert changes.get("update") == 1, changes
    elected = next((t for t, leader in leaders if t > marks["killed"] and leader in survivors), None)
    print(
        f"FAILOVER up took {took:.1f}s; {len(chain)} chained job updates from"
        f" +{marks['update started']:.2f}s to +{max(done):.2f}s; leader {old_leader} killed at"
        f" +{marks['killed']:.2f}s; new leader among {survivors} first seen at"
        f" +{elected if elected is not None else -1:.2f}s"
    )
    assert elected is not None, "no new leader was seen among the survivors"
    assert max(done) > elected, "the update finished before the failover: it tested nothing"
    for job in chain:
        _wait_declared(stack, job, nodes=survivors)

    # The next up brings the killed node back; the cluster is whole and every node has the jobs.
    stack.up()
    eventually("the cluster whole again", lambda: _whole(stack), 120)
    for job in [BACKUP, *chain]:
        _wait_declared(stack, job)


def test_up_with_refresh_brings_back_a_cluster_whose_containers_are_all_gone(stack: TestStack) -> None:
    jobs = stack.cluster["jobs"]
    assert jobs, "the previous test left no declared job"
    stack.remove_containers()

    # The refresh reaches no node; it must not fail the up that brings them back.
    started = time.monotonic()
    stack.up(refresh=True)
    print(f"ALLGONE up --refresh with every container gone took {time.monotonic() - started:.1f}s")
    eventually("the cluster whole again", lambda: _whole(stack), 60)
    for job in jobs:
        _wait_declared(stack, job)
    assert set(preview_ops(stack.preview())) == {"same"}


def test_a_hundred_jobs_in_one_up(stack: TestStack) -> None:
    jobs: list[dict[str, Any]] = [
        {
            "name": f"job-{i:03d}",
            "schedule": "@every 1h",
            "executor": "shell",
            "executor_config": {"command": "true"},
        }
        for i in range(100)
    ]
    names = [job["name"] for job in jobs]
    declared_before = [job["name"] for job in stack.cluster.get("jobs", [])]
    stack.set_jobs(jobs)
    assert_previewed(
        stack.preview(),
        *(f"+ {name}: new" for name in names),
        *(f"- {name}: delete" for name in declared_before),
    )
    started = time.monotonic()
    outputs = stack.up()
    took = time.monotonic() - started
    print(f"JOBS100 up took {took:.1f}s")

    assert outputs["jobs"] == names
    assert _last_updatepreview_ops(stack).get("update") == 1, _last_updatepreview_ops(stack)

    def all_there() -> bool:
        for node in stack.node_names():
            with stack.client(node) as client:
                live = {job["name"]: job for job in client.list_jobs()}
            if sorted(live) != names:
                raise AssertionError(f"{node} has {len(live)} jobs: {sorted(set(live) ^ set(names))[:5]}")
            wrong = [n for n in names if _mismatches(jobs[names.index(n)], live[n])]
            assert not wrong, f"{node}: not as declared: {wrong[:5]}"
        return True

    eventually("all 100 jobs on every node", all_there, 60, poll_s=1)
    started = time.monotonic()
    assert set(preview_ops(stack.preview())) == {"same"}
    print(f"JOBS100 no-change preview took {time.monotonic() - started:.1f}s")


def test_a_secret_env_key_that_is_missing_or_plain_text_fails_the_preview(stack: TestStack) -> None:
    before = copy.deepcopy(stack.cluster.get("jobs", []))
    job = {
        "name": "needs-secret",
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": "true"},
        "secret_env": {"TOKEN": "absent_token"},
    }
    stack.set_jobs([*before, job])
    with pytest.raises(auto.CommandError) as missing:
        stack.preview()
    assert "pulumi config set --secret dkron-cluster:absent_token <value>" in str(missing.value)

    stack.stack.set_config("dkron-cluster:plain_token", auto.ConfigValue("not-hidden", secret=False))
    try:
        stack.set_jobs([*before, {**job, "secret_env": {"TOKEN": "plain_token"}}])
        with pytest.raises(auto.CommandError) as plain:
            stack.preview()
        assert "dkron-cluster:plain_token is in plain text" in str(plain.value)
    finally:
        stack.stack.remove_config("dkron-cluster:plain_token")
        stack.set_jobs(before)


def test_a_secret_env_value_reaches_the_job_but_not_the_state(stack: TestStack) -> None:
    secret, other = f"tok-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    stack.stack.set_config("dkron-cluster:job_token", auto.ConfigValue(secret, secret=True))
    stack.stack.set_config("dkron-cluster:other_token", auto.ConfigValue(other, secret=True))
    job: dict[str, Any] = {
        "name": "uses-secret",
        "schedule": "@manually",
        "tags": ONE_SERVER,
        "executor": "shell",
        "executor_config": {
            "command": 'printf %s "$TOKEN" | sha256sum; printf %s "$OTHER" | sha256sum',
            "shell": "true",
        },
        # A key without a namespace is the project's; one with a namespace is taken as written.
        "secret_env": {"TOKEN": "job_token", "OTHER": "dkron-cluster:other_token"},
    }
    stack.set_jobs([job])
    started = time.monotonic()
    outputs = stack.up()
    print(f"DELETE100 removing the 100 jobs (and adding one) took {time.monotonic() - started:.1f}s")
    assert outputs["jobs"] == ["uses-secret"]
    config_text = stack.config_file.read_text()
    assert secret not in config_text
    assert other not in config_text

    # Dkron itself has no secrets: the job's env holds the values in plain text there.
    env = f"TOKEN={secret},OTHER={other}"
    _wait_declared(stack, {**job, "executor_config": {**job["executor_config"], "env": env}})

    def no_plaintext(what: str) -> None:
        exported = stack.export_as_user()
        state = json.loads(exported)
        job_state = [r for r in state["deployment"]["resources"] if r["type"].endswith(":DkronJobSet")]
        assert len(job_state) == 1, "no state for the jobs"
        for part in ("inputs", "outputs"):
            assert SECRET_SIG in job_state[0][part]["secret_jobs"], (
                f"the jobs' {part} are not a secret {what}"
            )
            assert job_state[0][part]["jobs"] == {}, f"a job with secret env is in the plain map {what}"
        for value in (secret, other):
            assert value not in exported, f"a secret is in plain text in the state {what}"
            assert not any(value in line for line in stack.log), f"a secret was printed {what}"

    no_plaintext("after the up")
    # A refresh reads the job (env included) back from Dkron: still no plain text.
    stack.up(refresh=True)
    no_plaintext("after a refresh")
    assert set(preview_ops(stack.preview())) == {"same"}

    with stack.client("n3") as client:
        client.run_job("uses-secret")
    runs = eventually("a finished run of uses-secret", lambda: _finished_runs(stack, "uses-secret"), 60)
    assert runs[0]["success"], runs[0]
    digests = [hashlib.sha256(value.encode()).hexdigest() for value in (secret, other)]
    assert all(digest in runs[0]["output"] for digest in digests), runs[0]["output"]


def test_destroy_works_when_the_containers_are_already_gone(stack: TestStack) -> None:
    assert stack.cluster["jobs"], "the previous test left no declared job"
    stack.remove_containers()

    # The jobs live in the nodes' data: destroying the cluster takes them along
    # without asking Dkron, which could not answer any more.
    started = time.monotonic()
    stack.destroy()
    print(f"DESTROY with every container gone took {time.monotonic() - started:.1f}s")
    assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    deployment = stack.stack.export_stack().deployment
    assert deployment is not None
    assert not deployment.get("resources")
