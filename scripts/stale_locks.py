"""Remove a stack's update locks whose process is gone (a `make up` that was killed).

The local file backend locks a stack for the length of an update with a file
naming the process. A process killed half way (Ctrl-C twice, `kill -9`, a
crash) leaves the file, and every later command on the stack then fails with
"the stack is currently locked". A lock written on this machine by a process
that has exited protects nothing: remove it and say so.

"Exited" is read from /proc, not from `kill(pid, 0)`: a killed process stays a
zombie until its parent (or, for an orphan, the machine's init) reaps it, and
on some machines that takes more than a second, during which the signal still
finds it. A process that is being killed (SIGKILL pending, or already in its
exit) is waited for briefly. A pid that now belongs to a process started after
the lock was written is another process. Locks of running processes and of
other machines are left alone, and the lock's process is named.

Usage: python scripts/stale_locks.py <stack>   (PULUMI_BACKEND_URL must be file://...)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

PROJECT = "dkron-cluster"
EXIT_WAIT_S = 10.0
_PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit()
_SIGKILL_BIT = 1 << (9 - 1)


@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    timestamp: str
    state: str  # "gone", "zombie", "reused", "exiting", "running"

    @property
    def stale(self) -> bool:
        return self.state in ("gone", "zombie", "reused")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_state(pid: int, locked_at: datetime | None = None) -> str:
    """What became of `pid`: gone, zombie (exited, not reaped), reused (a process started after
    `locked_at` holds the number now), exiting (being killed), or running."""
    if pid <= 0:
        return "gone"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "running" if _signal_finds(pid) else "gone"
    # The command name may hold spaces and parentheses; the fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return "zombie"
    if locked_at is not None:
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        if started > locked_at.timestamp() + 1:
            return "reused"
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    if int(fields[6]) & _PF_EXITING or pending & _SIGKILL_BIT:
        return "exiting"
    return "running"


def _signal_finds(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked_at(timestamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return None


def stack_locks(backend_url: str, stack: str, wait_s: float = EXIT_WAIT_S) -> list[Lock]:
    """The lock files of `stack` written on this machine, each with what became of its process;
    a process that is exiting is given up to `wait_s` to finish."""
    url = urlparse(backend_url)
    if url.scheme != "file":
        return []
    folder = Path(url.path) / ".pulumi" / "locks" / "organization" / PROJECT / stack
    found = []
    deadline = time.monotonic() + wait_s
    for path in sorted(folder.glob("*.json")):
        try:
            lock = json.loads(path.read_text())
            pid = int(lock.get("pid") or 0)
        except (OSError, ValueError, TypeError):
            continue
        if lock.get("hostname") != socket.gethostname():
            continue
        timestamp = str(lock.get("timestamp"))
        state = process_state(pid, _locked_at(timestamp))
        while state == "exiting" and time.monotonic() < deadline:
            time.sleep(0.05)
            state = process_state(pid, _locked_at(timestamp))
        found.append(Lock(path, pid, timestamp, state))
    return found


def stale_locks(backend_url: str, stack: str, wait_s: float = EXIT_WAIT_S) -> list[Lock]:
    """The lock files of `stack` left by processes of this machine that have exited."""
    return [lock for lock in stack_locks(backend_url, stack, wait_s) if lock.stale]


_WHY = {
    "gone": "which no longer runs",
    "zombie": "which has exited (not yet reaped by its parent)",
    "reused": "which no longer runs (its pid now belongs to a process started after the lock)",
}


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def main() -> int:
    stack = sys.argv[1]
    for lock in stack_locks(os.environ.get("PULUMI_BACKEND_URL", ""), stack):
        if lock.stale:
            lock.path.unlink(missing_ok=True)
            print(
                f"stack {stack}: removed the update lock of process {lock.pid}, {_WHY[lock.state]}"
                f" (an update stopped at {lock.timestamp}); this update takes up from the last finished one",
                file=sys.stderr,
            )
        elif lock.state == "exiting":
            print(
                f"stack {stack}: the update lock of process {lock.pid} stays: the process is being killed"
                f" but has not exited after {EXIT_WAIT_S:.0f}s; run the command again once it has",
                file=sys.stderr,
            )
        else:
            print(
                f"stack {stack}: locked by process {lock.pid} ({_command(lock.pid)}), which is running"
                f" since {lock.timestamp}: another update of this stack is under way",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
