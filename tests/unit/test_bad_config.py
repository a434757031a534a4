"""Every malformed stack config of `testing.bad_configs`, through the program's config steps.

Each must give one line naming the stack, the setting's path and the bad
value. `tests/integration/test_bad_input.py` previews one case of each family
for real, and the cases only the live engine finds.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from testing.bad_configs import CASES, GOOD_JOB, NODES, Case, bad_config, config_problems, set_path

ROOT = Path(__file__).resolve().parents[2]
STACK = "tunit"
BASE: dict[str, Any] = {
    "name": STACK,
    "nodes": NODES,
    "ports": {"bind_address": "127.0.0.1", "api_port_base": 25000},
    "jobs": [GOOD_JOB],
}
FOUND_WITHOUT_AN_ENGINE = [case for case in CASES if case.family != "engine"]


def _has_line(problems: list[str], expected: str) -> bool:
    return any(line.startswith(f"stack {STACK!r}: {expected}") for line in problems)


def test_the_base_config_has_no_problem() -> None:
    assert config_problems(STACK, copy.deepcopy(BASE), ROOT) == []


@pytest.mark.parametrize("case", FOUND_WITHOUT_AN_ENGINE, ids=[case.id for case in FOUND_WITHOUT_AN_ENGINE])
def test_a_bad_config_names_stack_path_and_value(case: Case) -> None:
    problems = config_problems(STACK, bad_config(BASE, case), ROOT)
    assert _has_line(problems, case.expected), f"no line starting {case.expected!r} in {problems}"


def test_a_missing_cluster_config_says_which_key_to_set() -> None:
    problems = config_problems(STACK, None, ROOT)
    assert _has_line(problems, "cluster: no cluster config; set 'dkron-cluster:cluster'"), problems


def test_every_problem_is_reported_at_once() -> None:
    cluster = copy.deepcopy(BASE)
    set_path("nodes.1.name", "Node_2")(cluster)
    set_path("dkron.raft_multiplier", 11)(cluster)
    set_path("ports.bind_address", "localhost")(cluster)
    problems = config_problems(STACK, cluster, ROOT)
    for expected in (
        "cluster.nodes[1].name = 'Node_2'",
        "cluster.dkron.raft_multiplier = 11",
        "cluster.ports.bind_address = 'localhost'",
    ):
        assert _has_line(problems, expected), f"no line starting {expected!r} in {problems}"
