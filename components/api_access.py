"""Reaching a node's API: directly, or through the SSH tunnel its URL names.

A node on an `ssh://` host serves its API on that host's loopback only. Its
API URL is this machine's loopback on the same port with the host's engine
after a `#` (`http://127.0.0.1:8181#ssh://root@10.0.0.11?identity=...`): the
fragment is never sent, and `reach` opens the tunnel the first time a process
asks for it (`components.tunnels`), keeping it up, restarted whenever the
host comes back, for the life of the process. Every process that calls the
API (the program, the providers' process, the tests, `make` tools) does the
same, so none depends on another to hold its tunnels. When two processes both
want a port, the first one's tunnel serves both.
"""

from __future__ import annotations

import contextlib
import threading
from urllib.parse import urlsplit

from components.tunnels import ApiTunnels

# How long the first call through a new tunnel waits for it: long enough for an
# SSH handshake, short enough that a host that is down reads as down at once.
FIRST_WAIT_S = 6.0

_lock = threading.Lock()
_tunnels: dict[int, tuple[str, ApiTunnels]] = {}


def tunnel_of(url: str) -> str | None:
    """The engine whose host an API URL is reached through, if any."""
    _, sep, via = url.partition("#")
    return via if sep and via else None


def reach(url: str) -> str:
    """The URL to send requests to, with its tunnel (if it names one) open."""
    base, _, _ = url.partition("#")
    via = tunnel_of(url)
    port = urlsplit(base).port
    if via is None or port is None:
        return base
    with _lock:
        known = _tunnels.get(port)
        fresh = known is None or known[0] != via
        if fresh:
            if known is not None:
                known[1].close()
            tunnel = ApiTunnels({port: (via, port)})
            tunnel.start()
            _tunnels[port] = (via, tunnel)
        current = _tunnels[port][1]
    if fresh:
        with contextlib.suppress(Exception):  # not up yet: the request says how it fails
            current.wait_ready(FIRST_WAIT_S)
    return base


def close_all() -> None:
    """Close every tunnel this process opened (tests; the process's exit does it too)."""
    with _lock:
        for _, tunnel in _tunnels.values():
            tunnel.close()
        _tunnels.clear()
