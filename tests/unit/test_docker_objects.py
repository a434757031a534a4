"""The Docker package's layout promises, without a Docker engine: providers
pickled under the old module still load, new ones pickle by reference to the
module of their kind, and ``engine()`` accepts only engine URLs."""

from __future__ import annotations

import ast
import base64
import subprocess
from pathlib import Path
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

import components.docker_resources
from components.docker_objects import (
    DockerContainerProvider,
    DockerImageProvider,
    DockerNetworkProvider,
    DockerResourceError,
    DockerVolumeProvider,
    engine,
)
from components.docker_objects.props import is_known

ROOT = Path(__file__).resolve().parents[2]
# The last commit with the whole Docker layer in components/docker_resources.py.
OLD_LAYOUT = "f2c5db5"
# `serialize_provider(<Provider>())` as stacks deployed with the single-module
# layout (main at OLD_LAYOUT) hold it in their state's `__provider` property.
OLD_LAYOUT_PICKLES: dict[Any, str] = {
    DockerNetworkProvider: "gASVPAAAAAAAAACMG2NvbXBvbmVudHMuZG9ja2VyX3Jlc291cmNlc5SMFURvY2tlck5ldHdvcmtQcm92aWRlcpSTlCmBlC4=",
    DockerVolumeProvider: "gASVOwAAAAAAAACMG2NvbXBvbmVudHMuZG9ja2VyX3Jlc291cmNlc5SMFERvY2tlclZvbHVtZVByb3ZpZGVylJOUKYGULg==",
    DockerImageProvider: "gASVOgAAAAAAAACMG2NvbXBvbmVudHMuZG9ja2VyX3Jlc291cmNlc5SME0RvY2tlckltYWdlUHJvdmlkZXKUk5QpgZQu",
    DockerContainerProvider: "gASVPgAAAAAAAACMG2NvbXBvbmVudHMuZG9ja2VyX3Jlc291cmNlc5SMF0RvY2tlckNvbnRhaW5lclByb3ZpZGVylJOUKYGULg==",
}
NEW_MODULES: dict[Any, str] = {
    DockerNetworkProvider: "components.docker_objects.network",
    DockerVolumeProvider: "components.docker_objects.volume",
    DockerImageProvider: "components.docker_objects.image",
    DockerContainerProvider: "components.docker_objects.container",
}


@pytest.mark.parametrize("cls", list(OLD_LAYOUT_PICKLES), ids=lambda cls: cls.__name__)
def test_old_layout_pickles_load_the_new_classes(cls: Any) -> None:
    payload = base64.b64decode(OLD_LAYOUT_PICKLES[cls])
    assert b"components.docker_resources" in payload
    provider = dill.loads(payload)  # noqa: S301 - made from this project's own code
    assert type(provider) is cls
    assert getattr(components.docker_resources, cls.__name__) is cls


@pytest.mark.parametrize("cls", list(NEW_MODULES), ids=lambda cls: cls.__name__)
def test_new_pickles_refer_to_the_module_of_their_kind(cls: Any) -> None:
    payload = base64.b64decode(serialize_provider(cls()))
    assert NEW_MODULES[cls].encode() in payload
    assert b"docker_resources" not in payload
    assert len(payload) < 200  # a reference, not the class's code
    assert type(dill.loads(payload)) is cls  # noqa: S301 - made just above


def _old_module_names() -> set[str]:
    """``__all__`` and the public classes (providers among them) of the
    single-module layout, read from git."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_LAYOUT}:components/docker_resources.py"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        pytest.skip(f"needs commit {OLD_LAYOUT} (a shallow clone lacks it)")
    names: set[str] = set()
    for node in ast.parse(shown.stdout).body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(node, ast.Assign)
            names.update(ast.literal_eval(node.value))
    return names


def test_the_old_module_keeps_every_old_public_name() -> None:
    old_names = _old_module_names()
    assert set(OLD_LAYOUT_PICKLES) <= {getattr(components.docker_resources, n, None) for n in old_names}
    missing = sorted(n for n in old_names if not hasattr(components.docker_resources, n))
    assert not missing
    assert old_names - {"docker_client"} <= set(components.docker_resources.__all__)


@pytest.mark.parametrize("host", ["http://localhost:2375", "localhost:2375", "npipe:////./pipe/docker"])
def test_engine_refuses_what_is_not_an_engine_url(host: str) -> None:
    with pytest.raises(DockerResourceError, match="allowed: unix://, tcp://, ssh://"), engine(host):
        pass


def test_engine_names_the_engine_it_cannot_reach() -> None:
    # Nothing listens on a socket path that does not exist; the client asks the
    # engine for its API version when it is made.
    host = "unix:///nonexistent/t-docker-objects.sock"
    with pytest.raises(DockerResourceError, match=f"cannot reach the Docker engine at {host}"), engine(host):
        pass


def test_is_known_looks_into_keys_values_and_items() -> None:
    assert is_known({"a": [1, "b", {"c": None}]})
    assert not is_known(UNKNOWN)
    assert not is_known({UNKNOWN: "x"})
    assert not is_known({"a": UNKNOWN})
    assert not is_known(["a", ("b", UNKNOWN)])
    # A whole list or mapping not known yet comes as the SDK's Unknown object.
    assert not is_known(Unknown())
    assert not is_known({"mounts": Unknown()})
