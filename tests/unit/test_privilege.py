"""Who the nodes run as, and what their containers may do: no engine needed."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from components.change_summary import ClusterChange, change_lines
from components.config_errors import StackConfigError
from components.docker_objects import DockerContainerProvider
from components.docker_objects.container import _create_kwargs
from components.privilege import (
    AGENT_USER,
    ROOT,
    ROOT_USER,
    TMP,
    UNPRIVILEGED,
    node_privileges,
    root_nodes,
    root_warning,
)
from components.spec import ClusterSpec, load_cluster_spec

NODES = [{"name": "a", "tags": {"tier": "legacy"}}, {"name": "b", "tags": {"tier": "web"}}, {"name": "c"}]


def spec_with(
    security: dict[str, Any] | None = None, nodes: list[dict[str, Any]] | None = None
) -> ClusterSpec:
    raw: dict[str, Any] = {"name": "unit", "nodes": nodes or NODES}
    if security is not None:
        raw["security"] = security
    return load_cluster_spec("unit", raw)


def test_by_default_no_node_runs_as_root_and_nothing_warns() -> None:
    spec = spec_with()
    assert root_nodes(spec) == []
    assert root_warning(spec) is None
    assert all(node_privileges(spec, n) == UNPRIVILEGED for n in spec.nodes)


def test_the_unprivileged_container_drops_every_capability_and_writes_only_tmp_and_volumes() -> None:
    args = UNPRIVILEGED.container_args()
    assert args == {
        "user": "10001:10001",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {TMP: "rw,nosuid,nodev,size=128m,mode=1777"},
        "own_volumes": True,
    }
    assert ROOT.container_args()["user"] == "0:0"
    assert ROOT.container_args()["cap_drop"] == []
    assert ROOT.container_args()["read_only"] is False


def test_run_as_root_puts_every_node_on_root_and_the_warning_names_them() -> None:
    spec = spec_with({"run_as_root": True})
    assert root_nodes(spec) == ["a", "b", "c"]
    warning = root_warning(spec)
    assert warning is not None
    assert "security.run_as_root: true" in warning
    assert ": a, b, c." in warning


def test_run_as_root_tags_puts_only_the_nodes_with_all_those_tags_on_root() -> None:
    spec = spec_with({"run_as_root_tags": {"tier": "legacy"}})
    assert root_nodes(spec) == ["a"]
    assert [node_privileges(spec, n).runs_as for n in spec.nodes] == [ROOT_USER, AGENT_USER, AGENT_USER]
    warning = root_warning(spec)
    assert warning is not None
    assert "security.run_as_root_tags {tier: legacy}): a." in warning


@pytest.mark.parametrize(
    ("security", "message"),
    [
        (
            {"run_as_root_tags": {"tier": "legcy"}},
            "stack 'unit': cluster.security.run_as_root_tags = {'tier': 'legcy'}: matches no node",
        ),
        (
            {"run_as_root": True, "run_as_root_tags": {"tier": "legacy"}},
            "cluster.security.run_as_root_tags = {'tier': 'legacy'}: has no effect with run_as_root: true",
        ),
        ({"run_as_root": "maybe"}, "cluster.security.run_as_root = 'maybe'"),
        (
            {"run_as_rot": True},
            "unknown setting; allowed: run_as_root, run_as_root_tags, mutual_tls, node_certificate_days, renew_within_days (did you mean",
        ),
        ({"run_as_root_tags": {"role": "x"}}, "is set by Dkron itself"),
    ],
)
def test_bad_security_settings_are_refused_naming_the_setting(security: dict[str, Any], message: str) -> None:
    with pytest.raises(StackConfigError) as raised:
        spec_with(security)
    assert message in str(raised.value)


def _records(users: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for node, user in users.items():
        records[node] = {"container": f"unit-{node}", "config": {"node-name": node}}
        if user is not None:
            records[node]["user"] = user
    return records


def test_a_node_recorded_before_the_user_existed_is_said_to_move_from_root() -> None:
    change = ClusterChange(
        previous_nodes=_records({"a": None, "b": "dkron", "c": "dkron"}),
        nodes=_records({"a": "dkron", "b": "root", "c": "dkron"}),
        previous_image={},
        image={},
        order=["a", "b", "c"],
        leader="c",
    )
    assert change_lines(change) == [
        "a (follower): replace: runs as root -> dkron",
        "b (follower): replace: runs as dkron -> root",
    ]


OLD_STATE: dict[str, Any] = {
    "name": "unit-a",
    "image": "sha256:x",
    "network": "net",
    "command": ["dkron", "agent"],
    "files": {"/etc/dkron/dkron.yml": "server: true\n"},
    "labels": {"dkron-iac.stack": "unit"},
    "restart": "unless-stopped",
    "stop_timeout_s": 60,
    "wait_running_s": 30,
    "running": True,
}


def test_a_container_deployed_before_the_settings_is_replaced_for_each_of_them() -> None:
    news = {**OLD_STATE, **UNPRIVILEGED.container_args()}
    diff = DockerContainerProvider().diff("id", dict(OLD_STATE), news)
    assert diff.changes
    assert sorted(diff.replaces or []) == ["cap_drop", "read_only", "security_opt", "tmpfs", "user"]
    assert diff.delete_before_replace


def test_the_settings_compare_in_the_form_docker_reports_them_and_own_volumes_replaces_nothing() -> None:
    olds = {
        **OLD_STATE,
        **UNPRIVILEGED.container_args(),
        "cap_drop": ["CAP_ALL", "ALL"],
        "security_opt": ["no-new-privileges:true"],
        "own_volumes": False,
    }
    diff = DockerContainerProvider().diff("id", olds, {**OLD_STATE, **UNPRIVILEGED.container_args()})
    assert diff.replaces == []
    assert diff.changes  # own_volumes, updated in place: it only matters to create


def test_own_volumes_needs_a_numeric_user() -> None:
    checked = DockerContainerProvider().check({}, {**OLD_STATE, "user": "dkron", "own_volumes": True})
    assert [(f.property, f.reason) for f in checked.failures] == [
        ("user", "must be numeric uid:gid (e.g. 10001:10001) with own_volumes, got 'dkron'")
    ]


def test_a_read_only_container_gets_its_files_on_an_anonymous_labelled_volume() -> None:
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    spec = {
        **OLD_STATE,
        **UNPRIVILEGED.container_args(),
        "mounts": [{"volume": "unit-a-data", "target": "/dkron/data"}],
    }
    kwargs = _create_kwargs(api, spec)
    host = kwargs["host_config"]
    assert kwargs["user"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Tmpfs"] == {TMP: "rw,nosuid,nodev,size=128m,mode=1777"}
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/dkron/data"]["Source"] == "unit-a-data"
    assert mounts["/etc/dkron"]["Source"] is None
    assert mounts["/etc/dkron"]["VolumeOptions"]["Labels"] == {
        "dkron-iac.stack": "unit",
        "dkron-iac.files-of": "unit-a",
    }
    # Written into the root filesystem as before when it is writable.
    writable = _create_kwargs(api, {**spec, **ROOT.container_args()})["host_config"]
    assert [m["Target"] for m in writable["Mounts"]] == ["/dkron/data"]
    assert "CapDrop" not in writable
