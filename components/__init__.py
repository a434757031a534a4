"""The program's parts. `__main__.py` reads the stack config into a spec,
observes the live cluster, plans the update, and declares one `DkronCluster`
and the jobs. Each module in a line, grouped as the tree is:

Config (validated before anything is touched)
- `spec.py`: the stack's `cluster` config as frozen pydantic models (hosts included).
- `config_errors.py`: `StackConfigError` and the one way a problem is worded.
- `naming.py`: the Docker names of a cluster's objects.

Planning (pure: data in, data out)
- `update_plan.py`: rolling or not, the order, the removals, what each gate waits for.
- `node_config.py`: each node's `dkron.yml`, its environment, the bootstrap settings.
- `ports.py`, `addressing.py`: API ports and network addresses that stay with a node.
- `placement.py`: on several hosts, each node's host, engine and Serf/gRPC ports there.
- `change_summary.py`: the preview's node-by-node lines.
- `privilege.py`: who each node runs as (the image's user, or root by opt-in) and its container's limits.

The cluster
- `cluster.py`: `DkronCluster`, which declares the resources of a plan.
- `gossip_key.py`: the stack's gossip key, made once, kept secret.
- `pki.py`: the stack's CA and node certificates as PEM text (pure).
- `certificates.py`: the CA, made once, and each node's certificate, renewed before it ends; keys secret.
- `transport.py`: the one-step move between plain RPC and mutual TLS (every node stopped at once).

Cluster health and gates
- `health.py`: what "whole" means; observing the cluster and waiting for it.
- `rollout.py`: the gate after each replaced node; version-change rules.
- `membership.py`: nodes leaving, dead Raft peers removed, voters kept equal to the config.
- `lost_hosts.py`: hosts whose engine does not answer, and what an update does with their nodes.
- `status.py`: `make status`: the live cluster read from the nodes, judged healthy, degraded or broken.
- `prometheus.py`: the bundled Prometheus server's scrape config and alert rules.

Docker resources
- `docker_objects/`: one dynamic provider per Docker object (network, volume,
  image, container), the build context, property normalisation, and
  `engine()`, the one way to reach a Docker engine (local, `unix://`, `tcp://`
  with TLS, `ssh://` through our own ssh), engine refs and container locators.
- `docker_resources.py`: the old module path, kept for states that pickled it.
- `tunnels.py`: `ApiTunnels`, the SSH forwards to node APIs on ssh:// hosts, kept up.
- `api_access.py`: `reach`, which opens the tunnel an API URL names on first use.
- `provider_values.py`: unknown and scalar values as every provider compares them.

Dkron jobs
- `dkron_client.py`: the one client of Dkron's REST API.
- `jobs/`: schedules, the job spec, loading jobs from config and files, the API payload.
- `job_provider.py`: `DkronJob`, the dynamic provider over the REST API.
- `job_set.py`: the stack's jobs declared once the cluster is ready.
"""
