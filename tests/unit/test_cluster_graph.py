"""DkronCluster's resource graph under Pulumi's mocks: what it declares, and what waits for what.

The cluster is built from an update plan made of plain data (`FakeNodes.live`
stands for what the program observed before declaring anything). The end of the
update still reads the nodes: their APIs are faked at
`components.health.observe_node` and the Docker client is made to fail, so
building a cluster here never touches the network or a Docker engine. What the
plan holds is tested on its own in test_update_plan.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

import components.cluster
import components.docker_objects.client
import components.health
from components import naming, prometheus
from components.cluster import DOCKERFILE, DkronCluster, DkronClusterArgs
from components.health import ClusterView, LiveView, NodeView, RaftPeer
from components.node_config import CONFIG_PATH, DATA_DIR, HTTP_PORT, SERF_PORT, bootstrap_plan, node_settings
from components.privilege import ROOT, UNPRIVILEGED
from components.spec import ClusterSpec, load_cluster_spec
from components.update_plan import plan_update

NODES = ("node1", "node2", "node3")
KEY = "dW5pdC10ZXN0LWdvc3NpcC1rZXktMzItYnl0ZXMhISE="
LABELS = {"dkron-iac.project": "dkron-cluster", "dkron-iac.stack": "unit"}
GENERIC_DYNAMIC_KIND = "Resource"
SUBNET = ipaddress.IPv4Network("172.26.7.0/24")


def cluster_spec(**changes: Any) -> ClusterSpec:
    raw = {"name": "unit", "nodes": [{"name": n} for n in NODES], **changes}
    return load_cluster_spec("unit", raw)


# --- recording what the program registers -------------------------------------------


def _kind(type_token: str, name: str) -> str:
    kind = type_token.rsplit(":", 1)[-1]
    if kind != GENERIC_DYNAMIC_KIND:
        return kind
    # NodeGate and GossipKey keep the generic dynamic type token: tell them by role.
    for suffix, role in (("-gate", "NodeGate"), ("-gossip-key", "GossipKey")):
        if name.endswith(suffix):
            return role
    return kind


def _plain(value: Any) -> Any:
    """`value` with Pulumi's secret wrappers taken off."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@dataclass
class Registration:
    """One resource as the engine would receive it."""

    kind: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str
    urn: str = ""
    dependencies: set[str] = field(default_factory=set)
    property_dependencies: dict[str, set[str]] = field(default_factory=dict)

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return _plain(self.inputs)

    @property
    def depends_on(self) -> set[str]:
        """Dependencies no input accounts for: the explicit `depends_on`."""
        return self.dependencies - set().union(*self.property_dependencies.values())


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every `new_resource` call in order; answers with the inputs plus mocked outputs."""

    def __init__(self) -> None:
        self.registrations: list[Registration] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        kind = _kind(args.typ, args.name)
        inputs = {k: v for k, v in args.inputs.items() if k != "__provider"}
        state = dict(inputs)
        if kind == "DockerImage":
            state["image_id"] = f"sha256:{args.name}"
        elif kind == "DockerContainer":
            state["container_id"] = f"cid-{args.name}"
        elif kind == "GossipKey":
            state["key"] = KEY
        resource_id = f"{args.name}-id"
        self.registrations.append(Registration(kind, args.name, inputs, state, resource_id))
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """Keeps what the mocks are not shown: each registration's dependencies."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.requests: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.requests[request.name] = (response.urn, request)
        return response


class Graph:
    def __init__(self) -> None:
        self.mocks = RecordingMocks()
        self.monitor = RecordingMonitor(self.mocks)

    @property
    def registrations(self) -> list[Registration]:
        """Every resource in the order it was registered, with its dependencies."""
        for reg in self.mocks.registrations:
            urn, request = self.monitor.requests[reg.name]
            reg.urn = urn
            reg.dependencies = set(request.dependencies)
            reg.property_dependencies = {
                key: set(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
            }
        return list(self.mocks.registrations)

    def of(self, kind: str) -> list[Registration]:
        return [r for r in self.registrations if r.kind == kind]

    def one(self, name: str) -> Registration:
        (found,) = [r for r in self.registrations if r.name == name]
        return found

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reg in self.registrations:
            counts[reg.kind] = counts.get(reg.kind, 0) + 1
        return counts


class FakeNodes:
    """What each node's API answers; by default nothing listens (a new stack)."""

    def __init__(self) -> None:
        self.views: dict[str, NodeView] = {}
        self.voters: tuple[str, ...] = ()
        self.pruned: list[tuple[dict[str, str], str]] = []

    def remove_unused_images(self, labels: dict[str, str], keep: str, engine: str | None = None) -> list[str]:
        assert engine is None, "one engine: images are pruned on the local one"
        self.pruned.append((dict(labels), keep))
        return []

    def answer(self, leader: str, *, down: tuple[str, ...] = ()) -> None:
        alive = frozenset(n for n in NODES if n not in down)
        self.views = {n: NodeView(n, leader=leader, alive_servers=alive) for n in NODES}
        self.views.update({n: NodeView(n, error="ConnectionError: refused") for n in down})
        self.voters = tuple(sorted(alive))

    def live(self) -> LiveView:
        """What the program sees before the update: the nodes' answers, as plain data."""
        return LiveView.of(ClusterView(nodes={n: self.observe_node(n, "") for n in NODES}))

    def observe_node(self, name: str, _api_url: str, timeout_s: float = 3.0) -> NodeView:
        return self.views.get(name, NodeView(name, error="ConnectionError: nothing listens"))

    def raft_peers(self, _container: str) -> dict[str, RaftPeer]:
        return {n: RaftPeer(n, f"{n}:6868", "follower", True) for n in self.voters}


def _no_docker(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a unit test reached for the Docker engine")


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    fake = FakeNodes()
    monkeypatch.setattr(components.health, "observe_node", fake.observe_node)
    monkeypatch.setattr(components.health, "raft_peers", fake.raft_peers)
    # Every Docker client is made here (`engine()`), whoever asks for one.
    monkeypatch.setattr(components.docker_objects.client, "_connect", _no_docker)
    monkeypatch.setattr(components.cluster, "remove_unused_images", fake.remove_unused_images)
    # The fake cluster is never whole; the end-of-update wait reads it once.
    monkeypatch.setattr(
        components.cluster,
        "wait_until_healthy",
        lambda api_urls, containers, *_args: components.health.observe(api_urls, containers),
    )
    return fake


@pytest.fixture
def graph() -> Iterator[Graph]:
    recorded = Graph()
    pulumi.runtime.set_mocks(recorded.mocks, preview=False, monitor=recorded.monitor)
    yield recorded
    pulumi.runtime.reset_options()


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    """A build context of its own, so the image digest does not read the working tree."""
    for entry in components.cluster.IMAGE_CONTEXT:
        (tmp_path / entry).mkdir()
    (tmp_path / components.cluster.DOCKERFILE).write_text("FROM scratch\n")
    return tmp_path


def new_cluster(spec: ClusterSpec, project_root: Path, live: LiveView) -> DkronCluster:
    plan = bootstrap_plan(spec, None)
    args = DkronClusterArgs(
        spec=spec,
        plan=plan,
        update=plan_update(spec, plan, {}, {}, SUBNET, live),
        project_root=project_root,
        labels=LABELS,
        previous_image={},
    )
    return DkronCluster("dkron", args)


def deploy(spec: ClusterSpec, project_root: Path, live: LiveView) -> DkronCluster:
    """Run a program declaring the cluster to its end: every registration is recorded."""
    built: list[DkronCluster] = []

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        cluster = new_cluster(spec, project_root, live)
        built.append(cluster)
        return pulumi.Output.all(cluster.leader, cluster.bootstrap)

    program()
    return built[0]


def dkron_yml(container: Registration) -> dict[str, Any]:
    config = yaml.safe_load(container.plain_inputs["files"][CONFIG_PATH])
    assert isinstance(config, dict)
    return config


# --- what is declared ----------------------------------------------------------------


def test_one_network_image_and_key_and_a_volume_container_and_gate_per_node(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    deploy(cluster_spec(), project_root, nodes.live())

    assert graph.kinds() == {
        "DkronCluster": 1,
        "DockerNetwork": 1,
        "DockerImage": 1,
        "GossipKey": 1,
        "StackCA": 1,
        "ApiToken": 1,
        "TransportStep": 1,
        "NodeCertificate": 3,
        "DockerVolume": 3,
        "DockerContainer": 3,
        "NodeGate": 3,
    }
    children = [r for r in graph.registrations if r.kind != "DkronCluster"]
    assert all("dkron-iac:index:DkronCluster$" in r.urn for r in children)


def test_without_gossip_encryption_there_is_no_key_and_no_encrypt(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    deploy(cluster_spec(dkron={"gossip_encryption": False}), project_root, nodes.live())

    assert "GossipKey" not in graph.kinds()
    for container in graph.of("DockerContainer"):
        assert "encrypt" not in dkron_yml(container)
        assert container.plain_inputs["envs"] == {}


def test_the_gossip_key_is_a_secret_environment_variable_and_the_config_is_plain(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    cluster = deploy(cluster_spec(), project_root, nodes.live())

    for container in graph.of("DockerContainer"):
        assert container.inputs["files"] == container.plain_inputs["files"], "dkron.yml must be plain"
        assert "encrypt" not in dkron_yml(container)
        assert KEY not in container.inputs["files"][CONFIG_PATH]
        assert container.inputs["envs"] != container.plain_inputs["envs"], "the environment must be secret"
        assert container.plain_inputs["envs"] == {"DKRON_ENCRYPT": KEY}
    recorded: list[Any] = []
    cluster.nodes.apply(recorded.append)
    assert KEY not in set(_strings(recorded)), "the nodes output must not hold the key"


def test_ports_are_published_on_loopback_at_the_specs_api_ports(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    spec = cluster_spec(
        ports={"api_port_base": 18081},
        nodes=[{"name": "node1"}, {"name": "node2", "api_port": 19000}, {"name": "node3"}],
    )
    deploy(spec, project_root, nodes.live())

    published = {c.plain_inputs["hostname"]: c.plain_inputs["ports"] for c in graph.of("DockerContainer")}
    assert published == {
        "node1": [{"internal": HTTP_PORT, "external": 18081, "ip": "127.0.0.1"}],
        "node2": [{"internal": HTTP_PORT, "external": 19000, "ip": "127.0.0.1"}],
        # Nodes without their own port take the first free one from the base.
        "node3": [{"internal": HTTP_PORT, "external": 18082, "ip": "127.0.0.1"}],
    }


@pytest.mark.parametrize(
    ("bind_address", "api_host"),
    [("0.0.0.0", "127.0.0.1"), ("192.168.10.5", "192.168.10.5")],  # noqa: S104 - a config value
)
def test_ports_are_published_on_the_configured_bind_address(
    graph: Graph, nodes: FakeNodes, project_root: Path, bind_address: str, api_host: str
) -> None:
    cluster = deploy(cluster_spec(ports={"bind_address": bind_address}), project_root, nodes.live())

    for container in graph.of("DockerContainer"):
        assert [p["ip"] for p in container.plain_inputs["ports"]] == [bind_address]
    assert cluster.api_urls == {
        "node1": f"https://{api_host}:8081",
        "node2": f"https://{api_host}:8082",
        "node3": f"https://{api_host}:8083",
    }


def test_the_network_has_the_subnet_and_each_node_a_fixed_address_in_its_lower_half(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    deploy(cluster_spec(), project_root, nodes.live())

    (network,) = graph.of("DockerNetwork")
    assert network.inputs["subnet"] == "172.26.7.0/24"
    assert network.inputs["ip_range"] == "172.26.7.128/25"
    addresses = {c.inputs["hostname"]: c.inputs["ipv4_address"] for c in graph.of("DockerContainer")}
    assert addresses == {"node1": "172.26.7.10", "node2": "172.26.7.11", "node3": "172.26.7.12"}
    assert all(c.inputs["network"] == "unit-net" for c in graph.of("DockerContainer"))


def test_after_the_update_images_of_the_cluster_but_the_current_one_are_removed(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    deploy(cluster_spec(), project_root, nodes.live())

    (image,) = graph.of("DockerImage")
    cluster_labels = {**LABELS, "dkron-iac.cluster": "unit"}
    assert image.inputs["labels"] == cluster_labels
    assert nodes.pruned == [(cluster_labels, image.state["image_id"])]


def test_labels_carry_the_stack_the_cluster_and_the_node(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    deploy(cluster_spec(), project_root, nodes.live())

    cluster_labels = {**LABELS, "dkron-iac.cluster": "unit"}
    assert graph.one("dkron-network").plain_inputs["labels"] == cluster_labels
    for node in NODES:
        node_labels = {**cluster_labels, "dkron-iac.node": node}
        assert graph.one(f"dkron-{node}-volume").plain_inputs["labels"] == node_labels
        assert graph.one(f"dkron-{node}").plain_inputs["labels"] == node_labels


def test_each_node_gets_its_own_config(graph: Graph, nodes: FakeNodes, project_root: Path) -> None:
    deploy(cluster_spec(), project_root, nodes.live())

    for node in NODES:
        config = dkron_yml(graph.one(f"dkron-{node}"))
        assert config["node-name"] == node
        assert config["bootstrap-expect"] == 3
        # Peers are reached by plain host names, never by a sibling's outputs.
        assert config["retry-join"] == [f"{n}:{SERF_PORT}" for n in NODES]


# --- no container is built from a sibling ----------------------------------------------


@pytest.mark.parametrize("leader", [None, "node2"], ids=["new-stack", "rolling"])
def test_each_container_names_only_its_own_node(
    graph: Graph, nodes: FakeNodes, project_root: Path, leader: str | None
) -> None:
    if leader:
        nodes.answer(leader)
    deploy(cluster_spec(), project_root, nodes.live())

    for node in NODES:
        inputs = graph.one(f"dkron-{node}").plain_inputs
        assert inputs["name"] == f"unit-{node}"
        assert inputs["hostname"] == node
        assert inputs["aliases"] == [node]
        assert inputs["mounts"] == [{"volume": f"unit-{node}-data", "target": DATA_DIR}]
        assert dkron_yml(graph.one(f"dkron-{node}"))["node-name"] == node
        others = [n for n in NODES if n != node]
        # The config's retry-join lists every node by design; nothing else may name a sibling.
        rest = {k: v for k, v in inputs.items() if k != "files"}
        assert not [s for s in _strings(rest) for other in others if other in s]


@pytest.mark.parametrize("leader", [None, "node2"], ids=["new-stack", "rolling"])
def test_no_container_input_comes_from_a_sibling_container(
    graph: Graph, nodes: FakeNodes, project_root: Path, leader: str | None
) -> None:
    if leader:
        nodes.answer(leader)
    deploy(cluster_spec(), project_root, nodes.live())

    containers = graph.of("DockerContainer")
    image = graph.one("dkron-image")
    shared = {
        "network": {graph.one("dkron-network").urn},
        "image": {image.urn},
    }
    for container in containers:
        node = container.plain_inputs["hostname"]
        certificate = graph.one(f"dkron-{node}-certificate").urn
        assert container.property_dependencies == {
            **shared,
            # The gossip key, the node's own key and the API token; the CA's and the node's
            # certificates.
            "envs": {graph.one("dkron-gossip-key").urn, certificate, graph.one("dkron-api-token").urn},
            "files": {graph.one("dkron-ca").urn, certificate},
            "mounts": {graph.one(f"dkron-{node}-volume").urn},
        }
        assert container.plain_inputs["image"] == image.state["image_id"]
        siblings = [c for c in containers if c is not container]
        sibling_values = {v for c in siblings for v in (c.id, c.urn, c.state["container_id"])}
        assert not sibling_values & set(_strings(container.plain_inputs))


# --- ordering --------------------------------------------------------------------------


def test_new_stack_starts_the_first_node_then_the_others_together_after_it(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    cluster = deploy(cluster_spec(), project_root, nodes.live())

    assert cluster.rollout_order == list(NODES)
    containers = graph.of("DockerContainer")
    assert [c.plain_inputs["hostname"] for c in containers] == list(NODES)
    transport = graph.one("dkron-transport").urn
    assert [c.depends_on - {transport} for c in containers] == [
        set(),
        {containers[0].urn},
        {containers[0].urn},
    ]
    assert all(transport in c.depends_on for c in containers)
    gates = {g.plain_inputs["node"]: g.plain_inputs for g in graph.of("NodeGate")}
    assert {n: g["expected"] for n, g in gates.items()} == {n: list(NODES) for n in NODES}
    # Only the last node started may restart one to kick a stalled bootstrap.
    assert {n: g["nudge"] for n, g in gates.items()} == {"node1": False, "node2": False, "node3": True}


def test_the_nudging_node_stays_the_same_once_the_cluster_formed(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    # The gate's `nudge` never flips after formation, so a preview never shows it change.
    nodes.answer("node2")
    deploy(cluster_spec(), project_root, nodes.live())

    gates = {g.plain_inputs["node"]: g.plain_inputs for g in graph.of("NodeGate")}
    assert {n: g["nudge"] for n, g in gates.items()} == {"node1": False, "node2": False, "node3": True}


def test_rolling_update_goes_one_node_at_a_time_leader_last(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    nodes.answer("node2")
    cluster = deploy(cluster_spec(), project_root, nodes.live())

    assert cluster.rollout_order == ["node1", "node3", "node2"]
    containers = graph.of("DockerContainer")
    assert [c.plain_inputs["hostname"] for c in containers] == ["node1", "node3", "node2"]
    gate = {g.plain_inputs["node"]: g for g in graph.of("NodeGate")}
    transport = graph.one("dkron-transport").urn
    assert [c.depends_on - {transport} for c in containers] == [
        set(),
        {gate["node1"].urn},
        {gate["node3"].urn},
    ]
    for node, g in gate.items():
        assert g.property_dependencies == {
            "container_id": {graph.one(f"dkron-{node}").urn},
            # The token and the CA it calls the nodes' APIs with.
            "api_auth": {graph.one("dkron-api-token").urn, graph.one("dkron-ca").urn},
        }
        assert g.plain_inputs["container_id"] == f"cid-dkron-{node}"
        assert g.plain_inputs["expected"] == list(NODES)
    # A gate is registered only after its container, and the next container only after it.
    order = [r.name for r in graph.registrations if r.kind in ("DockerContainer", "NodeGate")]
    assert order == [
        "dkron-node1",
        "dkron-node1-gate",
        "dkron-node3",
        "dkron-node3-gate",
        "dkron-node2",
        "dkron-node2-gate",
    ]


def test_rolling_brings_a_down_node_back_first_and_then_expects_everyone(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    nodes.answer("node2", down=("node3",))
    cluster = deploy(cluster_spec(), project_root, nodes.live())

    # node3 is down: it goes first, so no live node is stopped while it is out.
    assert cluster.rollout_order == ["node3", "node1", "node2"]
    expected = {g.plain_inputs["node"]: g.plain_inputs["expected"] for g in graph.of("NodeGate")}
    assert expected == {"node3": list(NODES), "node1": list(NODES), "node2": list(NODES)}


def test_one_node_without_a_leader_does_not_stop_a_rolling_update(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    nodes.answer("node2")
    nodes.views["node3"] = NodeView("node3", leader=None, alive_servers=frozenset(NODES))
    cluster = deploy(cluster_spec(), project_root, nodes.live())

    assert cluster.rollout_order == ["node1", "node3", "node2"]


# --- outputs ---------------------------------------------------------------------------


@pulumi.runtime.test
def test_outputs_name_the_leader_the_nodes_and_the_formed_cluster(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> pulumi.Output[None]:
    nodes.answer("node2")
    spec = cluster_spec(nodes=[{"name": n, "tags": {"python": n}} for n in NODES])
    cluster = new_cluster(spec, project_root, nodes.live())

    def check(args: list[Any]) -> None:
        leader, node_outputs, bootstrap = args
        assert leader == "node2"
        assert bootstrap == {"state": "formed", "members": list(NODES)}
        assert node_outputs == {
            n: {
                "container": f"unit-{n}",
                "api_url": f"https://127.0.0.1:{8081 + i}",
                "address": f"172.26.7.{10 + i}",
                "tags": {"python": n},
                # What the next preview compares with to say why a node changes.
                "config": node_settings(spec, spec.node(n), bootstrap_plan(spec, None)),
                # Who it runs as: the next preview says when that changes.
                "user": "dkron",
            }
            for i, n in enumerate(NODES)
        }
        assert cluster.image == {
            "base_image": "dkron-iac/python-base:bookworm",
            "dkron_image": "dkron-iac/dkron:4.0.5",
            "dkron_version": "4.0.5",
            "files": {DOCKERFILE: sha256(b"fFROM scratch\n").hexdigest()[:16]},
        }
        assert cluster.network == {
            "name": "unit-net",
            "subnet": "172.26.7.0/24",
            "gateway": "172.26.7.1",
            "ip_range": "172.26.7.128/25",
        }

    return pulumi.Output.all(cluster.leader, cluster.nodes, cluster.bootstrap).apply(check)


def test_each_node_container_runs_as_its_user_with_its_privileges(
    graph: Graph, nodes: FakeNodes, project_root: Path
) -> None:
    spec = cluster_spec(
        nodes=[{"name": "node1", "tags": {"tier": "legacy"}}, {"name": "node2"}, {"name": "node3"}],
        security={"run_as_root_tags": {"tier": "legacy"}},
    )
    deploy(spec, project_root, nodes.live())
    containers = {c.name: c.plain_inputs for c in graph.of("DockerContainer")}
    for name, expected in (
        ("dkron-node1", ROOT),
        ("dkron-node2", UNPRIVILEGED),
        ("dkron-node3", UNPRIVILEGED),
    ):
        assert {k: containers[name][k] for k in expected.container_args()} == expected.container_args()


@pytest.mark.parametrize("retain", [False, True])
def test_prometheus_and_the_alertmanager_keep_their_data_on_volumes_of_their_own(
    graph: Graph, nodes: FakeNodes, project_root: Path, retain: bool
) -> None:
    for dockerfile in (components.cluster.PROMETHEUS_DOCKERFILE, components.cluster.ALERTMANAGER_DOCKERFILE):
        (project_root / dockerfile).write_text("FROM scratch\n")
    spec = cluster_spec(
        metrics={"prometheus": {"enabled": True}, "alertmanager": {"enabled": True}},
        persistence={"retain_volumes_on_destroy": retain},
    )
    deploy(spec, project_root, nodes.live())
    for role, volume, data in (
        ("prometheus", naming.prometheus_volume_name("unit"), prometheus.DATA_PATH),
        ("alertmanager", naming.alertmanager_volume_name("unit"), prometheus.ALERTMANAGER_DATA_PATH),
    ):
        declared = graph.one(f"dkron-{role}-volume").plain_inputs
        assert (declared["name"], declared["retain_on_delete"]) == (volume, retain)
        container = graph.one(f"dkron-{role}").plain_inputs
        assert container["mounts"] == [{"volume": volume, "target": data}]
        # Given to the packages' user, whose uid the image fixes, before the server starts.
        assert (container["user"], container["own_volumes"]) == (prometheus.SERVER_USER, True)
        image = graph.one(f"dkron-{role}-image").plain_inputs
        assert image["build_args"]["SERVER_UID"] == str(prometheus.SERVER_UID)
