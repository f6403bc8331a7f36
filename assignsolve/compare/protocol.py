"""The shared protocol of ``compare``: fixed features, shared initial centroids, solver loop."""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import AssignsolveError
from ..ops.centroids import centroid_update
from ..ops.stats import marginal_error

STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT = "ok", "failed", "timeout"


class InvalidResultError(AssignsolveError, ValueError):
    """A solver returned an assignment that is not one (NaN/negative/unnormalised soft, bad labels)."""


def check_result(res, n: int, k: int):
    """``res`` when it is a valid assignment of ``n`` samples to ``k`` clusters, else
    :class:`InvalidResultError` naming what is wrong (a plugin's NaN, negative or unnormalised
    ``soft`` or out-of-range labels is a failed row, never status "ok")."""
    labels = _as_torch(res.labels)
    if tuple(labels.shape) != (n,) or (n and (int(labels.min()) < 0 or int(labels.max()) >= k)):
        raise InvalidResultError(f"invalid result: expected {n} labels in 0..{k - 1}, found shape "
                                 f"{tuple(labels.shape)}" + (f", range {int(labels.min())}..{int(labels.max())}" if n else ""))
    if res.soft is not None:
        q = _as_torch(res.soft).double()
        if tuple(q.shape) != (n, k):
            raise InvalidResultError(f"invalid result: expected soft of shape ({n}, {k}), found {tuple(q.shape)}")
        if not bool(torch.isfinite(q).all()):
            raise InvalidResultError(f"invalid result: soft has {int((~torch.isfinite(q)).sum())} NaN/inf entries")
        if bool((q < 0).any()):
            raise InvalidResultError(f"invalid result: soft has negative entries (min {float(q.min()):.3g})")
        err = float((q.sum(1) - 1).abs().max()) if n else 0.0
        if err > 1e-3:
            raise InvalidResultError(f"invalid result: rows of soft must sum to 1, found an error of {err:.3g}")
    return res


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


def _one_hot(labels: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.to(device=like.device, dtype=torch.int64), k).to(like.dtype)


def _as_torch(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def run_protocol(solver, needs: str, x: torch.Tensor, c0: torch.Tensor, iters: int,
                 metric: str = "cosine", tol: float = 1e-6, update: str = "soft",
                 tau: float | None = None, pair=None) -> dict:
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
    tau : float, optional
        Two-view solvers (iic): the scores are divided by ``tau`` (a temperature) ...
    pair : array [N] int, optional
        ... and ``paired_scores = S[pair] / tau`` is the second view (a feature-space neighbour).

    Returns
    -------
    dict
        ``labels`` [N] int64 numpy, ``objective``, ``rounds``, ``n_iters`` (summed over rounds),
        ``converged`` (every solve converged), ``n_not_converged``, ``marginal_error``,
        ``solver_error`` (the solver's last recorded stopping value), ``solve_seconds``,
        ``collapse`` (:func:`collapse_reason`; "" when none; a collapse sets ``converged`` False).
    """
    from ..core.problem import Problem

    k = c0.shape[0]
    results = []
    if needs == "features":
        res = check_result(solver(Problem(features=x, n_clusters=k, init_centroids=c0)), x.shape[0], k)
        results.append(res)
    else:
        c, previous = c0, None
        for _ in range(iters):
            problem = Problem.from_features(x, c, metric=metric)
            if tau is not None:
                s = problem.scores / tau
                paired = None if pair is None else s[_as_torch(pair).to(s.device)]
                problem = Problem(scores=s, paired_scores=paired, features=x, init_centroids=problem.init_centroids)
            res = check_result(solver(problem), x.shape[0], k)
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
    collapse = collapse_reason(labels, q, k)
    return {
        "collapse": collapse,
        "labels": labels.cpu().numpy().astype(np.int64),
        "objective": float(last.objective),
        "rounds": len(results) if needs != "features" else 1,
        "n_iters": int(sum(r.n_iters for r in results)),
        "converged": all(bool(r.converged) for r in results) and not collapse,
        "n_not_converged": sum(not r.converged for r in results),
        "marginal_error": marginal_error(q),
        "solver_error": float(last.marginal_error),
        "solve_seconds": float(sum(r.seconds for r in results)),
    }


def collapse_reason(labels: torch.Tensor, q: torch.Tensor, k: int) -> str:
    """Why the assignment is degenerate, or "" when it is not.

    Degenerate: (a) an uninformative plan, the mean row maximum of ``Q`` (rows normalised) below
    ``1.5 / K``, so that the labels come from tie-breaking, not from the scores; (b) one cluster
    holding more than half of the samples (K >= 3); (c) fewer than half of the clusters used.
    """
    n = int(labels.numel())
    if n == 0 or k < 2:
        return ""
    rows = q / q.sum(dim=1, keepdim=True).clamp(min=torch.finfo(q.dtype).tiny)
    peak = float(rows.max(dim=1).values.mean())
    if peak < 1.5 / k:
        return f"uninformative plan: mean row max {peak:.3g} < 1.5/K = {1.5 / k:.3g}"
    sizes = torch.bincount(labels.cpu().long(), minlength=k)
    if k >= 3 and int(sizes.max()) > n / 2:
        return f"one cluster holds {int(sizes.max())} of {n} samples"
    used = int((sizes > 0).sum())
    if used < (k + 1) // 2:
        return f"only {used} of {k} clusters used"
    return ""
