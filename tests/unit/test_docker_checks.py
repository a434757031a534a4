"""The Docker providers' checks and pickling: no engine needed.

Moved from tests/integration/test_docker_resources.py so `make test-unit`
runs them; the provider tests against the real engine stay there.
"""

from __future__ import annotations

from pathlib import Path

import dill
import pytest
from pulumi.runtime.rpc import UNKNOWN

from components.docker_objects import (
    DockerContainer,
    DockerContainerProvider,
    DockerImageProvider,
    DockerNetworkProvider,
    DockerResourceError,
    context_digest,
)
from components.docker_objects.container import declared_user
from testing.harness import write_image_context


def test_network_check_reports_bad_address_settings() -> None:
    checked = DockerNetworkProvider().check(
        {}, {"name": "n", "subnet": "10.0.0.0/24", "gateway": "10.0.1.1", "ip_range": "10.0.0.0/16"}
    )
    assert {(f.property, f.reason) for f in checked.failures} == {
        ("gateway", "'10.0.1.1' is not inside the subnet 10.0.0.0/24"),
        ("ip_range", "'10.0.0.0/16' is not inside the subnet 10.0.0.0/24"),
    }
    no_subnet = DockerNetworkProvider().check({}, {"name": "n", "gateway": "10.0.1.1"})
    assert [(f.property, f.reason) for f in no_subnet.failures] == [("gateway", "needs a subnet")]


def test_context_digest_follows_included_files(tmp_path: Path) -> None:
    write_image_context(tmp_path, "v1\n")
    include = ["Dockerfile", "app"]
    first = context_digest(str(tmp_path), include)
    assert context_digest(str(tmp_path), include) == first

    (tmp_path / "not-in-context.txt").write_text("changed\n")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert context_digest(str(tmp_path), include) == first

    (tmp_path / "app" / "hello.txt").chmod(0o755)
    executable = context_digest(str(tmp_path), include)
    assert executable != first

    (tmp_path / "app" / "hello.txt").write_text("v2\n")
    assert context_digest(str(tmp_path), include) not in (first, executable)

    with pytest.raises(DockerResourceError, match="does not exist"):
        context_digest(str(tmp_path), ["missing"])
    with pytest.raises(DockerResourceError, match="relative to the context root"):
        context_digest(str(tmp_path), ["../elsewhere"])


def test_image_check_rejects_a_dockerfile_outside_the_context(tmp_path: Path) -> None:
    news = {
        "tag": "t-dockres-check:1",
        "context_root": str(tmp_path),
        "include": ["app"],
        "dockerfile": "Dockerfile",
        "context_digest": "x",
    }
    failures = DockerImageProvider().check({}, news).failures
    assert [f.property for f in failures] == ["dockerfile"]
    assert not DockerImageProvider().check({}, {**news, "dockerfile": UNKNOWN}).failures


def test_container_check_reports_bad_inputs() -> None:
    news = {
        "name": "t-dockres-check",
        "image": "sha256:abc",
        "network": "net",
        "restart": "sometimes",
        "ports": [{"internal": 8080, "external": 70000, "ip": "127.0.0.1"}],
        "mounts": [{"volume": "v", "target": "relative/path"}],
        "files": {"etc/x.yml": "a"},
    }
    failures = DockerContainerProvider().check({}, news).failures
    assert sorted(f.property for f in failures) == [
        "files",
        "mounts",
        "ports",
        "restart",
    ]
    unknown = {
        **news,
        "restart": UNKNOWN,
        "ports": UNKNOWN,
        "mounts": UNKNOWN,
        "files": UNKNOWN,
    }
    assert not DockerContainerProvider().check({}, unknown).failures


@pytest.mark.parametrize(
    ("declared", "running_as", "image_user", "read"),
    [
        # Docker reports the image's USER as the container's: still the image's user.
        ("", "prometheus", "prometheus", ""),
        ("", "", "prometheus", ""),
        # Not the image's user: made by hand, or the image changed its USER.
        ("", "root", "prometheus", "root"),
        ("", "prometheus", None, "prometheus"),
        ("10001:10001", "10001:10001", "dkron", "10001:10001"),
        ("10001:10001", "0:0", "dkron", "0:0"),
    ],
)
def test_a_container_user_is_read_in_the_form_it_was_declared(
    declared: str, running_as: str, image_user: str | None, read: str
) -> None:
    assert declared_user(declared, running_as, image_user) == read


def test_a_changed_user_replaces_the_container() -> None:
    olds = {"name": "c", "image": "sha256:abc", "network": "net", "user": ""}
    provider = DockerContainerProvider()
    assert not provider.diff("id", olds, dict(olds)).changes
    changed = provider.diff("id", olds, {**olds, "user": "10090:10090"})
    assert changed.changes
    assert changed.replaces == ["user"]


def test_providers_pickle_by_reference() -> None:
    """The engine pickles each provider with dill; it must stay small and
    refer to its module rather than carry its code or a client."""
    payload = dill.dumps(DockerContainerProvider(), recurse=True)
    assert b"components.docker_objects.container" in payload
    assert len(payload) < 500
    assert isinstance(dill.loads(payload), DockerContainerProvider)  # noqa: S301 (made just above)
    assert DockerContainer._resource_type_name == "dynamic/docker:DockerContainer"
