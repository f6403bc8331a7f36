"""sinkhorn-pot: the plan against a hand-written float64 Sinkhorn, marginals, log domain, dtypes, non-convergence."""

import math
import warnings

import numpy as np
import pytest
import torch

from assignsolve import InvalidProblemError, NotConvergedWarning, Problem, get_solver
from assignsolve_plugins.sinkhorn_pot import AUTO_LOG_BOUND, SinkhornNumericalError, SinkhornPOT, choose_method


def reference_sinkhorn(S, a, b, eps, iters=20000, tol=1e-15):
    """Textbook Sinkhorn-Knopp (Cuturi 2013) in float64 numpy: Q = diag(u) exp(S/eps) diag(v)."""
    K = np.exp((S - S.max()) / eps)
    u, v = np.ones_like(a), np.ones_like(b)
    for _ in range(iters):
        u = a / (K @ v)
        v = b / (K.T @ u)
        Q = u[:, None] * K * v[None, :]
        if np.abs(Q.sum(1) - a).sum() < tol:
            break
    return Q


def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("n,k,eps,marginals", [(30, 4, 0.1, "uniform"), (50, 7, 0.05, "random"),
                                                (8, 12, 0.2, "random")])
def test_plan_matches_hand_written_sinkhorn(n, k, eps, marginals):
    rng = np.random.default_rng(n * k)
    S = log_softmax(rng.normal(scale=2.0, size=(n, k)))
    if marginals == "uniform":
        a, b, problem = np.full(n, 1 / n), np.full(k, 1 / k), Problem(scores=S)
    else:
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(k))
        problem = Problem(scores=S, a=a, b=b)
    Q = reference_sinkhorn(S, a, b, eps)
    result = SinkhornPOT(epsilon=eps, tol=1e-13, max_iter=50000)(problem)
    assert result.converged and result.extras["method"] == "sinkhorn"
    np.testing.assert_allclose(result.soft, Q / Q.sum(1, keepdims=True), atol=1e-8, rtol=0)
    np.testing.assert_array_equal(result.labels, Q.argmax(1))
    entropy = -(Q * np.log(Q)).sum()
    assert result.objective == pytest.approx((Q * S).sum() + eps * entropy, rel=1e-9)
    assert result.extras["entropy"] == pytest.approx(entropy, rel=1e-9)


def test_marginals_met_to_tol():
    rng = np.random.default_rng(1)
    S = log_softmax(rng.normal(scale=3.0, size=(80, 6)))
    a, b = rng.dirichlet(np.ones(80)), rng.dirichlet(np.ones(6))
    tol = 1e-7
    result = SinkhornPOT(epsilon=0.05, tol=tol, max_iter=20000)(Problem(scores=S, a=a, b=b))
    assert result.converged
    Q = a[:, None] * result.soft  # soft = Q / (Q 1) and Q 1 = a
    assert np.linalg.norm(Q.sum(0) - b) < tol
    assert result.marginal_error < tol
    assert result.errors[0] > tol  # the history starts far from the marginals
    assert result.n_iters > 1


def test_log_domain_where_plain_scaling_underflows():
    # Sample 0's scores sit 10 below everyone's: exp((S - max S)/eps) is exactly 0 on that whole
    # row at eps = 0.01, so plain scaling divides by zero. Adding a constant to a row leaves the
    # optimal plan unchanged (its row sum is fixed), which gives an exact reference.
    rng = np.random.default_rng(3)
    S = rng.random((12, 3))
    shifted = S.copy()
    shifted[0] -= 10.0
    eps = 0.01
    assert (np.exp((shifted - shifted.max()) / eps)[0] == 0).all()
    assert choose_method(torch.from_numpy(shifted), eps) == "sinkhorn_log"
    assert (shifted.max() - shifted.min()) / eps > AUTO_LOG_BOUND
    with pytest.raises(SinkhornNumericalError, match="sinkhorn_log"):
        SinkhornPOT(epsilon=eps, method="sinkhorn")(Problem(scores=shifted))
    config = dict(epsilon=eps, tol=1e-10, max_iter=20000)
    logged = SinkhornPOT(**config)(Problem(scores=shifted))
    plain = SinkhornPOT(method="sinkhorn", **config)(Problem(scores=S))
    assert logged.extras["method"] == "sinkhorn_log" and logged.converged
    assert np.isfinite(logged.soft).all()
    np.testing.assert_allclose(logged.soft, plain.soft, atol=1e-8)
    # and the explicit log method agrees with the hand-written reference on the safe problem
    Q = reference_sinkhorn(S, np.full(12, 1 / 12), np.full(3, 1 / 3), eps, iters=50000)
    np.testing.assert_allclose(logged.soft, Q / Q.sum(1, keepdims=True), atol=1e-8)


def test_torch_float32_in_float32_out():
    rng = np.random.default_rng(4)
    S64 = log_softmax(rng.normal(size=(40, 5)))
    r32 = SinkhornPOT(epsilon=0.1)(Problem(scores=torch.tensor(S64, dtype=torch.float32)))
    r64 = SinkhornPOT(epsilon=0.1)(Problem(scores=S64))
    assert isinstance(r32.soft, torch.Tensor) and r32.soft.dtype == torch.float32
    assert r32.labels.dtype == torch.int64 and r32.labels.device.type == "cpu"
    assert isinstance(r64.soft, np.ndarray) and r64.soft.dtype == np.float64
    # float32 differs only by the rounding of the input scores
    np.testing.assert_allclose(r32.soft.numpy(), r64.soft, atol=1e-5)


def test_not_converged_with_two_iterations():
    S = log_softmax(np.random.default_rng(5).normal(scale=3.0, size=(30, 4)))
    with pytest.warns(NotConvergedWarning, match="sinkhorn-pot: not converged after 2 iterations"):
        result = SinkhornPOT(max_iter=2)(Problem(scores=S))
    assert result.converged is False and result.n_iters == 2
    assert len(result.errors) == 2 and result.errors[-1] > 1e-6
    assert np.allclose(result.soft.sum(1), 1)


def test_converged_run_does_not_warn():
    S = log_softmax(np.random.default_rng(6).normal(size=(30, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = SinkhornPOT(epsilon=0.1)(Problem(scores=S))
    assert result.converged and result.marginal_error < 1e-6


def test_large_scores_do_not_overflow():
    # raw logits in the thousands: exp(S/eps) overflows without the max shift
    S = np.random.default_rng(7).normal(scale=1.0, size=(20, 4)) + 5000.0
    result = SinkhornPOT(epsilon=0.05)(Problem(scores=S))
    assert np.isfinite(result.soft).all() and result.converged


def test_registered_and_configured_by_name():
    solver = get_solver("sinkhorn-pot", epsilon=0.2, max_iter=50)
    assert isinstance(solver, SinkhornPOT) and solver.epsilon == 0.2 and solver.max_iter == 50


@pytest.mark.parametrize("config,match", [
    (dict(epsilon=0.0), "epsilon: expected a finite float > 0, found 0.0"),
    (dict(tol=-1.0), "tol: expected a finite float > 0, found -1.0"),
    (dict(max_iter=0), "max_iter: expected an int >= 1, found 0"),
    (dict(method="greenkhorn"), "method: expected one of .*found 'greenkhorn'"),
])
def test_bad_config_is_a_clear_error(config, match):
    with pytest.raises(ValueError, match=match):
        SinkhornPOT(**config)


def test_features_only_problem_is_rejected():
    with pytest.raises(InvalidProblemError, match="scores"):
        SinkhornPOT()(Problem(features=np.ones((5, 2)), n_clusters=3))


def test_mass_mismatch_within_problem_tolerance_still_converges():
    # Problem accepts sum(a) != sum(b) up to 1e-5 relative; the solver rescales b to a's mass.
    n, k = 20, 4
    a = np.full(n, 1 / n)
    b = np.full(k, 1 / k) * (1 + 5e-6)
    S = log_softmax(np.random.default_rng(8).normal(size=(n, k)))
    result = SinkhornPOT(epsilon=0.1, tol=1e-9)(Problem(scores=S, a=a, b=b))
    assert result.converged
    assert math.isfinite(result.objective)
