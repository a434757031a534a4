"""The benchmark: every figure measured in the same run as the baseline it is compared with.

Throwaway stacks (`TestStack`s, so they clean up after themselves) carry the
run; the hand-made baselines get their own names, ports and labels. Forming
the cluster is measured in interleaved rounds (pulumi, blog script, raw
`docker run`); the stack of the last round then serves everything else, in an
order that keeps state changes few: no-change runs and memory with 0 jobs,
100 jobs (REST loop, then `pulumi up`), no-change runs and memory with 100,
500 jobs and memory, then rolling updates and leader failovers with small
jobs running. Last, with that stack gone, the same cluster on three hosts of a
lab made for the run (`testing.lab`: network namespaces with their own dockerd
and sshd, engines reached over `ssh://`): forming it, rolling updates across
the hosts, and losing the leader's whole host, each against its one-engine
counterpart above. The lab is always brought down, also after a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import docker
import yaml
from pulumi.automation import EngineEvent

from bench import baselines, probes, report
from components import naming
from components.api_access import authorize_outputs
from components.dkron_client import DkronClient
from components.docker_objects import engine
from components.health import observe
from testing.harness import (
    ROOT,
    SETUP_VERSIONS,
    TestStack,
    _remove_docker_objects,
    caught_up_starts,
    delete_by_hand,
    free_port_block,
    hand_made_jobs,
    make_by_hand,
    missed_due_times,
    watcher_lines,
)
from testing.lab import Lab
from testing.soak import Soak, soak_cluster

TAGS = {"python": "daily"}
NODES = [{"name": name, "tags": dict(TAGS)} for name in baselines.NODE_NAMES]
FORMATIONS = 5  # rounds of (pulumi up, blog script, raw docker run)
RUNS = 3  # no-change preview/up repetitions
ROLLOUTS = 3  # rolling updates, each to a new base image
FAILOVERS = 5  # leader kills
FORM_TIMEOUT_S = 90  # covers the blog config's 30 s retry-join interval twice
QUIET_S = 20  # a window without changes before the rolling updates: the runs' own baseline
STALL_S = 30  # leaderless but fully connected this long: it will not form (see probes.wait_whole)
BENCH_LABEL = "dkron-iac.bench"  # on the run's own images; its value starts with the run's prefix
LAB_PREFIX = "dkb"  # the run's lab of hosts: its own names and subnet (the tests use others)
LAB_SUBNET = "10.213.90.0/24"
PLACEMENT = {"node1": "h1", "node2": "h2", "node3": "h3"}
HOST_ROLLOUTS = 3  # rolling updates across the hosts: dkron.log_level to debug and back
HOST_LOSSES = FAILOVERS  # the leader's whole host stopped
BY_HAND = 5000  # jobs made through Dkron's API, beside the stack's own (issue 31)
TLS_ROUNDS = 4  # rounds of (a stack without mutual TLS, one with it), the order swapped each round
TLS_JOBS = 500  # jobs each of those stacks registers by `pulumi up`
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"

TICK = {  # runs through the rolling updates
    "name": "bench-tick",
    "schedule": "@every 2s",
    "tags": {"server": "true:1"},
    "executor": "shell",
    "executor_config": {"command": "true"},
}
TICK_EVERY_S = 2.0
BEAT = {**TICK, "name": "bench-beat", "schedule": "@every 1s"}  # runs through the failovers
BEAT_EVERY_S = 1.0


def bulk_jobs(prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` small jobs that never run during the benchmark."""
    return [
        {
            "name": f"{prefix}-{i:03d}",
            "schedule": "@every 24h",
            "executor": "shell",
            "executor_config": {"command": "true"},
        }
        for i in range(count)
    ]


class StepTimes:
    """When each resource step of an update started and ended (engine events, as received)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.steps: dict[str, dict[str, Any]] = {}

    def __call__(self, event: EngineEvent) -> None:
        now = time.monotonic() - self.t0
        for kind, payload in (("start", event.resource_pre_event), ("end", event.res_outputs_event)):
            if payload is not None:
                meta = payload.metadata
                step = self.steps.setdefault(meta.urn, {"type": meta.type.rsplit(":", 1)[-1]})
                # A replacement is two steps of one URN: from the first start to the last end.
                if kind == "start":
                    step.setdefault(kind, now)
                else:
                    step[kind] = now

    def span(self, *types: str) -> tuple[float, float] | None:
        """From the first start to the last end of the steps of these resource types."""
        steps = [s for s in self.steps.values() if s["type"] in types and "start" in s and "end" in s]
        if not steps:
            return None
        return min(s["start"] for s in steps), max(s["end"] for s in steps)


class BenchStack(TestStack):
    """A TestStack whose Pulumi output goes to a log file, with timed operations."""

    def __init__(self, nodes: list[dict[str, Any]], log: TextIO, **settings: Any) -> None:
        self._log_file = log
        super().__init__(nodes, **settings)

    def _echo(self, line: str) -> None:
        self._log_file.write(line if line.endswith("\n") else line + "\n")

    def timed_up(self, refresh: bool = True, steps: StepTimes | None = None) -> tuple[float, dict[str, int]]:
        """`pulumi up` (with `--refresh` by default, as `make up`): seconds and changes."""
        self._log_file.write(f"\n=== {self.name}: pulumi up (refresh={refresh}) ===\n")
        started = time.monotonic()
        if steps is not None:
            steps.t0 = started
        try:
            result = self.stack.up(on_output=self._echo, on_event=steps, refresh=refresh, color="never")
        except Exception:
            self.print_container_logs()
            raise
        took = time.monotonic() - started
        self.last_outputs = {k: v.value for k, v in result.outputs.items()}
        authorize_outputs(self.last_outputs)
        return took, _ops(result.summary.resource_changes)

    def timed_preview(self) -> tuple[float, dict[str, int]]:
        self._log_file.write(f"\n=== {self.name}: pulumi preview ===\n")
        started = time.monotonic()
        result = self.preview()
        return time.monotonic() - started, _ops(result.change_summary)

    def api_urls(self) -> dict[str, str]:
        return {n: self.api_url(n) for n in self.node_names()}

    def containers(self) -> dict[str, str]:
        return {n: self.container(n) for n in self.node_names()}

    def set_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Declare `jobs` in a job file, as a stack with hundreds of jobs does (`cluster.job_files`):
        inline in the stack config, 2,000 jobs pass Linux's 128 KiB limit on one environment value."""
        path = Path(tempfile.gettempdir()) / f"dkron-iac-{self.name}-jobs.yaml"
        path.write_text(yaml.safe_dump({"jobs": jobs}, sort_keys=False))
        self.configure(lambda c: c.update(jobs=[], job_files=[str(path)] if jobs else []))


def _ops(summary: Any) -> dict[str, int]:
    """A change summary keyed by plain operation names (`create`, `same`, ...)."""
    return {str(getattr(op, "value", op)): int(n) for op, n in (summary or {}).items()}


def changed(changes: dict[str, int]) -> dict[str, int]:
    """The operations other than `same` in a change summary."""
    return {op: n for op, n in changes.items() if op != "same" and n}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def median(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def missed_runs(seconds: float, seen: int, every_s: float = 2.0) -> dict[str, float]:
    """Runs a job `@every <every_s>` should have started in `seconds`, and how many of those were missed."""
    expected = seconds / every_s
    return {"expected_runs": round(expected, 2), "missed": round(max(expected - seen, 0.0), 2)}


def summed_runs(windows: list[dict[str, Any]]) -> dict[str, float]:
    """Expected, seen and missed runs over several windows (expected is summed before subtracting)."""
    expected = sum(w["expected_runs"] for w in windows)
    seen = sum(w["runs"] for w in windows)
    return {"expected_runs": round(expected, 1), "runs": seen, "missed": round(max(expected - seen, 0.0), 1)}


def rollout_steps(events: list[dict[str, Any]], finished: float) -> list[dict[str, Any]]:
    """Per replaced node: its step, how long its old container took to stop, and its downtime.

    A node's step runs from its container being stopped to the next node's
    being stopped (or the end of the update); its downtime from the old
    container dying to the new one starting.
    """
    steps: dict[str, dict[str, Any]] = {}
    for event in events:
        node, action, t = event["node"], event["action"], event["t"]
        step = steps.get(node) if node else None
        if node and step is None and action in ("kill", "stop", "die"):
            steps[node] = step = {"node": node, "start": t}
        if step is None:
            continue
        if action == "die":
            step.setdefault("died", t)
        elif action == "start":
            step.setdefault("started", t)
    ordered = sorted(steps.values(), key=lambda s: s["start"])
    for step, following in zip(ordered, [*ordered[1:], None], strict=True):
        step["end"] = following["start"] if following else finished
        step["step_s"] = round(step["end"] - step["start"], 2)
        died, started = step.pop("died", None), step.pop("started", None)
        step["stopping_s"] = round(died - step["start"], 2) if died else None
        step["down_s"] = round(started - died, 2) if died and started else None
    return ordered


class Bench:
    """One run: its prefix, its stacks, its results, and what must be removed at the end."""

    def __init__(self) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"
        self.started = time.monotonic()
        self.log_path = Path(tempfile.gettempdir()) / f"dkron-iac-{self.prefix}.log"
        self.log = self.log_path.open("w", buffering=1)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.results: dict[str, Any] = {"errors": {}}
        self.stack: BenchStack | None = None  # the one every section after formation uses
        self.open_stacks: list[BenchStack] = []
        self.labels: list[str] = []
        self.images: list[str] = []
        self.dockerd_pid = _root_dockerd()  # a change means the engine was restarted
        self.lab: Lab | None = None  # set before it is brought up, so cleanup always brings it down
        self.hosts_stack: BenchStack | None = None

    # --- bookkeeping -----------------------------------------------------------------
    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:6.0f}s] {text}", flush=True)
        self.log.write(f"[bench {elapsed:.0f}s] {text}\n")

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[dict[str, Any]]:
        """Run one measurement; a failure is recorded and the run goes on."""
        self.say(f"{name}: start")
        data: dict[str, Any] = self.results.setdefault(name, {})
        started = time.monotonic()
        try:
            yield data
        except Exception as err:  # noqa: BLE001 - recorded in the report; the run goes on
            self.results["errors"][name] = f"{type(err).__name__}: {str(err)[:600]}"
            self.log.write(traceback.format_exc())
            self.say(f"{name}: FAILED: {type(err).__name__}: {str(err)[:300]}")
        finally:
            data["section_s"] = round(time.monotonic() - started, 1)
            self.say(f"{name}: done in {data['section_s']}s")

    def new_stack(self) -> BenchStack:
        stack = BenchStack(NODES, self.log)
        self.open_stacks.append(stack)
        return stack

    def close_stack(self, stack: BenchStack) -> None:
        self.say(f"closing stack {stack.name}")
        stack.close()
        self.open_stacks.remove(stack)

    def cleanup(self) -> None:
        self.say("cleanup")
        # Other work on this machine may restart the Docker engine: wait for it to answer.
        if probes.wait_until(probes.docker_answers, 180, poll_s=2) is None:
            self.say("cleanup: the Docker engine does not answer; trying anyway")
        if self.hosts_stack is not None:
            with contextlib.suppress(Exception):
                self.close_hosts_stack()
        for stack in list(self.open_stacks):
            with contextlib.suppress(Exception):
                self.close_stack(stack)
        if self.lab is not None:
            with contextlib.suppress(Exception):
                self.lab_down()
        for label in self.labels:
            with contextlib.suppress(Exception):
                baselines.remove(label)
        with engine() as client:
            for tag in self.images:
                # By tag, never by ID: the node image is shared with the stacks' own tags.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)
            # Node images built on this run's base images inherit its label; a rolling
            # update leaves the previous one behind untagged (still in use when replaced).
            for _ in range(5):
                ours = [
                    image
                    for image in client.images.list(filters={"label": BENCH_LABEL})
                    if str(image.labels.get(BENCH_LABEL, "")).startswith(self.prefix)
                ]
                for image in ours:
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(image.id)
                if not ours:
                    break
        for path in sorted(self.workdir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        self.workdir.rmdir()

    def lab_down(self) -> None:
        if self.lab is None:
            return
        self.say(f"bringing lab {self.lab.prefix} down")
        took = self.lab.down()
        self.results.setdefault("hosts_formation", {})["lab_down_s"] = round(took, 1)
        leftovers = self.lab.leftovers()
        if leftovers:
            self.say(f"lab {self.lab.prefix}: left behind: {leftovers}")
        self.lab = None

    def close_hosts_stack(self) -> None:
        """Forget the hosts stack without `pulumi destroy`: its Docker objects live on the lab's
        engines, which `lab_down` removes whole (a destroy would wait on a host that is down)."""
        stack = self.hosts_stack
        if stack is None:
            return
        self.say(f"closing hosts stack {stack.name}")
        self.hosts_stack = None
        with contextlib.suppress(Exception):
            stack.stack.workspace.remove_stack(stack.name, force=True)
        stack.config_file.unlink(missing_ok=True)
        _remove_docker_objects(stack.name, stack.cluster_name)  # its node images on this engine

    @property
    def s(self) -> BenchStack:
        assert self.stack is not None
        return self.stack

    # --- the sections --------------------------------------------------------------------
    def machine(self) -> dict[str, Any]:
        with engine() as client:
            version, info = client.version(), client.info()
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "cpu": _field("/proc/cpuinfo", "model name", ":") or platform.processor(),
            "memory_gib": round(int(_field("/proc/meminfo", "MemTotal", ":").split()[0]) / 2**20, 1),
            "os": _field("/etc/os-release", "PRETTY_NAME", "=").strip('"') or platform.system(),
            "kernel": platform.release(),
            "docker_engine": f"{version.get('Version')} (API {version.get('ApiVersion')})",
            "docker_storage": f"{info.get('Driver')}, cgroup v{info.get('CgroupVersion', '1')}",
            "pulumi_cli": _command(["pulumi", "version"]),
            "pulumi_python_sdk": metadata.version("pulumi"),
            "python": platform.python_version(),
            "git_commit": _command(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "git_tree_dirty": bool(
                _command(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain"])
            ),
            "load_average_at_start": _load(),
            "other_running_containers_at_start": probes.other_containers([self.prefix]),
        }

    def formation(self, data: dict[str, Any]) -> None:
        """Empty to a whole cluster: `pulumi up` versus the blog's procedure and raw `docker run`.

        Rounds interleave the three; the first round runs pulumi first (its
        image is the baselines' image), later rounds run it last, so no
        stack is running while a baseline is timed except in the last round,
        whose stack is kept for the rest of the run.
        """
        image = naming.image_tag(self.prefix, SETUP_VERSIONS["DKRON_VERSION"])
        rounds: list[dict[str, Any]] = []
        data["rounds"] = rounds
        for number in range(1, FORMATIONS + 1):
            this: dict[str, Any] = {}
            rounds.append(this)
            if number == 1:
                this["pulumi"] = self._form_with_pulumi(keep=False, tag_image=image)
            for name in ("blog_script", "raw_docker_run"):
                self.say(f"formation round {number}: {name}")
                this[name] = self._form_by_hand(name, number, image)
            if number > 1:
                this["pulumi"] = self._form_with_pulumi(keep=number == FORMATIONS)
            self.say(f"formation round {number}: {_brief(this)}")

        def med(method: str, key: str) -> float | None:
            return median([r.get(method, {}).get(key) for r in rounds])

        def formed(method: str) -> str:
            key = "up_s" if method == "pulumi" else "healthy_s"
            done = sum(1 for r in rounds if r.get(method, {}).get(key) is not None)
            return f"{done} of {len(rounds)}"

        summary: dict[str, Any] = {
            "formed": {method: formed(method) for method in ("pulumi", "blog_script", "raw_docker_run")},
            "pulumi_up_s": med("pulumi", "up_s"),
            "pulumi_first_whole_s": med("pulumi", "first_whole_s"),
            "blog_script_s": med("blog_script", "healthy_s"),
            "raw_docker_run_s": med("raw_docker_run", "healthy_s"),
            "pulumi_phases_s": {
                phase: med_phase
                for phase in ("program_start", "image_build", "nodes_and_gates", "after_last_gate")
                if (med_phase := median([r["pulumi"].get("phases", {}).get(phase) for r in rounds]))
                is not None
            },
        }
        summary["ratios"] = {
            "pulumi_up_vs_blog_script": ratio(summary["pulumi_up_s"], summary["blog_script_s"]),
            "pulumi_up_vs_raw_docker_run": ratio(summary["pulumi_up_s"], summary["raw_docker_run_s"]),
            "pulumi_first_whole_vs_blog_script": ratio(
                summary["pulumi_first_whole_s"], summary["blog_script_s"]
            ),
            "pulumi_first_whole_vs_raw_docker_run": ratio(
                summary["pulumi_first_whole_s"], summary["raw_docker_run_s"]
            ),
        }
        data["median"] = summary

    def _form_with_pulumi(self, keep: bool, tag_image: str | None = None) -> dict[str, Any]:
        stack = self.new_stack()
        try:
            steps = StepTimes()
            with probes.HealthWatcher(stack.api_urls()) as watcher:
                took, changes = stack.timed_up(steps=steps)
            first_whole = watcher.first_whole - steps.t0 if watcher.first_whole else None
            image, nodes, top = (
                steps.span("DockerImage"),
                steps.span("DockerContainer", "NodeGate"),
                steps.span("Stack"),
            )
            result: dict[str, Any] = {
                "stack": stack.name,
                "up_s": round(took, 2),
                "first_whole_s": round(first_whole, 2) if first_whole else None,
                "created": changes.get("create"),
                "leader": stack.last_outputs.get("leader"),
                "raft_voters": stack.last_outputs.get("voters"),
                "phases": {
                    "program_start": round(top[0], 2) if top else None,
                    "image_build": round(image[1] - image[0], 2) if image else None,
                    "nodes_and_gates": round(nodes[1] - nodes[0], 2) if nodes else None,
                    "after_last_gate": round(took - nodes[1], 2) if nodes else None,
                },
            }
            if "dkron" not in self.results["machine"]:
                with DkronClient(stack.api_url("node1")) as client:
                    self.results["machine"]["dkron"] = client.agent().get("agent", {}).get("version")
            if tag_image:
                with engine() as client:
                    self.images.append(tag_image)
                    client.images.get(
                        naming.image_tag(stack.cluster_name, SETUP_VERSIONS["DKRON_VERSION"])
                    ).tag(tag_image)
        finally:
            if keep:
                self.stack = stack
            else:
                self.close_stack(stack)
        return result

    def _form_by_hand(self, name: str, number: int, image: str) -> dict[str, Any]:
        prefix = f"{self.prefix}-{'sh' if name == 'blog_script' else 'raw'}{number}"
        label = f"{BENCH_LABEL}={prefix}"
        self.labels.append(label)
        workdir = self.workdir / prefix
        workdir.mkdir()
        baseline = baselines.Baseline(prefix, image, free_port_block(4), workdir, label)
        script = baselines.blog_script if name == "blog_script" else baselines.raw_script
        try:
            return baselines.form(baseline, script(baseline, TAGS), FORM_TIMEOUT_S, STALL_S)
        finally:
            baselines.remove(label)

    def no_change(self, data: dict[str, Any], jobs: int) -> None:
        """No-change preview, `up --refresh` (as `make up`) and plain `up`, median of RUNS."""
        times: dict[str, list[float]] = {"preview": [], "up_refresh": [], "up": []}
        unexpected: list[dict[str, Any]] = []
        for _ in range(RUNS):
            for kind in times:
                if kind == "preview":
                    took, changes = self.s.timed_preview()
                else:
                    took, changes = self.s.timed_up(refresh=kind == "up_refresh")
                times[kind].append(round(took, 2))
                if changed(changes):
                    unexpected.append({"kind": kind, **changed(changes)})
        data.update(
            jobs=jobs,
            runs=times,
            median_s={kind: median(values) for kind, values in times.items()},
            unexpected_changes=unexpected,
        )

    def memory(self, data: dict[str, Any], jobs: int) -> None:
        """Memory of each node at rest (after a quiet pause)."""
        time.sleep(10)
        with DkronClient(self.s.api_url("node1")) as client:
            live = len(client.list_jobs())
        data.update(
            jobs_declared=jobs, jobs_live=live, mib=probes.memory_mib(list(self.s.containers().values()))
        )

    def registration(self, data: dict[str, Any], count: int) -> None:
        """`count` jobs by a plain REST loop (then deleted), then the same number by `pulumi up`."""
        with DkronClient(self.s.api_url("node1"), timeout_s=30) as client:
            jobs = bulk_jobs("rest", count)
            started = time.monotonic()
            for job in jobs:
                client.upsert_job(job)
            rest_s = time.monotonic() - started
            started = time.monotonic()
            for job in jobs:
                client.delete_job(job["name"])
            rest_delete_s = time.monotonic() - started
        self.s.set_jobs(bulk_jobs("job", count))
        up_s, changes = self.s.timed_up()
        data.update(
            jobs=count,
            rest_loop_s=round(rest_s, 2),
            rest_delete_loop_s=round(rest_delete_s, 2),
            pulumi_up_s=round(up_s, 2),
            pulumi_changes=changed(changes),
            ratio_pulumi_vs_rest=ratio(up_s, rest_s),
        )

    def one_change(self, data: dict[str, Any], count: int) -> None:
        """One job's schedule changed among `count` declared jobs: `up --refresh` (as `make up`), median of RUNS.

        The stack must hold `bulk_jobs("job", count)` already (or this declares them first)."""
        jobs = bulk_jobs("job", count)
        if sorted(j["name"] for j in jobs) != sorted(self.s.last_outputs.get("jobs") or []):
            self.s.set_jobs(jobs)
            self.s.timed_up()
        times: list[float] = []
        unexpected: list[dict[str, Any]] = []
        for run in range(RUNS):
            edited = [dict(j) for j in jobs]
            edited[count // 2] = {**edited[count // 2], "schedule": f"@every {25 + run}h"}
            self.s.set_jobs(edited)
            took, changes = self.s.timed_up()
            times.append(round(took, 2))
            if changed(changes) != {"update": 1}:
                unexpected.append(changed(changes))
        data.update(jobs=count, runs=times, median_s=median(times), unexpected_changes=unexpected)

    def remove_jobs(self, data: dict[str, Any], keep: list[dict[str, Any]]) -> None:
        """`pulumi up` that deletes the bulk jobs (and declares `keep`)."""
        self.s.set_jobs(keep)
        took, changes = self.s.timed_up()
        data.update(pulumi_up_s=round(took, 2), pulumi_changes=changed(changes))

    def by_hand(self, data: dict[str, Any]) -> None:
        """BY_HAND jobs made through Dkron's API beside the stack's own (16 parallel POSTs, as a
        user's script would): `make preview`, `make status` and a no-change `make up` without them
        and with them, each against a plain GET /v1/jobs and the nodes' memory in the same state;
        the jobs are deleted at the end."""
        jobs = hand_made_jobs(BY_HAND, prefix=f"{self.prefix}-hand-")
        data["without"] = self._by_hand_round()
        leader = self.s.api_url(probes.agreed_leader(self.s.api_urls()) or "node1")
        started = time.monotonic()
        make_by_hand(leader, jobs)
        data["create_s"] = round(time.monotonic() - started, 2)
        expected = len(jobs) + len(self.s.last_outputs.get("jobs") or [])
        everywhere = probes.wait_until(
            lambda: all(len(_jobs_on(url)) >= expected for url in self.s.api_urls().values()), 120, poll_s=1
        )
        if everywhere is None:
            raise RuntimeError(f"the {BY_HAND} jobs made by hand did not reach every node in 120 s")
        try:
            data["with"] = self._by_hand_round()
        finally:
            started = time.monotonic()
            with DkronClient(leader, timeout_s=30) as client:
                names = [
                    str(job["name"]) for job in client.list_jobs() if str(job["name"]).startswith(self.prefix)
                ]
            delete_by_hand(leader, names)
            data["delete_s"] = round(time.monotonic() - started, 2)
        data.update(jobs_by_hand=BY_HAND, jobs_declared=len(self.s.last_outputs.get("jobs") or []))

    def _by_hand_round(self) -> dict[str, Any]:
        """One state's figures: each timed RUNS times (median), memory once after a quiet pause."""
        stack = self.s
        runs: dict[str, list[float]] = {"get_jobs_ms": [], "make_preview": [], "status": [], "up": []}
        lines: dict[str, int] = {}
        unexpected: list[dict[str, int]] = []
        for _ in range(RUNS):
            with DkronClient(stack.api_url("node1"), timeout_s=30) as client:
                started = time.monotonic()
                live = len(client.list_jobs())
                runs["get_jobs_ms"].append(round((time.monotonic() - started) * 1000, 1))
            for kind, argv in (
                ("make_preview", ["scripts/stack.sh", "preview", stack.name]),
                ("status", [sys.executable, "scripts/status.py", stack.name]),
            ):
                started = time.monotonic()
                done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
                runs[kind].append(round(time.monotonic() - started, 2))
                self.log.write(f"\n=== {kind} (exit {done.returncode}) ===\n{done.stdout}{done.stderr}")
                lines[kind] = len(done.stdout.splitlines())
            took, changes = stack.timed_up()
            runs["up"].append(round(took, 2))
            if changed(changes):
                unexpected.append(changed(changes))
        time.sleep(10)
        return {
            "jobs_live": live,
            "runs": runs,
            "median_s": {kind: median(values) for kind, values in runs.items()},
            "lines": lines,
            "unexpected_changes": unexpected,
            "mib": probes.memory_mib(list(stack.containers().values())),
        }

    def rolling_updates(self, data: dict[str, Any]) -> None:
        """Change the base image ROLLOUTS times: every node replaced, one at a time, the leader last."""
        stack = self.s
        if (
            probes.wait_until(lambda: probes.executions(stack.api_urls().values(), str(TICK["name"])), 60)
            is None
        ):
            raise RuntimeError(f"job {TICK['name']} never ran")
        with probes.RunCollector(stack.api_urls().values(), str(TICK["name"])) as runs:
            quiet_from = time.time()
            time.sleep(QUIET_S)
            quiet_to = time.time()
            time.sleep(1.5)  # the last runs' records
        seen = runs.runs_between(quiet_from, quiet_to)
        data["quiet_window"] = {"seconds": QUIET_S, "runs": seen, **missed_runs(quiet_to - quiet_from, seen)}
        rollouts: list[dict[str, Any]] = []
        data["rollouts"] = rollouts
        for number in range(1, ROLLOUTS + 1):
            rollouts.append(self._rollout(number))
            self.say(f"rolling update {number}: {rollouts[-1]['total_s']} s, order {rollouts[-1]['order']}")
        followers = [s for r in rollouts for s in r["steps"] if not s["leader_step"]]
        leaders = [s for r in rollouts for s in r["steps"] if s["leader_step"]]
        data["median"] = {
            "total_s": median([r["total_s"] for r in rollouts]),
            "follower_down_s": median([s["down_s"] for s in followers]),
            "leader_down_s": median([s["down_s"] for s in leaders]),
            "follower_step_s": median([s["step_s"] for s in followers]),
            "leader_step_s": median([s["step_s"] for s in leaders]),
        }
        data["sum"] = {
            "follower_steps": summed_runs(followers),
            "leader_steps": summed_runs(leaders),
            "whole_updates": summed_runs([r["whole_update"] for r in rollouts]),
        }
        data["due_times_missed"] = {
            "follower_steps": sum(s["due_times_missed"] for s in followers),
            "leader_steps": sum(s["due_times_missed"] for s in leaders),
            "whole_updates": sum(r["due_times_missed"] for r in rollouts),
        }
        data["catch_up_late_s"] = [c["late_s"] for r in rollouts for c in r["catch_ups"]]
        data["catch_up_late_median_s"] = median(data["catch_up_late_s"])

    def _rollout(self, number: int) -> dict[str, Any]:
        stack = self.s
        base = f"dkron-iac/{self.prefix}-base:v{number + 1}"
        dockerfile = f"FROM dkron-iac/python-base:bookworm\nLABEL {BENCH_LABEL}={self.prefix}-v{number + 1}\n"
        with engine() as client:
            self.images.append(base)
            client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=base, pull=False, rm=True)
        leader = observe(stack.api_urls()).leader
        stack.configure(lambda c: c.setdefault("image", {}).update(base_image=base))
        with probes.RunCollector(stack.api_urls().values(), str(TICK["name"])) as runs:
            started = time.time()
            took, changes = stack.timed_up()
            finished = time.time()
            time.sleep(1.5)  # the last runs' records
        events = probes.container_events(f"dkron-iac.stack={stack.name}", started, finished)
        steps = rollout_steps(events, finished)
        lines = watcher_lines([stack.container(n) for n in stack.node_names()], started)
        caught_up = caught_up_starts(lines, str(TICK["name"]))
        starts = sorted(runs.runs.values())
        for step in steps:
            step["leader_step"] = step["node"] == leader
            step["runs"] = runs.runs_between(step["start"], step["end"])
            step.update(missed_runs(step["end"] - step["start"], step["runs"]))
            # The gap a step opens ends with a run after it: take runs a little past its end.
            around = [
                t for t in starts if step["start"] - TICK_EVERY_S <= t <= step["end"] + 2 * TICK_EVERY_S
            ]
            step["due_times_missed"] = missed_due_times(around, TICK_EVERY_S, caught_up)
        seen = runs.runs_between(started, finished)
        during = [t for t in starts if started - TICK_EVERY_S <= t <= finished + TICK_EVERY_S]
        return {
            "catch_ups": [
                {"late_s": line["late_s"], "due": line["due"]}
                for line in lines
                if line["event"] == "run" and line["job"] == TICK["name"]
            ],
            "due_times_missed": missed_due_times(during, TICK_EVERY_S, caught_up),
            "base_image": base,
            "total_s": round(took, 2),
            "replaced": changes.get("replace"),
            "leader_before": leader,
            "leader_after": stack.last_outputs.get("leader"),
            "order": [s["node"] for s in steps],
            "steps": [{k: v for k, v in s.items() if k not in ("start", "end")} for s in steps],
            "follower_steps": summed_runs([s for s in steps if not s["leader_step"]]),
            "leader_step": summed_runs([s for s in steps if s["leader_step"]]),
            "whole_update": {"runs": seen, **missed_runs(finished - started, seen)},
        }

    def failover(self, data: dict[str, Any]) -> None:
        """`docker kill` the leader: time to a leader every survivor names, and to the next run of a `:1` job."""
        stack = self.s
        with DkronClient(stack.api_url("node1"), timeout_s=30) as client:
            client.upsert_job(BEAT)
        probes.wait_until(
            lambda: len(probes.executions(stack.api_urls().values(), str(BEAT["name"]))) >= 3, 60
        )
        samples: list[dict[str, Any]] = []
        data["samples"] = samples
        for number in range(1, FAILOVERS + 1):
            if probes.wait_until(lambda: probes.whole(stack.api_urls()), 120) is None:
                raise RuntimeError("the cluster did not become whole again before the next kill")
            time.sleep(5)  # let the restarted node settle
            samples.append(self._kill_leader())
            self.say(f"failover {number}: {samples[-1]}")
        data["median"] = {
            "new_leader_s": median([s["new_leader_s"] for s in samples]),
            "next_run_s": median([s["next_run_s"] for s in samples]),
        }
        data["due_times_missed"] = sum(s["due_times_missed"] for s in samples)

    def _kill_leader(self) -> dict[str, Any]:
        stack = self.s
        api = stack.api_urls()
        old = probes.agreed_leader(api)
        if old is None:
            raise RuntimeError("no leader every node agrees on before the kill")
        survivors = {n: url for n, url in api.items() if n != old}

        def new_leader() -> str | None:
            leader = probes.agreed_leader(survivors)
            return leader if leader in survivors else None

        def first_run_after(t: float) -> float | None:
            starts = [
                start
                for start in map(probes.started_at, probes.executions(survivors.values(), str(BEAT["name"])))
                if start > t
            ]
            return min(starts) if starts else None

        with engine() as client:
            container = client.containers.get(stack.container(old))
            before, mono = time.time(), time.monotonic()
            container.kill()
            after = time.time()  # a run that starts later was scheduled by a new leader
            elected = probes.wait_until(new_leader, 90, poll_s=0.1)
            leader = new_leader()
            first = None
            if probes.wait_until(lambda: first_run_after(after), 90) is not None:
                first = first_run_after(after)
            time.sleep(2 * BEAT_EVERY_S + 1)  # the runs that follow the gap, and their records
            # Bring the node back on its data, as a restart after a crash would.
            container.start()
        lines = watcher_lines([stack.container(n) for n in survivors], before)
        starts = sorted(
            t
            for t in map(probes.started_at, probes.executions(survivors.values(), str(BEAT["name"])))
            if before - 2 * BEAT_EVERY_S <= t
        )
        return {
            "killed": old,
            "new_leader": leader,
            "new_leader_s": round(elected - mono, 2) if elected else None,
            "next_run_s": round(first - before, 2) if first else None,
            "due_times_missed": missed_due_times(
                starts, BEAT_EVERY_S, caught_up_starts(lines, str(BEAT["name"]))
            ),
            "catch_ups": [
                {"late_s": line.get("late_s"), "action": line["event"]}
                for line in lines
                if line.get("job") == BEAT["name"] and line["event"] in ("run", "imminent")
            ],
        }

    # --- several hosts -----------------------------------------------------------------------
    @property
    def h(self) -> BenchStack:
        assert self.hosts_stack is not None
        return self.hosts_stack

    def hosts_formation(self, data: dict[str, Any]) -> None:
        """A lab of three hosts, then empty stack to a whole cluster on them, against the one-engine formation."""
        self.lab = Lab(LAB_PREFIX, LAB_SUBNET, len(PLACEMENT), state_dir=self.workdir / "lab")
        data["lab_up_s"] = round(self.lab.up(), 1)
        hosts = {
            name: {
                "docker": self.lab.ssh_url(name),
                "address": address,
                "ssh_identity": str(self.lab.key),
                "ssh_known_hosts": str(self.lab.known_hosts),
            }
            for name, address in self.lab.hosts.items()
        }
        nodes = [{**node, "host": PLACEMENT[str(node["name"])]} for node in NODES]
        self.hosts_stack = BenchStack(nodes, self.log, hosts=hosts)
        steps = StepTimes()
        took, changes = self.h.timed_up(steps=steps)
        whole = probes.wait_until(lambda: probes.whole(self.h.api_urls()), 60)
        image, copies, nodes_span, top = (
            steps.span("DockerImage"),
            steps.span("DockerImageCopy"),
            steps.span("DockerContainer", "NodeGate"),
            steps.span("Stack"),
        )
        each_copy = [
            round(s["end"] - s["start"], 2)
            for s in steps.steps.values()
            if s["type"] == "DockerImageCopy" and "start" in s and "end" in s
        ]
        one_engine = _get(self.results, "formation", "median", "pulumi_up_s")
        data.update(
            stack=self.h.name,
            hosts=self.lab.hosts,
            placement=PLACEMENT,
            up_s=round(took, 2),
            whole_after_up=whole is not None,
            created=changes.get("create"),
            leader=self.h.last_outputs.get("leader"),
            raft_voters=self.h.last_outputs.get("voters"),
            phases={
                "program_start": round(top[0], 2) if top else None,
                "image_build": round(image[1] - image[0], 2) if image else None,
                "image_copies": round(copies[1] - copies[0], 2) if copies else None,
                "nodes_and_gates": round(nodes_span[1] - nodes_span[0], 2) if nodes_span else None,
                "after_last_gate": round(took - nodes_span[1], 2) if nodes_span else None,
            },
            image_copy_s=each_copy,
            one_engine_up_s=one_engine,
            ratio_vs_one_engine=ratio(took, one_engine),
            ratio_without_copies_vs_one_engine=ratio(
                took - (copies[1] - copies[0]) if copies else None, one_engine
            ),
        )
        # The jobs the next sections watch, in one more update (so the formation is the same as above).
        self.h.set_jobs([TICK, BEAT])
        data["add_jobs_up_s"] = round(self.h.timed_up()[0], 2)

    def hosts_rolling_updates(self, data: dict[str, Any]) -> None:
        """Change `dkron.log_level` HOST_ROLLOUTS times: every node replaced, one at a time, the leader last."""
        rollouts: list[dict[str, Any]] = []
        data["rollouts"] = rollouts
        for number in range(1, HOST_ROLLOUTS + 1):
            rollouts.append(self._hosts_rollout(number))
            self.say(
                f"hosts rolling update {number}: {rollouts[-1]['total_s']} s, order {rollouts[-1]['order']}"
            )
        followers = [s for r in rollouts for s in r["steps"] if not s["leader_step"]]
        leaders = [s for r in rollouts for s in r["steps"] if s["leader_step"]]
        one = _get(self.results, "rolling_update", "median") or {}
        data["median"] = {
            "total_s": median([r["total_s"] for r in rollouts]),
            "follower_down_s": median([s["down_s"] for s in followers]),
            "leader_down_s": median([s["down_s"] for s in leaders]),
            "follower_step_s": median([s["step_s"] for s in followers]),
            "leader_step_s": median([s["step_s"] for s in leaders]),
        }
        med = data["median"]
        data["one_engine_median"] = {k: one.get(k) for k in med if k in one}
        data["ratios"] = {f"{k}_vs_one_engine": ratio(med[k], one.get(k)) for k in med if k in one}
        data["sum"] = {"whole_updates": summed_runs([r["whole_update"] for r in rollouts])}

    def _hosts_rollout(self, number: int) -> dict[str, Any]:
        # `dkron.log_level` back and forth: every container replaced, the image unchanged. (A base
        # image change replaces each host's DockerImageCopy delete-before-replace, which takes every
        # container down at once before the new copies load: see the report.)
        stack = self.h
        level = "debug" if number % 2 else "info"
        leader = observe(stack.api_urls()).leader
        engines = {str(n["engine"]) for n in (stack.last_outputs.get("nodes") or {}).values()}
        stack.configure(lambda c: c.setdefault("dkron", {}).update(log_level=level))
        with probes.RunCollector(stack.api_urls().values(), str(TICK["name"])) as runs:
            started = time.time()
            took, changes = stack.timed_up()
            finished = time.time()
            time.sleep(1.5)  # the last runs' records
        events = sorted(
            (
                event
                for ref in engines
                for event in probes.container_events(f"dkron-iac.stack={stack.name}", started, finished, ref)
            ),
            key=lambda e: e["t"],
        )
        steps = rollout_steps(events, finished)
        for step in steps:
            step["leader_step"] = step["node"] == leader
            step["host"] = PLACEMENT.get(step["node"])
        seen = runs.runs_between(started, finished)
        return {
            "log_level": level,
            "total_s": round(took, 2),
            "replaced": changes.get("replace"),
            "leader_before": leader,
            "leader_after": stack.last_outputs.get("leader"),
            "order": [s["node"] for s in steps],
            "steps": [{k: v for k, v in s.items() if k not in ("start", "end")} for s in steps],
            "whole_update": {"runs": seen, **missed_runs(finished - started, seen)},
        }

    def host_loss(self, data: dict[str, Any]) -> None:
        """Stop the leader's whole host: time to a leader every survivor names, and to the next `:1` run."""
        stack = self.h
        if (
            probes.wait_until(
                lambda: len(probes.executions(stack.api_urls().values(), str(BEAT["name"]))) >= 3, 60
            )
            is None
        ):
            raise RuntimeError(f"job {BEAT['name']} never ran")
        samples: list[dict[str, Any]] = []
        data["samples"] = samples
        for number in range(1, HOST_LOSSES + 1):
            if probes.wait_until(lambda: probes.whole(stack.api_urls()), 120) is None:
                raise RuntimeError("the cluster did not become whole again before the next host loss")
            time.sleep(5)  # let the restarted node settle
            samples.append(self._lose_leader_host())
            self.say(f"host loss {number}: {samples[-1]}")
        one = _get(self.results, "failover", "median") or {}
        med = {
            "new_leader_s": median([s["new_leader_s"] for s in samples]),
            "next_run_s": median([s["next_run_s"] for s in samples]),
            "whole_again_s": median([s["whole_again_s"] for s in samples]),
        }
        data["median"] = med
        data["one_engine_median"] = {k: one.get(k) for k in ("new_leader_s", "next_run_s")}
        data["ratios"] = {
            f"{k}_vs_one_engine": ratio(med[k], one.get(k)) for k in ("new_leader_s", "next_run_s")
        }

    def _lose_leader_host(self) -> dict[str, Any]:
        stack, lab = self.h, self.lab
        assert lab is not None
        api = stack.api_urls()
        old = probes.agreed_leader(api)
        if old is None:
            raise RuntimeError("no leader every node agrees on before the host loss")
        host = PLACEMENT[old]
        survivors = {n: url for n, url in api.items() if n != old}

        def new_leader() -> str | None:
            leader = probes.agreed_leader(survivors)
            return leader if leader in survivors else None

        def first_run_after(t: float) -> float | None:
            starts = [
                start
                for start in map(probes.started_at, probes.executions(survivors.values(), str(BEAT["name"])))
                if start > t
            ]
            return min(starts) if starts else None

        before, mono = time.time(), time.monotonic()
        try:
            lab.stop_host(host)
            after = time.time()  # a run that starts later was scheduled by a new leader
            elected = probes.wait_until(new_leader, 90, poll_s=0.1)
            leader = new_leader()
            first = None
            if probes.wait_until(lambda: first_run_after(after), 90) is not None:
                first = first_run_after(after)
        finally:
            # The machine comes back: its daemons start and dockerd restarts the node on its data.
            back = time.monotonic()
            lab.start_host(host)
        whole = probes.wait_until(lambda: probes.whole(api), 120, poll_s=0.5)
        healed = "by itself" if whole else None
        if whole is None:
            stack.timed_up()
            whole = probes.wait_until(lambda: probes.whole(api), 60, poll_s=0.5)
            healed = "after one pulumi up" if whole else "not whole"
        return {
            "host": host,
            "lost": old,
            "new_leader": leader,
            "new_leader_s": round(elected - mono, 2) if elected else None,
            "next_run_s": round(first - before, 2) if first else None,
            "whole_again_s": round(whole - back, 2) if whole else None,
            "healed": healed,
        }

    # --- the run ------------------------------------------------------------------------
    def run(self) -> None:
        with self.section("machine") as data:
            data.update(self.machine())
        with self.section("formation") as data:
            self.formation(data)
        if self.stack is None or not self.s.last_outputs:
            return
        with self.section("no_change_0_jobs") as data:
            self.no_change(data, 0)
        with self.section("memory_0_jobs") as data:
            self.memory(data, 0)
        with self.section("one_change_5_jobs") as data:
            self.one_change(data, 5)
        with self.section("delete_5_jobs") as data:
            self.remove_jobs(data, [])
        with self.section("register_100_jobs") as data:
            self.registration(data, 100)
        with self.section("no_change_100_jobs") as data:
            self.no_change(data, 100)
        with self.section("memory_100_jobs") as data:
            self.memory(data, 100)
        with self.section("delete_100_jobs") as data:
            self.remove_jobs(data, [])
        with self.section("register_500_jobs") as data:
            self.registration(data, 500)
        with self.section("no_change_500_jobs") as data:
            self.no_change(data, 500)
        with self.section("one_change_500_jobs") as data:
            self.one_change(data, 500)
        with self.section("memory_500_jobs") as data:
            self.memory(data, 500)
        with self.section("delete_500_jobs") as data:
            self.remove_jobs(data, [])
        with self.section("register_2000_jobs") as data:
            self.registration(data, 2000)
        with self.section("delete_2000_jobs") as data:
            self.remove_jobs(data, [TICK])
        with self.section("by_hand_5000_jobs") as data:
            self.by_hand(data)
        with self.section("rolling_update") as data:
            self.rolling_updates(data)
        with self.section("failover") as data:
            self.failover(data)
        self.run_hosts()

    def run_hosts(self) -> None:
        """The sections on the lab's hosts, with the one-engine stack gone; the lab goes down after."""
        for stack in list(self.open_stacks):
            with contextlib.suppress(Exception):
                self.close_stack(stack)
        try:
            with self.section("hosts_formation") as data:
                self.hosts_formation(data)
            if self.hosts_stack is None or not self.h.last_outputs:
                return
            with self.section("hosts_rolling_update") as data:
                self.hosts_rolling_updates(data)
            with self.section("host_loss") as data:
                self.host_loss(data)
        finally:
            self.close_hosts_stack()
            self.lab_down()

    def tls_cost(self, data: dict[str, Any]) -> None:
        """What mutual TLS costs: formation, `TLS_JOBS` jobs by `pulumi up`, a rolling update and a
        leader failover, each on a stack without it and on one with it; medians and TLS/plain ratios."""
        rounds: list[dict[str, Any]] = []
        data["rounds"] = rounds
        for number in range(1, TLS_ROUNDS + 1):
            for tls in (False, True) if number % 2 else (True, False):
                rounds.append(self._tls_round(number, tls))
                self.say(f"tls round {number} (mutual_tls {tls}): {rounds[-1]}")
        keys = ("formation_s", "register_jobs_s", "rolling_update_s", "new_leader_s", "next_run_s")
        data["median"] = {
            name: {key: median([r.get(key) for r in rounds if r["mutual_tls"] == tls]) for key in keys}
            for name, tls in (("plain", False), ("tls", True))
        }
        data["ratios"] = {
            key: ratio(data["median"]["tls"][key], data["median"]["plain"][key]) for key in keys
        }
        data["jobs"] = TLS_JOBS

    def _tls_round(self, number: int, tls: bool) -> dict[str, Any]:
        """One stack, timed through the four steps (`_rollout` and `_kill_leader` run on it)."""
        kept = self.stack
        stack = BenchStack(NODES, self.log, security={"mutual_tls": tls}, jobs=[TICK])
        self.open_stacks.append(stack)
        self.stack = stack
        result: dict[str, Any] = {"mutual_tls": tls, "stack": stack.name}
        try:
            result["formation_s"] = round(stack.timed_up()[0], 2)
            stack.set_jobs([TICK, *bulk_jobs("job", TLS_JOBS)])
            result["register_jobs_s"] = round(stack.timed_up()[0], 2)
            rollout = self._rollout(100 + 2 * number + int(tls))
            result["rolling_update_s"] = rollout["total_s"]
            result["rolling_update_due_times_missed"] = rollout["due_times_missed"]
            with DkronClient(stack.api_url("node1"), timeout_s=30) as client:
                client.upsert_job(BEAT)
            probes.wait_until(
                lambda: len(probes.executions(stack.api_urls().values(), str(BEAT["name"]))) >= 3, 60
            )
            if probes.wait_until(lambda: probes.whole(stack.api_urls()), 120) is None:
                raise RuntimeError("the cluster is not whole before the leader is killed")
            failover = self._kill_leader()
            result.update(
                new_leader_s=failover["new_leader_s"],
                next_run_s=failover["next_run_s"],
                failover_due_times_missed=failover["due_times_missed"],
            )
        finally:
            self.stack = kept
            self.close_stack(stack)
        return result

    def soak(self, data: dict[str, Any]) -> None:
        """Ten minutes of random faults on a lab of three hosts of its own (`testing/soak.py`)."""
        seconds = float(os.environ.get("BENCH_SOAK_S", "600"))
        seed = int(os.environ.get("BENCH_SOAK_SEED", str(random.SystemRandom().randrange(1 << 31))))
        self.say(f"soak: seed {seed}, {seconds:.0f} s (replay: BENCH_SOAK_SEED={seed})")
        with soak_cluster(self.workdir / "soak-lab") as (lab, stack):
            data.update(Soak(lab, stack, seed, seconds).run())


def _jobs_on(api_url: str) -> list[dict[str, Any]]:
    with DkronClient(api_url, timeout_s=30) as client:
        return client.list_jobs()


def _brief(round_: dict[str, Any]) -> str:
    def outcome(r: dict[str, Any]) -> str:
        seconds = r.get("up_s", r.get("healthy_s"))
        return f"{seconds} s" if seconds is not None else str(r.get("not_whole"))

    return ", ".join(f"{name} {outcome(r)}" for name, r in round_.items())


def _get(results: dict[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _field(path: str, key: str, separator: str) -> str:
    """The value of the first `key<separator>value` line of a text file, or ''."""
    for line in _lines(path):
        name, sep, value = line.partition(separator)
        if sep and name.strip() == key:
            return value.strip()
    return ""


def _lines(path: str) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(path).read_text().splitlines()
    return []


def _command(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60).stdout.strip()
    return ""


def _root_dockerd() -> str:
    """The PIDs of the dockerds in this machine's own network namespace: labs (this run's and
    other work's) run dockerds in namespaces of their own, which come and go."""
    own = os.readlink("/proc/self/ns/net")
    pids = []
    for pid in _command(["pidof", "dockerd"]).split():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") == own:
                pids.append(pid)
    return " ".join(pids)


def _load() -> str:
    lines = _lines("/proc/loadavg")
    return " ".join(lines[0].split()[:3]) if lines else ""


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    bench = Bench()
    bench.say(f"prefix {bench.prefix}; Pulumi output in {bench.log_path}")
    only = os.environ.get("BENCH_ONLY", "")
    try:
        if only:
            # One part alone: its sections replace theirs in the last full run's results.
            with contextlib.suppress(FileNotFoundError, ValueError):
                bench.results = {**json.loads(RESULTS.read_text()), "errors": {}}
            earlier = [p for p in bench.results.get("partial_runs", []) if p.get("only") != only]
            bench.results["partial_runs"] = [*earlier, {"only": only}]
            with bench.section(f"machine_{only}") as data:
                data.update(bench.machine())
        if only == "hosts":
            bench.run_hosts()
        elif not only:
            bench.run()
        if only in ("", "tls"):
            with bench.section("tls_cost") as data:
                bench.tls_cost(data)
        if only in ("", "soak"):
            with bench.section("soak") as data:
                bench.soak(data)
    finally:
        # Cleanup must finish even if a second signal arrives.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            bench.cleanup()
        others = None
        with contextlib.suppress(Exception):
            others = probes.other_containers([bench.prefix])
        this_run = {
            "prefix": bench.prefix,
            "duration_s": round(time.monotonic() - bench.started, 1),
            "load_average_at_end": _load(),
            "other_running_containers_at_end": others,
            "dockerd_pid_at_start": bench.dockerd_pid,
            "dockerd_pid_at_end": _root_dockerd(),
            "pulumi_log": str(bench.log_path),
        }
        if only:
            bench.results["partial_runs"][-1].update(this_run)
        else:
            bench.results["run"] = this_run
        RESULTS.write_text(json.dumps(bench.results, indent=2) + "\n")
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(report.render(bench.results))
        bench.say(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
        bench.log.close()
    return 1 if bench.results["errors"] else 0
