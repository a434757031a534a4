"""`DkronCluster`: a highly available Dkron cluster on one Docker engine or on several hosts.

It owns the cluster's image (built from `dockerfiles/`), its network, one
volume and one container per node (each with its own rendered `dkron.yml`),
the gossip key, and the gates that make replacements roll one node at a time.
With hosts, each node's volume and container live on its host's engine, on
the host's own network, and the image is loaded onto every host that runs
nodes; there is no cluster network.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components import naming, prometheus
from components.addressing import docker_network_subnets
from components.api_access import authorize
from components.certificates import ApiToken, NodeCertificate, StackCA
from components.change_summary import change_summary
from components.docker_objects import (
    DockerContainer,
    DockerContainerProvider,
    DockerImage,
    DockerImageCopy,
    DockerImageCopyProvider,
    DockerNetwork,
    DockerVolume,
    DockerVolumeProvider,
    HealthcheckSpec,
    context_digest,
    context_files,
    engine,
    remove_unused_images,
)
from components.docker_objects.client import split_locator
from components.docker_objects.container import HOST_NETWORK
from components.docker_objects.errors import EngineUnreachable
from components.docker_objects.props import NO_NEW_PRIVILEGES
from components.docker_objects.provider import DockerProvider
from components.gossip_key import GossipKey
from components.health import ClusterUnhealthy, observe, wait_until_healthy
from components.membership import NodeRemoval, remove_stray_voters, stray_voters
from components.node_config import (
    API_TOKEN_ENV,
    CONFIG_PATH,
    DATA_DIR,
    HTTP_PORT,
    LOCAL_API_SOCKET,
    NODE_KEY_ENV,
    RPC_ADDR_ENV,
    TLS_CA_PATH,
    TLS_CERT_PATH,
    BootstrapPlan,
    agent_command,
    node_environment,
    render_node_config,
    wanted_transport,
)
from components.privilege import node_privileges, root_warning
from components.rollout import NodeGate
from components.spec import LOOPBACK, ClusterSpec, NodeSpec
from components.transport import TransportStep
from components.update_plan import UpdatePlan

# What goes into the image's build context, relative to the project root.
IMAGE_CONTEXT = ["dockerfiles", "jobs", "nodeside"]
DOCKERFILE = "dockerfiles/Dockerfile"
PROMETHEUS_DOCKERFILE = "dockerfiles/prometheus.Dockerfile"
ALERTMANAGER_DOCKERFILE = "dockerfiles/alertmanager.Dockerfile"

# SIGTERM makes the agent leave the cluster gracefully; Docker's default 10 s
# can kill it first, and a node that dies without leaving stays a Raft voter.
STOP_TIMEOUT_S = 60

# How long an update waits at its end for a cluster that is not whole yet.
FINAL_WAIT_S = 30


# Docker's health check of a node whose API wants the token: `GET /health` on the agent's
# socket for its own container (`node_config.LOCAL_API_SOCKET`), which needs no token.
LOCAL_HEALTH_PROBE = (
    "import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(3);"
    f" s.connect({LOCAL_API_SOCKET!r}); s.sendall(b'GET /health HTTP/1.0\\r\\n\\r\\n');"
    " sys.exit(0 if s.recv(64).split()[1:2] == [b'200'] else 1)"
)


def healthcheck(port: int = HTTP_PORT, local: bool = False) -> HealthcheckSpec:
    """Docker's view of a node: its API answers on the container's (or host's) loopback, or
    on its socket (``local``: a node of a stack with mutual TLS)."""
    probe = (
        LOCAL_HEALTH_PROBE
        if local
        else f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=3)"
    )
    return {
        "test": ["python3", "-c", probe],
        "interval_s": 5,
        "timeout_s": 4,
        "retries": 3,
        "start_period_s": 10,
    }


class ClusterDataLost(RuntimeError):
    """The stack formed a cluster once, but no node's data is left."""


@dataclass(frozen=True)
class DkronClusterArgs:
    spec: ClusterSpec
    """The validated cluster spec from the stack config."""
    plan: BootstrapPlan
    """How nodes find and form the cluster (from the stack's last outputs)."""
    update: UpdatePlan
    """What this update declares (`components.update_plan.plan_update`)."""
    project_root: Path
    """The project directory; the image's build context is taken from it."""
    labels: Mapping[str, str]
    """Labels put on every Docker object (they identify the stack)."""
    previous_image: Mapping[str, Any]
    """The stack's `image` output from its last update ({} if none): why the image changes."""
    unreachable_hosts: frozenset[str] = frozenset()
    """Hosts whose engine does not answer (`components.lost_hosts`): their objects keep what
    the state records, so the update leaves them alone and does the rest."""


def existing_volumes(names: Sequence[str], engines: Mapping[str, str | None] | None = None) -> list[str]:
    """Which of the named Docker volumes exist right now (each on its engine in
    `engines`, volume name -> engine reference; the local engine otherwise).
    A host that does not answer cannot say its volumes are gone: they count as there."""
    where = engines or {}
    present: dict[str | None, set[str]] = {}
    for ref in {where.get(n) for n in names}:
        try:
            with engine(ref) as client:
                present[ref] = {v.name for v in client.volumes.list()}
        except EngineUnreachable:
            if ref is None:
                raise
            present[ref] = set(names)
    return [n for n in names if n in present[where.get(n)]]


def docker_subnets() -> dict[str, list[str]]:
    """Every Docker network's name and IPv4 subnets, right now."""
    with engine() as client:
        return docker_network_subnets(client)


def check_data_present(
    stack: str, spec: ClusterSpec, plan: BootstrapPlan, engines: Mapping[str, str] | None = None
) -> None:
    """Refuse to form a second, empty cluster in place of a lost one.

    Every node is given the same `bootstrap-expect`, so if every node's data
    were gone the nodes would quietly bootstrap a new cluster with no jobs.
    """
    if plan.state != "formed" or spec.rebootstrap:
        return
    volumes = [spec.volume_name(n) for n in spec.nodes]
    on = {spec.volume_name(n): (engines or {}).get(n.name) or None for n in spec.nodes}
    if not existing_volumes(volumes, on):
        raise ClusterDataLost(
            f"stack '{stack}': the stack's outputs say cluster '{spec.name}' was formed with "
            f"members {', '.join(plan.members)}, but none of its data volumes "
            f"({', '.join(volumes)}) exists any more. Starting the nodes now would form a new, "
            "empty cluster. If that is what you want, set `rebootstrap: true` under "
            "dkron-cluster:cluster in the stack config, run `pulumi up`, then remove it again."
        )


class DkronCluster(pulumi.ComponentResource):
    """A Dkron cluster: image, network, and one volume and container per node.

    It declares what `args.update` (a `components.update_plan.UpdatePlan`)
    planned; apart from the end-of-update check (`final_view`) it reads
    nothing live.
    """

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
    prometheus: dict[str, str] | None
    """The bundled Prometheus server's URL and container (None when it is off)."""
    alertmanager: dict[str, str] | None
    """The Alertmanager's URL and container (None when it is off)."""

    def __init__(self, name: str, args: DkronClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dkron-iac:index:DkronCluster", name, None, opts)
        spec, update = args.spec, args.update
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        labels = {**args.labels, "dkron-iac.cluster": spec.name}
        self._labels = labels

        self.api_urls = dict(update.api_urls)
        self.rollout_order = list(update.order)
        network_name: pulumi.Input[str] = HOST_NETWORK
        if update.placements:
            # Nodes on hosts listen on their hosts' own networks.
            self.network = {"mode": HOST_NETWORK}
        else:
            self.network = {"name": spec.network_name, **update.network}
            network_name = DockerNetwork(
                f"{name}-network",
                name=spec.network_name,
                labels=labels,
                subnet=update.network["subnet"],
                gateway=update.network["gateway"],
                ip_range=update.network["ip_range"],
                opts=child,
            ).name
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
        # Built on this machine, then loaded onto each host that runs nodes.
        self._images: dict[str, pulumi.Output[str]] = {}
        for host in sorted({p.host for p in update.placements.values()}):
            ref = next(p.engine for p in update.placements.values() if p.host == host)
            self._images[host] = DockerImageCopy(
                f"{name}-image-{host}",
                tag=spec.image_tag,
                image_id=image.image_id,
                engine=ref,
                opts=self._as_recorded(child, host, DockerImageCopyProvider),
            ).loaded_id
        # The stack's CA, made once; each node's certificate is declared with the node
        # (`certificates`: when each ends, for `make status` and the next preview).
        self.certificates: dict[str, pulumi.Output[str]] = {}
        self._ca = StackCA(f"{name}-ca", stack=spec.name, opts=child) if spec.security.mutual_tls else None
        # What a caller of the nodes' APIs shows (the token) and trusts (the CA): a secret,
        # given to every step that calls them; None without mutual TLS (the API is plain).
        self.api_auth: pulumi.Output[dict[str, str]] | None = None
        self._token: pulumi.Output[str] | None = None
        if self._ca is not None:
            self._token = ApiToken(f"{name}-api-token", opts=child).token
            self.api_auth = pulumi.Output.secret(
                pulumi.Output.all(self._token, self._ca.cert_pem).apply(lambda t: {"token": t[0], "ca": t[1]})
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
        if not update.rolling:
            pulumi.log.info("no leader answers: every node starts now", resource=self)

        # Logged without a resource, so at once, while the resources above wait on
        # the event loop to register: a preview shows it before the resource list.
        pulumi.log.info(
            change_summary(
                update.change(
                    args.previous_image,
                    self.image,
                    spec.dkron.gossip_encryption,
                    args.unreachable_hosts,
                    spec.security.mutual_tls,
                )
            )
        )
        warning = root_warning(spec)
        if warning:
            pulumi.log.warn(warning)

        # Every node waits on this step; it stops them all when the transport changes.
        transport = TransportStep(
            f"{name}-transport",
            transport=wanted_transport(spec),
            stop=update.transport_stop,
            opts=child,
        )
        gates: list[pulumi.CustomResource] = []
        removal: pulumi.Resource | None = None
        for node_name in update.dead:
            removal = self._remove(node_name, [removal] if removal else [])
            gates.append(removal)
        # Each container starts after the step `update.after` names: a gate
        # when rolling, a container otherwise (see `start_after`).
        steps_of: dict[str, tuple[DockerContainer, NodeGate]] = {}
        for node_name in update.order:
            before = update.after[node_name]
            after: list[pulumi.Resource] = [transport]
            if before is not None:
                after.append(steps_of[before][1] if update.rolling else steps_of[before][0])
            elif update.rolling and removal is not None:
                after.append(removal)
            steps_of[node_name] = self._declare_node(
                node_name, after, image.image_id, network_name, environment
            )
            gates.append(steps_of[node_name][1])

        steps: list[pulumi.CustomResource] = list(gates)
        for node_name in update.live_removed:
            steps.append(self._remove(node_name, list(steps)))
        for node_name, record in update.earlier.items():
            self._remove(node_name, [], container=record["container"])
        self.removed = update.removed_record
        self.prometheus = self.alertmanager = None
        if spec.metrics.prometheus.enabled:
            self.prometheus = self._declare_prometheus(network_name)
        if spec.metrics.alertmanager.enabled:
            self.alertmanager = self._declare_alertmanager(network_name)

        self.ready = steps
        self.nodes = pulumi.Output.from_input(dict(update.nodes))
        # Read live once every step has passed: who leads, who votes.
        # (The credentials are read, not passed on: unsecret, so the leader and voters stay plain.)
        auth = pulumi.Output.unsecret(self.api_auth) if self.api_auth is not None else None
        done = pulumi.Output.all(image.image_id, auth, *[step.id for step in steps])
        final: pulumi.Output[dict[str, Any]] = done.apply(self._final_view)  # type: ignore[arg-type]  # apply awaits coroutines
        self.leader = final.apply(lambda v: v["leader"])
        self.voters = final.apply(lambda v: v["voters"])
        self.bootstrap = final.apply(lambda _: args.plan.record())
        self.register_outputs(
            {
                "leader": self.leader,
                "nodes": self.nodes,
                "bootstrap": self.bootstrap,
                "voters": self.voters,
                "network": self.network,
                "removed": self.removed,
                "prometheus": self.prometheus,
                "alertmanager": self.alertmanager,
                "certificates": self.certificates,
                "api_auth": self.api_auth,
            }
        )

    def _declare_prometheus(self, network: pulumi.Input[str]) -> dict[str, str]:
        """The Prometheus server beside the nodes (one engine: it scrapes them on the cluster network)."""
        spec = self._args.spec
        return self._declare_server(
            "prometheus",
            network,
            dockerfile=PROMETHEUS_DOCKERFILE,
            container=naming.prometheus_container_name(spec.name),
            repository=naming.prometheus_image_repository(spec.name),
            command=prometheus.command(),
            files={
                prometheus.CONFIG_PATH: prometheus.scrape_config(spec, [n.name for n in spec.nodes]),
                prometheus.RULES_PATH: prometheus.rules_file(spec),
            },
            port=prometheus.PORT,
            published=spec.metrics.prometheus.port,
            ready="/-/ready",
            volume=naming.prometheus_volume_name(spec.name),
            data=prometheus.DATA_PATH,
        )

    def _declare_alertmanager(self, network: pulumi.Input[str]) -> dict[str, str]:
        """The Alertmanager the Prometheus server sends its alerts to."""
        spec = self._args.spec
        return self._declare_server(
            prometheus.ALERTMANAGER_HOST,
            network,
            dockerfile=ALERTMANAGER_DOCKERFILE,
            container=naming.alertmanager_container_name(spec.name),
            repository=naming.alertmanager_image_repository(spec.name),
            command=prometheus.alertmanager_command(),
            files={prometheus.ALERTMANAGER_CONFIG_PATH: prometheus.alertmanager_config(spec)},
            port=prometheus.ALERTMANAGER_PORT,
            published=spec.metrics.alertmanager.port,
            ready="/-/ready",
            volume=naming.alertmanager_volume_name(spec.name),
            data=prometheus.ALERTMANAGER_DATA_PATH,
        )

    def _declare_server(
        self,
        role: str,
        network: pulumi.Input[str],
        *,
        dockerfile: str,
        container: str,
        repository: str,
        command: list[str],
        files: Mapping[str, str],
        port: int,
        published: int,
        ready: str,
        volume: str,
        data: str,
    ) -> dict[str, str]:
        """A server of Debian's (Prometheus, Alertmanager) beside the nodes: its image built
        from `dockerfile` on the base image, one container on the cluster network as `role`,
        its `data` folder on `volume`, which outlives the container (and, retained, the stack)."""
        name, spec, root = self._name, self._args.spec, str(self._args.project_root)
        child = pulumi.ResourceOptions(parent=self)
        # Not the cluster's label: the end of an update removes the cluster's images no container
        # uses, and this one's container may not exist yet then.
        labels = {**self._args.labels, f"dkron-iac.{role}": spec.name}
        image = DockerImage(
            f"{name}-{role}-image",
            tag=f"{repository}:local",
            context_root=root,
            include=[dockerfile],
            dockerfile=dockerfile,
            build_args={"BASE_IMAGE": spec.image.base_image, "SERVER_UID": str(prometheus.SERVER_UID)},
            context_digest=context_digest(root, [dockerfile]),
            labels=labels,
            opts=child,
        )
        data_volume = DockerVolume(
            f"{name}-{role}-volume",
            name=volume,
            labels=labels,
            retain_on_delete=spec.persistence.retain_volumes_on_destroy,
            opts=child,
        )
        DockerContainer(
            f"{name}-{role}",
            name=container,
            image=image.image_id,
            network=network,
            hostname=role,
            aliases=[role],
            command=command,
            files=dict(files),
            mounts=[{"volume": data_volume.name, "target": data}],
            # Loopback only, whatever `ports.bind_address` says: no authentication, and an API
            # that deletes data (Prometheus) or silences alerts (Alertmanager).
            ports=[{"internal": port, "external": published, "ip": "127.0.0.1"}],
            labels=labels,
            restart="unless-stopped",
            # The package's `prometheus` (its uid fixed in the image), without capabilities:
            # it listens above 1024 and writes only its own data, handed to it before it starts.
            user=prometheus.SERVER_USER,
            own_volumes=True,
            cap_drop=["ALL"],
            security_opt=[NO_NEW_PRIVILEGES],
            healthcheck={
                "test": [
                    "python3",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{ready}', timeout=3)",
                ],
                "interval_s": 5,
                "timeout_s": 4,
                "retries": 3,
                "start_period_s": 10,
            },
            opts=child,
        )
        return {"url": f"http://127.0.0.1:{published}", "container": container}

    def _declare_node(
        self,
        node_name: str,
        after: list[pulumi.Resource],
        image_id: pulumi.Input[str],
        network: pulumi.Input[str],
        environment: pulumi.Input[Mapping[str, str]],
    ) -> tuple[DockerContainer, NodeGate]:
        """One node's volume, its container (started after `after`) and its gate."""
        name, spec, update = self._name, self._args.spec, self._args.update
        node = spec.node(node_name)
        node_labels = {**self._labels, "dkron-iac.node": node.name}
        child = pulumi.ResourceOptions(parent=self)
        placement = update.placements.get(node.name)
        on_host = update.host_networks.get(node.name)
        engine_ref = placement.engine if placement else ""
        volume = DockerVolume(
            f"{name}-{node.name}-volume",
            name=spec.volume_name(node),
            labels=node_labels,
            retain_on_delete=spec.persistence.retain_volumes_on_destroy,
            engine=engine_ref,
            opts=self._as_recorded(child, placement.host if placement else None, DockerVolumeProvider),
        )
        if placement is not None and on_host is not None:
            # On its host's network: Dkron listens on the host's address and the
            # node's own ports; `dkron raft ...` is told where (`dkron_cli`).
            image_id = self._images[placement.host]
            rpc_env = {RPC_ADDR_ENV: on_host.rpc_addr}
            environment = pulumi.Output.from_input(environment).apply(lambda env: {**env, **rpc_env})
            placed: dict[str, Any] = {
                "engine": engine_ref,
                "healthcheck": healthcheck(on_host.api_port, local=spec.security.mutual_tls),
            }
        else:
            placed = {
                "aliases": [node.name],
                "ipv4_address": update.addresses[node.name],
                "ports": [
                    {
                        "internal": HTTP_PORT,
                        "external": update.ports[node.name],
                        "ip": spec.ports.bind_address,
                    }
                ],
                "healthcheck": healthcheck(local=spec.security.mutual_tls),
            }
        tls_files, node_key = self._certificate(node)
        if node_key is not None and self._token is not None:
            # The node's key and the API token go where the gossip key is: the secret environment.
            environment = pulumi.Output.secret(
                pulumi.Output.all(environment, node_key, self._token).apply(
                    lambda e: {**e[0], NODE_KEY_ENV: e[1], API_TOKEN_ENV: e[2]}
                )
            )
        container = DockerContainer(
            f"{name}-{node.name}",
            name=spec.container_name(node),
            image=image_id,
            network=network,
            hostname=node.name,
            command=agent_command(
                spec,
                on_host.api_port if on_host is not None else HTTP_PORT,
                exporter=on_host is None,
                fenced=on_host is not None,
            ),
            envs=environment,
            mounts=[{"volume": volume.name, "target": DATA_DIR}],
            files={
                CONFIG_PATH: render_node_config(spec, node, self._args.plan, on_host),
                **tls_files,
            },
            labels=node_labels,
            restart="unless-stopped",
            stop_timeout_s=STOP_TIMEOUT_S,
            **node_privileges(spec, node).container_args(),
            **placed,
            opts=self._as_recorded(
                pulumi.ResourceOptions(parent=self, depends_on=after, additional_secret_outputs=["envs"]),
                placement.host if placement else None,
                DockerContainerProvider,
            ),
        )
        gate = NodeGate(
            f"{name}-{node.name}-gate",
            node=node.name,
            container_id=container.container_id,
            api_urls=self.api_urls,
            containers=dict(update.containers),
            expected=list(update.expected[node.name]),
            timeout_s=spec.rollout.node_timeout_seconds,
            # The node restarted if forming stalls: the last of those that formed the
            # cluster, the same for the stack's life, so it never shows as a change.
            nudge=node.name == update.nudge,
            api_auth=self.api_auth,
            opts=child,
        )
        return container, gate

    def _certificate(self, node: NodeSpec) -> tuple[dict[str, pulumi.Input[str]], pulumi.Output[str] | None]:
        """The node's certificate: the files that hold the stack's CA and the
        certificate (public), and its key (a secret); ({}, None) without mutual TLS."""
        if self._ca is None:
            return {}, None
        spec, update = self._args.spec, self._args.update
        certificate = NodeCertificate(
            f"{self._name}-{node.name}-certificate",
            ca=self._ca,
            common_name=node.name,
            dns_names=[node.name, spec.container_name(node), "localhost"],
            ip_addresses=[update.addresses[node.name], LOOPBACK],
            days=spec.security.node_certificate_days,
            renew_within_days=spec.security.renew_within_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.certificates[node.name] = certificate.not_after
        return {TLS_CA_PATH: self._ca.cert_pem, TLS_CERT_PATH: certificate.cert_pem}, certificate.key_pem

    def _as_recorded(
        self, opts: pulumi.ResourceOptions, host: str | None, provider: type[DockerProvider]
    ) -> pulumi.ResourceOptions:
        """`opts`, and for an object on a host that does not answer, every input kept as
        recorded: the update could not reach it, so it proposes nothing there."""
        if host is None or host not in self._args.unreachable_hosts:
            return opts
        return pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(ignore_changes=provider.input_fields())
        )

    def _remove(
        self, node_name: str, after: list[pulumi.Resource], container: str | None = None
    ) -> NodeRemoval:
        """The step that takes `node_name` (gone from the config) out of the cluster."""
        update = self._args.update
        return NodeRemoval(
            f"{self._name}-{node_name}-removal",
            node=node_name,
            container=container or update.removed_containers[node_name],
            api_urls=self.api_urls,
            containers=dict(update.containers),
            expected=list(update.removal_expected[node_name]),
            stop_timeout_s=STOP_TIMEOUT_S,
            timeout_s=self._args.spec.rollout.node_timeout_seconds,
            api_auth=self.api_auth,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    async def _final_view(self, resolved: list[Any]) -> dict[str, Any]:
        """The end-of-update check, once every step has passed (`resolved[0]`: the image id,
        `resolved[1]`: the API's credentials)."""
        authorize(self.api_urls.values(), resolved[1])
        return await final_view(
            self, self.api_urls, dict(self._args.update.containers), self._labels, resolved[0]
        )


async def final_view(
    resource: pulumi.Resource,
    api_urls: Mapping[str, str],
    containers: Mapping[str, str],
    labels: Mapping[str, str],
    image_id: str,
) -> dict[str, Any]:
    """Who leads and who votes once an update's steps have passed.

    An update ends only on a working cluster, even one that changed nothing:
    without a leader agreed by a majority it fails with what it saw; with one
    but a node still down it warns (the next update replaces that node).
    Blocking calls run off the event loop so job writes go on meanwhile.
    """
    expected = sorted(api_urls)
    dry_run = pulumi.runtime.is_dry_run()
    loop = asyncio.get_running_loop()
    view = await loop.run_in_executor(None, observe, api_urls, containers)
    if not dry_run and view.problems(expected):
        wait = functools.partial(
            wait_until_healthy,
            api_urls,
            containers,
            expected,
            FINAL_WAIT_S,
            "at the end of the update",
        )
        try:
            view = await loop.run_in_executor(None, wait)
        except ClusterUnhealthy as unhealthy:
            view = await loop.run_in_executor(None, observe, api_urls, containers)
            agreeing = [v for v in view.nodes.values() if v.error is None and v.leader == view.leader]
            if view.leader is None or len(agreeing) * 2 <= len(expected):
                raise
            pulumi.log.warn(f"{unhealthy}; run the update again to bring the nodes back", resource=resource)
    # Raft's voters end equal to the config: dead voters outside it go.
    stray = stray_voters([p.node for p in (view.raft_peers or {}).values()], expected)
    if stray and dry_run:
        pulumi.log.info(
            f"Raft peers not in the config: {', '.join(stray)}; the update removes them if dead",
            resource=resource,
        )
    elif stray:
        await loop.run_in_executor(None, remove_stray_voters, api_urls, containers, stray)
        pulumi.log.info(f"removed Raft peers not in the config: {', '.join(stray)}", resource=resource)
        view = await loop.run_in_executor(None, observe, api_urls, containers)
    if not dry_run:
        # Images of earlier updates, now that no container runs on them, on
        # this machine and on every host.
        removed = []
        for where in sorted({split_locator(c)[0] or "" for c in containers.values()} | {""}):
            try:
                removed += await loop.run_in_executor(
                    None, remove_unused_images, labels, image_id, where or None
                )
            except EngineUnreachable:
                if not where:
                    raise
                # A host that does not answer keeps its old images until an update that reaches it.
        if removed:
            pulumi.log.info(f"removed {len(removed)} node image(s) no container uses", resource=resource)
    voters = sorted(p.node for p in (view.raft_peers or {}).values() if p.voter)
    return {"leader": view.leader, "voters": voters}
