"""The base of every Docker provider: ``diff`` from normalised fields, ``check``
from a list of problems, and the type token module of every Docker resource."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ReadResult, ResourceProvider

from components.docker_objects.errors import EngineUnreachable
from components.docker_objects.props import Normalizer, changed, engine_identity, is_known, text

# Type tokens read ``pulumi-python:dynamic/docker:<Name>``; the SDK's default
# for every dynamic resource would be ``dynamic:Resource``.
TYPE_MODULE = "docker"


ENGINE_FIELD: dict[str, Normalizer] = {"engine": engine_identity}
"""The ``engine`` input of resources that live on a chosen engine (see ``engine_of``)."""


def engine_of(props: Mapping[str, Any]) -> str | None:
    """The engine a resource lives on: its ``engine`` input (None: the local one)."""
    return text(props.get("engine")) or None


P = TypeVar("P", bound=ResourceProvider)


def read_as_recorded_when_unreachable(
    read: Callable[[P, str, dict[str, Any]], ReadResult],
) -> Callable[[P, str, dict[str, Any]], ReadResult]:
    """A refresh of an object on a host whose engine does not answer keeps what the state
    records, so the rest of the stack is refreshed and updated; the program says which
    hosts it could not reach. The local engine is not excused: without it nothing works."""

    @functools.wraps(read)
    def reading(self: P, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            return read(self, id_, props)
        except EngineUnreachable:
            if engine_of(props) is None:
                raise
            return ReadResult(id_, props)

    return reading


def dropped_when_unreachable(
    delete: Callable[[P, str, dict[str, Any]], None],
) -> Callable[[P, str, dict[str, Any]], None]:
    """Deleting an object on a host whose engine does not answer drops it from the state and
    leaves it there: a host lost for good must not block the stack. The program's preview names
    what is dropped, and a node left behind on a host that comes back cannot rejoin (README:
    "Losing a host for good"). The local engine is not excused."""

    @functools.wraps(delete)
    def deleting(self: P, id_: str, props: dict[str, Any]) -> None:
        try:
            delete(self, id_, props)
        except EngineUnreachable as err:
            if engine_of(props) is None:
                raise
            what = props.get("name") or props.get("tag") or id_
            print(f"{what}: dropped from the state and left where it is ({err})", file=sys.stderr)

    return deleting


class DockerProvider(ResourceProvider):
    """Shared ``diff``: fields in ``replace_fields`` force a delete-then-create,
    fields in ``update_fields`` are changed in place by ``update``."""

    replace_fields: ClassVar[dict[str, Normalizer]] = {}
    update_fields: ClassVar[dict[str, Normalizer]] = {}

    @classmethod
    def input_fields(cls) -> list[str]:
        return [*cls.replace_fields, *cls.update_fields]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = changed(olds, news, self.replace_fields)
        updates = changed(olds, news, self.update_fields)
        # An object on another engine is a new object; the same engine reached
        # with other local options (a key file moved) is the same one.
        engine_moved = "engine" in self.replace_fields and "engine" not in replaces
        if (
            engine_moved
            and is_known(news.get("engine"))
            and text(olds.get("engine")) != text(news.get("engine"))
        ):
            updates.append("engine")
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            delete_before_replace=True,
        )

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(field, reason) for field, reason in self.problems(news) if is_known(news.get(field))
        ]
        return CheckResult(news, failures)

    def problems(self, news: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """(field, reason) for each invalid input; unknown values are skipped."""
        if not text(news.get("name")) and "name" in self.replace_fields:
            yield "name", "must be a non-empty Docker object name"
