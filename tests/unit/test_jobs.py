"""Job specs: what Dkron accepts, cross-job rules, loading, the API body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from components.jobs import (
    JobConfigError,
    JobSpec,
    check_schedule,
    cluster_node_tags,
    job_payload,
    load_jobs,
    validate_jobs,
)
from components.spec import load_cluster_spec

NODE_TAGS = {
    "dkron1": {"python": "daily", "role": "dkron"},
    "dkron2": {"python": "daily", "role": "dkron"},
    "dkron3": {"role": "dkron"},
}


def shell_job(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "report",
        "schedule": "0 30 2 * * *",
        "executor": "shell",
        "executor_config": {"command": "python3 /opt/dkron-jobs/hello.py"},
        "tags": {"python": "daily:1"},
    }
    job.update(changes)
    return job


def problems_of(*raw_jobs: dict[str, Any]) -> str:
    """Every problem load_jobs and validate_jobs find, as one text."""
    try:
        jobs = load_jobs("dev", raw_jobs, [], Path("."))
        validate_jobs("dev", jobs, NODE_TAGS)
    except JobConfigError as err:
        return str(err)
    raise AssertionError(f"no problem found in {raw_jobs!r}")


# --- invalid jobs --------------------------------------------------------------------

INVALID = [
    pytest.param(
        shell_job(name="Nightly Report"),
        "cluster.jobs[0].name = 'Nightly Report': must be 1 or more lowercase letters, digits, '_' or '-'",
        id="bad-name",
    ),
    pytest.param(
        shell_job(schedule="30 2 * * *"),
        "Dkron expects 6 fields with seconds first (seconds minutes hours day-of-month month day-of-week);"
        " the 6-field equivalent is '0 30 2 * * *'",
        id="5-field-cron",
    ),
    pytest.param(
        shell_job(schedule="0 30 25 * * *"),
        "cluster.jobs[0].schedule = '0 30 25 * * *': hours field '25': '25' is out of range; allowed: 0-23",
        id="cron-field-range",
    ),
    pytest.param(
        shell_job(schedule="0 0 0 * 13 *"),
        "month field '13': '13' is out of range; allowed: 1-12 or JAN-DEC",
        id="cron-month-range",
    ),
    pytest.param(
        shell_job(schedule="0 0 0 * * MON-SUNDAY"),
        "day-of-week field 'MON-SUNDAY': 'MON-SUNDAY' is not a number or name; allowed: 0-6 or SUN-SAT",
        id="cron-weekday-name",
    ),
    pytest.param(
        shell_job(schedule="@every 10 minutes"),
        "'@every' needs a Go duration such as 30s, 1m30s or 2h, not '10 minutes'",
        id="bad-every",
    ),
    pytest.param(shell_job(schedule="@every 0s"), "duration of at least 1s", id="zero-every"),
    pytest.param(
        shell_job(schedule="@at 2030-01-31 23:00"),
        "'@at' needs an RFC3339 time such as '@at 2030-01-31T23:00:00Z'",
        id="bad-at",
    ),
    pytest.param(
        shell_job(schedule="@fortnightly"),
        "unknown descriptor '@fortnightly'; allowed: 6-field cron",
        id="descriptor",
    ),
    pytest.param(
        shell_job(schedule="TZ=Europe/Atlantis 0 0 9 * * *"),
        "the TZ= prefix 'Europe/Atlantis' is not a known time zone",
        id="bad-tz-prefix",
    ),
    pytest.param(
        shell_job(timezone="Mars/Olympus"),
        "cluster.jobs[0].timezone = 'Mars/Olympus': time zone 'Mars/Olympus' is not a known time zone",
        id="bad-timezone",
    ),
    pytest.param(
        shell_job(concurrency="never"),
        "cluster.jobs[0].concurrency = 'never': must be 'allow' or 'forbid'",
        id="concurrency",
    ),
    pytest.param(
        shell_job(executor="kafka"),
        "executor = 'kafka': unknown or unavailable executor; available: shell, http (gcppubsub, grpc, kafka",
        id="unknown-executor",
    ),
    pytest.param(
        shell_job(executor_config={"command": "env", "env": "HOSTS=a,b"}),
        "executor_config.env = 'HOSTS=a,b': entry 'b' is not NAME=value; Dkron splits env on every comma,"
        " so a value cannot contain ','",
        id="env-comma",
    ),
    pytest.param(
        shell_job(executor_config={"cwd": "/srv"}),
        "cluster.jobs[0].executor_config.command = None: is required for the shell executor",
        id="missing-command",
    ),
    pytest.param(
        shell_job(executor_config={"command": "true", "cmd": "x"}),
        "executor_config.cmd = 'x': unknown shell executor setting;"
        " allowed: command, shell, env, cwd, timeout, mem_limit, payload, su",
        id="unknown-config-key",
    ),
    pytest.param(
        shell_job(executor="http", executor_config={"method": "GET", "url": "http://x", "retries": "3"}),
        "unknown http executor setting; allowed: method, url, headers, body, timeout, expectCode",
        id="unknown-http-key",
    ),
    pytest.param(
        shell_job(executor_config={"command": "true", "timeout": "30"}),
        "executor_config.timeout = '30': must be a Go duration such as 30s",
        id="shell-timeout",
    ),
    pytest.param(
        shell_job(parent_job="ingest", schedule=""),
        "cluster.jobs[0].parent_job = 'ingest': is not a job of this stack;"
        " the stack manages all of its jobs",
        id="unknown-parent",
    ),
    pytest.param(shell_job(parent_job="report"), "a job cannot be its own parent", id="own-parent"),
    pytest.param(
        shell_job(tags={"python": "weekly"}),
        "cluster.jobs[0].tags = {'python': 'weekly'}: matches no node,"
        " and a job that can never run is an error (every tag must equal the node's tag,"
        " the part before ':' for a count); node tags:"
        " dkron1 {'python': 'daily', 'role': 'dkron'}",
        id="tags-match-no-node",
    ),
    pytest.param(
        shell_job(tags={"python": "daily:0"}),
        "tag 'python': 'daily:0' must be 'value' (every matching node runs the job)"
        " or 'value:N' with a whole N >= 1",
        id="tag-count-zero",
    ),
    pytest.param(shell_job(tags={"python": "daily:x"}), "'value:N' with a whole N >= 1", id="tag-count-text"),
    pytest.param(
        shell_job(owner_email="ops-at-example"),
        "owner_email = 'ops-at-example': must be an email address",
        id="email",
    ),
    pytest.param(
        shell_job(retries=-1),
        "cluster.jobs[0].retries = -1: must be greater than or equal to 0",
        id="retries",
    ),
    pytest.param(
        shell_job(schedulle="@daily"),
        "cluster.jobs[0].schedulle = '@daily': unknown job setting; allowed: name, displayname, schedule",
        id="unknown-key",
    ),
    pytest.param(
        shell_job(schedule=""),
        "cluster.jobs[0].schedule = '': is required (only a job with a parent_job may leave it empty)",
        id="no-schedule",
    ),
    pytest.param(
        shell_job(expires_at="next tuesday"),
        "expires_at = 'next tuesday': must be an RFC3339 time",
        id="expires-at",
    ),
    pytest.param(
        shell_job(processors={"log": {}}), "processor 'log' is not installed; available: none", id="processor"
    ),
    pytest.param(
        shell_job(executor="http", executor_config={"url": "http://example.com"}),
        "executor_config.method = None: is required for the http executor",
        id="http-method",
    ),
    pytest.param(
        shell_job(
            secret_env={"API_TOKEN": "api-token"},
            executor="http",
            executor_config={"method": "GET", "url": "http://x"},
        ),
        "secret_env = {'API_TOKEN': 'api-token'}: only a shell job has an environment",
        id="secret-env-http",
    ),
    pytest.param(
        "not a job", "cluster.jobs[0] = 'not a job': a job must be a mapping of settings", id="not-mapping"
    ),
]


@pytest.mark.parametrize(("raw", "expected"), INVALID)
def test_invalid_job_is_rejected_with_a_clear_line(raw: dict[str, Any], expected: str) -> None:
    text = problems_of(raw)

    assert expected in text
    assert text.startswith("stack 'dev': cluster.jobs[0]")


def test_duplicate_names_are_rejected() -> None:
    text = problems_of(shell_job(), shell_job(schedule="@daily"))

    assert (
        "stack 'dev': cluster.jobs[1].name = 'report': duplicate job name (also cluster.jobs[0]);"
        " job names must be unique"
    ) in text


def test_parent_cycle_is_reported_once() -> None:
    text = problems_of(
        shell_job(name="a", parent_job="c", schedule=""),
        shell_job(name="b", parent_job="a", schedule=""),
        shell_job(name="c", parent_job="b", schedule=""),
        shell_job(name="d", parent_job="c", schedule=""),
    )

    assert text == (
        "stack 'dev': cluster.jobs[0].parent_job = 'c': parent jobs form a cycle (a -> c -> b -> a);"
        " none of them could ever run"
    )


def test_every_problem_is_reported_on_its_own_line() -> None:
    text = problems_of(shell_job(name="Bad"), shell_job(name="ok", schedule="* * * * *"))

    assert len(text.splitlines()) == 2


def test_a_count_larger_than_the_matching_nodes_is_allowed() -> None:
    jobs = load_jobs("dev", [shell_job(tags={"python": "daily:5"})], [], Path("."))

    validate_jobs("dev", jobs, NODE_TAGS)


def test_starts_at_needs_a_dkron_that_stores_it() -> None:
    jobs = load_jobs("dev", [shell_job(starts_at="2030-01-01T00:00:00Z")], [], Path("."))
    validate_jobs("dev", jobs, NODE_TAGS, dkron_version="4.0.9")

    with pytest.raises(
        JobConfigError, match=r"starts_at = '2030-01-01T00:00:00Z': needs Dkron 4\.0\.9 or later"
    ):
        validate_jobs("dev", jobs, NODE_TAGS, dkron_version="4.0.5")


def test_expires_at_must_follow_starts_at() -> None:
    text = problems_of(shell_job(starts_at="2030-01-02T00:00:00Z", expires_at="2030-01-01T00:00:00+00:00"))

    assert "expires_at = '2030-01-01T00:00:00+00:00': must be after starts_at" in text


def test_jobspec_raises_a_readable_validation_error() -> None:
    with pytest.raises(ValidationError, match="5-field cron expression"):
        JobSpec.model_validate(shell_job(schedule="0 2 * * *"))


# --- valid jobs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@minutely",
        "@manually",
        "@every 2s",
        "@every 1m30s",
        "@every 1h",
        "@every 1.5h",
        "@at 2030-01-31T23:00:00Z",
        "@at 2030-01-31T23:00:00.5+02:00",
        "TZ=Europe/Paris 0 0 9 * * MON-FRI",
        "CRON_TZ=UTC @daily",
        "TZ=America/New_York @every 10m",
        "0 30 2 * * *",
        "*/10 * * * * *",
        "0 0,15,30,45 8-18 * * 1-5",
        "0 0 12 1-31/2 jan,Mar,DEC ?",
        "5/15 * * * * *",
    ],
)
def test_every_schedule_form_dkron_accepts_is_valid(schedule: str) -> None:
    check_schedule(schedule, "report")


@pytest.mark.parametrize("schedule", ["~ ~ * * * *", "0 ~ ~ ~ ~ ~", "TZ=UTC 0 ~/15 * * * *"])
def test_hashed_fields_are_valid(schedule: str) -> None:
    check_schedule(schedule, "report")


def test_a_hash_is_checked_after_dkron_substitutes_it() -> None:
    # sum(map(ord, "report")) == 668: the minutes '~' becomes 668 % 60 == 8, so '10-~' runs backwards.
    with pytest.raises(ValueError, match=r"'10-8' starts after it ends.*after Dkron replaced '~'"):
        check_schedule("0 10-~ * * * *", "report")


def test_a_child_job_may_leave_its_schedule_empty() -> None:
    jobs = load_jobs(
        "dev", [shell_job(), shell_job(name="notify", parent_job="report", schedule="")], [], Path(".")
    )

    validate_jobs("dev", jobs, NODE_TAGS)
    assert jobs[1].schedule == ""


def test_http_job_and_yaml_scalars_become_strings() -> None:
    spec = JobSpec.model_validate(
        {
            "name": "ping",
            "schedule": "@every 30s",
            "executor": "http",
            "executor_config": {
                "method": "GET",
                "url": "http://example.com/health",
                "timeout": 5,
                "expectCode": 200,
                "tlsNoVerifyPeer": False,
                "headers": '["Accept: application/json"]',
            },
            "metadata": {"team": "ops", "tier": 1},
        }
    )

    assert spec.executor_config["timeout"] == "5"
    assert spec.executor_config["expectCode"] == "200"
    assert spec.executor_config["tlsNoVerifyPeer"] == "false"
    assert spec.metadata == {"team": "ops", "tier": "1"}
    assert spec.timezone == ""


def test_null_timezone_means_the_server_default() -> None:
    assert JobSpec.model_validate(shell_job(timezone=None)).timezone == ""


def test_cluster_node_tags_include_what_the_agent_sets() -> None:
    cluster = load_cluster_spec(
        "dev", {"name": "dev", "nodes": [{"name": "dkron1", "tags": {"python": "daily"}}]}
    )
    tags = cluster_node_tags(cluster)

    assert tags == {
        "dkron1": {
            "role": "dkron",
            "server": "true",
            "dc": "dc1",
            "region": "global",
            "version": "4.0.5",
            "python": "daily",
        }
    }
    jobs = load_jobs("dev", [shell_job(tags={"server": "true:1"})], [], Path("."))
    validate_jobs("dev", jobs, tags)


# --- job files ----------------------------------------------------------------------


def test_jobs_come_from_the_config_and_from_files(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "list.yaml").write_text(yaml.safe_dump([shell_job(name="from-list")]))
    (tmp_path / "jobs" / "mapping.yaml").write_text(
        yaml.safe_dump({"jobs": [shell_job(name="from-mapping")]})
    )

    jobs = load_jobs("dev", [shell_job()], ["jobs/list.yaml", "jobs/mapping.yaml"], tmp_path)

    assert [job.name for job in jobs] == ["report", "from-list", "from-mapping"]


def test_problems_in_a_file_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text(
        yaml.safe_dump([shell_job(name="ok"), shell_job(name="x", schedule="1 2 3")])
    )

    with pytest.raises(JobConfigError) as caught:
        load_jobs("dev", [], ["more.yaml"], tmp_path)

    assert str(caught.value).startswith("stack 'dev': more.yaml: jobs[1].schedule = '1 2 3': has 3 fields")


def test_cross_job_problems_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text(yaml.safe_dump([shell_job()]))
    jobs = load_jobs("dev", [shell_job()], ["more.yaml"], tmp_path)

    with pytest.raises(
        JobConfigError,
        match=r"more\.yaml: jobs\[0\]\.name = 'report': duplicate job name \(also cluster\.jobs\[0\]\)",
    ):
        validate_jobs("dev", jobs, NODE_TAGS)


def test_a_missing_job_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JobConfigError) as caught:
        load_jobs("dev", [], ["jobs/nope.yaml"], tmp_path)

    assert str(caught.value).startswith("stack 'dev': cluster.job_files[0] = 'jobs/nope.yaml': cannot read ")
    assert "No such file or directory" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{name: report", "is not valid YAML"),
        ("name: report\n", "must hold a list of jobs, or a mapping with one key 'jobs'"),
    ],
)
def test_a_malformed_job_file_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(content)

    with pytest.raises(JobConfigError, match=expected):
        load_jobs("dev", [], ["bad.yaml"], tmp_path)


# --- payloads ------------------------------------------------------------------------


def test_payload_holds_only_what_is_set() -> None:
    spec = JobSpec.model_validate(shell_job(concurrency="allow", retries=0, disabled=False))

    assert job_payload(spec) == {
        "name": "report",
        "schedule": "0 30 2 * * *",
        "executor": "shell",
        "executor_config": {"command": "python3 /opt/dkron-jobs/hello.py"},
        "tags": {"python": "daily:1"},
    }


def test_payload_carries_every_field_that_differs_from_dkron_defaults() -> None:
    spec = JobSpec.model_validate(
        shell_job(
            displayname="Nightly report",
            timezone="Europe/Paris",
            owner="ops",
            owner_email="ops@example.com",
            disabled=True,
            metadata={"team": "ops"},
            retries=2,
            concurrency="forbid",
            ephemeral=True,
            expires_at="2031-01-01T00:00:00Z",
        )
    )

    body = job_payload(spec)

    assert body["concurrency"] == "forbid"
    assert body["retries"] == 2
    assert body["disabled"] is True
    assert body["expires_at"] == "2031-01-01T00:00:00Z"
    assert "secret_env" not in body
    assert "starts_at" not in body


def test_secret_env_is_merged_into_the_shell_env() -> None:
    spec = JobSpec.model_validate(
        shell_job(
            executor_config={"command": "env", "env": "MODE=prod"},
            secret_env={"DB_PASSWORD": "dbPassword", "API_TOKEN": "apiToken"},
        )
    )

    body = job_payload(spec, {"DB_PASSWORD": "p=w", "API_TOKEN": "t0k"})

    assert body["executor_config"] == {"command": "env", "env": "MODE=prod,DB_PASSWORD=p=w,API_TOKEN=t0k"}
    assert spec.executor_config["env"] == "MODE=prod"  # the spec itself is untouched


def test_a_secret_with_a_comma_is_refused_without_showing_it() -> None:
    spec = JobSpec.model_validate(shell_job(secret_env={"DB_PASSWORD": "dbPassword"}))

    with pytest.raises(ValueError, match="config key 'dbPassword'") as caught:
        job_payload(spec, {"DB_PASSWORD": "hunter,2"})
    assert "hunter" not in str(caught.value)


def test_a_missing_secret_value_is_an_error() -> None:
    spec = JobSpec.model_validate(shell_job(secret_env={"DB_PASSWORD": "dbPassword"}))

    with pytest.raises(ValueError, match="no value for secret env DB_PASSWORD"):
        job_payload(spec)
