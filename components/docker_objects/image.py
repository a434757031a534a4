"""``DockerImage``: an image built locally from a build context, and the
clean-up of images a rebuild left behind."""

from __future__ import annotations

import os
import posixpath
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import docker
import docker.errors
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.docker_objects.client import DockerResourceError, engine_api, explain, is_conflict
from components.docker_objects.context import clean_include, context_tar, dockerfile_included
from components.docker_objects.props import (
    Normalizer,
    engine_identity,
    inputs_of,
    is_known,
    missing,
    norm_map,
    text,
    text_list,
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

__all__ = [
    "DockerImage",
    "DockerImageCopy",
    "DockerImageCopyProvider",
    "DockerImageProvider",
    "copy_image",
    "image_id_of",
    "remove_unused_images",
]

LOG_TAIL = 30  # lines of build or container log quoted in an error


def _norm_rel_paths(value: Any) -> tuple[str, ...]:
    return tuple(posixpath.normpath(text(v)) for v in (value or []))


def _full_tag(tag: str) -> str:
    """``name`` as Docker lists it in RepoTags (``name:latest``)."""
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _build_image(api: docker.APIClient, spec: Mapping[str, Any]) -> str:
    """Build ``spec`` with the classic builder and return the image ID."""
    tag = text(spec["tag"])
    include = text_list(spec["include"])
    context = context_tar(text(spec["context_root"]), include)
    log: deque[str] = deque(maxlen=LOG_TAIL)

    def failure(reason: str) -> DockerResourceError:
        tail = "\n".join(log) or "(no build output)"
        return DockerResourceError(f"building image {tag!r} failed: {reason}\nlast build output:\n{tail}")

    try:
        for chunk in api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            dockerfile=posixpath.normpath(text(spec["dockerfile"])),
            buildargs=text_map(spec.get("build_args")),
            labels=text_map(spec.get("labels")) or None,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            log.extend(line for line in str(chunk.get("stream", "")).splitlines() if line.strip())
            if "error" in chunk:
                raise failure(str(chunk["error"]).strip())
        return str(api.inspect_image(tag)["Id"])
    except docker.errors.APIError as err:
        raise failure(explain(err)) from err


def _remove_image_quietly(api: docker.APIClient, ref: str) -> None:
    """Untag or remove ``ref``; an image still in use or already gone is left be."""
    try:
        api.remove_image(ref, force=False)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:
        # Another removal of the same image won the race (Docker says so with a 500).
        gone = "unrecognized image" in explain(err) or "No such image" in explain(err)
        if not is_conflict(err) and not gone:
            raise DockerResourceError(f"removing image {ref!r} failed: {explain(err)}") from err


def remove_unused_images(labels: Mapping[str, str], keep: str, engine: str | None = None) -> list[str]:
    """Remove every image carrying all of ``labels`` except ``keep`` (an image
    ID) and those containers still use; returns the IDs removed.

    An image rebuild cannot remove the image it replaces while the old
    containers run on it; this is the clean-up once they are gone. ``engine``:
    where (an engine reference; None is the local one).
    """
    removed = []
    with engine_api(engine) as api:
        in_use = {str(c.get("ImageID")) for c in api.containers(all=True)}
        for image in api.images(filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
            image_id = str(image["Id"])
            if image_id == keep or image_id in in_use:
                continue
            for tag in image.get("RepoTags") or []:
                if tag != "<none>:<none>":
                    _remove_image_quietly(api, tag)
            _remove_image_quietly(api, image_id)
            if image_id_of(api, image_id) is None:
                removed.append(image_id)
    return removed


def image_id_of(api: docker.APIClient, ref: str) -> str | None:
    try:
        return str(api.inspect_image(ref)["Id"])
    except docker.errors.NotFound:
        return None


class DockerImageProvider(DockerProvider):
    """An image built locally from part of a directory.

    Any input change rebuilds in place (``update``); the resource ID is the
    tag at creation, and ``read``/``delete`` work from the ``tag`` and
    ``image_id`` in the state. A rebuild tries to remove the image it
    replaced, which fails quietly while containers still use it.
    """

    update_fields: ClassVar[dict[str, Normalizer]] = {
        "tag": text,
        "context_root": text,
        "include": _norm_rel_paths,
        "dockerfile": lambda v: posixpath.normpath(text(v)),
        "build_args": norm_map,
        "context_digest": text,
        "labels": norm_map,
    }

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not text(news.get("tag")):
            yield "tag", "must be a non-empty image tag"
        root = text(news.get("context_root"))
        if not os.path.isabs(root):
            yield "context_root", f"must be an absolute path, got {root!r}"
        include = news.get("include") or []
        if not include:
            yield "include", "must list at least one file or directory of the context"
        elif is_known(include):
            for entry in include:
                try:
                    clean_include(text(entry))
                except DockerResourceError as err:
                    yield "include", str(err)
            dockerfile = text(news.get("dockerfile"))
            if not dockerfile_included(dockerfile, text_list(include)):
                reason = f"{dockerfile!r} is not in the build context; add it or its directory to include"
                yield "dockerfile", reason

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = inputs_of(props, self.input_fields())
        with engine_api() as api:
            image_id = _build_image(api, spec)
        return CreateResult(text(spec["tag"]), {**spec, "image_id": image_id})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = inputs_of(news, self.input_fields())
        with engine_api() as api:
            image_id = _build_image(api, spec)
            old_tag, old_id = text(olds.get("tag")), text(olds.get("image_id"))
            retagged = old_tag and _full_tag(old_tag) != _full_tag(text(spec["tag"]))
            if retagged and image_id_of(api, old_tag) == old_id:
                _remove_image_quietly(api, old_tag)
            if old_id and old_id != image_id:
                _remove_image_quietly(api, old_id)
        return UpdateResult({**spec, "image_id": image_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        image_id = text(props.get("image_id"))
        with engine_api() as api:
            try:
                info = api.inspect_image(image_id or id_)
            except docker.errors.NotFound:
                return missing()
        tag = text(props.get("tag"))
        # A tag moved to another image or removed reads as "" so the next
        # update rebuilds and tags again.
        live_tag = tag if _full_tag(tag) in (info.get("RepoTags") or []) else ""
        inputs = {**inputs_of(props, self.input_fields()), "tag": live_tag}
        return ReadResult(id_, {**inputs, "image_id": info["Id"]}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        tag = text(props.get("tag")) or id_
        image_id = text(props.get("image_id"))
        with engine_api() as api:
            if image_id_of(api, tag) == image_id:
                _remove_image_quietly(api, tag)
            elif image_id:
                _remove_image_quietly(api, image_id)


class DockerImage(Resource, module=TYPE_MODULE, name="DockerImage"):
    """An image built with the classic builder from ``include`` (paths relative
    to ``context_root``) without pulling; ``image_id`` is ``sha256:...``.

    Give containers ``image_id`` rather than the tag, so a rebuild that
    changes the image replaces them.
    """

    tag: pulumi.Output[str]
    context_root: pulumi.Output[str]
    include: pulumi.Output[list[str]]
    dockerfile: pulumi.Output[str]
    build_args: pulumi.Output[dict[str, str]]
    context_digest: pulumi.Output[str]
    labels: pulumi.Output[dict[str, str]]
    image_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        tag: pulumi.Input[str],
        context_root: pulumi.Input[str],
        include: pulumi.Input[list[str]],
        dockerfile: pulumi.Input[str],
        context_digest: pulumi.Input[str],
        build_args: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        labels: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerImageProvider(),
            resource_name,
            {
                "tag": tag,
                "context_root": context_root,
                "include": include,
                "dockerfile": dockerfile,
                "build_args": {} if build_args is None else build_args,
                "context_digest": context_digest,
                "labels": {} if labels is None else labels,
                "image_id": None,
            },
            opts,
        )


def copy_image(tag: str, image_id: str, target: str | None, source: str | None = None) -> None:
    """Make image ``image_id`` present on ``target`` under ``tag``, sent from
    ``source`` (engine references; None is the local one) as ``docker save |
    docker load`` would, when ``target`` does not have it yet. Needs no registry:
    a host that reaches none still gets the image from the operator's machine.
    """
    where = f"image {tag!r} ({image_id[:19]}) on {target or 'the local engine'}"
    try:
        with engine_api(target) as dest:
            if image_id_of(dest, image_id) is None:
                with engine_api(source) as src:
                    if image_id_of(src, image_id) is None:
                        raise DockerResourceError(
                            f"{where}: the image is not on {source or 'the local engine'}"
                        )
                    for _ in dest.load_image(src.get_image(image_id), quiet=True):
                        pass
            repository, _, version = _full_tag(tag).rpartition(":")
            dest.tag(image_id, repository, version, force=True)
            if image_id_of(dest, tag) != image_id:
                raise DockerResourceError(f"{where}: after loading, {tag!r} is not that image")
    except docker.errors.APIError as err:
        raise DockerResourceError(f"copying {where} failed: {explain(err)}") from err


class DockerImageCopyProvider(DockerProvider):
    """An image built elsewhere, loaded onto another engine (``engine``).

    Any change (another image, tag or engine) replaces it; ``delete`` removes
    the tag and the image there, quietly while containers still use it
    (``remove_unused_images`` clears it once they are gone).
    """

    replace_fields: ClassVar[dict[str, Normalizer]] = {
        "tag": text,
        "image_id": text,
        **ENGINE_FIELD,
    }

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # The new image is loaded before the old copy goes: deleting first would
        # make Pulumi delete every container on it at once, before anything
        # else, and the rolling update would be no rollout at all. The old
        # copy's delete leaves an image still in use alone.
        result = super().diff(id_, olds, news)
        result.delete_before_replace = False
        return result

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        for field in ("tag", "image_id"):
            if not text(news.get(field)):
                yield field, "must not be empty"

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = inputs_of(props, self.input_fields())
        copy_image(text(spec["tag"]), text(spec["image_id"]), engine_of(spec))
        return CreateResult(
            f"{engine_identity(spec['engine'])}/{text(spec['image_id'])}",
            {**spec, "loaded_id": spec["image_id"]},
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**inputs_of(news, self.input_fields()), "loaded_id": olds.get("loaded_id")})

    @read_as_recorded_when_unreachable
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        image_id = text(props.get("image_id"))
        with engine_api(engine_of(props)) as api:
            if image_id_of(api, image_id) is None:
                return missing()
        inputs = inputs_of(props, self.input_fields())
        return ReadResult(id_, {**inputs, "loaded_id": image_id}, inputs)

    @dropped_when_unreachable
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        tag, image_id = text(props.get("tag")), text(props.get("image_id"))
        with engine_api(engine_of(props)) as api:
            if image_id_of(api, tag) == image_id:
                _remove_image_quietly(api, tag)
            _remove_image_quietly(api, image_id)


class DockerImageCopy(Resource, module=TYPE_MODULE, name="DockerImageCopy"):
    """Image ``image_id`` (built on the local engine) present on ``engine`` as
    ``tag``; give containers there ``loaded_id``, so they wait for the copy."""

    tag: pulumi.Output[str]
    image_id: pulumi.Output[str]
    engine: pulumi.Output[str]
    loaded_id: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        tag: pulumi.Input[str],
        image_id: pulumi.Input[str],
        engine: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            DockerImageCopyProvider(),
            resource_name,
            {"tag": tag, "image_id": image_id, "engine": engine, "loaded_id": None},
            opts,
        )
