"""Process isolation: each solver in a fresh worker (forkserver or spawn), with a deadline."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Mapping


from .measure import _run_solver_here
from .protocol import STATUS_FAILED, STATUS_TIMEOUT


def _failure(status: str, reason: str, detail: str = "") -> dict:
    return {"status": status, "reason": reason, "traceback": detail}


def _safe_run(task: Mapping) -> dict:
    try:
        return _run_solver_here(task)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        return _failure(STATUS_FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _worker(conn, task) -> None:
    """Entry point of a worker: adopt the parent's environment and ``sys.path`` (a forkserver
    child starts from the server's), load the plugins, say ready, then run ``task``."""
    os.environ.clear()
    os.environ.update(task["environ"])
    sys.path[:] = task["sys_path"]
    from ..registry.manager import get_registry, reset

    try:
        reset()
        get_registry()
    except Exception as exc:  # noqa: BLE001
        conn.send(("result", _failure(STATUS_FAILED, f"plugin loading failed: {type(exc).__name__}: {exc}",
                                      traceback.format_exc())))
        return
    conn.send(("ready", None))
    conn.send(("result", _safe_run(task)))
    conn.close()


def _context():
    """``forkserver`` where available: each worker is forked from a clean server process that has
    imported torch and assignsolve once (milliseconds per worker instead of seconds), and has never
    run a torch kernel (so no thread pool is forked). ``spawn`` elsewhere."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["assignsolve.compare"])
        return ctx
    return mp.get_context("spawn")


def _run_in_process(task: Mapping, timeout: float | None, startup_timeout: float = 300.0) -> dict:
    """Run ``task`` in a fresh worker process; the deadline starts when the worker is ready."""
    ctx = _context()
    task = dict(task, environ=dict(os.environ), sys_path=list(sys.path))
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, task), daemon=True)
    start = time.perf_counter()
    proc.start()
    child.close()
    try:
        if not parent.poll(startup_timeout):
            return _failure(STATUS_TIMEOUT, f"worker did not start within {startup_timeout:g} s")
        kind, payload = parent.recv()
        if kind == "result":
            return payload
        startup = time.perf_counter() - start
        if not parent.poll(timeout):
            return _failure(STATUS_TIMEOUT, f"timed out after {timeout:g} s (--timeout)")
        return dict(parent.recv()[1], startup_seconds=startup)
    except EOFError:
        proc.join(5)
        return _failure(STATUS_FAILED, f"worker process died (exit code {proc.exitcode})")
    finally:
        parent.close()
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
