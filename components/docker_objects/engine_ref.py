"""Engine references and container locators: plain strings, parsed here.

An engine ref names a Docker engine together with the client options it needs:

- ``None`` or ``""``: the local engine, as the environment names it (``DOCKER_HOST``...).
- ``unix:///run/x/docker.sock``
- ``tcp://10.0.0.5:2376?tls=/abs/dir``: ``dir`` holds ``ca.pem``, ``cert.pem`` and
  ``key.pem``; the engine's certificate is verified. Without ``tls`` the
  connection is plain TCP.
- ``ssh://root@10.213.77.11:22?identity=/abs/key&known_hosts=/abs/file``: both
  options are optional; with ``known_hosts`` only that file decides whether
  the host key is right.

Paths in a ref are absolute. A container locator is ``name`` (the local
engine) or ``name@<engine ref>``, split on the first ``@``.

Everything here is pure: parsing never touches the network or the files
(``tls_config`` checks that the files exist).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import docker  # the package, not docker.tls: its submodules import each other

from components.docker_objects.errors import DockerResourceError

__all__ = [
    "ENGINE_SCHEMES",
    "SSH_CONTROL_PERSIST_S",
    "TLS_FILES",
    "EngineRef",
    "describe_engine",
    "locator",
    "parse_engine_ref",
    "split_locator",
    "ssh_command",
    "ssh_control_dir",
    "tls_config",
]

ENGINE_SCHEMES = ("unix", "tcp", "ssh")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
SSH_CONTROL_PERSIST_S = 30
# Each scheme's query options; every one is an absolute path.
_OPTIONS = {"unix": (), "tcp": ("tls",), "ssh": ("identity", "known_hosts")}


@dataclass(frozen=True)
class EngineRef:
    """A parsed engine ref (``parse_engine_ref``); ``ref`` is the string it came from."""

    ref: str
    scheme: str
    base_url: str  # what docker-py is given (unix:// and tcp://); for ssh:// the URL without options
    host: str = ""
    port: int | None = None
    user: str = ""
    path: str = ""  # unix:// only
    tls_dir: str = ""
    identity: str = ""
    known_hosts: str = ""


def describe_engine(ref: str | None) -> str:
    """How messages name the engine ``ref``."""
    return "the Docker engine" if not ref else f"the Docker engine at {ref}"


def parse_engine_ref(ref: str | None) -> EngineRef | None:
    """The engine ``ref`` parsed, or None for the local engine.

    A malformed ref is a ``DockerResourceError`` that says what is wrong and what is allowed.
    """
    if not ref:
        return None
    where = describe_engine(ref)
    scheme, sep, _rest = ref.partition("://")
    if not sep or scheme not in ENGINE_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in ENGINE_SCHEMES)
        raise DockerResourceError(f"{where}: not an engine URL; allowed: {allowed}")
    parts = urlsplit(ref)
    if parts.fragment:
        raise DockerResourceError(f"{where}: a '#' has no meaning in an engine URL")
    options = _options(where, scheme, parts.query)
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise DockerResourceError(f"{where}: expected unix:///absolute/path/to/docker.sock")
        return EngineRef(ref=ref, scheme=scheme, base_url=f"unix://{parts.path}", path=parts.path)
    try:
        port = parts.port
    except ValueError as err:
        raise DockerResourceError(f"{where}: bad port ({err})") from None
    host = parts.hostname or ""
    if not host or parts.path not in ("", "/"):
        form = (
            "tcp://host:port[?tls=/dir]"
            if scheme == "tcp"
            else "ssh://user@host[:port][?identity=..&known_hosts=..]"
        )
        raise DockerResourceError(f"{where}: expected {form}")
    if host.startswith("-"):
        raise DockerResourceError(f"{where}: a host name cannot start with '-'")
    if parts.password is not None:
        raise DockerResourceError(f"{where}: a password does not belong in an engine URL; use identity=")
    netloc_host = f"[{host}]" if ":" in host else host
    if scheme == "tcp":
        if port is None or parts.username is not None:
            raise DockerResourceError(f"{where}: expected tcp://host:port[?tls=/dir]")
        return EngineRef(
            ref=ref,
            scheme=scheme,
            base_url=f"tcp://{netloc_host}:{port}",
            host=host,
            port=port,
            tls_dir=options.get("tls", ""),
        )
    user = parts.username or ""
    at = f"{user}@" if user else ""
    return EngineRef(
        ref=ref,
        scheme=scheme,
        base_url=f"ssh://{at}{netloc_host}" + (f":{port}" if port is not None else ""),
        host=host,
        port=port,
        user=user,
        identity=options.get("identity", ""),
        known_hosts=options.get("known_hosts", ""),
    )


def _options(where: str, scheme: str, query: str) -> dict[str, str]:
    allowed = _OPTIONS[scheme]
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise DockerResourceError(f"{where}: cannot read the options {query!r}") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise DockerResourceError(f"{where}: unknown option {key!r} for {scheme}:// (allowed: {known})")
        if key in options:
            raise DockerResourceError(f"{where}: option {key!r} given twice")
        if not os.path.isabs(value):
            raise DockerResourceError(f"{where}: option {key}= must be an absolute path, not {value!r}")
        options[key] = value
    return options


def tls_config(ref: EngineRef) -> docker.TLSConfig:
    """The TLS settings of a ``tcp://...?tls=DIR`` ref: client certificate and key,
    and the CA that must have signed the engine's certificate (verified)."""
    where = describe_engine(ref.ref)
    files = [Path(ref.tls_dir, name) for name in TLS_FILES]
    for file in files:
        if not file.is_file():
            raise DockerResourceError(
                f"{where}: TLS file {file} is missing (tls= needs {', '.join(TLS_FILES)})"
            )
    ca, cert, key = (str(f) for f in files)
    try:
        return docker.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
    except docker.errors.TLSParameterError as err:
        raise DockerResourceError(f"{where}: {err}") from err


def split_locator(value: str) -> tuple[str | None, str]:
    """``name`` or ``name@<engine ref>`` -> (engine ref or None for the local engine, name)."""
    name, sep, ref = value.partition("@")
    if not name:
        raise DockerResourceError(f"container locator {value!r}: no container name before the '@'")
    if sep and not ref:
        raise DockerResourceError(f"container locator {value!r}: no engine after the '@'")
    return (ref or None, name)


def locator(name: str, ref: str | None) -> str:
    """The container locator of ``name`` on the engine ``ref`` (None or "": the local one)."""
    if not name or "@" in name:
        raise DockerResourceError(f"container name {name!r}: must be non-empty and without '@'")
    return f"{name}@{ref}" if ref else name


def ssh_control_dir() -> Path:
    """The private directory (this user's only) holding the shared ssh connections' sockets.

    Under /tmp, not $TMPDIR: a socket path must stay short (108 bytes on Linux).
    """
    path = Path(f"/tmp/dkron-iac-ssh-{os.getuid()}")  # noqa: S108 (private: checked below)
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
        raise DockerResourceError(f"{path} exists and is not a directory of this user's: remove it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def ssh_command(ref: str | EngineRef, *options: str, multiplex: bool = True) -> list[str]:
    """The ``ssh`` argv (options and destination) that reaches the host of an ssh:// ``ref``;
    ``options`` go before the destination (the caller's command goes after it).

    Nothing is taken from the environment's ssh setup for the identity or the
    host key when the ref names them: ``IdentitiesOnly`` with ``identity``, and
    with ``known_hosts`` that file alone decides (strict checking). Never asks
    anything (``BatchMode``); a dead link ends the command within ~6 s.

    ``multiplex``: share one connection per ref (``ControlMaster=auto``, kept
    ``SSH_CONTROL_PERSIST_S`` after its last use), so that many short
    commands stay fast. Long-lived forwards pass False: a forward made through
    a shared connection would live in that connection, not in the command.
    """
    parsed = ref if isinstance(ref, EngineRef) else parse_engine_ref(ref)
    if parsed is None or parsed.scheme != "ssh":
        raise DockerResourceError(f"{describe_engine(parsed.ref if parsed else None)}: not an ssh:// engine")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    argv += ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"]
    if parsed.identity:
        argv += ["-i", parsed.identity, "-o", "IdentitiesOnly=yes"]
    if parsed.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={parsed.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        argv += ["-o", "StrictHostKeyChecking=yes"]
    if multiplex:
        # One socket per whole ref: another identity or known_hosts file must
        # not ride on a connection that was checked with different ones.
        digest = hashlib.sha256(parsed.ref.encode()).hexdigest()[:20]
        control = ssh_control_dir() / digest
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}"]
        argv += ["-o", f"ControlPersist={SSH_CONTROL_PERSIST_S}"]
    else:
        argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    if parsed.port is not None:
        argv += ["-p", str(parsed.port)]
    if parsed.user:
        argv += ["-l", parsed.user]
    return [*argv, *options, parsed.host]
