"""Measuring one solver run: wall time and peak memory (CPU resident set or CUDA allocator)."""

from __future__ import annotations

import resource
import sys
import time
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from ..core.errors import NotConvergedWarning
from .protocol import STATUS_OK, run_protocol


def _read_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark (Linux >= 4.0); False where unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _read_status_kb("VmHWM") is not None
    except OSError:
        return False


def _maxrss_kb() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb // 1024 if sys.platform == "darwin" else kb  # macOS reports bytes


def _measured(fn, device: torch.device, use_tracemalloc: bool) -> tuple[dict, dict]:
    """Run ``fn()`` and return (its result, measurements: seconds, memory)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    hwm = _reset_peak_rss()
    base_kb = _read_status_kb("VmRSS") if hwm else _maxrss_kb()
    if use_tracemalloc:
        import tracemalloc
        tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    meas = {"seconds": seconds}
    if use_tracemalloc:
        meas["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    peak_kb = _read_status_kb("VmHWM") if hwm else _maxrss_kb()
    meas["rss_peak_mb"] = max(0, (peak_kb or 0) - (base_kb or 0)) / 1024
    meas["rss_method"] = "VmHWM-VmRSS" if hwm else "ru_maxrss delta (lower bound)"
    if cuda:
        meas["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    meas["mem_mb"] = meas["cuda_peak_mb"] if cuda else meas["rss_peak_mb"]
    return out, meas


def _run_solver_here(task: Mapping) -> dict:
    """Build the solver named in ``task`` and run the protocol in this process."""
    threads = torch.get_num_threads()
    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    try:
        return _run_solver_threads_set(task)
    finally:
        torch.set_num_threads(threads)  # matters inline only


def _run_solver_threads_set(task: Mapping) -> dict:
    from ..registry.manager import get_solver, solver_entry

    torch.manual_seed(task["seed"])
    np.random.seed(task["seed"] % 2**32)
    entry = solver_entry(task["solver"])
    solver = get_solver(task["solver"], **task["config"])
    device = torch.device(task["device"])
    x = torch.as_tensor(task["x"]).to(device)
    c0 = torch.as_tensor(task["c0"]).to(device)
    pair = None if task.get("pair") is None else torch.as_tensor(task["pair"]).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)  # recorded as converged=False
        if task.get("warmup", True):
            # one untimed round on a subset pays first-call costs (lazy kernel set-up, imports
            # inside solve); a failure here is left for the timed run to report
            m = min(x.shape[0], max(4 * c0.shape[0], 64))
            try:
                run_protocol(solver, entry.needs, x[:m], c0, 1, task["metric"], task["tol"], task["update"],
                             task.get("tau"), None if pair is None else pair[:m] % m)
            except Exception:  # noqa: BLE001
                pass
        out, meas = _measured(
            lambda: run_protocol(solver, entry.needs, x, c0, task["iters"], task["metric"], task["tol"],
                                 task["update"], task.get("tau"), pair),
            device, task["tracemalloc"])
    out.update(meas)
    out["threads"] = torch.get_num_threads()
    out["status"], out["reason"] = STATUS_OK, ""
    return out
