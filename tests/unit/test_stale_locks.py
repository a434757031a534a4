"""`scripts/stale_locks.py`: which update locks a killed `make up` left behind."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stale_locks", ROOT / "scripts" / "stale_locks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_only_locks_of_gone_processes_on_this_machine_are_stale(tmp_path: Path) -> None:
    stale_locks = _module()
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "dkron-cluster" / "dev"
    folder.mkdir(parents=True)
    here = socket.gethostname()
    locks = {
        "dead.json": {"pid": _dead_pid(), "hostname": here, "timestamp": "t1"},
        "alive.json": {"pid": 1, "hostname": here, "timestamp": "t2"},
        "elsewhere.json": {"pid": _dead_pid(), "hostname": f"not-{here}", "timestamp": "t3"},
    }
    for name, lock in locks.items():
        (folder / name).write_text(json.dumps(lock))
    (folder / "broken.json").write_text("{")

    found = stale_locks.stale_locks(f"file://{tmp_path}", "dev")
    assert [path.name for path, _ in found] == ["dead.json"]
    assert stale_locks.stale_locks(f"file://{tmp_path}", "other") == []
    assert stale_locks.stale_locks("s3://bucket", "dev") == []
