r"""Exact assignment by linear programming (cvxpy + HiGHS): the ``lp`` solver.

Two linear programs, both solved to a vertex by the dual simplex method of HiGHS through cvxpy:

*Transport form* (no cluster-size bounds), the optimal-transport LP that SeLa relaxes with an
entropy term (Asano et al., 2020):

.. math::

    \max_{Q \ge 0} \; \langle Q, S \rangle \quad \text{s.t.} \quad Q \mathbf 1_K = a,\;
    Q^\top \mathbf 1_N = b .

*Assignment form* (``min_cluster_size`` and/or ``max_cluster_size`` set on the problem), the
assignment step of constrained k-means (Bradley, Bennett & Demiriz, 2000):

.. math::

    \max_{X \ge 0} \; \sum_{ij} a_i S_{ij} X_{ij} \quad \text{s.t.} \quad X \mathbf 1_K = \mathbf 1_N,\;
    \ell \le X^\top \mathbf 1_N \le u .

Its constraint matrix (a bipartite incidence matrix, with interval bounds on the column sums)
is totally unimodular, so every vertex -- and the simplex method returns one -- is integral:
the LP optimum *is* the optimal hard assignment under the size bounds, something Sinkhorn
cannot express. ``X <= 1`` is implied by ``X >= 0`` and ``X 1 = 1``.

References
----------
.. [1] Y. M. Asano, C. Rupprecht, A. Vedaldi, "Self-labelling via simultaneous clustering and
   representation learning", ICLR 2020.
.. [2] P. S. Bradley, K. P. Bennett, A. Demiriz, "Constrained k-means clustering",
   Microsoft Research MSR-TR-2000-65, 2000.
.. [3] G. Peyré, M. Cuturi, "Computational Optimal Transport", Foundations and Trends in
   Machine Learning 11(5-6), 2019, ch. 3 (the transport LP and its vertex solutions).
.. [4] Q. Huangfu, J. A. J. Hall, "Parallelizing the dual revised simplex method",
   Mathematical Programming Computation 10, 2018 (HiGHS).
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import attrs
import numpy as np
import torch

import assignsolve
from assignsolve import Assignment, AssignsolveError, BaseSolver, InvalidProblemError, Problem
from assignsolve.plugin import optional_import

__all__ = ["LPSolver", "LPSolution", "LPSolverError", "transport_lp", "bounded_assignment_lp"]

BACKENDS = ("highs", "clarabel")
_CVXPY_NAME = {"highs": "HIGHS", "clarabel": "CLARABEL"}


class LPSolverError(AssignsolveError, RuntimeError):
    """The LP backend failed or returned no solution."""


@attrs.frozen
class LPSolution:
    """What one LP solve returned (numpy, float64)."""

    plan: np.ndarray  #: [N, K] the primal solution (Q in the transport form, X in the assignment form)
    status: str  #: cvxpy status string ("optimal", "optimal_inaccurate", "user_limit", ...)
    backend: str  #: "highs" or "clarabel"
    n_iters: int  #: backend iterations (simplex or interior-point), 0 if unreported


def _cvxpy():
    return optional_import("cvxpy", "the 'lp' solver", "cvxpy")


def resolve_backend(backend: str) -> str:
    """``backend`` if its cvxpy interface is installed; ``"highs"`` falls back to ``"clarabel"``."""
    installed = set(_cvxpy().installed_solvers())
    if _CVXPY_NAME[backend] in installed:
        return backend
    if backend == "highs" and "CLARABEL" in installed:
        return "clarabel"
    raise LPSolverError(
        f"lp: expected the cvxpy backend {_CVXPY_NAME[backend]!r} to be installed, found only "
        f"{sorted(installed)}; install it with: pip install highspy"
    )


def _backend_options(backend: str, tol: float, max_iter: int | None) -> dict:
    if backend == "highs":
        # Simplex (not interior point) so the returned point is a vertex: integral in the
        # assignment form, at most N + K - 1 non-zeros in the transport form.
        opts = {"solver": "simplex", "primal_feasibility_tolerance": tol, "dual_feasibility_tolerance": tol}
        if max_iter is not None:
            opts["simplex_iteration_limit"] = int(max_iter)
        return {"highs_options": opts}
    opts = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
    if max_iter is not None:
        opts["max_iter"] = int(max_iter)
    return opts


def _solve(cp, objective, constraints, variable, backend: str, tol: float, max_iter: int | None,
           verbose: bool) -> LPSolution:
    prob = cp.Problem(cp.Maximize(objective), constraints)
    try:
        with warnings.catch_warnings():
            # cvxpy's "Solution may be inaccurate" is reported as converged=False instead.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
            prob.solve(solver=_CVXPY_NAME[backend], verbose=verbose, **_backend_options(backend, tol, max_iter))
    except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
        # cvxpy raises a bare ValueError ("Cannot unpack invalid solution") when the backend
        # gives up, e.g. on cost coefficients HiGHS treats as infinite (>= 1e20).
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise LPSolverError(f"lp: the {backend} backend failed: {first}") from exc
    status = str(prob.status)
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InvalidProblemError(
            f"lp: expected a feasible problem, found status {status!r} from {backend} "
            "(check the marginals and the cluster-size bounds)"
        )
    if variable.value is None:
        raise LPSolverError(f"lp: expected a solution from {backend}, found none (status {status!r})")
    stats = prob.solver_stats
    n_iters = int(stats.num_iters) if stats is not None and stats.num_iters is not None else 0
    return LPSolution(plan=np.asarray(variable.value, dtype=np.float64), status=status,
                      backend=backend, n_iters=n_iters)


def transport_lp(scores: np.ndarray, a: np.ndarray, b: np.ndarray, *, backend: str = "highs",
                 tol: float = 1e-9, max_iter: int | None = None, verbose: bool = False) -> LPSolution:
    r"""Solve the transport LP :math:`\max_{Q \ge 0} \langle Q, S\rangle` s.t. :math:`Q1 = a, Q^\top 1 = b`.

    The masses are rescaled to total ``N`` for the solve (so that ``tol`` is measured in units of
    one sample's mass) and the plan is scaled back.

    Parameters
    ----------
    scores : ndarray [N, K] float64
        ``S``, higher is better.
    a : ndarray [N] float64
        Row marginal, non-negative.
    b : ndarray [K] float64
        Column marginal, non-negative, ``b.sum() == a.sum()``.
    backend : {"highs", "clarabel"}
        An installed cvxpy backend (see :func:`resolve_backend`).
    tol : float
        Primal and dual feasibility tolerance of the backend.
    max_iter : int or None
        Iteration limit of the backend (``None``: the backend's own).
    verbose : bool
        Print the backend's log.

    Returns
    -------
    LPSolution
        ``plan`` is ``Q`` [N, K] with row sums ``a`` and column sums ``b``.

    References
    ----------
    Peyré & Cuturi, *Computational Optimal Transport*, 2019, sec. 3.1; Asano et al., ICLR 2020.
    """
    cp = _cvxpy()
    n, k = scores.shape
    scale = n / float(a.sum())
    q = cp.Variable((n, k), nonneg=True)
    cons = [cp.sum(q, axis=1) == a * scale, cp.sum(q, axis=0) == b * scale]
    sol = _solve(cp, cp.sum(cp.multiply(q, scores)), cons, q, backend, tol, max_iter, verbose)
    return attrs.evolve(sol, plan=sol.plan / scale)


def bounded_assignment_lp(scores: np.ndarray, weights: np.ndarray, min_size: int | None,
                          max_size: int | None, *, backend: str = "highs", tol: float = 1e-9,
                          max_iter: int | None = None, verbose: bool = False) -> LPSolution:
    r"""Solve :math:`\max_{X \ge 0} \sum_{ij} w_i S_{ij} X_{ij}` s.t. :math:`X1 = 1,\ \ell \le X^\top 1 \le u`.

    Totally unimodular (Bradley, Bennett & Demiriz, 2000), so the simplex vertex is a 0/1
    matrix: the optimal hard assignment with every cluster size in ``[min_size, max_size]``.

    Parameters
    ----------
    scores : ndarray [N, K] float64
        ``S``, higher is better.
    weights : ndarray [N] float64
        ``w``, per-sample weight of the score (the row marginal ``a``).
    min_size, max_size : int or None
        Bounds ``l`` and ``u`` on every column sum (cluster size); ``None``: unbounded.
    backend, tol, max_iter, verbose
        As in :func:`transport_lp`.

    Returns
    -------
    LPSolution
        ``plan`` is ``X`` [N, K], rows summing to 1 (0/1 at a simplex vertex).
    """
    cp = _cvxpy()
    n, k = scores.shape
    x = cp.Variable((n, k), nonneg=True)
    sizes = cp.sum(x, axis=0)
    cons = [cp.sum(x, axis=1) == 1.0]
    if min_size is not None and min_size > 0:
        cons.append(sizes >= float(min_size))
    if max_size is not None and max_size < n:
        cons.append(sizes <= float(max_size))
    objective = cp.sum(cp.multiply(x, weights[:, None] * scores))
    return _solve(cp, objective, cons, x, backend, tol, max_iter, verbose)


def _rows_to_soft(plan: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows of ``plan`` normalised to 1; a zero-mass row (``a_i = 0``) is one-hot at argmax S_i."""
    plan = np.clip(plan, 0.0, None)
    mass = plan.sum(1, keepdims=True)
    empty = mass[:, 0] <= 0
    soft = plan / np.where(empty[:, None], 1.0, mass)
    if empty.any():
        soft[empty] = np.eye(plan.shape[1])[scores[empty].argmax(1)]
    return soft


def lp_cost_scale(scores: np.ndarray) -> np.ndarray:
    r"""Scores the LP solves with: :math:`(S_{ij} - \max_j S_{ij}) \cdot 2^{-e}`, entries in (-1, 0].

    Both LP forms fix every row's total (``Q 1 = a`` or ``X 1 = 1``), so a per-row shift changes
    the objective by a constant and a positive scale multiplies it: the optimal plan is the same.
    HiGHS treats costs of magnitude >= 1e20 as infinite and its tolerances are absolute, so the
    LP is solved on this unit-scale copy (``2^{-e}`` is exact); differences below ``tol`` times
    the largest row spread count as ties.
    """
    shifted = scores - scores.max(axis=1, keepdims=True)
    peak = float(np.abs(shifted).max())
    if peak == 0.0:
        return shifted
    return np.ldexp(shifted, -math.frexp(peak)[1])


@attrs.frozen
class LPSolver(BaseSolver):
    r"""Exact optimal transport / size-bounded assignment by linear programming (cvxpy + HiGHS).

    Without size bounds: :math:`\max_{Q\ge 0}\langle Q, S\rangle` s.t. :math:`Q1 = a,\ Q^\top 1 = b`.
    With ``problem.min_cluster_size``/``max_cluster_size``:
    :math:`\max_{X\ge 0}\sum_{ij} a_i S_{ij} X_{ij}` s.t. :math:`X1 = 1,\ \ell \le X^\top 1 \le u`,
    whose simplex vertex is integral (total unimodularity), so the size bounds hold exactly.

    Parameters
    ----------
    backend : {"highs", "clarabel"}
        cvxpy backend. ``"highs"`` (default) runs HiGHS' dual simplex and returns a vertex; if
        HiGHS is not installed it falls back to ``"clarabel"`` (interior point: an optimal but
        possibly non-vertex point, so ties may be split). ``extras["backend"]`` says which ran.
    tol : float
        Primal/dual feasibility tolerance of the backend (HiGHS accepts >= 1e-10).
    max_iter : int or None
        Backend iteration limit; reaching it gives ``converged=False`` (if a point exists).
    verbose : bool
        Print the backend's log.

    Notes
    -----
    Result: ``labels = argmax`` of the rows of the vertex solution, ``soft`` = its rows
    normalised to 1 (one-hot in the assignment form), ``objective = <Q, S>`` where in the
    assignment form ``Q = diag(a) X`` (so, with uniform ``a``, the mean score of the
    assigned clusters). ``errors`` holds one number: the largest L2 violation of the
    constraints (row sums, column sums or size bounds) at the returned point. In the
    assignment form the column marginal ``b`` is replaced by the size bounds, so giving both
    is an error; sizes count samples (not mass). Computation is float64 on the CPU whatever
    the input's device; results come back in the input's family, device and dtype.
    ``requires_n_ge_k`` is False: without bounds K > N is a valid transport problem, and a
    ``min_cluster_size`` with ``K * min > N`` is already rejected by :class:`Problem`.
    """

    name: ClassVar[str] = "lp"
    needs: ClassVar[str] = "scores"
    gpu: ClassVar[bool] = False
    requires_n_ge_k: ClassVar[bool] = False
    default_recipe: ClassVar[str | None] = "sela"
    #: under SeLa's recipe, the recipe's SGD, five heads (the lowest-loss one read out) and batch
    #: rule, at lr 0.2 instead of its 0.05 (which suits Sinkhorn): with the exact LP's labels, at
    #: 0.05 (0.1) two of five mnist5k seeds were still climbing after 10 epochs, 0.848 / 0.808
    #: (0.917 / 0.840) at seeds 2 / 3; at 0.2 0.905 / 0.934. The rate rises linearly over the
    #: first tenth of the run, in whole epochs (1 of MNIST's 10, 3 of the digits' 28): the
    #: digits' NMI at seeds 0-4 was 0.816 / 0.801 / 0.838 / 0.720 / 0.751 without it, and is
    #: 0.789 / 0.823 / 0.842 / 0.733 / 0.804 with it; the nine MNIST runs stay at 0.906-0.939
    #: (0.905-0.941 without). A fifth (6 digits epochs) passed every digits seed (0.801-0.879)
    #: but left held-out MNIST seed 3 at 0.786, still climbing after 10 epochs (docs/training.md).
    #: Until 2026-12-07 the LP asked for Adam 2e-3, one head, heads on standardised pooled
    #: features and batch 256.
    recipe_training: ClassVar[dict] = {"sela": {"optimizer": "sgd", "lr": 0.2, "warmup": 0.1}}

    backend: str = "highs"
    tol: float = 1e-9
    max_iter: int | None = None
    verbose: bool = False

    def __attrs_post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, found {self.backend!r}")
        if not (isinstance(self.tol, (int, float)) and 1e-10 <= float(self.tol) < 1.0):
            raise ValueError(f"tol: expected a float in [1e-10, 1), found {self.tol!r}")
        if self.max_iter is not None and (isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int)
                                          or self.max_iter < 1):
            raise ValueError(f"max_iter: expected None or an int >= 1, found {self.max_iter!r}")

    def solve(self, problem: Problem) -> Assignment:
        scores = problem.scores.detach().to("cpu", torch.float64).numpy()
        work = lp_cost_scale(scores)
        a = problem.row_marginal(torch.float64, "cpu").numpy()
        b = problem.col_marginal(torch.float64, "cpu").numpy()
        b = b * (a.sum() / b.sum())  # Problem accepts a 1e-5 relative mass mismatch; the LP does not
        backend = resolve_backend(self.backend)
        lo, hi = problem.min_cluster_size, problem.max_cluster_size
        bounded = lo is not None or hi is not None
        opts = dict(backend=backend, tol=float(self.tol), max_iter=self.max_iter, verbose=self.verbose)
        extras: dict = {"backend": backend, "form": "assignment" if bounded else "transport"}
        if bounded:
            if problem.b is not None:
                raise InvalidProblemError(
                    "lp: expected either a column marginal b or cluster-size bounds, found both "
                    "(with min/max_cluster_size the sizes replace b)"
                )
            sol = bounded_assignment_lp(work, a, lo, hi, **opts)
            x = np.clip(sol.plan, 0.0, None)
            labels = x.argmax(1)
            sizes = np.bincount(labels, minlength=scores.shape[1])
            rows = x.sum(1) - 1.0
            low = np.maximum((lo or 0) - x.sum(0), 0.0)
            high = np.maximum(x.sum(0) - (hi if hi is not None else np.inf), 0.0)
            error = max(np.linalg.norm(rows), np.linalg.norm(low), np.linalg.norm(high))
            integral = float(np.abs(x - np.rint(x)).max())
            in_bounds = bool((sizes >= (lo or 0)).all() and (hi is None or (sizes <= hi).all()))
            extras.update(integrality_gap=integral, sizes_in_bounds=in_bounds)
            q = a[:, None] * np.eye(scores.shape[1])[labels]  # Q = diag(a) X at the rounded vertex
            soft = _rows_to_soft(x, scores)
        else:
            sol = transport_lp(work, a, b, **opts)
            q = sol.plan
            error = max(np.linalg.norm(q.sum(1) - a), np.linalg.norm(q.sum(0) - b))
            # a zero-mass row (a_i = 0) goes to its best cluster among those with mass (b_k > 0)
            soft = _rows_to_soft(q, np.where(b[None, :] > 0, scores, -np.inf))
            labels = soft.argmax(1)
            in_bounds = True
        extras["status"] = sol.status
        converged = sol.status == "optimal" and in_bounds
        return Assignment.for_problem(
            problem, labels=torch.from_numpy(labels.astype(np.int64)), soft=torch.from_numpy(soft),
            converged=converged, n_iters=sol.n_iters, errors=(error,),
            objective=float((q * scores).sum()), extras=extras,
        )


@assignsolve.hookimpl
def register_solvers(register):
    register(LPSolver)
