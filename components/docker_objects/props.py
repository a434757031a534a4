"""Property values of the Docker resources: normalisation and diffing.

Property values come back from the Pulumi engine with ints as floats and dicts
in another order, and during a preview any of them may be unknown. These
helpers give both sides of a diff one form, and say which fields changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi.dynamic import ReadResult

from components.provider_values import is_known, text, text_map

Normalizer = Callable[[Any], Any]

# The security option that keeps a process from gaining privileges (setuid binaries, file capabilities).
NO_NEW_PRIVILEGES = "no-new-privileges"


def as_int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(float(value))


def seconds(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    return float(value)


def text_list(value: Any) -> list[str]:
    return [text(v) for v in (value or [])]


def engine_identity(value: Any) -> str:
    """An engine reference without its local client options (``?identity=...``):
    which engine it is, whatever key file or certificate folder reaches it."""
    return text(value).split("?", 1)[0]


def norm_map(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(text_map(value).items()))


def norm_list(value: Any) -> tuple[str, ...]:
    return tuple(text_list(value))


def norm_set(value: Any) -> tuple[str, ...]:
    return tuple(sorted(set(text_list(value))))


def norm_bool(value: Any) -> bool:
    return bool(value)


def norm_int(default: int) -> Normalizer:
    return lambda value: as_int(value, default)


def changed(olds: Mapping[str, Any], news: Mapping[str, Any], fields: Mapping[str, Normalizer]) -> list[str]:
    """The fields whose normalised values differ, or whose new value is unknown."""
    changed = []
    for key, normalize in fields.items():
        new = news.get(key)
        if not is_known(new) or normalize(olds.get(key)) != normalize(new):
            changed.append(key)
    return changed


def inputs_of(props: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {key: props.get(key) for key in fields}


def reflect(
    props: Mapping[str, Any], live: Mapping[str, Any], fields: Mapping[str, Normalizer]
) -> dict[str, Any]:
    """Live values for ``read``, keeping the declared form where they agree
    (so a refresh without drift changes nothing in the state)."""
    return {
        key: props.get(key) if normalize(props.get(key)) == normalize(live.get(key)) else live.get(key)
        for key, normalize in fields.items()
    }


def missing() -> ReadResult:
    """What ``read`` returns for an object that no longer exists."""
    return ReadResult(id_="", outs={})
