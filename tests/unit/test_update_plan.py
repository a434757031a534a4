"""Planning an update from plain data: no Pulumi runtime, no mocks, no cluster."""

from __future__ import annotations

import ipaddress
from typing import Any

from components.health import ClusterView, LiveView, NodeView
from components.node_config import bootstrap_plan, node_settings
from components.spec import ClusterSpec, load_cluster_spec
from components.update_plan import UpdatePlan, gate_expectation, observation_targets, plan_update

NODES = ("node1", "node2", "node3")
SUBNET = ipaddress.IPv4Network("172.26.7.0/24")
ALL = tuple(NODES)


def cluster_spec(nodes: tuple[str, ...] = NODES, **changes: Any) -> ClusterSpec:
    raw = {"name": "unit", "nodes": [{"name": n} for n in nodes], **changes}
    return load_cluster_spec("unit", raw)


def recorded(*nodes: str) -> dict[str, dict[str, Any]]:
    """The `nodes` output an earlier update left: nodeN at port 808N."""
    return {
        n: {
            "container": f"unit-{n}",
            "api_url": f"https://127.0.0.1:{8080 + int(n[4:])}",
            "address": "",
            "config": {"tls": {"api-token-env": "DKRON_IAC_API_TOKEN"}},
        }
        for n in nodes
    }


def running(leader: str, *, down: tuple[str, ...] = (), dead_removed: tuple[str, ...] = ()) -> LiveView:
    return LiveView(
        leader=leader,
        alive=frozenset(n for n in NODES if n not in down),
        down=frozenset(down),
        dead_removed=frozenset(dead_removed),
    )


def plan(
    spec: ClusterSpec | None = None,
    live: LiveView | None = None,
    previous_nodes: dict[str, Any] | None = None,
    previous_removed: dict[str, Any] | None = None,
) -> UpdatePlan:
    spec = spec or cluster_spec()
    previous = recorded(*NODES) if previous_nodes is None and live is not None else previous_nodes or {}
    bootstrap = bootstrap_plan(spec, {"state": "formed", "members": list(NODES)} if live else None)
    return plan_update(spec, bootstrap, previous, previous_removed or {}, SUBNET, live or LiveView())


# --- rolling or not, and the order --------------------------------------------------


def test_a_new_stack_has_no_leader_and_starts_every_node_in_config_order() -> None:
    p = plan()

    assert not p.rolling
    assert p.leader is None
    assert p.order == ALL
    assert p.expected == {n: ALL for n in NODES}
    # The last node started may restart one to kick a stalled bootstrap.
    assert p.nudge == "node3"
    assert p.removed == ()
    assert p.dead == ()
    assert p.earlier == {}


def test_forming_starts_the_first_node_alone_and_the_others_together_after_it() -> None:
    assert plan().after == {"node1": None, "node2": "node1", "node3": "node1"}


def test_a_formed_cluster_without_a_leader_starts_its_nodes_one_after_another() -> None:
    # Every node down: the cluster formed once, so this is no first formation.
    spec = cluster_spec()
    bootstrap = bootstrap_plan(spec, {"state": "formed", "members": list(NODES)})
    p = plan_update(spec, bootstrap, recorded(*NODES), {}, SUBNET, LiveView(down=frozenset(NODES)))

    assert not p.rolling
    assert p.after == {"node1": None, "node2": "node1", "node3": "node2"}


def test_rolling_goes_one_node_at_a_time_the_leader_last() -> None:
    p = plan(live=running("node2"))

    assert p.rolling
    assert p.order == ("node1", "node3", "node2")
    assert p.after == {"node1": None, "node3": "node1", "node2": "node3"}
    assert p.expected == {n: ALL for n in NODES}
    # The nudging node is the last of those that formed the cluster, whoever leads.
    assert p.nudge == "node3"


def test_rolling_brings_down_nodes_back_first() -> None:
    p = plan(live=running("node2", down=("node3",)))

    assert p.order == ("node3", "node1", "node2")
    assert p.down == {"node3"}
    assert p.alive == {"node1", "node2"}
    # node3 goes first: by its own gate it is back, so every gate expects everyone.
    assert p.expected == {n: ALL for n in NODES}


def test_a_node_without_a_leader_does_not_stop_a_rolling_update() -> None:
    view = ClusterView(
        nodes={
            "node1": NodeView("node1", leader="node2", alive_servers=frozenset(NODES)),
            "node2": NodeView("node2", leader="node2", alive_servers=frozenset(NODES)),
            "node3": NodeView("node3", leader=None, alive_servers=frozenset(NODES)),
        }
    )
    live = LiveView.of(view)
    assert live == LiveView(leader="node2", alive=frozenset({"node1", "node2"}), down=frozenset())

    p = plan(live=live)
    assert p.rolling
    assert p.order == ("node1", "node3", "node2")


def test_the_live_view_counts_nodes_whose_api_fails_as_down() -> None:
    view = ClusterView(
        nodes={
            "node1": NodeView("node1", leader="node2"),
            "node2": NodeView("node2", leader="node2"),
            "node3": NodeView("node3", error="ConnectionError: refused"),
        }
    )
    assert LiveView.of(view, frozenset({"node4"})) == LiveView(
        leader="node2",
        alive=frozenset({"node1", "node2"}),
        down=frozenset({"node3"}),
        dead_removed=frozenset({"node4"}),
    )


# --- gate expectations ---------------------------------------------------------------


def test_a_gate_does_not_wait_for_a_later_node_that_was_down_at_the_start() -> None:
    order = ["node1", "node3", "node2"]
    assert gate_expectation(order, 0, alive_now={"node1", "node2"}, rolling=True) == ["node1", "node2"]


def test_planned_gates_skip_later_down_nodes_until_their_own_step() -> None:
    # node3 down and not first: only possible when node1 is down too and comes before it.
    live = LiveView(leader="node2", alive=frozenset({"node2"}), down=frozenset({"node1", "node3"}))
    p = plan(live=live)

    assert p.order == ("node1", "node3", "node2")
    assert p.expected == {"node1": ("node1", "node2"), "node3": ALL, "node2": ALL}


def test_without_a_leader_every_gate_expects_every_node_even_down_ones() -> None:
    p = plan(live=LiveView(down=frozenset(NODES)))

    assert not p.rolling
    assert p.order == ALL
    assert p.expected == {n: ALL for n in NODES}


# --- removed nodes ---------------------------------------------------------------------


def test_removed_nodes_go_followers_first_the_leader_last() -> None:
    live = LiveView(leader="node4", alive=frozenset({"node1", "node4"}))
    p = plan(
        spec=cluster_spec(("node1",)),
        live=live,
        previous_nodes=recorded("node1", "node4", "node2", "node3"),
    )

    assert p.removed == ("node2", "node3", "node4")
    assert p.dead == ()
    assert p.live_removed == ("node2", "node3", "node4")
    assert p.removal_expected == {n: ("node1",) for n in ("node2", "node3", "node4")}
    assert p.removed_containers == {n: f"unit-{n}" for n in ("node2", "node3", "node4")}
    assert p.removed_record == {n: {"container": f"unit-{n}"} for n in ("node2", "node3", "node4")}


def test_dead_removed_nodes_go_first_and_expect_the_nodes_alive_at_the_start() -> None:
    live = running("node2", down=("node3",), dead_removed=("node5",))
    p = plan(live=live, previous_nodes=recorded(*NODES, "node4", "node5"))

    assert p.removed == ("node4", "node5")
    assert p.dead == ("node5",)
    assert p.live_removed == ("node4",)
    # A dead node's peer goes before anything changes: only the nodes alive now can be whole.
    assert p.removal_expected == {"node5": ("node1", "node2"), "node4": ALL}


def test_dead_removed_nodes_are_only_known_when_rolling() -> None:
    live = LiveView(down=frozenset(NODES), dead_removed=frozenset({"node4"}))
    p = plan(live=live, previous_nodes=recorded(*NODES, "node4"))

    assert p.removed == ("node4",)
    assert p.dead == ()
    assert p.live_removed == ("node4",)


def test_earlier_removals_stay_declared_while_out_of_the_config() -> None:
    previous_removed = {
        "node5": {"container": "unit-node5"},  # still out: kept
        "node3": {"container": "unit-node3-old"},  # back in the config: dropped
        "node4": {"container": "unit-node4-old"},  # removed again in this update: this update's record
    }
    p = plan(
        live=running("node1"),
        previous_nodes=recorded(*NODES, "node4"),
        previous_removed=previous_removed,
    )

    assert p.earlier == {"node5": {"container": "unit-node5"}}
    assert p.removed == ("node4",)
    assert p.removal_expected == {"node5": ALL, "node4": ALL}
    assert p.removed_record == {"node5": {"container": "unit-node5"}, "node4": {"container": "unit-node4"}}


# --- what each node is deployed with ---------------------------------------------------


def test_ports_urls_addresses_and_the_nodes_record() -> None:
    spec = cluster_spec(ports={"api_port_base": 18081})
    p = plan(spec=spec)

    assert p.ports == {"node1": 18081, "node2": 18082, "node3": 18083}
    assert p.api_urls == {n: f"https://127.0.0.1:{port}" for n, port in p.ports.items()}
    assert p.containers == {n: f"unit-{n}" for n in NODES}
    assert p.addresses == {"node1": "172.26.7.10", "node2": "172.26.7.11", "node3": "172.26.7.12"}
    assert p.network == {"subnet": "172.26.7.0/24", "gateway": "172.26.7.1", "ip_range": "172.26.7.128/25"}
    assert p.nodes == {
        n: {
            "container": f"unit-{n}",
            "api_url": p.api_urls[n],
            "address": p.addresses[n],
            "tags": {},
            "config": node_settings(spec, spec.node(n), bootstrap_plan(spec, None)),
            "user": "dkron",
        }
        for n in NODES
    }


def test_recorded_ports_are_kept_and_observed_at_the_same_urls() -> None:
    previous = recorded(*NODES, "node4")
    previous["node2"]["api_url"] = "https://127.0.0.1:9002"
    spec = cluster_spec()

    api_urls, removed_urls = observation_targets(spec, previous)
    p = plan(spec=spec, live=running("node1"), previous_nodes=previous)

    assert api_urls == p.api_urls
    assert p.api_urls["node2"] == "https://127.0.0.1:9002"
    # A removed node is asked where the last update recorded it.
    assert removed_urls == {"node4": "https://127.0.0.1:8084"}


def test_nodes_are_observed_as_they_run_before_a_move_to_the_https_api() -> None:
    previous = recorded(*NODES)
    previous["node2"]["config"] = {"tls": {"ca-file": "/etc/dkron/ca.pem"}}  # RPC-only mutual TLS
    previous["node3"]["config"] = {}
    api_urls, _ = observation_targets(cluster_spec(), previous)
    assert api_urls == {
        "node1": "https://127.0.0.1:8081",
        "node2": "http://127.0.0.1:8082",
        "node3": "http://127.0.0.1:8083",
    }
    # After the move every node is planned on HTTPS, and none rolls.
    p = plan(live=running("node1"), previous_nodes=previous)
    assert set(p.api_urls.values()) == {f"https://127.0.0.1:{8080 + i}" for i in (1, 2, 3)}
    assert not p.rolling
    assert sorted(p.transport_stop) == ["node2", "node3"]


def test_the_change_summary_gets_the_plan() -> None:
    live = running("node2", down=("node3",), dead_removed=("node4",))
    p = plan(live=live, previous_nodes=recorded(*NODES, "node4"))

    change = p.change({"dkron_version": "4.0.4"}, {"dkron_version": "4.0.5"}, gossip_encryption=True)
    assert change.order == ["node3", "node1", "node2"]
    assert change.leader == "node2"
    assert change.down == {"node3"}
    assert change.removed == ["node4"]
    assert change.dead == {"node4"}
    assert change.nodes == p.nodes
    assert change.previous_nodes == recorded(*NODES, "node4")
    assert change.previous_image == {"dkron_version": "4.0.4"}
    assert change.image == {"dkron_version": "4.0.5"}
