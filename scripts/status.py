"""`make status [STACK=dev]`: the live cluster at a glance (components/status.py).

    python scripts/status.py STACK [--json] [--all] [--watch [--interval S]]

The table sums the jobs up by state and lists those that need attention;
`--all` lists every job, and `--json` always holds every job.

Exit code: 0 healthy, 1 degraded (quorum kept), 2 broken (no leader agreed by
a majority) or the stack cannot be read (not deployed, no such stack).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.live import Live  # noqa: E402

from components.status import (  # noqa: E402
    EXIT_CODES,
    ClusterStatus,
    StatusUnavailable,
    as_json,
    console,
    read_status,
    render,
)

CANNOT_READ = EXIT_CODES["broken"]


def stack_outputs(stack: str) -> dict[str, Any]:
    """The stack's outputs, with its API credentials (`api_auth`, a secret: used, never printed)."""
    if not (ROOT / "stacks" / f"Pulumi.{stack}.yaml").exists():
        raise StatusUnavailable(f"no stack '{stack}': stacks/Pulumi.{stack}.yaml does not exist")
    done = subprocess.run(
        ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise StatusUnavailable(
            f"stack '{stack}' cannot be read ({reason}); is it deployed? `make up STACK={stack}`"
        )
    outputs: dict[str, Any] = json.loads(done.stdout or "{}")
    return outputs


def main() -> int:
    parser = argparse.ArgumentParser(description="The live state of a stack's Dkron cluster.")
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument(
        "--all", action="store_true", help="list every job, not only those that need attention"
    )
    parser.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (--watch)")
    args = parser.parse_args()
    out = console()
    try:
        outputs = stack_outputs(args.stack)
        status = read_status(args.stack, outputs)
    except StatusUnavailable as err:
        if args.json:
            print(
                json.dumps(
                    {"stack": args.stack, "verdict": "unknown", "error": str(err), "exit_code": CANNOT_READ}
                )
            )
        else:
            console(sys.stderr).print(f"[bold red]UNKNOWN[/] {err}")
        return CANNOT_READ
    if args.json:
        print(json.dumps(as_json(status), indent=2))
        return status.exit_code
    if not args.watch:
        out.print(render(status, args.all))
        return status.exit_code
    latest: ClusterStatus = status
    try:
        if not out.is_terminal:  # nothing to redraw in a pipe or a file: one table after another
            while True:
                out.print(render(latest, args.all))
                time.sleep(args.interval)
                latest = read_status(args.stack, outputs)
        with Live(render(status, args.all), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(args.interval)
                latest = read_status(args.stack, outputs)
                live.update(render(latest, args.all), refresh=True)
    except KeyboardInterrupt:
        pass
    return latest.exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before a first status was read: nothing to say
        sys.exit(130)
