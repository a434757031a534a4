"""Deploys the stack's Dkron cluster: read the config, build the cluster, export."""

import time
from pathlib import Path
from typing import Any

import pulumi

from components.addressing import AddressConflict, choose_subnet, recorded_subnet
from components.api_access import authorize
from components.cluster import (
    ClusterDataLost,
    DkronCluster,
    DkronClusterArgs,
    check_data_present,
    docker_subnets,
)
from components.config_errors import StackConfigError
from components.health import observe_live
from components.job_changes import job_changes, job_summary
from components.job_set import check_secret_env, declare_jobs, declared_bodies, live_jobs
from components.jobs import cluster_node_tags, load_job_settings, load_jobs, validate_jobs
from components.lost_hosts import host_lines, recorded_hosts, unreachable
from components.membership import UnsafeRemoval, check_removal_safe, removed_nodes
from components.node_config import bootstrap_plan
from components.placement import place_nodes
from components.rollout import IncompatibleVersionChange, check_version_change
from components.spec import load_cluster_spec
from components.update_plan import (
    HostsChange,
    check_hosts_change,
    observation_targets,
    plan_update,
    serf_endpoints,
)

PROJECT_ROOT = Path(__file__).resolve().parent


def previous_outputs(project: str, stack: str) -> dict[str, Any]:
    """This stack's outputs from its last update ({} for a new stack).

    Read synchronously through the engine, because they decide the shape of
    the resource graph (bootstrap mode, node configs, rollout order).
    """
    # The local backend rewrites the checkpoint as the update starts; a read
    # that lands mid-write sees a truncated file, so try again briefly.
    for attempt in range(10):
        try:
            result = pulumi.runtime.invoke(
                "pulumi:pulumi:readStackOutputs", {"name": f"organization/{project}/{stack}"}
            )
            break
        except Exception:
            if attempt == 9:
                raise
            time.sleep(0.2)
    outputs: dict[str, Any] = (result.value or {}).get("outputs") or {}
    return outputs


def ui_access(stack: str, api_urls: dict[str, str]) -> dict[str, Any]:
    """How a person gets at the UI (`make outputs`): every node serves it; HTTPS, the token as password."""
    access: dict[str, Any] = {
        "urls": {node: f"{url.partition('#')[0]}/ui/" for node, url in sorted(api_urls.items())},
        "login": f"any user name; the password is the stack's API token: make api-token STACK={stack}",
        "certificate": f"the stack's CA signs the nodes' certificates: make api-ca STACK={stack} > ca.pem,"
        " then trust ca.pem in the browser (or accept its warning once)",
    }
    if any("#" in url for url in api_urls.values()):
        access["ssh_hosts"] = (
            "a node on an ssh:// host serves its API on that host's loopback: forward the port first"
            " (ssh -L PORT:127.0.0.1:PORT to the host), then open its URL here"
        )
    return access


def main() -> None:
    stack, project = pulumi.get_stack(), pulumi.get_project()
    try:
        spec = load_cluster_spec(stack, pulumi.Config().get_object("cluster"))
        jobs = load_jobs(stack, spec.jobs, spec.job_files, PROJECT_ROOT)
        validate_jobs(stack, jobs, cluster_node_tags(spec), dkron_version=spec.image.dkron_version)
        check_secret_env(stack, jobs)
        job_settings = load_job_settings(stack, pulumi.Config().get_object("jobs"))
        previous = previous_outputs(project, stack)
        check_version_change(stack, spec, previous.get("dkron_version"))
        previous_nodes = previous.get("nodes") or {}
        check_hosts_change(stack, spec, previous_nodes)
        # On several hosts: each node's host, engine and ports there.
        placements = place_nodes(spec, previous_nodes, PROJECT_ROOT, stack=stack)
        plan = bootstrap_plan(spec, previous.get("bootstrap"), serf_endpoints(placements))
        check_data_present(stack, spec, plan, {n: p.engine for n, p in placements.items()})
        subnet = None
        if not placements:
            subnet = choose_subnet(
                stack,
                spec,
                recorded_subnet(previous.get("network")),
                docker_subnets(),
                deployed=bool(previous_nodes),
            )
        check_removal_safe(
            stack, list(previous_nodes), removed_nodes(previous_nodes, [n.name for n in spec.nodes])
        )
    except (
        StackConfigError,
        IncompatibleVersionChange,
        ClusterDataLost,
        UnsafeRemoval,
        AddressConflict,
        HostsChange,
    ) as err:
        # A RunError ends the program with the message alone, no traceback.
        raise pulumi.RunError(str(err)) from None

    # Hosts that do not answer: said once each, with what becomes of their nodes.
    recorded = recorded_hosts(previous_nodes)
    placement = {node.name: node.host for node in spec.nodes if node.host}
    not_answering = unreachable(recorded)
    for line in host_lines(spec.name, recorded, not_answering, spec.hosts, placement):
        pulumi.log.warn(line)

    # The cluster as the update finds it (who leads, who is down, which removed
    # nodes are dead), read live once: it decides the shape of the resource graph.
    api_urls, removed_urls = observation_targets(spec, previous_nodes, placements)
    # The credentials the last update recorded (its nodes' APIs want them), a secret output.
    authorize([*api_urls.values(), *removed_urls.values()], previous.get("api_auth"))
    live = observe_live(api_urls, removed_urls)
    # What happens to each job, said before the resource list (see `change_summary`).
    # A new cluster has no jobs yet; a deployed one is asked.
    in_dkron = live_jobs(list(api_urls.values())) if previous_nodes else {}
    changes = job_changes(declared_bodies(jobs), in_dkron, previous.get("jobs") or [])
    pulumi.log.info(job_summary(changes, stack, job_settings.prune_unmanaged))
    update = plan_update(spec, plan, previous_nodes, previous.get("removed") or {}, subnet, live, placements)
    cluster = DkronCluster(
        "dkron",
        DkronClusterArgs(
            spec=spec,
            plan=plan,
            update=update,
            project_root=PROJECT_ROOT,
            labels={"dkron-iac.project": project, "dkron-iac.stack": stack},
            previous_image=previous.get("image") or {},
            unreachable_hosts=frozenset(not_answering),
        ),
    )
    declare_jobs(
        jobs,
        list(cluster.api_urls.values()),
        cluster.ready,
        parent=cluster,
        prune_unmanaged=job_settings.prune_unmanaged,
        api_auth=cluster.api_auth,
    )

    pulumi.export("leader", cluster.leader)
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("bootstrap", cluster.bootstrap)
    pulumi.export("dkron_version", spec.image.dkron_version)
    pulumi.export("voters", cluster.voters)
    pulumi.export("network", cluster.network)
    pulumi.export("image", cluster.image)
    pulumi.export("removed", cluster.removed)
    pulumi.export("certificates", cluster.certificates)
    if cluster.api_auth is not None:
        # The token and CA a caller of the API needs (`make status`, `make api-token`): a secret.
        pulumi.export("api_auth", cluster.api_auth)
        pulumi.export("ui", ui_access(stack, cluster.api_urls))
    pulumi.export("jobs", sorted(job.name for job in jobs))
    if cluster.prometheus is not None:
        pulumi.export("prometheus", cluster.prometheus)
    if cluster.alertmanager is not None:
        pulumi.export("alertmanager", cluster.alertmanager)


main()
