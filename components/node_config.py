"""Each node's dkron.yml, and how the cluster bootstraps.

Pure functions of the spec (and the stack's previous bootstrap record); no
Pulumi or Docker here, so they are tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from components.spec import ClusterSpec, NodeSpec

CONFIG_PATH = "/etc/dkron/dkron.yml"
# The stack's CA and the node's certificate and key (`components.certificates`),
# beside dkron.yml; the agent reads them from its `tls:` section (agent/security.go).
TLS_CA_PATH = "/etc/dkron/ca.pem"
TLS_CERT_PATH = "/etc/dkron/node.pem"
# The node's key is in the container's environment (secret, like the gossip
# key), not in a file; the agent takes it from there and drops it from its own
# environment, so jobs do not inherit it.
NODE_KEY_ENV = "DKRON_IAC_NODE_KEY"
# The stack's API token, delivered and dropped the same way as the node's key.
API_TOKEN_ENV = "DKRON_IAC_API_TOKEN"  # noqa: S105 - the variable's name
# Where the agent also serves its API in plain HTTP, without the token, for the
# processes of its own container (the watcher, the exporter, Docker's health
# check): a Unix socket on the container's private /tmp, mode 0600, which no
# other container and no process of the host outside the container reaches,
# even with the host's network (README, "Who can command the cluster").
LOCAL_API_SOCKET = "/tmp/dkron-iac-api.sock"  # noqa: S108 - the container's own tmpfs
LOCAL_API = f"unix://{LOCAL_API_SOCKET}"
DATA_DIR = "/dkron/data"
HTTP_PORT = 8080
SERF_PORT = 8946
RPC_PORT = 6868

RETRY_INTERVAL = "5s"
# The gossip key's setting (`encrypt`) as Dkron reads it from the environment.
ENCRYPT_ENV = "DKRON_ENCRYPT"


@dataclass(frozen=True)
class BootstrapPlan:
    """The bootstrap settings every node gets.

    Every node, the first one included, gets the same ``bootstrap-expect`` and
    ``retry-join``; there is no special "first node" config to swap out later.
    Dkron ignores ``bootstrap-expect`` once a node has Raft state, so restarting
    or replacing a node with this config is harmless, and a fresh node joins
    the existing cluster instead of bootstrapping because its peers already
    have Raft peers.

    ``members`` are the nodes that formed the cluster; once it is formed they
    are kept, and ``expect`` with them, so adding or removing nodes never
    changes (and so never restarts) the existing nodes.
    """

    state: Literal["new", "formed"]
    members: tuple[str, ...]
    expect: int
    join: tuple[str, ...]
    endpoints: tuple[str, ...] = ()
    """On several hosts: the Serf addresses (``address:port``) nodes join through,
    in place of ``join``'s names (which only resolve on one Docker network)."""

    def record(self) -> dict[str, Any]:
        """What the stack exports as ``bootstrap`` once the cluster is up."""
        record: dict[str, Any] = {"state": "formed", "members": list(self.members)}
        if self.endpoints:
            record["join"] = list(self.endpoints)
        return record


def bootstrap_plan(
    spec: ClusterSpec,
    previous: Mapping[str, Any] | None,
    endpoints: Mapping[str, str] | None = None,
) -> BootstrapPlan:
    """Bootstrap settings for the stack, given its last ``bootstrap`` output.

    ``endpoints`` (several hosts only): each configured node's Serf address,
    ``address:port``. Nodes then join through addresses, kept like the
    members: the endpoints recorded when the cluster formed stay the list
    while any of them is still a node's, so moving or adding a node never
    changes, and so never restarts, the others.

    ``previous`` is None or empty for a stack that never formed a cluster,
    else ``{"state": "formed", "members": [...]}``. ``spec.rebootstrap``
    discards that record so the current nodes form a new cluster (for when
    every node's data is gone).
    """
    names = tuple(node.name for node in spec.nodes)
    current = tuple(endpoints[n] for n in names) if endpoints else ()
    if not previous or spec.rebootstrap:
        return BootstrapPlan(state="new", members=names, expect=len(names), join=names, endpoints=current)
    if previous.get("state") != "formed" or not previous.get("members"):
        raise ValueError(
            f"unexpected bootstrap record {dict(previous)!r}; expected {{'state': 'formed', 'members': [...]}}"
        )
    members = tuple(str(member) for member in previous["members"])
    # Every node joins through the recorded members, even those removed since:
    # retry-join needs one answer, and a join list that followed membership
    # changes would change, and so restart, every node. Only once no recorded
    # member is left do the current nodes become the list.
    join = members if any(name in members for name in names) else names
    recorded = tuple(str(e) for e in previous.get("join") or ())
    kept = recorded if set(recorded) & set(current) else current
    return BootstrapPlan(
        state="formed", members=members, expect=len(members), join=join, endpoints=kept if current else ()
    )


def node_settings(
    spec: ClusterSpec, node: NodeSpec, plan: BootstrapPlan, host: HostNetwork | None = None
) -> dict[str, Any]:
    """The node's Dkron settings, as they go into its dkron.yml.

    They hold no secret: the gossip key goes into the environment
    (`node_environment`), so the file can be shown and diffed in a preview.
    With ``host`` (several hosts) the node runs on its host's network: Serf and
    gRPC/Raft on the host's address and the node's own ports, the HTTP API on
    the host's loopback unless the API is published.
    """
    settings = spec.dkron
    config: dict[str, Any] = {
        "server": True,
        "node-name": node.name,
        "data-dir": DATA_DIR,
        "bootstrap-expect": plan.expect,
        "retry-join": [f"{member}:{SERF_PORT}" for member in plan.join],
        "retry-interval": RETRY_INTERVAL,
        "log-level": node.log_level or settings.log_level,
        "raft-multiplier": settings.raft_multiplier,
        "region": settings.region,
        "datacenter": settings.datacenter,
        "disable-usage-stats": settings.disable_usage_stats,
        "ui": settings.ui,
        "http-addr": f":{HTTP_PORT}",
        # Dkron's own metrics at /metrics on the API port (README: "Metrics and alerts").
        "enable-prometheus": True,
    }
    if host is not None:
        serf = f"{host.address}:{host.serf_port}"
        config["bind-addr"] = serf
        config["advertise-addr"] = serf
        config["rpc-port"] = host.rpc_port
        config["http-addr"] = f"{host.http_ip}:{host.api_port}"
        config["retry-join"] = list(plan.endpoints)
    if node.tags:
        config["tags"] = dict(node.tags)
    if spec.security.mutual_tls:
        config["tls"] = {
            "ca-file": TLS_CA_PATH,
            "cert-file": TLS_CERT_PATH,
            "key-env": NODE_KEY_ENV,
            "api-token-env": API_TOKEN_ENV,
            "local-socket": LOCAL_API_SOCKET,
        }
    return config


# How a node talks: in clear; mutual TLS on the RPC port only (stacks deployed
# between the two steps of issue 27); mutual TLS and the HTTPS API with the token.
PLAIN, RPC_TLS, SECURED = "plain", "mutual-tls-rpc", "mutual-tls"


def transport(record: Mapping[str, Any]) -> str:
    """How a node, as an update recorded it, talks (`PLAIN`, `RPC_TLS` or `SECURED`)."""
    tls = (record.get("config") or {}).get("tls")
    if not tls:
        return PLAIN
    return SECURED if "api-token-env" in tls else RPC_TLS


def wanted_transport(spec: ClusterSpec) -> str:
    return SECURED if spec.security.mutual_tls else PLAIN


def secured(record: Mapping[str, Any]) -> bool:
    """Whether a node, as recorded, serves its API over HTTPS to token holders only."""
    return transport(record) == SECURED


@dataclass(frozen=True)
class HostNetwork:
    """Where a node on a host listens (several hosts: Docker's host network)."""

    address: str
    """The host's address, which the other hosts reach it on."""
    serf_port: int
    rpc_port: int
    api_port: int
    http_ip: str = "127.0.0.1"
    """Where the API listens on the host: its loopback unless published."""

    @property
    def rpc_addr(self) -> str:
        """What `dkron raft ...` run in the node's container must be told to reach it."""
        return f"{self.address}:{self.rpc_port}"


def render_node_config(
    spec: ClusterSpec, node: NodeSpec, plan: BootstrapPlan, host: HostNetwork | None = None
) -> str:
    """The node's dkron.yml, as YAML text with sorted keys."""
    return yaml.safe_dump(node_settings(spec, node, plan, host), sort_keys=True, default_flow_style=False)


# The address `dkron raft ...` in a node's container talks to, when it is not
# Dkron's default (the container's private address and port 6868).
RPC_ADDR_ENV = "NODE_RPC_ADDR"


def dkron_cli(*args: str) -> list[str]:
    """A `dkron` CLI command to run inside a node's container, told where the
    agent's gRPC listens when the container says so (``NODE_RPC_ADDR``)."""
    words = " ".join(["dkron", *args])
    return ["sh", "-c", f'exec {words} ${{{RPC_ADDR_ENV}:+--rpc-addr="${RPC_ADDR_ENV}"}}']


# What runs beside the agent (`nodeside/`) as the node image carries it.
CATCHUP_PACKAGE_DIR = "/opt/dkron-iac"
CATCHUP_STATE = f"{DATA_DIR}/dkron-iac-catchup.json"
# The node exporter's port in the node's container (`nodeside/exporter.py`).
EXPORTER_PORT = 9180


# Seconds after the container starts that the node exporter starts (see `agent_command`).
EXPORTER_DELAY_S = 10


def _in_background(command: str, prefix: str) -> str:
    """``command`` started in the background, after ``prefix`` (a delay, a priority) if any."""
    if not prefix:
        return f"{command} &"
    return f"({prefix} env {command}) &"


def agent_command(
    spec: ClusterSpec, api_port: int = HTTP_PORT, exporter: bool = True, fenced: bool = False
) -> list[str]:
    """The node container's command: the agent, with the catch-up watcher (when on) and the
    node exporter (``exporter``; one engine only, where each container has its own ports) beside it.

    The agent stays the container's main process (``exec``), so stop signals
    and the exit code are its own; what starts first ends with the container.
    ``api_port``: where the agent's API listens in the container. ``fenced`` (nodes on
    hosts): the agent starts only if the cluster has not given the node's name to another
    live address (``nodeside.fence``; a replaced node on a host that comes back stays out).
    """
    agent = ["dkron", "agent", "--config", CONFIG_PATH]
    api = LOCAL_API if spec.security.mutual_tls else f"http://127.0.0.1:{api_port}"
    # (module, its environment, how it starts: at once, or later and with a lower priority)
    beside: list[tuple[str, dict[str, str], str]] = []
    if spec.catch_up.enabled:
        settings = {
            "CATCHUP_API": api,
            "CATCHUP_WINDOW_S": f"{spec.catch_up.window_seconds:g}",
            "CATCHUP_STATE": CATCHUP_STATE,
        }
        beside.append(("nodeside.catchup", settings, ""))
    if exporter:
        # The exporter only answers scrapes. Started with the agent and the watcher, it took CPU
        # from both while a new leader took over on a 2-core machine, and the fault suite saw a
        # due time go without a run (2 runs of 2; none without it): it starts later, and niced.
        exporter_env = {"EXPORTER_API": api, "EXPORTER_PORT": str(EXPORTER_PORT)}
        beside.append(("nodeside.exporter", exporter_env, f"sleep {EXPORTER_DELAY_S} && exec nice -n 10"))
    if not beside and not fenced:
        return agent
    # Its own list (`;`): `fence && watcher &` would put the fence in the background with the watcher.
    fence = f"PYTHONPATH={CATCHUP_PACKAGE_DIR} python3 -m nodeside.fence || exit $?; " if fenced else ""
    started = " ".join(
        _in_background(
            " ".join(
                [
                    *(f"{k}={v}" for k, v in {**env, "PYTHONPATH": CATCHUP_PACKAGE_DIR}.items()),
                    "python3 -m",
                    module,
                ]
            ),
            prefix,
        )
        for module, env, prefix in beside
    )
    return ["sh", "-c", f"{fence}{started} exec {' '.join(agent)}"]


def node_environment(spec: ClusterSpec, encrypt_key: str | None) -> dict[str, str]:
    """The node's environment: the gossip key, when gossip is encrypted.

    Dkron reads every setting from `DKRON_<SETTING>` as well as from the file
    (viper with the `dkron` prefix), so the key needs no place in dkron.yml.
    """
    if not spec.dkron.gossip_encryption:
        return {}
    if not encrypt_key:
        raise ValueError(f"cluster {spec.name!r} has gossip_encryption on but no encrypt key was given")
    return {ENCRYPT_ENV: encrypt_key}
