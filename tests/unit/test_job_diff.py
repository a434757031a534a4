"""The DkronJob provider's diff, check and state shape, without a cluster."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import UNKNOWN

from components.job_provider import (
    SERVER_FIELDS,
    DkronJob,
    DkronJobProvider,
    changed_job_fields,
    job_from_live,
    managed_job,
)
from components.jobs import JobSpec, job_payload

URLS = ["http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"]

SPEC = JobSpec(
    name="report",
    schedule="0 30 2 * * *",
    executor="shell",
    executor_config={"command": "python3 /opt/dkron-jobs/hello.py"},
    tags={"python": "daily:1"},
    expires_at="2031-01-01T00:00:00+02:00",
)

# What Dkron 4.0.5 answers to GET /v1/jobs/report after POSTing job_payload(SPEC).
ECHO: dict[str, Any] = {
    "id": "report",
    "name": "report",
    "displayname": "",
    "timezone": "",
    "schedule": "0 30 2 * * *",
    "owner": "",
    "owner_email": "",
    "success_count": 3,
    "error_count": 1,
    "last_success": "2026-11-27T11:11:44.015688822Z",
    "last_error": None,
    "disabled": False,
    "tags": {"python": "daily:1"},
    "metadata": None,
    "retries": 0,
    "dependent_jobs": None,
    "parent_job": "",
    "processors": {},
    "concurrency": "allow",
    "executor": "shell",
    "executor_config": {"command": "python3 /opt/dkron-jobs/hello.py"},
    "status": "success",
    "next": "2026-11-28T02:30:00Z",
    "ephemeral": False,
    "expires_at": "2030-12-31T22:00:00Z",
}


def inputs(**job_changes: Any) -> dict[str, Any]:
    job = {**job_payload(SPEC), **job_changes}
    return {"api_urls": list(URLS), "job": job, "timeout_s": 120}


def state(**job_changes: Any) -> dict[str, Any]:
    """What create returns: the inputs plus the server-side fields."""
    return {**inputs(**job_changes), **{field: ECHO[field] for field in SERVER_FIELDS}}


def diff(olds: dict[str, Any], news: dict[str, Any]) -> tuple[bool | None, list[str] | None]:
    result = DkronJobProvider().diff("report", olds, news)
    return result.changes, result.replaces


def test_identical_job_has_no_diff() -> None:
    assert diff(state(), inputs()) == (False, [])


def test_schedule_change_is_an_update_naming_the_field() -> None:
    news = inputs(schedule="0 0 3 * * *")

    assert diff(state(), news) == (True, [])
    assert changed_job_fields(state()["job"], news["job"]) == ["job.schedule"]


def test_name_change_replaces_the_job() -> None:
    news = inputs(name="nightly-report")

    assert diff(state(), news) == (True, ["job.name"])


def test_nested_changes_name_the_key() -> None:
    news = inputs(executor_config={"command": "true"}, tags={"python": "daily:2"}, metadata={"team": "ops"})

    assert changed_job_fields(state()["job"], news["job"]) == [
        "job.executor_config.command",
        "job.metadata",
        "job.metadata.team",
        "job.tags.python",
    ]


def test_a_removed_map_names_its_keys() -> None:
    news = inputs()
    del news["job"]["tags"]

    assert diff(state(), news) == (True, [])
    assert changed_job_fields(state()["job"], news["job"]) == ["job.tags", "job.tags.python"]


def test_an_added_processor_without_settings_is_a_change() -> None:
    assert changed_job_fields(state()["job"], inputs(processors={"log": {}})["job"]) == [
        "job.processors",
        "job.processors.log",
    ]


def test_server_side_fields_never_cause_a_diff() -> None:
    olds = state()
    olds.update(status="failed", next="2030-01-01T00:00:00Z", success_count=99, error_count=5, last_error="x")

    assert diff(olds, inputs()) == (False, [])


def test_dkron_echo_read_back_has_no_diff() -> None:
    refreshed = {**state(), "job": job_from_live(ECHO)}

    assert managed_job(ECHO) == managed_job(job_payload(SPEC))
    assert diff(refreshed, inputs()) == (False, [])


def test_dkron_defaults_spelled_out_have_no_diff() -> None:
    explicit = inputs(
        concurrency="allow",
        timezone="",
        displayname="",
        retries=0,
        disabled=False,
        ephemeral=False,
        metadata={},
        processors={},
        parent_job="",
        starts_at=None,
    )

    assert diff(state(), explicit) == (False, [])


def test_values_as_the_engine_returns_them_have_no_diff() -> None:
    olds = state(retries=2)
    olds["job"]["retries"] = 2.0  # ints come back from the engine as floats
    olds["timeout_s"] = 120.0

    assert diff(olds, inputs(retries=2)) == (False, [])


def test_map_values_compare_as_dkron_stores_them() -> None:
    """Dkron keeps maps as strings: a boolean is 'true', like the tags the agent sets."""
    assert managed_job({"tags": {"server": True}, "metadata": {"n": 2.0}})["tags"] == {"server": "true"}
    assert managed_job({"metadata": {"n": 2.0}})["metadata"] == {"n": "2"}
    assert not changed_job_fields(
        {"name": "a", "tags": {"server": True}}, {"name": "a", "tags": {"server": "true"}}
    )


def test_same_instant_in_another_offset_has_no_diff() -> None:
    assert diff(state(), inputs(expires_at="2030-12-31T22:00:00Z")) == (False, [])
    assert diff(state(), inputs(expires_at="2030-12-31T23:00:00Z")) == (True, [])


def test_concurrency_change_is_detected_against_dkron_default() -> None:
    assert diff(state(), inputs(concurrency="forbid")) == (True, [])


def test_reordered_api_urls_have_no_diff() -> None:
    news = inputs()
    news["api_urls"] = list(reversed(URLS))

    assert diff(state(), news) == (False, [])


def test_new_api_urls_alone_are_an_update_without_replace() -> None:
    news = inputs()
    news["api_urls"] = [*URLS, "http://127.0.0.1:8084"]

    assert diff(state(), news) == (True, [])


def test_unknown_job_during_preview_is_a_change() -> None:
    news = inputs()
    news["job"] = UNKNOWN

    assert diff(state(), news) == (True, [])


def test_refresh_keeps_the_declared_spelling_when_nothing_drifted() -> None:
    declared = state()["job"]

    assert job_from_live(ECHO, declared) == declared


def test_refresh_reports_drifted_fields_with_live_values() -> None:
    live = copy.deepcopy(ECHO)
    live["schedule"] = "@every 7s"
    live["metadata"] = {"edited": "by-hand"}

    reflected = job_from_live(live, state()["job"])

    assert reflected["schedule"] == "@every 7s"
    assert reflected["metadata"] == {"edited": "by-hand"}
    assert reflected["expires_at"] == "2031-01-01T00:00:00+02:00"
    assert changed_job_fields(reflected, inputs()["job"]) == [
        "job.metadata",
        "job.metadata.edited",
        "job.schedule",
    ]


def test_check_accepts_a_job_body() -> None:
    result = DkronJobProvider().check({}, inputs())

    assert result.failures == []


@pytest.mark.parametrize(
    ("news", "field"),
    [
        ({"api_urls": URLS, "job": {"schedule": "@daily"}, "timeout_s": 120}, "job"),
        ({"api_urls": URLS, "job": {"name": "Bad Name"}, "timeout_s": 120}, "job"),
        ({"api_urls": [], "job": {"name": "ok"}, "timeout_s": 120}, "api_urls"),
        ({"api_urls": ["127.0.0.1:8081"], "job": {"name": "ok"}, "timeout_s": 120}, "api_urls"),
        ({"api_urls": URLS, "job": {"name": "ok"}, "timeout_s": 0}, "timeout_s"),
    ],
)
def test_check_rejects_a_malformed_input(news: dict[str, Any], field: str) -> None:
    result = DkronJobProvider().check({}, news)

    assert [failure.property for failure in result.failures] == [field]


def test_check_skips_values_not_yet_known() -> None:
    result = DkronJobProvider().check({}, {"api_urls": UNKNOWN, "job": UNKNOWN, "timeout_s": 120})

    assert result.failures == []


# --- the resource, under Pulumi's mocks ---------------------------------------------------


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.types: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.types[args.name] = args.typ
        return args.name, dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def mocks() -> _Mocks:
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, preview=False)
    return mocks


def _secret_spec() -> JobSpec:
    return JobSpec(
        name="backup",
        schedule="@daily",
        executor="shell",
        executor_config={"command": "backup.sh", "env": "MODE=full"},
        secret_env={"DB_PASSWORD": "dbPassword"},
    )


@pulumi.runtime.test
def test_job_with_secret_env_is_a_secret(mocks: _Mocks) -> pulumi.Output[None]:
    job = DkronJob(
        "backup",
        _secret_spec(),
        api_urls=URLS,
        secret_env={"DB_PASSWORD": pulumi.Output.secret("hunter2")},
    )

    def verify(args: list[Any]) -> None:
        body, is_secret = args
        assert is_secret
        assert body["executor_config"]["env"] == "MODE=full,DB_PASSWORD=hunter2"
        assert mocks.types["backup"] == "pulumi-python:dynamic/dkron:DkronJob"

    secret: Awaitable[bool] = job.job.is_secret()
    return pulumi.Output.all(job.job, secret).apply(verify)


@pulumi.runtime.test
def test_job_without_secrets_stays_readable(mocks: _Mocks) -> pulumi.Output[None]:
    job = DkronJob("report", SPEC, api_urls=URLS)

    def verify(args: list[Any]) -> None:
        body, is_secret, status = args
        assert not is_secret
        assert body == job_payload(SPEC)
        assert status is None  # declared, filled in by the provider

    secret: Awaitable[bool] = job.job.is_secret()
    return pulumi.Output.all(job.job, secret, job.status).apply(verify)


def test_missing_secret_value_fails_at_declaration() -> None:
    with pytest.raises(ValueError, match="no secret value given for env DB_PASSWORD"):
        DkronJob("backup", _secret_spec(), api_urls=URLS)
