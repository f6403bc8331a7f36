"""IIC loss (assignsolve.mi) and the ``iic`` solver against independent references."""

from __future__ import annotations

import math
import unittest

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score

import assignsolve
from assignsolve import InvalidProblemError, Problem
from assignsolve.testing import CHECKS
from assignsolve.mi import (
    iic_joint,
    iic_loss,
    iic_loss_from_logits,
    iic_multihead_loss,
    mutual_information,
)
from assignsolve_plugins.iic import IIC

EPS64 = np.finfo(np.float64).eps


# ----------------------------------------------------------------- numpy reference
def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_joint(p1, p2):
    """Joint of Ji et al. Eq. (3), written as an explicit sum of outer products."""
    n, k = p1.shape
    joint = np.zeros((k, k))
    for i in range(n):
        joint += np.outer(p1[i], p2[i])
    joint = (joint + joint.T) / 2.0
    return joint / joint.sum()


def np_iic_loss(p1, p2, lamb=1.0, eps=EPS64):
    joint = np_joint(p1, p2)
    pi = np.maximum(joint.sum(axis=1), eps)[:, None]
    pj = np.maximum(joint.sum(axis=0), eps)[None, :]
    pij = np.maximum(joint, eps)
    return -float(np.sum(pij * (np.log(pij) - lamb * np.log(pi) - lamb * np.log(pj))))


def random_probs(rng, n, k, scale=3.0):
    return np_softmax(scale * rng.normal(size=(n, k)))


# ----------------------------------------------------------------- loss values
@pytest.mark.parametrize("lamb", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("k", [2, 5, 10])
def test_loss_matches_numpy_formula(k, lamb):
    rng = np.random.default_rng(k)
    p1, p2 = random_probs(rng, 40, k), random_probs(rng, 40, k)
    got = iic_loss(torch.from_numpy(p1), torch.from_numpy(p2), lamb=lamb)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(np_iic_loss(p1, p2, lamb), rel=1e-12, abs=1e-13)


def test_joint_matches_numpy_and_is_a_symmetric_distribution():
    rng = np.random.default_rng(1)
    p1, p2 = random_probs(rng, 30, 6), random_probs(rng, 30, 6)
    joint = iic_joint(torch.from_numpy(p1), torch.from_numpy(p2)).numpy()
    np.testing.assert_allclose(joint, np_joint(p1, p2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(joint, joint.T, atol=1e-16)
    assert joint.sum() == pytest.approx(1.0, abs=1e-14)


def test_hard_labels_mi_equals_sklearn_mutual_info_score_of_symmetrised_contingency():
    rng = np.random.default_rng(2)
    k, n = 5, 200
    a = rng.integers(0, k, n)
    b = np.where(rng.random(n) < 0.6, a, rng.integers(0, k, n))  # noisy second view
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (a, b), 1)
    expected = mutual_info_score(None, None, contingency=counts + counts.T)
    p1 = F.one_hot(torch.from_numpy(a), k).double()
    p2 = F.one_hot(torch.from_numpy(b), k).double()
    assert float(mutual_information(p1, p2)) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert float(iic_loss(p1, p2)) == pytest.approx(-expected, rel=1e-10, abs=1e-12)


def test_collapsed_output_has_zero_mutual_information():
    p = torch.zeros(50, 4, dtype=torch.float64)
    p[:, 2] = 1.0
    assert abs(float(mutual_information(p, p))) < 1e-12
    assert abs(float(iic_loss(p, p))) < 1e-12
    # nearly collapsed float32 outputs stay finite and ~0 (the float32 clamp costs at most
    # K^2 * eps * |ln eps| ~ 3e-5 here)
    logits = torch.randn(50, 4)
    logits[:, 0] += 40.0
    value = iic_loss_from_logits(logits, logits + 0.1 * torch.randn(50, 4))
    assert torch.isfinite(value) and abs(float(value)) < 5e-5


@pytest.mark.parametrize("k", [2, 4, 10])
def test_perfect_balanced_pairing_gives_ln_k(k):
    labels = torch.arange(12 * k) % k
    p = F.one_hot(labels, k).double()
    assert float(mutual_information(p, p)) == pytest.approx(math.log(k), abs=1e-12)
    assert float(iic_loss(p, p)) == pytest.approx(-math.log(k), abs=1e-12)
    # float32: the clamp at float32 eps costs at most ~K^2 * eps * |ln eps|
    eps32 = float(torch.finfo(torch.float32).eps)
    bound = k * k * eps32 * abs(math.log(eps32))
    assert float(iic_loss(p.float(), p.float())) == pytest.approx(-math.log(k), abs=bound)


def test_loss_is_bounded_below_by_minus_ln_k_on_random_inputs():
    rng = np.random.default_rng(3)
    for trial in range(60):
        k = int(rng.integers(2, 12))
        n = int(rng.integers(k, 5 * k + 2))
        scale = float(rng.choice([0.1, 1.0, 5.0, 30.0]))
        p1 = torch.from_numpy(random_probs(rng, n, k, scale))
        p2 = torch.from_numpy(random_probs(rng, n, k, scale))
        loss = float(iic_loss(p1, p2))
        assert -math.log(k) - 1e-12 <= loss <= 1e-12, (trial, k, n, scale, loss)


def test_lamb_adds_twice_the_marginal_entropy():
    # L_lamb = H(P) - 2 lamb H(P_c), so L_lamb - L_1 = -2 (lamb - 1) H(P_c)
    rng = np.random.default_rng(4)
    p1, p2 = random_probs(rng, 64, 7), random_probs(rng, 64, 7)
    marginal = np_joint(p1, p2).sum(axis=1)
    entropy = -float(np.sum(marginal * np.log(marginal)))
    t1, t2 = torch.from_numpy(p1), torch.from_numpy(p2)
    base = float(iic_loss(t1, t2, lamb=1.0))
    for lamb in (1.2, 2.0, 3.5):
        assert float(iic_loss(t1, t2, lamb=lamb)) == pytest.approx(base - 2 * (lamb - 1) * entropy, rel=1e-11)


def test_single_view_uses_p1_for_both():
    rng = np.random.default_rng(5)
    p = torch.from_numpy(random_probs(rng, 20, 3))
    assert float(iic_loss(p)) == float(iic_loss(p, p))
    assert float(iic_loss(p)) == pytest.approx(np_iic_loss(p.numpy(), p.numpy()), rel=1e-12)


def test_multihead_loss_is_the_mean_over_sub_heads():
    rng = np.random.default_rng(6)
    heads1 = [torch.from_numpy(random_probs(rng, 16, k)) for k in (3, 5, 8)]
    heads2 = [torch.from_numpy(random_probs(rng, 16, k)) for k in (3, 5, 8)]
    expected = np.mean([np_iic_loss(a.numpy(), b.numpy()) for a, b in zip(heads1, heads2)])
    assert float(iic_multihead_loss(heads1, heads2)) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------- gradients
def test_gradcheck_through_softmax_and_loss():
    torch.manual_seed(0)
    z1 = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: iic_loss_from_logits(a, b, lamb=1.3), (z1, z2))


def test_gradient_ascent_on_mi_approaches_ln_k():
    torch.manual_seed(1)
    k = 4
    base = torch.randn(64, 8)
    head = torch.nn.Linear(8, k)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    with torch.no_grad():
        start = float(mutual_information(torch.softmax(head(base), 1)))
    for _ in range(300):
        noisy = base + 0.05 * torch.randn_like(base)  # second "view"
        loss = iic_loss_from_logits(head(base), head(noisy))
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
        opt.step()
    with torch.no_grad():
        end = float(mutual_information(torch.softmax(head(base), 1)))
    assert start < 0.5 * math.log(k)
    assert end > 0.9 * math.log(k)


# ----------------------------------------------------------------- input errors
def test_mi_functions_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"p2: expected shape \(5, 3\).*found \(5, 4\)"):
        iic_loss(torch.rand(5, 3), torch.rand(5, 4))
    with pytest.raises(ValueError, match="p1: expected a non-empty 2-D tensor"):
        iic_loss(torch.rand(5))
    with pytest.raises(ValueError, match="heads2: expected 2 sub-heads"):
        iic_multihead_loss([torch.rand(4, 2)] * 2, [torch.rand(4, 2)])


# ----------------------------------------------------------------- the solver
def test_solver_is_registered():
    assert "iic" in assignsolve.list_solvers()
    assert isinstance(assignsolve.get_solver("iic", lamb=2.0), IIC)


def test_solver_two_views_matches_numpy():
    rng = np.random.default_rng(7)
    logits1 = rng.normal(size=(60, 4)) * 2
    logits2 = logits1 + rng.normal(size=(60, 4))
    res = assignsolve.solve(Problem(scores=logits1, paired_scores=logits2), "iic", lamb=2.0)
    p1, p2 = np_softmax(logits1), np_softmax(logits2)
    q = p1 * p2
    q /= q.sum(axis=1, keepdims=True)
    assert isinstance(res.soft, np.ndarray) and res.soft.dtype == np.float64
    assert res.labels.dtype == np.int64
    np.testing.assert_allclose(res.soft, q, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(res.labels, q.argmax(axis=1))
    assert res.objective == pytest.approx(-np_iic_loss(p1, p2), rel=1e-12)
    assert res.extras["mi"] == res.objective
    assert res.extras["loss"] == pytest.approx(np_iic_loss(p1, p2, lamb=2.0), rel=1e-12)
    np.testing.assert_allclose(res.extras["joint"], np_joint(p1, p2), rtol=1e-12)
    assert res.extras["n_views"] == 2 and res.converged and res.solver == "iic"


def test_solver_log_probabilities_equal_logits():
    rng = np.random.default_rng(8)
    logits = torch.from_numpy(rng.normal(size=(30, 5)))
    a = IIC()(Problem(scores=logits))
    b = IIC()(Problem.from_logits(logits))
    torch.testing.assert_close(a.soft, b.soft, rtol=1e-12, atol=1e-14)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)


def test_solver_single_view_returns_p1_and_its_self_mi():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(40, 3)).astype(np.float32)
    res = IIC()(Problem(scores=logits))
    p = np_softmax(logits.astype(np.float64))
    assert res.soft.dtype == np.float32
    np.testing.assert_allclose(res.soft, p, rtol=1e-5, atol=1e-6)
    assert res.objective == pytest.approx(-np_iic_loss(p, p), rel=1e-4)
    assert res.extras["n_views"] == 1


def test_solver_keeps_torch_family_and_handles_k_greater_than_n():
    scores = torch.randn(3, 7, dtype=torch.float64)
    res = IIC()(Problem(scores=scores, paired_scores=scores.flip(0)))
    assert isinstance(res.labels, torch.Tensor) and res.labels.dtype == torch.int64
    assert res.soft.dtype == torch.float64 and res.soft.shape == (3, 7)
    torch.testing.assert_close(res.soft.sum(1), torch.ones(3, dtype=torch.float64))
    assert ((res.labels >= 0) & (res.labels < 7)).all()
    assert 0.0 <= res.objective <= math.log(7) + 1e-12


def test_solver_errors():
    with pytest.raises(ValueError, match=r"lamb: expected a number > 0, found -1"):
        IIC(lamb=-1)
    with pytest.raises(InvalidProblemError, match="expected scores"):
        IIC()(Problem(features=np.random.rand(10, 3), n_clusters=2))


# ----------------------------------------------------------------- generic conformance
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    try:
        check(IIC())
    except unittest.SkipTest as exc:
        pytest.skip(str(exc))
