"""Property-based checks (hypothesis) for any solver: ``assignsolve.testing.check_properties``.

Random problems over the public API -- shapes ``N <= 12``, ``K <= 5``; numpy or torch; float32 or
float64; values scaled anywhere from 1e-300 to 1e300 (so float32 casts give inf or subnormals);
identical rows, duplicated rows, tied integer scores, all-zero inputs; marginals ``a``/``b`` with
zero entries; feasible size bounds -- and, for each, one of two outcomes:

* a clear :class:`~assignsolve.errors.AssignsolveError` (one non-empty line), when building the
  :class:`~assignsolve.problem.Problem` or when solving; or
* a valid :class:`~assignsolve.assignment.Assignment`: labels int64 [N] in ``[0, K)``; ``soft``
  (when given) finite, non-negative, rows summing to 1; ``converged=False`` only with a
  :class:`~assignsolve.errors.NotConvergedWarning`; and when ``converged=True``: size bounds met
  and no collapse (every sample in one cluster where the problem asks for several).

hypothesis is a test dependency (the ``test`` extra); it is imported only when the check runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .core.errors import AssignsolveError, NotConvergedWarning
from .core.problem import Problem
from .core.guards import collapsed_to

__all__ = ["SCALES", "build_problem", "check_properties", "check_result"]

#: Magnitudes the values are scaled to: tiny (float32 subnormal/zero), ordinary, huge (inf in
#: float32 from 1e39 on; squared norms overflow float64 from 1e155 on).
SCALES = (1e-300, 1e-40, 1e-3, 1.0, 1e3, 1e30, 1e39, 1e150, 1e300)
PATTERNS = ("random", "identical", "duplicates", "ties", "zeros")
#: "none" is listed several times so that most examples reach solvers that refuse marginals/bounds.
MARGINALS = ("none", "none", "none", "a_zeros", "b_zeros", "both_zeros", "b_random")
BOUNDS = ("none", "none", "none", "min", "max", "both")


def build_problem(seed: int, n: int, k: int, d: int, dtype: str, kind: str, scale: float,
                  pattern: str, marginals: str, bounds: str) -> Problem:
    """The problem one example describes (raises AssignsolveError when its input is refused)."""
    rng = np.random.default_rng(seed)
    scores, feats, paired = (rng.normal(size=shape) for shape in ((n, k), (n, d), (n, k)))
    if pattern == "identical":
        scores, feats, paired = (np.repeat(z[:1], n, axis=0) for z in (scores, feats, paired))
    elif pattern == "duplicates":
        src = rng.integers(0, max(1, n // 3), size=n)
        scores, feats, paired = scores[src], feats[src], paired[src]
    elif pattern == "ties":
        scores, feats, paired = (np.round(z) for z in (scores, feats, paired))
    elif pattern == "zeros":
        scores, feats, paired = np.zeros((n, k)), np.zeros((n, d)), np.zeros((n, k))
    np_dtype = np.float32 if dtype == "float32" else np.float64
    with np.errstate(over="ignore"):
        arrays = {name: (z * scale).astype(np_dtype) for name, z in
                  (("scores", scores), ("features", feats), ("paired_scores", paired))}
    a = b = None
    if marginals in ("a_zeros", "both_zeros") and n >= 2:
        a = rng.random(n) + 0.1
        a[rng.permutation(n)[: n // 2]] = 0.0
        a /= a.sum()
    if marginals in ("b_zeros", "both_zeros") and k >= 2:
        b = rng.random(k) + 0.1
        b[rng.permutation(k)[: k // 2]] = 0.0
        b /= b.sum()
    if marginals == "b_random":
        b = rng.random(k) + 0.1
        b /= b.sum()
    lo = n // (2 * k) if bounds in ("min", "both") else None
    hi = -(-n // k) + 1 if bounds in ("max", "both") else None
    if kind == "torch":
        arrays = {name: torch.from_numpy(z) for name, z in arrays.items()}
    marg = {"a": a, "b": b}
    if kind == "torch":
        marg = {name: None if m is None else torch.from_numpy(m) for name, m in marg.items()}
    return Problem(**arrays, **marg, min_cluster_size=lo, max_cluster_size=hi)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _clear(exc: Exception, where: str) -> None:
    text = str(exc).strip()
    assert text and "\n" not in text, f"{where}: expected a one-line message, found {text!r}"


def check_result(name: str, problem: Problem, result, warned: bool) -> None:
    """Assert that ``result`` is a valid answer to ``problem`` (see the module docstring)."""
    n, k = problem.n_samples, problem.n_clusters
    labels = _np(result.labels)
    assert labels.shape == (n,) and labels.dtype == np.int64, (
        f"{name}: labels expected int64 [{n}], found {labels.dtype} {labels.shape}")
    assert labels.min() >= 0 and labels.max() < k, f"{name}: labels out of [0, {k}): {labels}"
    assert result.converged or warned, f"{name}: converged=False without a NotConvergedWarning"
    if result.soft is not None:
        soft = _np(result.soft).astype(np.float64)
        assert soft.shape == (n, k), f"{name}: soft expected [{n}, {k}], found {soft.shape}"
        assert np.isfinite(soft).all(), f"{name}: soft has NaN/inf (converged={result.converged})"
        assert soft.min() >= -1e-7, f"{name}: soft has negative entries ({soft.min():.3g})"
        err = float(np.abs(soft.sum(1) - 1.0).max())
        assert err < 1e-4, f"{name}: soft rows expected to sum to 1, worst off by {err:.3g}"
    if not result.converged:
        return
    sizes = np.bincount(labels, minlength=k)
    lo, hi = problem.min_cluster_size, problem.max_cluster_size
    assert lo is None or sizes.min() >= lo, f"{name}: converged but sizes {sizes} below min {lo}"
    assert hi is None or sizes.max() <= hi, f"{name}: converged but sizes {sizes} above max {hi}"
    assert collapsed_to(problem, result.labels) is None, (
        f"{name}: converged=True with every sample in one cluster (sizes {sizes})")


def check_properties(solver, max_examples: int = 40, **config) -> None:
    """Run the property-based suite on ``solver`` (a registered name, a class or an instance).

    Deterministic (``derandomize=True``), no deadline, no example database; raises the first
    falsifying example's ``AssertionError`` (hypothesis prints the example).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    if isinstance(solver, str):
        from .registry.manager import get_solver

        solver = get_solver(solver, **config)
    elif isinstance(solver, type):
        solver = solver(**config)
    name = getattr(solver, "name", type(solver).__name__)

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**16), n=st.sampled_from(range(1, 13)), k=st.sampled_from(range(1, 6)),
           d=st.sampled_from(range(1, 5)),
           dtype=st.sampled_from(("float32", "float64")), kind=st.sampled_from(("numpy", "torch")),
           scale=st.sampled_from(SCALES), pattern=st.sampled_from(PATTERNS),
           marginals=st.sampled_from(MARGINALS), bounds=st.sampled_from(BOUNDS))
    def run(**example):
        try:
            problem = build_problem(**example)
        except AssignsolveError as exc:
            _clear(exc, "Problem")
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = solver(problem)
            except AssignsolveError as exc:
                _clear(exc, name)
                return
        warned = any(issubclass(w.category, NotConvergedWarning) for w in caught)
        check_result(name, problem, result, warned)

    run()
