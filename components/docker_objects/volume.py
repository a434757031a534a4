"""``DockerVolume``: a named local volume, which may outlive its resource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import docker.errors
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from components.docker_objects.client import DockerResourceError, engine_api, explain, removing
from components.docker_objects.props import (
    Normalizer,
    inputs_of,
    missing,
    norm_bool,
    norm_map,
    reflect,
    text,
    text_map,
)
from components.docker_objects.provider import (
    ENGINE_FIELD,
    TYPE_MODULE,
    DockerProvider,
    dropped_when_unreachable,
    engine_of,
    read_as_recorded_when_unreachable,
)

__all__ = ["DockerVolume", "DockerVolumeProvider"]


class DockerVolumeProvider(DockerProvider):
    """A named volume; ``retain_on_delete`` changes in place, the rest replaces
    (and a replaced volume loses its data unless it is retained).

    Docker's volume create returns an existing volume of the same name instead
    of failing, which is what lets a retained volume be adopted again; such a
    volume keeps the labels it was first created with.
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "name": text,
        "labels": norm_map,
        **ENGINE_FIELD,
    }
    update_fields: ClassVar[dict[str, Normalizer]] = {"retain_on_delete": norm_bool}

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = inputs_of(props, self.input_fields())
        with engine_api(engine_of(spec)) as api:
            try:
                created = api.create_volume(spec["name"], driver="local", labels=text_map(spec["labels"]))
            except docker.errors.APIError as err:
                raise DockerResourceError(f"creating volume {spec['name']!r} failed: {explain(err)}") from err
        return CreateResult(created["Name"], {**spec, **self._outputs(created)})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        outputs = {
            "volume_name": olds.get("volume_name"),
            "mountpoint": olds.get("mountpoint"),
        }
        return UpdateResult({**inputs_of(news, self.input_fields()), **outputs})

    @read_as_recorded_when_unreachable
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with engine_api(engine_of(props)) as api:
            try:
                info = api.inspect_volume(id_)
            except docker.errors.NotFound:
                return missing()
        live = {"name": info["Name"], "labels": info.get("Labels") or {}, "engine": props.get("engine")}
        inputs = {
            **reflect(props, live, self.replace_fields),
            "retain_on_delete": bool(props.get("retain_on_delete")),
        }
        return ReadResult(id_, {**inputs, **self._outputs(info)}, inputs)

    @dropped_when_unreachable
    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("retain_on_delete"):
            return
        with (
            engine_api(engine_of(props)) as api,
            removing(f"volume {id_!r}", " (still mounted by a container?)"),
        ):
            api.remove_volume(id_)

    @staticmethod
    def _outputs(info: Mapping[str, Any]) -> dict[str, Any]:
        return {"volume_name": info["Name"], "mountpoint": info.get("Mountpoint", "")}


class DockerVolume(Resource, module=TYPE_MODULE, name="DockerVolume"):
    """A named local volume. With ``retain_on_delete`` the volume (and its
    data) outlives the resource, and a later create adopts it again."""

    name: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    retain_on_delete: pulumi.Output[bool]
    volume_name: pulumi.Output[str]
    mountpoint: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        retain_on_delete: pulumi.Input[bool] = False,
        engine: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``engine``: the engine the volume lives on (an engine reference,
        ``components.docker_objects.client``; "" is the local one)."""
        super().__init__(
            DockerVolumeProvider(),
            resource_name,
            {
                "name": name,
                "engine": engine,
                "labels": {} if labels is None else labels,
                "retain_on_delete": retain_on_delete,
                "volume_name": None,
                "mountpoint": None,
            },
            opts,
        )
