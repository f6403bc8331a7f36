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

Scale-aware defaults (:mod:`.scales`): ``epsilon = --epsilon-rel x std(S0)`` (0.1) for score
solvers with an ``epsilon`` option and a temperature ``tau = --tau-rel x std(S0)`` for two-view
solvers (iic), whose second view is a feature-space neighbour (``--pair-k``); ``S0`` are the
scores against the shared initial centroids. A collapsed plan is reported (``converged = no``).
Rows are sorted by accuracy (objective without labels), the best marked ``*``; ``--repeat R``
gives mean +- std over seeds; ``--no-times`` prints a table identical between invocations.

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

import inspect
import os
import platform
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import torch

from ..ops.centroids import centroid_update, init_centroids, kmeans_plusplus
from ..ops.stats import marginal_error
from .config import CompareConfig
from .isolation import _failure, _run_in_process, _safe_run
from .protocol import STATUS_FAILED, STATUS_OK, drop_nonfinite, run_protocol
from .report import _progress, format_table, plot, write_outputs
from .scales import neighbour_pairs, reads_two_views, scale_options, score_spread

from ..core.errors import CompareError

__all__ = [
    "CompareConfig", "CompareError", "CompareResult", "centroid_update", "compare",
    "drop_nonfinite", "format_table", "init_centroids", "kmeans_plusplus", "marginal_error",
    "plot", "run_protocol", "write_outputs",
]


# --------------------------------------------------------------------------- orchestration
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


#: why a solver is slow by design, shown when it takes more than TIME_RATIO x kmeans' time
SLOW_BY_DESIGN = {
    "lp": "exact LP solved to the vertex (cvxpy + HiGHS simplex, {n_iters} simplex iterations over {rounds} "
          "rounds): the exact reference the others approximate, not a speed contender",
    "sinkhorn-gpu": "{n_iters} Sinkhorn iterations over {rounds} rounds at the small scale-aware epsilon "
                    "(a plan sharp enough to match lp); a larger --epsilon-rel is faster and softer",
    "sinkhorn-pot": "{n_iters} Sinkhorn iterations over {rounds} rounds at the small scale-aware epsilon "
                    "(a plan sharp enough to match lp); a larger --epsilon-rel is faster and softer",
}
TIME_RATIO = 5.0
#: below this many seconds a ratio mostly measures fixed per-call costs: no note
TIME_FLOOR = 1.0


def add_time_notes(rows: list, peer: str = "kmeans") -> None:
    """``time_note`` on each finished row slower than ``TIME_RATIO`` x the ``peer``'s time in this run
    (and than ``TIME_FLOOR`` seconds), with the reason when it is known (:data:`SLOW_BY_DESIGN`)."""
    ref = next((r for r in rows if r["solver"] == peer and r["status"] == STATUS_OK), None)
    if ref is None or not ref["seconds"] > 0:
        return
    for r in rows:
        if r["status"] == STATUS_OK and r is not ref and r["seconds"] > max(TIME_RATIO * ref["seconds"], TIME_FLOOR):
            why = SLOW_BY_DESIGN.get(r["solver"], "no reason known: a speed target missed").format(**r)
            r["time_note"] = f"{r['seconds'] / ref['seconds']:.0f}x the time of {peer}: {why}"


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
    from ..registry.manager import get_solver

    try:
        get_solver(entry.name, **config)
    except Exception as exc:  # noqa: BLE001
        if user_opts:
            raise CompareError(f"--solver-opt for {entry.name!r}: {exc}") from exc
        return f"{type(exc).__name__}: {exc}"
    return None


def _metrics(labels: np.ndarray, true: np.ndarray | None, k: int) -> dict:
    from ..metrics import clustering_scores, size_stats

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
    from ..registry.manager import list_solvers, solver_entry

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
    c0 = init_centroids(torch.from_numpy(x), k, cfg.init, torch.Generator().manual_seed(int(cfg.seed))).numpy()
    if cfg.isolation == "inline" and cfg.timeout is not None:
        log("note: --isolation inline cannot enforce --timeout; solvers run without a deadline")

    spread = score_spread(x, c0, cfg.metric)
    spread = spread if spread > 0 else 1.0  # constant scores: any scale is as good
    pair = neighbour_pairs(x, cfg.pair_k, cfg.seed) if any(reads_two_views(e) for e in entries) else None
    rows, all_labels = [], {}
    for entry in entries:
        row = {"solver": entry.name, "needs": entry.needs, "plugin": entry.plugin}
        user = cfg.solver_opts.get(entry.name, {})
        extra, scale = scale_options(entry, _option_names(entry.cls), user, spread, cfg.epsilon_rel, cfg.tau_rel)
        config = {**_solver_config(entry, cfg), **extra}
        row["scale"] = scale
        if entry.requires_n_ge_k and k > n:
            out = _failure(STATUS_FAILED, f"solver requires N >= K, found N = {n} samples for K = {k} clusters")
        elif (broken := _validate(entry, config, user)) is not None:
            out = _failure(STATUS_FAILED, broken)
        else:
            task = dict(solver=entry.name, config=config, x=x, c0=c0, iters=cfg.iters, metric=cfg.metric,
                        tol=cfg.tol, device=cfg.device, seed=cfg.seed, tracemalloc=cfg.tracemalloc,
                        warmup=cfg.warmup, update=cfg.update, threads=cfg.threads,
                        tau=scale.get("tau"), pair=pair if "tau" in scale else None)
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

    add_time_notes(rows)
    info = {
        "source": name, "n_input": n_input, "n": n, "d": int(x.shape[1]), "k": k,
        "n_classes": None if y is None else int(np.unique(y).size),
        "score_std": spread,
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


# --------------------------------------------------------------------------- output


# --------------------------------------------------------------------------- CLI


