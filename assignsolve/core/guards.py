"""Guards shared by the solvers: values that leave the float range, constraints a solver cannot
honour, and collapsed results.

Each check raises an :class:`~assignsolve.errors.AssignsolveError` subclass with one line that
names the value and what was expected, or returns a small pure value (a power-of-two scale).
Scaling by a power of two is exact in binary floating point (until under/overflow), so a solver
whose answer is invariant to a positive rescaling of its input (k-means, the linear program)
can compute on ``x * 2**-e`` and give the same answer as on ``x``.
"""

from __future__ import annotations

import math

import torch

from .errors import InvalidProblemError
from .problem import Problem

__all__ = [
    "UnsupportedProblemError",
    "check_castable",
    "check_exponent_range",
    "collapsed_to",
    "is_uniform",
    "ldexp",
    "overflow_exponent",
    "pow2_exponent",
    "pow2_row_scale",
    "refuse_unsupported",
]


class UnsupportedProblemError(InvalidProblemError):
    """The problem asks for something (size bounds, weighted marginals) this solver cannot do."""


def check_castable(t: torch.Tensor | None, dtype: torch.dtype, name: str, why: str = "") -> None:
    """Refuse ``t`` when casting it to ``dtype`` would turn a finite value into inf.

    E.g. float64 ``init_centroids`` of 1e39 meeting float32 features. ``why`` says who casts.
    """
    if t is None or not t.is_floating_point() or torch.finfo(t.dtype).max <= torch.finfo(dtype).max:
        return
    limit = torch.finfo(dtype).max
    big = t.abs() > limit
    if bool(big.any()):
        idx = tuple(int(i) for i in big.nonzero()[0].tolist())
        raise InvalidProblemError(
            f"{name}: expected |values| <= {limit:.4g} (the {dtype} range{why}), "
            f"found {t[idx].item():.6g} at index {idx}"
        )


def pow2_exponent(t: torch.Tensor) -> int:
    """``e`` with ``max|t| * 2**-e`` in ``[0.5, 1)``; 0 when ``t`` is all zero."""
    peak = float(t.detach().abs().max()) if t.numel() else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return 0
    return math.frexp(peak)[1]


def ldexp(x: torch.Tensor, e: int) -> torch.Tensor:
    """``x * 2**e`` exactly, for any ``e`` (``torch.ldexp`` forms ``2**e`` in ``x``'s dtype, which
    overflows for ``e >= 128`` in float32, so the factor is applied in steps)."""
    step = math.frexp(torch.finfo(x.dtype).max)[1] - 2
    while e != 0:
        part = max(-step, min(step, e))
        x = x * (2.0 ** part)
        e -= part
    return x


def pow2_row_scale(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every row multiplied by the power of two that brings its max |entry| into [0.5, 1).

    Direction-preserving and exact, so ``normalize(pow2_row_scale(x))`` is the unit direction of
    each row even when ``|x_i|**2`` overflows (1e30 in float32) or underflows (1e-40).
    """
    peak = x.abs().amax(dim=1, keepdim=True)
    _, exp = torch.frexp(torch.where(peak > 0, peak, torch.ones_like(peak)))
    half = exp // 2  # two factors, each within the dtype's range (2**149 is not in float32)
    x = x * torch.ldexp(torch.ones_like(peak), (-half).to(x.dtype))
    return x * torch.ldexp(torch.ones_like(peak), (half - exp).to(x.dtype))


def overflow_exponent(x: torch.Tensor) -> int:
    """The power-of-two exponent to divide ``x`` by before squaring it, or 0 when none is needed.

    Non-zero only when ``max|x|`` is outside ``[2**(-m/4), 2**(m/4)]`` (``m`` = the dtype's
    ``maxexp``: 128 for float32, 1024 for float64), i.e. when squared norms of ``x`` could
    overflow or underflow; ordinary inputs are left bit-for-bit alone.
    """
    e = pow2_exponent(x)
    quarter = math.frexp(torch.finfo(x.dtype).max)[1] // 4 if x.is_floating_point() else 0
    return e if abs(e) > quarter else 0


def check_exponent_range(spread: float, name: str, solver: str, what: str, limit: float) -> None:
    """Refuse a ``spread`` (e.g. ``(max S - min S) / epsilon``) that is not finite or above ``limit``."""
    if not math.isfinite(spread) or spread > limit:
        raise InvalidProblemError(
            f"{solver}: expected {what} <= {limit:.4g}, found {spread:.4g} ({name}); "
            "rescale the input or raise epsilon"
        )


def is_uniform(t: torch.Tensor | None, rtol: float = 1e-6) -> bool:
    """True when ``t`` is None (the default, uniform) or all its entries are equal up to ``rtol``."""
    if t is None:
        return True
    t = t.detach().double()
    return bool((t.max() - t.min()) <= rtol * t.abs().max())


def refuse_unsupported(solver: str, problem: Problem, *, sizes: bool = True, a: bool = True,
                       b: bool = True, max_size: bool | None = None, instead: str = "'lp'") -> None:
    """Raise :class:`UnsupportedProblemError` when ``problem`` sets what ``solver`` cannot honour.

    ``sizes``: refuse ``min_cluster_size``/``max_cluster_size``; ``max_size`` (default: ``sizes``)
    refuses only ``max_cluster_size``; ``a``/``b``: refuse a non-uniform row/column marginal
    (a uniform one equals the default and is accepted). ``instead`` names a solver that can.
    """
    max_size = sizes if max_size is None else max_size
    asked = []
    if sizes and problem.min_cluster_size is not None:
        asked.append(f"min_cluster_size = {problem.min_cluster_size}")
    if max_size and problem.max_cluster_size is not None:
        asked.append(f"max_cluster_size = {problem.max_cluster_size}")
    for flag, name in ((a, "a"), (b, "b")):
        t = getattr(problem, name)
        if flag and not is_uniform(t):
            asked.append(f"a non-uniform {name} (min {float(t.min()):.4g}, max {float(t.max()):.4g})")
    if asked:
        raise UnsupportedProblemError(
            f"{solver}: cannot honour {', '.join(asked)} and will not ignore it; "
            f"drop it or use a solver that can (e.g. {instead})"
        )


def collapsed_to(problem: Problem, labels: torch.Tensor) -> int | None:
    """The one cluster every sample went to when the problem asks for several, else None.

    "Asks for several": ``K >= 2``, at least two samples of positive mass ``a`` and at least two
    clusters of positive mass ``b`` (uniform when omitted).
    """
    k, n = problem.n_clusters, problem.n_samples
    if k < 2 or n < 2:
        return None
    y = labels.detach() if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if problem.a is None and not bool((y == y[0]).all()):  # the common case: one pass, on device
        return None
    y = y.cpu()
    a = problem.row_marginal(torch.float64, torch.device("cpu"))
    b = problem.col_marginal(torch.float64, torch.device("cpu"))
    if int((a > 0).sum()) < 2 or int((b > 0).sum()) < 2:
        return None
    y = y[a > 0]
    first = int(y[0])
    return first if bool((y == first).all()) else None
