"""The one place that speaks Dkron's HTTP API (v1).

Used by the dynamic providers, the rollout gates and the tests. Build a
client inside each provider method: a client holds a connection pool, which
must not be pickled with a provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import requests

# Imported here, never inside a call: a provider process serves calls on several threads, and a
# first import of docker on one of them races the provider being unpickled on another.
from components.api_access import credentials_for, reach

T = TypeVar("T")

# Serf member status codes as the API reports them.
MEMBER_ALIVE = 1


class DkronError(RuntimeError):
    """Dkron answered, but refused the request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later.

        A 4xx answer is final: the request itself is wrong. A 5xx (Dkron
        answers 500 while it has no leader to forward a write to) or an error
        without a status may pass once the cluster settles.
        """
        return self.status is None or self.status >= 500


class DkronUnavailable(RuntimeError):
    """Dkron could not be reached, or had no leader, until the deadline."""


class DkronClient:
    """A thin client for one Dkron agent's API."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        """``base_url`` may name an SSH tunnel after a ``#`` (`components.api_access`). An
        ``https://`` URL is called with the credentials `authorize` gave for it, if any."""
        self.base_url = reach(base_url).rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        # Given with each request: a session's own `verify` loses to REQUESTS_CA_BUNDLE.
        self._verify: str | None = None
        credentials = credentials_for(base_url)
        if credentials is not None and self.base_url.startswith("https://"):
            self._verify = credentials.ca_file
            self._session.headers["Authorization"] = f"Bearer {credentials.token}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DkronClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        if self._verify is not None:
            kwargs.setdefault("verify", self._verify)
        response = self._session.request(method, url, timeout=self.timeout_s, **kwargs)
        if response.status_code >= 400 and response.status_code != 404:
            raise DkronError(
                f"{method} {url} answered {response.status_code}: {response.text.strip()[:300]}",
                response.status_code,
            )
        return response

    # --- agent and cluster -------------------------------------------------
    def agent(self) -> dict[str, Any]:
        """This agent's own view: its config, tags and Serf state."""
        result: dict[str, Any] = self._request("GET", "/v1/").json()
        return result

    def members(self) -> list[dict[str, Any]]:
        """Serf members as this agent sees them, with tags and status."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/members").json()
        return result

    def leader(self) -> dict[str, Any] | None:
        """The leader member as this agent sees it, or None without one.

        Dkron 4.0.5 answers 500 with a `null` body while there is no leader
        (later versions answer 404); both mean "no leader".
        """
        try:
            response = self._request("GET", "/v1/leader")
        except DkronError as err:
            if err.status == 500 and str(err).endswith(": null"):
                return None
            raise
        if response.status_code == 404:
            return None
        result: dict[str, Any] = response.json()
        return result

    def is_leader(self) -> bool:
        """Whether this agent leads the cluster now (Dkron answers 404 on a follower)."""
        return self._request("GET", "/v1/isleader").status_code == 200

    # --- jobs ----------------------------------------------------------------
    def list_jobs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/jobs").json()
        return result

    def get_job(self, name: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/v1/jobs/{quote(name)}")
        if response.status_code == 404:
            return None
        result: dict[str, Any] = response.json()
        return result

    def upsert_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a job (writes are forwarded to the leader)."""
        response = self._request("POST", "/v1/jobs", json=job)
        if response.status_code == 404:
            raise DkronError(f"POST /v1/jobs for {job.get('name')!r} answered 404", 404)
        result: dict[str, Any] = response.json()
        return result

    def delete_job(self, name: str) -> bool:
        """Delete a job; False when it did not exist."""
        return self._request("DELETE", f"/v1/jobs/{quote(name)}").status_code != 404

    def run_job(self, name: str) -> None:
        self._request("POST", f"/v1/jobs/{quote(name)}/run")

    def executions(self, name: str) -> list[dict[str, Any]]:
        response = self._request("GET", f"/v1/jobs/{quote(name)}/executions")
        if response.status_code == 404:
            return []
        result: list[dict[str, Any]] = response.json()
        return result


def retry(
    what: str,
    action: Callable[[], T],
    *,
    timeout_s: float,
    first_delay_s: float = 0.25,
    max_delay_s: float = 4.0,
) -> T:
    """Run `action` until it succeeds or `timeout_s` passes.

    Connection errors and server-side failures (5xx, which Dkron returns while
    it has no leader to forward a write to) are retried with exponential
    backoff, so a call rides out a leader election. Client errors (4xx) are the
    caller's mistake and fail at once.
    """
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    attempts = 0
    while True:
        attempts += 1
        try:
            return action()
        except DkronError as err:
            if not err.retryable:
                raise
            last: Exception = err
        except (requests.ConnectionError, requests.Timeout) as err:
            last = err
        if time.monotonic() + delay > deadline:
            raise DkronUnavailable(
                f"{what}: gave up after {attempts} attempts in {timeout_s:.0f}s; last error: {last}"
            ) from last
        time.sleep(delay)
        delay = min(delay * 2, max_delay_s)
