"""Processes on this machine, read from /proc: what a test started, and whether it has exited.

A process that has exited stays a zombie until its parent reaps it; an orphan's
parent is the machine's init (or the nearest subreaper), which on some machines
takes more than a second. `kill(pid, 0)` still finds a zombie, so "exited" here
means gone or a zombie, whoever reaps it and whenever.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ")".
    return stat.rsplit(")", 1)[1].split()


def exited(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid` (children, theirs, ...), with its command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError):
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        todo.extend(children.get(child, []))
    return found
