"""Calling this node's own agent: over HTTP, or over its Unix socket.

A node of a stack with mutual TLS serves its API on the network only over
HTTPS to callers with the stack's token; for the processes of its own
container (the catch-up watcher, the exporter) it also serves it on a Unix
socket without the token (`components.node_config.LOCAL_API_SOCKET`). A
base of ``unix:///path`` names that socket; ``http://`` a plain API (a stack
without mutual TLS).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

UNIX = "unix://"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def check_base(base: str, what: str) -> str:
    """``base`` without a trailing slash; a ValueError unless it is ``unix://`` or ``http(s)://``."""
    if not base.startswith(UNIX) and urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise ValueError(f"{what} must be a unix:// socket or an http:// URL, not {base!r}")
    return base.rstrip("/")


def call_json(base: str, method: str, path: str, timeout: float) -> tuple[int, Any]:
    """`call`, its body read as JSON (None for an error status or an empty body)."""
    status, body = call(base, method, path, timeout)
    if status >= 400 or not body:
        return status, None
    return status, json.loads(body)


def call(base: str, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    """The agent's status code and body for ``method path``; an OSError when it does not answer."""
    if base.startswith(UNIX):
        connection = _UnixConnection(base[len(UNIX) :], timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as err:
            raise OSError(f"agent socket: {err}") from err
        finally:
            connection.close()
    request = urllib.request.Request(base + path, method=method)  # noqa: S310 - checked by check_base
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
