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

A node of a stack with mutual TLS serves its API over HTTPS with a
certificate of the stack's CA and answers only callers with the stack's API
token (README, "Who can command the cluster"). Whoever calls it first says so
here (`authorize`): the token and the CA, for the URLs they hold. Every
`DkronClient` of this process then checks the node's certificate against that
CA and sends the token; it never sends the token to an `http://` URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.tunnels import ApiTunnels

# How long the first call through a new tunnel waits for it: long enough for an
# SSH handshake, short enough that a host that is down reads as down at once.
FIRST_WAIT_S = 6.0

_lock = threading.Lock()
_tunnels: dict[tuple[str, int], tuple[int, ApiTunnels]] = {}


@dataclass(frozen=True)
class Credentials:
    """What a caller of a stack's API shows and trusts: the stack's API token and its CA."""

    token: str
    ca_pem: str

    def __repr__(self) -> str:  # never the token, in a traceback or a log
        return f"Credentials(ca={hashlib.sha256(self.ca_pem.encode()).hexdigest()[:12]})"

    @property
    def ca_file(self) -> str:
        """The CA as a file (what `requests` verifies against), made once per process."""
        return _ca_file(self.ca_pem)


# How the engine marks a secret value it hands over as such (a provider's inputs, an invoke's
# answer): {SIG: SECRET, "value": ...}.
_SIG, _SECRET = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secret(value: Any) -> Any:
    """A value without the engine's secret wrapper, if it has one."""
    if isinstance(value, Mapping) and value.get(_SIG) == _SECRET:
        return value.get("value")
    return value


def credentials_of(value: Any) -> Credentials | None:
    """Credentials from ``{"token": ..., "ca": ...}`` (the ``api_auth`` input or output),
    secret-wrapped or not (None for a stack without them)."""
    value = unwrap_secret(value)
    if not isinstance(value, Mapping) or not value.get("token") or not value.get("ca"):
        return None
    return Credentials(token=str(value["token"]), ca_pem=str(value["ca"]))


_credentials: dict[str, Credentials] = {}
_ca_files: dict[str, str] = {}


def _ca_file(pem: str) -> str:
    with _lock:
        if pem not in _ca_files:
            folder = Path(tempfile.mkdtemp(prefix="dkron-iac-ca-"))
            path = folder / "ca.pem"
            path.write_text(pem)
            _ca_files[pem] = str(path)
        return _ca_files[pem]


def _key(url: str) -> str:
    return url.rstrip("/")


def authorize(urls: Iterable[str], credentials: Credentials | Mapping[str, Any] | None) -> None:
    """Use `credentials` for every call to these API URLs in this process."""
    found = credentials if isinstance(credentials, Credentials) else credentials_of(credentials)
    if found is None:
        return
    with _lock:
        for url in urls:
            _credentials[_key(str(url))] = found


def authorize_props(props: Mapping[str, Any]) -> None:
    """A provider's inputs: its ``api_urls`` (a list or a node -> URL map) with its ``api_auth``."""
    urls = props.get("api_urls") or []
    authorize(urls.values() if isinstance(urls, Mapping) else urls, props.get("api_auth"))


def authorize_outputs(outputs: Mapping[str, Any]) -> None:
    """A stack's outputs (read with their secrets): every node's API, with the stack's credentials."""
    nodes = outputs.get("nodes") or {}
    urls = [str(record["api_url"]) for record in nodes.values() if isinstance(record, Mapping)]
    authorize(urls, outputs.get("api_auth"))


def credentials_for(url: str) -> Credentials | None:
    """The credentials `authorize` gave for this URL, if any."""
    with _lock:
        return _credentials.get(_key(url))


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
