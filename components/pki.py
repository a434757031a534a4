"""The stack's certificate authority and its node certificates, as PEM text.

Pure: keys and certificates are made here and handed back; the providers in
`components.certificates` keep them in the Pulumi state (the keys as secrets).
Keys are ECDSA P-256. The CA signs node certificates only; each node's
certificate serves its RPC port and identifies it when it dials another node
(both extended key usages), and names what peers and tools dial: the node's
name, its container's name, its address and the loopback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The CA outlives every node certificate it signs; it is not renewed in place
# (README, "Mutual TLS": what a CA at its end takes).
CA_DAYS = 3650
# A node certificate ending within this many days is a problem: `make status`
# says so and the alert rule fires (`make up` renews well before, by default).
EXPIRY_WARNING_DAYS = 30
# Issued a little in the past: a host whose clock is behind still accepts it.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM text."""

    cert_pem: str
    key_pem: str

    @property
    def not_after(self) -> dt.datetime:
        return not_after(self.cert_pem)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _signing(certificates: bool) -> x509.KeyUsage:
    """Signatures only: of TLS handshakes, and for the CA of certificates (and their revocation lists)."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=certificates,
        crl_sign=certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(stack: str, now: dt.datetime | None = None) -> Issued:
    """A new CA for `stack`: self-signed, allowed to sign node certificates only."""
    key = _new_key()
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dkron-iac {stack} CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_signing(certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def issue(
    ca: Issued,
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    days: float,
    now: dt.datetime | None = None,
) -> Issued:
    """A certificate for a node (server and client), signed by `ca`."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the stack's CA key is not an ECDSA key")
    key = _new_key()
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ip_addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + BACKDATE + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signing(certificates=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def not_after(cert_pem: str) -> dt.datetime:
    """When a PEM certificate ends (UTC)."""
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def signed_by(cert_pem: str, ca_cert_pem: str) -> bool:
    """Whether `cert_pem` was signed by the CA whose certificate is given."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - InvalidSignature and friends: not ours
        return False
    return True


def due_for_renewal(cert_pem: str, renew_within_days: float, now: dt.datetime | None = None) -> bool:
    """Whether a certificate ends within `renew_within_days` of `now`."""
    left = not_after(cert_pem) - (now or dt.datetime.now(dt.UTC))
    return left < dt.timedelta(days=renew_within_days)
