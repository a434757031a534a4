"""The stack's jobs as `DkronJob` resources, created once the cluster is ready."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

from components.config_errors import in_stack
from components.job_provider import DkronJob
from components.jobs import JobConfigError, JobSpec


def parents_first(jobs: Sequence[JobSpec]) -> list[JobSpec]:
    """Jobs ordered so each comes after its parent (validation ruled out cycles)."""
    by_name = {job.name: job for job in jobs}
    ordered: list[JobSpec] = []
    placed: set[str] = set()

    def place(job: JobSpec) -> None:
        if job.name in placed:
            return
        if job.parent_job in by_name:
            place(by_name[job.parent_job])
        placed.add(job.name)
        ordered.append(job)

    for job in jobs:
        place(job)
    return ordered


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


def declare_jobs(
    jobs: Sequence[JobSpec],
    api_urls: Sequence[str],
    ready: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> dict[str, DkronJob]:
    """One `DkronJob` per job, after every node gate and after its parent job.

    `secret_env` values come from the stack's secret config keys the job names
    (`pulumi config set --secret <key> <value>`; a key without a namespace is
    the project's), so they stay secrets. ``check_secret_env`` must have
    passed first: it fails the program on a key that is missing or that holds a
    plain-text value.
    """
    resources: dict[str, DkronJob] = {}
    for job in parents_first(jobs):
        after = list(ready)
        if job.parent_job:
            after.append(resources[job.parent_job])
        resources[job.name] = DkronJob(
            f"job-{job.name}",
            job,
            api_urls=list(api_urls),
            secret_env={var: _secret(key) for var, key in job.secret_env.items()},
            # Destroying the cluster takes its jobs with it (they live in the
            # nodes' data): no API calls then, which also works when the
            # containers are already gone.
            opts=pulumi.ResourceOptions(parent=parent, depends_on=after, deleted_with=parent),
        )
    return resources
