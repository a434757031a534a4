"""Rendering dkron.yml and planning the bootstrap."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.node_config import (
    DATA_DIR,
    BootstrapPlan,
    bootstrap_plan,
    node_environment,
    render_node_config,
)
from components.spec import ClusterSpec, load_cluster_spec

KEY = "c2VjcmV0LWdvc3NpcC1rZXktMzItYnl0ZXMhISE="
PER_NODE_KEYS = {"node-name", "tags", "log-level"}


def cluster(*node_names: str, **changes: Any) -> ClusterSpec:
    nodes = [{"name": name, "tags": {"python": "daily"}} for name in node_names]
    return load_cluster_spec("dev", {"name": "dev", "nodes": nodes, **changes})


def rendered(spec: ClusterSpec, plan: BootstrapPlan) -> dict[str, str]:
    return {node.name: render_node_config(spec, node, plan) for node in spec.nodes}


def parsed(text: str) -> dict[str, Any]:
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    return config


def test_new_cluster_config() -> None:
    spec = cluster("a", "b", "c")
    config = parsed(render_node_config(spec, spec.nodes[0], bootstrap_plan(spec, None)))

    assert config == {
        "server": True,
        "node-name": "a",
        "data-dir": DATA_DIR,
        "bootstrap-expect": 3,
        "retry-join": ["a:8946", "b:8946", "c:8946"],
        "retry-interval": "5s",
        "log-level": "info",
        "raft-multiplier": 1,
        "region": "global",
        "datacenter": "dc1",
        "disable-usage-stats": True,
        "ui": True,
        "http-addr": ":8080",
        "enable-prometheus": True,
        "tags": {"python": "daily"},
        "tls": {
            "ca-file": "/etc/dkron/ca.pem",
            "cert-file": "/etc/dkron/node.pem",
            "key-env": "DKRON_IAC_NODE_KEY",
            "api-token-env": "DKRON_IAC_API_TOKEN",
            "local-socket": "/tmp/dkron-iac-api.sock",  # noqa: S108 - the container's own tmpfs
        },
    }
    assert DATA_DIR == "/dkron/data"


def test_rendering_is_deterministic_with_sorted_keys() -> None:
    spec = cluster("a", "b", "c")
    plan = bootstrap_plan(spec, None)
    text = render_node_config(spec, spec.nodes[1], plan)

    assert text == render_node_config(spec, spec.nodes[1], plan)
    keys = [line.split(":")[0] for line in text.splitlines() if not line.startswith((" ", "-"))]
    assert keys == sorted(keys)


def test_first_node_is_configured_like_the_others() -> None:
    raw_nodes = [
        {"name": "a"},
        {"name": "b", "tags": {"python": "daily"}, "log_level": "debug"},
        {"name": "c", "api_port": 9000},
    ]
    spec = load_cluster_spec("dev", {"name": "dev", "nodes": raw_nodes})
    configs = [parsed(text) for text in rendered(spec, bootstrap_plan(spec, None)).values()]

    shared = [{k: v for k, v in config.items() if k not in PER_NODE_KEYS} for config in configs]
    assert shared[0] == shared[1] == shared[2]
    assert [config["node-name"] for config in configs] == ["a", "b", "c"]
    assert [config["log-level"] for config in configs] == ["info", "debug", "info"]
    assert "tags" not in configs[0]
    assert configs[1]["tags"] == {"python": "daily"}


def test_cluster_settings_are_rendered() -> None:
    spec = cluster(
        "a",
        dkron={
            "log_level": "warn",
            "raft_multiplier": 3,
            "region": "eu",
            "datacenter": "fra",
            "ui": False,
        },
    )
    config = parsed(render_node_config(spec, spec.nodes[0], bootstrap_plan(spec, None)))
    assert config["log-level"] == "warn"
    assert config["raft-multiplier"] == 3
    assert (config["region"], config["datacenter"]) == ("eu", "fra")
    assert config["ui"] is False


def test_the_gossip_key_goes_into_the_environment_never_into_the_file() -> None:
    on = cluster("a")
    off = cluster("a", dkron={"gossip_encryption": False})

    assert node_environment(on, KEY) == {"DKRON_ENCRYPT": KEY}
    assert node_environment(off, KEY) == {}
    assert node_environment(off, None) == {}
    for spec in (on, off):
        text = render_node_config(spec, spec.nodes[0], bootstrap_plan(spec, None))
        assert "encrypt" not in parsed(text)
        assert KEY not in text


@pytest.mark.parametrize("key", [None, ""])
def test_encryption_without_a_key_is_refused(key: str | None) -> None:
    with pytest.raises(ValueError, match="encrypt key"):
        node_environment(cluster("a"), key)


@pytest.mark.parametrize("previous", [None, {}])
def test_new_stack_plan_uses_every_node(previous: dict[str, Any] | None) -> None:
    plan = bootstrap_plan(cluster("a", "b", "c"), previous)
    assert plan == BootstrapPlan(state="new", members=("a", "b", "c"), expect=3, join=("a", "b", "c"))


def test_formed_stack_keeps_its_members() -> None:
    spec = cluster("a", "b", "c")
    plan = bootstrap_plan(spec, {"state": "formed", "members": ["a", "b", "c"]})
    assert plan == BootstrapPlan(state="formed", members=("a", "b", "c"), expect=3, join=("a", "b", "c"))


def test_plan_record_round_trips() -> None:
    spec = cluster("a", "b", "c")
    first = bootstrap_plan(spec, None)
    assert bootstrap_plan(spec, first.record()).join == first.join
    assert first.record() == {"state": "formed", "members": ["a", "b", "c"]}


def test_adding_nodes_leaves_existing_nodes_unchanged() -> None:
    before = cluster("a", "b", "c")
    before_configs = rendered(before, bootstrap_plan(before, None))
    record = bootstrap_plan(before, None).record()

    after = cluster("a", "b", "c", "d", "e")
    plan = bootstrap_plan(after, record)
    after_configs = rendered(after, plan)

    assert plan.expect == 3
    assert plan.join == ("a", "b", "c")
    assert {name: after_configs[name] for name in before_configs} == before_configs
    # The new nodes get the same settings and join the formed cluster.
    assert after_configs["d"] == before_configs["a"].replace("node-name: a", "node-name: d")


def test_removing_a_later_node_leaves_the_others_unchanged() -> None:
    record = {"state": "formed", "members": ["a", "b", "c"]}
    five = cluster("a", "b", "c", "d", "e")
    three = cluster("a", "b", "c")

    with_all = rendered(five, bootstrap_plan(five, record))
    after_removal = rendered(three, bootstrap_plan(three, record))

    assert after_removal == {name: with_all[name] for name in ("a", "b", "c")}


def test_join_list_stays_the_recorded_members_while_any_is_left() -> None:
    # A removed member stays in the list: changing it would restart every node.
    spec = cluster("z", "c", "a")
    plan = bootstrap_plan(spec, {"state": "formed", "members": ["a", "b", "c"]})
    assert plan.members == ("a", "b", "c")
    assert plan.expect == 3
    assert plan.join == ("a", "b", "c")


def test_join_falls_back_to_current_nodes_when_no_member_is_left() -> None:
    plan = bootstrap_plan(cluster("x", "y", "z"), {"state": "formed", "members": ["a", "b", "c"]})
    assert plan.join == ("x", "y", "z")
    assert plan.expect == 3


def test_rebootstrap_forms_a_new_cluster_from_the_current_nodes() -> None:
    spec = cluster("x", rebootstrap=True)
    plan = bootstrap_plan(spec, {"state": "formed", "members": ["a", "b", "c"]})
    assert plan == BootstrapPlan(state="new", members=("x",), expect=1, join=("x",))


@pytest.mark.parametrize("previous", [{"state": "forming"}, {"state": "formed", "members": []}])
def test_unknown_bootstrap_record_is_refused(previous: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="bootstrap record"):
        bootstrap_plan(cluster("a"), previous)
