"""The one config-error model shared by the cluster spec and the jobs."""

from __future__ import annotations

import ast
import importlib
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from components.config_errors import (
    MAX_SHOWN_VALUE,
    Problem,
    StackConfigError,
    format_path,
    raise_problems,
    shown,
    validation_lines,
)
from components.jobs import JobConfigError
from components.spec import ClusterConfigError


def test_cluster_and_job_errors_are_stack_config_errors() -> None:
    for error_type in (ClusterConfigError, JobConfigError):
        error = error_type(["stack 'dev': one", "stack 'dev': two"])
        assert isinstance(error, StackConfigError)
        assert error.problems == ("stack 'dev': one", "stack 'dev': two")
        assert str(error) == "stack 'dev': one\nstack 'dev': two"


@pytest.mark.parametrize(
    ("loc", "root", "path"),
    [
        ((), "cluster", "cluster"),
        (("nodes", 1, "name"), "cluster", "cluster.nodes[1].name"),
        (("tags", "odd key"), "cluster.jobs[0]", "cluster.jobs[0].tags['odd key']"),
        (("executor_config", "command"), "", "executor_config.command"),
        ((0, "name"), "", "[0].name"),
    ],
)
def test_paths(loc: tuple[str | int, ...], root: str, path: str) -> None:
    assert format_path(loc, root) == path


def test_long_values_are_cut() -> None:
    text = shown("x" * 500)
    assert len(text) == MAX_SHOWN_VALUE
    assert text.endswith("...")
    assert shown("short") == "'short'"


def test_a_problem_is_placed_under_its_root() -> None:
    assert Problem("name", "a", "bad").at("cluster.jobs[2]") == "cluster.jobs[2].name = 'a': bad"
    assert Problem("[1]", 5, "bad").at("cluster.nodes") == "cluster.nodes[1] = 5: bad"
    assert Problem("", [], "empty").at("cluster") == "cluster = []: empty"


class _Pair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> _Pair:
        raise_problems([Problem("high", self.high, f"must be above low ({self.low})")], root="pair")
        return self


def test_rule_problems_and_field_errors_become_one_line_each() -> None:
    with pytest.raises(ValidationError) as caught:
        _Pair.model_validate({"low": "x", "extra": 1})
    assert validation_lines("dev", "pair", caught.value) == [
        "stack 'dev': pair.low = 'x': must be a valid integer, unable to parse string as an integer",
        "stack 'dev': pair.high: required setting is missing",
        "stack 'dev': pair.extra = 1: Extra inputs are not permitted",
    ]
    with pytest.raises(ValidationError, match=r"pair\.high = 1: must be above low \(2\)") as rules:
        _Pair.model_validate({"low": 2, "high": 1})
    assert validation_lines("dev", "pair", rules.value) == [
        "stack 'dev': pair.high = 1: must be above low (2)"
    ]


# The last commit in which components/jobs.py was a module.
_LAST_JOBS_MODULE = "f2c5db5"


def test_the_jobs_module_keeps_its_old_names() -> None:
    """``components/jobs.py`` became a package; what it exported still imports from it."""
    root = Path(__file__).resolve().parents[2]
    try:
        old = subprocess.run(
            ["git", "show", f"{_LAST_JOBS_MODULE}:components/jobs.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history to read the old module from")
    (exported,) = (
        node.value
        for node in ast.parse(old).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__"
    )
    old_names = ast.literal_eval(exported)
    jobs = importlib.import_module("components.jobs")
    assert old_names
    # New names may join; none of the old ones may go.
    assert set(old_names) <= set(jobs.__all__)
    assert all(hasattr(jobs, name) for name in old_names)


def test_the_job_provider_stays_where_stacks_pickled_it() -> None:
    module = importlib.import_module("components.job_provider")
    assert module.DkronJobProvider.__module__ == "components.job_provider"
