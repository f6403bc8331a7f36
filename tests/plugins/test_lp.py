"""lp: objective against POT's exact EMD, size bounds against scipy MILP / Hungarian references."""

import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp

import ot
from assignsolve import InvalidProblemError, NotConvergedWarning, Problem, get_solver
from assignsolve_plugins.lp import LPSolver, bounded_assignment_lp, transport_lp


def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def make_scores(n, k, seed):
    return log_softmax(np.random.default_rng(seed).normal(scale=2.0, size=(n, k)))


# ------------------------------------------------------------- transport form vs ot.emd
@pytest.mark.parametrize("n,k", [(20, 4), (50, 7), (120, 10), (5, 8)])
@pytest.mark.parametrize("marginals", ["uniform", "random"])
def test_objective_equals_emd(n, k, marginals):
    rng = np.random.default_rng(n + k)
    S = make_scores(n, k, seed=n * k)
    if marginals == "uniform":
        a, b, problem = np.full(n, 1 / n), np.full(k, 1 / k), Problem(scores=S)
    else:
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(k))
        problem = Problem(scores=S, a=a, b=b)
    G = ot.emd(a, b, -S)  # network simplex, independent of cvxpy/HiGHS
    reference = float((G * S).sum())
    result = LPSolver()(problem)
    assert result.converged and result.extras["backend"] == "highs"
    assert result.extras["form"] == "transport" and result.extras["status"] == "optimal"
    assert result.objective == pytest.approx(reference, rel=1e-8)
    Q = a[:, None] * result.soft  # soft rows are Q's rows normalised by a
    np.testing.assert_allclose(Q.sum(0), b, atol=1e-9)
    assert float((Q * S).sum()) == pytest.approx(reference, rel=1e-8)
    assert result.marginal_error < 1e-9
    # a vertex of the transport polytope has at most N + K - 1 non-zeros
    assert (Q > 1e-12).sum() <= n + k - 1
    np.testing.assert_array_equal(result.labels, result.soft.argmax(1))


def test_transport_lp_function_plan_is_feasible_and_optimal():
    S = make_scores(30, 5, seed=11)
    a, b = np.full(30, 1 / 30), np.full(5, 1 / 5)
    sol = transport_lp(S, a, b)
    assert sol.status == "optimal" and sol.backend == "highs"
    np.testing.assert_allclose(sol.plan.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(sol.plan.sum(0), b, atol=1e-12)
    assert (sol.plan * S).sum() == pytest.approx(ot.emd2(a, b, -S) * -1, rel=1e-10)


# --------------------------------------------------------------- assignment form (bounds)
def milp_reference(S, w, lo, hi):
    """scipy's HiGHS branch-and-bound on the integer programme (integrality enforced)."""
    n, k = S.shape
    rows = np.kron(np.eye(n), np.ones((1, k)))  # x_ij flattened row-major
    cols = np.kron(np.ones((1, n)), np.eye(k))
    cons = [LinearConstraint(rows, 1, 1), LinearConstraint(cols, lo or 0, hi if hi is not None else n)]
    res = milp(-(w[:, None] * S).ravel(), constraints=cons, integrality=np.ones(n * k),
               bounds=Bounds(0, 1))
    assert res.success
    return -res.fun


def hungarian_reference(S, w, lo, hi):
    """linear_sum_assignment with every cluster column replicated hi times; the first lo copies
    of each get a bonus large enough that an optimum fills all of them (min sizes)."""
    n, k = S.shape
    W = w[:, None] * S
    bonus = 1.0 + 2.0 * n * np.abs(W).max()
    hi = hi if hi is not None else n
    lo = lo or 0
    big = np.repeat(W, hi, axis=1)
    mandatory = np.tile(np.arange(hi) < lo, k)
    big = big + bonus * mandatory[None, :]
    r, c = linear_sum_assignment(big, maximize=True)
    labels = c // hi
    sizes = np.bincount(labels, minlength=k)
    assert (sizes >= lo).all() and (sizes <= hi).all()
    return float(W[r, labels].sum()), sizes


def skewed_scores(n, k, seed):
    """Scores where cluster 0 is everyone's favourite, so argmax gives very unequal sizes."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    logits[:, 0] += 1.5
    return log_softmax(logits)


@pytest.mark.parametrize("lo,hi", [(5, 9), (None, 8), (4, None), (6, 6)])
@pytest.mark.parametrize("weights", ["uniform", "random"])
def test_bounds_respected_and_optimal(lo, hi, weights):
    n, k = 36, 6
    S = skewed_scores(n, k, seed=(lo or 0) * 10 + (hi or 0))
    rng = np.random.default_rng(2)
    a = np.full(n, 1 / n) if weights == "uniform" else rng.dirichlet(np.ones(n))
    free = np.bincount(S.argmax(1), minlength=k)  # the unconstrained optimum
    assert (lo is not None and (free < lo).any()) or (hi is not None and (free > hi).any())
    kwargs = {} if weights == "uniform" else {"a": a}
    result = LPSolver()(Problem(scores=S, min_cluster_size=lo, max_cluster_size=hi, **kwargs))
    sizes = result.cluster_sizes
    assert (sizes >= (lo or 0)).all() and (sizes <= (hi if hi is not None else n)).all(), sizes
    assert result.converged and result.extras["form"] == "assignment"
    assert result.extras["integrality_gap"] < 1e-9 and result.extras["sizes_in_bounds"]
    np.testing.assert_array_equal(result.soft, np.eye(k)[result.labels])  # the vertex is 0/1
    reference_milp = milp_reference(S, a, lo, hi)
    reference_lsa, _ = hungarian_reference(S, a, lo, hi)
    assert reference_milp == pytest.approx(reference_lsa, rel=1e-9)
    assert result.objective == pytest.approx(reference_lsa, rel=1e-8)
    assert float((a * S[np.arange(n), result.labels]).sum()) == pytest.approx(result.objective, rel=1e-12)


def test_bounded_lp_function_returns_integral_vertex():
    S = skewed_scores(24, 4, seed=9)
    sol = bounded_assignment_lp(S, np.ones(24), 5, 7)
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.plan, np.rint(sol.plan), atol=1e-9)
    sizes = np.rint(sol.plan).sum(0)
    assert sizes.min() >= 5 and sizes.max() <= 7
    assert (sol.plan * S).sum() == pytest.approx(hungarian_reference(S, np.ones(24), 5, 7)[0], rel=1e-9)


# --------------------------------------------------------------------- families, errors
def test_numpy_and_torch_in_same_out():
    S = make_scores(40, 5, seed=3)
    r_np = LPSolver()(Problem(scores=S))
    r_t64 = LPSolver()(Problem(scores=torch.from_numpy(S)))
    r_t32 = LPSolver()(Problem(scores=torch.from_numpy(S).float()))
    assert isinstance(r_np.labels, np.ndarray) and r_np.soft.dtype == np.float64
    assert isinstance(r_t64.labels, torch.Tensor) and r_t64.soft.dtype == torch.float64
    assert r_t32.soft.dtype == torch.float32 and r_t32.labels.dtype == torch.int64
    np.testing.assert_array_equal(r_np.labels, r_t64.labels.numpy())
    np.testing.assert_allclose(r_np.soft, r_t64.soft.numpy(), atol=1e-12)
    assert r_np.objective == pytest.approx(r_t64.objective, rel=1e-12)


def test_iteration_limit_is_not_converged():
    S = make_scores(60, 6, seed=4)
    with pytest.warns(NotConvergedWarning, match="lp: not converged"):
        result = LPSolver(max_iter=1)(Problem(scores=S))
    assert result.converged is False and result.extras["status"] != "optimal"


def test_b_with_size_bounds_is_a_clear_error():
    S = make_scores(12, 3, seed=5)
    with pytest.raises(InvalidProblemError, match="expected either a column marginal b or cluster-size bounds"):
        LPSolver()(Problem(scores=S, b=np.full(3, 1 / 3), max_cluster_size=5))


@pytest.mark.parametrize("config,match", [
    (dict(backend="gurobi"), r"backend: expected one of \('highs', 'clarabel'\), found 'gurobi'"),
    (dict(tol=1e-12), r"tol: expected a float in \[1e-10, 1\), found 1e-12"),
    (dict(max_iter=0), "max_iter: expected None or an int >= 1, found 0"),
])
def test_bad_config_is_a_clear_error(config, match):
    with pytest.raises(ValueError, match=match):
        LPSolver(**config)


def test_infeasible_bounds_rejected_by_problem():
    with pytest.raises(InvalidProblemError, match="min_cluster_size"):
        Problem(scores=make_scores(10, 4, seed=6), min_cluster_size=3)


def test_clarabel_backend_matches_emd():
    S = make_scores(20, 4, seed=7)
    result = LPSolver(backend="clarabel", tol=1e-10)(Problem(scores=S))
    assert result.extras["backend"] == "clarabel"
    reference = float((ot.emd(np.full(20, 0.05), np.full(4, 0.25), -S) * S).sum())
    assert result.objective == pytest.approx(reference, rel=1e-7)


def test_registered_by_name():
    assert isinstance(get_solver("lp", backend="highs"), LPSolver)
