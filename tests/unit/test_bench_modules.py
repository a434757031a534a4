"""The bench's modules import: `make bench` runs only on request, so a name one of them still
imports after it left the program (as `components.cluster.HEALTHCHECK` once did) shows here."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["bench.run", "bench.suite", "bench.report", "bench.baselines", "bench.probes"]
)
def test_a_bench_module_imports(module: str) -> None:
    assert importlib.import_module(module).__name__ == module
