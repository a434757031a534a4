"""The stack's jobs as one `DkronJobSet`, written once the cluster is ready."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import requests
from pulumi.runtime.config import get_config, is_config_secret

from components.config_errors import in_stack
from components.dkron_client import DkronClient, DkronError
from components.job_set_provider import DkronJobSet
from components.jobs import JobConfigError, JobSpec, job_payload


def _full_key(key: str) -> str:
    """``key`` as Pulumi stores it: ``<project>:<key>`` unless it names its namespace."""
    return key if ":" in key else f"{pulumi.get_project()}:{key}"


def check_secret_env(stack: str, jobs: Sequence[JobSpec]) -> None:
    """Raise ``JobConfigError`` with one line per ``secret_env`` entry whose config
    key is missing or holds plain text.

    Run it before anything is declared (``__main__`` does, with the other
    config checks): a failing program still lets steps already under way finish.
    """
    problems = []
    for job in jobs:
        where = job._source or f"job {job.name!r}"
        for var, key in job.secret_env.items():
            full = _full_key(key)
            command = f"`pulumi config set --secret {full} <value>`"
            if get_config(full) is None:
                problems.append(
                    in_stack(
                        stack,
                        f"{where}.secret_env.{var} = {key!r}: the stack has no config key {full};"
                        f" set it with {command}",
                    )
                )
            elif not is_config_secret(full):
                problems.append(
                    in_stack(
                        stack,
                        f"{where}.secret_env.{var} = {key!r}: config key {full} is in plain text in the"
                        f" stack config; make it a secret with {command}",
                    )
                )
    if problems:
        raise JobConfigError(problems)


def _secret(key: str) -> pulumi.Output[str]:
    namespace, _, name = _full_key(key).rpartition(":")
    return pulumi.Config(namespace).require_secret(name)


def _secret_body(job: JobSpec) -> pulumi.Output[dict[str, Any]]:
    values = pulumi.Output.all(**{var: _secret(key) for var, key in job.secret_env.items()})
    return values.apply(lambda resolved: job_payload(job, resolved))


def declared_bodies(jobs: Sequence[JobSpec]) -> dict[str, dict[str, Any]]:
    """Each job's body as it will be sent, secret env values in (for comparing only, never shown).

    ``check_secret_env`` must have passed: every key it names is set.
    """
    bodies = {}
    for job in jobs:
        values = {var: str(get_config(_full_key(key))) for var, key in job.secret_env.items()}
        bodies[job.name] = job_payload(job, values)
    return bodies


def live_jobs(api_urls: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """The jobs in Dkron, from the first node that answers; None if none does."""
    for url in api_urls:
        with DkronClient(url, timeout_s=5.0) as client:
            try:
                return {str(job["name"]): job for job in client.list_jobs()}
            except (DkronError, requests.RequestException):
                continue
    return None


def declare_jobs(
    jobs: Sequence[JobSpec],
    api_urls: Sequence[str],
    ready: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
    prune_unmanaged: bool = False,
    api_auth: pulumi.Input[Mapping[str, str]] | None = None,
) -> DkronJobSet:
    """One `DkronJobSet` for every job, after every node gate.

    `secret_env` values come from the stack's secret config keys the job names
    (`pulumi config set --secret <key> <value>`; a key without a namespace is
    the project's): the bodies of jobs with any go in the set's `secret_jobs`,
    a secret. ``check_secret_env`` must have passed first: it fails the program
    on a key that is missing or that holds a plain-text value.
    """
    plain = {job.name: job_payload(job) for job in jobs if not job.secret_env}
    secret = {job.name: _secret_body(job) for job in jobs if job.secret_env}
    return DkronJobSet(
        "jobs",
        jobs=plain,
        secret_jobs=pulumi.Output.from_input(secret),
        api_urls=list(api_urls),
        prune_unmanaged=prune_unmanaged,
        api_auth=api_auth,
        # Destroying the cluster takes its jobs with it (they live in the
        # nodes' data): no API calls then, which also works when the
        # containers are already gone.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(ready), deleted_with=parent),
    )
