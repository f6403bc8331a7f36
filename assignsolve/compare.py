r"""Compare assignment solvers on fixed features: one command, one table, one picture.

Every chosen solver clusters the same features through one shared protocol, so that the
numbers differ only because the assignment step differs::

    assignsolve compare --features digits --solvers sinkhorn-gpu,kmeans,lp --iters 10 --out cmp/

Protocol (for a solver whose ``needs`` is ``"scores"`` or ``"scores_or_features"``), with
features :math:`x_i \in \mathbb{R}^D` (L2-normalised unless ``--normalize none``) and initial
centroids :math:`C^{(0)}` shared by all solvers (k-means++ or a random sample, from ``--seed``):

.. math::

    S^{(t)}_{ik} = \mathrm{score}(x_i, c^{(t)}_k), \qquad
    Q^{(t)} = \mathrm{solver}(S^{(t)}), \qquad
    c^{(t+1)}_k = \frac{\sum_i Q^{(t)}_{ik} x_i}{\sum_i Q^{(t)}_{ik}}

for ``t = 0 .. T-1`` (``--iters T``), where ``Q`` is the solver's soft assignment, or the one-hot
matrix of its labels for a hard-only solver (or for every solver with ``--update hard``); an
empty cluster keeps its centroid. The loop stops
early at a fixed point (labels unchanged and centroids moved by at most ``tol``). A solver whose
``needs`` is ``"features"`` (k-means, CoKe) gets the features and the same initial centroids in
one :class:`~assignsolve.Problem` and runs its own algorithm; its ``max_iter`` (when it has one)
defaults to ``T``.

Each solver runs in a fresh worker process (``--isolation process``, the default; forked from a
``forkserver`` that imported torch once, or ``spawn``-ed where there is no forkserver),
so a crash, a hang past ``--timeout`` or a leak in one solver cannot affect the others; the
deadline starts once the worker has imported its plugins. The table reports, per solver, NMI,
ARI and Hungarian accuracy (with labels), the solver's own objective, cluster-size min/max and
entropy, the marginal error of the returned plan, iterations, convergence, wall seconds and peak
memory; the same rows go to ``results.csv``/``results.json``, per-solver labels to
``labels.npz``, and a figure (cluster sizes per solver, accuracy against time) to
``compare.png``.

Peak memory (``mem_MB``): on CPU, the growth of the worker's resident set during the run, read
as ``VmHWM - VmRSS`` after resetting the high-water mark through ``/proc/self/clear_refs``
(Linux; elsewhere the ``ru_maxrss`` growth, a lower bound). It counts every allocation that
touched memory: numpy, torch CPU and Python objects alike. On CUDA it is
``torch.cuda.max_memory_allocated`` (tensors only, allocator caching excluded). With
``--tracemalloc`` the Python/numpy peak from :mod:`tracemalloc` is recorded too (not torch).
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from .errors import AssignsolveError, NotConvergedWarning

__all__ = [
    "CompareConfig", "CompareError", "CompareResult", "centroid_update", "compare",
    "drop_nonfinite", "format_table", "init_centroids", "kmeans_plusplus", "marginal_error",
    "parse_solver_opts", "plot", "run_protocol", "write_outputs", "add_arguments", "main",
]

STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT = "ok", "failed", "timeout"

#: Columns of the terminal table / CSV, in order.
COLUMNS = ["solver", "status", "nmi", "ari", "acc", "objective", "size_min", "size_max",
           "size_entropy", "marginal_error", "rounds", "n_iters", "converged", "seconds", "mem_mb"]


class CompareError(AssignsolveError, ValueError):
    """Bad arguments to :func:`compare` (unknown option, no K, no usable rows...)."""


# --------------------------------------------------------------------------- pure functions
def drop_nonfinite(x: np.ndarray, labels: np.ndarray | None = None):
    """Drop the rows of ``x`` that hold a NaN or an infinity.

    Parameters
    ----------
    x : ndarray [N, D]
        Features.
    labels : ndarray [N] or None
        Labels, dropped alongside.

    Returns
    -------
    x : ndarray [N', D]
    labels : ndarray [N'] or None
    kept : ndarray [N'] int64
        Indices (into the input) of the rows kept.
    dropped : ndarray [N - N'] int64
        Indices of the rows dropped.
    """
    bad = ~np.isfinite(x).all(axis=1)
    kept, dropped = np.flatnonzero(~bad), np.flatnonzero(bad)
    return x[kept], (None if labels is None else labels[kept]), kept.astype(np.int64), dropped.astype(np.int64)


@torch.no_grad()
def kmeans_plusplus(x: torch.Tensor, k: int, seed: int = 0, n_trials: int | None = None) -> torch.Tensor:
    r"""Greedy k-means++ seeding: indices of ``k`` rows of ``x``.

    The first centre is uniform; each next one is drawn among ``n_trials`` candidates sampled
    with probability :math:`D(x_i)^2 / \sum_j D(x_j)^2` (squared distance to the nearest chosen
    centre) and is the candidate that most lowers the potential :math:`\sum_i D(x_i)^2`
    (Arthur & Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007;
    ``n_trials = 2 + ln k`` as in scikit-learn's ``_kmeans_plusplus``). When every point already
    coincides with a centre (duplicates, or ``k > N``) the next one is uniform, so ``k > N``
    repeats points.

    Parameters
    ----------
    x : Tensor [N, D]
        Points, on any device.
    k : int
        Number of centres.
    seed : int
        Seeds a CPU generator: the same indices on every device.
    n_trials : int, optional
        Candidates per step (default ``2 + int(ln k)``).

    Returns
    -------
    Tensor [k] int64 (CPU)
    """
    n = x.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    trials = n_trials or 2 + int(math.log(k))
    xd = x.double()
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    d2 = (xd - xd[chosen[0]]).pow(2).sum(1)
    for _ in range(1, k):
        weights = d2.clamp_min(0).cpu()
        total = float(weights.sum())
        if total <= 0:
            cand = torch.randint(n, (trials,), generator=gen)
        else:
            cand = torch.multinomial(weights / total, trials, replacement=True, generator=gen)
        new = torch.minimum(d2[None, :], torch.cdist(xd[cand.to(x.device)], xd).pow(2))  # [T, N]
        best = int(new.sum(1).argmin())
        chosen.append(int(cand[best]))
        d2 = new[best]
    return torch.tensor(chosen, dtype=torch.int64)


@torch.no_grad()
def init_centroids(x: torch.Tensor, k: int, method: str = "kmeans++", seed: int = 0) -> torch.Tensor:
    """Initial centroids [k, D] shared by every solver: k-means++ rows, or a random sample of rows.

    ``"random"`` draws ``k`` distinct rows (with replacement only when ``k > N``), from a CPU
    generator seeded with ``seed``.

    Parameters
    ----------
    x : Tensor [N, D]
    k : int
    method : {"kmeans++", "random"}
    seed : int

    Returns
    -------
    Tensor [k, D], on ``x``'s device and dtype.
    """
    n = x.shape[0]
    if method == "kmeans++":
        idx = kmeans_plusplus(x, k, seed)
    elif method == "random":
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(n, generator=gen)[:k] if k <= n else torch.randint(n, (k,), generator=gen)
    else:
        raise CompareError(f"init: expected 'kmeans++' or 'random', found {method!r}")
    return x[idx.to(x.device)].clone()


@torch.no_grad()
def centroid_update(x: torch.Tensor, q: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    r"""Weighted means :math:`c_k = \sum_i q_{ik} x_i / \sum_i q_{ik}`; an empty cluster keeps its centroid.

    Parameters
    ----------
    x : Tensor [N, D]
        Features.
    q : Tensor [N, K]
        Soft assignment (or one-hot labels), non-negative.
    previous : Tensor [K, D]
        Centroids kept where :math:`\sum_i q_{ik} = 0`.

    Returns
    -------
    Tensor [K, D]
    """
    q = q.to(dtype=x.dtype, device=x.device)
    mass = q.sum(0)
    sums = q.T @ x
    empty = mass <= torch.finfo(x.dtype).tiny
    c = sums / torch.where(empty, torch.ones_like(mass), mass)[:, None]
    return torch.where(empty[:, None], previous.to(c), c)


def marginal_error(q: torch.Tensor) -> float:
    r"""L1 distance of the plan's cluster marginal to uniform: :math:`\sum_k |\frac1N\sum_i q_{ik} - \frac1K|`.

    Rows of ``q`` sum to one, so the row marginal is exact and this is the plan's whole marginal
    violation of the balanced transport polytope (0 for a perfectly balanced plan, at most
    :math:`2 (1 - 1/K)`).

    Parameters
    ----------
    q : Tensor [N, K]
        Soft assignment or one-hot labels.
    """
    n, k = q.shape
    return float((q.double().sum(0) / n - 1.0 / k).abs().sum())


def _one_hot(labels: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.to(device=like.device, dtype=torch.int64), k).to(like.dtype)


def _as_torch(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def run_protocol(solver, needs: str, x: torch.Tensor, c0: torch.Tensor, iters: int,
                 metric: str = "cosine", tol: float = 1e-6, update: str = "soft") -> dict:
    """Run one solver through the shared protocol (see the module docstring).

    Parameters
    ----------
    solver : Solver
        A configured solver instance.
    needs : {"scores", "features", "scores_or_features"}
        The solver's registry entry ``needs``.
    x : Tensor [N, D]
        Features on the computation device.
    c0 : Tensor [K, D]
        Initial centroids, same device.
    iters : int
        Rounds ``T`` (score solvers).
    metric : {"cosine", "dot", "l2"}
        Scores from features and centroids (:meth:`Problem.from_features`).
    tol : float
        Early stop when labels repeat and centroids move by at most ``tol`` (max-abs).
    update : {"soft", "hard"}
        Centroids from the soft assignment when the solver returns one, or always from the labels.

    Returns
    -------
    dict
        ``labels`` [N] int64 numpy, ``objective``, ``rounds``, ``n_iters`` (summed over rounds),
        ``converged`` (every solve converged), ``n_not_converged``, ``marginal_error``,
        ``solver_error`` (the solver's last recorded stopping value), ``solve_seconds``.
    """
    from .problem import Problem

    k = c0.shape[0]
    results = []
    if needs == "features":
        res = solver(Problem(features=x, n_clusters=k, init_centroids=c0))
        results.append(res)
    else:
        c, previous = c0, None
        for _ in range(iters):
            res = solver(Problem.from_features(x, c, metric=metric))
            results.append(res)
            labels = _as_torch(res.labels).to(x.device)
            soft = res.soft is not None and update == "soft"
            q = _as_torch(res.soft).to(x.device) if soft else _one_hot(labels, k, x)
            c_new = centroid_update(x, q, c)
            fixed = previous is not None and torch.equal(labels, previous) and \
                float((c_new - c).abs().max()) <= tol
            c, previous = c_new, labels
            if fixed:
                break
    last = results[-1]
    labels = _as_torch(last.labels).to(x.device)
    q = _as_torch(last.soft).to(x.device) if last.soft is not None else _one_hot(labels, k, x)
    return {
        "labels": labels.cpu().numpy().astype(np.int64),
        "objective": float(last.objective),
        "rounds": len(results) if needs != "features" else 1,
        "n_iters": int(sum(r.n_iters for r in results)),
        "converged": all(bool(r.converged) for r in results),
        "n_not_converged": sum(not r.converged for r in results),
        "marginal_error": marginal_error(q),
        "solver_error": float(last.marginal_error),
        "solve_seconds": float(sum(r.seconds for r in results)),
    }


# --------------------------------------------------------------------------- measurement
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
    from .plugins import get_solver, solver_entry

    torch.manual_seed(task["seed"])
    np.random.seed(task["seed"] % 2**32)
    entry = solver_entry(task["solver"])
    solver = get_solver(task["solver"], **task["config"])
    device = torch.device(task["device"])
    x = torch.as_tensor(task["x"]).to(device)
    c0 = torch.as_tensor(task["c0"]).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)  # recorded as converged=False
        if task.get("warmup", True):
            # one untimed round on a subset pays first-call costs (lazy kernel set-up, imports
            # inside solve); a failure here is left for the timed run to report
            m = min(x.shape[0], max(4 * c0.shape[0], 64))
            try:
                run_protocol(solver, entry.needs, x[:m], c0, 1, task["metric"], task["tol"], task["update"])
            except Exception:  # noqa: BLE001
                pass
        out, meas = _measured(
            lambda: run_protocol(solver, entry.needs, x, c0, task["iters"], task["metric"], task["tol"],
                                 task["update"]),
            device, task["tracemalloc"])
    out.update(meas)
    out["threads"] = torch.get_num_threads()
    out["status"], out["reason"] = STATUS_OK, ""
    return out


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
    from .plugins import get_registry, reset

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


# --------------------------------------------------------------------------- orchestration
@attrs.frozen
class CompareConfig:
    """Settings of one comparison (the CLI flags).

    Attributes
    ----------
    k : int or None
        Clusters; None: the number of label classes.
    iters : int
        Protocol rounds ``T`` (and ``max_iter`` of feature solvers unless set explicitly).
    seed : int
        Seeds the shared initial centroids and every solver that has a ``seed`` option.
    timeout : float or None
        Seconds per solver (process isolation only); None: no limit.
    normalize : {"l2", "none"}
        Row L2 normalisation of the features before anything else.
    init : {"kmeans++", "random"}
        Shared initial centroids.
    metric : {"cosine", "dot", "l2"}
        Scores from features and centroids.
    update : {"soft", "hard"}
        Centroid update weighted by the soft assignment (when the solver gives one) or by the labels.
    tol : float
        Fixed-point tolerance of the protocol.
    device : str
        Computation device, passed to every solver that has a ``device`` option.
    isolation : {"process", "inline"}
        One spawned worker per solver (crash/timeout isolation), or in this process.
    tracemalloc : bool
        Also record the tracemalloc peak (Python/numpy allocations; slows Python-heavy code).
    warmup : bool
        Before the timed run, one untimed round on the first ``min(N, max(4K, 64))`` rows.
    threads : int or None
        ``torch.set_num_threads`` in the worker (None: torch's default). On a shared or busy
        machine, 1 thread gives far steadier timings of small problems.
    solver_opts : mapping
        ``{solver name: {option: value}}``.
    """

    k: int | None = None
    iters: int = 10
    seed: int = 0
    timeout: float | None = 120.0
    normalize: str = "l2"
    init: str = "kmeans++"
    metric: str = "cosine"
    update: str = "soft"
    tol: float = 1e-6
    device: str = "cpu"
    isolation: str = "process"
    tracemalloc: bool = False
    warmup: bool = True
    threads: int | None = None
    solver_opts: Mapping = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        def check(ok, name, expected):
            if not ok:
                raise CompareError(f"{name}: expected {expected}, found {getattr(self, name)!r}")
        check(self.k is None or (isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool)
                                 and self.k >= 1), "k", "an int >= 1 or None")
        check(isinstance(self.iters, (int, np.integer)) and self.iters >= 1, "iters", "an int >= 1")
        check(isinstance(self.seed, (int, np.integer)), "seed", "an int")
        check(self.timeout is None or self.timeout > 0, "timeout", "a positive number of seconds or None")
        check(self.normalize in ("l2", "none"), "normalize", "'l2' or 'none'")
        check(self.init in ("kmeans++", "random"), "init", "'kmeans++' or 'random'")
        check(self.metric in ("cosine", "dot", "l2"), "metric", "'cosine', 'dot' or 'l2'")
        check(self.update in ("soft", "hard"), "update", "'soft' or 'hard'")
        check(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), "threads",
              "an int >= 1 or None")
        check(self.tol >= 0, "tol", "a float >= 0")
        check(self.isolation in ("process", "inline"), "isolation", "'process' or 'inline'")


@attrs.frozen(eq=False)
class CompareResult:
    """Rows (one dict per solver), per-solver labels, and what the data looked like."""

    rows: list
    labels: dict
    true_labels: np.ndarray | None
    kept_index: np.ndarray
    dropped_index: np.ndarray
    info: dict

    def row(self, solver: str) -> dict:
        return next(r for r in self.rows if r["solver"] == solver)


def _option_names(cls) -> set[str]:
    if attrs.has(cls):
        return set(attrs.fields_dict(cls))
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()


def _solver_config(entry, cfg: CompareConfig) -> dict:
    """Shared defaults (seed, device, max_iter for feature solvers) overridden by --solver-opt."""
    names = _option_names(entry.cls)
    config = {}
    if "seed" in names:
        config["seed"] = int(cfg.seed)
    if "device" in names:
        config["device"] = cfg.device
    if entry.needs == "features" and "max_iter" in names:
        config["max_iter"] = int(cfg.iters)
    config.update(cfg.solver_opts.get(entry.name, {}))
    return config


def _validate(entry, config: dict, user_opts: Mapping) -> str | None:
    """Instantiate once here: a bad user option is an error, a broken solver a failed row."""
    from .plugins import get_solver

    try:
        get_solver(entry.name, **config)
    except Exception as exc:  # noqa: BLE001
        if user_opts:
            raise CompareError(f"--solver-opt for {entry.name!r}: {exc}") from exc
        return f"{type(exc).__name__}: {exc}"
    return None


def _metrics(labels: np.ndarray, true: np.ndarray | None, k: int) -> dict:
    from .metrics import clustering_scores, size_stats

    out = dict(size_stats(labels, k))
    if true is not None:
        out.update(clustering_scores(labels, true))
    return out


def compare(features, labels=None, solvers: Sequence[str] | None = None,
            config: CompareConfig | None = None, *, name: str = "features", log=print) -> CompareResult:
    """Run every solver in ``solvers`` through the shared protocol on ``features``.

    Parameters
    ----------
    features : ndarray [N, D]
        Fixed features (rows with NaN/inf are dropped and reported).
    labels : ndarray [N] int, optional
        Ground truth for NMI/ARI/accuracy; also gives the default ``K``.
    solvers : sequence of str, optional
        Registered solver names; default every registered solver.
    config : CompareConfig, optional
    name : str
        Data set name for the report.
    log : callable
        Receives warnings and progress lines (``print`` by default).

    Returns
    -------
    CompareResult
    """
    from .plugins import list_solvers, solver_entry

    cfg = config or CompareConfig()
    x = np.asarray(features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features)
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.number):
        raise CompareError(f"features: expected a non-empty numeric [N, D] array, "
                           f"found shape {x.shape} dtype {x.dtype}")
    y = None if labels is None else np.asarray(labels).astype(np.int64)
    if y is not None and y.shape != (x.shape[0],):
        raise CompareError(f"labels: expected shape ({x.shape[0]},), found {y.shape}")
    x = x.astype(np.float32, copy=False)
    n_input = x.shape[0]
    x, y, kept, dropped = drop_nonfinite(x, y)
    if dropped.size:
        shown = ", ".join(map(str, dropped[:20].tolist())) + (", ..." if dropped.size > 20 else "")
        log(f"warning: dropped {dropped.size} of {n_input} rows with NaN/inf values (indices {shown})")
    if x.shape[0] == 0:
        raise CompareError(f"features: expected at least one finite row, found all {n_input} rows NaN/inf")
    k = cfg.k if cfg.k is not None else (None if y is None else int(np.unique(y).size))
    if k is None:
        raise CompareError("k: expected --k when the features have no labels, found none")
    names = list(solvers) if solvers else list_solvers()
    if not names:
        raise CompareError("solvers: expected at least one registered solver, found none")
    entries = [solver_entry(s) for s in names]  # unknown names raise with close matches
    unknown = sorted(set(cfg.solver_opts) - set(names))
    if unknown:
        raise CompareError(f"--solver-opt: expected options for the compared solvers {names}, found {unknown}")

    if cfg.normalize == "l2":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    n = x.shape[0]
    c0 = init_centroids(torch.from_numpy(x), k, cfg.init, cfg.seed).numpy()
    if cfg.isolation == "inline" and cfg.timeout is not None:
        log("note: --isolation inline cannot enforce --timeout; solvers run without a deadline")

    rows, all_labels = [], {}
    for entry in entries:
        row = {"solver": entry.name, "needs": entry.needs, "plugin": entry.plugin}
        config = _solver_config(entry, cfg)
        user = cfg.solver_opts.get(entry.name, {})
        if entry.requires_n_ge_k and k > n:
            out = _failure(STATUS_FAILED, f"solver requires N >= K, found N = {n} samples for K = {k} clusters")
        elif (broken := _validate(entry, config, user)) is not None:
            out = _failure(STATUS_FAILED, broken)
        else:
            task = dict(solver=entry.name, config=config, x=x, c0=c0, iters=cfg.iters, metric=cfg.metric,
                        tol=cfg.tol, device=cfg.device, seed=cfg.seed, tracemalloc=cfg.tracemalloc,
                        warmup=cfg.warmup, update=cfg.update, threads=cfg.threads)
            out = _run_in_process(task, cfg.timeout) if cfg.isolation == "process" else _safe_run(task)
        row["config"] = {key: repr(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
                         for key, v in config.items()}
        if out["status"] == STATUS_OK:
            pred = out.pop("labels")
            all_labels[entry.name] = pred
            out.update(_metrics(pred, y, k))
        row.update(out)
        rows.append(row)
        log(_progress(row))

    info = {
        "source": name, "n_input": n_input, "n": n, "d": int(x.shape[1]), "k": k,
        "n_classes": None if y is None else int(np.unique(y).size),
        "dropped_rows": dropped.tolist(), "n_dropped": int(dropped.size),
        "config": {f.name: getattr(cfg, f.name) for f in attrs.fields(CompareConfig) if f.name != "solver_opts"}
        | {"solver_opts": {s: dict(o) for s, o in cfg.solver_opts.items()}},
        "memory_measure": ("CPU: growth of the worker's resident set during the run (VmHWM - VmRSS after "
                           "resetting the high-water mark via /proc/self/clear_refs; ru_maxrss growth where "
                           "unavailable), all allocations (numpy, torch, Python); CUDA: "
                           "torch.cuda.max_memory_allocated"),
        "seconds_measure": "wall time of the whole protocol in the worker (all rounds, scores and centroid "
                           "updates included; process start-up, plugin imports and the warm-up round "
                           "excluded)",
        "python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
    }
    return CompareResult(rows=rows, labels=all_labels, true_labels=y, kept_index=kept,
                         dropped_index=dropped, info=info)


def _progress(row: Mapping) -> str:
    if row["status"] == STATUS_OK:
        acc = f", acc {row['acc']:.4f}" if "acc" in row else ""
        return f"  {row['solver']}: ok in {row['seconds']:.2f} s{acc}"
    return f"  {row['solver']}: {row['status']} ({row['reason']})"


# --------------------------------------------------------------------------- output
def _fmt(col: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if col == "converged":
        return "yes" if value else "no"
    if isinstance(value, bool) or isinstance(value, (int, np.integer)) or isinstance(value, str):
        return str(value)
    if col in ("nmi", "ari", "acc"):
        return f"{value:.4f}"
    if col == "size_entropy":
        return f"{value:.3f}"
    if col == "marginal_error":
        return f"{value:.2e}"
    if col == "seconds":
        return f"{value:.3f}"
    if col == "mem_mb":
        return f"{value:.1f}"
    return f"{value:.5g}"


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Aligned text table: text left-aligned, numbers right-aligned, ``-`` for missing values."""
    columns = list(columns or COLUMNS)
    cells = [[_fmt(c, r.get(c)) if r["status"] == STATUS_OK or c in ("solver", "status") else "-"
              for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    left = {"solver", "status", "converged"}

    def line(values):
        return "  ".join(v.ljust(w) if c in left else v.rjust(w)
                         for v, w, c in zip(values, widths, columns)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
    notes = [f"  {r['solver']}: {r['status']}: {r['reason']}" for r in rows if r["status"] != STATUS_OK]
    return "\n".join(out + (["", "not run to completion:"] + notes if notes else []))


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


def _columns_for(result: CompareResult) -> list[str]:
    cols = list(COLUMNS)
    if result.true_labels is None:
        cols = [c for c in cols if c not in ("nmi", "ari", "acc")]
    return cols


def write_outputs(result: CompareResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``labels.npz`` and ``compare.png`` into ``out_dir``.

    ``labels.npz`` holds ``solver:<name>`` [N'] int64 per solver that finished, ``true`` (when
    labels exist) and ``index`` (row indices into the input, after dropping NaN/inf rows).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "labels": out / "labels.npz",
             "png": out / "compare.png"}
    extra = ["reason", "needs", "plugin", "n_empty", "n_not_converged", "solver_error", "solve_seconds",
             "startup_seconds", "threads", "rss_peak_mb", "cuda_peak_mb", "tracemalloc_peak_mb"]
    fields = _columns_for(result) + [c for c in extra if any(c in r for r in result.rows)]
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in result.rows:
            writer.writerow({c: _jsonable(r.get(c)) for c in fields})
    with open(paths["json"], "w") as fh:
        json.dump(_jsonable({"info": result.info, "rows": result.rows}), fh, indent=2)
    arrays = {f"solver:{s}": lab for s, lab in result.labels.items()}
    arrays["index"] = result.kept_index
    if result.true_labels is not None:
        arrays["true"] = result.true_labels
    np.savez(paths["labels"], **arrays)
    plot(result, paths["png"])
    return paths


def plot(result: CompareResult, path: str | Path) -> None:
    """Two panels: sorted cluster sizes per solver; accuracy (or size entropy) against wall time."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = [r for r in result.rows if r["status"] == STATUS_OK]
    k, n = result.info["k"], result.info["n"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles, markers = ["-", "--", "-.", ":"], ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
    for i, r in enumerate(ok):
        sizes = np.sort(np.bincount(result.labels[r["solver"]], minlength=k))[::-1]
        ax1.step(np.arange(1, k + 1), sizes, where="mid", color=colours[i % len(colours)],
                 linestyle=styles[i % len(styles)], linewidth=1.6, label=r["solver"])
    ax1.axhline(n / k, color="grey", linestyle="--", linewidth=1, label="N/K (balanced)")
    ax1.set(xlabel="cluster rank (largest first)", ylabel="cluster size",
            title=f"cluster sizes, {result.info['source']} (N={n}, K={k})")
    ax1.legend(fontsize=8)
    has_truth = result.true_labels is not None
    key, ylabel = ("acc", "Hungarian accuracy") if has_truth else ("size_entropy", "size entropy (nats)")
    for i, r in enumerate(ok):  # markers differ so that coinciding points stay visible
        ax2.scatter(r["seconds"], r[key], s=70, color=colours[i % len(colours)], marker=markers[i % len(markers)],
                    edgecolor="black", alpha=0.8, zorder=3, label=f"{r['solver']} ({r[key]:.3f}, {r['seconds']:.2g} s)")
    if ok:
        ax2.set_xscale("log")
        ax2.margins(x=0.15, y=0.1)
        ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    ax2.set(xlabel="wall seconds (log)", ylabel=ylabel, title=f"{ylabel} vs time")
    failed = [f"{r['solver']} ({r['status']})" for r in result.rows if r["status"] != STATUS_OK]
    if failed:
        fig.suptitle("not completed: " + ", ".join(failed), fontsize=9, color="firebrick")
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI
def parse_solver_opts(items: Sequence[str]) -> dict[str, dict]:
    """``["sinkhorn-gpu.epsilon=0.05", "kmeans.init='kmeans++'"]`` -> ``{name: {key: value}}``.

    Values are Python literals (``0.05``, ``None``, ``True``, ``'x'``); anything else is a string.
    """
    opts: dict[str, dict] = {}
    for item in items or ():
        lhs, eq, raw = item.partition("=")
        name, dot, key = lhs.rpartition(".")
        if not eq or not dot or not name or not key.isidentifier():
            raise CompareError(f"--solver-opt: expected NAME.key=value, found {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        opts.setdefault(name, {})[key] = value
    return opts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``assignsolve compare``."""
    parser.add_argument("--features", default="digits", metavar="PATH|digits",
                        help="features: .npy/.npz/.pt file or 'digits' (default: digits)")
    parser.add_argument("--labels", default=None, metavar="PATH", help="optional labels file (.npy/.pt)")
    parser.add_argument("--solvers", default=None, metavar="A,B,...",
                        help="comma-separated solver names (default: every registered solver)")
    parser.add_argument("--k", type=int, default=None, help="clusters (default: number of label classes)")
    parser.add_argument("--iters", type=int, default=10, help="protocol rounds T (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared initial centroids and solvers")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per solver, 0 for none (default: 120)")
    parser.add_argument("--solver-opt", action="append", default=[], metavar="NAME.key=value",
                        help="solver option, repeatable (e.g. sinkhorn-gpu.epsilon=0.05)")
    parser.add_argument("--normalize", choices=["l2", "none"], default="l2", help="feature preprocessing")
    parser.add_argument("--init", choices=["kmeans++", "random"], default="kmeans++",
                        help="shared initial centroids")
    parser.add_argument("--metric", choices=["cosine", "dot", "l2"], default="cosine",
                        help="scores from features and centroids")
    parser.add_argument("--update", choices=["soft", "hard"], default="soft",
                        help="centroids weighted by the soft assignment when given (default) or by labels")
    parser.add_argument("--tol", type=float, default=1e-6, help="fixed-point tolerance of the protocol")
    parser.add_argument("--device", default="cpu", help="device for solvers with a device option")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: torch's default)")
    parser.add_argument("--isolation", choices=["process", "inline"], default="process",
                        help="one spawned worker per solver (timeouts, crash isolation) or in-process")
    parser.add_argument("--tracemalloc", action="store_true", help="also record tracemalloc peaks")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up round on a subset before each timed run")
    parser.add_argument("--out", default="compare-out", metavar="DIR", help="output folder (default: compare-out)")


def main(args: argparse.Namespace) -> int:
    from .data import load_features

    try:
        data = load_features(args.features, args.labels)
    except (FileNotFoundError, ValueError) as exc:
        raise CompareError(str(exc)) from exc
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()] if args.solvers else None
    cfg = CompareConfig(k=args.k, iters=args.iters, seed=args.seed,
                        timeout=args.timeout if args.timeout and args.timeout > 0 else None,
                        normalize=args.normalize, init=args.init, metric=args.metric, update=args.update, tol=args.tol,
                        device=args.device, isolation=args.isolation, tracemalloc=args.tracemalloc,
                        warmup=args.warmup, threads=args.threads,
                        solver_opts=parse_solver_opts(args.solver_opt))
    print(f"compare: {data.name} {data.x.shape[0]}x{data.x.shape[1]}, "
          f"K = {cfg.k if cfg.k is not None else 'from labels'}, T = {cfg.iters}, seed = {cfg.seed}")
    result = compare(data.x, data.labels, solvers, cfg, name=data.name)
    paths = write_outputs(result, args.out)
    print()
    print(format_table(result.rows, _columns_for(result)))
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if any(r["status"] == STATUS_OK for r in result.rows) else 1
