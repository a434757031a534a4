"""The stack's CA, node certificates, their renewal, and the move between
transports, as logic: no engine needed (tests/integration/test_mutual_tls.py
runs them on real nodes)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from components import pki
from components.certificates import NodeCertificateProvider, StackCAProvider
from components.change_summary import TO_TLS, ClusterChange, change_lines
from components.config_errors import StackConfigError
from components.node_config import PLAIN, RPC_TLS, SECURED, bootstrap_plan, node_settings, transport
from components.spec import load_cluster_spec
from components.status import NodeStatus, certificate_problems
from components.transport import TransportStepProvider, transport_moves
from nodeside.exporter import certificate_expiry

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca("unit", now=NOW)


def _cert(issued: pki.Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem.encode())


def test_the_ca_signs_certificates_only_and_outlives_them(ca: pki.Issued) -> None:
    cert = _cert(ca)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    assert cert.not_valid_after_utc - NOW > dt.timedelta(days=pki.CA_DAYS - 1)
    assert "PRIVATE KEY" in ca.key_pem


def test_a_node_certificate_names_what_peers_dial_and_serves_both_ways(ca: pki.Issued) -> None:
    issued = pki.issue(ca, "n1", ["n1", "t-n1", "localhost"], ["10.0.0.5", "127.0.0.1"], days=365, now=NOW)
    cert = _cert(issued)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["n1", "t-n1", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued.not_after == NOW + dt.timedelta(days=365)
    assert pki.signed_by(issued.cert_pem, ca.cert_pem)
    assert not pki.signed_by(issued.cert_pem, pki.make_ca("other").cert_pem)


def test_a_certificate_is_due_for_renewal_only_within_the_window(ca: pki.Issued) -> None:
    issued = pki.issue(ca, "n1", ["n1"], [], days=365, now=NOW)
    assert not pki.due_for_renewal(issued.cert_pem, 60, now=NOW)
    assert not pki.due_for_renewal(issued.cert_pem, 60, now=NOW + dt.timedelta(days=304))
    assert pki.due_for_renewal(issued.cert_pem, 60, now=NOW + dt.timedelta(days=306))


def _props(ca: pki.Issued, **changes: Any) -> dict[str, Any]:
    return {
        "ca_cert_pem": ca.cert_pem,
        "ca_key_pem": ca.key_pem,
        "common_name": "n1",
        "dns_names": ["n1", "localhost"],
        "ip_addresses": ["127.0.0.1"],
        "days": 365,
        "renew_within_days": 60,
        **changes,
    }


def test_a_node_certificate_is_made_again_when_what_it_names_or_its_ca_changes(ca: pki.Issued) -> None:
    provider = NodeCertificateProvider()
    olds = provider.create(_props(ca)).outs or {}
    assert pki.signed_by(olds["cert_pem"], ca.cert_pem)

    same = provider.diff("cert-n1", olds, _props(ca))
    assert not same.changes
    assert set(same.stables or []) == {"cert_pem", "key_pem", "not_after"}
    assert provider.diff("cert-n1", olds, _props(ca, ip_addresses=["10.0.0.9"])).replaces == ["ip_addresses"]
    other = pki.make_ca("other")
    assert provider.diff("cert-n1", olds, _props(other)).replaces == ["ca_cert_pem"]
    # A new renewal window alone keeps the certificate.
    widened = provider.diff("cert-n1", olds, _props(ca, renew_within_days=90))
    assert widened.changes
    assert not widened.replaces
    kept = provider.update("cert-n1", olds, _props(ca, renew_within_days=90)).outs or {}
    assert kept["cert_pem"] == olds["cert_pem"]
    assert kept["renew_within_days"] == 90


def test_a_node_certificate_ending_within_the_window_is_made_again(ca: pki.Issued) -> None:
    provider = NodeCertificateProvider()
    olds = provider.create(_props(ca, days=30)).outs or {}
    assert not provider.diff("cert-n1", olds, _props(ca, days=30, renew_within_days=20)).replaces
    renewed = provider.diff("cert-n1", olds, _props(ca, days=30, renew_within_days=30))
    assert renewed.replaces == ["not_after"]


def test_the_stack_ca_is_made_once() -> None:
    provider = StackCAProvider()
    made = provider.create({"stack": "unit"}).outs or {}
    assert made["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert not provider.diff("stack-ca", made, {"stack": "renamed"}).changes


def _spec(**security: Any) -> Any:
    raw: dict[str, Any] = {"name": "unit", "nodes": [{"name": n} for n in ("a", "b", "c")]}
    if security:
        raw["security"] = security
    return load_cluster_spec("unit", raw)


def test_nodes_made_before_tls_move_and_nodes_already_on_it_stay() -> None:
    spec = _spec()
    plan = bootstrap_plan(spec, None)
    on_tls = {n.name: {"config": node_settings(spec, n, plan)} for n in spec.nodes}
    plain_spec = _spec(mutual_tls=False)
    plain = {n.name: {"config": node_settings(plain_spec, n, plan)} for n in plain_spec.nodes}
    assert transport_moves(SECURED, on_tls) == []
    assert transport_moves(SECURED, plain) == ["a", "b", "c"]
    assert transport_moves(PLAIN, on_tls) == ["a", "b", "c"]
    # Nodes with mutual TLS on the RPC port alone (before the HTTPS API) move too.
    rpc_only = {"a": {"config": {"tls": {"ca-file": "/etc/dkron/ca.pem"}}}}
    assert transport(rpc_only["a"]) == RPC_TLS
    assert transport_moves(SECURED, rpc_only) == ["a"]
    # A record from before dkron.yml was recorded ran in clear.
    assert transport_moves(SECURED, {"a": {"container": "unit-a"}}) == ["a"]
    assert transport_moves(SECURED, {}) == []


def test_a_transport_step_recorded_before_the_https_api_moves_once_more() -> None:
    provider = TransportStepProvider()
    new = {"transport": SECURED, "stop": {}}
    assert provider.diff("transport", {"mutual_tls": True, "stop": {}}, new).replaces == ["transport"]
    assert provider.diff("transport", {"mutual_tls": False, "stop": {}}, new).replaces == ["transport"]
    assert not provider.diff("transport", {**new, "stopped": []}, new).changes
    assert not provider.diff("transport", {"mutual_tls": False}, {"transport": PLAIN, "stop": {}}).changes


def test_the_preview_says_the_move_restarts_every_node_at_once() -> None:
    spec, plain_spec = _spec(), _spec(mutual_tls=False)
    plan = bootstrap_plan(spec, None)
    before = {n.name: {"config": node_settings(plain_spec, n, plan)} for n in spec.nodes}
    after = {n.name: {"config": node_settings(spec, n, plan)} for n in spec.nodes}
    change = ClusterChange(
        previous_nodes=before,
        nodes=after,
        previous_image={},
        image={},
        order=["a", "b", "c"],
        leader=None,
        transport_moves=("a", "b", "c"),
    )
    lines = change_lines(change)
    assert lines[0] == TO_TLS
    assert lines[1].startswith(
        "a: replace: tls.api-token-env (unset) -> DKRON_IAC_API_TOKEN; tls.ca-file (unset)"
    )
    assert not any("leader, last" in line for line in lines)


@pytest.mark.parametrize(
    ("security", "message"),
    [
        (
            {"renew_within_days": 400},
            "renew_within_days (400) must be below node_certificate_days (365)",
        ),
        ({"node_certificate_days": 1}, "cluster.security.node_certificate_days = 1: must be greater than"),
        ({"renew_within_days": 0}, "cluster.security.renew_within_days = 0: must be greater than 0"),
    ],
)
def test_bad_certificate_settings_are_refused_naming_the_setting(
    security: dict[str, Any], message: str
) -> None:
    with pytest.raises(StackConfigError) as raised:
        _spec(**security)
    assert message in str(raised.value)


def test_status_names_the_nodes_whose_certificate_ends_within_thirty_days() -> None:
    def node(name: str, ends: dt.datetime | None) -> NodeStatus:
        return NodeStatus(
            name=name, api_url="", container="", certificate_ends=ends.isoformat() if ends else None
        )

    nodes = [
        node("a", NOW + dt.timedelta(days=200)),
        node("b", NOW + dt.timedelta(days=12, hours=3)),
        node("c", NOW - dt.timedelta(hours=2)),
        node("d", None),
    ]
    assert certificate_problems(nodes, NOW) == [
        "b: its certificate ends in 12d03h: `make up` makes a new one (rolling)",
        "c: its certificate ended 2h00m ago: `make up` makes a new one (rolling)",
    ]


def test_the_exporter_reads_when_the_node_certificate_ends(ca: pki.Issued, tmp_path: Path) -> None:
    issued = pki.issue(ca, "n1", ["n1"], [], days=365, now=NOW)
    path = tmp_path / "node.pem"
    path.write_text(issued.cert_pem)
    assert certificate_expiry(str(path)) == (NOW + dt.timedelta(days=365)).timestamp()
    assert certificate_expiry(str(tmp_path / "none.pem")) is None
