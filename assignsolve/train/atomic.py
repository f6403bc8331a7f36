"""Atomic file writes: a temporary file unique to this process and call, then ``os.replace``.

A reader (or a crash) sees either the old file or the new one, never half of one; two processes
writing the same path never share a temporary file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "unique_tmp"]


def unique_tmp(path: Path) -> Path:
    """``DIR/.NAME.<pid>.<random>.tmp`` beside ``path`` (same file system, so ``os.replace`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then ``os.replace(tmp, path)``; the temporary file is removed on any failure."""
    path = Path(path)
    tmp = unique_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)
