"""Atomic output files: written under a temporary name in the destination folder, then renamed over the target.

A full disk or an interrupted run leaves the previous file (or none), never a truncated PNG or JSON.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Create ``path``'s folder if needed and check a file can be written there; ``ValueError`` naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a directory, expected a file name")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what)
    return path


def check_writable_dir(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` if needed and check a file can be written in it; ``ValueError`` naming ``what``."""
    folder = Path(folder)
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ValueError(f"{what}: cannot write in {folder} ({blocking} is not a directory)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".stagevar-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{what}: cannot write in {folder} ({err.strerror or err})") from None
    return folder
