"""Values as every dynamic provider of the project sees them: possibly
unknown during a preview, and numbers or booleans that must compare as the
strings Docker and Dkron store.

No Docker and no Dkron here, so any provider can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

__all__ = ["is_known", "text", "text_map"]


def is_known(value: Any) -> bool:
    """False if ``value`` is, or holds, a value Pulumi does not know yet (preview):
    a mapping is known when its keys and values are, a list when its items are.

    The one definition for every dynamic provider of the project. An unknown
    reaches a provider as the marker string, or (a whole list or mapping not
    known yet, as when a volume that a container mounts is replaced) as the
    SDK's ``Unknown`` object."""
    if isinstance(value, Unknown):
        return False
    if isinstance(value, str):
        return value != UNKNOWN
    if isinstance(value, Mapping):
        return all(is_known(k) and is_known(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_known(v) for v in value)
    return True


def text(value: Any) -> str:
    """A scalar as Docker would store it: 8080.0 (a number after a round trip
    through the engine) is "8080", True is "true"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def text_map(value: Any) -> dict[str, str]:
    return {str(k): text(v) for k, v in (value or {}).items()}
