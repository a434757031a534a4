"""Reaching a node's API: directly, or through the SSH tunnel its URL names.

A node on an `ssh://` host serves its API on that host's loopback only. Its
API URL names the port on the host's loopback, with the host's engine after
a `#` (`http://127.0.0.1:8181#ssh://root@10.0.0.11?identity=...`): the
fragment is never sent. `reach` gives each process its own tunnel per such
URL, from a free port of this machine's loopback to that port on the host,
opened on first use and kept up (restarted whenever the host comes back) for
the life of the process (`components.tunnels`). Tunnels are not shared
between processes: a tunnel on a fixed local port held by one process would
keep sending another's calls to a node's old host after the node moved.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit

from components.tunnels import ApiTunnels

# How long the first call through a new tunnel waits for it: long enough for an
# SSH handshake, short enough that a host that is down reads as down at once.
FIRST_WAIT_S = 6.0

_lock = threading.Lock()
_tunnels: dict[tuple[str, int], tuple[int, ApiTunnels]] = {}


def tunnel_of(url: str) -> str | None:
    """The engine whose host an API URL is reached through, if any."""
    _, sep, via = url.partition("#")
    return via if sep and via else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reach(url: str) -> str:
    """The URL to send requests to: ``url`` itself, or this process's end of
    the tunnel it names (opened now if it is not open yet)."""
    base, _, _ = url.partition("#")
    via = tunnel_of(url)
    parts = urlsplit(base)
    if via is None or parts.port is None:
        return base
    key = (via, parts.port)
    with _lock:
        fresh = key not in _tunnels
        if fresh:
            local = _free_port()
            tunnel = ApiTunnels({local: (via, parts.port)})
            tunnel.start()
            _tunnels[key] = (local, tunnel)
        local, tunnel = _tunnels[key]
    if fresh:
        with contextlib.suppress(Exception):  # not up yet: the request says how it fails
            tunnel.wait_ready(FIRST_WAIT_S)
    return parts._replace(netloc=f"127.0.0.1:{local}").geturl()


def close_all() -> None:
    """Close every tunnel this process opened (tests; the process's exit does it too)."""
    with _lock:
        for _, tunnel in _tunnels.values():
            tunnel.close()
        _tunnels.clear()
