"""``DockerContainer``: a container on one network, with files written into it
before it starts, and ``create`` that waits until it stays up.

It also says what the process may do: its ``user``, the capabilities it
drops and adds, ``security_opt`` (``no-new-privileges``), a read-only root
filesystem with ``tmpfs`` mounts, and ``own_volumes``, which hands the
mounted volumes to ``user`` before the process starts (see ``_own_volumes``).
"""

from __future__ import annotations

import io
import ipaddress
import posixpath
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Any, ClassVar, Literal, TypedDict

import docker
import docker.errors
import docker.types
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.docker_objects.client import DockerResourceError, engine_api, explain, removing
from components.docker_objects.image import LOG_TAIL, image_id_of
from components.docker_objects.props import (
    NO_NEW_PRIVILEGES,
    Normalizer,
    as_int,
    inputs_of,
    is_known,
    missing,
    norm_bool,
    norm_int,
    norm_list,
    norm_map,
    norm_set,
    reflect,
    seconds,
    text,
    text_list,
    text_map,
)
from components.docker_objects.provider import (
    ENGINE_FIELD,
    TYPE_MODULE,
    DockerProvider,
    dropped_when_unreachable,
    engine_of,
    read_as_recorded_when_unreachable,
)

__all__ = ["DockerContainer", "DockerContainerProvider", "HealthcheckSpec", "MountSpec", "PortSpec"]

# A started container must still be up this long after. A process that cannot
# start (bad config, missing file) exits well within it; every step that
# replaces a node waits it out once, so it is kept short.
_SETTLE_S = 0.5
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
# The network that is the engine host's own: no address, alias or published port.
HOST_NETWORK = "host"
_DEFAULT_WAIT_RUNNING_S = 30
# On the volumes that hold a read-only container's `files`: the container's
# name, so they go with it even when it was removed by hand first.
FILES_VOLUME_LABEL = "dkron-iac.files-of"
# The most a volume-owner helper may take (it changes owners of one node's data).
_OWNER_HELPER_TIMEOUT_S = 120
# What the volume-owner helper may do as root: change owners, and read every
# directory to find what to change (a user's 0700 folder included). Nothing else.
OWNER_HELPER_CAPS = ("CHOWN", "DAC_READ_SEARCH")


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


def _port_specs(value: Any) -> list[PortSpec]:
    return [
        PortSpec(
            internal=as_int(p.get("internal")),
            external=as_int(p.get("external")),
            ip=text(p.get("ip")),
            protocol="udp" if text(p.get("protocol")).lower() == "udp" else "tcp",
        )
        for p in (value or [])
    ]


def _norm_ports(value: Any) -> tuple[tuple[int, int, str, str], ...]:
    return tuple(sorted((p["internal"], p["external"], p["ip"], p["protocol"]) for p in _port_specs(value)))


def _norm_mounts(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((text(m.get("volume")), posixpath.normpath(text(m.get("target")))) for m in (value or []))
    )


def norm_caps(value: Any) -> tuple[str, ...]:
    """Capability names as Docker takes them either way: ``net_raw``,
    ``NET_RAW`` and ``CAP_NET_RAW`` are one; ``ALL`` stays ``ALL``."""
    names = {name.upper().removeprefix("CAP_") for name in text_list(value)}
    return tuple(sorted(names))


def norm_security_opt(value: Any) -> tuple[str, ...]:
    """Security options; ``no-new-privileges`` and ``no-new-privileges:true`` are one."""
    return tuple(
        sorted({NO_NEW_PRIVILEGES if opt == f"{NO_NEW_PRIVILEGES}:true" else opt for opt in text_list(value)})
    )


def numeric_user(value: Any) -> tuple[int, int] | None:
    """``uid:gid`` as numbers (None if ``value`` is not that form)."""
    uid, sep, gid = text(value).partition(":")
    if not sep or not uid.isdigit() or not gid.isdigit():
        return None
    return int(uid), int(gid)


def declared_user(declared: Any, running_as: Any, image_user: Any) -> str:
    """The container's ``user`` in the form it was declared.

    Docker reports the image's ``USER`` as the container's own when none was
    given, so a declared ``""`` (the image's user) comes back as, say,
    ``prometheus``: that is still ``""``. Any other user is read as it is,
    so a change of user shows and replaces the container.
    """
    if not text(declared) and text(running_as) == text(image_user):
        return ""
    return text(running_as)


def _image_user(api: docker.APIClient, image: str) -> str | None:
    """The ``USER`` of ``image`` (None if the image is gone)."""
    try:
        return text((api.inspect_image(image).get("Config") or {}).get("User"))
    except docker.errors.NotFound:
        return None


def _file_volume_dirs(spec: Mapping[str, Any]) -> list[str]:
    """Where ``files`` go on volumes of the container's own: with a read-only
    root filesystem Docker writes nothing outside a volume, even before start."""
    if not norm_bool(spec.get("read_only")):
        return []
    return sorted({posixpath.dirname(posixpath.normpath(path)) for path in spec.get("files") or {}})


def _healthcheck_test(test: Any) -> list[str]:
    words = text_list(test)
    if words and words[0] not in _HEALTHCHECK_KINDS:
        return ["CMD", *words]
    return words


def _norm_healthcheck(value: Any) -> tuple[Any, ...] | None:
    if not value:
        return None
    d = _HEALTHCHECK_DEFAULTS
    return (
        tuple(_healthcheck_test(value.get("test"))),
        seconds(value.get("interval_s"), d["interval_s"]),
        seconds(value.get("timeout_s"), d["timeout_s"]),
        as_int(value.get("retries"), int(d["retries"])),
        seconds(value.get("start_period_s"), d["start_period_s"]),
    )


def _files_tar(files: Mapping[str, Any], at: str = "/") -> bytes:
    """``files`` (absolute path -> text) as a tar to extract at folder ``at``."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = text(content).encode()
            info = tarfile.TarInfo(posixpath.relpath(posixpath.normpath(path), at))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _put_files(api: docker.APIClient, container_id: str, spec: Mapping[str, Any]) -> None:
    """Write ``files`` into the created container: at ``/`` (folders made as
    needed), or, with a read-only root filesystem, into each folder's volume."""
    files = spec.get("files") or {}
    folders = _file_volume_dirs(spec)
    if not folders:
        api.put_archive(container_id, "/", _files_tar(files))
        return
    for folder in folders:
        inside = {p: c for p, c in files.items() if posixpath.dirname(posixpath.normpath(p)) == folder}
        api.put_archive(container_id, folder, _files_tar(inside, folder))


def _remove_file_volumes(api: docker.APIClient, name: str) -> None:
    """The volumes that held the ``files`` of container ``name``, gone with it."""
    found = api.volumes(filters={"label": f"{FILES_VOLUME_LABEL}={name}"}).get("Volumes") or []
    for volume in found:
        with suppress(docker.errors.NotFound):
            api.remove_volume(volume["Name"], force=True)


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
        raw = api.logs(container_id, stdout=True, stderr=True, tail=LOG_TAIL)
    except docker.errors.APIError:
        return "(logs unavailable)"
    output = raw.decode("utf-8", errors="replace").rstrip() if isinstance(raw, bytes) else str(raw)
    return output or "(no output)"


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
        api.remove_container(container_id, force=True, v=True)


def _own_volumes(api: docker.APIClient, spec: Mapping[str, Any]) -> None:
    """Give every file on the mounted volumes to the container's ``uid:gid``.

    A short-lived helper from the same image, as root with only
    ``OWNER_HELPER_CAPS``, no network and no new privileges, changes the owner
    of whatever is not the user's yet (a new volume's root, data a root
    process wrote) and nothing else; the container itself then needs no
    capability to use its data.
    """
    owner = numeric_user(spec.get("user"))
    mounts = _norm_mounts(spec.get("mounts"))
    if owner is None or owner[0] == 0 or not mounts:
        return
    uid, gid = owner
    targets = [target for _volume, target in mounts]
    script = f'find "$@" \\( ! -uid {uid} -o ! -gid {gid} \\) -exec chown -h {uid}:{gid} {{}} +'
    helper = api.create_container(
        image=text(spec["image"]),
        command=["sh", "-c", script, "sh", *targets],
        user="0:0",
        labels=text_map(spec.get("labels")),
        network_disabled=True,
        host_config=api.create_host_config(
            mounts=[
                docker.types.Mount(target=target, source=volume, type="volume") for volume, target in mounts
            ],
            cap_drop=["ALL"],
            cap_add=list(OWNER_HELPER_CAPS),
            security_opt=[NO_NEW_PRIVILEGES],
            read_only=True,
            network_mode="none",
        ),
    )["Id"]
    try:
        api.start(helper)
        status = api.wait(helper, timeout=_OWNER_HELPER_TIMEOUT_S)
        if status.get("StatusCode") != 0:
            raise DockerResourceError(
                f"giving the volumes of container {text(spec['name'])!r} to {uid}:{gid} failed"
                f" (exit {status.get('StatusCode')}):\n{_container_logs(api, helper)}"
            )
    finally:
        _remove_container_quietly(api, helper)


def _create_kwargs(api: docker.APIClient, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of ``APIClient.create_container`` for a container spec."""
    network = text(spec["network"])
    on_host = network == HOST_NETWORK
    ports = [] if on_host else _port_specs(spec.get("ports"))
    bindings: dict[str, list[tuple[str, int]]] = {}
    for port in ports:
        key = f"{port['internal']}/{port['protocol']}"
        bindings.setdefault(key, []).append((port["ip"], port["external"]))
    labels = text_map(spec.get("labels"))
    host_config = api.create_host_config(
        port_bindings=bindings,
        mounts=[
            *(
                docker.types.Mount(target=target, source=volume, type="volume")
                for volume, target in _norm_mounts(spec.get("mounts"))
            ),
            # Anonymous, labelled like the container (so a clean-up by label
            # finds them) and removed with it.
            *(
                docker.types.Mount(
                    target=folder,
                    source=None,
                    type="volume",
                    labels={**labels, FILES_VOLUME_LABEL: text(spec["name"])},
                )
                for folder in _file_volume_dirs(spec)
            ),
        ],
        restart_policy={"Name": text(spec.get("restart")) or "unless-stopped"},
        network_mode=network,
        cap_drop=list(norm_caps(spec.get("cap_drop"))) or None,
        cap_add=list(norm_caps(spec.get("cap_add"))) or None,
        security_opt=list(norm_security_opt(spec.get("security_opt"))) or None,
        read_only=norm_bool(spec.get("read_only")),
        tmpfs=text_map(spec.get("tmpfs")) or None,
    )
    kwargs: dict[str, Any] = {
        "image": text(spec["image"]),
        "name": text(spec["name"]),
        "hostname": text(spec.get("hostname")) or None,
        "user": text(spec.get("user")) or None,
        "command": text_list(spec.get("command")) or None,
        "environment": text_map(spec.get("envs")),
        "labels": labels,
        "ports": [(p["internal"], p["protocol"]) for p in ports],
        "host_config": host_config,
        "networking_config": None
        if on_host
        else api.create_networking_config(
            {
                network: api.create_endpoint_config(
                    aliases=text_list(spec.get("aliases")) or None,
                    ipv4_address=text(spec.get("ipv4_address")) or None,
                )
            }
        ),
        "stop_timeout": as_int(spec.get("stop_timeout_s"), _DEFAULT_STOP_TIMEOUT_S),
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
    declared_network = text(props.get("network"))
    network = declared_network if declared_network in networks else next(iter(networks), "")
    endpoint = networks.get(network) or {}
    declared_aliases = set(text_list(props.get("aliases")))
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    declared_envs = text_map(props.get("envs"))
    declared_labels = text_map(props.get("labels"))
    labels = config.get("Labels") or {}
    image = text(props.get("image"))
    if image != info.get("Image") and (not image or image_id_of(api, image) != info.get("Image")):
        image = str(info.get("Image"))
    health = config.get("Healthcheck")
    user = text(config.get("User"))
    if user and not text(props.get("user")):
        # Only then is the image asked what its own user is.
        user = declared_user(props.get("user"), user, _image_user(api, str(info.get("Image"))))
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
                "external": as_int(binding.get("HostPort")),
                "ip": binding.get("HostIp", ""),
                "protocol": key.split("/")[1] if "/" in key else "tcp",
            }
            for key, port_bindings in (host.get("PortBindings") or {}).items()
            for binding in port_bindings or []
        ],
        # Anonymous volumes (where read-only containers keep `files`) are not declared mounts.
        "mounts": [
            {"volume": m.get("Source", ""), "target": m.get("Target", "")}
            for m in host.get("Mounts") or []
            if m.get("Type") == "volume" and m.get("Source")
        ],
        "user": user,
        "cap_drop": host.get("CapDrop") or [],
        "cap_add": host.get("CapAdd") or [],
        "security_opt": host.get("SecurityOpt") or [],
        "read_only": bool(host.get("ReadonlyRootfs")),
        "tmpfs": host.get("Tmpfs") or {},
        "own_volumes": props.get("own_volumes"),
        "files": files,
        "labels": {k: labels[k] for k in declared_labels if k in labels},
        "engine": props.get("engine"),
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
    return tuple(sorted((posixpath.normpath(str(k)), text(v)) for k, v in (value or {}).items()))


def _known_items(news: Mapping[str, Any], field: str, kind: type) -> Any:
    """``news[field]`` if it is a known value of ``kind``, else an empty one."""
    value = news.get(field)
    return value if isinstance(value, kind) and is_known(value) else kind()


def _port_problems(news: Mapping[str, Any]) -> Iterator[str]:
    for port in _known_items(news, "ports", list):
        for key in ("internal", "external"):
            value = port.get(key)
            if not isinstance(value, (int, float)) or not 1 <= value <= _MAX_PORT:
                yield f"{key} port {value!r} is not a port number 1-{_MAX_PORT}"
        protocol = text(port.get("protocol")) or "tcp"
        if protocol not in _PROTOCOLS:
            yield f"protocol {protocol!r} is not one of {', '.join(_PROTOCOLS)}"


def _container_problems(news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for field in ("image", "network"):
        if not text(news.get(field)):
            yield field, "must not be empty"
    if text(news.get("network")) == HOST_NETWORK:
        for field in ("aliases", "ipv4_address", "ports"):
            if news.get(field):
                yield (
                    field,
                    f"must be empty on the {HOST_NETWORK!r} network (the container uses the host's own)",
                )
    address = text(news.get("ipv4_address"))
    if address:
        try:
            ipaddress.IPv4Address(address)
        except ValueError as err:
            yield "ipv4_address", f"{address!r} is not an IPv4 address: {err}"
    restart = text(news.get("restart")) or "unless-stopped"
    if restart not in _RESTART_POLICIES:
        yield "restart", f"is {restart!r}; allowed: {', '.join(_RESTART_POLICIES)}"
    yield from (("ports", reason) for reason in _port_problems(news))
    for mount in _known_items(news, "mounts", list):
        if not text(mount.get("volume")) or not posixpath.isabs(text(mount.get("target"))):
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
    for path in _known_items(news, "tmpfs", dict):
        if not posixpath.isabs(path):
            yield "tmpfs", f"{path!r} must be an absolute path"
    user = news.get("user")
    if news.get("own_volumes") and is_known(user) and numeric_user(user) is None:
        yield "user", f"must be numeric uid:gid (e.g. 10001:10001) with own_volumes, got {text(user)!r}"


class DockerContainerProvider(DockerProvider):
    """A container started from an image ID, on one network, with files
    written into it before it starts.

    Every input change replaces the container (old one first: the name is
    fixed), except ``wait_running_s`` and ``own_volumes``, which only govern
    ``create``. A
    container that ``read`` finds stopped (output ``running`` false) is
    replaced on the next update.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": text,
        "image": text,
        "hostname": text,
        "command": norm_list,
        "envs": norm_map,
        "network": text,
        "aliases": norm_set,
        "ipv4_address": text,
        "ports": _norm_ports,
        "mounts": _norm_mounts,
        "files": _norm_files,
        "labels": norm_map,
        "restart": lambda v: text(v) or "unless-stopped",
        "healthcheck": _norm_healthcheck,
        "stop_timeout_s": norm_int(_DEFAULT_STOP_TIMEOUT_S),
        "user": text,
        "cap_drop": norm_caps,
        "cap_add": norm_caps,
        "security_opt": norm_security_opt,
        "read_only": norm_bool,
        "tmpfs": norm_map,
        **ENGINE_FIELD,
    }
    update_fields: ClassVar[dict[str, Normalizer]] = {
        "wait_running_s": lambda v: seconds(v, _DEFAULT_WAIT_RUNNING_S),
        "own_volumes": norm_bool,
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
        spec = inputs_of(props, self.input_fields())
        name = text(spec["name"])
        with engine_api(engine_of(spec)) as api:
            try:
                # Left by a container of this name removed by hand.
                _remove_file_volumes(api, name)
                if norm_bool(spec.get("own_volumes")):
                    _own_volumes(api, spec)
                container_id = str(api.create_container(**_create_kwargs(api, spec))["Id"])
            except docker.errors.APIError as err:
                raise DockerResourceError(f"creating container {name!r} failed: {explain(err)}") from err
            # Create is all or nothing: a container that fails to start is removed.
            try:
                if spec["files"]:
                    _put_files(api, container_id, spec)
                api.start(container_id)
                _wait_running(
                    api,
                    container_id,
                    name,
                    seconds(spec["wait_running_s"], _DEFAULT_WAIT_RUNNING_S),
                )
                info = api.inspect_container(container_id)
            except docker.errors.APIError as err:
                _remove_container_quietly(api, container_id)
                raise DockerResourceError(f"starting container {name!r} failed: {explain(err)}") from err
            except BaseException:
                _remove_container_quietly(api, container_id)
                raise
        return CreateResult(container_id, {**spec, **self._outputs(info, spec["network"])})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        outputs = {key: olds.get(key) for key in ("container_id", "ip_address", "running")}
        return UpdateResult({**inputs_of(news, self.input_fields()), **outputs})

    @read_as_recorded_when_unreachable
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with engine_api(engine_of(props)) as api:
            try:
                info = api.inspect_container(id_)
                live = _live_container(api, info, props)
            except docker.errors.NotFound:
                return missing()
        inputs = reflect(props, live, {**self.replace_fields, **self.update_fields})
        return ReadResult(id_, {**inputs, **self._outputs(info, inputs["network"])}, inputs)

    @dropped_when_unreachable
    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # An explicit stop timeout gives the process SIGTERM and time to leave
        # its cluster before SIGKILL.
        timeout = as_int(props.get("stop_timeout_s"), _DEFAULT_STOP_TIMEOUT_S)
        with engine_api(engine_of(props)) as api, removing(f"container {props.get('name')!r}"):
            api.stop(id_, timeout=timeout)
            # `v`: with its anonymous volumes (`files` of a read-only container); named ones stay.
            api.remove_container(id_, force=True, v=True)
        with engine_api(engine_of(props)) as api, removing(f"the file volumes of {props.get('name')!r}"):
            _remove_file_volumes(api, text(props.get("name")))

    @staticmethod
    def _outputs(info: Mapping[str, Any], network: Any) -> dict[str, Any]:
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        return {
            "container_id": info["Id"],
            "ip_address": (networks.get(text(network)) or {}).get("IPAddress", ""),
            "running": bool((info.get("State") or {}).get("Running")),
        }


class DockerContainer(Resource, module=TYPE_MODULE, name="DockerContainer"):
    """A container on one network; ``container_id`` and its ``ip_address`` on
    that network are outputs, ``running`` is its state as last read.

    ``files`` (absolute path -> text, mode 0644) are written before the
    process starts. Pass secret contents (of ``files`` or ``envs``) as Pulumi
    secrets: the engine marks the output secret key by key (see the package
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
    user: pulumi.Output[str]
    cap_drop: pulumi.Output[list[str]]
    cap_add: pulumi.Output[list[str]]
    security_opt: pulumi.Output[list[str]]
    read_only: pulumi.Output[bool]
    tmpfs: pulumi.Output[dict[str, str]]
    own_volumes: pulumi.Output[bool]
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
        user: pulumi.Input[str] = "",
        cap_drop: pulumi.Input[list[str]] | None = None,
        cap_add: pulumi.Input[list[str]] | None = None,
        security_opt: pulumi.Input[list[str]] | None = None,
        read_only: pulumi.Input[bool] = False,
        tmpfs: pulumi.Input[Mapping[str, str]] | None = None,
        own_volumes: pulumi.Input[bool] = False,
        engine: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """
        :param name: container name (fixed; a change replaces the container).
        :param image: image ID (``DockerImage.image_id``) or reference.
        :param network: network the container is attached to, with ``aliases``;
            ``"host"`` runs it on the engine host's own network (no aliases,
            fixed address or published ports: it listens on the host).
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
        :param user: ``uid:gid`` (or a name the image knows) the process runs as;
            "" is the image's ``USER``.
        :param cap_drop: capabilities taken away (``ALL`` for every one).
        :param cap_add: capabilities given back or added.
        :param security_opt: Docker security options, e.g. ``no-new-privileges``.
        :param read_only: read-only root filesystem; ``files`` then go on small
            anonymous volumes of the container's own (one per folder), as Docker
            writes nothing else into it.
        :param tmpfs: path -> mount options of in-memory filesystems, e.g.
            ``{"/tmp": "rw,nosuid,nodev,size=128m,mode=1777"}``.
        :param own_volumes: before the process starts, give every file on the
            ``mounts`` to ``user`` (numeric ``uid:gid``), through a short-lived
            root helper with only CHOWN and DAC_READ_SEARCH; nothing for root.
        :param engine: the engine it runs on (an engine reference,
            ``components.docker_objects.client``; "" is the local one).
        """
        # The name is fixed, so the old container must go first. The provider's diff says so,
        # but a forced replacement (`pulumi up --replace`) goes by this option alone.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
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
                "engine": engine,
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
                "user": user,
                "cap_drop": [] if cap_drop is None else cap_drop,
                "cap_add": [] if cap_add is None else cap_add,
                "security_opt": [] if security_opt is None else security_opt,
                "read_only": read_only,
                "tmpfs": {} if tmpfs is None else tmpfs,
                "own_volumes": own_volumes,
                "container_id": None,
                "ip_address": None,
                "running": None,
            },
            opts,
        )
