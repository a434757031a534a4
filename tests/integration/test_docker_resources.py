"""The Docker dynamic providers against the local Docker engine.

Each test calls a provider's methods the way the Pulumi engine would, then
looks at the engine with docker-py. Everything a test creates is named
``t-dockres-<random>-...`` and removed in teardown, even when the test fails.
"""

from __future__ import annotations

import io
import ipaddress
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pulumi
import pytest
import requests
from pulumi import automation as auto
from pulumi.runtime.rpc import UNKNOWN

from components.addressing import docker_network_subnets, free_subnet
from components.docker_objects import (
    DockerContainer,
    DockerContainerProvider,
    DockerImageProvider,
    DockerNetwork,
    DockerNetworkProvider,
    DockerResourceError,
    DockerVolumeProvider,
    context_digest,
    engine,
    remove_unused_images,
)
from testing.harness import BASE_IMAGE, write_image_context

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What the engine adds to every dynamic resource's properties.
PROVIDER_PROP = {"__provider": "serialized-provider"}


@dataclass
class Scope:
    """Names for one test's Docker objects, and what to clean up after it."""

    prefix: str
    image_ids: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def labels(self) -> dict[str, str]:
        return {"dkron-iac.test": self.prefix}


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    with engine() as docker_engine:
        yield docker_engine


@pytest.fixture
def scope(client: docker.DockerClient) -> Iterator[Scope]:
    scope = Scope(prefix=f"t-dockres-{secrets.token_hex(4)}")
    try:
        yield scope
    finally:
        _sweep(client, scope)


def _sweep(client: docker.DockerClient, scope: Scope) -> None:
    name_filter = {"name": scope.prefix}
    for container in client.containers.list(all=True, filters=name_filter):
        container.remove(force=True)
    for network in client.networks.list(filters=name_filter):
        network.remove()
    for volume in client.volumes.list(filters=name_filter):
        volume.remove(force=True)
    # Anonymous ones (a read-only container's files) by their label.
    for volume in client.volumes.list(filters={"label": f"dkron-iac.test={scope.prefix}"}):
        volume.remove(force=True)
    tagged = client.images.list(filters={"reference": f"{scope.prefix}*"})
    for ref in [*(image.id for image in tagged), *scope.image_ids]:
        with suppress(docker.errors.NotFound):
            client.images.remove(ref, force=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _round_trip(value: Any) -> Any:
    """``value`` as the engine hands it back: every number a float."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _round_trip(v) for k, v in reversed(list(value.items()))}
    return [_round_trip(v) for v in value]


def _engine_props(inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, **PROVIDER_PROP}


# --- networks ------------------------------------------------------------------


def test_network_create_read_delete(client: docker.DockerClient, scope: Scope) -> None:
    provider = DockerNetworkProvider()
    inputs = {
        "name": scope.name("net"),
        "labels": scope.labels,
        "subnet": None,
        "gateway": None,
        "ip_range": None,
    }
    props = _engine_props(inputs)

    created = provider.create(props)
    assert created.outs is not None
    assert created.outs["network_id"] == created.id
    assert "__provider" not in created.outs
    live = client.networks.get(created.id)
    assert live.name == scope.name("net")
    assert live.attrs["Driver"] == "bridge"
    assert live.attrs["Labels"] == scope.labels

    read = provider.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert read.id == created.id
    assert read.inputs == inputs
    assert not provider.diff(created.id, created.outs, props).changes

    relabelled = provider.diff(created.id, created.outs, {**props, "labels": {"other": "1"}})
    assert relabelled.changes
    assert relabelled.replaces == ["labels"]
    assert relabelled.delete_before_replace

    provider.delete(created.id, created.outs)
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(created.id)
    assert provider.read(created.id, created.outs).id == ""
    provider.delete(created.id, created.outs)  # already gone: no error


def test_network_with_a_subnet_gives_containers_fixed_addresses_that_survive_restarts(
    client: docker.DockerClient, scope: Scope
) -> None:
    taken = [ipaddress.IPv4Network(s) for subnets in docker_network_subnets(client).values() for s in subnets]
    subnet = free_subnet(scope.name("net"), taken)
    assert subnet is not None, "no free /24 for the test"
    network_inputs = {
        "name": scope.name("net"),
        "labels": scope.labels,
        "subnet": str(subnet),
        "gateway": str(subnet.network_address + 1),
        "ip_range": str(list(subnet.subnets(prefixlen_diff=1))[1]),
    }
    networks = DockerNetworkProvider()
    network = networks.create(_engine_props(network_inputs))
    assert network.outs is not None
    pool = client.networks.get(network.id).attrs["IPAM"]["Config"][0]
    assert pool == {
        "Subnet": str(subnet),
        "Gateway": network_inputs["gateway"],
        "IPRange": network_inputs["ip_range"],
    }
    read = networks.read(network.id, {**network.outs, **PROVIDER_PROP})
    assert read.inputs == network_inputs
    assert not networks.diff(network.id, network.outs, _engine_props(network_inputs)).changes
    moved = networks.diff(
        network.id, network.outs, _engine_props({**network_inputs, "subnet": "10.1.0.0/24"})
    )
    assert moved.replaces == ["subnet"]

    fixed = str(subnet.network_address + 10)
    containers = DockerContainerProvider()
    inputs = {
        "name": scope.name("fixed"),
        "image": client.images.get(BASE_IMAGE).id,
        "command": ["sleep", "600"],
        "network": network_inputs["name"],
        "ipv4_address": fixed,
        "labels": scope.labels,
        "stop_timeout_s": 1,
    }
    created = containers.create(_engine_props(inputs))
    assert created.outs is not None
    assert created.outs["ip_address"] == fixed
    # A container that asks for no address gets one from Docker's half only.
    other = client.containers.run(
        BASE_IMAGE, ["sleep", "600"], name=scope.name("other"), network=network_inputs["name"], detach=True
    )
    other.reload()
    other_address = other.attrs["NetworkSettings"]["Networks"][network_inputs["name"]]["IPAddress"]
    assert ipaddress.IPv4Address(other_address) in ipaddress.IPv4Network(network_inputs["ip_range"])

    # Stopped, the other container starting first: the address is still the node's.
    container = client.containers.get(created.id)
    container.stop(timeout=1)
    other.restart(timeout=1)
    container.start()
    container.reload()
    assert container.attrs["NetworkSettings"]["Networks"][network_inputs["name"]]["IPAddress"] == fixed
    refreshed = containers.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert refreshed.outs is not None
    assert refreshed.outs["ipv4_address"] == fixed
    assert not containers.diff(created.id, refreshed.outs, _engine_props(inputs)).changes
    readdressed = containers.diff(
        created.id, created.outs, _engine_props({**inputs, "ipv4_address": str(subnet.network_address + 11)})
    )
    assert readdressed.replaces == ["ipv4_address"]

    containers.delete(created.id, created.outs)
    other.remove(force=True)
    networks.delete(network.id, network.outs)
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(network.id)


# --- volumes -------------------------------------------------------------------


def test_volume_delete_removes_it(client: docker.DockerClient, scope: Scope) -> None:
    provider = DockerVolumeProvider()
    props = _engine_props({"name": scope.name("vol"), "labels": scope.labels, "retain_on_delete": False})

    created = provider.create(props)
    assert created.id == scope.name("vol")
    assert created.outs is not None
    assert created.outs["volume_name"] == scope.name("vol")
    assert created.outs["mountpoint"]
    assert client.volumes.get(created.id).attrs["Labels"] == scope.labels
    assert not provider.diff(created.id, created.outs, props).changes

    provider.delete(created.id, created.outs)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(created.id)
    assert provider.read(created.id, created.outs).id == ""
    provider.delete(created.id, created.outs)  # already gone: no error


def test_volume_retained_then_released(client: docker.DockerClient, scope: Scope) -> None:
    provider = DockerVolumeProvider()
    retained = _engine_props({"name": scope.name("data"), "labels": scope.labels, "retain_on_delete": True})
    created = provider.create(retained)
    assert created.outs is not None

    provider.delete(created.id, created.outs)
    assert client.volumes.get(created.id).name == scope.name("data")

    # Creating it again adopts the retained volume.
    adopted = provider.create(retained)
    assert adopted.id == created.id
    assert adopted.outs is not None

    released = {**retained, "retain_on_delete": False}
    diff = provider.diff(adopted.id, adopted.outs, released)
    assert diff.changes
    assert diff.replaces == []
    updated = provider.update(adopted.id, adopted.outs, released)
    assert updated.outs is not None
    assert updated.outs["retain_on_delete"] is False
    assert updated.outs["mountpoint"] == adopted.outs["mountpoint"]

    read = provider.read(adopted.id, {**updated.outs, **PROVIDER_PROP})
    assert read.id == adopted.id
    assert read.outs is not None
    assert not provider.diff(adopted.id, read.outs, released).changes

    provider.delete(adopted.id, updated.outs)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(adopted.id)


# --- images --------------------------------------------------------------------


def _image_inputs(scope: Scope, root: Path) -> dict[str, Any]:
    include = ["Dockerfile", "app"]
    return {
        "tag": f"{scope.name('img')}:test",
        "context_root": str(root),
        "include": include,
        "dockerfile": "Dockerfile",
        "build_args": {},
        "context_digest": context_digest(str(root), include),
    }


def _file_in_image(client: docker.DockerClient, image_id: str, path: str) -> str:
    output = client.containers.run(image_id, ["cat", path], remove=True)
    return bytes(output).decode()


def test_image_build_and_rebuild(client: docker.DockerClient, scope: Scope, tmp_path: Path) -> None:
    provider = DockerImageProvider()
    write_image_context(tmp_path, "v1\n")
    props = _engine_props(_image_inputs(scope, tmp_path))

    created = provider.create(props)
    assert created.outs is not None
    first_id = created.outs["image_id"]
    scope.image_ids.append(first_id)
    assert first_id.startswith("sha256:")
    assert client.images.get(props["tag"]).id == first_id
    assert _file_in_image(client, first_id, "/app/hello.txt") == "v1\n"
    assert not provider.diff(created.id, created.outs, _round_trip(props)).changes

    read = provider.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert read.id == created.id
    assert read.outs is not None
    assert read.outs["image_id"] == first_id
    assert read.inputs is not None
    assert read.inputs["tag"] == props["tag"]

    (tmp_path / "app" / "hello.txt").write_text("v2\n")
    changed = _engine_props(_image_inputs(scope, tmp_path))
    assert changed["context_digest"] != props["context_digest"]
    diff = provider.diff(created.id, created.outs, changed)
    assert diff.changes
    assert diff.replaces == []

    updated = provider.update(created.id, created.outs, changed)
    assert updated.outs is not None
    second_id = updated.outs["image_id"]
    scope.image_ids.append(second_id)
    assert second_id != first_id
    assert client.images.get(props["tag"]).id == second_id
    assert _file_in_image(client, second_id, "/app/hello.txt") == "v2\n"
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(first_id)  # no container used it, so the rebuild removed it

    provider.delete(created.id, updated.outs)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(props["tag"])
    assert provider.read(created.id, updated.outs).id == ""
    provider.delete(created.id, updated.outs)  # already gone: no error


def test_old_labelled_images_are_removed_once_no_container_uses_them(
    client: docker.DockerClient, scope: Scope, tmp_path: Path
) -> None:
    provider = DockerImageProvider()
    write_image_context(tmp_path, "v1\n")
    first = provider.create(_engine_props({**_image_inputs(scope, tmp_path), "labels": scope.labels}))
    assert first.outs is not None
    first_id = first.outs["image_id"]
    scope.image_ids.append(first_id)
    assert client.images.get(first_id).labels == scope.labels
    user = client.containers.create(first_id, ["sleep", "600"], name=scope.name("user"))

    (tmp_path / "app" / "hello.txt").write_text("v2\n")
    second = provider.update(
        first.id, first.outs, _engine_props({**_image_inputs(scope, tmp_path), "labels": scope.labels})
    )
    assert second.outs is not None
    second_id = second.outs["image_id"]
    scope.image_ids.append(second_id)
    assert client.images.get(first_id).id == first_id  # a container still uses it

    assert remove_unused_images(scope.labels, keep=second_id) == []
    user.remove(force=True)
    assert remove_unused_images(scope.labels, keep=second_id) == [first_id]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(first_id)
    assert client.images.get(second.outs["tag"]).id == second_id


def test_image_build_error_quotes_the_build_log(scope: Scope, tmp_path: Path) -> None:
    write_image_context(tmp_path, "v1\n")
    # No RUN step: a failed classic build keeps the images of the steps
    # that succeeded, and those would outlive the test.
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY not-in-context.txt /\n")
    props = _engine_props(_image_inputs(scope, tmp_path))

    with pytest.raises(DockerResourceError) as raised:
        DockerImageProvider().create(props)
    message = str(raised.value)
    assert props["tag"] in message
    assert "not-in-context.txt" in message  # only `include` is sent to the builder
    assert "Step 2/2 : COPY not-in-context.txt /" in message  # from the build log


# --- containers ----------------------------------------------------------------

HEALTH_PROBE = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/')"


@pytest.fixture
def container_inputs(client: docker.DockerClient, scope: Scope) -> dict[str, Any]:
    """A small web server container on its own network and volume."""
    network = client.networks.create(scope.name("net"), driver="bridge")
    client.volumes.create(scope.name("vol"))
    return {
        "name": scope.name("web"),
        "image": client.images.get(BASE_IMAGE).id,
        "hostname": "web-1",
        "command": ["python3", "-m", "http.server", "8000", "--directory", "/srv"],
        "envs": {"GREETING": "hello", "WORKERS": 2},
        "network": network.name,
        "aliases": ["web", "www"],
        "ipv4_address": None,
        "ports": [
            {
                "internal": 8000,
                "external": _free_port(),
                "ip": "127.0.0.1",
                "protocol": "tcp",
            }
        ],
        "mounts": [{"volume": scope.name("vol"), "target": "/data"}],
        "files": {
            "/srv/index.html": "served by t-dockres\n",
            "/etc/web/conf.yml": "a: 1\n",
        },
        "labels": scope.labels,
        "restart": "unless-stopped",
        "healthcheck": {
            "test": ["python3", "-c", HEALTH_PROBE],
            "interval_s": 1,
            "timeout_s": 3,
            "retries": 3,
            "start_period_s": 0,
        },
        "stop_timeout_s": 3,
        "wait_running_s": 20,
        # What DockerContainer passes by default: the image's user, Docker's limits.
        "user": "",
        "cap_drop": [],
        "cap_add": [],
        "security_opt": [],
        "read_only": False,
        "tmpfs": {},
        "own_volumes": False,
        "engine": "",  # the local engine, as DockerContainer passes it by default
    }


def _wait_healthy(client: docker.DockerClient, container_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.containers.get(container_id).attrs["State"]["Health"]["Status"]
        if status != "starting":
            return str(status)
        time.sleep(0.5)
    return "starting"


def test_container_create_read_diff_delete(
    client: docker.DockerClient, container_inputs: dict[str, Any]
) -> None:
    provider = DockerContainerProvider()
    props = _engine_props(container_inputs)
    port = container_inputs["ports"][0]["external"]

    created = provider.create(props)
    assert created.outs is not None
    outs = created.outs
    assert outs["container_id"] == created.id
    assert outs["ip_address"]
    assert outs["running"] is True
    # Same property name, same keys: what lets the engine keep secrets secret.
    assert outs["files"] == container_inputs["files"]
    assert "__provider" not in outs

    container = client.containers.get(created.id)
    assert container.name == container_inputs["name"]
    for path, content in container_inputs["files"].items():
        result = container.exec_run(["cat", path])
        assert result.exit_code == 0
        assert result.output.decode() == content
    mode = container.exec_run(["stat", "-c", "%a", "/etc/web/conf.yml"]).output.decode()
    assert mode.strip() == "644"
    bindings = container.attrs["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "served by t-dockres\n"
    assert container.attrs["HostConfig"]["Mounts"][0]["Source"] == container_inputs["mounts"][0]["volume"]
    assert container.exec_run(["test", "-d", "/data"]).exit_code == 0
    assert container.attrs["Config"]["StopTimeout"] == 3
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    endpoint = container.attrs["NetworkSettings"]["Networks"][container_inputs["network"]]
    assert {"web", "www"} <= set(endpoint["Aliases"])
    assert endpoint["IPAddress"] == outs["ip_address"]
    assert "GREETING=hello" in container.attrs["Config"]["Env"]
    assert _wait_healthy(client, created.id) == "healthy"

    # Diffs as the engine would ask them: old state against the program's inputs.
    assert not provider.diff(created.id, outs, props).changes
    assert not provider.diff(created.id, outs, _round_trip(props)).changes
    new_image = provider.diff(created.id, outs, {**props, "image": "sha256:" + "0" * 64})
    assert new_image.changes
    assert new_image.replaces == ["image"]
    assert new_image.delete_before_replace
    several = provider.diff(
        created.id,
        outs,
        {**props, "envs": {"GREETING": "hi"}, "files": {"/srv/index.html": "x"}},
    )
    assert sorted(several.replaces or []) == ["envs", "files"]
    unknown = provider.diff(created.id, outs, {**props, "image": UNKNOWN})
    assert unknown.replaces == ["image"]
    patience = provider.diff(created.id, outs, {**props, "wait_running_s": 60})
    assert patience.changes
    assert patience.replaces == []

    # Refresh while running: the live container matches the state.
    read = provider.read(created.id, {**outs, **PROVIDER_PROP})
    assert read.id == created.id
    assert read.outs is not None
    assert read.outs["running"] is True
    assert read.outs["ip_address"] == outs["ip_address"]
    assert read.inputs == container_inputs
    assert not provider.diff(created.id, read.outs, props).changes

    # Drift: a changed file and a stopped container show up on refresh.
    container.exec_run(["sh", "-c", "echo tampered > /srv/index.html"])
    container.stop(timeout=1)
    drifted = provider.read(created.id, {**outs, **PROVIDER_PROP})
    assert drifted.outs is not None
    assert drifted.outs["running"] is False
    assert drifted.outs["files"]["/srv/index.html"] == "tampered\n"
    assert sorted(provider.diff(created.id, drifted.outs, props).replaces or []) == [
        "files",
        "running",
    ]

    provider.delete(created.id, outs)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(created.id)


def test_a_locked_down_container_gets_its_files_and_its_volume_and_nothing_else(
    client: docker.DockerClient, container_inputs: dict[str, Any]
) -> None:
    """Another user, no capability, a read-only root: files on a volume of its
    own (gone with it), the data volume given to the user first, /tmp writable."""
    provider = DockerContainerProvider()
    inputs = {
        **container_inputs,
        "command": ["sleep", "300"],
        "healthcheck": None,
        "user": "10001:10001",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/scratch": "rw,size=8m,mode=1777"},
        "own_volumes": True,
    }
    created = provider.create(_engine_props(inputs))
    assert created.outs is not None
    container = client.containers.get(created.id)

    def run(*command: str) -> tuple[int, str]:
        result = container.exec_run(list(command))
        return result.exit_code, result.output.decode(errors="replace").strip()

    assert run("id", "-u") == (0, "10001")
    for path, content in container_inputs["files"].items():
        assert run("cat", path) == (0, content.strip())
    assert run("stat", "-c", "%u:%g", "/data") == (0, "10001:10001")
    assert run("touch", "/data/x")[0] == 0
    assert run("touch", "/scratch/x")[0] == 0
    assert run("touch", "/etc/x")[0] != 0
    assert run("touch", "/etc/web/x")[0] != 0  # the files' volume stays root's
    # Refresh sees what was declared (the files' volume is no declared mount).
    read = provider.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert read.inputs == inputs
    assert not provider.diff(created.id, read.outs or {}, _engine_props(inputs)).changes
    files_label = {"label": f"dkron-iac.files-of={inputs['name']}"}
    assert len(client.volumes.list(filters=files_label)) == 2  # /srv and /etc/web

    provider.delete(created.id, created.outs)
    assert client.volumes.list(filters=files_label) == []


def test_the_images_own_user_reads_back_as_declared_and_another_user_replaces(
    client: docker.DockerClient, scope: Scope, container_inputs: dict[str, Any]
) -> None:
    """An image with a USER (as the Prometheus image has): a container declared with
    user "" is reported by Docker as running as that user; refresh reads "" back
    (issue 25: every update replaced it), and a container of another user reads as that."""
    image, _logs = client.images.build(
        fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nUSER nobody\n".encode()), tag=scope.name("user"), rm=True
    )
    provider = DockerContainerProvider()
    inputs = {**container_inputs, "image": image.id, "command": ["sleep", "300"], "healthcheck": None}
    created = provider.create(_engine_props(inputs))
    assert created.outs is not None
    assert client.containers.get(created.id).attrs["Config"]["User"] == "nobody"
    read = provider.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert read.inputs is not None
    assert read.inputs["user"] == ""
    assert not provider.diff(created.id, read.outs or {}, _engine_props(inputs)).changes
    assert provider.diff(created.id, read.outs or {}, _engine_props({**inputs, "user": "0:0"})).replaces == [
        "user"
    ]
    provider.delete(created.id, created.outs)

    # Made as root by hand under the declared "": refresh reads root, and the update replaces it.
    as_root = provider.create(_engine_props({**inputs, "user": "0:0"}))
    assert as_root.outs is not None
    drifted = provider.read(as_root.id, {**as_root.outs, "user": "", **PROVIDER_PROP})
    assert drifted.inputs is not None
    assert drifted.inputs["user"] == "0:0"
    assert provider.diff(as_root.id, drifted.outs or {}, _engine_props(inputs)).replaces == ["user"]
    provider.delete(as_root.id, as_root.outs)


def test_container_removed_outside_pulumi_reads_as_missing(
    client: docker.DockerClient, container_inputs: dict[str, Any]
) -> None:
    provider = DockerContainerProvider()
    created = provider.create(_engine_props({**container_inputs, "healthcheck": None}))
    assert created.outs is not None

    client.containers.get(created.id).remove(force=True)

    read = provider.read(created.id, {**created.outs, **PROVIDER_PROP})
    assert read.id == ""
    assert read.outs == {}
    provider.delete(created.id, created.outs)  # already gone: no error


def test_container_that_exits_fails_create_with_its_logs(
    client: docker.DockerClient, container_inputs: dict[str, Any]
) -> None:
    inputs = {
        **container_inputs,
        "command": ["python3", "-c", "import sys; print('crash-marker'); sys.exit(3)"],
        "restart": "no",
        "healthcheck": None,
    }

    with pytest.raises(DockerResourceError) as raised:
        DockerContainerProvider().create(_engine_props(inputs))
    message = str(raised.value)
    assert "exited with code 3" in message
    assert "crash-marker" in message
    # Create is all or nothing: the failed container is gone.
    assert not client.containers.list(all=True, filters={"name": inputs["name"]})


# --- through the Pulumi engine -------------------------------------------------

SECRET_MARKER = "4dabf18193072939515e22adb298388d"  # noqa: S105 - tags a secret value in state
CONTAINER_TYPE = "pulumi-python:dynamic/docker:DockerContainer"


def _resources(stack: auto.Stack, type_: str) -> list[dict[str, Any]]:
    deployment = stack.export_stack().deployment or {}
    return [r for r in deployment["resources"] if r["type"] == type_]


@pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH (make test sets it up)"
)
def test_engine_keeps_files_secret_and_refresh_forgets_a_removed_container(
    client: docker.DockerClient, scope: Scope, tmp_path: Path
) -> None:
    """A real `pulumi up` / `preview` / `refresh` on a throwaway stack and backend:
    the engine re-marks `files` secret key by key, a second preview finds
    nothing to do, and a refresh drops a container removed behind its back."""
    base_image_id = client.images.get(BASE_IMAGE).id
    port = _free_port()

    def program() -> None:
        network = DockerNetwork("net", name=scope.name("net"), labels=scope.labels)
        DockerContainer(
            "box",
            name=scope.name("box"),
            image=base_image_id,
            network=network.name,
            command=["sleep", "infinity"],
            files={
                "/etc/box/secret.txt": pulumi.Output.secret("s3cret-t-dockres"),
                "/etc/box/plain.txt": "plain",
            },
            ports=[{"internal": 80, "external": port, "ip": "127.0.0.1", "protocol": "tcp"}],
            labels=scope.labels,
            stop_timeout_s=1,
            wait_running_s=10,
        )

    backend = tmp_path / "backend"
    backend.mkdir()
    stack = auto.create_or_select_stack(
        stack_name=scope.prefix,
        project_name="t-dockres",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(tmp_path),
            project_settings=auto.ProjectSettings(
                name="t-dockres",
                runtime=auto.ProjectRuntimeInfo("python", {"virtualenv": str(ROOT / ".venv")}),
            ),
            env_vars={
                "PULUMI_BACKEND_URL": f"file://{backend}",
                "PULUMI_CONFIG_PASSPHRASE": "t-dockres",
                # The dynamic-provider process imports this project's components.
                "PYTHONPATH": str(ROOT),
            },
        ),
    )
    try:
        stack.up(on_output=lambda _line: None)

        def assert_files_secret() -> dict[str, Any]:
            [box] = _resources(stack, CONTAINER_TYPE)
            for props in (box["inputs"], box["outputs"]):
                files = props["files"]
                assert SECRET_MARKER in files["/etc/box/secret.txt"], files
                assert files["/etc/box/plain.txt"] == "plain"
            # export_stack() decrypts secrets; the state file on disk must not hold them.
            state_files = list(backend.rglob(f"{scope.prefix}.json"))
            assert state_files
            assert all("s3cret-t-dockres" not in f.read_text() for f in state_files)
            return box

        box = assert_files_secret()
        container = client.containers.get(box["id"])
        assert container.exec_run(["cat", "/etc/box/secret.txt"]).output == b"s3cret-t-dockres"
        assert set(stack.preview().change_summary) == {"same"}

        # A refresh without drift changes nothing, and keeps the secret secret.
        stack.refresh(on_output=lambda _line: None)
        assert_files_secret()
        assert set(stack.preview().change_summary) == {"same"}

        container.remove(force=True)
        stack.refresh(on_output=lambda _line: None)
        assert _resources(stack, CONTAINER_TYPE) == []

        stack.up(on_output=lambda _line: None)
        [again] = _resources(stack, CONTAINER_TYPE)
        assert client.containers.get(again["id"]).status == "running"
    finally:
        stack.destroy(on_output=lambda _line: None)
        stack.workspace.remove_stack(scope.prefix)
