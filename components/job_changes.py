"""What an update does to the stack's jobs, job by job, in words, for the top of a preview.

Pure functions of the jobs the stack declares, the jobs Dkron holds now (read
once by the program) and the names the stack managed at its last update (its
`jobs` output). The `DkronJobSet` diff below stays the authority; this says
in one line per job what it will do and which fields change, counts the jobs
in Dkron that no stack declares (naming the first few), and never prints a
value (a job's env may hold secrets).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.job_provider import changed_job_fields, managed_job

__all__ = ["NAMED", "JobChanges", "job_changes", "job_summary"]

NAMED = 10
"""Jobs no stack declares (or taken over with no change) that a preview names; beyond that it
counts them and says where to see them all."""

# Fields a rename may change besides the name.
_RENAME_FREE = ("name", "displayname")


@dataclass
class JobChanges:
    new: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Job -> the field paths that change (without the leading ``job.``)."""
    taken_over: dict[str, list[str]] = field(default_factory=dict)
    """Jobs made outside this stack and now declared -> fields that change ([] for none)."""
    deleted: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    """Old name -> new name: a deleted and a new job alike but for the name."""
    unmanaged: list[str] = field(default_factory=list)
    """Jobs in Dkron that the stack neither declares nor managed."""
    unchanged: int = 0
    live_known: bool = True


def _fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    return [path.removeprefix("job.") for path in changed_job_fields(old, new)]


def _alike(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    a, b = managed_job(old), managed_job(new)
    return all(a[key] == b[key] for key in a if key not in _RENAME_FREE)


def job_changes(
    declared: Mapping[str, Mapping[str, Any]],
    live: Mapping[str, Mapping[str, Any]] | None,
    managed_before: Collection[str],
) -> JobChanges:
    """Compare the declared jobs with Dkron's (``live``; None when no node answers)."""
    changes = JobChanges(live_known=live is not None)
    if live is None:
        # No node answers: only names can be compared, with the last update's record.
        changes.new = sorted(set(declared) - set(managed_before))
        changes.deleted = sorted(set(managed_before) - set(declared))
        changes.unchanged = len(declared) - len(changes.new)
        return changes
    for name in sorted(declared):
        body = declared[name]
        if name not in live:
            changes.new.append(name)
            continue
        fields = _fields(live[name], body)
        if name not in managed_before:
            changes.taken_over[name] = fields
        elif fields:
            changes.changed[name] = fields
        else:
            changes.unchanged += 1
    gone = sorted(name for name in managed_before if name not in declared and name in live)
    for old in gone:
        match = next((new for new in changes.new if _alike(live[old], declared[new])), None)
        if match is not None:
            changes.renamed[old] = match
            changes.new.remove(match)
        else:
            changes.deleted.append(old)
    changes.unmanaged = sorted(set(live) - set(declared) - set(managed_before))
    return changes


def job_summary(changes: JobChanges, stack: str, prune_unmanaged: bool) -> str:
    """The lines for the top of a preview."""
    counts = [
        f"{len(changes.new)} new" if changes.new else "",
        f"{len(changes.changed)} changed" if changes.changed else "",
        f"{len(changes.renamed)} renamed" if changes.renamed else "",
        f"{len(changes.taken_over)} taken over" if changes.taken_over else "",
        f"{len(changes.deleted)} deleted" if changes.deleted else "",
        f"{len(changes.unmanaged)} pruned" if changes.unmanaged and prune_unmanaged else "",
    ]
    said = ", ".join(c for c in counts if c)
    lines = [
        f"job changes: {said}; {changes.unchanged} unchanged"
        if said
        else f"no job changes ({changes.unchanged} jobs)"
    ]
    if not changes.live_known:
        lines.append("  (no node answers: compared by name with the last update; fields are not compared)")
    lines += [f"  + {name}: new" for name in changes.new]
    lines += [f"  ~ {name}: {', '.join(fields)}" for name, fields in changes.changed.items()]
    lines += [
        f"  +- {old} -> {new}: renamed, so replaced (creates {new}, deletes {old}; its run history starts again)"
        for old, new in changes.renamed.items()
    ]
    lines += [
        f"  = {name}: taken over, changes {', '.join(fields)}"
        for name, fields in changes.taken_over.items()
        if fields
    ]
    # Taken over as they are: nothing to act on, so named up to NAMED and counted beyond.
    quiet = [name for name, fields in changes.taken_over.items() if not fields]
    lines += [f"  = {name}: taken over, no change" for name in quiet[:NAMED]]
    if len(quiet) > NAMED:
        lines.append(
            f"  = ... and {len(quiet) - NAMED} more taken over, no change (the stack's job files list them)"
        )
    lines += [f"  - {name}: delete" for name in changes.deleted]
    if changes.unmanaged:
        lines += _unmanaged_lines(changes.unmanaged, stack, prune_unmanaged)
    return "\n".join(lines)


def _unmanaged_lines(names: list[str], stack: str, prune_unmanaged: bool) -> list[str]:
    """The jobs no stack declares: all of them up to ``NAMED``, else the count, the first
    ``NAMED`` and the command that writes every one to a file (thousands of names would bury
    the changes above)."""
    shown, more = names[:NAMED], len(names) - NAMED
    export = f"make jobs-export STACK={stack}"
    if prune_unmanaged:
        lines = [f"  - {name}: delete (no stack declares it; jobs.prune_unmanaged is on)" for name in shown]
        if more > 0:
            lines.append(f"  - ... and {more} more no stack declares; every one before the prune: {export}")
        return lines
    if more > 0:
        return [
            f"jobs in Dkron that no stack declares ({len(names)}), left alone: {', '.join(shown)} and {more} more",
            f"  every one, to read or to take over: {export} (writes them all to a job file);"
            " or delete them: jobs.prune_unmanaged: true",
        ]
    return [
        f"jobs in Dkron that no stack declares ({len(names)}), left alone: {', '.join(names)}",
        f"  take them over: {export} JOBS={','.join(names)}; or delete them: jobs.prune_unmanaged: true",
    ]
