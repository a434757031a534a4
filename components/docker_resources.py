"""Docker networks, volumes, images and containers as Pulumi dynamic resources.

The pulumi-docker provider plugin cannot be built here, so these resources talk
to the Docker engine through docker-py. Each one is a ``ResourceProvider`` (the
CRUD code, run by the engine in a separate ``python -m pulumi.dynamic``
process) and a ``Resource`` (what the program declares).

Rules every provider here follows:

- The module does nothing at import: the provider process imports it by
  reference when it unpickles a provider. Docker clients are built inside each
  method (``docker_client()``) and closed before it returns.
- ``create`` and ``update`` return every input next to the computed outputs:
  a dynamic resource's state is exactly what they return, and ``diff`` compares
  the old state with the new inputs field by field.
- ``diff`` normalises both sides first (property values come back from the
  engine with ints as floats, dicts in another order) and treats a value not
  yet known during preview as changed.
- ``read`` (``pulumi refresh``) reports the live object. When the object is
  gone it returns ``ReadResult(id_="", outs={})``: the engine takes an empty ID
  as "resource no longer exists" and drops it from the state, so the next
  ``pulumi up`` creates it again. (``outs`` must still be a dict, the SDK's
  servicer adds a key to it.)
- Docker objects have fixed names, so a replacement deletes the old object
  before creating the new one (``delete_before_replace``).

Secrets: dynamic providers do not accept secrets. The engine sends them to the
provider as plain values and, on the way back, marks as secret every output
property (recursively, key by key inside objects) whose input of the same name
held a secret. That is why ``create``/``update``/``read`` echo ``files``,
``envs`` and ``build_args`` back under their own names with the same keys: a
secret file content or environment value passed in stays a secret in the
state. Nothing here derives another output from a secret, and no error message
quotes file contents or the environment.

Type tokens are set explicitly (``pulumi-python:dynamic/docker:<Name>``): the
SDK's default for every dynamic resource would be ``dynamic:Resource``.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import posixpath
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

import docker
import docker.errors
import docker.types
import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN

__all__ = [
    "DockerContainer",
    "DockerContainerProvider",
    "DockerImage",
    "DockerImageProvider",
    "DockerNetwork",
    "DockerNetworkProvider",
    "DockerResourceError",
    "DockerVolume",
    "DockerVolumeProvider",
    "HealthcheckSpec",
    "MountSpec",
    "PortSpec",
    "context_digest",
    "context_files",
    "docker_client",
]

_TYPE_MODULE = "docker"
_LOG_TAIL = 30  # lines of build or container log quoted in an error
_CLIENT_TIMEOUT_S = 300  # long enough for a quiet build step
_SETTLE_S = 1.0  # a started container must still be up this long after
_POLL_S = 0.25
_RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_PROTOCOLS = ("tcp", "udp")
_MAX_PORT = 65535
_HEALTHCHECK_KINDS = ("CMD", "CMD-SHELL", "NONE")
# Docker's own defaults, used when a healthcheck leaves a field out.
_HEALTHCHECK_DEFAULTS = {
    "interval_s": 30.0,
    "timeout_s": 30.0,
    "retries": 3,
    "start_period_s": 0.0,
}
_DEFAULT_STOP_TIMEOUT_S = 10
_DEFAULT_WAIT_RUNNING_S = 30
# Never part of a build context: caches that change without any source change.
_CONTEXT_IGNORED_DIRS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_CONTEXT_IGNORED_SUFFIXES = (".pyc",)


class DockerResourceError(Exception):
    """A Docker operation failed; the message says which object and why."""


class PortSpec(TypedDict, total=False):
    """A published port: container ``internal`` port on host ``ip``:``external``."""

    internal: int
    external: int
    ip: str
    protocol: Literal["tcp", "udp"]


class MountSpec(TypedDict):
    """A named volume mounted at ``target`` (an absolute path in the container)."""

    volume: pulumi.Input[str]
    target: str


class HealthcheckSpec(TypedDict, total=False):
    """A Docker healthcheck. ``test`` is an exec form command; a leading
    ``CMD``/``CMD-SHELL`` is optional (``CMD`` is assumed)."""

    test: list[str]
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float


def docker_client() -> docker.DockerClient:
    """A client for the engine named by the environment (``DOCKER_HOST`` etc.).

    Build one per provider call and close it; never keep one in a global, the
    provider object is pickled with everything it references.
    """
    try:
        return docker.from_env(timeout=_CLIENT_TIMEOUT_S)
    except docker.errors.DockerException as err:
        raise DockerResourceError(f"cannot reach the Docker engine: {err}") from err


@contextmanager
def _docker_api() -> Iterator[docker.APIClient]:
    """The low-level API of a fresh client, closed on exit."""
    with closing(docker_client()) as client:
        yield client.api


def _explain(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)


def _is_conflict(err: docker.errors.APIError) -> bool:
    return bool(err.status_code == 409)


# --- values as they come back from the engine ---------------------------------

Normalizer = Callable[[Any], Any]


def _is_known(value: Any) -> bool:
    """False if ``value`` is, or holds, a value Pulumi does not know yet (preview)."""
    if isinstance(value, str):
        return value != UNKNOWN
    if isinstance(value, Mapping):
        return all(_is_known(k) and _is_known(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_known(v) for v in value)
    return True


def _text(value: Any) -> str:
    """A scalar as Docker would store it: 8080.0 (a number after a round trip
    through the engine) is "8080", True is "true"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(float(value))


def _seconds(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    return float(value)


def _text_map(value: Any) -> dict[str, str]:
    return {str(k): _text(v) for k, v in (value or {}).items()}


def _text_list(value: Any) -> list[str]:
    return [_text(v) for v in (value or [])]


def _norm_map(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_text_map(value).items()))


def _norm_list(value: Any) -> tuple[str, ...]:
    return tuple(_text_list(value))


def _norm_set(value: Any) -> tuple[str, ...]:
    return tuple(sorted(set(_text_list(value))))


def _norm_bool(value: Any) -> bool:
    return bool(value)


def _norm_rel_paths(value: Any) -> tuple[str, ...]:
    return tuple(posixpath.normpath(_text(v)) for v in (value or []))


def _port_specs(value: Any) -> list[PortSpec]:
    return [
        PortSpec(
            internal=_int(p.get("internal")),
            external=_int(p.get("external")),
            ip=_text(p.get("ip")),
            protocol="udp" if _text(p.get("protocol")).lower() == "udp" else "tcp",
        )
        for p in (value or [])
    ]


def _norm_ports(value: Any) -> tuple[tuple[int, int, str, str], ...]:
    return tuple(sorted((p["internal"], p["external"], p["ip"], p["protocol"]) for p in _port_specs(value)))


def _norm_mounts(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((_text(m.get("volume")), posixpath.normpath(_text(m.get("target")))) for m in (value or []))
    )


def _healthcheck_test(test: Any) -> list[str]:
    words = _text_list(test)
    if words and words[0] not in _HEALTHCHECK_KINDS:
        return ["CMD", *words]
    return words


def _norm_healthcheck(value: Any) -> tuple[Any, ...] | None:
    if not value:
        return None
    d = _HEALTHCHECK_DEFAULTS
    return (
        tuple(_healthcheck_test(value.get("test"))),
        _seconds(value.get("interval_s"), d["interval_s"]),
        _seconds(value.get("timeout_s"), d["timeout_s"]),
        _int(value.get("retries"), int(d["retries"])),
        _seconds(value.get("start_period_s"), d["start_period_s"]),
    )


def _norm_int(default: int) -> Normalizer:
    return lambda value: _int(value, default)


def _changed(olds: Mapping[str, Any], news: Mapping[str, Any], fields: Mapping[str, Normalizer]) -> list[str]:
    """The fields whose normalised values differ, or whose new value is unknown."""
    changed = []
    for key, normalize in fields.items():
        new = news.get(key)
        if not _is_known(new) or normalize(olds.get(key)) != normalize(new):
            changed.append(key)
    return changed


def _inputs(props: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {key: props.get(key) for key in fields}


def _reflect(
    props: Mapping[str, Any], live: Mapping[str, Any], fields: Mapping[str, Normalizer]
) -> dict[str, Any]:
    """Live values for ``read``, keeping the declared form where they agree
    (so a refresh without drift changes nothing in the state)."""
    return {
        key: props.get(key) if normalize(props.get(key)) == normalize(live.get(key)) else live.get(key)
        for key, normalize in fields.items()
    }


def _missing() -> ReadResult:
    """What ``read`` returns for an object that no longer exists."""
    return ReadResult(id_="", outs={})


class _DockerProvider(ResourceProvider):
    """Shared ``diff``: fields in ``replace_fields`` force a delete-then-create,
    fields in ``update_fields`` are changed in place by ``update``."""

    replace_fields: ClassVar[dict[str, Normalizer]] = {}
    update_fields: ClassVar[dict[str, Normalizer]] = {}

    @classmethod
    def input_fields(cls) -> list[str]:
        return [*cls.replace_fields, *cls.update_fields]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _changed(olds, news, self.replace_fields)
        updates = _changed(olds, news, self.update_fields)
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            delete_before_replace=True,
        )

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(field, reason) for field, reason in self.problems(news) if _is_known(news.get(field))
        ]
        return CheckResult(news, failures)

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """(field, reason) for each invalid input; unknown values are skipped."""
        if not _text(news.get("name")) and "name" in self.replace_fields:
            yield "name", "must be a non-empty Docker object name"


# --- networks ------------------------------------------------------------------


def _within(value: ipaddress.IPv4Address | ipaddress.IPv4Network, network: ipaddress.IPv4Network) -> bool:
    if isinstance(value, ipaddress.IPv4Network):
        return value.subnet_of(network)
    return value in network


def _ipam(spec: Mapping[str, Any]) -> docker.types.IPAMConfig | None:
    subnet = _text(spec.get("subnet"))
    if not subnet:
        return None
    pool = docker.types.IPAMPool(
        subnet=subnet,
        gateway=_text(spec.get("gateway")) or str(ipaddress.IPv4Network(subnet).network_address + 1),
        iprange=_text(spec.get("ip_range")) or None,
    )
    return docker.types.IPAMConfig(pool_configs=[pool])


class DockerNetworkProvider(_DockerProvider):
    """A user-defined bridge network. Any change replaces it.

    With a ``subnet`` (IPv4 CIDR), containers may be given fixed addresses in
    it; ``gateway`` defaults to the subnet's first address, and ``ip_range``
    (inside the subnet) is where Docker hands out addresses to containers that
    ask for none. Without one Docker picks a subnet, and no container on the
    network can have a fixed address.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": _text,
        "labels": _norm_map,
        "subnet": _text,
        "gateway": _text,
        "ip_range": _text,
    }

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        yield from super().problems(news)
        subnet = _text(news.get("subnet"))
        if not subnet:
            for field in ("gateway", "ip_range"):
                if _text(news.get(field)):
                    yield field, "needs a subnet"
            return
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as err:
            yield "subnet", f"{subnet!r} is not an IPv4 network in CIDR form: {err}"
            return
        for field, parse in (("gateway", ipaddress.IPv4Address), ("ip_range", ipaddress.IPv4Network)):
            value = _text(news.get(field))
            if not value:
                continue
            try:
                inside = _within(parse(value), network)
            except ValueError as err:
                yield field, f"{value!r} is not valid: {err}"
                continue
            if not inside:
                yield field, f"{value!r} is not inside the subnet {subnet}"

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = _inputs(props, self.input_fields())
        with _docker_api() as api:
            try:
                created = api.create_network(
                    spec["name"],
                    driver="bridge",
                    labels=_text_map(spec["labels"]),
                    ipam=_ipam(spec),
                    check_duplicate=True,
                )
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"creating network {spec['name']!r} failed: {_explain(err)}"
                ) from err
        network_id = created["Id"]
        return CreateResult(network_id, {**spec, "network_id": network_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with _docker_api() as api:
            try:
                info = api.inspect_network(id_)
            except docker.errors.NotFound:
                return _missing()
        pool = ((info.get("IPAM") or {}).get("Config") or [{}])[0]
        live = {"name": info["Name"], "labels": info.get("Labels") or {}}
        # Docker reports the subnet it picked too; only a declared one is managed.
        for field, key in (("subnet", "Subnet"), ("gateway", "Gateway"), ("ip_range", "IPRange")):
            live[field] = pool.get(key) if _text(props.get(field)) else props.get(field)
        inputs = _reflect(props, live, self.replace_fields)
        return ReadResult(id_, {**inputs, "network_id": info["Id"]}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with _docker_api() as api:
            try:
                api.remove_network(id_)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"removing network {props.get('name')!r} failed"
                    f" (still has containers attached?): {_explain(err)}"
                ) from err


class DockerNetwork(Resource, module=_TYPE_MODULE, name="DockerNetwork"):
    """A Docker bridge network; ``network_id`` is the engine's ID."""

    name: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    subnet: pulumi.Output[str | None]
    gateway: pulumi.Output[str | None]
    ip_range: pulumi.Output[str | None]
    network_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        subnet: pulumi.Input[str] | None = None,
        gateway: pulumi.Input[str] | None = None,
        ip_range: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerNetworkProvider(),
            resource_name,
            {
                "name": name,
                "labels": {} if labels is None else labels,
                "subnet": subnet,
                "gateway": gateway,
                "ip_range": ip_range,
                "network_id": None,
            },
            opts,
        )


# --- volumes -------------------------------------------------------------------


class DockerVolumeProvider(_DockerProvider):
    """A named volume; ``retain_on_delete`` changes in place, the rest replaces
    (and a replaced volume loses its data unless it is retained).

    Docker's volume create returns an existing volume of the same name instead
    of failing, which is what lets a retained volume be adopted again; such a
    volume keeps the labels it was first created with.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": _text,
        "labels": _norm_map,
    }
    update_fields: ClassVar[dict[str, Normalizer]] = {"retain_on_delete": _norm_bool}

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = _inputs(props, self.input_fields())
        with _docker_api() as api:
            try:
                created = api.create_volume(spec["name"], driver="local", labels=_text_map(spec["labels"]))
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"creating volume {spec['name']!r} failed: {_explain(err)}"
                ) from err
        return CreateResult(created["Name"], {**spec, **self._outputs(created)})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        outputs = {
            "volume_name": olds.get("volume_name"),
            "mountpoint": olds.get("mountpoint"),
        }
        return UpdateResult({**_inputs(news, self.input_fields()), **outputs})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with _docker_api() as api:
            try:
                info = api.inspect_volume(id_)
            except docker.errors.NotFound:
                return _missing()
        live = {"name": info["Name"], "labels": info.get("Labels") or {}}
        inputs = {
            **_reflect(props, live, self.replace_fields),
            "retain_on_delete": bool(props.get("retain_on_delete")),
        }
        return ReadResult(id_, {**inputs, **self._outputs(info)}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("retain_on_delete"):
            return
        with _docker_api() as api:
            try:
                api.remove_volume(id_)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"removing volume {id_!r} failed (still mounted by a container?): {_explain(err)}"
                ) from err

    @staticmethod
    def _outputs(info: Mapping[str, Any]) -> dict[str, Any]:
        return {"volume_name": info["Name"], "mountpoint": info.get("Mountpoint", "")}


class DockerVolume(Resource, module=_TYPE_MODULE, name="DockerVolume"):
    """A named local volume. With ``retain_on_delete`` the volume (and its
    data) outlives the resource, and a later create adopts it again."""

    name: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    retain_on_delete: pulumi.Output[bool]
    volume_name: pulumi.Output[str]
    mountpoint: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        retain_on_delete: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerVolumeProvider(),
            resource_name,
            {
                "name": name,
                "labels": {} if labels is None else labels,
                "retain_on_delete": retain_on_delete,
                "volume_name": None,
                "mountpoint": None,
            },
            opts,
        )


# --- images --------------------------------------------------------------------


def _clean_include(entry: str) -> str:
    """A build-context entry as a normalised relative POSIX path."""
    path = posixpath.normpath(entry.replace(os.sep, "/"))
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        raise DockerResourceError(
            f"build context entry {entry!r} must be a path relative to the context root, inside it"
        )
    return path


def _context_entries(context_root: str, include: Iterable[str]) -> list[tuple[str, Path]]:
    """(relative path, path) of every directory, file and symlink the build
    context holds, sorted by relative path."""
    root = Path(context_root)
    if not root.is_absolute() or not root.is_dir():
        raise DockerResourceError(
            f"build context root {context_root!r} must be an absolute path to a directory"
        )
    entries: dict[str, Path] = {}

    def add(path: Path) -> None:
        rel = path.relative_to(root).as_posix()
        if rel != ".":
            entries[rel] = path

    for entry in include:
        top = root / _clean_include(entry)
        if top.is_symlink() or top.is_file():
            add(top)
        elif top.is_dir():
            add(top)
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = sorted(d for d in dirnames if d not in _CONTEXT_IGNORED_DIRS)
                base = Path(dirpath)
                for name in dirnames:
                    add(base / name)
                for name in filenames:
                    if not name.endswith(_CONTEXT_IGNORED_SUFFIXES):
                        add(base / name)
        else:
            raise DockerResourceError(f"build context entry {entry!r} does not exist under {context_root}")
    return sorted(entries.items())


def _is_executable(path: Path) -> bool:
    return bool(path.lstat().st_mode & 0o111)


def context_digest(context_root: str, include: Iterable[str]) -> str:
    """SHA-256 of a build context: relative paths, kinds, exec bits and bytes.

    Pass the result as ``DockerImage(context_digest=...)`` so that editing any
    file of the context (and nothing else) rebuilds the image.
    """
    digest = hashlib.sha256(b"dkron-iac build context v1\0")
    for rel, path in _context_entries(context_root, include):
        kind, payload = _entry_content(path)
        digest.update(kind + rel.encode() + b"\0" + len(payload).to_bytes(8, "big"))
        digest.update(payload)
    return digest.hexdigest()


def context_files(context_root: str, include: Iterable[str]) -> dict[str, str]:
    """Each file and symlink of a build context (relative path) with a short
    digest of its kind and content: what tells which file changed."""
    files = {}
    for rel, path in _context_entries(context_root, include):
        kind, payload = _entry_content(path)
        if kind != b"d":
            files[rel] = hashlib.sha256(kind + payload).hexdigest()[:16]
    return files


def _entry_content(path: Path) -> tuple[bytes, bytes]:
    """A context entry's kind (l, d, x, f) and what it holds."""
    if path.is_symlink():
        return b"l", os.readlink(path).encode()
    if path.is_dir():
        return b"d", b""
    return (b"x" if _is_executable(path) else b"f"), path.read_bytes()


def _context_tar(context_root: str, include: Iterable[str]) -> io.BytesIO:
    """The build context as an uncompressed tar with fixed owners and times, so
    the same files give the same archive and the builder's cache applies."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _context_entries(context_root, include):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if _is_executable(path) else 0o644
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _dockerfile_included(dockerfile: str, include: Iterable[str]) -> bool:
    path = posixpath.normpath(dockerfile)
    for entry in include:
        top = posixpath.normpath(entry)
        if top == "." or path == top or path.startswith(top + "/"):
            return True
    return False


def _full_tag(tag: str) -> str:
    """``name`` as Docker lists it in RepoTags (``name:latest``)."""
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _build_image(api: docker.APIClient, spec: Mapping[str, Any]) -> str:
    """Build ``spec`` with the classic builder and return the image ID."""
    tag = _text(spec["tag"])
    include = _text_list(spec["include"])
    context = _context_tar(_text(spec["context_root"]), include)
    log: deque[str] = deque(maxlen=_LOG_TAIL)

    def failure(reason: str) -> DockerResourceError:
        tail = "\n".join(log) or "(no build output)"
        return DockerResourceError(f"building image {tag!r} failed: {reason}\nlast build output:\n{tail}")

    try:
        for chunk in api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            dockerfile=posixpath.normpath(_text(spec["dockerfile"])),
            buildargs=_text_map(spec.get("build_args")),
            labels=_text_map(spec.get("labels")) or None,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            log.extend(line for line in str(chunk.get("stream", "")).splitlines() if line.strip())
            if "error" in chunk:
                raise failure(str(chunk["error"]).strip())
        return str(api.inspect_image(tag)["Id"])
    except docker.errors.APIError as err:
        raise failure(_explain(err)) from err


def _remove_image_quietly(api: docker.APIClient, ref: str) -> None:
    """Untag or remove ``ref``; an image still in use or already gone is left be."""
    try:
        api.remove_image(ref, force=False)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:
        if not _is_conflict(err):
            raise DockerResourceError(f"removing image {ref!r} failed: {_explain(err)}") from err


def remove_unused_images(labels: Mapping[str, str], keep: str) -> list[str]:
    """Remove every image carrying all of ``labels`` except ``keep`` (an image
    ID) and those containers still use; returns the IDs removed.

    An image rebuild cannot remove the image it replaces while the old
    containers run on it; this is the clean-up once they are gone.
    """
    removed = []
    with _docker_api() as api:
        in_use = {str(c.get("ImageID")) for c in api.containers(all=True)}
        for image in api.images(filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
            image_id = str(image["Id"])
            if image_id == keep or image_id in in_use:
                continue
            for tag in image.get("RepoTags") or []:
                if tag != "<none>:<none>":
                    _remove_image_quietly(api, tag)
            _remove_image_quietly(api, image_id)
            if _image_id_of(api, image_id) is None:
                removed.append(image_id)
    return removed


def _image_id_of(api: docker.APIClient, ref: str) -> str | None:
    try:
        return str(api.inspect_image(ref)["Id"])
    except docker.errors.NotFound:
        return None


class DockerImageProvider(_DockerProvider):
    """An image built locally from part of a directory.

    Any input change rebuilds in place (``update``); the resource ID is the
    tag at creation, and ``read``/``delete`` work from the ``tag`` and
    ``image_id`` in the state. A rebuild tries to remove the image it
    replaced, which fails quietly while containers still use it.
    """

    update_fields: ClassVar[dict[str, Normalizer]] = {
        "tag": _text,
        "context_root": _text,
        "include": _norm_rel_paths,
        "dockerfile": lambda v: posixpath.normpath(_text(v)),
        "build_args": _norm_map,
        "context_digest": _text,
        "labels": _norm_map,
    }

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not _text(news.get("tag")):
            yield "tag", "must be a non-empty image tag"
        root = _text(news.get("context_root"))
        if not os.path.isabs(root):
            yield "context_root", f"must be an absolute path, got {root!r}"
        include = news.get("include") or []
        if not include:
            yield "include", "must list at least one file or directory of the context"
        elif _is_known(include):
            for entry in include:
                try:
                    _clean_include(_text(entry))
                except DockerResourceError as err:
                    yield "include", str(err)
            dockerfile = _text(news.get("dockerfile"))
            if not _dockerfile_included(dockerfile, _text_list(include)):
                reason = f"{dockerfile!r} is not in the build context; add it or its directory to include"
                yield "dockerfile", reason

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = _inputs(props, self.input_fields())
        with _docker_api() as api:
            image_id = _build_image(api, spec)
        return CreateResult(_text(spec["tag"]), {**spec, "image_id": image_id})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = _inputs(news, self.input_fields())
        with _docker_api() as api:
            image_id = _build_image(api, spec)
            old_tag, old_id = _text(olds.get("tag")), _text(olds.get("image_id"))
            retagged = old_tag and _full_tag(old_tag) != _full_tag(_text(spec["tag"]))
            if retagged and _image_id_of(api, old_tag) == old_id:
                _remove_image_quietly(api, old_tag)
            if old_id and old_id != image_id:
                _remove_image_quietly(api, old_id)
        return UpdateResult({**spec, "image_id": image_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        image_id = _text(props.get("image_id"))
        with _docker_api() as api:
            try:
                info = api.inspect_image(image_id or id_)
            except docker.errors.NotFound:
                return _missing()
        tag = _text(props.get("tag"))
        # A tag moved to another image or removed reads as "" so the next
        # update rebuilds and tags again.
        live_tag = tag if _full_tag(tag) in (info.get("RepoTags") or []) else ""
        inputs = {**_inputs(props, self.input_fields()), "tag": live_tag}
        return ReadResult(id_, {**inputs, "image_id": info["Id"]}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        tag = _text(props.get("tag")) or id_
        image_id = _text(props.get("image_id"))
        with _docker_api() as api:
            if _image_id_of(api, tag) == image_id:
                _remove_image_quietly(api, tag)
            elif image_id:
                _remove_image_quietly(api, image_id)


class DockerImage(Resource, module=_TYPE_MODULE, name="DockerImage"):
    """An image built with the classic builder from ``include`` (paths relative
    to ``context_root``) without pulling; ``image_id`` is ``sha256:...``.

    Give containers ``image_id`` rather than the tag, so a rebuild that
    changes the image replaces them.
    """

    tag: pulumi.Output[str]
    context_root: pulumi.Output[str]
    include: pulumi.Output[list[str]]
    dockerfile: pulumi.Output[str]
    build_args: pulumi.Output[dict[str, str]]
    context_digest: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    image_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        tag: pulumi.Input[str],
        context_root: pulumi.Input[str],
        include: pulumi.Input[list[str]],
        dockerfile: pulumi.Input[str],
        context_digest: pulumi.Input[str],
        build_args: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerImageProvider(),
            resource_name,
            {
                "tag": tag,
                "context_root": context_root,
                "include": include,
                "dockerfile": dockerfile,
                "build_args": {} if build_args is None else build_args,
                "context_digest": context_digest,
                "labels": {} if labels is None else labels,
                "image_id": None,
            },
            opts,
        )


# --- containers ----------------------------------------------------------------


def _files_tar(files: Mapping[str, Any]) -> bytes:
    """``files`` (absolute path -> text) as a tar to extract at ``/``."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = _text(content).encode()
            info = tarfile.TarInfo(posixpath.normpath(path).lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_file(api: docker.APIClient, container_id: str, path: str) -> str | None:
    """A file's text inside the container, or None if it is not a regular file."""
    try:
        chunks, _stat = api.get_archive(container_id, path)
        archive = io.BytesIO(b"".join(chunks))
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=archive, mode="r") as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member is not None and member.isfile() else None
        return handle.read().decode("utf-8", errors="replace") if handle else None


def _container_logs(api: docker.APIClient, container_id: str) -> str:
    try:
        raw = api.logs(container_id, stdout=True, stderr=True, tail=_LOG_TAIL)
    except docker.errors.APIError:
        return "(logs unavailable)"
    text = raw.decode("utf-8", errors="replace").rstrip() if isinstance(raw, bytes) else str(raw)
    return text or "(no output)"


def _wait_running(api: docker.APIClient, container_id: str, name: str, wait_s: float) -> None:
    """Return once the container has stayed running (not restarting, not
    unhealthy) for ``_SETTLE_S``; raise with its last log lines if it exits or
    turns unhealthy, or if it is not running within ``wait_s``.

    A container with a healthcheck may still be ``starting``: a node's health
    can depend on peers that are created after it.
    """
    deadline = time.monotonic() + wait_s
    settle = min(_SETTLE_S, wait_s)
    up_since: tuple[str, float] | None = None  # (StartedAt, when first seen up)

    def failure(problem: str) -> DockerResourceError:
        return DockerResourceError(
            f"container {name!r} {problem}; last log lines:\n{_container_logs(api, container_id)}"
        )

    while True:
        state = api.inspect_container(container_id)["State"]
        if state.get("Restarting") or state.get("Status") in ("exited", "dead"):
            raise failure(f"exited with code {state.get('ExitCode')} after start")
        if (state.get("Health") or {}).get("Status") == "unhealthy":
            raise failure("turned unhealthy after start")
        now = time.monotonic()
        if state.get("Running"):
            started = str(state.get("StartedAt"))
            if up_since is None or up_since[0] != started:
                up_since = (started, now)
            if now - up_since[1] >= settle:
                return
        if now > deadline + settle:
            raise failure(f"was not up within {wait_s:g}s (status {state.get('Status')!r})")
        time.sleep(_POLL_S)


def _remove_container_quietly(api: docker.APIClient, container_id: str) -> None:
    with suppress(docker.errors.APIError):
        api.remove_container(container_id, force=True)


def _create_kwargs(api: docker.APIClient, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of ``APIClient.create_container`` for a container spec."""
    network = _text(spec["network"])
    ports = _port_specs(spec.get("ports"))
    bindings: dict[str, list[tuple[str, int]]] = {}
    for port in ports:
        key = f"{port['internal']}/{port['protocol']}"
        bindings.setdefault(key, []).append((port["ip"], port["external"]))
    host_config = api.create_host_config(
        port_bindings=bindings,
        mounts=[
            docker.types.Mount(target=target, source=volume, type="volume")
            for volume, target in _norm_mounts(spec.get("mounts"))
        ],
        restart_policy={"Name": _text(spec.get("restart")) or "unless-stopped"},
        network_mode=network,
    )
    kwargs: dict[str, Any] = {
        "image": _text(spec["image"]),
        "name": _text(spec["name"]),
        "hostname": _text(spec.get("hostname")) or None,
        "command": _text_list(spec.get("command")) or None,
        "environment": _text_map(spec.get("envs")),
        "labels": _text_map(spec.get("labels")),
        "ports": [(p["internal"], p["protocol"]) for p in ports],
        "host_config": host_config,
        "networking_config": api.create_networking_config(
            {
                network: api.create_endpoint_config(
                    aliases=_text_list(spec.get("aliases")) or None,
                    ipv4_address=_text(spec.get("ipv4_address")) or None,
                )
            }
        ),
        "stop_timeout": _int(spec.get("stop_timeout_s"), _DEFAULT_STOP_TIMEOUT_S),
    }
    healthcheck = _norm_healthcheck(spec.get("healthcheck"))
    if healthcheck is not None:
        test, interval, timeout, retries, start_period = healthcheck
        kwargs["healthcheck"] = docker.types.Healthcheck(
            test=list(test),
            interval=int(interval * 1e9),
            timeout=int(timeout * 1e9),
            retries=retries,
            start_period=int(start_period * 1e9),
        )
    return kwargs


def _live_container(
    api: docker.APIClient, info: Mapping[str, Any], props: Mapping[str, Any]
) -> dict[str, Any]:
    """The container's inputs as the engine reports them. Where Docker mixes
    in values from the image (env, labels, default command) only the keys the
    program declared are reported; ``files`` are read back from the container."""
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    declared_network = _text(props.get("network"))
    network = declared_network if declared_network in networks else next(iter(networks), "")
    endpoint = networks.get(network) or {}
    declared_aliases = set(_text_list(props.get("aliases")))
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    declared_envs = _text_map(props.get("envs"))
    declared_labels = _text_map(props.get("labels"))
    labels = config.get("Labels") or {}
    image = _text(props.get("image"))
    if image != info.get("Image") and (not image or _image_id_of(api, image) != info.get("Image")):
        image = str(info.get("Image"))
    health = config.get("Healthcheck")
    files: dict[str, str] = {}
    for path in props.get("files") or {}:
        content = _read_file(api, info["Id"], path)
        if content is not None:
            files[path] = content
    return {
        "name": str(info.get("Name", "")).lstrip("/"),
        "image": image,
        "hostname": config.get("Hostname") if props.get("hostname") else props.get("hostname"),
        "command": (config.get("Cmd") or []) if props.get("command") else props.get("command"),
        "envs": {k: env[k] for k in declared_envs if k in env},
        "network": network,
        "aliases": [a for a in endpoint.get("Aliases") or [] if a in declared_aliases],
        "ipv4_address": (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None,
        "ports": [
            {
                "internal": int(key.split("/")[0]),
                "external": _int(binding.get("HostPort")),
                "ip": binding.get("HostIp", ""),
                "protocol": key.split("/")[1] if "/" in key else "tcp",
            }
            for key, port_bindings in (host.get("PortBindings") or {}).items()
            for binding in port_bindings or []
        ],
        "mounts": [
            {"volume": m.get("Source", ""), "target": m.get("Target", "")}
            for m in host.get("Mounts") or []
            if m.get("Type") == "volume"
        ],
        "files": files,
        "labels": {k: labels[k] for k in declared_labels if k in labels},
        "restart": (host.get("RestartPolicy") or {}).get("Name") or "no",
        "healthcheck": None
        if not props.get("healthcheck") or not health
        else {
            "test": health.get("Test") or [],
            "interval_s": (health.get("Interval") or 0) / 1e9 or _HEALTHCHECK_DEFAULTS["interval_s"],
            "timeout_s": (health.get("Timeout") or 0) / 1e9 or _HEALTHCHECK_DEFAULTS["timeout_s"],
            "retries": health.get("Retries") or _HEALTHCHECK_DEFAULTS["retries"],
            "start_period_s": (health.get("StartPeriod") or 0) / 1e9,
        },
        "stop_timeout_s": config.get("StopTimeout", props.get("stop_timeout_s")),
        "wait_running_s": props.get("wait_running_s"),
    }


def _norm_files(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((posixpath.normpath(str(k)), _text(v)) for k, v in (value or {}).items()))


def _known_items(news: Mapping[str, Any], field: str, kind: type) -> Any:
    """``news[field]`` if it is a known value of ``kind``, else an empty one."""
    value = news.get(field)
    return value if isinstance(value, kind) and _is_known(value) else kind()


def _port_problems(news: Mapping[str, Any]) -> Iterator[str]:
    for port in _known_items(news, "ports", list):
        for key in ("internal", "external"):
            value = port.get(key)
            if not isinstance(value, (int, float)) or not 1 <= value <= _MAX_PORT:
                yield f"{key} port {value!r} is not a port number 1-{_MAX_PORT}"
        protocol = _text(port.get("protocol")) or "tcp"
        if protocol not in _PROTOCOLS:
            yield f"protocol {protocol!r} is not one of {', '.join(_PROTOCOLS)}"


def _container_problems(news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for field in ("image", "network"):
        if not _text(news.get(field)):
            yield field, "must not be empty"
    address = _text(news.get("ipv4_address"))
    if address:
        try:
            ipaddress.IPv4Address(address)
        except ValueError as err:
            yield "ipv4_address", f"{address!r} is not an IPv4 address: {err}"
    restart = _text(news.get("restart")) or "unless-stopped"
    if restart not in _RESTART_POLICIES:
        yield "restart", f"is {restart!r}; allowed: {', '.join(_RESTART_POLICIES)}"
    yield from (("ports", reason) for reason in _port_problems(news))
    for mount in _known_items(news, "mounts", list):
        if not _text(mount.get("volume")) or not posixpath.isabs(_text(mount.get("target"))):
            yield "mounts", f"{mount!r} needs a volume name and an absolute target path"
    for path in _known_items(news, "files", dict):
        if not posixpath.isabs(path) or path.endswith("/"):
            yield "files", f"{path!r} must be an absolute file path"
    healthcheck = _known_items(news, "healthcheck", dict)
    if healthcheck and not healthcheck.get("test"):
        yield "healthcheck", "needs a non-empty test command"
    for field in ("stop_timeout_s", "wait_running_s"):
        value = news.get(field)
        if isinstance(value, (int, float)) and value < 0:
            yield field, f"must be zero or more seconds, got {value!r}"


class DockerContainerProvider(_DockerProvider):
    """A container started from an image ID, on one network, with files
    written into it before it starts.

    Every input change replaces the container (old one first: the name is
    fixed), except ``wait_running_s``, which only governs ``create``. A
    container that ``read`` finds stopped (output ``running`` false) is
    replaced on the next update.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": _text,
        "image": _text,
        "hostname": _text,
        "command": _norm_list,
        "envs": _norm_map,
        "network": _text,
        "aliases": _norm_set,
        "ipv4_address": _text,
        "ports": _norm_ports,
        "mounts": _norm_mounts,
        "files": _norm_files,
        "labels": _norm_map,
        "restart": lambda v: _text(v) or "unless-stopped",
        "healthcheck": _norm_healthcheck,
        "stop_timeout_s": _norm_int(_DEFAULT_STOP_TIMEOUT_S),
    }
    update_fields: ClassVar[dict[str, Normalizer]] = {
        "wait_running_s": lambda v: _seconds(v, _DEFAULT_WAIT_RUNNING_S),
    }

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        yield from super().problems(news)
        yield from _container_problems(news)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        if olds.get("running") is False:
            result.replaces = [*(result.replaces or []), "running"]
            result.changes = True
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = _inputs(props, self.input_fields())
        name = _text(spec["name"])
        with _docker_api() as api:
            try:
                container_id = str(api.create_container(**_create_kwargs(api, spec))["Id"])
            except docker.errors.APIError as err:
                raise DockerResourceError(f"creating container {name!r} failed: {_explain(err)}") from err
            # Create is all or nothing: a container that fails to start is removed.
            try:
                if spec["files"]:
                    api.put_archive(container_id, "/", _files_tar(spec["files"]))
                api.start(container_id)
                _wait_running(
                    api,
                    container_id,
                    name,
                    _seconds(spec["wait_running_s"], _DEFAULT_WAIT_RUNNING_S),
                )
                info = api.inspect_container(container_id)
            except docker.errors.APIError as err:
                _remove_container_quietly(api, container_id)
                raise DockerResourceError(f"starting container {name!r} failed: {_explain(err)}") from err
            except BaseException:
                _remove_container_quietly(api, container_id)
                raise
        return CreateResult(container_id, {**spec, **self._outputs(info, spec["network"])})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        outputs = {key: olds.get(key) for key in ("container_id", "ip_address", "running")}
        return UpdateResult({**_inputs(news, self.input_fields()), **outputs})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with _docker_api() as api:
            try:
                info = api.inspect_container(id_)
                live = _live_container(api, info, props)
            except docker.errors.NotFound:
                return _missing()
        inputs = _reflect(props, live, {**self.replace_fields, **self.update_fields})
        return ReadResult(id_, {**inputs, **self._outputs(info, inputs["network"])}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # An explicit stop timeout gives the process SIGTERM and time to leave
        # its cluster before SIGKILL.
        timeout = _int(props.get("stop_timeout_s"), _DEFAULT_STOP_TIMEOUT_S)
        with _docker_api() as api:
            try:
                api.stop(id_, timeout=timeout)
                api.remove_container(id_, force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"removing container {props.get('name')!r} failed: {_explain(err)}"
                ) from err

    @staticmethod
    def _outputs(info: Mapping[str, Any], network: Any) -> dict[str, Any]:
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        return {
            "container_id": info["Id"],
            "ip_address": (networks.get(_text(network)) or {}).get("IPAddress", ""),
            "running": bool((info.get("State") or {}).get("Running")),
        }


class DockerContainer(Resource, module=_TYPE_MODULE, name="DockerContainer"):
    """A container on one network; ``container_id`` and its ``ip_address`` on
    that network are outputs, ``running`` is its state as last read.

    ``files`` (absolute path -> text, mode 0644) are written before the
    process starts. Pass secret contents (of ``files`` or ``envs``) as Pulumi
    secrets: the engine marks the output secret key by key (see the module
    docstring); ``additional_secret_outputs=["envs"]`` makes it whole.
    """

    name: pulumi.Output[str]
    image: pulumi.Output[str]
    hostname: pulumi.Output[str]
    command: pulumi.Output[list[str]]
    envs: pulumi.Output[dict[str, str]]
    network: pulumi.Output[str]
    aliases: pulumi.Output[list[str]]
    ipv4_address: pulumi.Output[str | None]
    ports: pulumi.Output[list[dict[str, Any]]]
    mounts: pulumi.Output[list[dict[str, Any]]]
    files: pulumi.Output[dict[str, str]]
    labels: pulumi.Output[dict[str, str]]
    restart: pulumi.Output[str]
    healthcheck: pulumi.Output[dict[str, Any] | None]
    stop_timeout_s: pulumi.Output[int]
    wait_running_s: pulumi.Output[int]
    container_id: pulumi.Output[str]
    ip_address: pulumi.Output[str]
    running: pulumi.Output[bool]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        image: pulumi.Input[str],
        network: pulumi.Input[str],
        hostname: pulumi.Input[str] | None = None,
        command: pulumi.Input[list[str]] | None = None,
        envs: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        aliases: pulumi.Input[list[str]] | None = None,
        ipv4_address: pulumi.Input[str] | None = None,
        ports: pulumi.Input[list[PortSpec]] | None = None,
        mounts: pulumi.Input[list[MountSpec]] | None = None,
        files: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        restart: pulumi.Input[str] = "unless-stopped",
        healthcheck: pulumi.Input[HealthcheckSpec] | None = None,
        stop_timeout_s: pulumi.Input[int] = _DEFAULT_STOP_TIMEOUT_S,
        wait_running_s: pulumi.Input[int] = _DEFAULT_WAIT_RUNNING_S,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """
        :param name: container name (fixed; a change replaces the container).
        :param image: image ID (``DockerImage.image_id``) or reference.
        :param network: network the container is attached to, with ``aliases``.
        :param ipv4_address: fixed address on that network (which needs a
            declared subnet); Docker's pick if None. A fixed address survives
            restarts of the container and of the engine.
        :param hostname: host name inside the container (Docker's default if None).
        :param command: command (the image's default if empty).
        :param envs: environment variables.
        :param ports: published ports, e.g. ``{"internal": 8080, "external": 8946,
            "ip": "127.0.0.1", "protocol": "tcp"}``.
        :param mounts: named volumes, ``{"volume": ..., "target": ...}``.
        :param files: absolute path -> text, written before the process starts.
        :param labels: container labels.
        :param restart: restart policy: no, always, unless-stopped, on-failure.
        :param healthcheck: Docker healthcheck; ``test`` in exec form.
        :param stop_timeout_s: seconds between SIGTERM and SIGKILL on stop and delete.
        :param wait_running_s: how long create waits for the container to be up.
        """
        super().__init__(
            DockerContainerProvider(),
            resource_name,
            {
                "name": name,
                "image": image,
                "hostname": hostname,
                "command": [] if command is None else command,
                "envs": {} if envs is None else envs,
                "network": network,
                "aliases": [] if aliases is None else aliases,
                "ipv4_address": ipv4_address,
                "ports": [] if ports is None else ports,
                "mounts": [] if mounts is None else mounts,
                "files": {} if files is None else files,
                "labels": {} if labels is None else labels,
                "restart": restart,
                "healthcheck": healthcheck,
                "stop_timeout_s": stop_timeout_s,
                "wait_running_s": wait_running_s,
                "container_id": None,
                "ip_address": None,
                "running": None,
            },
            opts,
        )
