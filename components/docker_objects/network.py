"""``DockerNetwork``: a user-defined bridge network, optionally with a fixed subnet."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import docker
import docker.errors
import docker.types
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.docker_objects.client import DockerResourceError, engine_api, explain, removing
from components.docker_objects.props import Normalizer, inputs_of, missing, norm_map, reflect, text, text_map
from components.docker_objects.provider import TYPE_MODULE, DockerProvider

__all__ = ["DockerNetwork", "DockerNetworkProvider"]


def _within(value: ipaddress.IPv4Address | ipaddress.IPv4Network, network: ipaddress.IPv4Network) -> bool:
    if isinstance(value, ipaddress.IPv4Network):
        return value.subnet_of(network)
    return value in network


def _ipam(spec: Mapping[str, Any]) -> docker.types.IPAMConfig | None:
    subnet = text(spec.get("subnet"))
    if not subnet:
        return None
    pool = docker.types.IPAMPool(
        subnet=subnet,
        gateway=text(spec.get("gateway")) or str(ipaddress.IPv4Network(subnet).network_address + 1),
        iprange=text(spec.get("ip_range")) or None,
    )
    return docker.types.IPAMConfig(pool_configs=[pool])


class DockerNetworkProvider(DockerProvider):
    """A user-defined bridge network. Any change replaces it.

    With a ``subnet`` (IPv4 CIDR), containers may be given fixed addresses in
    it; ``gateway`` defaults to the subnet's first address, and ``ip_range``
    (inside the subnet) is where Docker hands out addresses to containers that
    ask for none. Without one Docker picks a subnet, and no container on the
    network can have a fixed address.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": text,
        "labels": norm_map,
        "subnet": text,
        "gateway": text,
        "ip_range": text,
    }

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        yield from super().problems(news)
        subnet = text(news.get("subnet"))
        if not subnet:
            for field in ("gateway", "ip_range"):
                if text(news.get(field)):
                    yield field, "needs a subnet"
            return
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as err:
            yield "subnet", f"{subnet!r} is not an IPv4 network in CIDR form: {err}"
            return
        for field, parse in (("gateway", ipaddress.IPv4Address), ("ip_range", ipaddress.IPv4Network)):
            value = text(news.get(field))
            if not value:
                continue
            try:
                inside = _within(parse(value), network)
            except ValueError as err:
                yield field, f"{value!r} is not valid: {err}"
                continue
            if not inside:
                yield field, f"{value!r} is not inside the subnet {subnet}"

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = inputs_of(props, self.input_fields())
        with engine_api() as api:
            try:
                created = api.create_network(
                    spec["name"],
                    driver="bridge",
                    labels=text_map(spec["labels"]),
                    ipam=_ipam(spec),
                    check_duplicate=True,
                )
            except docker.errors.APIError as err:
                raise DockerResourceError(
                    f"creating network {spec['name']!r} failed: {explain(err)}"
                ) from err
        network_id = created["Id"]
        return CreateResult(network_id, {**spec, "network_id": network_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with engine_api() as api:
            try:
                info = api.inspect_network(id_)
            except docker.errors.NotFound:
                return missing()
        pool = ((info.get("IPAM") or {}).get("Config") or [{}])[0]
        live = {"name": info["Name"], "labels": info.get("Labels") or {}}
        # Docker reports the subnet it picked too; only a declared one is managed.
        for field, key in (("subnet", "Subnet"), ("gateway", "Gateway"), ("ip_range", "IPRange")):
            live[field] = pool.get(key) if text(props.get(field)) else props.get(field)
        inputs = reflect(props, live, self.replace_fields)
        return ReadResult(id_, {**inputs, "network_id": info["Id"]}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        what = f"network {props.get('name')!r}"
        with engine_api() as api, removing(what, " (still has containers attached?)"):
            api.remove_network(id_)


class DockerNetwork(Resource, module=TYPE_MODULE, name="DockerNetwork"):
    """A Docker bridge network; ``network_id`` is the engine's ID."""

    name: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    subnet: pulumi.Output[str | None]
    gateway: pulumi.Output[str | None]
    ip_range: pulumi.Output[str | None]
    network_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        subnet: pulumi.Input[str] | None = None,
        gateway: pulumi.Input[str] | None = None,
        ip_range: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerNetworkProvider(),
            resource_name,
            {
                "name": name,
                "labels": {} if labels is None else labels,
                "subnet": subnet,
                "gateway": gateway,
                "ip_range": ip_range,
                "network_id": None,
            },
            opts,
        )
