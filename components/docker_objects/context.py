"""A build context: part of a directory, as a digest and as a reproducible tar."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile
from collections.abc import Iterable
from pathlib import Path

from components.docker_objects.client import DockerResourceError

__all__ = ["clean_include", "context_digest", "context_tar", "dockerfile_included"]

# Never part of a build context: caches that change without any source change.
_CONTEXT_IGNORED_DIRS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_CONTEXT_IGNORED_SUFFIXES = (".pyc",)


def clean_include(entry: str) -> str:
    """A build-context entry as a normalised relative POSIX path."""
    path = posixpath.normpath(entry.replace(os.sep, "/"))
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        raise DockerResourceError(
            f"build context entry {entry!r} must be a path relative to the context root, inside it"
        )
    return path


def _context_entries(context_root: str, include: Iterable[str]) -> list[tuple[str, Path]]:
    """(relative path, path) of every directory, file and symlink the build
    context holds, sorted by relative path."""
    root = Path(context_root)
    if not root.is_absolute() or not root.is_dir():
        raise DockerResourceError(
            f"build context root {context_root!r} must be an absolute path to a directory"
        )
    entries: dict[str, Path] = {}

    def add(path: Path) -> None:
        rel = path.relative_to(root).as_posix()
        if rel != ".":
            entries[rel] = path

    for entry in include:
        top = root / clean_include(entry)
        if top.is_symlink() or top.is_file():
            add(top)
        elif top.is_dir():
            add(top)
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = sorted(d for d in dirnames if d not in _CONTEXT_IGNORED_DIRS)
                base = Path(dirpath)
                for name in dirnames:
                    add(base / name)
                for name in filenames:
                    if not name.endswith(_CONTEXT_IGNORED_SUFFIXES):
                        add(base / name)
        else:
            raise DockerResourceError(f"build context entry {entry!r} does not exist under {context_root}")
    return sorted(entries.items())


def _is_executable(path: Path) -> bool:
    return bool(path.lstat().st_mode & 0o111)


def context_digest(context_root: str, include: Iterable[str]) -> str:
    """SHA-256 of a build context: relative paths, kinds, exec bits and bytes.

    Pass the result as ``DockerImage(context_digest=...)`` so that editing any
    file of the context (and nothing else) rebuilds the image.
    """
    digest = hashlib.sha256(b"dkron-iac build context v1\0")
    for rel, path in _context_entries(context_root, include):
        kind, payload = _entry_content(path)
        digest.update(kind + rel.encode() + b"\0" + len(payload).to_bytes(8, "big"))
        digest.update(payload)
    return digest.hexdigest()


def context_files(context_root: str, include: Iterable[str]) -> dict[str, str]:
    """Each file and symlink of a build context (relative path) with a short
    digest of its kind and content: what tells which file changed."""
    files = {}
    for rel, path in _context_entries(context_root, include):
        kind, payload = _entry_content(path)
        if kind != b"d":
            files[rel] = hashlib.sha256(kind + payload).hexdigest()[:16]
    return files


def _entry_content(path: Path) -> tuple[bytes, bytes]:
    """A context entry's kind (l, d, x, f) and what it holds."""
    if path.is_symlink():
        return b"l", os.readlink(path).encode()
    if path.is_dir():
        return b"d", b""
    return (b"x" if _is_executable(path) else b"f"), path.read_bytes()


def context_tar(context_root: str, include: Iterable[str]) -> io.BytesIO:
    """The build context as an uncompressed tar with fixed owners and times, so
    the same files give the same archive and the builder's cache applies."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _context_entries(context_root, include):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if _is_executable(path) else 0o644
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def dockerfile_included(dockerfile: str, include: Iterable[str]) -> bool:
    path = posixpath.normpath(dockerfile)
    for entry in include:
        top = posixpath.normpath(entry)
        if top == "." or path == top or path.startswith(top + "/"):
            return True
    return False
