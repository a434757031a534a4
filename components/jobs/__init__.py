"""Dkron jobs as a stack declares them: pure code, no Pulumi, no network.

- ``schedule``: schedules as Dkron 4 parses them (cron, descriptors, durations, times).
- ``spec``: ``JobSpec``, one job and the checks of its fields.
- ``loading``: the stack's jobs from its config and job files; rules across jobs and nodes.
- ``payload``: a job as the body of ``POST /v1/jobs``.

A job is checked here, before anything is sent, against what Dkron 4 itself
accepts and against what makes a job useful on this cluster: a job whose tags
match no node, or that names a plugin the node image lacks, could never run,
and is an error. Every problem is one line naming the stack, where the job was
declared (``cluster.jobs[i]`` or the job file), the field, the bad value and
what is allowed (``components.config_errors``).

This package was the module ``components/jobs.py``; every name it exported is
still importable from here.
"""

from components.jobs.loading import (
    JobSettings,
    cluster_node_tags,
    load_job_settings,
    load_jobs,
    validate_jobs,
)
from components.jobs.payload import job_payload
from components.jobs.spec import (
    AVAILABLE_EXECUTORS,
    AVAILABLE_PROCESSORS,
    HTTP_CONFIG_KEYS,
    JOB_NAME,
    SHELL_CONFIG_KEYS,
    JobConfigError,
    JobSpec,
)
from nodeside.schedule import check_schedule, go_duration_seconds, parse_rfc3339

__all__ = [
    "AVAILABLE_EXECUTORS",
    "AVAILABLE_PROCESSORS",
    "HTTP_CONFIG_KEYS",
    "JOB_NAME",
    "SHELL_CONFIG_KEYS",
    "JobConfigError",
    "JobSettings",
    "JobSpec",
    "check_schedule",
    "cluster_node_tags",
    "go_duration_seconds",
    "job_payload",
    "load_job_settings",
    "load_jobs",
    "parse_rfc3339",
    "validate_jobs",
]
