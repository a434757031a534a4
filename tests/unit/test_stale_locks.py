"""`scripts/stale_locks.py`: which update locks a killed `make up` left behind."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "stale_locks.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stale_locks", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


stale_locks = _module()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _now(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


@pytest.fixture
def zombie() -> Iterator[int]:
    """A real zombie: a child that has exited and that nobody has reaped yet."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    os.kill(child.pid, 0)  # what the old check relied on: the signal still finds it (no ProcessLookupError)
    yield child.pid
    child.wait()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / ".pulumi" / "locks" / "organization" / "dkron-cluster" / "dev"
    made.mkdir(parents=True)
    return made


def _write(folder: Path, name: str, pid: int, timestamp: str, hostname: str = "") -> None:
    lock = {"pid": pid, "hostname": hostname or socket.gethostname(), "timestamp": timestamp}
    (folder / name).write_text(json.dumps(lock))


def test_only_locks_of_exited_processes_on_this_machine_are_stale(
    folder: Path, tmp_path: Path, zombie: int
) -> None:
    _write(folder, "dead.json", _dead_pid(), _now())
    _write(folder, "zombie.json", zombie, _now())
    _write(folder, "alive.json", os.getpid(), _now())
    _write(folder, "elsewhere.json", _dead_pid(), _now(), hostname=f"not-{socket.gethostname()}")
    # A lock written before this process started names a pid it has since been given.
    _write(folder, "reused.json", os.getpid(), "2001-01-01T00:00:00Z")
    (folder / "broken.json").write_text("{")

    found = {lock.path.name: lock.state for lock in stale_locks.stale_locks(f"file://{tmp_path}", "dev")}
    assert found == {"dead.json": "gone", "zombie.json": "zombie", "reused.json": "reused"}
    assert stale_locks.stale_locks(f"file://{tmp_path}", "other") == []
    assert stale_locks.stale_locks("s3://bucket", "dev") == []


def test_a_process_being_killed_counts_as_exiting_never_as_running() -> None:
    # Memory to give back makes the exit take a moment after the signal is sent.
    child = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(1 << 30); b[::4096] = b'x' * (1 << 18); input()"],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(1)
        assert stale_locks.process_state(child.pid) == "running"
        os.kill(child.pid, signal.SIGKILL)
        assert stale_locks.process_state(child.pid) in ("exiting", "zombie")
    finally:
        child.kill()
        child.wait()
    assert stale_locks.process_state(child.pid) == "gone"


def test_an_exiting_process_is_waited_for_briefly(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(folder, "lock.json", 4242, _now())
    states = iter(["exiting", "exiting", "zombie"])
    monkeypatch.setattr(stale_locks, "process_state", lambda pid, locked_at=None: next(states))
    assert [lock.state for lock in stale_locks.stale_locks(f"file://{tmp_path}", "dev", wait_s=5)] == [
        "zombie"
    ]

    monkeypatch.setattr(stale_locks, "process_state", lambda pid, locked_at=None: "exiting")
    started = time.monotonic()
    found = stale_locks.stack_locks(f"file://{tmp_path}", "dev", wait_s=0.3)
    assert [lock.state for lock in found] == ["exiting"]
    assert not found[0].stale
    assert 0.3 <= time.monotonic() - started < 5


def test_the_script_removes_a_zombies_lock_and_names_a_running_one(
    folder: Path, tmp_path: Path, zombie: int
) -> None:
    _write(folder, "zombie.json", zombie, _now())
    _write(folder, "alive.json", os.getpid(), _now())
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path}"}
    ran = subprocess.run(
        [sys.executable, str(SCRIPT), "dev"], env=env, capture_output=True, text=True, check=True
    )
    assert f"removed the update lock of process {zombie}, which has exited (not yet reaped" in ran.stderr
    assert f"locked by process {os.getpid()} (" in ran.stderr
    assert "another update of this stack is under way" in ran.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["alive.json"]
