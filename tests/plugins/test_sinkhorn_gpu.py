"""Tests of the ``sinkhorn-gpu`` solver against POT, SwAV's reference loop and hand formulas."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch

import assignsolve
from assignsolve import NotConvergedWarning, Problem
from assignsolve_plugins.sinkhorn_gpu import SinkhornGPU


def _scores(n, k, seed, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, k, generator=g, dtype=torch.float64)).log_softmax(1).to(dtype)


def _masses(n, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
    return m / m.sum()


def _pot_plan(a, b, s, eps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.bregman.sinkhorn_log(a, b, -s, eps, numItermax=200_000, stopThr=1e-12)


def _f32_bound(s, eps):
    """Accuracy float32 can give: the exponent S/eps is rounded to a relative 2^-23."""
    return 4 * torch.finfo(torch.float32).eps * float(s.abs().max()) / eps


def _objective(p, s, eps):
    """<P, S> + eps H(P), H(P) = -sum P log P (hand formula)."""
    return float((p * s).sum() - eps * torch.xlogy(p, p).sum())


@pytest.mark.parametrize("n,k,eps,uniform", [
    (60, 4, 0.1, True), (60, 4, 0.1, False), (200, 7, 0.05, False),
    (128, 32, 0.1, True), (30, 50, 0.2, False),
])
@pytest.mark.parametrize("cache", [False, True])
def test_plan_matches_pot_sinkhorn_log(n, k, eps, uniform, cache):
    s = _scores(n, k, seed=n + k)
    a = None if uniform else _masses(n, 1)
    b = None if uniform else _masses(k, 2)
    prob = Problem(scores=s, a=a, b=b)
    a_, b_ = prob.row_marginal(), prob.col_marginal()
    ref = _pot_plan(a_, b_, s, eps)
    res = SinkhornGPU(epsilon=eps, tol=1e-11, dtype="float64", cache_kernel=cache, block_size=17)(prob)
    assert res.converged
    plan = a_[:, None] * res.soft
    # plan and row-normalised codes agree with POT's float64 log-domain Sinkhorn
    assert float((plan - ref).abs().max()) < 1e-5 * float(ref.max())
    assert float((res.soft - ref / a_[:, None]).abs().max()) < 1e-5
    assert res.objective == pytest.approx(_objective(ref, s, eps), abs=1e-8)
    assert torch.equal(res.labels, res.soft.argmax(1))


@pytest.mark.parametrize("cache", [False, True])
def test_float32_matches_pot_and_meets_tol(cache):
    s = _scores(300, 12, seed=3, scale=3.0)
    a, b = _masses(300, 4), _masses(12, 5)
    ref = _pot_plan(a, b, s, 0.05)
    res = SinkhornGPU(epsilon=0.05, tol=1e-6, cache_kernel=cache)(Problem(scores=s.float(), a=a.float(), b=b.float()))
    assert res.converged and res.soft.dtype == torch.float32
    # float32 rounds the exponent S/eps to a relative 6e-8: codes can only be that exact
    bound = 4 * torch.finfo(torch.float32).eps * float(s.abs().max()) / 0.05
    err = float((res.soft.double() - ref / a[:, None]).abs().max())
    assert err < bound, (err, bound)
    col = (a[:, None] * res.soft.double()).sum(0)
    assert float((col - b).abs().sum() / b.sum()) <= 1e-5  # tol 1e-6 plus float32 rounding of the check
    assert res.errors[-1] <= 1e-6


def _peaked_scores(n=4096, k=512, seed=0):
    """Log-softmax of large-scale logits with a strong per-cluster bias: many clusters that
    no sample prefers (log-prob < -eps * 88 everywhere), as in a collapsing network."""
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, k, generator=g) + torch.linspace(0.0, -40.0, k)
    return logits.log_softmax(1)


def _naive_sela(s, eps, n_iter=50):
    """SeLa's plain scaling (yukimasano/self-label cpu_sk) in float32: P = exp(S/eps)."""
    p = torch.exp(s / eps)
    n, k = p.shape
    c = torch.full((n,), 1.0 / n)
    for _ in range(n_iter):
        r = (1.0 / k) / (p.T @ c)
        c = (1.0 / n) / (p @ r)
    return p * c[:, None] * r[None, :]


def test_peaked_float32_stays_finite_where_plain_scaling_fails():
    s = _peaked_scores()
    eps = 0.04  # SeLa's lambda = 25
    # the point: plain exp scaling underflows whole columns to 0, then divides by 0
    p = torch.exp(s / eps)
    assert int((p.sum(0) == 0).sum()) > 300
    assert not bool(torch.isfinite(_naive_sela(s, eps)).all())
    res = SinkhornGPU(epsilon=eps, tol=1e-4, max_iter=2000)(Problem(scores=s))
    assert bool(torch.isfinite(res.soft).all())
    assert res.converged and res.errors[-1] <= 1e-4
    n, k = s.shape
    col = res.soft.double().sum(0) / n
    assert float((col - 1.0 / k).abs().sum()) <= 2e-4  # relative L1 (sum b = 1)
    # every cluster receives its share although hundreds had zero naive mass
    assert res.n_empty == 0
    np.testing.assert_allclose(res.soft.double().sum(1).numpy(), 1.0, atol=1e-5)


def test_block_streaming_equals_one_block(torch_threads):  # blocks over 2 worker threads
    s = _scores(257, 9, seed=7, scale=4.0, dtype=torch.float32)
    # tol 1e-5: at 1e-6 the float32 marginal error is at its rounding floor here (0.98-1.2e-6 over
    # the last 30 iterations), so a different summation order can move the stop by one check
    one = SinkhornGPU(epsilon=0.05, tol=1e-5, block_size=257, cache_kernel=False)(Problem(scores=s))
    for bs in (7, 16, 100):  # 7: 37 blocks, still streaming (block_size=1 took 52 s)
        many = SinkhornGPU(epsilon=0.05, tol=1e-5, block_size=bs, cache_kernel=False)(Problem(scores=s))
        assert many.n_iters == one.n_iters
        assert float((many.soft - one.soft).abs().max()) < _f32_bound(s, 0.05)
    cached = SinkhornGPU(epsilon=0.05, tol=1e-5, block_size=16, cache_kernel=True)(Problem(scores=s))
    assert float((cached.soft - one.soft).abs().max()) < _f32_bound(s, 0.05)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_input(half):
    s = _scores(200, 10, seed=8, scale=2.0, dtype=half)
    res = SinkhornGPU(epsilon=0.05, tol=1e-6)(Problem(scores=s))
    assert res.soft.dtype == torch.float32  # half types widen to float32 on output
    ref = SinkhornGPU(epsilon=0.05, tol=1e-6)(Problem(scores=s.float()))
    assert float((res.soft - ref.soft).abs().max()) < 1e-6
    ref64 = _pot_plan(torch.full((200,), 1 / 200, dtype=torch.float64),
                      torch.full((10,), 0.1, dtype=torch.float64), s.double(), 0.05)
    assert float((res.soft.double() - 200 * ref64).abs().max()) < _f32_bound(s, 0.05)


def test_families_and_dtypes():
    s = _scores(60, 4, seed=9)
    r64 = SinkhornGPU(epsilon=0.1)(Problem(scores=s))
    assert r64.soft.dtype == torch.float64 and r64.labels.dtype == torch.int64
    rnp = SinkhornGPU(epsilon=0.1)(Problem(scores=s.numpy()))
    assert isinstance(rnp.soft, np.ndarray) and rnp.soft.dtype == np.float64
    assert isinstance(rnp.labels, np.ndarray) and rnp.labels.dtype == np.int64
    np.testing.assert_allclose(rnp.soft, r64.soft.numpy(), atol=1e-6)
    r32 = SinkhornGPU(epsilon=0.1)(Problem(scores=s.float()))
    assert r32.soft.dtype == torch.float32
    np.testing.assert_allclose(r32.soft.sum(1).numpy(), 1.0, atol=1e-6)
    # same result twice
    again = SinkhornGPU(epsilon=0.1, seed=3)(Problem(scores=s.float()))
    assert torch.equal(again.soft, r32.soft)


def test_k_larger_than_n():
    s = _scores(10, 40, seed=10)
    res = SinkhornGPU(epsilon=0.1, tol=1e-9, dtype="float64")(Problem(scores=s))
    ref = _pot_plan(torch.full((10,), 0.1, dtype=torch.float64),
                    torch.full((40,), 1 / 40, dtype=torch.float64), s, 0.1)
    assert float((res.soft - 10 * ref).abs().max()) < 1e-6


def _swav_reference(out, eps, iters):
    """facebookresearch/swav main_swav.py distributed_sinkhorn, world size 1, float64."""
    q = torch.exp(out / eps).t()
    b_, k_ = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k_
        q /= q.sum(dim=0, keepdim=True)
        q /= b_
    q *= b_
    return q.t()


@pytest.mark.parametrize("iters", [1, 3, 5])
def test_swav_mode_matches_swav_reference(iters):
    g = torch.Generator().manual_seed(11)
    out = torch.nn.functional.normalize(torch.randn(256, 32, generator=g, dtype=torch.float64), dim=1)
    protos = torch.nn.functional.normalize(torch.randn(16, 32, generator=g, dtype=torch.float64), dim=1)
    scores = out @ protos.T
    ref = _swav_reference(scores.clone(), 0.05, iters)
    res = SinkhornGPU(epsilon=0.05, mode="swav", max_iter=iters, dtype="float64")(Problem(scores=scores))
    assert res.n_iters == iters and res.converged
    assert float((res.soft - ref).abs().max()) < 1e-10
    res32 = SinkhornGPU(epsilon=0.05, mode="swav", max_iter=iters)(Problem(scores=scores.float()))
    assert float((res32.soft.double() - ref).abs().max()) < 1e-5


def test_swav_mode_finite_where_reference_overflows():
    g = torch.Generator().manual_seed(12)
    scores = 10.0 * torch.randn(128, 8, generator=g)  # exp(scores / 0.05) overflows float32
    assert not bool(torch.isfinite(_swav_reference(scores.clone(), 0.05, 3)).all())
    res = SinkhornGPU(epsilon=0.05, mode="swav")(Problem(scores=scores))
    assert bool(torch.isfinite(res.soft).all())
    np.testing.assert_allclose(res.soft.sum(1).numpy(), 1.0, atol=1e-6)
    ref = _swav_reference(scores.double() - scores.double().max(), 0.05, 3)
    assert float((res.soft.double() - ref).abs().max()) < 1e-4


def test_error_history_and_not_converged():
    s = _scores(100, 5, seed=13, scale=3.0)
    res = SinkhornGPU(epsilon=0.05, tol=1e-10, check_every=5, dtype="float64")(Problem(scores=s))
    assert len(res.errors) == res.n_iters // 5
    assert res.errors[-1] <= 1e-10 < res.errors[0]
    # the recorded error is the relative L1 column violation of the plan after the row update
    with pytest.warns(NotConvergedWarning):
        short = SinkhornGPU(epsilon=0.05, tol=1e-12, max_iter=7, check_every=5)(Problem(scores=s))
    assert not short.converged and short.n_iters == 7 and len(short.errors) == 2
    fixed = SinkhornGPU(epsilon=0.05, tol=None, max_iter=7)(Problem(scores=s))
    assert fixed.converged and fixed.n_iters == 7


def test_error_value_is_column_violation():
    s = _scores(80, 6, seed=14, scale=2.0)
    res = SinkhornGPU(epsilon=0.1, tol=None, max_iter=1, check_every=1, dtype="float64")(Problem(scores=s))
    # one row update from the row-max start is a row softmax of S/eps
    q = torch.softmax(s / 0.1, dim=1) / 80
    expected = float((q.sum(0) - 1 / 6).abs().sum())  # relative L1: sum(b) = 1
    assert res.errors[0] == pytest.approx(expected, rel=1e-9)


def test_registered_and_solve_entry_point():
    assert "sinkhorn-gpu" in assignsolve.list_solvers("sinkhorn*")
    s = _scores(60, 4, seed=15)
    res = assignsolve.solve(Problem(scores=s), "sinkhorn-gpu", epsilon=0.1)
    assert res.solver == "sinkhorn-gpu" and res.labels.shape == (60,)


@pytest.mark.parametrize("bad,msg", [
    (dict(epsilon=0.0), "epsilon: expected"), (dict(epsilon=float("nan")), "epsilon: expected"),
    (dict(tol=-1.0), "tol: expected"), (dict(max_iter=0), "max_iter: expected"),
    (dict(check_every=0), "check_every: expected"), (dict(block_size=0), "block_size: expected"),
    (dict(dtype="float16"), "dtype: expected"), (dict(mode="sela2"), "mode: expected"),
    (dict(cache_kernel="yes"), "cache_kernel: expected"),
])
def test_bad_config_names_value(bad, msg):
    with pytest.raises(ValueError, match=msg):
        SinkhornGPU(**bad)


def test_distributed_true_without_group_is_an_error():
    with pytest.raises(RuntimeError, match="distributed: expected"):
        SinkhornGPU(distributed=True)(Problem(scores=_scores(8, 2, seed=0)))
