"""The stack's CA, its API token and one certificate per node, kept in the Pulumi state.

The CA is made once per stack, like the gossip key; its key is a secret output
and leaves the state only as an input of the node certificates it signs (also
secret). A node certificate is made again when what it names changes, when
its CA changes, or when the update finds it ending within the stack's
`security.renew_within_days`: its node's files change with it, so the node is
replaced in the rolling update (the preview says so, `change_summary`).

The API token is made once per stack too (a secret output): every node's API
answers only a caller that shows it (or a client certificate of the CA).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from components import pki

# What makes a node certificate a new one when it changes.
_ISSUED_FROM = ("ca_cert_pem", "common_name", "dns_names", "ip_addresses", "days")


class StackCAProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        ca = pki.make_ca(str(props["stack"]))
        return CreateResult(
            id_="stack-ca",
            outs={
                **props,
                "cert_pem": ca.cert_pem,
                "key_pem": ca.key_pem,
                "not_after": ca.not_after.isoformat(),
            },
        )

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        # Made once: a new CA would split the cluster until every node moved to it.
        return DiffResult(
            changes=False,
            replaces=[],
            stables=["cert_pem", "key_pem", "not_after"],
            delete_before_replace=False,
        )


class StackCA(pulumi.dynamic.Resource, module="secrets", name="StackCA"):
    """The stack's certificate authority: `cert_pem` public, `key_pem` secret."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(self, resource_name: str, stack: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            StackCAProvider(),
            resource_name,
            {"stack": stack, "cert_pem": None, "key_pem": None, "not_after": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["key_pem"])),
        )


# 32 random bytes, as URL-safe text: a header, a browser's password field and a shell take it as is.
TOKEN_BYTES = 32


class ApiTokenProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="api-token", outs={**props, "token": secrets.token_urlsafe(TOKEN_BYTES)})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[], stables=["token"], delete_before_replace=False)


class ApiToken(pulumi.dynamic.Resource, module="secrets", name="ApiToken"):
    """The stack's API token (secret): what a caller of a node's API shows."""

    token: pulumi.Output[str]

    def __init__(self, resource_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            ApiTokenProvider(),
            resource_name,
            {"token": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["token"])),
        )


class NodeCertificateProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"cert-{props['common_name']}", outs=self._issue(props))

    @staticmethod
    def _issue(props: dict[str, Any]) -> dict[str, Any]:
        issued = pki.issue(
            pki.Issued(cert_pem=str(props["ca_cert_pem"]), key_pem=str(props["ca_key_pem"])),
            common_name=str(props["common_name"]),
            dns_names=list(props["dns_names"]),
            ip_addresses=list(props["ip_addresses"]),
            days=float(props["days"]),
        )
        return {
            **props,
            "cert_pem": issued.cert_pem,
            "key_pem": issued.key_pem,
            "not_after": issued.not_after.isoformat(),
        }

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in _ISSUED_FROM if k in news and news[k] != olds.get(k)]
        cert = olds.get("cert_pem")
        if not replaces and cert and pki.due_for_renewal(str(cert), float(news["renew_within_days"])):
            replaces = ["not_after"]
        changes = bool(replaces) or news.get("renew_within_days") != olds.get("renew_within_days")
        return DiffResult(
            changes=changes,
            replaces=replaces,
            stables=[] if replaces else ["cert_pem", "key_pem", "not_after"],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        kept = {k: olds[k] for k in ("cert_pem", "key_pem", "not_after")}
        return UpdateResult(outs={**news, **kept})


class NodeCertificate(pulumi.dynamic.Resource, module="secrets", name="NodeCertificate"):
    """One node's certificate and key (secret), signed by the stack's CA."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        ca: StackCA,
        common_name: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        days: float,
        renew_within_days: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NodeCertificateProvider(),
            resource_name,
            {
                "ca_cert_pem": ca.cert_pem,
                "ca_key_pem": ca.key_pem,
                "common_name": common_name,
                "dns_names": list(dns_names),
                "ip_addresses": list(ip_addresses),
                "days": days,
                "renew_within_days": renew_within_days,
                "cert_pem": None,
                "key_pem": None,
                "not_after": None,
            },
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["key_pem", "ca_key_pem"])
            ),
        )
