"""`DkronCluster`: a highly available Dkron cluster on one Docker engine.

It owns the cluster's image (built from `dockerfiles/`), its network, one
volume and one container per node (each with its own rendered `dkron.yml`),
the gossip key, and the gates that make replacements roll one node at a time.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components.addressing import assign_addresses, docker_network_subnets, network_layout
from components.change_summary import ClusterChange, change_summary
from components.docker_objects import (
    DockerContainer,
    DockerImage,
    DockerNetwork,
    DockerVolume,
    HealthcheckSpec,
    context_digest,
    context_files,
    engine,
    remove_unused_images,
)
from components.gossip_key import GossipKey
from components.health import ClusterUnhealthy, observe, observe_node, wait_until_healthy
from components.membership import NodeRemoval, removal_order, remove_stray_voters, removed_nodes, stray_voters
from components.node_config import (
    CONFIG_PATH,
    DATA_DIR,
    HTTP_PORT,
    BootstrapPlan,
    node_environment,
    node_settings,
    render_node_config,
)
from components.ports import assign_api_ports
from components.rollout import NodeGate, rollout_order
from components.spec import ClusterSpec

# What goes into the image's build context, relative to the project root.
IMAGE_CONTEXT = ["dockerfiles", "jobs"]
DOCKERFILE = "dockerfiles/Dockerfile"

# SIGTERM makes the agent leave the cluster gracefully; Docker's default 10 s
# can kill it first, and a node that dies without leaving stays a Raft voter.
STOP_TIMEOUT_S = 60

# How long an update waits at its end for a cluster that is not whole yet.
FINAL_WAIT_S = 30

HEALTHCHECK: HealthcheckSpec = {
    "test": [
        "python3",
        "-c",
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}/health', timeout=3)",
    ],
    "interval_s": 5,
    "timeout_s": 4,
    "retries": 3,
    "start_period_s": 10,
}


def gate_expectation(order: Sequence[str], position: int, alive_now: set[str], rolling: bool) -> list[str]:
    """The nodes that must be whole once the node at `position` has started.

    In a rollout: every node already handled, plus the later ones that were
    alive when the update began. A later node that is down now is brought
    back by its own step; waiting for it here would wait forever.
    """
    if not rolling:
        return sorted(order)
    return sorted(n for i, n in enumerate(order) if i <= position or n in alive_now)


class ClusterDataLost(RuntimeError):
    """The stack formed a cluster once, but no node's data is left."""


@dataclass(frozen=True)
class DkronClusterArgs:
    spec: ClusterSpec
    """The validated cluster spec from the stack config."""
    plan: BootstrapPlan
    """How nodes find and form the cluster (from the stack's last outputs)."""
    project_root: Path
    """The project directory; the image's build context is taken from it."""
    labels: Mapping[str, str]
    """Labels put on every Docker object (they identify the stack)."""
    previous_nodes: Mapping[str, Any]
    """The stack's `nodes` output from its last update: who may need removing."""
    subnet: ipaddress.IPv4Network
    """The cluster network's subnet (see `components.addressing.choose_subnet`)."""
    previous_image: Mapping[str, Any]
    """The stack's `image` output from its last update ({} if none): why the image changes."""
    previous_removed: Mapping[str, Any] = field(default_factory=dict)
    """The stack's `removed` output: nodes taken out by earlier updates, whose
    removal steps stay declared (unchanged) while they stay out of the config."""


def api_url(spec: ClusterSpec, port: int) -> str:
    host = spec.ports.bind_address
    if host == "0.0.0.0":  # noqa: S104 - published on every interface; reach it via loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def existing_volumes(names: Sequence[str]) -> list[str]:
    """Which of the named Docker volumes exist right now."""
    with engine() as client:
        present = {v.name for v in client.volumes.list()}
    return [n for n in names if n in present]


def docker_subnets() -> dict[str, list[str]]:
    """Every Docker network's name and IPv4 subnets, right now."""
    with engine() as client:
        return docker_network_subnets(client)


def check_data_present(stack: str, spec: ClusterSpec, plan: BootstrapPlan) -> None:
    """Refuse to form a second, empty cluster in place of a lost one.

    Every node is given the same `bootstrap-expect`, so if every node's data
    were gone the nodes would quietly bootstrap a new cluster with no jobs.
    """
    if plan.state != "formed" or spec.rebootstrap:
        return
    volumes = [spec.volume_name(n) for n in spec.nodes]
    if not existing_volumes(volumes):
        raise ClusterDataLost(
            f"stack '{stack}': the stack's outputs say cluster '{spec.name}' was formed with "
            f"members {', '.join(plan.members)}, but none of its data volumes "
            f"({', '.join(volumes)}) exists any more. Starting the nodes now would form a new, "
            "empty cluster. If that is what you want, set `rebootstrap: true` under "
            "dkron-cluster:cluster in the stack config, run `pulumi up`, then remove it again."
        )


class DkronCluster(pulumi.ComponentResource):
    """A Dkron cluster: image, network, and one volume and container per node."""

    leader: pulumi.Output[str | None]
    voters: pulumi.Output[list[str]]
    nodes: pulumi.Output[dict[str, Any]]
    bootstrap: pulumi.Output[dict[str, Any]]
    network: dict[str, str]
    image: dict[str, Any]
    rollout_order: list[str]
    api_urls: dict[str, str]
    ready: list[pulumi.CustomResource]
    removed: dict[str, Any]

    def __init__(self, name: str, args: DkronClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dkron-iac:index:DkronCluster", name, None, opts)
        spec, plan = args.spec, args.plan
        child = pulumi.ResourceOptions(parent=self)
        labels = {**args.labels, "dkron-iac.cluster": spec.name}

        ports = assign_api_ports(spec, args.previous_nodes)
        self.api_urls = {n.name: api_url(spec, ports[n.name]) for n in spec.nodes}
        containers = {n.name: spec.container_name(n) for n in spec.nodes}

        # Fixed addresses: Raft knows servers by address, and Docker's own
        # picks depend on start order (an engine restart can swap them).
        addresses = assign_addresses(spec, args.subnet, args.previous_nodes)
        layout = network_layout(args.subnet)
        self.network = {"name": spec.network_name, **layout}
        network = DockerNetwork(
            f"{name}-network",
            name=spec.network_name,
            labels=labels,
            subnet=layout["subnet"],
            gateway=layout["gateway"],
            ip_range=layout["ip_range"],
            opts=child,
        )
        image = DockerImage(
            f"{name}-image",
            tag=spec.image_tag,
            context_root=str(args.project_root),
            include=IMAGE_CONTEXT,
            dockerfile=DOCKERFILE,
            build_args={"BASE_IMAGE": spec.image.base_image, "DKRON_IMAGE": spec.image.dkron_image},
            context_digest=context_digest(str(args.project_root), IMAGE_CONTEXT),
            labels=labels,
            opts=child,
        )
        environment: pulumi.Input[Mapping[str, str]] = {}
        if spec.dkron.gossip_encryption:
            key = GossipKey(f"{name}-gossip-key", opts=child).key
            # Said explicitly: the environment holds the gossip key.
            environment = pulumi.Output.secret(key.apply(lambda k: node_environment(spec, k)))
        # What the image is made of, recorded so the next preview can say why it changes.
        self.image = {
            "base_image": spec.image.base_image,
            "dkron_image": spec.image.dkron_image,
            "dkron_version": spec.image.dkron_version,
            "files": context_files(str(args.project_root), IMAGE_CONTEXT),
        }

        # With a live leader, replace nodes one at a time, the leader last.
        # Without one (a new stack, or every node down) there is no quorum to
        # protect, and waiting for health node by node would wait forever:
        # start them all, one after another, then wait for the whole cluster.
        live = observe(self.api_urls)
        leader_now = live.leader
        rolling = leader_now is not None
        alive_now = {n for n, v in live.nodes.items() if v.error is None and v.leader}
        down = {n for n, v in live.nodes.items() if v.error is not None}
        self.rollout_order = rollout_order([n.name for n in spec.nodes], leader_now, down)
        if not rolling:
            pulumi.log.info("no leader answers: every node starts now", resource=self)

        # Nodes gone from the config. Dead ones lose their Raft peer before
        # anything else changes: their addresses may be handed to new
        # containers, where Raft would keep calling them. Live ones leave
        # gracefully once the new config is whole, the leader last.
        removed = removal_order(removed_nodes(args.previous_nodes, list(self.api_urls)), leader_now)
        dead = [n for n in removed if rolling and observe_node(n, args.previous_nodes[n]["api_url"]).error]

        # What each node is deployed with; recorded in the `nodes` output.
        node_outputs: dict[str, Any] = {
            node.name: {
                "container": spec.container_name(node),
                "api_url": self.api_urls[node.name],
                "address": addresses[node.name],
                "tags": dict(node.tags),
                "config": node_settings(spec, node, plan),
            }
            for node in spec.nodes
        }
        # Logged without a resource, so at once, while the resources above wait on
        # the event loop to register: a preview shows it before the resource list.
        pulumi.log.info(
            change_summary(
                ClusterChange(
                    previous_nodes=args.previous_nodes,
                    nodes=node_outputs,
                    previous_image=args.previous_image,
                    image=self.image,
                    order=self.rollout_order,
                    leader=leader_now,
                    down=frozenset(down),
                    removed=removed,
                    dead=frozenset(dead),
                    gossip_encryption=spec.dkron.gossip_encryption,
                )
            )
        )

        def remove(
            node_name: str, expected: list[str], after: list[pulumi.Resource], container: str | None = None
        ) -> NodeRemoval:
            return NodeRemoval(
                f"{name}-{node_name}-removal",
                node=node_name,
                container=container or args.previous_nodes[node_name]["container"],
                api_urls=self.api_urls,
                containers=containers,
                expected=expected,
                stop_timeout_s=STOP_TIMEOUT_S,
                timeout_s=spec.rollout.node_timeout_seconds,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        gates: list[pulumi.CustomResource] = []
        previous_gate: pulumi.Resource | None = None
        previous_container: pulumi.Resource | None = None
        for node_name in dead:
            previous_gate = remove(node_name, sorted(alive_now), [previous_gate] if previous_gate else [])
            gates.append(previous_gate)
        for position, node_name in enumerate(self.rollout_order):
            node = spec.node(node_name)
            node_labels = {**labels, "dkron-iac.node": node.name}
            volume = DockerVolume(
                f"{name}-{node.name}-volume",
                name=spec.volume_name(node),
                labels=node_labels,
                retain_on_delete=spec.persistence.retain_volumes_on_destroy,
                opts=child,
            )
            # While forming, start nodes one after another (each container is
            # up before the next starts): Dkron bootstraps on member-join
            # events, which a node only sees once its event loop runs.
            after: list[pulumi.Resource] = []
            if rolling and previous_gate is not None:
                after = [previous_gate]
            elif not rolling and previous_container is not None:
                after = [previous_container]
            container = DockerContainer(
                f"{name}-{node.name}",
                name=spec.container_name(node),
                image=image.image_id,
                network=network.name,
                hostname=node.name,
                aliases=[node.name],
                ipv4_address=addresses[node.name],
                command=["dkron", "agent", "--config", CONFIG_PATH],
                envs=environment,
                ports=[{"internal": HTTP_PORT, "external": ports[node.name], "ip": spec.ports.bind_address}],
                mounts=[{"volume": volume.name, "target": DATA_DIR}],
                files={CONFIG_PATH: render_node_config(spec, node, plan)},
                labels=node_labels,
                restart="unless-stopped",
                healthcheck=HEALTHCHECK,
                stop_timeout_s=STOP_TIMEOUT_S,
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=after, additional_secret_outputs=["envs"]
                ),
            )
            gate = NodeGate(
                f"{name}-{node.name}-gate",
                node=node.name,
                container_id=container.container_id,
                api_urls=self.api_urls,
                containers=containers,
                expected=gate_expectation(self.rollout_order, position, alive_now, rolling),
                timeout_s=spec.rollout.node_timeout_seconds,
                # The node restarted if forming stalls: the last of those that formed the
                # cluster, the same for the stack's life, so it never shows as a change.
                nudge=node.name == plan.members[-1],
                opts=child,
            )
            gates.append(gate)
            previous_gate = gate
            previous_container = container

        steps: list[pulumi.CustomResource] = list(gates)
        for node_name in removed:
            if node_name not in dead:
                steps.append(remove(node_name, sorted(self.api_urls), list(steps)))

        # Removal steps of earlier updates stay declared while their node stays
        # out of the config: their diff is always empty, so a preview lists
        # nothing for them, where dropping them would show as a deletion.
        earlier = {
            n: record
            for n, record in args.previous_removed.items()
            if n not in self.api_urls and n not in removed
        }
        for node_name, record in earlier.items():
            remove(node_name, sorted(self.api_urls), [], container=record["container"])
        self.removed = {
            **earlier,
            **{n: {"container": args.previous_nodes[n]["container"]} for n in removed},
        }

        self.ready = steps
        self.nodes = pulumi.Output.from_input(node_outputs)
        # Read live once every step has passed: who leads, who votes.
        done = pulumi.Output.all(image.image_id, *[step.id for step in steps])
        expected = sorted(self.api_urls)

        async def final_view(resolved: list[Any]) -> dict[str, Any]:
            # An update ends only on a working cluster, even one that changed
            # nothing: without a leader agreed by a majority it fails with what
            # it saw; with one but a node still down it warns (the next update
            # replaces that node). Blocking calls run off the event loop so job
            # writes go on meanwhile.
            loop = asyncio.get_running_loop()
            view = await loop.run_in_executor(None, observe, self.api_urls, containers)
            if not pulumi.runtime.is_dry_run() and view.problems(expected):
                wait = functools.partial(
                    wait_until_healthy,
                    self.api_urls,
                    containers,
                    expected,
                    FINAL_WAIT_S,
                    "at the end of the update",
                )
                try:
                    view = await loop.run_in_executor(None, wait)
                except ClusterUnhealthy as unhealthy:
                    view = await loop.run_in_executor(None, observe, self.api_urls, containers)
                    agreeing = [v for v in view.nodes.values() if v.error is None and v.leader == view.leader]
                    if view.leader is None or len(agreeing) * 2 <= len(expected):
                        raise
                    pulumi.log.warn(
                        f"{unhealthy}; run the update again to bring the nodes back", resource=self
                    )
            # Raft's voters end equal to the config: dead voters outside it go.
            stray = stray_voters([p.node for p in (view.raft_peers or {}).values()], expected)
            if stray and pulumi.runtime.is_dry_run():
                pulumi.log.info(
                    f"Raft peers not in the config: {', '.join(stray)}; the update removes them if dead",
                    resource=self,
                )
            elif stray:
                await loop.run_in_executor(None, remove_stray_voters, self.api_urls, containers, stray)
                pulumi.log.info(f"removed Raft peers not in the config: {', '.join(stray)}", resource=self)
                view = await loop.run_in_executor(None, observe, self.api_urls, containers)
            if not pulumi.runtime.is_dry_run():
                # Images of earlier updates, now that no container runs on them.
                removed = await loop.run_in_executor(None, remove_unused_images, labels, resolved[0])
                if removed:
                    pulumi.log.info(f"removed {len(removed)} node image(s) no container uses", resource=self)
            voters = sorted(p.node for p in (view.raft_peers or {}).values() if p.voter)
            return {"leader": view.leader, "voters": voters}

        final: pulumi.Output[dict[str, Any]] = done.apply(final_view)  # type: ignore[arg-type]  # apply awaits coroutines
        self.leader = final.apply(lambda v: v["leader"])
        self.voters = final.apply(lambda v: v["voters"])
        self.bootstrap = final.apply(lambda _: plan.record())
        self.register_outputs(
            {
                "leader": self.leader,
                "nodes": self.nodes,
                "bootstrap": self.bootstrap,
                "voters": self.voters,
                "network": self.network,
                "removed": self.removed,
            }
        )
