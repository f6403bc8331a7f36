"""Objectives of the training loop against hand-written numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from assignsolve.objectives import (
    amdim_loss,
    nce_global_local,
    pseudo_label_loss,
    pseudo_label_losses,
    soft_cross_entropy,
    swav_loss,
    tanh_clip,
)


def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_pseudo_label_loss_matches_numpy_mean_over_heads():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(7, 4)), rng.normal(size=(7, 6))
    y1, y2 = rng.integers(0, 4, 7), rng.integers(0, 6, 7)
    ref = 0.5 * (-_log_softmax(z1)[np.arange(7), y1].mean() - _log_softmax(z2)[np.arange(7), y2].mean())
    got = pseudo_label_loss([torch.tensor(z1), torch.tensor(z2)], [torch.tensor(y1), torch.tensor(y2)])
    assert float(got) == pytest.approx(ref, rel=1e-6)


def test_pseudo_label_losses_are_each_heads_numpy_cross_entropy():
    rng = np.random.default_rng(2)
    z = [rng.normal(size=(5, 3)) * s for s in (1.0, 4.0, 0.2)]
    y = [rng.integers(0, 3, 5) for _ in z]
    ref = [-_log_softmax(zh)[np.arange(5), yh].mean() for zh, yh in zip(z, y)]
    zt, yt = [torch.tensor(zh, requires_grad=True) for zh in z], [torch.tensor(yh) for yh in y]
    got = pseudo_label_losses(zt, yt)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-6)
    assert float(got.mean()) == pytest.approx(float(pseudo_label_loss(zt, yt)), rel=1e-7)
    got[1].backward()  # differentiable per head: only head 1's logits get a gradient
    assert float(zt[0].grad.abs().sum()) == 0 and float(zt[1].grad.abs().sum()) > 0


def test_pseudo_label_loss_errors_name_the_bad_value():
    z = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"expected shape \(5,\), found \(4,\)"):
        pseudo_label_loss(z, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected 2 label tensors"):
        pseudo_label_loss([z, z], [torch.zeros(5, dtype=torch.int64)])


def test_swav_loss_is_the_swapped_soft_cross_entropy():
    rng = np.random.default_rng(1)
    s1, s2 = rng.uniform(-1, 1, (9, 5)), rng.uniform(-1, 1, (9, 5))
    q1, q2 = rng.dirichlet(np.ones(5), 9), rng.dirichlet(np.ones(5), 9)
    t = 0.1
    ref = -0.5 * ((q2 * _log_softmax(s1 / t)).sum(1).mean() + (q1 * _log_softmax(s2 / t)).sum(1).mean())
    got = swav_loss(*(torch.tensor(a) for a in (s1, s2, q1, q2)), temperature=t)
    assert float(got) == pytest.approx(ref, rel=1e-5)


def test_swav_loss_gradient_flows_to_scores_not_codes():
    s1 = torch.randn(4, 3, requires_grad=True)
    s2 = torch.randn(4, 3, requires_grad=True)
    q = torch.softmax(torch.randn(4, 3, requires_grad=True), 1)
    swav_loss(s1, s2, q, q).backward()
    assert s1.grad is not None and s1.grad.abs().sum() > 0


def test_soft_cross_entropy_checks_shapes():
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\) like logits, found \(3, 4\)"):
        soft_cross_entropy(torch.zeros(3, 2), torch.zeros(3, 4))


def test_tanh_clip_bounds_and_identity_near_zero():
    x = torch.tensor([-1e3, -1e-3, 0.0, 1e-3, 1e3])
    y = tanh_clip(x, 20.0)
    assert float(y.abs().max()) <= 20.0
    assert y[-1] == pytest.approx(20.0) and y[0] == pytest.approx(-20.0)
    assert float(y[3]) == pytest.approx(1e-3, rel=1e-6)


def _nce_reference(g, f, clip, reg_w):
    """Brute-force loop over positives: each (i, l) against all (j != i, l')."""
    b, d, n_loc = f.shape
    raw = np.einsum("id,jdl->ijl", g, f) / math.sqrt(d)
    s = clip * np.tanh(raw / clip)
    total = 0.0
    for i in range(b):
        neg = np.concatenate([s[i, j] for j in range(b) if j != i])
        for l in range(n_loc):
            logits = np.concatenate([[s[i, i, l]], neg])
            m = logits.max()
            total += -(logits[0] - (m + np.log(np.exp(logits - m).sum())))
    return total / (b * n_loc), reg_w * (raw ** 2).mean()


def test_nce_global_local_matches_brute_force_loop():
    rng = np.random.default_rng(2)
    g, f = rng.normal(size=(5, 8)) * 3, rng.normal(size=(5, 8, 4)) * 3
    ref_loss, ref_reg = _nce_reference(g, f, 20.0, 0.05)
    loss, reg = nce_global_local(torch.tensor(g), torch.tensor(f), clip=20.0, reg_weight=0.05)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
    assert float(reg) == pytest.approx(ref_reg, rel=1e-5)


def test_nce_prefers_matching_views():
    torch.manual_seed(0)
    g = torch.randn(6, 16)
    aligned = g[:, :, None].repeat(1, 1, 3) * 4
    shuffled = aligned[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert nce_global_local(g, aligned)[0] < nce_global_local(g, shuffled)[0]


def test_amdim_loss_symmetric_finite_and_differentiable():
    torch.manual_seed(0)
    g1, g2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    l1 = [torch.randn(4, 8, 2, 2), torch.randn(4, 8, 4, 4)]
    l2 = [torch.randn(4, 8, 2, 2), torch.randn(4, 8, 4, 4)]
    loss = amdim_loss(g1, l1, g2, l2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert g1.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same non-zero number of scales"):
        amdim_loss(g1, l1, g2, l2[:1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        nce_global_local(torch.randn(1, 8), torch.randn(1, 8, 3))
