"""Before a node's agent starts on a host: stay out if the cluster has given its name to another address.

A host lost for good has its nodes moved to other hosts (README: "Losing a host
for good"); their old containers stay on the lost machine, dropped from the
stack's state. If that machine comes back, Docker starts them again (their
restart policy) with their old Raft data and the stack's gossip key, under the
same node names as the nodes that replaced them. Such a node must not join.

So, before the agent starts, ask the nodes it would join (the hosts in its
`retry-join`, on the default gRPC port and its own) with `dkron raft
list-peers` whom the cluster's Raft configuration knows under its name. If it names another address and something answers
there, this node has been replaced: say so and exit without starting the agent
(the container's restart policy tries again later, with growing pauses, and
the check runs again). A node whose old address no longer answers (it is
starting on a new host, or its host's address changed) goes ahead, and so,
after 30 s of asking, does a node none of whose peers answer (the whole
cluster starting at once).

Read from the node's config (/etc/dkron/dkron.yml: node-name, retry-join) and
NODE_RPC_ADDR (its own gRPC address). Nothing here is in the container's
environment or files, so a change of membership restarts no node.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CONFIG_PATH = "/etc/dkron/dkron.yml"
DEFAULT_RPC_PORT = 6868
ASK_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 3.0
UNSURE_FOR_S = 30.0
EXIT_REPLACED = 3
# Once replaced, always replaced while the replacement answers: the verdict is kept in the
# data folder, so a slow answer from the peers on a later start cannot let the node in.
VERDICT_PATH = "/dkron/data/dkron-iac-replaced-by"


def read_config(text: str) -> tuple[str, list[str]]:
    """`node-name` and the hosts of `retry-join` from the node's dkron.yml (block style, as
    the program writes it; the node has no YAML parser)."""
    node, hosts, in_join = "", [], False
    for line in text.splitlines():
        if line.startswith("node-name:"):
            node = line.split(":", 1)[1].strip().strip("'\"")
        if in_join and line.startswith("- "):
            hosts.append(line[2:].strip().strip("'\"").rpartition(":")[0])
            continue
        in_join = line.startswith("retry-join:")
    return node, hosts


def peer_addresses(hosts: list[str], own: str) -> list[str]:
    """Where to ask: each host of the join list on the default gRPC port and on this node's."""
    own_port = own.rpartition(":")[2]
    ports = sorted({str(DEFAULT_RPC_PORT), own_port} - {""})
    return [f"{host}:{port}" for host in dict.fromkeys(hosts) for port in ports if f"{host}:{port}" != own]


def peer_rows(listing: str) -> list[list[str]]:
    """The rows of `dkron raft list-peers` (Node, ID, Address, State, Voter), header left out."""
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    return [row for row in rows if len(row) >= 3 and row[:3] != ["Node", "ID", "Address"]]


def addresses_claiming(node: str, own: str, listings: list[str]) -> list[str]:
    """Other addresses the peers' Raft configurations give to `node`."""
    return sorted(
        {row[2] for listing in listings for row in peer_rows(listing) if row[1] == node and row[2] != own}
    )


def _list_peers(rpc_addr: str) -> str:
    try:
        done = subprocess.run(
            ["dkron", "raft", "list-peers", "--rpc-addr", rpc_addr],
            capture_output=True,
            text=True,
            timeout=ASK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _answers(address: str, tries: int = 3) -> bool:
    host, _, port = address.rpartition(":")
    for _ in range(tries):
        try:
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                return True
        except (OSError, ValueError):
            time.sleep(0.5)
    return False


def replaced_by(node: str, own: str, peers: list[str]) -> str | None:
    """The live address the cluster gives to `node` instead of `own`, if any.

    A machine that has just come back may not reach its peers for a few seconds, and a busy
    peer may answer late: the peers are asked again for up to UNSURE_FOR_S, and only a node
    none of whose peers lists in that time goes ahead unchecked (the whole cluster starting).
    """
    if not peers:
        return None
    deadline = time.monotonic() + UNSURE_FOR_S
    with ThreadPoolExecutor(max_workers=len(peers)) as pool:
        listings = [listing for listing in pool.map(_list_peers, peers) if listing]
        while not listings and time.monotonic() < deadline:
            time.sleep(2)
            listings = [listing for listing in pool.map(_list_peers, peers) if listing]
    claims = addresses_claiming(node, own, listings)
    print(
        f"dkron-iac fence: asked {len(peers)} peer(s), {len(listings)} listed; other addresses for {node}:"
        f" {', '.join(claims) or 'none'}",
        file=sys.stderr,
        flush=True,
    )
    return next((address for address in claims if _answers(address)), None)


def _kept_verdict() -> str | None:
    try:
        with open(VERDICT_PATH, encoding="utf-8") as kept:
            return kept.read().strip() or None
    except OSError:
        return None


def _keep_verdict(address: str | None) -> None:
    try:
        if address is None:
            os.remove(VERDICT_PATH)
        else:
            with open(VERDICT_PATH, "w", encoding="utf-8") as kept:
                kept.write(address)
    except OSError:
        pass


def main() -> int:
    own = os.environ.get("NODE_RPC_ADDR", "")
    try:
        with open(CONFIG_PATH, encoding="utf-8") as config:
            node, hosts = read_config(config.read())
    except OSError:
        return 0
    if not node or not own:
        return 0
    kept = _kept_verdict()
    if kept and _answers(kept):
        other: str | None = kept
    else:
        other = replaced_by(node, own, peer_addresses(hosts, own))
    _keep_verdict(other)
    if other is None:
        print(f"dkron-iac fence: node {node} ({own}): no other live address holds its name", file=sys.stderr)
        return 0
    print(
        f"dkron-iac fence: the cluster's Raft configuration gives node {node} to {other}, which answers;"
        f" this container ({own}) was replaced and stays out (its agent is not started)."
        " Remove this container and its volume from this machine.",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_REPLACED


if __name__ == "__main__":
    sys.exit(main())
