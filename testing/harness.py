"""Real stacks of this project for integration tests.

Each `TestStack` is its own Pulumi stack (on the local backend `make test`
points at), with its own cluster name, and so its own container, network and
volume names, and its own free host ports. `close()` destroys it, removes the
stack and its config file, and then removes any Docker object that still
carries the stack's label, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import math
import random
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import yaml
from pulumi import automation as auto

from components import naming
from components.api_access import authorize_outputs
from components.dkron_client import DkronClient
from components.docker_objects import engine
from components.health import observe
from components.update_plan import recorded_container
from nodeside.catchup import CAUGHT_UP_EVENTS, parse_log

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
T = TypeVar("T")


def _setup_versions() -> dict[str, str]:
    """`toolchain/versions.env`: what `make setup` builds, under which names."""
    pairs = (
        line.split("=", 1)
        for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


# The only images tests may take for granted: `make setup` makes them. Any
# other image a test needs it builds itself and removes afterwards.
SETUP_VERSIONS = _setup_versions()
BASE_IMAGE = SETUP_VERSIONS["BASE_IMAGE"]
DKRON_IMAGE = SETUP_VERSIONS["DKRON_IMAGE"]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free TCP ports on 127.0.0.1."""
    # Stay below the kernel's range for outgoing connections' local ports.
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randint(20000, ephemeral_low - count - 1)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def derived_base_image(tag: str, extra_line: str) -> str:
    """A base image that differs from the default by one Dockerfile line (built here, never pulled)."""
    with engine() as client:
        dockerfile = f"FROM {BASE_IMAGE}\n{extra_line}\n".encode()
        client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, pull=False, rm=True)
    return tag


def write_image_context(root: Path, greeting: str) -> None:
    """A tiny build context: a Dockerfile from the setup base image copying
    `app/`, and a file outside the include list (`Dockerfile`, `app`)."""
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "hello.txt").write_text(greeting)
    (root / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY app/ /app/\n")
    (root / "not-in-context.txt").write_text("outside the include list\n")


def remove_image(tag: str) -> None:
    with engine() as client, contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag, force=True)


def preview_ops(preview: auto.PreviewResult) -> dict[str, int]:
    """The preview's resource operations that happen at least once (`same` included)."""
    return {str(getattr(op, "value", op)): count for op, count in preview.change_summary.items() if count}


def assert_previewed(preview: auto.PreviewResult, *lines: str) -> None:
    """The preview printed each of `lines` (the program's messages, such as the job summary,
    reach the Automation API on stderr; `make preview` joins the two)."""
    said = preview.stdout + preview.stderr
    for line in lines:
        assert line in said, f"{line!r} not in the preview:\n{said[-3000:]}"


def eventually(what: str, check: Callable[[], T | None], timeout_s: float = 60, poll_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # noqa: BLE001 - remembered and reported below
            last_error = err
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})")


class TestStack:
    """A throwaway stack of this project with a cluster of its own."""

    __test__ = False  # not a pytest test class

    def __init__(self, nodes: list[dict[str, Any]], **settings: Any) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.name = f"t{suffix}"
        self.cluster_name = f"t{suffix}"
        self.port_base = free_port_block(len(nodes) + 4)
        self.cluster: dict[str, Any] = {
            "name": self.cluster_name,
            "nodes": nodes,
            "ports": {"bind_address": "127.0.0.1", "api_port_base": self.port_base},
            # Tests replace nodes often: do not wait minutes for a broken one.
            "rollout": {"node_timeout_seconds": 120},
            **settings,
        }
        self.config_file = STACKS / f"Pulumi.{self.name}.yaml"
        self.project_config: dict[str, Any] = {}
        self._write_config()
        self.stack = auto.create_or_select_stack(stack_name=self.name, work_dir=str(ROOT))
        self.log: list[str] = []
        self.last_outputs: dict[str, Any] = {}
        # The config the last refreshed preview after `up` found nothing to change in.
        self._settled_config: str | None = None

    # --- config ------------------------------------------------------------
    def _write_config(self) -> None:
        existing: dict[str, Any] = {}
        if self.config_file.exists():
            existing = yaml.safe_load(self.config_file.read_text()) or {}
        config = existing.setdefault("config", {})
        config["dkron-cluster:cluster"] = self.cluster
        for key, value in self.project_config.items():
            if value is None:
                config.pop(f"dkron-cluster:{key}", None)
            else:
                config[f"dkron-cluster:{key}"] = value
        self.config_file.write_text(yaml.safe_dump(existing, sort_keys=False))

    def set_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Declare exactly `jobs` in the stack's `cluster.jobs`."""
        self.configure(lambda cluster: cluster.__setitem__("jobs", copy.deepcopy(jobs)))

    def set_project_config(self, key: str, value: Any) -> None:
        """Set (None: remove) a project config key besides `cluster`, e.g. `jobs`."""
        self.project_config[key] = value
        self._write_config()

    def configure(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Edit the cluster config the way a user edits the stack file."""
        change(self.cluster)
        self._write_config()

    # --- pulumi ------------------------------------------------------------
    def _echo(self, line: str) -> None:
        self.log.append(line)
        sys.stdout.write(line if line.endswith("\n") else line + "\n")

    def up(
        self, refresh: bool = True, expect_no_changes: bool = True, replace: list[str] | None = None
    ) -> dict[str, Any]:
        """`pulumi up` (replacing the resources of the URNs in `replace`); then, the first
        time the stack is deployed with its current config, `expect_no_changes`, unless the
        test says not to (it leaves the update unfinished on purpose, or checks later)."""
        try:
            result = self.stack.up(on_output=self._echo, refresh=refresh, replace=replace, color="never")
        except Exception:
            self.print_container_logs()
            raise
        self.last_outputs = {k: v.value for k, v in result.outputs.items()}
        authorize_outputs(self.last_outputs)
        if expect_no_changes and self._deployed_config() != self._settled_config:
            self.expect_no_changes()
        return self.last_outputs

    def _deployed_config(self) -> str:
        return yaml.safe_dump([self.cluster, self.project_config], sort_keys=True)

    def expect_no_changes(self) -> None:
        """A refreshed preview proposes no change: what a refresh reads back from Docker and
        Dkron is what the program declares, so the next `make up` does nothing."""
        started = time.monotonic()
        try:
            self.stack.preview(
                on_output=self._echo, refresh=True, expect_no_changes=True, diff=True, color="never"
            )
            self._echo(f"refreshed preview after up: no change ({time.monotonic() - started:.1f} s)")
            self._settled_config = self._deployed_config()
        except auto.CommandError as err:
            raise AssertionError(
                f"stack {self.name}: a refreshed preview right after `up` failed or proposes"
                " changes (its diff is above)"
            ) from err

    def urn(self, resource_type: str, name: str) -> str:
        """The URN of the stack's resource of that type (e.g. `DockerContainer`) and name."""
        resources = (self.stack.export_stack().deployment or {}).get("resources") or []
        [urn] = [
            r["urn"]
            for r in resources
            if r["type"].endswith(f":{resource_type}") and r["urn"].endswith(f"::{name}")
        ]
        return str(urn)

    def print_container_logs(self, lines: int = 25) -> None:
        """The tail of every node's log, to explain a failed update."""
        with engine() as client:
            for container in client.containers.list(
                all=True, filters={"label": f"dkron-iac.stack={self.name}"}
            ):
                tail = container.logs(tail=lines).decode(errors="replace")
                sys.stdout.write(f"--- {container.name} ({container.status}) ---\n{tail}\n")

    def preview(self) -> auto.PreviewResult:
        return self.stack.preview(on_output=self._echo, diff=True, color="never")

    def export_as_user(self) -> str:
        """`pulumi stack export` as a user runs it: secrets stay ciphertext (the
        Automation API's export adds --show-secrets and decrypts them)."""
        return subprocess.run(
            ["pulumi", "stack", "export", "--stack", self.name],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def outputs(self) -> dict[str, Any]:
        outputs = {k: v.value for k, v in self.stack.outputs().items()}
        authorize_outputs(outputs)
        return outputs

    # --- the cluster ---------------------------------------------------------
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.cluster["nodes"]]

    def api_url(self, node: str) -> str:
        """The node's API as the last update published it (ports stay with nodes)."""
        known = (self.last_outputs.get("nodes") or {}).get(node)
        if known:
            return str(known["api_url"])
        index = self.node_names().index(node)
        return f"http://127.0.0.1:{self.port_base + index}"

    def client(self, node: str) -> DkronClient:
        return DkronClient(self.api_url(node))

    def leader_name(self) -> str | None:
        """The leader as the first node that answers names it (None: no leader, or none answers)."""
        for node in self.node_names():
            with contextlib.suppress(Exception), DkronClient(self.api_url(node), timeout_s=2) as client:
                leader = client.leader()
                return str(leader["Name"]) if leader else None
        return None

    def problems(self) -> list[str]:
        """What keeps the deployed cluster from being whole, read live from its nodes ([]: whole)."""
        recorded = self.outputs()["nodes"]
        api = {n: self.api_url(n) for n in self.node_names()}
        containers = {n: recorded_container(recorded[n]) for n in self.node_names()}
        return observe(api, containers).problems(self.node_names())

    def container(self, node: str) -> str:
        return naming.container_name(self.cluster_name, node)

    def remove_containers(self, nodes: list[str] | None = None) -> None:
        """Force-remove the containers of `nodes` (every node by default), as if lost."""
        with engine() as client:
            for node in self.node_names() if nodes is None else nodes:
                client.containers.get(self.container(node)).remove(force=True)

    def docker_objects(self) -> dict[str, list[str]]:
        """Names of every container, network and volume labelled with this stack."""
        return docker_objects(self.name)

    # --- teardown ------------------------------------------------------------
    def destroy(self) -> None:
        self.stack.destroy(on_output=self._echo, color="never")

    def close(self) -> None:
        discard_stack(self.name, self.cluster_name, on_output=self._echo)


def docker_objects(stack_name: str) -> dict[str, list[str]]:
    """Names of every container, network and volume labelled with stack `stack_name`."""
    label = f"dkron-iac.stack={stack_name}"
    with engine() as client:
        return {
            "containers": [c.name for c in client.containers.list(all=True, filters={"label": label})],
            "networks": [n.name for n in client.networks.list(filters={"label": label})],
            "volumes": [v.name for v in client.volumes.list(filters={"label": label})],
        }


def discard_stack(name: str, cluster_name: str, on_output: Callable[[str], Any] | None = None) -> None:
    """Destroy stack `name`, remove it and its config file, then every Docker object labelled with it.

    Each step runs even if the one before failed, or if the stack was never
    created, so a failed test leaves nothing behind.
    """
    # A test that killed an update leaves its lock, which would refuse the destroy.
    subprocess.run([sys.executable, str(ROOT / "scripts" / "stale_locks.py"), name], check=False)
    with contextlib.suppress(Exception):
        stack = auto.select_stack(stack_name=name, work_dir=str(ROOT))
        with contextlib.suppress(Exception):
            stack.destroy(on_output=on_output, color="never")
        stack.workspace.remove_stack(name, force=True)
    (STACKS / f"Pulumi.{name}.yaml").unlink(missing_ok=True)
    _remove_docker_objects(name, cluster_name)


def _remove_docker_objects(stack_name: str, cluster_name: str) -> None:
    label = f"dkron-iac.stack={stack_name}"
    with engine() as client:
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": label}):
            network.remove()
        for volume in client.volumes.list(filters={"label": label}):
            volume.remove(force=True)
        # Node and Prometheus images carry the stack's labels, so no other stack shares one;
        # a tag someone else put on one (the benchmarks do) keeps it.
        ours = (
            naming.image_repository(cluster_name),
            naming.prometheus_image_repository(cluster_name),
            naming.alertmanager_image_repository(cluster_name),
        )
        for image in client.images.list(filters={"label": label}):
            for tag in image.tags:
                if tag.startswith(tuple(f"{repository}:" for repository in ours)):
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(tag)
            with contextlib.suppress(docker.errors.APIError):
                image.reload()
                if not image.tags:
                    client.images.remove(image.id)


@contextlib.contextmanager
def test_stack(nodes: list[dict[str, Any]], **settings: Any) -> Iterator[TestStack]:
    stack = TestStack(nodes, **settings)
    try:
        yield stack
    finally:
        stack.close()


def project_at(commit: str, into: Path) -> Path:
    """The project as it was at `commit` (from git), runnable with this checkout's virtualenv:
    deploy a stack with it to test that this code takes over what earlier code left."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


def has_commit(commit: str) -> bool:
    """Whether this checkout has `commit` (a shallow clone may lack it)."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
    return found.returncode == 0


# --- jobs made by hand ----------------------------------------------------------------------

BY_HAND_WORKERS = 16
"""Parallel requests when making jobs by hand, as a user's script would (5,000 jobs in about 9 s)."""


def hand_made_jobs(count: int, prefix: str = "k", schedule: str = "@every 24h") -> list[dict[str, Any]]:
    """`count` jobs as a user makes them through Dkron's API, a shell `true` each. Not `@hourly`
    by default: thousands of jobs all due at the top of the hour would load the machine."""
    return [
        {
            "name": f"{prefix}{i:05d}",
            "schedule": schedule,
            "executor": "shell",
            "executor_config": {"command": "true"},
        }
        for i in range(count)
    ]


def make_by_hand(api_url: str, jobs: list[dict[str, Any]]) -> None:
    """POST `jobs` straight to Dkron's API, `BY_HAND_WORKERS` at a time, outside any stack."""
    _by_hand(api_url, jobs, lambda client, job: client.upsert_job(job))


def delete_by_hand(api_url: str, names: list[str]) -> None:
    """DELETE the jobs `names` through Dkron's API, as many at a time as `make_by_hand` makes them."""
    _by_hand(api_url, names, lambda client, name: client.delete_job(name))


def _by_hand(api_url: str, items: list[T], call: Callable[[DkronClient, T], Any]) -> None:
    def one_worker(chunk: list[T]) -> None:
        with DkronClient(api_url, timeout_s=30) as client:
            for item in chunk:
                call(client, item)

    chunks = [items[i::BY_HAND_WORKERS] for i in range(BY_HAND_WORKERS)]
    with ThreadPoolExecutor(max_workers=BY_HAND_WORKERS) as pool:
        list(pool.map(one_worker, chunks))


def register_jobs(client: DkronClient, jobs: list[dict[str, Any]]) -> None:
    """Create or update each job through the API, in order, retried while a leader settles:
    right after forming, leadership may still move, and the node asked refuses writes."""
    for job in jobs:

        def register(job: dict[str, Any] = job) -> bool:
            client.upsert_job(job)
            return True

        eventually(f"job {job['name']} registered", register, 30)


# --- catch-up ------------------------------------------------------------------------------


def tick_job(every: str = "2s", command: str = "echo tick", **fields: Any) -> dict[str, Any]:
    """The job the scheduling tests count runs of: `tick`, due `@every` ``every`` on one server."""
    return {
        "name": "tick",
        "schedule": f"@every {every}",
        "tags": {"server": "true:1"},
        "executor": "shell",
        "executor_config": {"command": command},
        **fields,
    }


def watcher_lines(containers: list[str], since: float, engine_ref: str | None = None) -> list[dict[str, Any]]:
    """What the catch-up watchers logged since ``since`` in these containers (gone ones are skipped)."""
    lines: list[dict[str, Any]] = []
    with engine(engine_ref) as client:
        for name in containers:
            with contextlib.suppress(docker.errors.NotFound):
                text = client.containers.get(name).logs(since=int(since)).decode(errors="replace")
                lines += [
                    {"container": name, **line} for line in parse_log(text) if line["event"] != "watching"
                ]
    return lines


def caught_up_starts(lines: list[dict[str, Any]], job: str) -> list[float]:
    """When the watchers started a catch-up run of ``job`` (Unix time)."""
    return [
        datetime.fromisoformat(str(line["started"])).timestamp()
        for line in lines
        if line["event"] in CAUGHT_UP_EVENTS and line.get("job") == job and line.get("started")
    ]


def missed_due_times(starts: list[float], every_s: float, caught_up: list[float]) -> int:
    """Due times of an `@every` job that no run served.

    Each run makes the next one due ``every_s`` later (Dkron stores it as the
    job's ``next``); a run that starts later than that serves it late, but a
    gap of two intervals or more between runs left due times with no run,
    unless a catch-up (``caught_up``: when a watcher started one) ends the gap
    or comes within an interval after it (one the new leader's first run left
    no room for is started half an interval after that run): it serves the
    outage's due times at once.
    """
    missed = 0
    for earlier, later in itertools.pairwise(sorted(starts)):
        if not any(-1.5 < c - later <= every_s for c in caught_up):
            missed += max(0, math.floor((later - earlier) / every_s) - 1)
    return missed
