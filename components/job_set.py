"""The stack's jobs as `DkronJob` resources, created once the cluster is ready."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.job_provider import DkronJob
from components.jobs import JobSpec


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


def declare_jobs(
    jobs: Sequence[JobSpec],
    api_urls: Sequence[str],
    ready: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> dict[str, DkronJob]:
    """One `DkronJob` per job, after every node gate and after its parent job.

    `secret_env` values come from the stack's secret config keys the job names
    (`pulumi config set --secret <key> <value>`), so they stay secrets.
    """
    config = pulumi.Config()
    resources: dict[str, DkronJob] = {}
    for job in parents_first(jobs):
        after = list(ready)
        if job.parent_job:
            after.append(resources[job.parent_job])
        resources[job.name] = DkronJob(
            f"job-{job.name}",
            job,
            api_urls=list(api_urls),
            secret_env={var: config.require_secret(key) for var, key in job.secret_env.items()},
            opts=pulumi.ResourceOptions(parent=parent, depends_on=after),
        )
    return resources
