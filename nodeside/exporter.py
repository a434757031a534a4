"""The node exporter: Prometheus metrics of what Dkron 4.0.5 does not export itself.

Dkron's own `/metrics` (``enable-prometheus``) holds timings of its gRPC
calls, leader work and the Go runtime, but no gauge says whether a node
leads, whether a server is a Raft voter, or how a job's last run went. This
process runs beside the agent in every node's container (`python3 -m
nodeside.exporter`, standard library only) and answers each scrape of
``:9180/metrics`` by asking its own agent:

- ``dkron_iac_node_is_leader``, ``dkron_iac_node_sees_leader``: 1 or 0;
- on the leader only, ``dkron_iac_raft_voter{peer}``: 1 or 0 for every alive
  server Serf knows and every server in the Raft configuration
  (`dkron raft list-peers`);
- per job, from the node's replica of the job store:
  ``dkron_iac_job_last_run_failed``, ``dkron_iac_job_last_success_timestamp_seconds``,
  ``dkron_iac_job_last_error_timestamp_seconds``, ``dkron_iac_job_success_total``,
  ``dkron_iac_job_error_total`` and ``dkron_iac_job_unserved_due_seconds`` (how
  long ago the first due time after its last run passed with no run; 0 when
  none has);
- ``dkron_iac_node_certificate_expiry_timestamp_seconds``: when the node's
  certificate of the stack's CA ends (absent without mutual TLS).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import local_api
from .catchup import due_unserved, last_run_failed, parse_time

API_ENV = "EXPORTER_API"
PORT_ENV = "EXPORTER_PORT"
RPC_ADDR_ENV = "NODE_RPC_ADDR"  # as `components.node_config.RPC_ADDR_ENV`
DEFAULT_PORT = 9180
# Where the exporter passes on Dkron's own metrics (`Agent.dkron_metrics`).
DKRON_METRICS_PATH = "/dkron/metrics"
SERF_ALIVE = 1

HELP = {
    "dkron_iac_node_is_leader": "1 if this node is the Raft leader.",
    "dkron_iac_node_sees_leader": "1 if this node knows a leader.",
    "dkron_iac_raft_voter": "On the leader: 1 if the server is a Raft voter, 0 if it is alive or in the Raft configuration but not a voter.",
    "dkron_iac_job_last_run_failed": "1 if the job's last run failed, 0 if it succeeded (absent: never ran).",
    "dkron_iac_job_last_success_timestamp_seconds": "When the job last succeeded.",
    "dkron_iac_job_last_error_timestamp_seconds": "When the job last failed.",
    "dkron_iac_job_success_total": "Successful runs of the job, as Dkron counts them.",
    "dkron_iac_job_error_total": "Failed runs of the job, as Dkron counts them.",
    "dkron_iac_job_unserved_due_seconds": "Seconds since the first due time after the job's last run passed with no run (0: none).",
    "dkron_iac_node_certificate_expiry_timestamp_seconds": "When this node's certificate of the stack's CA ends.",
}
# The node's certificate (`components.node_config.TLS_CERT_PATH`).
CERT_PATH = "/etc/dkron/node.pem"
COUNTERS = {"dkron_iac_job_success_total", "dkron_iac_job_error_total"}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def peer_rows(peers_text: str) -> list[tuple[str, str, str, bool]]:
    """`dkron raft list-peers`'s table (Node ID Address State Voter) as (server ID, address,
    state, voter). The ID is the Raft server ID, which is the node name; the Node column is only
    the Serf member found at the peer's address, wrong once a dead node's address was reused."""
    rows = []
    for line in peers_text.splitlines():
        cols = line.split()
        if len(cols) == 5 and cols[0] != "Node":
            rows.append((cols[1], cols[2], cols[3], cols[4] == "true"))
    return rows


def voter_rows(peers_text: str) -> dict[str, bool]:
    """Server ID -> whether it is a voter, from `dkron raft list-peers`."""
    return {server_id: voter for server_id, _, _, voter in peer_rows(peers_text)}


def samples(
    is_leader: bool,
    sees_leader: bool,
    members: Sequence[Mapping[str, Any]],
    voters: Mapping[str, bool] | None,
    jobs: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[tuple[str, dict[str, str], float]]:
    """The metrics as (name, labels, value), from what the agent answered (pure)."""
    found: list[tuple[str, dict[str, str], float]] = [
        ("dkron_iac_node_is_leader", {}, float(is_leader)),
        ("dkron_iac_node_sees_leader", {}, float(sees_leader)),
    ]
    if is_leader and voters is not None:
        alive = {
            str(m.get("Name"))
            for m in members
            if m.get("Status") == SERF_ALIVE and (m.get("Tags") or {}).get("server") == "true"
        }
        for peer in sorted(alive | set(voters)):
            found.append(("dkron_iac_raft_voter", {"peer": peer}, float(voters.get(peer, False))))
    for job in jobs:
        # Not `job`: Prometheus gives every series its scrape job under that name.
        labels = {"dkron_job": str(job.get("name", ""))}
        success, error = parse_time(job.get("last_success")), parse_time(job.get("last_error"))
        failed = last_run_failed(job)
        if failed is not None:
            found.append(("dkron_iac_job_last_run_failed", labels, float(failed)))
        if success is not None:
            found.append(("dkron_iac_job_last_success_timestamp_seconds", labels, success.timestamp()))
        if error is not None:
            found.append(("dkron_iac_job_last_error_timestamp_seconds", labels, error.timestamp()))
        found.append(("dkron_iac_job_success_total", labels, float(job.get("success_count") or 0)))
        found.append(("dkron_iac_job_error_total", labels, float(job.get("error_count") or 0)))
        due = due_unserved(job, now)
        found.append(
            ("dkron_iac_job_unserved_due_seconds", labels, (now - due).total_seconds() if due else 0.0)
        )
    return found


def exposition(found: Sequence[tuple[str, dict[str, str], float]]) -> str:
    """Prometheus' text format, each family once with its HELP and TYPE."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in found:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {HELP[name]}")
            lines.append(f"# TYPE {name} {'counter' if name in COUNTERS else 'gauge'}")
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        number = repr(float(value))
        lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")
    return "\n".join(lines) + "\n"


class Agent:
    """This node's agent, asked at each scrape."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def status(self, path: str) -> tuple[int, Any]:
        return local_api.call_json(self.base, "GET", path, 3.0)

    def dkron_metrics(self) -> tuple[int, bytes]:
        """Dkron's own metrics, passed on as they are (Prometheus reads them here: the
        agent's API wants the stack's token, which Prometheus does not hold)."""
        return local_api.call(self.base, "GET", "/metrics", 5.0)

    def raft_voters(self) -> dict[str, bool] | None:
        command = ["dkron", "raft", "list-peers"]
        if os.environ.get(RPC_ADDR_ENV):
            command.append(f"--rpc-addr={os.environ[RPC_ADDR_ENV]}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return voter_rows(done.stdout) if done.returncode == 0 else None

    def scrape(self) -> str:
        is_leader = self.status("/v1/isleader")[0] == 200
        code, leader = self.status("/v1/leader")
        members = self.status("/v1/members")[1] or []
        jobs = self.status("/v1/jobs")[1] or []
        voters = self.raft_voters() if is_leader else None
        now = datetime.now(UTC)
        found = samples(is_leader, code == 200 and bool(leader), members, voters, jobs, now)
        ends = certificate_expiry(CERT_PATH)
        if ends is not None:
            found.append(("dkron_iac_node_certificate_expiry_timestamp_seconds", {}, ends))
        return exposition(found)


def certificate_expiry(path: str) -> float | None:
    """When the PEM certificate at `path` ends (Unix time); None without one.

    The standard library has no public X.509 parser; CPython's `ssl` module
    decodes a certificate file for its own tests, and that is enough here.
    """
    if not os.path.exists(path):
        return None
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (AttributeError, KeyError, ValueError, ssl.SSLError):
        return None


def serve(agent: Agent, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in ("/metrics", DKRON_METRICS_PATH):
                self.send_error(404)
                return
            try:
                if path == DKRON_METRICS_PATH:
                    code, body = agent.dkron_metrics()
                else:
                    body, code = agent.scrape().encode(), 200
            except OSError as err:  # the agent is starting or stopping: the scrape fails, `up` says so
                body, code = f"agent not answering: {err}\n".encode(), 503
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # a scrape every few seconds is not news
            return

    ThreadingHTTPServer(("", port), Handler).serve_forever()


if __name__ == "__main__":
    try:
        serve(
            Agent(os.environ.get(API_ENV, "http://127.0.0.1:8080")),
            int(os.environ.get(PORT_ENV, DEFAULT_PORT)),
        )
    except KeyboardInterrupt:
        sys.exit(0)
