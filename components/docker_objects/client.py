"""The one way to talk to a Docker engine: ``with engine(host) as client``.

``host`` names the engine: None is the local one, as the environment names it
(``DOCKER_HOST`` and friends); otherwise a ``unix://``, ``tcp://`` or
``ssh://`` URL. Every Docker call in the project goes through ``engine()`` (or
``engine_api()`` for the low-level API), so a client is always closed, and a
missing or unreachable engine is always a ``DockerResourceError`` that says
which engine.

Never keep a client in a global or on a provider: the provider object is
pickled into the state with everything it references.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

import docker
import docker.errors

__all__ = [
    "ENGINE_SCHEMES",
    "DockerResourceError",
    "engine",
    "engine_api",
    "explain",
    "is_conflict",
    "removing",
]

CLIENT_TIMEOUT_S = 300  # long enough for a quiet build step
ENGINE_SCHEMES = ("unix", "tcp", "ssh")


class DockerResourceError(Exception):
    """A Docker operation failed; the message says which object and why."""


def _connect(host: str | None = None, timeout_s: int = CLIENT_TIMEOUT_S) -> docker.DockerClient:
    """A new client for ``host`` (see the module docstring); the caller closes it."""
    where = "the Docker engine" if host is None else f"the Docker engine at {host}"
    scheme = "" if host is None else host.partition("://")[0]
    if host is not None and (scheme not in ENGINE_SCHEMES or "://" not in host):
        allowed = ", ".join(f"{s}://" for s in ENGINE_SCHEMES)
        raise DockerResourceError(f"{where}: not an engine URL; allowed: {allowed}")
    try:
        if host is None:
            return docker.from_env(timeout=timeout_s)
        # ssh:// goes through the ssh command (its config and agent), not paramiko.
        return docker.DockerClient(base_url=host, timeout=timeout_s, use_ssh_client=scheme == "ssh")
    except docker.errors.DockerException as err:
        raise DockerResourceError(f"cannot reach {where}: {err}") from err


@contextmanager
def engine(host: str | None = None, *, timeout_s: int = CLIENT_TIMEOUT_S) -> Iterator[docker.DockerClient]:
    """A client for the engine ``host`` (None: the local one), closed on exit.

    ``timeout_s`` bounds each API call (a build step may be quiet for minutes).
    """
    with closing(_connect(host, timeout_s)) as client:
        yield client


@contextmanager
def engine_api(host: str | None = None) -> Iterator[docker.APIClient]:
    """The low-level API of ``engine(host)``, closed on exit."""
    with engine(host) as client:
        yield client.api


def explain(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)


def is_conflict(err: docker.errors.APIError) -> bool:
    return bool(err.status_code == 409)


@contextmanager
def removing(what: str, hint: str = "") -> Iterator[None]:
    """Around the calls that remove ``what``: an object already gone is removed;
    any other API error is a ``DockerResourceError`` (``hint`` says the likely cause)."""
    try:
        yield
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as err:
        raise DockerResourceError(f"removing {what} failed{hint}: {explain(err)}") from err
