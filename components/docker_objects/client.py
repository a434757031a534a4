"""The one way to talk to a Docker engine: ``with engine(ref) as client``.

``ref`` is an engine ref (``engine_ref``): None or "" is the local engine, as
the environment names it (``DOCKER_HOST`` and friends); otherwise
``unix:///path``, ``tcp://host:port?tls=/dir`` or
``ssh://user@host[:port]?identity=/key&known_hosts=/file``. Every Docker call
in the project goes through ``engine()`` (or ``engine_api()`` for the
low-level API), so a client is always closed, and a malformed ref or a
missing or unreachable engine is always a ``DockerResourceError`` that says
which engine and why.

An ssh:// engine is reached through our own ``ssh`` (``ssh.SshRelay``), not
docker-py's: the ref's identity and known_hosts are used, never asked for.
Its ssh connection is shared between calls and outlives them by
``SSH_CONTROL_PERSIST_S`` seconds; everything else ends with the ``with``.

Never keep a client in a global or on a provider: the provider object is
pickled into the state with everything it references.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import docker
import docker.errors
import docker.tls
import requests
from docker.constants import MINIMUM_DOCKER_API_VERSION

from components.docker_objects.engine_ref import (
    ENGINE_SCHEMES,
    SSH_CONTROL_PERSIST_S,
    EngineRef,
    describe_engine,
    locator,
    parse_engine_ref,
    split_locator,
    ssh_command,
    tls_config,
)
from components.docker_objects.errors import DockerResourceError, EngineUnreachable
from components.docker_objects.ssh import FIRST_ANSWER_S, SshRelay, relay_client

__all__ = [
    "ENGINE_SCHEMES",
    "SSH_CONTROL_PERSIST_S",
    "DockerResourceError",
    "EngineRef",
    "engine",
    "engine_api",
    "explain",
    "is_conflict",
    "locator",
    "parse_engine_ref",
    "removing",
    "split_locator",
    "ssh_command",
]

CLIENT_TIMEOUT_S = 300  # long enough for a quiet build step


def _tls_client(base_url: str, tls: docker.tls.TLSConfig, timeout_s: int) -> docker.DockerClient:
    """A client that verifies the engine with the ref's CA only. requests lets
    ``REQUESTS_CA_BUNDLE`` (set on many machines) replace a session's CA, so the
    environment is not trusted, and the API version is asked for after that."""
    client = docker.DockerClient(
        base_url=base_url, tls=tls, timeout=timeout_s, version=MINIMUM_DOCKER_API_VERSION
    )
    client.api.trust_env = False
    client.api._version = client.api.version(api_version=False)["ApiVersion"]
    return client


def _connect(stack: ExitStack, ref: str | None, timeout_s: int) -> docker.DockerClient:
    """A new client for ``ref``; ``stack`` closes it (and its ssh relay)."""
    parsed = parse_engine_ref(ref)
    relay: SshRelay | None = None
    try:
        if parsed is None:
            client = docker.from_env(timeout=timeout_s)
        elif parsed.scheme == "ssh":
            relay = SshRelay(parsed)
            stack.callback(relay.close)
            client = relay_client(relay.start(), timeout_s)
        elif parsed.scheme == "tcp" and parsed.tls_dir:
            client = _tls_client(parsed.base_url, tls_config(parsed), timeout_s)
        else:
            client = docker.DockerClient(base_url=parsed.base_url, timeout=timeout_s)
    except (docker.errors.DockerException, requests.RequestException) as err:
        why = ""
        if relay is not None:
            # An ssh still waiting after the timeout has nothing to say yet.
            why = relay.last_error(wait_s=0 if isinstance(err, requests.Timeout) else 1)
            if why and not why.startswith("ssh:"):
                why = f"ssh: {why}"
            if not why and isinstance(err, requests.Timeout):
                why = f"no answer through ssh within {FIRST_ANSWER_S} s"
        message = f"cannot reach {describe_engine(ref)}: {why or err}"
        if _no_answer(err, why):
            raise EngineUnreachable(message) from err
        raise DockerResourceError(message) from err
    stack.callback(client.close)
    return client


# What ssh says when nothing answers at the host's address (as opposed to a key or
# host key it refuses, or an engine that is not running behind a working sshd).
_SSH_NO_ANSWER = (
    "Connection refused",
    "No route to host",
    "Network is unreachable",
    "timed out",
    "Connection reset",
    "Connection closed by remote host",
    "no answer through ssh",
)


def _no_answer(err: Exception, ssh_said: str) -> bool:
    """Whether ``err`` means the engine's host did not answer at all."""
    if ssh_said:
        return any(sign in ssh_said for sign in _SSH_NO_ANSWER)
    if isinstance(err, requests.exceptions.SSLError):
        return False
    return isinstance(err, requests.ConnectionError | requests.Timeout)


@contextmanager
def engine(ref: str | None = None, *, timeout_s: int = CLIENT_TIMEOUT_S) -> Iterator[docker.DockerClient]:
    """A client for the engine ``ref`` (None or "": the local one), closed on exit.

    ``timeout_s`` bounds each API call (a build step may be quiet for minutes).
    """
    with ExitStack() as stack:
        yield _connect(stack, ref, timeout_s)


@contextmanager
def engine_api(ref: str | None = None) -> Iterator[docker.APIClient]:
    """The low-level API of ``engine(ref)``, closed on exit."""
    with engine(ref) as client:
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
