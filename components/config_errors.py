"""The one config-error model: every problem in a stack's config, one line each.

A line names the stack, where the setting is (``cluster.nodes[1].name``,
``cluster.jobs[0].schedule``, ``jobs/nightly.yaml: jobs[2].tags``), the bad
value (shortened when long) and what is allowed::

    stack 'dev': cluster.nodes[1].name = 'Node_2': must be 1-63 lowercase letters, ...

``StackConfigError`` carries all of a stack's lines at once, so a user fixes
every problem in one go; ``__main__`` turns it into a ``RunError``. Rules that
span several fields of a pydantic model yield ``Problem``s from a
``model_validator`` through ``raise_problems``; ``validation_lines`` turns a
``ValidationError`` (those included) into lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

MAX_SHOWN_VALUE = 120  # characters of a bad value quoted in a problem line
RULES_ERROR = "config_rules"  # pydantic error type that carries ``Problems``

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class StackConfigError(ValueError):
    """A stack's config is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def shown(value: Any) -> str:
    """``value`` as quoted in a problem line: its repr, cut at MAX_SHOWN_VALUE characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def format_path(loc: Iterable[str | int], root: str = "") -> str:
    """``root`` followed by ``loc``: ``.name`` for plain names, ``[0]``, ``['odd key']``."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_NAME.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    return path


def describe(path: str, value: Any, message: str) -> str:
    """One problem without the stack: ``path = value: message``."""
    return f"{path} = {shown(value)}: {message}"


def in_stack(stack: str, line: str) -> str:
    return f"stack {stack!r}: {line}"


@dataclass(frozen=True)
class Problem:
    """A broken rule: the setting at ``path`` (relative to where its object sits) has ``value``."""

    path: str
    value: Any
    message: str

    def at(self, root: str) -> str:
        """The problem line (without the stack) for an object that sits at ``root``."""
        if not root or not self.path or self.path.startswith("["):
            return describe(root + self.path, self.value, self.message)
        return describe(f"{root}.{self.path}", self.value, self.message)


class Problems(tuple[Problem, ...]):
    """Carries the problems a model validator found through pydantic to the loader.

    ``root`` is where the model's own paths start, for pydantic's message.
    """

    root: str = ""

    def __str__(self) -> str:
        return "; ".join(problem.at(self.root) for problem in self)


def raise_problems(found: Iterable[Problem], root: str = "") -> None:
    """From a pydantic validator: fail with every problem in ``found``, if any."""
    problems = Problems(found)
    problems.root = root
    if problems:
        raise PydanticCustomError(RULES_ERROR, "{problems}", {"problems": problems})


def pydantic_message(error: Any) -> str:
    """Pydantic's own message for one error, phrased like ours."""
    return str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "must be", 1)


# Turns one pydantic error at ``path`` into lines, or None for the common handling.
SpecialCase = Callable[[Any, str], "list[str] | None"]


def validation_lines(
    stack: str, root: str, exc: ValidationError, special: SpecialCase | None = None
) -> list[str]:
    """One line per problem in ``exc``, for an object validated at ``root``.

    ``special`` handles the error kinds a loader phrases its own way; every
    other error reads ``path = value: message``.
    """
    lines: list[str] = []
    for error in exc.errors():
        kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
        path = format_path(loc, root)
        handled = None if kind == RULES_ERROR or special is None else special(error, path)
        if kind == RULES_ERROR:
            lines.extend(problem.at(root) for problem in error["ctx"]["problems"])
        elif handled is not None:
            lines.extend(handled)
        elif kind == "missing":
            lines.append(f"{path}: required setting is missing")
        else:
            lines.append(describe(path, value, pydantic_message(error)))
    return [in_stack(stack, line) for line in lines]
