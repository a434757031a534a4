"""SSH local forwards to node APIs on ssh:// hosts, kept up while a process needs them.

A node on a remote host serves its HTTP API on that host's loopback only; the
program reaches it at ``http://127.0.0.1:<port>`` here through
``ssh -N -L 127.0.0.1:<port>:127.0.0.1:<remote port>``. ``ApiTunnels`` keeps
one such ssh per forward and starts it again whenever it ends (host down,
link cut, host back), after a short pause. A forward whose local port is
already held by another process (say a test's own tunnel to the same node)
keeps being retried quietly: whoever listens there serves.

Each forward is its own ssh connection (not the engine's shared one), so it
ends with its process, and every ssh here dies with this process, even on
SIGKILL. Nothing is printed: the program's stdout is its outputs; messages
go to this module's logger.
"""

from __future__ import annotations

import atexit
import logging
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from components.docker_objects.engine_ref import parse_engine_ref, ssh_command
from components.docker_objects.errors import DockerResourceError
from components.docker_objects.ssh import last_ssh_error, spawn_tied, stop

__all__ = ["ApiTunnels"]

log = logging.getLogger(__name__)

RESTART_PAUSES_S = (1.0, 2.0, 3.0)  # after the 1st, 2nd, 3rd+ end in a row
STEADY_S = 10.0  # a forward up this long starts its pauses over
POLL_S = 0.2


@dataclass
class _Forward:
    local_port: int
    ref: str
    remote_port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    err: IO[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    ends_in_a_row: int = 0
    last_error: str = "ssh has not connected yet"

    def describe(self) -> str:
        return f"127.0.0.1:{self.local_port} -> 127.0.0.1:{self.remote_port} on {self.ref}"


class ApiTunnels:
    """Forwards ``{local port: (ssh engine ref, remote port)}``, both on 127.0.0.1.

    ``with ApiTunnels(...) as tunnels`` or ``start()``/``close()``; ``close()``
    also runs at exit. ``wait_ready()`` waits for the local ports to answer.
    """

    def __init__(self, forwards: Mapping[int, tuple[str, int]]) -> None:
        self._forwards: dict[int, _Forward] = {}
        for local, (ref, remote) in forwards.items():
            parsed = parse_engine_ref(ref)
            if parsed is None or parsed.scheme != "ssh":
                raise DockerResourceError(f"API tunnel to port {remote}: {ref!r} is not an ssh:// engine")
            argv = ssh_command(
                parsed,
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"127.0.0.1:{local}:127.0.0.1:{remote}",
                multiplex=False,
            )
            self._forwards[local] = _Forward(local, ref, remote, argv)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ApiTunnels:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start every forward (in the background) and keep them up until ``close()``."""
        if self._thread is not None:
            return
        self._stopping.clear()
        # The ssh children get SIGTERM when the thread that started them ends:
        # so it is this one, which lives until close().
        self._thread = threading.Thread(target=self._supervise, name="api-tunnels", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def close(self) -> None:
        """Stop every forward's ssh; nothing of ours is left running."""
        atexit.unregister(self.close)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for forward in self._forwards.values():
                self._end(forward)

    def pids(self) -> dict[int, int | None]:
        """Each forward's running ssh (by local port), None while it is down."""
        with self._lock:
            return {
                port: f.proc.pid if f.proc is not None and f.proc.poll() is None else None
                for port, f in self._forwards.items()
            }

    def wait_ready(self, timeout_s: float = 15.0) -> dict[int, str]:
        """Wait until every local port accepts connections, at most ``timeout_s``.

        Returns the forwards that did not, by local port, each with why (its
        ssh's last error); empty when all are ready.
        """
        deadline = time.monotonic() + timeout_s
        waiting = set(self._forwards)
        while waiting:
            waiting = {port for port in waiting if not _accepts(port)}
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        with self._lock:
            return {
                port: f"{self._forwards[port].describe()}: {self._forwards[port].last_error}"
                for port in waiting
            }

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                for forward in self._forwards.values():
                    try:
                        self._tend(forward, now)
                    except Exception:  # keep the other forwards up whatever this one does
                        log.exception("API tunnel %s", forward.describe())
            self._stopping.wait(POLL_S)

    def _tend(self, forward: _Forward, now: float) -> None:
        if forward.proc is not None:
            code = forward.proc.poll()
            if code is None:
                return
            said = self._read_error(forward)
            why = last_ssh_error(said) or f"ssh exited with {code}"
            forward.last_error = why
            ran_s = now - forward.started_at
            forward.ends_in_a_row = 1 if ran_s >= STEADY_S else forward.ends_in_a_row + 1
            pause = RESTART_PAUSES_S[min(forward.ends_in_a_row, len(RESTART_PAUSES_S)) - 1]
            forward.next_start = now + pause
            # Quiet when someone else holds the port: that listener serves.
            level = logging.DEBUG if "Address already in use" in said else logging.INFO
            log.log(level, "API tunnel %s ended (%s); again in %.0f s", forward.describe(), why, pause)
            self._end(forward)
        if now >= forward.next_start:
            # Nameless (O_TMPFILE): nothing is left behind, whatever ends this process.
            forward.err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _end)
            forward.proc = spawn_tied(
                forward.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=forward.err
            )
            forward.started_at = now
            log.debug("API tunnel %s: ssh %d started", forward.describe(), forward.proc.pid)

    @staticmethod
    def _read_error(forward: _Forward) -> str:
        if forward.err is None:
            return ""
        forward.err.seek(0)
        return forward.err.read().decode(errors="replace")

    @staticmethod
    def _end(forward: _Forward) -> None:
        if forward.proc is not None:
            stop(forward.proc, grace_s=0)
            forward.proc = None
        if forward.err is not None:
            forward.err.close()
            forward.err = None


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True
