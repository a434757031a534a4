"""Who gets the stack's API token: HTTPS URLs it was given for, never a plain one; and the
node's own processes reach the agent on its socket (a real Unix socket server here)."""

from __future__ import annotations

import http.server
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from components import pki
from components.api_access import Credentials, authorize, authorize_outputs, authorize_props, credentials_for
from components.dkron_client import DkronClient
from nodeside import local_api
from nodeside.catchup import Api

CA = pki.make_ca("unit").cert_pem


def test_a_client_sends_the_token_only_to_the_https_urls_it_was_given_for() -> None:
    authorize(["https://127.0.0.1:18401", "http://127.0.0.1:18402"], {"token": "t0k", "ca": CA})
    with DkronClient("https://127.0.0.1:18401/") as client:
        assert client._session.headers["Authorization"] == "Bearer t0k"
        assert Path(str(client._verify)).read_text() == CA
    # Given for a plain URL too, the token is still never sent in clear.
    with DkronClient("http://127.0.0.1:18402") as client:
        assert "Authorization" not in client._session.headers
    # Another node: nothing, and its certificate is checked against the system's roots.
    with DkronClient("https://127.0.0.1:18403") as client:
        assert "Authorization" not in client._session.headers
        assert client._verify is None


def test_credentials_come_from_a_providers_inputs_and_a_stacks_outputs() -> None:
    authorize_props({"api_urls": {"a": "https://127.0.0.1:18411"}, "api_auth": {"token": "x", "ca": CA}})
    authorize_props({"api_urls": ["https://127.0.0.1:18412"], "api_auth": {"token": "y", "ca": CA}})
    authorize_outputs(
        {
            "nodes": {"n1": {"api_url": "https://127.0.0.1:18413#ssh://root@10.0.0.1"}},
            "api_auth": {"token": "z", "ca": CA},
        }
    )
    assert credentials_for("https://127.0.0.1:18411") == Credentials("x", CA)
    assert credentials_for("https://127.0.0.1:18412/") == Credentials("y", CA)
    assert credentials_for("https://127.0.0.1:18413#ssh://root@10.0.0.1") == Credentials("z", CA)
    # A stack without mutual TLS has no credentials: nothing is recorded.
    authorize_props({"api_urls": ["http://127.0.0.1:18414"]})
    assert credentials_for("http://127.0.0.1:18414") is None
    # The token never shows in a repr (tracebacks, logs).
    assert "s3cret-t0ken" not in repr(Credentials("s3cret-t0ken", CA))


class _Agent(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"Name": "n1"}' if self.path == "/v1/leader" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "api.sock")

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    class Handler(_Agent):
        def address_string(self) -> str:  # a Unix peer has no host
            return "local"

    server = Server(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()


def test_the_watcher_reaches_the_agent_on_its_socket(agent_socket: str) -> None:
    api = Api(f"unix://{agent_socket}")
    assert api.call("GET", "/v1/leader") == (200, {"Name": "n1"})
    assert api.call("GET", "/v1/nothing") == (404, None)
    assert local_api.call(f"unix://{agent_socket}", "GET", "/v1/leader", 2.0)[0] == 200


def test_a_socket_nobody_serves_is_an_os_error_and_a_bad_base_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        local_api.call(f"unix://{tmp_path}/none.sock", "GET", "/v1/leader", 1.0)
    with pytest.raises(ValueError, match="unix:// socket or an http:// URL"):
        Api("ftp://x")


def test_a_client_verifies_the_node_against_the_stacks_ca_whatever_the_environment_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real HTTPS server with a node certificate of a stack's CA: the client trusts that CA
    even where REQUESTS_CA_BUNDLE names the system's roots (which would win over a session's
    own setting), and shows the token."""
    ca = pki.make_ca("unit")
    issued = pki.issue(ca, "n1", ["n1", "localhost"], ["127.0.0.1"], days=2)
    (tmp_path / "node.pem").write_text(issued.cert_pem)
    (tmp_path / "node.key").write_text(issued.key_pem)
    seen: list[str] = []

    class Handler(_Agent):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "node.pem", tmp_path / "node.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        authorize([url], {"token": "t0k3n", "ca": ca.cert_pem})
        with DkronClient(url) as client:
            assert client.leader() == {"Name": "n1"}
        assert seen == ["Bearer t0k3n"]
        # Another CA's node is not trusted.
        authorize([url], {"token": "t0k3n", "ca": pki.make_ca("other").cert_pem})
        with DkronClient(url) as client, pytest.raises(requests.exceptions.SSLError):
            client.leader()
    finally:
        server.shutdown()
        server.server_close()
