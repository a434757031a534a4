"""make jobs-export STACK=... [JOBS=a,b] [OUT=path]: jobs made by hand, as a job file.

Writes the jobs in the stack's cluster that the stack does not declare (or
the ones JOBS names) as a YAML file in the format `cluster.job_files` reads,
without what Dkron computes (status, counts, next run). Add the file to the
stack's job files and the next preview shows those jobs taken over with no
change. The file is checked before it is written: each job, read back through
the same loader a preview uses, must give exactly the job Dkron holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.api_access import authorize_outputs  # noqa: E402
from components.dkron_client import DkronError  # noqa: E402
from components.job_provider import job_from_live, managed_job  # noqa: E402
from components.job_set import live_jobs  # noqa: E402
from components.jobs import JobConfigError, job_payload, load_jobs  # noqa: E402

PROJECT = "dkron-cluster"


class ExportError(RuntimeError):
    pass


def stack_outputs(stack: str) -> dict[str, Any]:
    done = subprocess.run(
        # With the secrets: the nodes' APIs want the stack's token (`api_auth`), never printed.
        ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ExportError(f"stack {stack!r}: cannot read its outputs: {done.stderr.strip()}")
    outputs: dict[str, Any] = json.loads(done.stdout or "{}")
    if not outputs.get("nodes"):
        raise ExportError(
            f"stack {stack!r} is not deployed (no nodes in its outputs); run make up STACK={stack}"
        )
    return outputs


def job_files(stack: str) -> list[str]:
    config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    cluster = (config.get("config") or {}).get(f"{PROJECT}:cluster") or {}
    return list(cluster.get("job_files") or [])


def chosen(live: dict[str, dict[str, Any]], managed: set[str], names: list[str], stack: str) -> list[str]:
    """The jobs to export: those named, or every job the stack does not declare; parents added."""
    if not names:
        return sorted(set(live) - managed)
    problems = []
    for name in names:
        if name not in live:
            problems.append(
                f"{name}: no such job in the cluster (jobs there: {', '.join(sorted(live)) or 'none'})"
            )
        elif name in managed:
            problems.append(f"{name}: stack {stack!r} declares it already")
    if problems:
        raise ExportError("cannot export:\n  " + "\n  ".join(problems))
    picked = set(names)
    # A job file may only name parents the stack declares: bring undeclared parents along.
    for name in names:
        parent = live[name].get("parent_job")
        while parent and parent in live and parent not in managed and parent not in picked:
            picked.add(parent)
            print(f"also exporting {parent!r}: the parent of {name!r}, not declared by the stack")
            parent = live[parent].get("parent_job")
    return sorted(picked)


def exported(live: dict[str, dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    return [job_from_live(live[name]) for name in names]


def check_round_trip(stack: str, path: Path, live: dict[str, dict[str, Any]]) -> None:
    """The file, loaded as a preview loads it, gives each job exactly as Dkron holds it."""
    try:
        specs = load_jobs(stack, [], [str(path)], ROOT)
    except JobConfigError as err:
        raise ExportError(f"the exported jobs do not load as a job file:\n{err}") from None
    for spec in specs:
        if managed_job(job_payload(spec)) != managed_job(live[spec.name]):
            raise ExportError(f"job {spec.name!r} does not survive the export unchanged; export it by hand")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument(
        "--jobs", default="", help="comma-separated job names (default: every undeclared job)"
    )
    parser.add_argument("--out", default="", help="file to write (default: jobs/<stack>-taken-over.yaml)")
    args = parser.parse_args()
    stack = args.stack
    names = [n.strip() for n in args.jobs.split(",") if n.strip()]
    try:
        outputs = stack_outputs(stack)
        authorize_outputs(outputs)
        urls = [str(node["api_url"]) for node in outputs["nodes"].values()]
        live = live_jobs(urls)
        if live is None:
            raise ExportError(f"stack {stack!r}: no node answers on {', '.join(urls)}")
        picked = chosen(live, set(outputs.get("jobs") or []), names, stack)
        if not picked:
            print(f"stack {stack!r}: every job in the cluster is declared by the stack; nothing to export")
            return 0
        relative = args.out or f"jobs/{stack}-taken-over.yaml"
        path = ROOT / relative
        if path.exists():
            raise ExportError(f"{relative} exists; move it away or choose another file with OUT=")
        header = (
            f"# Jobs taken over from the cluster of stack {stack!r} (make jobs-export).\n"
            "# Server-side fields (status, counts, next run) are left out.\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump({"jobs": exported(live, picked)}, sort_keys=False))
        try:
            check_round_trip(stack, path, live)
        except ExportError:
            path.unlink()
            raise
    except (ExportError, DkronError) as err:
        print(f"jobs-export: {err}", file=sys.stderr)
        return 2
    envs = [name for name in picked if (live[name].get("executor_config") or {}).get("env")]
    print(f"wrote {len(picked)} job(s) to {relative}: {', '.join(picked)}")
    if envs:
        print(
            f"note: {', '.join(envs)} carry executor_config.env in plain text in that file;"
            " move any secret among them to secret_env (README: Jobs)"
        )
    index = len(job_files(stack))
    print("take them over with one edit, then preview:")
    print(f"  pulumi config set --stack {stack} --path 'cluster.job_files[{index}]' {relative}")
    print(f"  make preview STACK={stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
