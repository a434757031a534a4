"""Who each node's agent, and so every job it runs, runs as, and what its container may do.

Pure functions of the spec; `DkronCluster` puts the result on each node's
container. By default a node runs as the image's unprivileged user with no
capability, no way to gain privileges and a read-only root filesystem; the
stack's `security` settings can put nodes back on root (see the README's
"Least privilege on the nodes").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.docker_objects.props import NO_NEW_PRIVILEGES
from components.spec import ClusterSpec, NodeSpec

# The user `dockerfiles/Dockerfile` makes; by number, so the container needs no
# name lookup and the volume-owner helper can give the data to it.
AGENT_USER = "dkron"
AGENT_UID = 10001
AGENT_GID = 10001
ROOT_USER = "root"
# The only writable place besides the data volume: the user's and its jobs'
# HOME and temp (Dkron's plugin sockets go there too). In memory, so bounded.
TMP = "/tmp"  # noqa: S108 - a tmpfs of the container's own, not a shared host folder
TMPFS_OPTIONS = "rw,nosuid,nodev,size=128m,mode=1777"


@dataclass(frozen=True)
class NodePrivileges:
    """What a node's container runs as and may do, as `DockerContainer` inputs."""

    runs_as: str
    """`AGENT_USER` or `ROOT_USER`: what the stack's `nodes` output records."""
    user: str
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = (NO_NEW_PRIVILEGES,)
    read_only: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    own_volumes: bool = False

    def container_args(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "cap_drop": list(self.cap_drop),
            "security_opt": list(self.security_opt),
            "read_only": self.read_only,
            "tmpfs": dict(self.tmpfs),
            "own_volumes": self.own_volumes,
        }


UNPRIVILEGED = NodePrivileges(
    runs_as=AGENT_USER,
    user=f"{AGENT_UID}:{AGENT_GID}",
    # Dkron listens on ports above 1024 and writes only its data volume and
    # /tmp, both the user's: it needs no capability at all.
    cap_drop=("ALL",),
    read_only=True,
    tmpfs={TMP: TMPFS_OPTIONS},
    own_volumes=True,
)
# As before this setting existed: root, Docker's default capabilities, a
# writable root filesystem; only setuid binaries cannot raise privileges.
ROOT = NodePrivileges(runs_as=ROOT_USER, user="0:0")


def runs_as_root(spec: ClusterSpec, node: NodeSpec) -> bool:
    """Whether the stack puts this node (its agent and its jobs) on root."""
    security = spec.security
    if security.run_as_root:
        return True
    wanted = security.run_as_root_tags
    return bool(wanted) and wanted.items() <= node.tags.items()


def node_privileges(spec: ClusterSpec, node: NodeSpec) -> NodePrivileges:
    return ROOT if runs_as_root(spec, node) else UNPRIVILEGED


def root_nodes(spec: ClusterSpec) -> list[str]:
    return [node.name for node in spec.nodes if runs_as_root(spec, node)]


def root_warning(spec: ClusterSpec) -> str | None:
    """The warning a preview and an update print while any node runs as root (None: none does)."""
    names = root_nodes(spec)
    if not names:
        return None
    if spec.security.run_as_root:
        why = "security.run_as_root: true"
    else:
        tags = ", ".join(f"{k}: {v}" for k, v in sorted(spec.security.run_as_root_tags.items()))
        why = f"security.run_as_root_tags {{{tags}}}"
    return (
        f"nodes running as root ({why}): {', '.join(names)}. Their agent and every job they run are root"
        " with Docker's default capabilities and a writable root filesystem, and anyone who reaches the"
        " API (it has no authentication) can run a command there as root"
    )
