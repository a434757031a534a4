"""The Docker engine of an ``ssh://`` host, reached through our own ``ssh``.

docker-py's own ssh support either needs paramiko or runs a bare ``ssh``
that takes its identity and host keys from the user's ssh config. Instead,
``SshRelay`` listens on a unix socket in a private temporary directory and
hands each connection docker-py opens to a new
``ssh <our options> host docker system dial-stdio``: the accepted socket is
that process's stdin and stdout, so no bytes pass through Python. The
connections share one ssh connection per ref (``ssh_command``), so each costs
a channel, not a handshake.

``spawn_tied`` starts a child that dies with this process, even when it is
killed with SIGKILL (``PR_SET_PDEATHSIG``, set by ``setpriv``); the tunnel keeper
uses it too.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import docker
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.transport import UnixHTTPAdapter

from components.docker_objects.engine_ref import EngineRef, ssh_command

__all__ = ["FIRST_ANSWER_S", "SshRelay", "last_ssh_error", "relay_client", "spawn_tied"]

log = logging.getLogger(__name__)

FIRST_ANSWER_S = 8  # ssh's ConnectTimeout (5 s) and a little


def spawn_tied(argv: Sequence[str], *, stdin: Any, stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
    """``argv`` started so that it gets SIGTERM when the thread that started it,
    or this process, ends (however it ends).

    The death signal is set by util-linux's ``setpriv`` just before it execs
    ``argv``, not by a ``preexec_fn``: running Python in a forked child of a
    process that serves gRPC (the Pulumi program, the providers' process)
    runs gRPC's fork handlers, which break the child's file descriptors. The
    signal follows the *thread* that forks: start tied children from a thread
    that lives as long as they should.
    """
    tied = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
    return subprocess.Popen(tied, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True)


def last_ssh_error(text: str) -> str:
    """The line of ssh's stderr that says why it failed (the last non-empty
    one: warnings come first), or "" when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # The host-key warning box ends with the line that matters, but says more above it.
    for line in lines:
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in line:
            return f"{lines[-1]} (the host key differs from the one in known_hosts)"
    return lines[-1] if lines else ""


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait ``grace_s`` for ``proc`` to end by itself, then terminate it, then kill it."""
    for ending in (None, proc.terminate, proc.kill):
        if ending is not None:
            with contextlib.suppress(ProcessLookupError):
                ending()
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            grace_s = 2.0


class _OnePool(UnixHTTPAdapter):  # type: ignore[misc]
    """docker-py keeps a connection pool per request URL: nearly free on a local
    socket, but through the relay each new connection is a remote session
    (~0.2 s). Here every request shares one pool."""

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection("http+docker://localhost", proxies)


def relay_client(url: str, timeout_s: int) -> docker.DockerClient:
    """A client on the relay at ``url`` whose requests share their connections.

    Raises what docker-py and requests raise when the engine does not answer,
    within ``FIRST_ANSWER_S`` (a shared connection whose link is gone can keep
    a new session waiting until its keepalives give up).
    """
    # The placeholder version skips docker-py's own version request, which
    # would go through a pool of its own before ours is mounted.
    client = docker.DockerClient(base_url=url, timeout=timeout_s, version=MINIMUM_DOCKER_API_VERSION)
    try:
        adapter = _OnePool(url.replace("unix://", "http+unix://", 1), timeout_s)
        client.api.mount("http+docker://", adapter)
        # What docker-py does itself for its adapter and for version="auto" (no public setters).
        client.api._custom_adapter = adapter
        client.api.timeout = min(timeout_s, FIRST_ANSWER_S)
        client.api._version = client.api.version(api_version=False)["ApiVersion"]
        client.api.timeout = timeout_s
    except BaseException:
        client.close()
        raise
    return client


class SshRelay:
    """A unix socket whose every connection is the Docker API of an ssh:// engine.

    ``start()`` returns the ``unix://`` URL to give docker-py; ``close()``
    stops the listener, ends every ssh it started and removes the directory.
    """

    def __init__(self, ref: EngineRef) -> None:
        self._argv = [*ssh_command(ref, "-T"), "docker", "system", "dial-stdio"]
        self._dir = Path(tempfile.mkdtemp(prefix="dkron-engine-", dir="/tmp"))
        self._path = self._dir / "docker.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._children: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, name="ssh-engine-relay", daemon=True)

    def start(self) -> str:
        self._listener.bind(str(self._path))
        self._listener.listen(16)
        self._thread.start()
        return f"unix://{self._path}"

    def last_error(self, wait_s: float = 1.0) -> str:
        """Why the most recent ssh that failed did (its stderr's last line),
        each ssh given ``wait_s`` to end first."""
        with self._lock:
            children = list(self._children)
        for proc, err in reversed(children):
            # Called once docker-py has seen its connection end: the ssh behind
            # it is ending too.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
            if proc.returncode not in (None, 0):
                err.seek(0)
                reason = last_ssh_error(err.read().decode(errors="replace"))
                if reason:
                    return reason
        return ""

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                if self._closing:
                    return
                err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
                try:
                    proc = spawn_tied(self._argv, stdin=conn.fileno(), stdout=conn.fileno(), stderr=err)
                except OSError as error:
                    log.warning("cannot start ssh: %s", error)
                    err.close()
                    continue
                with self._lock:
                    self._children.append((proc, err))

    def close(self) -> None:
        self._closing = True
        # shutdown wakes the accept() blocked in the relay thread (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            children, self._children = self._children, []
        for proc, err in children:
            # docker-py has closed its connections: each ssh sees the end of its input.
            stop(proc, grace_s=0.5)
            err.close()
        shutil.rmtree(self._dir, ignore_errors=True)
