"""The hand-run ways of making the same three-node cluster, as shell scripts.

- `blog_script`: the blog's `setup_cluster.sh`: node1 with
  `bootstrap-expect: 1`, nodes 2 and 3 with `bootstrap-expect: 3` and
  `retry-join` to all three, then node1 stopped, removed and started again
  with the regular config (on its data volume, as the blog's bind mount).
  The YAML is the blog's (`dkron_bootstrap.yml`, `dkron_server.yml`), so
  retry-join keeps Dkron's default 30 s interval.
- `raw_script`: `docker run` of the three containers the stack would make,
  all at once, each with the dkron.yml this project renders for it.

Both use the node image the stack built (run with `--entrypoint dkron`, which
works whether or not the image sets one), publish the API on loopback only
(the blog also publishes 8946 and 6868 on every interface, which nothing here
needs), and label every object so `remove` finds it even after a failure.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from bench import probes
from components.cluster import STOP_TIMEOUT_S, healthcheck
from components.docker_objects import engine
from components.node_config import (
    CONFIG_PATH,
    DATA_DIR,
    ENCRYPT_ENV,
    HTTP_PORT,
    SERF_PORT,
    bootstrap_plan,
    render_node_config,
)
from components.spec import ClusterSpec

NODE_NAMES = ("node1", "node2", "node3")


@dataclass(frozen=True)
class Baseline:
    """Names, ports and files of one hand-made cluster."""

    prefix: str  # unique: every Docker object's name starts with it
    image: str
    port_base: int
    workdir: Path
    label: str  # key=value put on every object

    @property
    def network(self) -> str:
        return f"{self.prefix}-net"

    def container(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def volume(self, node: str) -> str:
        return f"{self.prefix}-{node}-data"

    def api_urls(self) -> dict[str, str]:
        return {node: f"http://127.0.0.1:{self.port_base + i}" for i, node in enumerate(NODE_NAMES)}

    def port(self, node: str) -> int:
        return self.port_base + NODE_NAMES.index(node)

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        path.chmod(0o644)
        return path

    def preamble(self) -> list[str]:
        label = shlex.quote(self.label)
        lines = ["set -euo pipefail", f"docker network create --label {label} {self.network} >/dev/null"]
        lines += [f"docker volume create --label {label} {self.volume(n)} >/dev/null" for n in NODE_NAMES]
        return lines


def blog_script(b: Baseline, tags: dict[str, str]) -> str:
    """The blog's setup_cluster.sh, with its four steps in order and no waits."""
    join = [f"{b.container(n)}:{SERF_PORT}" for n in NODE_NAMES]
    common = {"server": True, "data-dir": DATA_DIR, "log-level": "info", "tags": tags}
    bootstrap = b.write("dkron_bootstrap.yml", yaml.safe_dump({**common, "bootstrap-expect": 1}))
    server = b.write(
        "dkron_server.yml", yaml.safe_dump({**common, "bootstrap-expect": 3, "retry-join": join})
    )

    def run(node: str, config: Path) -> str:
        return (
            # As root, as in the blog: the node image's own user cannot write a fresh volume.
            f"docker run -d --user 0:0 -p 127.0.0.1:{b.port(node)}:{HTTP_PORT} --name {b.container(node)}"
            f" --network {b.network} --label {shlex.quote(b.label)} -v {b.volume(node)}:{DATA_DIR}"
            f" -v {config}:{CONFIG_PATH}:ro --entrypoint dkron {b.image} agent --config {CONFIG_PATH}"
            f" --node-name={node} >/dev/null"
        )

    def replace(node: str) -> list[str]:
        # run_serverN.sh: stop and remove the old container (none yet for 2 and 3), start the new one.
        name = b.container(node)
        return [
            f"docker container stop {name} >/dev/null 2>&1 || true",
            f"docker container rm {name} >/dev/null 2>&1 || true",
            run(node, server),
        ]

    lines = b.preamble()
    lines.append(run("node1", bootstrap))  # bootstrap_server1.sh
    lines += replace("node2")  # run_server2.sh
    lines += replace("node3")  # run_server3.sh
    lines += replace("node1")  # run_server1.sh
    return "\n".join(lines) + "\n"


def raw_script(b: Baseline, tags: dict[str, str]) -> str:
    """The stack's three containers by hand, started all at once."""
    # Plain, like the blog's containers: no certificates or token to hand out by hand.
    spec = ClusterSpec.model_validate(
        {
            "name": b.prefix,
            "nodes": [{"name": n, "tags": tags} for n in NODE_NAMES],
            "security": {"mutual_tls": False},
        }
    )
    plan = bootstrap_plan(spec, None)
    key = base64.b64encode(os.urandom(32)).decode()
    health = shlex.join(cast(list[str], healthcheck()["test"]))
    lines = b.preamble()
    for node in spec.nodes:
        config = b.write(f"{node.name}.yml", render_node_config(spec, node, plan))
        lines.append(
            # Root, like the blog's: the stack's own volume-owner step is not part of a `docker run`.
            f"docker run -d --user 0:0 --name {b.container(node.name)} --hostname {node.name}"
            f" --network {b.network} --network-alias {node.name}"
            f" -p 127.0.0.1:{b.port(node.name)}:{HTTP_PORT} -v {b.volume(node.name)}:{DATA_DIR}"
            f" -v {config}:{CONFIG_PATH}:ro -e {ENCRYPT_ENV}={key} --restart unless-stopped --stop-timeout {STOP_TIMEOUT_S}"
            f" --health-cmd {shlex.quote(health)} --health-interval 5s --health-timeout 4s"
            f" --health-retries 3 --health-start-period 10s --label {shlex.quote(b.label)}"
            f" --entrypoint dkron {b.image} agent --config {CONFIG_PATH} >/dev/null &"
        )
        lines.append(f"pid_{node.name}=$!")
    lines += [f"wait $pid_{n}" for n in NODE_NAMES]
    return "\n".join(lines) + "\n"


def form(b: Baseline, script: str, timeout_s: float, stall_s: float) -> dict[str, Any]:
    """Run `script`, then wait until the cluster is whole; times from the script's start.

    A cluster that never becomes whole is reported with what was last seen
    (see `probes.wait_whole`), not raised: it is a result.
    """
    b.write("setup.sh", script)
    started = time.monotonic()
    done = subprocess.run(["bash", str(b.workdir / "setup.sh")], capture_output=True, text=True, check=False)
    script_s = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"baseline script failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    healthy, failure = probes.wait_whole(b.api_urls(), timeout_s, stall_s)
    result: dict[str, Any] = {
        "script_s": round(script_s, 2),
        "healthy_s": round(healthy - started, 2) if healthy else None,
        "not_whole": failure,
        "gave_up_after_s": None if healthy else round(time.monotonic() - started, 1),
    }
    if healthy:
        time.sleep(5)
        result["still_whole_5s_later"] = probes.whole(b.api_urls())
    leader = probes.agreed_leader(b.api_urls())
    with contextlib.suppress(Exception):
        result["raft_voters"] = probes.voters(b.container(leader)) if leader else []
    result["leader"] = leader
    return result


def remove(label: str, containers: Sequence[str] = ()) -> None:
    """Remove every container, network and volume carrying `label` (and the named containers)."""
    with engine() as client:
        found = {c.name: c for c in client.containers.list(all=True, filters={"label": label})}
        for name in containers:
            with contextlib.suppress(Exception):
                found.setdefault(name, client.containers.get(name))
        for container in found.values():
            with contextlib.suppress(Exception):
                container.remove(force=True)
        for network in client.networks.list(filters={"label": label}):
            with contextlib.suppress(Exception):
                network.remove()
        for volume in client.volumes.list(filters={"label": label}):
            with contextlib.suppress(Exception):
                volume.remove(force=True)
