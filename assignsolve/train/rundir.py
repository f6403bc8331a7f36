"""The run folder ``--out``: its default name, refusing to overwrite a run, ``--overwrite``, the lock.

* The default ``runs/<method>-<solver>-<encoder>`` is sanitised: a name such as
  ``--encoder ../../..`` becomes one path component, so the folder stays inside ``runs/``.
* ``--out`` naming a file, or a folder that already holds a run (``checkpoint.pt``, ``metrics.*``,
  ``config.json``) without ``--resume`` or ``--overwrite``, is refused (:class:`TrainError`, exit 2).
  ``--overwrite`` deletes exactly those files (and ``tensorboard/``) before the new run starts.
* :class:`RunLock`: ``OUT/.lock`` created with ``O_CREAT | O_EXCL`` holds ``host pid``. A second
  run into the same folder is refused naming the lock; a lock left by a process that no longer
  exists on this host is reported on stderr and replaced. The lock is removed when the run ends,
  fails or is interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

from ..core.errors import TrainError

__all__ = ["RUN_FILES", "RunLock", "check_existing_run", "check_out_path", "clear_run", "default_out",
           "interrupted_message"]

#: files that make a folder "a run" (``--overwrite`` removes exactly these)
RUN_FILES = ("checkpoint.pt", "metrics.csv", "metrics.jsonl", "config.json")
LOCK_NAME = ".lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def safe_component(name: str) -> str:
    """One path component: separators and odd characters become ``_``; ``.``/``..`` cannot result."""
    clean = _UNSAFE.sub("_", str(name)).strip(".") or "_"
    return clean


def default_out(recipe: str, solver: str, encoder: str) -> Path:
    """``runs/<recipe>-<solver>-<encoder>``, always a direct child of ``runs/``."""
    return Path("runs") / safe_component(f"{recipe}-{solver}-{encoder}")


def check_out_path(out: Path, resume: bool, overwrite: bool) -> None:
    """``out`` is (or can become) a folder; ``--resume`` and ``--overwrite`` not both."""
    out = Path(out)
    if resume and overwrite:
        raise TrainError("--resume and --overwrite: expected at most one of them (continue the run, or replace it)")
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out: expected a folder, found a file {str(out)!r}")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise TrainError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder")


def check_existing_run(out: Path, resume: bool, overwrite: bool) -> None:
    """A run already in ``out`` needs ``--resume`` or ``--overwrite``; ``--resume`` needs one
    (called while holding the lock, so the answer cannot change under us)."""
    out = Path(out)
    present = [f for f in RUN_FILES if (out / f).exists()]
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise TrainError(f"--resume: expected a checkpoint at {str(out / 'checkpoint.pt')!r}, found none")
        return
    if present and not overwrite:
        raise TrainError(f"--out {str(out)!r} already holds a run ({', '.join(present)}): "
                         "use --resume to continue it or --overwrite to replace it")


def clear_run(out: Path) -> None:
    """``--overwrite``: remove the previous run's files (called while holding the lock)."""
    for f in RUN_FILES:
        (Path(out) / f).unlink(missing_ok=True)
    tb = Path(out) / "tensorboard"
    if tb.is_dir():
        shutil.rmtree(tb)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``OUT/.lock`` for the duration of a run (a context manager; see the module doc)."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def _owner(self) -> tuple[str, int | None]:
        try:
            host, _, pid = self.path.read_text().strip().partition(" ")
            return host, int(pid)
        except (OSError, ValueError):
            return "", None

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                host, pid = self._owner()
                if host == socket.gethostname() and pid is not None and not _alive(pid):
                    print(f"assignsolve run: removing stale lock {str(self.path)!r} "
                          f"(process {pid} no longer exists)", file=sys.stderr)
                    self.path.unlink(missing_ok=True)
                    continue
                who = f"process {pid} on {host}" if pid is not None else "an unreadable owner"
                raise TrainError(f"--out: {str(self.path)!r} is held by {who}: another run is writing "
                                 "this folder (remove the lock only if that run is gone)") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(me + "\n")
            self.held = True
            return
        raise TrainError(f"--out: could not take the lock {str(self.path)!r}")

    def release(self) -> None:
        if self.held:
            host, pid = self._owner()
            if pid == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def interrupted_message(out: Path) -> str:
    """The one line printed on Ctrl-C."""
    ckpt = Path(out) / "checkpoint.pt"
    if ckpt.is_file():
        return (f"assignsolve run: interrupted; {str(ckpt)!r} keeps the last complete epoch "
                f"(continue with --resume --out {str(out)!r})")
    return f"assignsolve run: interrupted before the first epoch completed; nothing to resume in {str(out)!r}"


def make_out(out: Path) -> list[Path]:
    """Create ``out`` (and missing parents); returns the folders created, deepest first."""
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"--out: cannot create the folder {str(out)!r} ({exc.strerror})") from exc
    return created


def remove_if_empty(created: list[Path]) -> None:
    """A refused or failed run leaves nothing behind: the folders it created, while empty."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return
