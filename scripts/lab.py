"""The user lab: three Docker hosts on this machine, each in its own network namespace.

    python scripts/lab.py up       # or: make lab-up
    python scripts/lab.py status
    python scripts/lab.py down     # or: make lab-down

Hosts h1..h3 at 10.213.77.11-13 on the bridge dklbr0 (10.213.77.1), each with
its own containerd, dockerd and sshd. The lab's key, known_hosts, ssh_config,
TLS client certs and hosts.json are in `.lab/` (so `ssh -F .lab/ssh_config h1
docker info` talks to h1's engine). The `lab3` stack deploys onto it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testing.lab import Lab  # noqa: E402

PREFIX = "dkl"
SUBNET = "10.213.77.0/24"
STATE_DIR = ROOT / ".lab"


def main() -> int:
    parser = argparse.ArgumentParser(description="The user lab of Docker hosts on this machine.")
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args()
    lab = Lab(PREFIX, SUBNET, state_dir=STATE_DIR)
    if args.action == "up":
        took = lab.up()
        print(f"lab up in {took:.1f}s; hosts (also in {STATE_DIR / 'hosts.json'}):")
        for name, address in lab.hosts.items():
            print(f"  {name}  {address}  {lab.ssh_url(name)}  unix://{lab.docker_socket(name)}")
        print(f"try: ssh -F {lab.ssh_config.relative_to(ROOT)} h1 docker info")
    elif args.action == "down":
        took = lab.down()
        print(f"lab down in {took:.1f}s")
    else:
        status = lab.status()
        print(json.dumps(status, indent=2))
        return 0 if all(all(checks.values()) for checks in status.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
