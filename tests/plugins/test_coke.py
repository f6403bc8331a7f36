"""CoKe (online constrained k-means): hand-checked updates, the lower bound vs Sinkhorn, state."""

from __future__ import annotations

import io
import unittest
import warnings

import numpy as np
import ot
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import assignsolve
from assignsolve import InvalidProblemError, Problem
from assignsolve.testing import CHECKS
from assignsolve_plugins.coke import CoKe, OnlineCoke, coke_assign, coke_centre_step, coke_dual_step


def mixture(n=3000, d=8, props=(0.7, 0.2, 0.1), spread=0.3, seed=0):
    """Imbalanced Gaussian mixture projected onto the unit sphere (orthonormal means)."""
    rng = np.random.default_rng(seed)
    means = np.linalg.qr(rng.normal(size=(d, d)))[0][: len(props)]
    sizes = np.round(np.array(props) * n).astype(int)
    truth = np.repeat(np.arange(len(props)), sizes)
    x = means[truth] + spread * rng.normal(size=(len(truth), d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


# ----------------------------------------------------------------- hand-checked steps
def test_one_step_by_hand():
    # K = 3 centres on the axes of R^3; the batch's labels are obvious: [0, 0, 0, 1]
    eye = torch.eye(3, dtype=torch.float64)
    cfg = CoKe(gamma=0.6, eta=0.5)
    run = cfg.online(10, 3, 3, dtype=torch.float64, init_centroids=eye)
    run.state.rho = torch.tensor([0.0, 0.05, 0.02], dtype=torch.float64)
    x = torch.tensor([[2.0, 0.1, 0.0], [1.0, 0.0, 0.3], [1.0, -0.2, 0.1], [0.0, 3.0, 0.0]], dtype=torch.float64)
    labels = run.partial_fit(x, torch.tensor([4, 7, 1, 9]))
    assert labels.tolist() == [0, 0, 0, 1]

    # rho_k <- max(0, rho_k - eta n_k / B + eta gamma / K)
    lb = 0.6 / 3
    expected_rho = [max(0.0, 0.0 - 0.5 * 3 / 4 + 0.5 * lb),
                    max(0.0, 0.05 - 0.5 * 1 / 4 + 0.5 * lb),
                    max(0.0, 0.02 - 0.5 * 0 / 4 + 0.5 * lb)]
    assert expected_rho == pytest.approx([0.0, 0.025, 0.12])
    np.testing.assert_allclose(run.state.rho.numpy(), expected_rho, rtol=0, atol=1e-15)

    # first batch of the epoch: c_k = normalise(mean of assigned x_hat); untouched centres stay
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    c0 = xn[:3].mean(0)
    c0 /= np.linalg.norm(c0)
    np.testing.assert_allclose(run.state.centres[0].numpy(), c0, atol=1e-15)
    np.testing.assert_allclose(run.state.centres[1].numpy(), [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(run.state.centres[2].numpy(), [0, 0, 1], atol=1e-15)
    assert run.state.counts.tolist() == [3, 1, 0]
    assert run.state.labels[[4, 7, 1, 9]].tolist() == [0, 0, 0, 1]
    assert run.state.labels[0] == -1 and run.state.step == 1

    # second batch: running mean c <- normalise((m c + sum x) / (m + n)) with the stored m
    x2 = torch.tensor([[0.9, 0.0, 0.4], [0.0, 0.1, 2.0]], dtype=torch.float64)
    rho_before = run.state.rho.clone()
    scores = (x2 / x2.norm(dim=1, keepdim=True)) @ run.state.centres.T + rho_before
    expected_labels = scores.argmax(1).tolist()
    assert run.partial_fit(x2, torch.tensor([0, 2])).tolist() == expected_labels == [0, 2]
    x2n = x2.numpy() / np.linalg.norm(x2.numpy(), axis=1, keepdims=True)
    c0b = (3 * c0 + x2n[0]) / 4
    c0b /= np.linalg.norm(c0b)
    np.testing.assert_allclose(run.state.centres[0].numpy(), c0b, atol=1e-15)
    np.testing.assert_allclose(run.state.centres[2].numpy(), x2n[1], atol=1e-15)
    np.testing.assert_allclose(
        run.state.rho.numpy(),
        np.maximum(0, rho_before.numpy() - 0.5 * np.array([1, 0, 1]) / 2 + 0.5 * lb),
        atol=1e-15,
    )


def test_pure_functions_against_numpy():
    rng = np.random.default_rng(0)
    rho = torch.from_numpy(rng.random(5) * 0.1)
    labels = torch.from_numpy(rng.integers(0, 5, 32))
    lower = torch.full((5,), 0.4 / 5, dtype=torch.float64)
    counts = np.bincount(labels.numpy(), minlength=5)
    raw = rho.numpy() - 3.0 * counts / 32 + 3.0 * 0.4 / 5
    np.testing.assert_allclose(coke_dual_step(rho, labels, lower, 3.0).numpy(), np.maximum(raw, 0), atol=1e-15)
    np.testing.assert_allclose(coke_dual_step(rho, labels, lower, 3.0, clip=False).numpy(), raw, atol=1e-15)
    assert (raw < 0).any()  # the projection did something

    x = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(32, 4))), dim=1)
    c = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(5, 4))), dim=1)
    y, s = coke_assign(x, c, rho)
    np.testing.assert_allclose(s.numpy(), x.numpy() @ c.numpy().T + rho.numpy(), atol=1e-15)
    np.testing.assert_array_equal(y.numpy(), s.numpy().argmax(1))

    m = torch.tensor([4, 0, 2, 0, 1])
    new_c, new_m = coke_centre_step(c, m, x, y)
    for k in range(5):
        members = x.numpy()[y.numpy() == k]
        if len(members) == 0:
            np.testing.assert_array_equal(new_c[k].numpy(), c[k].numpy())
            continue
        ref = (m[k].item() * c[k].numpy() + members.sum(0)) / (m[k].item() + len(members))
        np.testing.assert_allclose(new_c[k].numpy(), ref / np.linalg.norm(ref), atol=1e-14)
    assert new_m.tolist() == (m.numpy() + np.bincount(y.numpy(), minlength=5)).tolist()


# ----------------------------------------------------------------- the lower bound
@pytest.fixture(scope="module")
def imbalanced():
    x, truth = mixture()
    kw = dict(eta=0.1, batch_size=100, max_iter=30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", assignsolve.NotConvergedWarning)
        constrained = assignsolve.solve(Problem(features=x, n_clusters=3), "coke", gamma=0.4, **kw)
        free = assignsolve.solve(Problem(features=x, n_clusters=3), "coke", gamma=0.0, **kw)
    return x, truth, constrained, free


def test_gamma_zero_recovers_the_natural_imbalanced_sizes(imbalanced):
    x, truth, _, free = imbalanced
    props = np.sort(free.cluster_sizes)[::-1] / len(x)
    np.testing.assert_allclose(props, [0.7, 0.2, 0.1], atol=0.025)
    assert adjusted_rand_score(truth, free.labels) > 0.9
    assert np.all(np.asarray(free.extras["rho"]) == 0)  # gamma = 0: the duals never leave 0


def test_lower_bound_holds_where_the_natural_sizes_violate_it(imbalanced):
    x, _, constrained, free = imbalanced
    n, k, gamma = len(x), 3, 0.4
    bound = gamma * n / k  # 400 of 3000
    assert free.cluster_sizes.min() < 0.85 * bound  # the 10 % cluster violates the bound...
    # ...and CoKe lifts it to the bound. The dual ascent enforces it on average over the
    # online pass; convergence means the last epoch is within tol * N (default 1 %) of it.
    assert constrained.converged and free.converged
    assert constrained.cluster_sizes.min() >= bound - 0.01 * n
    assert constrained.extras["min_size_ratio"] >= 0.9 * gamma
    assert constrained.extras["lower_bound"] == pytest.approx([bound] * 3)
    # only the small cluster needs a positive dual variable
    rho = np.asarray(constrained.extras["rho"])
    small = int(np.argmin(constrained.cluster_sizes))
    assert rho[small] > 0 and np.all(np.delete(rho, small) == 0)
    # it still respects the data: the two large clusters stay far above the bound
    assert np.sort(constrained.cluster_sizes)[1] > 1.4 * bound


def test_balanced_sinkhorn_forces_equal_sizes_on_the_same_centres(imbalanced):
    x, _, constrained, _ = imbalanced
    centres = np.asarray(constrained.extras["centres"])
    scores = x @ centres.T
    n, k = scores.shape
    plan = ot.sinkhorn(np.full(n, 1 / n), np.full(k, 1 / k), -scores, reg=0.05)
    sk_sizes = np.bincount(plan.argmax(1), minlength=k)
    np.testing.assert_allclose(sk_sizes / n, 1 / k, atol=0.02)  # equal thirds
    # CoKe on the same data keeps the imbalance above the lower bound
    assert constrained.cluster_sizes.max() > 0.6 * n
    assert constrained.cluster_sizes.min() < 0.2 * n


def test_objective_is_mean_cosine_to_final_centres(imbalanced):
    x, _, constrained, _ = imbalanced
    c = np.asarray(constrained.extras["centres"])
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-12)
    expected = np.mean(np.sum(x * c[constrained.labels], axis=1))
    assert constrained.objective == pytest.approx(expected, rel=1e-10)


def test_min_cluster_size_replaces_the_ratio():
    x, _ = mixture(n=3000, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", assignsolve.NotConvergedWarning)
        res = CoKe(gamma=0.0, eta=0.1, batch_size=100, max_iter=30)(
            Problem(features=x, n_clusters=3, min_cluster_size=450))
    assert res.extras["lower_bound"] == pytest.approx([450.0] * 3)
    # the duals hold the bound on average (within tol * N) ...
    assert res.cluster_sizes.min() >= 450 - 0.01 * 3000
    # ... but a hard min_cluster_size that is not met exactly is not reported as converged
    smallest = int(res.cluster_sizes.min())
    assert res.converged == (smallest >= 450)
    if smallest < 450:
        assert res.extras["not_converged_reason"] == (
            f"smallest cluster has {smallest} samples, below min_cluster_size = 450")


def test_paper_step_size_oscillates_for_small_k_and_says_so():
    # eta = 20 is tuned for K in the thousands: with K = 3 one dual step moves rho by up to
    # eta * gamma / K = 2.7, far more than the cosine scores differ, so labels flip every batch.
    x, _ = mixture(n=3000, seed=2)
    with pytest.warns(assignsolve.NotConvergedWarning):
        res = CoKe(eta=20.0, batch_size=100, max_iter=10)(Problem(features=x, n_clusters=3))
    assert not res.converged and res.n_iters == 10
    assert np.mean(res.errors) > 0.3  # on average a third or more of the labels change per epoch


def test_default_step_size_keeps_the_papers_per_step_dual_move():
    # paper: eta = 20 with K = 3000/4000/5000, so one step moves rho_k by <= 20 * 0.4 / 3000
    cfg = CoKe()
    assert cfg.eta is None
    assert cfg.dual_step_size(3000) == 20.0 and cfg.dual_step_size(5000) == 20.0
    assert cfg.dual_step_size(10) == pytest.approx(20.0 * 10 / 3000, rel=1e-15)
    assert cfg.dual_step_size(300) * cfg.gamma / 300 == pytest.approx(20.0 * 0.4 / 3000, rel=1e-12)
    assert CoKe(eta=0.5).dual_step_size(10) == 0.5 and CoKe(eta=20.0).dual_step_size(3) == 20.0
    # the online step uses it: one batch by hand with K = 3 (eta = 0.02)
    eye = torch.eye(3, dtype=torch.float64)
    run = cfg.online(10, 3, 3, dtype=torch.float64, init_centroids=eye)
    x = torch.tensor([[2.0, 0.1, 0.0], [1.0, 0.0, 0.3], [1.0, -0.2, 0.1], [0.0, 3.0, 0.0]], dtype=torch.float64)
    run.partial_fit(x, torch.tensor([4, 7, 1, 9]))
    eta = 20.0 * 3 / 3000
    expected = [max(0.0, -eta * n / 4 + eta * 0.4 / 3) for n in (3, 1, 0)]
    np.testing.assert_allclose(run.state.rho.numpy(), expected, rtol=0, atol=1e-15)


def test_default_step_size_clusters_digits_like_kmeans_where_eta_20_collapses():
    # sklearn's 1,797 digits (pixels / 16), K = 10, 30 epochs of B = 256: with eta = 20 a step
    # moves rho by 0.8, every batch lands in one cluster; the default (0.067) tracks k-means.
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits
    from sklearn.metrics import normalized_mutual_info_score as nmi

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    problem = Problem(features=x, n_clusters=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", assignsolve.NotConvergedWarning)
        default = CoKe(seed=0)(problem)
        paper = CoKe(eta=20.0, seed=0)(problem)
    reference = KMeans(10, n_init=1, random_state=0).fit(x / np.linalg.norm(x, axis=1, keepdims=True)).labels_
    assert nmi(digits.target, reference) > 0.6
    assert nmi(digits.target, default.labels) > nmi(digits.target, reference) - 0.05
    assert nmi(digits.target, paper.labels) < 0.1
    assert np.bincount(paper.labels, minlength=10).min() == 0  # clusters left empty
    assert np.bincount(default.labels, minlength=10).min() >= 0.4 * 1797 / 10 - 0.01 * 1797


# ----------------------------------------------------------------- online state
def _feed(run: OnlineCoke, x: torch.Tensor, epochs: int, seed: int, batch: int = 16) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for s in range(0, x.shape[0], batch):
            out.append(run.partial_fit(x[order[s:s + batch]], order[s:s + batch]))
        run.end_epoch()
    return out


def test_state_dict_round_trip_continues_identically():
    x = torch.from_numpy(mixture(n=200, seed=2)[0]).float()
    cfg = CoKe(gamma=0.4, eta=0.5, seed=3)
    a = cfg.online(200, 8, 3)
    _feed(a, x, epochs=2, seed=0)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    rest_a = _feed(a, x, epochs=2, seed=1)

    b = cfg.online(200, 8, 3)  # fresh, same config, different untouched state
    _feed(b, x[torch.randperm(200)], epochs=1, seed=9)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer))
    rest_b = _feed(b, x, epochs=2, seed=1)

    for la, lb in zip(rest_a, rest_b):
        assert torch.equal(la, lb)
    for key, value in a.state_dict().items():
        other = b.state_dict()[key]
        assert (torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other), key
    assert b.state.epoch == 4 and b.state.step == 4 * 13


def test_load_state_dict_rejects_wrong_shapes():
    cfg = CoKe()
    sd = cfg.online(50, 4, 3).state_dict()
    with pytest.raises(ValueError, match=r"centres: expected shape \(5, 4\), found \(3, 4\)"):
        cfg.online(50, 4, 5).load_state_dict(sd)
    with pytest.raises(KeyError, match="missing"):
        cfg.online(50, 4, 3).load_state_dict({k: v for k, v in sd.items() if k != "rho"})


def test_targets_are_previous_epoch_labels_and_logits_use_previous_centres():
    x = torch.from_numpy(mixture(n=120, seed=4)[0]).float()
    run = CoKe(gamma=0.4, eta=0.5).online(120, 8, 3)
    idx = torch.arange(0, 40)
    first = run.partial_fit(x[idx], idx)
    assert torch.equal(run.targets(idx), first)  # epoch 0: the current labels
    run.partial_fit(x[40:], torch.arange(40, 120))
    run.end_epoch()
    epoch0 = run.state.labels.clone()
    centres0 = run.state.centres.clone()
    run.partial_fit(x[idx], idx)
    assert torch.equal(run.targets(torch.arange(120)), epoch0)
    assert torch.equal(run.state.previous_centres, centres0)
    assert not torch.equal(run.state.centres, centres0)
    feats = x[:5].clone().requires_grad_(True)
    logits = run.logits(feats, temperature=0.1)
    expected = torch.nn.functional.normalize(x[:5], dim=1) @ centres0.T / 0.1
    torch.testing.assert_close(logits.detach(), expected)
    logits.sum().backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


def test_partial_fit_rejects_bad_batches():
    run = CoKe().online(10, 4, 3)
    with pytest.raises(ValueError, match=r"features: expected shape \[B, 4\].*found \(2, 5\)"):
        run.partial_fit(torch.rand(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 10\), found 10"):
        run.partial_fit(torch.rand(2, 4), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"indices: expected shape \[2\], found \(3,\)"):
        run.partial_fit(torch.rand(2, 4), torch.tensor([0, 1, 2]))


# ----------------------------------------------------------------- the solver contract
def test_config_validation():
    with pytest.raises(ValueError, match=r"gamma: expected a number in \[0, 1\], found 1.5"):
        CoKe(gamma=1.5)
    with pytest.raises(ValueError, match=r"eta: expected a finite number > 0, found 0"):
        CoKe(eta=0)
    with pytest.raises(ValueError, match=r"batch_size: expected an int >= 1, found 0"):
        CoKe(batch_size=0)
    with pytest.raises(ValueError, match=r"init: expected 'samples' or 'randn', found 'kmeans'"):
        CoKe(init="kmeans")
    with pytest.raises(InvalidProblemError, match="expected features"):
        CoKe()(Problem(scores=np.random.rand(10, 3)))


def test_family_dtype_determinism_and_soft_rows():
    x, _ = mixture(n=60, d=5, props=(0.5, 0.3, 0.2), seed=5)
    solver = assignsolve.get_solver("coke", epsilon=0.1, eta=1.0, seed=7)
    r1 = solver(Problem(features=x, n_clusters=4))
    r2 = solver(Problem(features=x, n_clusters=4))
    assert r1.labels.dtype == np.int64 and r1.soft.dtype == np.float64
    np.testing.assert_array_equal(r1.labels, r2.labels)
    np.testing.assert_array_equal(r1.soft, r2.soft)
    np.testing.assert_allclose(r1.soft.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(r1.soft.argmax(1), r1.labels)  # soft recorded at labelling time

    xt = torch.from_numpy(x).float()
    rt = CoKe(seed=7)(Problem(features=xt, n_clusters=4))
    assert isinstance(rt.labels, torch.Tensor) and rt.labels.dtype == torch.int64
    assert rt.soft.dtype == torch.float32
    assert torch.equal(rt.soft, torch.nn.functional.one_hot(rt.labels, 4).float())  # epsilon=None
    assert isinstance(rt.extras["centres"], torch.Tensor) and rt.extras["centres"].shape == (4, 5)


def test_k_greater_than_n_and_init_centroids():
    x = np.random.default_rng(6).normal(size=(3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", assignsolve.NotConvergedWarning)
        res = CoKe(max_iter=3)(Problem(features=x, n_clusters=5))
    assert res.labels.shape == (3,) and ((res.labels >= 0) & (res.labels < 5)).all()
    # with given centres and gamma = 0, one epoch of one batch is the plain nearest-centre rule
    centres = np.random.default_rng(7).normal(size=(5, 4))
    with pytest.warns(assignsolve.NotConvergedWarning):  # one epoch: no label change measured
        res = CoKe(gamma=0.0, max_iter=1)(Problem(features=x, n_clusters=5, init_centroids=centres))
    assert not res.converged and res.errors == ()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cn = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    np.testing.assert_array_equal(res.labels, (xn @ cn.T).argmax(1))


# ----------------------------------------------------------------- generic conformance
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    try:
        check(CoKe())
    except unittest.SkipTest as exc:
        pytest.skip(str(exc))
