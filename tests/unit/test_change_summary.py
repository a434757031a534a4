"""The preview's node-by-node summary, from recorded and declared node facts."""

from __future__ import annotations

from typing import Any

from components.change_summary import (
    KEY_MOVES,
    NO_CHANGE,
    ClusterChange,
    change_lines,
    change_summary,
    image_changes,
    setting_changes,
)

IMAGE: dict[str, Any] = {
    "base_image": "dkron-iac/python-base:bookworm",
    "dkron_image": "dkron-iac/dkron:4.0.5",
    "dkron_version": "4.0.5",
    "files": {"dockerfiles/Dockerfile": "aaaa", "jobs/hello.py": "bbbb"},
}


def record(node: str, port: int, **config: Any) -> dict[str, Any]:
    settings = {"node-name": node, "log-level": "info", "retry-join": ["node1:8946", "node2:8946"], **config}
    return {
        "container": f"dev-{node}",
        "api_url": f"http://127.0.0.1:{port}",
        "address": f"172.24.0.{port - 8070}",
        "tags": settings.get("tags", {}),
        "config": settings,
    }


def three(**changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = {f"node{i}": record(f"node{i}", 8080 + i, tags={"tier": "light"}) for i in (1, 2, 3)}
    for node, config in changes.items():
        nodes[node]["config"].update(config)
        nodes[node]["tags"] = nodes[node]["config"].get("tags", {})
    return nodes


def change(**fields: Any) -> ClusterChange:
    defaults: dict[str, Any] = {
        "previous_nodes": three(),
        "nodes": three(),
        "previous_image": IMAGE,
        "image": IMAGE,
        "order": ["node2", "node3", "node1"],
        "leader": "node1",
    }
    return ClusterChange(**{**defaults, **fields})


def test_nothing_changes_is_one_line() -> None:
    assert change_lines(change()) == []
    assert change_summary(change()) == NO_CHANGE


def test_a_tag_change_names_the_tag_and_the_role() -> None:
    lines = change_lines(change(nodes=three(node3={"tags": {"tier": "heavy"}})))
    assert lines == ["node3 (follower): replace: tags.tier light -> heavy"]


def test_an_image_file_change_replaces_every_node_in_rollout_order_leader_last() -> None:
    image = {**IMAGE, "files": {**IMAGE["files"], "dockerfiles/Dockerfile": "cccc"}}
    assert change_lines(change(image=image)) == [
        "node2 (follower): replace: image rebuilt (dockerfiles/Dockerfile changed)",
        "node3 (follower): replace: image rebuilt (dockerfiles/Dockerfile changed)",
        "node1 (leader, last): replace: image rebuilt (dockerfiles/Dockerfile changed)",
    ]


def test_image_reasons_in_words() -> None:
    new = {
        "base_image": "python:3.11-slim",
        "dkron_image": "dkron/dkron:4.1.2",
        "dkron_version": "4.1.2",
        "files": {"dockerfiles/Dockerfile": "aaaa", "jobs/report.py": "dddd"},
    }
    assert image_changes(IMAGE, new) == [
        "Dkron 4.0.5 -> 4.1.2",
        "base image dkron-iac/python-base:bookworm -> python:3.11-slim",
        "jobs/hello.py removed",
        "jobs/report.py added",
    ]
    same_version = {**IMAGE, "dkron_image": "mirror/dkron:4.0.5"}
    assert image_changes(IMAGE, same_version) == ["Dkron image dkron-iac/dkron:4.0.5 -> mirror/dkron:4.0.5"]
    # Nothing recorded (a stack deployed before images were): no reason invented.
    assert image_changes({}, new) == []


def test_several_reasons_on_one_line() -> None:
    image = {**IMAGE, "dkron_version": "4.0.6", "dkron_image": "dkron-iac/dkron:4.0.6"}
    nodes = three(node2={"log-level": "debug", "tags": {"tier": "heavy", "python": "daily"}})
    lines = change_lines(change(nodes=nodes, image=image))
    assert lines[0] == (
        "node2 (follower): replace: image rebuilt (Dkron 4.0.5 -> 4.0.6); log-level info -> debug;"
        " tags.python (unset) -> daily; tags.tier light -> heavy"
    )


def test_scale_out_lists_only_the_new_nodes_first() -> None:
    nodes = {**three(), "node4": record("node4", 8084), "node5": record("node5", 8085)}
    lines = change_lines(change(nodes=nodes, order=["node4", "node5", "node2", "node3", "node1"]))
    assert lines == ["node4: new", "node5: new"]


def test_removed_nodes_leave_gracefully_after_the_rest_dead_ones_first() -> None:
    previous = {**three(), "node4": record("node4", 8084), "node5": record("node5", 8085)}
    lines = change_lines(
        change(
            previous_nodes=previous,
            nodes=three(node3={"tags": {"tier": "heavy"}}),
            removed=["node4", "node5"],
            dead=frozenset({"node4"}),
        )
    )
    assert lines == [
        "node4: removed (dead: its Raft peer is removed first)",
        "node3 (follower): replace: tags.tier light -> heavy",
        "node5: removed (graceful leave)",
    ]


def test_removing_the_leader_says_it_goes_last() -> None:
    lines = change_lines(change(nodes={}, order=[], removed=["node2", "node1"]))
    assert lines == ["node2: removed (graceful leave)", "node1: removed (graceful leave, leader last)"]


def test_port_and_address_changes_are_named() -> None:
    nodes = three()
    nodes["node2"] = {**nodes["node2"], "api_url": "http://127.0.0.1:9000", "address": "172.24.0.99"}
    assert change_lines(change(nodes=nodes)) == [
        "node2 (follower): replace: API http://127.0.0.1:8082 -> http://127.0.0.1:9000;"
        " address 172.24.0.12 -> 172.24.0.99"
    ]


def test_a_down_node_is_first_and_said_to_be_down() -> None:
    lines = change_lines(change(order=["node3", "node2", "node1"], down=frozenset({"node3"})))
    assert lines == ["node3 (down, first): not answering; replaced if its container is stopped or gone"]


def test_without_a_leader_there_are_no_roles() -> None:
    lines = change_lines(
        change(nodes=three(node1={"tags": {}}), leader=None, order=["node1", "node2", "node3"])
    )
    assert lines == ["node1: replace: tags.tier light -> (unset)"]


def test_a_stack_recorded_before_the_key_left_the_file_rolls_once() -> None:
    # Before, the `nodes` output held tags but no config: dkron.yml held the key.
    previous = {n: {k: v for k, v in r.items() if k != "config"} for n, r in three().items()}
    lines = change_lines(change(previous_nodes=previous, nodes=three(node3={"tags": {"tier": "heavy"}})))
    assert lines == [
        f"node2 (follower): replace: {KEY_MOVES}",
        f"node3 (follower): replace: {KEY_MOVES}; tags.tier light -> heavy",
        f"node1 (leader, last): replace: {KEY_MOVES}",
    ]
    # Without encryption the file never held a key: nothing to move.
    assert change_lines(change(previous_nodes=previous, gossip_encryption=False)) == []


def test_settings_flatten_to_dotted_keys_and_words() -> None:
    old = {"ui": True, "retry-join": ["a:8946"], "raft-multiplier": 1.0, "tags": {"a": "1"}}
    new = {"ui": False, "retry-join": ["a:8946", "b:8946"], "raft-multiplier": 1, "tags": {}}
    assert setting_changes(old, new) == [
        "retry-join a:8946 -> a:8946,b:8946",
        "tags.a 1 -> (unset)",
        "ui true -> false",
    ]


def test_summary_text_has_a_header_and_one_indented_line_per_node() -> None:
    text = change_summary(change(nodes=three(node3={"tags": {"tier": "heavy"}})))
    assert text.splitlines() == [
        "node changes, in rollout order:",
        "  node3 (follower): replace: tags.tier light -> heavy",
    ]


def test_a_node_moved_to_another_host_says_so_without_the_tunnel() -> None:
    def on(host: str, address: str) -> dict[str, dict[str, Any]]:
        nodes = three()
        nodes["node2"].update(
            host=host, address=address, api_url=f"http://127.0.0.1:8082#ssh://root@{address}?identity=/k"
        )
        return nodes

    lines = change_lines(change(previous_nodes=on("h2", "10.0.0.12"), nodes=on("h4", "10.0.0.14")))
    assert lines == ["node2 (follower): replace: host h2 -> h4; address 10.0.0.12 -> 10.0.0.14"]


def test_nodes_on_a_host_that_does_not_answer_are_kept_or_move_off_it() -> None:
    def on(hosts: dict[str, str]) -> dict[str, dict[str, Any]]:
        nodes = three()
        for node, host in hosts.items():
            nodes[node]["host"] = host
        return nodes

    before = on({"node1": "h1", "node2": "h2", "node3": "h3"})
    after = on({"node1": "h1", "node2": "h2", "node3": "h4"})
    lines = change_lines(
        change(
            previous_nodes=before,
            nodes=after,
            down=frozenset({"node2", "node3"}),
            unreachable_hosts=frozenset({"h2", "h3"}),
        )
    )
    assert lines == [
        "node2 (down, first): on h2, which does not answer: kept as recorded",
        "node3 (down, first): moves off h3, which does not answer: created on h4; its container and"
        " volume on h3 are dropped from the state, not deleted",
    ]
