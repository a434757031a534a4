"""The node agent's own Go tests (agent/*_test.go): its HTTPS API and credentials, and the
catch-up guard's rule, its reading of Dkron's scheduler and store. Built as `make setup` builds
the agent (static, paths trimmed), so the compiled packages are the set-up's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"


def test_the_agents_go_tests_pass() -> None:
    result = subprocess.run(
        ["go", "test", "-trimpath", "-count=1", "./..."],
        cwd=AGENT,
        env={**os.environ, "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
