"""What an update changes, node by node, in words, for the top of a preview.

Pure functions of what the stack recorded at its last update (its `nodes`
and `image` outputs) and what the program declares now; no Pulumi or Docker
here. The resource diff below stays the authority: after an update that
stopped half way the record is the last completed update's, so a node
already replaced may be listed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NO_CHANGE = "no node changes"
HEADER = "node changes, in rollout order:"
KEY_MOVES = "gossip key moves from dkron.yml into the environment (one-time)"
TO_TLS = (
    "mutual TLS: every node stops at once (no graceful leave) and starts again with the stack's"
    " certificates and its API on HTTPS for token holders only; no leader until most are back, about"
    " ten seconds; the catch-up watcher runs what that skips (one-time)"
)
FROM_TLS = (
    "plain RPC: every node stops at once (no graceful leave) and starts again without TLS, its API"
    " open to whoever reaches its port; no leader until most are back; the catch-up watcher runs what"
    " that skips"
)
UNSET = "(unset)"
# What a node record without `user` ran as: every node did before the setting.
USER_BEFORE_RECORDS = "root"


@dataclass(frozen=True)
class ClusterChange:
    """The inputs of the summary: before, after, and the rollout plan."""

    previous_nodes: Mapping[str, Mapping[str, Any]]
    """The stack's `nodes` output from its last update."""
    nodes: Mapping[str, Mapping[str, Any]]
    """The same record for the nodes declared now."""
    previous_image: Mapping[str, Any]
    """The stack's `image` output from its last update ({} if it had none)."""
    image: Mapping[str, Any]
    """The `image` record for now."""
    order: Sequence[str]
    """The rollout order of the declared nodes."""
    leader: str | None
    """The leader when the update starts (None: no leader, every node starts at once)."""
    down: frozenset[str] = frozenset()
    """Declared nodes that do not answer now."""
    removed: Sequence[str] = ()
    """Nodes leaving, in the order they go."""
    dead: frozenset[str] = frozenset()
    """Removed nodes that are dead (their Raft peer is removed first)."""
    gossip_encryption: bool = True
    unreachable_hosts: frozenset[str] = frozenset()
    """Hosts whose engine does not answer: their nodes are kept as recorded or move off."""
    transport_moves: Sequence[str] = ()
    """Nodes whose transport changes (`components.transport`): the whole cluster restarts."""
    mutual_tls: bool = True


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested settings as `a.b` -> text; lists joined with commas."""
    if isinstance(value, Mapping):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, (list, tuple)):
        return {prefix: ",".join(_word(v) for v in value)}
    return {prefix: _word(value)}


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def setting_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`key old -> new` for every setting that differs, keys sorted."""
    before, after = _flatten(old), _flatten(new)
    return [
        f"{key} {before.get(key, UNSET)} -> {after.get(key, UNSET)}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def image_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why the node image is rebuilt, in words ([] if it is not, or if nothing was recorded)."""
    if not old:
        return []
    reasons = []
    if old.get("dkron_version") != new.get("dkron_version"):
        reasons.append(f"Dkron {old.get('dkron_version')} -> {new.get('dkron_version')}")
    elif old.get("dkron_image") != new.get("dkron_image"):
        reasons.append(f"Dkron image {old.get('dkron_image')} -> {new.get('dkron_image')}")
    if old.get("base_image") != new.get("base_image"):
        reasons.append(f"base image {old.get('base_image')} -> {new.get('base_image')}")
    old_files, new_files = old.get("files") or {}, new.get("files") or {}
    for path in sorted(old_files.keys() | new_files.keys()):
        if path not in old_files:
            reasons.append(f"{path} added")
        elif path not in new_files:
            reasons.append(f"{path} removed")
        elif old_files[path] != new_files[path]:
            reasons.append(f"{path} changed")
    return reasons


def node_reasons(change: ClusterChange, node: str) -> list[str]:
    """Why a declared node that existed before is replaced ([] if it is not)."""
    old, new = change.previous_nodes[node], change.nodes[node]
    reasons = []
    rebuilt = image_changes(change.previous_image, change.image)
    if rebuilt:
        reasons.append(f"image rebuilt ({', '.join(rebuilt)})")
    if "config" in old:
        reasons.extend(setting_changes(old["config"], new["config"]))
    else:
        # Recorded before dkron.yml was: the key still sits in the file.
        if change.gossip_encryption:
            reasons.append(KEY_MOVES)
        reasons.extend(
            setting_changes({"tags": old.get("tags") or {}}, {"tags": new["config"].get("tags") or {}})
        )
    before_user, after_user = old.get("user") or USER_BEFORE_RECORDS, new.get("user")
    if after_user and before_user != after_user:
        reasons.append(f"runs as {before_user} -> {after_user}")
    for field, label in (("host", "host"), ("api_url", "API"), ("address", "address")):
        # An API URL names its SSH tunnel after '#': the host line says that change.
        before, after = (str(v).partition("#")[0] if v else v for v in (old.get(field), new.get(field)))
        if before and before != after:
            reasons.append(f"{label} {before} -> {after}")
    return reasons


def _role(change: ClusterChange, node: str) -> str:
    if change.leader is None:
        return ""
    if node == change.leader:
        return " (leader, last)"
    if node in change.down:
        return " (down, first)"
    return " (follower)"


def _on_lost_host(change: ClusterChange, node: str) -> str | None:
    """What becomes of a node whose recorded host does not answer (None: its host answers)."""
    before, after = change.previous_nodes[node].get("host"), change.nodes[node].get("host")
    if not before or before not in change.unreachable_hosts:
        return None
    if before == after:
        return f"on {before}, which does not answer: kept as recorded"
    return (
        f"moves off {before}, which does not answer: created on {after}; its container and volume"
        f" on {before} are dropped from the state, not deleted"
    )


def change_lines(change: ClusterChange) -> list[str]:
    """One line per node that changes, in the order the update handles them."""
    lines = [
        f"{n}: removed (dead: its Raft peer is removed first)" for n in change.removed if n in change.dead
    ]
    if change.transport_moves:
        lines.insert(0, TO_TLS if change.mutual_tls else FROM_TLS)
    for node in change.order:
        if node not in change.previous_nodes:
            lines.append(f"{node}: new")
            continue
        lost = _on_lost_host(change, node)
        if lost:
            lines.append(f"{node}{_role(change, node)}: {lost}")
            continue
        reasons = node_reasons(change, node)
        if reasons:
            lines.append(f"{node}{_role(change, node)}: replace: {'; '.join(reasons)}")
        elif node in change.down:
            lines.append(
                f"{node}{_role(change, node)}: not answering; replaced if its container is stopped or gone"
            )
    for node in change.removed:
        if node not in change.dead:
            last = ", leader last" if node == change.leader else ""
            lines.append(f"{node}: removed (graceful leave{last})")
    return lines


def change_summary(change: ClusterChange) -> str:
    """The summary as printed: a header and one indented line per node, or one line."""
    lines = change_lines(change)
    if not lines:
        return NO_CHANGE
    return "\n".join([HEADER, *(f"  {line}" for line in lines)])
