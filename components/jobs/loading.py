"""The stack's jobs: loaded from its config and job files, checked across jobs and nodes.

Every problem is one line naming the stack, where the job was declared
(``cluster.jobs[i]`` or the job file), the field, the bad value and what is
allowed; all of them are raised at once as a ``JobConfigError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from components.config_errors import Problem, describe, in_stack, validation_lines
from components.jobs.spec import JobConfigError, JobSpec
from components.spec import ClusterSpec, version_key

__all__ = ["JobSettings", "cluster_node_tags", "load_job_settings", "load_jobs", "validate_jobs"]

# libyaml's safe loader when PyYAML has it: four times faster on a file of 500 jobs.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# First Dkron release that stores starts_at; older servers drop it silently.
_STARTS_AT_SINCE = (4, 0, 9)


def _file_jobs(path: str, root: Path) -> list[Any]:
    """The job list in one YAML file: a list, or a mapping with a ``jobs`` list."""
    full = root / path
    try:
        content = yaml.load(full.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except OSError as err:
        raise ValueError(f"cannot read {full}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"is not valid YAML: {str(err).splitlines()[0]}") from None
    if isinstance(content, Mapping) and set(content) == {"jobs"}:
        content = content["jobs"]
    if content is None:
        return []
    if not isinstance(content, list):
        raise ValueError("must hold a list of jobs, or a mapping with one key 'jobs' holding that list")
    return content


def load_jobs(
    stack: str, raw_jobs: Sequence[Mapping[str, Any]], job_files: Sequence[str], root: Path
) -> list[JobSpec]:
    """The stack's jobs: ``cluster.jobs`` inline, then each of ``job_files`` in order.

    Relative file paths are taken from ``root`` (the project directory). Raises
    ``JobConfigError`` listing every problem found in every job.
    """
    sources: list[tuple[str, Any]] = [(f"cluster.jobs[{i}]", raw) for i, raw in enumerate(raw_jobs)]
    problems: list[str] = []
    for file_index, path in enumerate(job_files):
        try:
            entries = _file_jobs(path, root)
        except ValueError as err:
            # The path in full, however long: it is what the user has to find.
            problems.append(in_stack(stack, f"cluster.job_files[{file_index}] = {path!r}: {err}"))
            continue
        sources.extend((f"{path}: jobs[{i}]", raw) for i, raw in enumerate(entries))
    specs: list[JobSpec] = []
    for where, raw in sources:
        try:
            spec = JobSpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(validation_lines(stack, where, exc, _special_problems))
            continue
        spec._source = where
        specs.append(spec)
    if problems:
        raise JobConfigError(problems)
    return specs


class JobSettings(BaseModel):
    """How the stack treats jobs as a whole (stack config key ``jobs``)."""

    # Not strict: `pulumi config set --path jobs.prune_unmanaged true` may store a string.
    model_config = ConfigDict(extra="forbid")

    prune_unmanaged: bool = Field(
        default=False,
        description="Delete jobs in Dkron that the stack does not declare (a preview lists them first).",
    )


def _settings_problems(error: Any, path: str) -> list[str] | None:
    if error["type"] == "extra_forbidden":
        allowed = f"unknown jobs setting; allowed: {', '.join(JobSettings.model_fields)}"
        return [describe(path, error.get("input"), allowed)]
    if not error["loc"]:
        return [describe(path, error.get("input"), "must be a mapping, e.g. {prune_unmanaged: true}")]
    if error["type"] == "bool_parsing":
        return [
            describe(
                path, error.get("input"), "must be true or false (false, the default, leaves them alone)"
            )
        ]
    return None


def load_job_settings(stack: str, raw: Any) -> JobSettings:
    """The stack's ``jobs`` settings (all defaults when the key is absent)."""
    try:
        return JobSettings.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise JobConfigError(validation_lines(stack, "jobs", exc, _settings_problems)) from None


def cluster_node_tags(cluster: ClusterSpec) -> dict[str, dict[str, str]]:
    """Each node's tags as jobs see them: the node's own plus those the agent sets."""
    agent_tags = {
        "role": "dkron",
        "server": "true",
        "dc": cluster.dkron.datacenter,
        "region": cluster.dkron.region,
        "version": cluster.image.dkron_version,
    }
    return {node.name: {**agent_tags, **node.tags} for node in cluster.nodes}


def validate_jobs(
    stack: str,
    jobs: Sequence[JobSpec],
    node_tags: Mapping[str, Mapping[str, str]],
    *,
    dkron_version: str | None = None,
) -> None:
    """Rules across jobs and against the cluster; raises ``JobConfigError``.

    ``node_tags`` maps each node name to the tags jobs can select it by
    (``cluster_node_tags`` adds the ones the agent sets itself). With
    ``dkron_version``, fields that version ignores are errors too.
    """
    where = [job._source or f"cluster.jobs[{i}]" for i, job in enumerate(jobs)]
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if job.name in first:
            problems.append(
                _line(
                    stack,
                    where[i],
                    "name",
                    job.name,
                    f"duplicate job name (also {where[first[job.name]]}); job names must be unique",
                )
            )
        first.setdefault(job.name, i)
    for i, job in enumerate(jobs):
        if job.parent_job and job.parent_job not in first:
            problems.append(
                _line(
                    stack,
                    where[i],
                    "parent_job",
                    job.parent_job,
                    "is not a job of this stack; the stack manages all of its jobs, so a parent must be"
                    f" declared with them (declared: {', '.join(sorted(first)) or 'none'})",
                )
            )
    problems.extend(_cycle_problems(stack, jobs, where))
    problems.extend(_tag_problems(stack, jobs, where, node_tags))
    if dkron_version and version_key(dkron_version) < _STARTS_AT_SINCE:
        since = ".".join(map(str, _STARTS_AT_SINCE))
        problems.extend(
            _line(
                stack,
                where[i],
                "starts_at",
                job.starts_at,
                f"needs Dkron {since} or later; this cluster runs {dkron_version}, which ignores it",
            )
            for i, job in enumerate(jobs)
            if job.starts_at
        )
    if problems:
        raise JobConfigError(problems)


def _line(stack: str, where: str, path: str, value: Any, message: str) -> str:
    return in_stack(stack, Problem(path, value, message).at(where))


def _special_problems(error: Any, path: str) -> list[str] | None:
    """The errors a job phrases its own way (None: the common phrasing)."""
    if error["type"] == "extra_forbidden":
        allowed = f"unknown job setting; allowed: {', '.join(JobSpec.model_fields)}"
        return [describe(path, error.get("input"), allowed)]
    if not error["loc"]:
        return [describe(path, error.get("input"), "a job must be a mapping of settings")]
    return None


def _cycle_problems(stack: str, jobs: Sequence[JobSpec], where: Sequence[str]) -> Iterator[str]:
    """One line per cycle of parent_job links, at the first job declared on it."""
    parent = {job.name: job.parent_job for job in jobs if job.parent_job}
    reported: set[str] = set()
    for i, job in enumerate(jobs):
        chain = [job.name]
        while chain[-1] in parent and parent[chain[-1]] not in chain:
            chain.append(parent[chain[-1]])
        if parent.get(chain[-1]) != job.name or reported & set(chain):
            continue  # no cycle through this job, or already reported
        reported.update(chain)
        loop = " -> ".join([*chain, job.name])
        yield _line(
            stack,
            where[i],
            "parent_job",
            job.parent_job,
            f"parent jobs form a cycle ({loop}); none of them could ever run",
        )


def _tag_problems(
    stack: str, jobs: Sequence[JobSpec], where: Sequence[str], node_tags: Mapping[str, Mapping[str, str]]
) -> Iterator[str]:
    for i, job in enumerate(jobs):
        if not job.tags:
            continue
        wanted = {key: value.partition(":")[0] for key, value in job.tags.items()}
        if any(all(tags.get(key) == value for key, value in wanted.items()) for tags in node_tags.values()):
            continue
        nodes = (
            "; ".join(f"{node} {dict(sorted(tags.items()))}" for node, tags in node_tags.items())
            or "no nodes"
        )
        yield _line(
            stack,
            where[i],
            "tags",
            job.tags,
            "matches no node, and a job that can never run is an error (every tag must equal the"
            f" node's tag, the part before ':' for a count); node tags: {nodes}",
        )
