"""Someone on the network without the stack's credentials, for the mutual TLS tests.

Each attempt is a real client: the stack's own `dkron` command (gRPC) in a
throwaway container of the node image, a TLS client and a plain Raft sender
(this module run as a script, so a lab test can run it inside another host's
network namespace: `python -m testing.intruder handshake ADDRESS PORT [DIR]`).
Credentials are a folder with `ca.pem`, `cert.pem`, `key.pem` and a
`dkron.yml` whose `tls:` section names them as mounted at /creds.
"""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

import requests
import urllib3
import yaml

from components import pki
from components.docker_objects.client import engine
from components.node_config import NODE_KEY_ENV, TLS_CA_PATH, TLS_CERT_PATH

CREDS_MOUNT = "/creds"


def credentials(into: Path, ca_pem: str, cert_pem: str, key_pem: str) -> Path:
    """A folder of credentials as the `dkron` command reads them (see the module docstring)."""
    into.mkdir(mode=0o755, parents=True, exist_ok=True)
    config = {
        "tls": {
            "ca-file": f"{CREDS_MOUNT}/ca.pem",
            "cert-file": f"{CREDS_MOUNT}/cert.pem",
            "key-file": f"{CREDS_MOUNT}/key.pem",
        }
    }
    files = {"ca.pem": ca_pem, "cert.pem": cert_pem, "key.pem": key_pem, "dkron.yml": yaml.safe_dump(config)}
    for name, text in files.items():
        (into / name).write_text(text)
        (into / name).chmod(0o644)
    return into


def other_ca(into: Path) -> Path:
    """A CA that is not the stack's, and a node certificate it signed (named as a real node)."""
    ca = pki.make_ca("intruder")
    issued = pki.issue(ca, "n1", ["n1", "localhost"], ["127.0.0.1"], days=30)
    return credentials(into, ca.cert_pem, issued.cert_pem, issued.key_pem)


def node_credentials(container: str, into: Path, engine_ref: str | None = None) -> Path:
    """A node's own CA, certificate and key, as whoever copied them off it would hold them."""
    with engine(engine_ref) as client:
        node = client.containers.get(container)
        env = node.attrs["Config"]["Env"]
        key = next(e.split("=", 1)[1] for e in env if e.startswith(f"{NODE_KEY_ENV}="))
        ca, cert = (node.exec_run(["cat", path]).output.decode() for path in (TLS_CA_PATH, TLS_CERT_PATH))
    return credentials(into, ca, cert, key)


def dkron(
    image: str,
    args: list[str],
    creds: Path | None,
    engine_ref: str | None = None,
    network: str = "host",
    labels: dict[str, str] | None = None,
) -> tuple[int, str]:
    """`dkron <args>` in a throwaway container of `image` on `network` (with `creds`
    as its config, or none: a plain client, as Dkron's own command is); exit code and output."""
    with engine(engine_ref) as client:
        config = f"{CREDS_MOUNT}/dkron.yml" if creds else "/nonexistent/dkron.yml"
        container = client.containers.run(
            image,
            entrypoint=["dkron", *args, "--config", config],
            network=network,
            volumes={str(creds): {"bind": CREDS_MOUNT, "mode": "ro"}} if creds else {},
            labels=labels or {},
            detach=True,
        )
        try:
            code = int(container.wait(timeout=60)["StatusCode"])
            return code, container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)


# `python3 -c` in a container of the node image (which has no `requests`): a caller without
# credentials at BASE_URL (argv[1]), over HTTPS trusting anything and in clear. Prints
# `refused` (every attempt 401 or no answer) or `accepted`, with the status codes.
API_PROBE = """
import ssl, sys, urllib.error, urllib.request
base, context, codes = sys.argv[1], ssl._create_unverified_context(), []
body = b'{"name": "planted", "schedule": "@every 1s", "executor": "shell", "executor_config": {"command": "id"}}'
for url in (base, base.replace("https://", "http://", 1)):
    for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/ui/"), ("POST", "/v1/leave")):
        request = urllib.request.Request(url + path, method=method, data=body if method == "POST" else None)
        request.add_header("Content-Type", "application/json")
        try:
            codes.append(urllib.request.urlopen(request, context=context, timeout=5).status)
        except urllib.error.HTTPError as err:
            codes.append(err.code)
        except OSError:
            codes.append(0)
print("refused" if all(c in (0, 400, 401) for c in codes) else "accepted", codes)
"""


def api_probe(
    image: str,
    base: str,
    engine_ref: str | None = None,
    network: str = "host",
    labels: dict[str, str] | None = None,
) -> str:
    """`API_PROBE` against ``base`` in a throwaway container of `image` on `network`; what it printed."""
    with engine(engine_ref) as client:
        container = client.containers.run(
            image,
            entrypoint=["python3", "-c", API_PROBE, base],
            network=network,
            labels=labels or {},
            detach=True,
        )
        try:
            container.wait(timeout=60)
            return str(container.logs().decode(errors="replace"))
        finally:
            container.remove(force=True)


def handshake_refused(address: str, port: int, creds: Path | None) -> bool:
    """A TLS client on the RPC port (with `creds`' certificate, or none) is turned away."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if creds is not None:
        context.load_cert_chain(creds / "cert.pem", creds / "key.pem")
    try:
        with socket.create_connection((address, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            # TLS 1.3: the server checks the client's certificate after the
            # client's side of the handshake; its verdict comes with the first read.
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return tls.recv(64) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    except TimeoutError:
        return False  # accepted, waiting for more: not refused


def plain_raft_refused(address: str, port: int) -> bool:
    """Raft's framing in clear (an AppendEntries type byte and a msgpack start) gets no answer."""
    with socket.create_connection((address, port), timeout=5) as raw:
        raw.sendall(b"\x00" + b"\x81\xa4Term\x01" * 40)
        try:
            answer = raw.recv(64)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
    # Closed, or a TLS alert record and closed: never a Raft answer.
    return answer == b"" or answer[:1] == b"\x15"


# A job that would run a shell command on every node, were it accepted.
PLANTED_JOB = {
    "name": "planted",
    "schedule": "@every 1s",
    "executor": "shell",
    "executor_config": {"command": "id"},
}


def api_refused(base: str, token: str | None = None, creds: Path | None = None) -> bool:
    """A node's API (``https://HOST:PORT``) turns away a caller without the stack's
    credentials: none, a wrong ``token`` (as a bearer and as a browser's login), or another
    CA's client certificate (``creds``); in clear too. Every way must fail (reading the
    jobs, the UI, planting a job, making the node leave), and the node must have answered
    at least once (a port nobody serves refuses nothing)."""
    return refused_by(api_answers(base, token, creds))


def refused_by(codes: list[int]) -> bool:
    """No attempt let in, and the node answered at least one."""
    return all(code >= 400 or code == 0 for code in codes) and any(code != 0 for code in codes)


def api_answers(base: str, token: str | None = None, creds: Path | None = None) -> list[int]:
    """The status of each attempt `api_refused` makes (0: no answer, the handshake refused)."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    session = requests.Session()
    if creds is not None:
        session.cert = (str(creds / "cert.pem"), str(creds / "key.pem"))
    headers = [{}] if token is None else [{"Authorization": f"Bearer {token}"}, {}]
    auth = None if token is None else ("admin", token)
    plain = base.replace("https://", "http://", 1)
    codes: list[int] = []
    attempts = [
        ("GET", f"{base}/v1/jobs"),
        ("GET", f"{base}/ui/"),
        ("POST", f"{base}/v1/jobs"),
        ("POST", f"{base}/v1/leave"),
        ("GET", f"{plain}/v1/jobs"),
        ("POST", f"{plain}/v1/jobs"),
    ]
    for method, url in attempts:
        for header in headers:
            try:
                answer = session.request(
                    method,
                    url,
                    json=PLANTED_JOB if method == "POST" else None,
                    headers=header,
                    auth=auth if not header else None,
                    timeout=5,
                    # Per request: a session's `verify` loses to REQUESTS_CA_BUNDLE.
                    verify=False,  # whoever this is trusts nothing
                )
            except requests.RequestException:
                codes.append(0)  # no session at all
                continue
            codes.append(answer.status_code)
            if answer.status_code < 400:
                return codes  # let in: no need to plant the job as well
    return codes


def main(argv: list[str]) -> int:
    """`handshake ADDRESS PORT [DIR]`, `raft ADDRESS PORT` or `api BASE_URL [TOKEN|-] [DIR]`:
    prints `refused` or `accepted`."""
    what = argv[0]
    if what == "api":
        token = argv[2] if len(argv) > 2 and argv[2] != "-" else None
        creds = Path(argv[3]) if len(argv) > 3 else None
        codes = api_answers(argv[1], token, creds)
        print("refused" if refused_by(codes) else "accepted", file=sys.stdout)
        print(f"answers: {codes}", file=sys.stderr)
        return 0
    address, port = argv[1], int(argv[2])
    if what == "handshake":
        refused = handshake_refused(address, port, Path(argv[3]) if len(argv) > 3 else None)
    else:
        refused = plain_raft_refused(address, port)
    print("refused" if refused else "accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
