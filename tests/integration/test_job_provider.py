"""The DkronJob provider against one real Dkron server.

The provider's methods are called directly, the way the engine's dynamic
provider host calls them, against a single-node Dkron 4.0.5 cluster running on
the project's Python base image (the dkron image holds only the binary).
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from components.dkron_client import DkronClient
from components.docker_objects import engine
from components.job_provider import (
    API_URL_ENV,
    SERVER_FIELDS,
    DkronJobError,
    DkronJobProvider,
    changed_job_fields,
    managed_job,
)
from components.jobs import JobSpec, job_payload
from testing.harness import BASE_IMAGE, DKRON_IMAGE, eventually

pytestmark = pytest.mark.integration

TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    url: str
    container: Container


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One Dkron server, tagged python=daily, for the whole module; always removed."""
    with engine() as client:
        suffix = uuid.uuid4().hex[:8]
        tag = f"t-jobprov-{suffix}:test"
        dockerfile = (
            f"FROM {BASE_IMAGE}\nCOPY --from={DKRON_IMAGE} /usr/local/bin/dkron /usr/local/bin/dkron\n"
        )
        container = None
        try:
            client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
            port = _free_port()
            container = client.containers.run(
                tag,
                name=f"t-jobprov-{suffix}",
                entrypoint="/usr/local/bin/dkron",
                command=[
                    "agent",
                    "--server",
                    "--bootstrap-expect=1",
                    "--node-name=n1",
                    "--data-dir=/tmp/dk",
                    "--tag",
                    "python=daily",
                    "--disable-usage-stats",
                ],
                ports={"8080/tcp": ("127.0.0.1", port)},
                detach=True,
            )
            url = f"http://127.0.0.1:{port}"
            _wait_for_leader(url)
            yield Server(url, container)
        finally:
            if container is not None:
                container.remove(force=True)
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(tag, force=True)


def _wait_for_leader(url: str) -> None:
    with DkronClient(url) as api:
        eventually("the Dkron server has a leader", api.leader, poll_s=0.5)


@pytest.fixture
def dkron_url(server: Server) -> str:
    return server.url


@pytest.fixture
def provider() -> DkronJobProvider:
    return DkronJobProvider()


def _props(url: str, spec: JobSpec, **extra: Any) -> dict[str, Any]:
    return {"api_urls": [url], "job": job_payload(spec), "timeout_s": TIMEOUT_S, **extra}


def _spec(name: str, **changes: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "name": name,
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": "true"},
        "tags": {"python": "daily:1"},
        "metadata": {"owner": "tests"},
        **changes,
    }
    return JobSpec.model_validate(fields)


def _live(url: str, name: str) -> dict[str, Any] | None:
    with DkronClient(url) as api:
        return api.get_job(name)


def test_create_reads_back_with_no_diff(dkron_url: str, provider: DkronJobProvider) -> None:
    props = _props(
        dkron_url, _spec("create-read", expires_at="2031-01-01T00:00:00+02:00", timezone="Europe/Paris")
    )

    created = provider.create(props)
    read = provider.read(created.id, created.outs or {})

    assert created.id == "create-read"
    assert set(SERVER_FIELDS) <= set(created.outs or {})
    assert read.id == "create-read"
    assert read.inputs == {key: props[key] for key in ("api_urls", "job", "timeout_s")}
    assert provider.diff(created.id, read.outs or {}, props).changes is False
    assert managed_job(_live(dkron_url, "create-read")) == managed_job(props["job"])
    provider.delete(created.id, created.outs or {})


def test_update_writes_the_new_schedule(dkron_url: str, provider: DkronJobProvider) -> None:
    olds = provider.create(_props(dkron_url, _spec("update-me"))).outs or {}
    news = _props(dkron_url, _spec("update-me", schedule="0 0 3 * * *", concurrency="forbid"))

    result = provider.diff("update-me", olds, news)
    updated = provider.update("update-me", olds, news)

    assert (result.changes, result.replaces) == (True, [])
    live = _live(dkron_url, "update-me") or {}
    assert (live["schedule"], live["concurrency"]) == ("0 0 3 * * *", "forbid")
    assert (updated.outs or {})["job"]["schedule"] == "0 0 3 * * *"
    provider.delete("update-me", updated.outs or {})


def test_out_of_band_edit_is_found_by_read_and_put_back(dkron_url: str, provider: DkronJobProvider) -> None:
    props = _props(dkron_url, _spec("drift"))
    state = provider.create(props).outs or {}
    with DkronClient(dkron_url) as api:
        edited = api.get_job("drift") or {}
        api.upsert_job({**edited, "schedule": "@every 1h", "metadata": {"owner": "someone-else"}})

    refreshed = provider.read("drift", state)
    result = provider.diff("drift", refreshed.outs or {}, props)
    provider.update("drift", refreshed.outs or {}, props)

    assert (refreshed.inputs or {})["job"]["schedule"] == "@every 1h"
    assert (result.changes, result.replaces) == (True, [])
    live = _live(dkron_url, "drift") or {}
    assert (live["schedule"], live["metadata"]) == ("@manually", {"owner": "tests"})
    provider.delete("drift", state)


def test_delete_then_read_reports_gone(dkron_url: str, provider: DkronJobProvider) -> None:
    state = provider.create(_props(dkron_url, _spec("short-lived"))).outs or {}

    provider.delete("short-lived", state)
    gone = provider.read("short-lived", state)
    provider.delete("short-lived", state)  # already gone is fine

    assert _live(dkron_url, "short-lived") is None
    assert (gone.id, gone.outs) == ("", {})


def test_import_style_read_uses_the_env_url(
    dkron_url: str, provider: DkronJobProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("adopted", displayname="Adopted job")
    with DkronClient(dkron_url) as api:
        api.upsert_job(job_payload(spec))
    monkeypatch.setenv(API_URL_ENV, dkron_url)

    read = provider.read("adopted", {})

    assert read.id == "adopted"
    assert (read.inputs or {})["api_urls"] == [dkron_url]
    assert managed_job((read.inputs or {})["job"]) == managed_job(job_payload(spec))
    # The declared timeout differs from the default an import assumes: an update that writes nothing.
    declared = _props(dkron_url, spec)
    result = provider.diff("adopted", read.outs or {}, declared)
    assert (result.changes, result.replaces) == (True, [])
    assert changed_job_fields((read.outs or {})["job"], declared["job"]) == []
    provider.delete("adopted", read.outs or {})


def test_a_node_that_does_not_answer_is_skipped(dkron_url: str, provider: DkronJobProvider) -> None:
    props = _props(dkron_url, _spec("any-node"))
    props["api_urls"] = [f"http://127.0.0.1:{_free_port()}", dkron_url]

    created = provider.create(props)

    assert _live(dkron_url, "any-node") is not None
    provider.delete(created.id, created.outs or {})


def test_a_job_dkron_refuses_fails_at_once(dkron_url: str, provider: DkronJobProvider) -> None:
    props = _props(dkron_url, _spec("refused"))
    props["job"]["schedule"] = "every day"  # bypasses JobSpec: Dkron has the last word
    started = time.monotonic()

    with pytest.raises(DkronJobError, match=r"Dkron refused job 'refused'.*can't parse job schedule"):
        provider.create(props)

    assert time.monotonic() - started < 5
    assert _live(dkron_url, "refused") is None


def test_a_field_this_dkron_drops_fails_the_create_and_leaves_nothing(
    dkron_url: str, provider: DkronJobProvider
) -> None:
    props = _props(dkron_url, _spec("too-new", starts_at="2030-01-01T00:00:00Z"))

    with pytest.raises(
        DkronJobError, match=r"job\.starts_at: sent '2030-01-01T00:00:00\+00:00', stored None"
    ):
        provider.create(props)

    assert _live(dkron_url, "too-new") is None


def test_a_shell_job_runs_python_on_the_tagged_node(dkron_url: str, provider: DkronJobProvider) -> None:
    spec = _spec(
        "python-42",
        schedule="@every 1s",
        executor_config={"command": "python3 -c 'print(42)'"},
    )
    state = provider.create(_props(dkron_url, spec)).outs or {}

    def printed_42() -> dict[str, Any] | None:
        with DkronClient(dkron_url) as api:
            return next(
                (run for run in api.executions("python-42") if run["success"] and "42" in run["output"]), None
            )

    run = eventually("an execution printed 42", printed_42, timeout_s=30, poll_s=0.5)
    provider.delete("python-42", state)

    assert run["output"].strip() == "42"
    assert run["node_name"] == "n1"


def test_a_write_issued_while_the_server_is_down_lands_when_it_is_back(
    server: Server, provider: DkronJobProvider
) -> None:
    props = _props(server.url, _spec("during-outage"))
    props["timeout_s"] = 90
    outcome: dict[str, Any] = {}

    def create() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = provider.create(props)
        except Exception as err:  # noqa: BLE001 - asserted below
            outcome["error"] = err
        outcome["took_s"] = time.monotonic() - started

    server.container.stop(timeout=2)
    writer = threading.Thread(target=create)
    writer.start()
    time.sleep(3)  # the write keeps failing to connect meanwhile
    server.container.start()
    writer.join(timeout=120)
    _wait_for_leader(server.url)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["took_s"] > 3
    assert _live(server.url, "during-outage") is not None
    provider.delete("during-outage", outcome["result"].outs or {})
