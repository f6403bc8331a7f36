"""``sinkhorn-gpu``'s SwAV per-batch path, the trusted ``codes`` entry point and refused inputs.

References: SwAV's ``distributed_sinkhorn`` (facebookresearch/swav main_swav.py, world size 1)
re-implemented below, POT's float64 log-domain Sinkhorn, hand formulas.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from assignsolve import InvalidProblemError, Problem
from assignsolve_plugins.sinkhorn_gpu import SinkhornGPU
from assignsolve_plugins.sinkhorn_swav import swav_codes


def _swav_reference(out, eps=0.05, iters=3):
    """SwAV's loop: Q = exp(S/eps)^T, Q /= sum; iters x (rows to 1/K, columns to 1/B); Q * B."""
    q = torch.exp(out / eps).t()
    k_, b_ = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k_
        q /= q.sum(dim=0, keepdim=True)
        q /= b_
    return (q * b_).t()


def _cosine_scores(b, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    p = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)
    return z @ p.T


@pytest.mark.parametrize("iters", [1, 2, 3, 5])
@pytest.mark.parametrize("block,workers", [(None, None), (7, 2), (100, 1)])
def test_swav_codes_equal_reference_float64(iters, block, workers):
    s = _cosine_scores(300, 40, 8, seed=iters).double()
    ref = _swav_reference(s.clone(), 0.05, iters)
    out = swav_codes(s, 0.05, iters, block_size=block, workers=workers)
    assert float((out.codes - ref).abs().max()) < 1e-12
    # lse is the row log-normaliser of S/eps + log v (hand formula)
    lse = torch.logsumexp(s / 0.05 + out.log_v, dim=1)
    assert float((out.lse - lse).abs().max()) < 1e-9


@pytest.mark.parametrize("b,k,d", [(1024, 300, 16), (4096, 3000, 16), (256, 3000, 128)])
def test_float32_codes_within_5e7_of_float64(b, k, d):
    """Peaked scores (16-D features): float32 codes as exact as SwAV's own float32 loop or better."""
    s = _cosine_scores(b, k, d, seed=k)
    ref64 = _swav_reference(s.double())
    ours = swav_codes(s).codes
    assert ours.dtype == torch.float32
    err = float((ours.double() - ref64).abs().max())
    assert err < 5e-7, err
    assert float(ref64.max()) > 0.05  # the codes are peaked: the bound is not trivially met
    np.testing.assert_allclose(ours.sum(1).numpy(), 1.0, atol=1e-6)


def test_trusted_entry_point_matches_solve_and_checks_in_o_n():
    s = _cosine_scores(512, 64, 8, seed=1)
    solver = SinkhornGPU(mode="swav", epsilon=0.05)
    codes = solver.codes(s)
    res = solver(Problem(scores=s))
    assert res.extras["path"] == "swav-fast" and res.converged
    assert torch.equal(codes, res.soft)
    assert float((codes.double() - _swav_reference(s.double())).abs().max()) < 5e-7
    bad = s.clone()
    bad[17, 3] = float("nan")
    with pytest.raises(InvalidProblemError, match="row 17"):
        solver.codes(bad)
    assert not torch.equal(bad, s) and bool(torch.isfinite(s).all())  # the input is not modified


def test_swav_objective_and_error_match_hand_formulas():
    s = _cosine_scores(200, 10, 4, seed=2).double()
    res = SinkhornGPU(mode="swav", epsilon=0.05, dtype="float64")(Problem(scores=s))
    p = res.soft / 200  # plan: rows of mass 1/N
    obj = float((p * s).sum() - 0.05 * torch.xlogy(p, p).sum())
    assert res.objective == pytest.approx(obj, rel=1e-9, abs=1e-12)
    assert res.errors[-1] == pytest.approx(float((p.sum(0) - 0.1).abs().sum()), rel=1e-9)


def test_fallback_when_a_cluster_underflows():
    """A prototype 100 epsilon below every sample's best: exp underflows in float32, so the fast
    path reports it and the log-domain path gives the float64 answer."""
    s = _cosine_scores(256, 8, 8, seed=3)
    s[:, 5] -= 5.0
    assert swav_codes(s) is None
    res = SinkhornGPU(mode="swav", epsilon=0.05)(Problem(scores=s))
    assert res.extras["path"] == "stable" and bool(torch.isfinite(res.soft).all())
    ref = _swav_reference(s.double() - s.double().max(dim=0).values, 0.05, 3)  # per-column shift: exact
    assert float((res.soft.double() - ref).abs().max()) < 1e-4


@pytest.mark.parametrize("mode", ["swav", "sela"])
@pytest.mark.parametrize("cache", [True, False])
def test_zero_mass_cluster_gets_no_mass(mode, cache):
    s = _cosine_scores(300, 6, 4, seed=4).double()
    b = torch.tensor([0.3, 0.0, 0.2, 0.2, 0.1, 0.2], dtype=torch.float64)
    s[:, 1] += 1.0  # every sample prefers the zero-mass cluster
    res = SinkhornGPU(mode=mode, epsilon=0.1, tol=1e-10, dtype="float64", cache_kernel=cache)(Problem(scores=s, b=b))
    assert bool(torch.isfinite(res.soft).all()) and res.converged
    assert float(res.soft[:, 1].abs().max()) == 0.0 and not bool((res.labels == 1).any())
    np.testing.assert_allclose(res.soft.sum(1).numpy(), 1.0, atol=1e-12)
    if mode == "sela":  # against POT on the problem without the empty cluster
        keep = [0, 2, 3, 4, 5]
        a = torch.full((300,), 1 / 300, dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ot.bregman.sinkhorn_log(a, b[keep], -s[:, keep], 0.1, numItermax=100000, stopThr=1e-13)
        assert float((res.soft[:, keep] / 300 - ref).abs().max()) < 1e-8


@pytest.mark.parametrize("scale", [1e30, 1e36])
@pytest.mark.parametrize("mode", ["swav", "sela"])
def test_scores_near_float_range_error_or_finite(scale, mode):
    s = _cosine_scores(64, 4, 4, seed=5) * scale
    solver = SinkhornGPU(mode=mode, epsilon=0.05, max_iter=200 if mode == "sela" else None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = solver(Problem(scores=s))
    except InvalidProblemError as exc:
        assert "epsilon" in str(exc)
        return
    assert bool(torch.isfinite(res.soft).all())
    np.testing.assert_allclose(res.soft.sum(1).numpy(), 1.0, atol=1e-5)
    if res.converged and mode == "sela":
        assert res.errors[-1] <= solver.tol


def test_scores_overflowing_over_epsilon_are_refused():
    s = _cosine_scores(16, 4, 4, seed=6) * 3e37  # |S| / 0.05 overflows float32
    with pytest.raises(InvalidProblemError, match="epsilon"):
        SinkhornGPU(epsilon=0.05)(Problem(scores=s))
    res = SinkhornGPU(epsilon=0.05, dtype="float64", max_iter=50, tol=None)(Problem(scores=s.double()))
    assert bool(torch.isfinite(res.soft).all())


@pytest.mark.parametrize("bound", [dict(min_cluster_size=2), dict(max_cluster_size=20)])
def test_cluster_size_bounds_are_refused(bound):
    s = _cosine_scores(40, 4, 4, seed=7)
    with pytest.raises(InvalidProblemError, match="cluster_size.*lp"):
        SinkhornGPU()(Problem(scores=s, **bound))


@pytest.mark.parametrize("cache", [True, False])
def test_dead_clusters_stay_finite_and_converge(cache):
    """10% of the clusters 12 logits below the rest (SeLa, lambda = 25, float32)."""
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2000, 100, generator=g)
    logits[:, :10] -= 12.0
    res = SinkhornGPU(epsilon=0.04, tol=1e-5, max_iter=3000, cache_kernel=cache)(Problem.from_logits(logits))
    assert res.converged and bool(torch.isfinite(res.soft).all())
    col = res.soft.double().sum(0) / 2000
    assert float((col - 0.01).abs().sum()) <= 2e-5
    assert float(col[:10].min()) > 0.0099


@pytest.mark.parametrize("block,workers", [(64, 2), (64, 1), (1000, 2)])
def test_one_block_path_equals_blocked_path_float32(block, workers):
    """1024 x 300 (1.2 MB) runs as one inline block; split into row blocks on worker threads it
    must give the same float32 codes (to rounding), both within 5e-7 of float64."""
    s = _cosine_scores(1024, 300, 16, seed=5)
    ref64 = _swav_reference(s.double())
    one = swav_codes(s)
    blocked = swav_codes(s, block_size=block, workers=workers)
    assert float((one.codes - blocked.codes).abs().max()) < 2e-7
    assert float((one.v / blocked.v - 1.0).abs().max()) < 1e-5
    for out in (one, blocked):
        assert float((out.codes.double() - ref64).abs().max()) < 5e-7
