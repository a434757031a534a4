"""The client's one rule for what is worth retrying."""

from __future__ import annotations

import pytest
import requests

from components.dkron_client import DkronError, DkronUnavailable, retry


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (500, True), (503, True), (400, False), (404, False), (422, False)],
)
def test_a_4xx_is_final_and_the_rest_may_pass(status: int | None, retryable: bool) -> None:
    assert DkronError("answered", status).retryable is retryable


def test_retry_gives_up_at_once_on_a_4xx() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise DkronError("POST /v1/jobs answered 422", 422)

    with pytest.raises(DkronError, match="422"):
        retry("writing", refused, timeout_s=5.0, first_delay_s=0.01)
    assert len(calls) == 1


def test_retry_rides_out_5xx_and_connection_errors() -> None:
    failures: list[Exception] = [DkronError("no leader", 500), requests.ConnectionError("refused")]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert retry("writing", flaky, timeout_s=5.0, first_delay_s=0.01) == "done"


def test_retry_reports_the_last_error_when_time_runs_out() -> None:
    def down() -> None:
        raise DkronError("no leader", 500)

    with pytest.raises(DkronUnavailable, match="last error: no leader"):
        retry("writing", down, timeout_s=0.05, first_delay_s=0.01)
