"""A gossip encryption key made once per stack and kept as a Pulumi secret.

Serf accepts a base64 key of 16, 24 or 32 bytes (what `dkron keygen` makes).
The key is generated in the provider, so it never appears in the program or
the stack config, and it stays the same for the life of the stack: changing
it would split the cluster.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

KEY_BYTES = 32


class GossipKeyProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        key = base64.b64encode(os.urandom(KEY_BYTES)).decode()
        return CreateResult(id_="gossip-key", outs={**props, "key": key})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[], stables=["key"], delete_before_replace=False)


class GossipKey(pulumi.dynamic.Resource, module="secrets", name="GossipKey"):
    key: pulumi.Output[str]

    def __init__(self, resource_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            GossipKeyProvider(),
            resource_name,
            {"key": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["key"])),
        )
