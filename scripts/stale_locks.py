"""Remove a stack's update locks whose process is gone (a `make up` that was killed).

The local file backend locks a stack for the length of an update with a file
naming the process. A process killed half way (Ctrl-C twice, `kill -9`, a
crash) leaves the file, and every later command on the stack then fails with
"the stack is currently locked". A lock written on this machine by a process
that no longer runs protects nothing: remove it and say so. Locks of live
processes and of other machines are left alone.

Usage: python scripts/stale_locks.py <stack>   (PULUMI_BACKEND_URL must be file://...)
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

PROJECT = "dkron-cluster"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_locks(backend_url: str, stack: str) -> list[tuple[Path, dict[str, object]]]:
    """The lock files of `stack` left by processes of this machine that no longer run."""
    url = urlparse(backend_url)
    if url.scheme != "file":
        return []
    folder = Path(url.path) / ".pulumi" / "locks" / "organization" / PROJECT / stack
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            lock = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if lock.get("hostname") == socket.gethostname() and not _alive(int(lock.get("pid") or 0)):
            found.append((path, lock))
    return found


def main() -> int:
    stack = sys.argv[1]
    for path, lock in stale_locks(os.environ.get("PULUMI_BACKEND_URL", ""), stack):
        path.unlink(missing_ok=True)
        print(
            f"stack {stack}: removed the update lock of process {lock.get('pid')}, which no longer runs"
            f" (an update stopped at {lock.get('timestamp')}); this update takes up from the last finished one",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
