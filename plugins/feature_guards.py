"""Input guards of the feature solvers (``kmeans``, ``coke``), kept apart from their algorithms.

* refuse what a solver cannot honour (size bounds, weighted marginals) instead of ignoring it;
* refuse float64 ``init_centroids`` beyond the range of float32 features (the cast would give inf);
* k-means on features whose squared norms over/underflow (``|x| ~ 1e30`` in float32, ``1e-40``,
  ``1e300`` in float64): the Lloyd iterations are run on ``x * 2**-e`` (exact; the labels of
  k-means do not change under a positive rescaling) and centroids, objective and history are
  scaled back; an objective that no float64 can hold is refused.
"""

from __future__ import annotations

import math

import torch

from assignsolve import InvalidProblemError, Problem
from assignsolve.core.guards import check_castable, ldexp, overflow_exponent, pow2_row_scale, refuse_unsupported

__all__ = ["coke_unit_features", "min_size_shortfall", "prepare_kmeans_features", "unscale_kmeans"]


def prepare_kmeans_features(name: str, problem: Problem, x: torch.Tensor, init: torch.Tensor | None,
                            raw_init: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Validate, then return ``(x * 2**-e, init * 2**-e, e)`` (``e = 0`` for ordinary inputs).

    ``raw_init`` is ``problem.init_centroids`` before its cast to ``x``'s dtype.
    """
    refuse_unsupported(name, problem, a=True, b=True,
                       instead="'lp' (size bounds, weighted marginals) or 'sinkhorn-pot' (weighted "
                       "marginals) on Problem.from_features(x, centroids)")
    check_castable(raw_init, x.dtype, "init_centroids", " of the features")
    e = overflow_exponent(x)
    if e == 0:
        return x, init, 0
    x = ldexp(x, -e)
    if init is not None:
        init = ldexp(init, -e)
    return x, init, e


def unscale_kmeans(centroids: torch.Tensor, history: tuple[float, ...], objective: float, e: int,
                   squared_space: bool) -> tuple[torch.Tensor, tuple[float, ...], float]:
    """Undo :func:`prepare_kmeans_features`: centroids ``* 2**e``; when ``squared_space`` (plain
    l2 on the raw features), objective and history ``* 4**e``. Overflow is an error."""
    if e == 0:
        return centroids, history, objective
    centroids = ldexp(centroids, e)
    if not squared_space:
        return centroids, history, objective
    try:
        history = tuple(math.ldexp(h, 2 * e) for h in history)
        objective = math.ldexp(objective, 2 * e)
    except OverflowError:
        raise InvalidProblemError(
            f"features: expected squared distances within the float64 range, found max |x| ~ 2**{e} "
            f"(mean squared distance ~ 2**{2 * e + math.frexp(objective)[1]}); rescale the features"
        ) from None
    return centroids, history, objective


def coke_unit_features(name: str, problem: Problem, x: torch.Tensor) -> torch.Tensor:
    """CoKe's input checks, then the unit rows of ``x`` (exact even where ``|x_i|**2`` overflows).

    CoKe honours ``b`` (lower-bound proportions) and ``min_cluster_size``; it has no upper bound
    and weighs samples equally, so ``max_cluster_size`` and a non-uniform ``a`` are refused.
    """
    refuse_unsupported(name, problem, sizes=False, max_size=True, a=True, b=False,
                       instead="'lp' on Problem.from_features(x, centroids)")
    check_castable(problem.init_centroids, x.dtype, "init_centroids", " of the features")
    return torch.nn.functional.normalize(pow2_row_scale(x), dim=1)


def min_size_shortfall(problem: Problem, labels: torch.Tensor) -> str | None:
    """Why a CoKe result with a hard ``min_cluster_size`` is not a solution, or None when every
    cluster holds at least that many samples (CoKe enforces the bound only on average)."""
    lo = problem.min_cluster_size
    if lo is None:
        return None
    sizes = torch.bincount(labels.detach().cpu(), minlength=problem.n_clusters)
    if int(sizes.min()) >= lo:
        return None
    return f"smallest cluster has {int(sizes.min())} samples, below min_cluster_size = {lo}"
