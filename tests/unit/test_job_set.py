"""The job set's per-job logic and the preview's job summary, on plain data."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime.rpc import UNKNOWN

from components.job_changes import NAMED, job_changes, job_summary
from components.job_set_provider import DkronJobSetProvider, digest, job_set_changes, levels
from components.jobs import JobConfigError, load_job_settings

URLS = ["http://127.0.0.1:8081"]


def job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "executor": "shell", "executor_config": {"command": "true"}, **fields}


def state(
    jobs: list[dict[str, Any]], secret: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "api_urls": URLS,
        "jobs": {j["name"]: j for j in jobs},
        "secret_jobs": {j["name"]: j for j in secret},
        "prune_unmanaged": False,
        "timeout_s": 120,
        **extra,
    }


# --- what the set writes and deletes ------------------------------------------------------


def test_only_the_changed_job_is_written_among_many() -> None:
    jobs = [job(f"j{i:03d}", schedule="@every 1h") for i in range(500)]
    changed = [*jobs[:7], {**jobs[7], "schedule": "@every 2h"}, *jobs[8:]]
    changes = job_set_changes(state(jobs), state(changed))
    assert changes.write == {"j007": ["job.schedule"]}
    assert changes.delete == []


def test_values_dkron_echoes_differently_are_no_change() -> None:
    before = job("a", retries=2.0, tags={"server": "true"}, starts_at="2030-01-01T01:00:00+01:00")
    after = job("a", retries=2, tags={"server": True}, starts_at="2030-01-01T00:00:00Z")
    assert not job_set_changes(state([before]), state([after]))


def test_new_and_removed_jobs_and_a_move_between_plain_and_secret() -> None:
    olds = state([job("keep"), job("gone"), job("hidden")])
    news = state([job("keep"), job("new")], secret=[job("hidden", executor_config={"command": "x"})])
    changes = job_set_changes(olds, news)
    assert changes.write == {"new": ["(new)"], "hidden": ["job.executor_config.command"]}
    assert changes.delete == ["gone"]


def test_a_job_made_by_hand_and_declared_as_it_is_needs_no_write() -> None:
    by_hand = job("manual", schedule="@daily")
    olds = state([], unmanaged={"manual": digest(by_hand)})
    assert not job_set_changes(olds, state([by_hand]))
    # Declared with a change, it is written.
    assert job_set_changes(olds, state([{**by_hand, "schedule": "@hourly"}])).write == {"manual": ["(new)"]}


def test_levels_put_parents_before_children() -> None:
    jobs = {
        "c": job("c", parent_job="b"),
        "b": job("b", parent_job="a"),
        "a": job("a"),
        "x": job("x", parent_job="outside"),
        "y": job("y"),
    }
    assert levels(jobs) == [["a", "x", "y"], ["b"], ["c"]]


def test_diff_says_no_change_for_the_same_jobs_and_names_connection_changes() -> None:
    provider = DkronJobSetProvider()
    olds = {**state([job("a")]), "unmanaged": {}}
    assert provider.diff("jobs", olds, state([job("a")])).changes is False
    assert provider.diff("jobs", olds, {**state([job("a")]), "api_urls": ["http://127.0.0.1:9999"]}).changes
    assert provider.diff("jobs", olds, state([job("a", schedule="@daily")])).changes
    assert provider.diff("jobs", olds, {**state([]), "jobs": UNKNOWN}).changes
    # Never a replacement of the set: a renamed job is one write and one delete inside it.
    assert provider.diff("jobs", olds, state([job("b")])).replaces == []


def test_diff_with_prune_changes_only_while_unmanaged_jobs_exist() -> None:
    provider = DkronJobSetProvider()
    pruning = {**state([job("a")]), "prune_unmanaged": True}
    assert provider.diff("jobs", {**pruning, "unmanaged": {"x": "d1"}}, pruning).changes
    assert provider.diff("jobs", {**pruning, "unmanaged": {}}, pruning).changes is False
    # A job made by hand and now declared is not pruned.
    declared_x = {**pruning, "jobs": {"a": job("a"), "x": job("x")}}
    assert (
        provider.diff("jobs", {**pruning, "unmanaged": {"x": digest(job("x"))}}, declared_x).changes is False
    )


def test_check_refuses_a_body_under_another_name_and_a_name_in_both_maps() -> None:
    provider = DkronJobSetProvider()
    bad = state([job("a")])
    bad["jobs"]["b"] = job("c")
    failures = provider.check({}, bad).failures
    assert [f.property for f in failures] == ["jobs"]
    twice = state([job("a")], secret=[job("a")])
    assert "declared twice" in provider.check({}, twice).failures[0].reason


# --- the preview's summary ------------------------------------------------------------------


def test_summary_names_each_job_and_its_fields_never_values() -> None:
    live = {
        "same": job("same"),
        "edited": job(
            "edited", schedule="@daily", executor_config={"command": "true", "env": "TOKEN=s3cret"}
        ),
        "old": job("old", schedule="@daily"),
        "manual": job("manual"),
        "dropped": job("dropped"),
    }
    declared = {
        "same": job("same"),
        "edited": job(
            "edited", schedule="@hourly", executor_config={"command": "true", "env": "TOKEN=other"}
        ),
        "renamed": job("renamed", schedule="@daily"),
        "brand-new": job("brand-new", schedule="@every 5m"),
        "manual": job("manual"),
    }
    changes = job_changes(declared, live, managed_before=["same", "edited", "old", "dropped"])
    text = job_summary(changes, "dev", prune_unmanaged=False)
    assert text.splitlines() == [
        "job changes: 1 new, 1 changed, 1 renamed, 1 taken over, 1 deleted; 1 unchanged",
        "  + brand-new: new",
        "  ~ edited: executor_config.env, schedule",
        "  +- old -> renamed: renamed, so replaced (creates renamed, deletes old; its run history starts again)",
        "  = manual: taken over, no change",
        "  - dropped: delete",
    ]
    assert "s3cret" not in text
    assert "other" not in text


def test_summary_lists_jobs_no_stack_declares_and_how_to_take_them_over_or_prune() -> None:
    live = {"a": job("a"), "hand-1": job("hand-1"), "hand-2": job("hand-2")}
    changes = job_changes({"a": job("a")}, live, managed_before=["a"])
    assert job_summary(changes, "dev", prune_unmanaged=False).splitlines() == [
        "no job changes (1 jobs)",
        "jobs in Dkron that no stack declares (2), left alone: hand-1, hand-2",
        "  take them over: make jobs-export STACK=dev JOBS=hand-1,hand-2; or delete them: jobs.prune_unmanaged: true",
    ]
    assert job_summary(changes, "dev", prune_unmanaged=True).splitlines() == [
        "job changes: 2 pruned; 1 unchanged",
        "  - hand-1: delete (no stack declares it; jobs.prune_unmanaged is on)",
        "  - hand-2: delete (no stack declares it; jobs.prune_unmanaged is on)",
    ]


def test_thousands_of_jobs_no_stack_declares_are_counted_with_a_few_names_and_the_export() -> None:
    live = {"a": job("a"), **{f"k{i:05d}": job(f"k{i:05d}") for i in range(5000)}}
    changes = job_changes({"a": job("a")}, live, managed_before=["a"])
    lines = job_summary(changes, "dev", prune_unmanaged=False).splitlines()
    assert lines == [
        "no job changes (1 jobs)",
        "jobs in Dkron that no stack declares (5000), left alone: "
        + ", ".join(f"k{i:05d}" for i in range(NAMED))
        + f" and {5000 - NAMED} more",
        "  every one, to read or to take over: make jobs-export STACK=dev (writes them all to a job file);"
        " or delete them: jobs.prune_unmanaged: true",
    ]
    pruning = job_summary(changes, "dev", prune_unmanaged=True).splitlines()
    assert pruning[0] == "job changes: 5000 pruned; 1 unchanged"
    assert pruning[1] == "  - k00000: delete (no stack declares it; jobs.prune_unmanaged is on)"
    assert len(pruning) == 1 + NAMED + 1
    assert pruning[-1] == (
        f"  - ... and {5000 - NAMED} more no stack declares; every one before the prune: make jobs-export STACK=dev"
    )


def test_thousands_taken_over_with_no_change_are_counted_and_those_that_change_listed() -> None:
    live = {f"k{i:05d}": job(f"k{i:05d}") for i in range(3000)}
    declared = {**live, "k00005": job("k00005", schedule="@daily")}
    lines = job_summary(job_changes(declared, live, managed_before=[]), "dev", False).splitlines()
    assert lines[0] == "job changes: 3000 taken over; 0 unchanged"
    assert lines[1] == "  = k00005: taken over, changes schedule"
    assert lines[2:12] == [f"  = k{i:05d}: taken over, no change" for i in range(11) if i != 5]
    assert lines[12:] == [
        f"  = ... and {2999 - NAMED} more taken over, no change (the stack's job files list them)"
    ]


def test_summary_without_an_answering_node_compares_names_only() -> None:
    changes = job_changes({"a": job("a"), "b": job("b")}, None, managed_before=["a", "c"])
    lines = job_summary(changes, "dev", prune_unmanaged=False).splitlines()
    assert lines[0] == "job changes: 1 new, 1 deleted; 1 unchanged"
    assert "fields are not compared" in lines[1]
    assert lines[2:] == ["  + b: new", "  - c: delete"]


# --- the `jobs` settings ---------------------------------------------------------------------


def test_job_settings_default_off_and_bad_values_name_stack_field_and_value() -> None:
    assert load_job_settings("dev", None).prune_unmanaged is False
    assert load_job_settings("dev", {"prune_unmanaged": "true"}).prune_unmanaged is True
    with pytest.raises(JobConfigError) as bad:
        load_job_settings("dev", {"prune_unmanaged": "sometimes"})
    assert "stack 'dev': jobs.prune_unmanaged = 'sometimes'" in str(bad.value)
    with pytest.raises(JobConfigError) as unknown:
        load_job_settings("dev", {"prune": True})
    assert "jobs.prune = True: unknown jobs setting; allowed: prune_unmanaged" in str(unknown.value)
