"""Held-out evaluation: linear probe against scikit-learn, weighted kNN against hand values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from assignsolve import InvalidProblemError, NotConvergedWarning
from assignsolve.evaluation import (LinearProbeConfig, fit_logistic, linear_probe, weighted_knn,
                                    weighted_knn_predict)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600], y[:600], x[600:900], y[600:900]


def _standardise(train, test):
    mean, std = train.mean(0), train.std(0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def test_fit_logistic_equals_sklearn_with_c_one_over_n_lambda(digits):
    xtr, ytr, xte, _ = digits
    xs, xt = _standardise(xtr, xte)
    n, wd = len(xs), 1e-2
    w, c, _, converged = fit_logistic(torch.tensor(xs), torch.tensor(ytr), 10, wd, max_iter=500, tol=1e-7)
    ref = LogisticRegression(C=1.0 / (n * wd), tol=1e-10, max_iter=10_000).fit(xs, ytr)
    assert converged
    # sklearn's multinomial model is identifiable only up to a shift of every class's intercept
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-3)  # |coef| up to ~0.5
    np.testing.assert_allclose(c.numpy() - c.numpy().mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-3)
    ours = (torch.tensor(xt) @ w.T + c).argmax(1).numpy()
    assert (ours == ref.predict(xt)).mean() == 1.0


def test_linear_probe_picks_the_sweep_value_with_best_validation_accuracy(digits):
    xtr, ytr, xte, yte = digits
    cfg = LinearProbeConfig(weight_decays=(1e-4, 1e-2, 1.0), val_fraction=0.25, seed=3)
    res = linear_probe(xtr, ytr, xte, yte, cfg)
    assert set(res.val_acc) == {1e-4, 1e-2, 1.0}
    assert res.val_acc[res.weight_decay] == max(res.val_acc.values())
    assert (res.n_train, res.n_test) == (600, 300)
    # refit on the whole train split with the chosen value, scored independently with sklearn
    xs, xt = _standardise(xtr, xte)
    ref = LogisticRegression(C=1.0 / (600 * res.weight_decay), tol=1e-10, max_iter=10_000).fit(xs, ytr)
    assert res.test_acc == pytest.approx(ref.score(xt, yte), abs=2 / 300)
    assert res.test_acc > 0.85  # 600 digits: a linear model on pixels scores ~0.89 on the next 300


def test_linear_probe_is_invariant_to_feature_scale(digits):
    xtr, ytr, xte, yte = digits
    cfg = LinearProbeConfig(weight_decays=(1e-3,))
    a = linear_probe(xtr, ytr, xte, yte, cfg)
    b = linear_probe(xtr * 1e-3, ytr, xte * 1e-3, yte, cfg)
    assert a.test_acc == pytest.approx(b.test_acc, abs=1e-9)


def test_linear_probe_reports_non_convergence(digits):
    xtr, ytr, xte, yte = digits
    with pytest.warns(NotConvergedWarning, match="max_iter=2"):
        res = linear_probe(xtr, ytr, xte, yte, LinearProbeConfig(weight_decays=(1e-6,), max_iter=2))
    assert res.converged is False


@pytest.mark.parametrize("kwargs, match", [
    ({"train_y": np.zeros(5, dtype=np.int64)}, "train labels: expected 600"),
    ({"test_x": np.zeros((3, 7))}, "test features: expected dimension 64, found 7"),
    ({"train_x": np.full((600, 64), np.nan)}, "train features: expected finite"),
])
def test_linear_probe_bad_input_names_the_value(digits, kwargs, match):
    xtr, ytr, xte, yte = digits
    args = dict(train_x=xtr, train_y=ytr, test_x=xte, test_y=yte) | kwargs
    with pytest.raises(InvalidProblemError, match=match):
        linear_probe(**args)


def test_weighted_knn_by_hand():
    # bank on the unit circle; query at angle 0. cos sims: 1.0 (class 0), 0.8 (class 1), 0.6 (class 1)
    angles = [0.0, math.acos(0.8), -math.acos(0.6), math.pi]
    bank = np.array([[math.cos(a), math.sin(a)] for a in angles])
    labels = np.array([0, 1, 1, 0])
    q = np.array([[2.0, 0.0]])  # not unit length: the classifier normalises
    # k=3, T=1: class 0 gets e^1 = 2.718, class 1 gets e^0.8 + e^0.6 = 4.048 -> class 1
    assert weighted_knn_predict(bank, labels, q, k=3, temperature=1.0).tolist() == [1]
    # T=0.07 sharpens: e^(1/0.07) dominates e^(0.8/0.07) + e^(0.6/0.07) -> class 0
    assert weighted_knn_predict(bank, labels, q, k=3, temperature=0.07).tolist() == [0]
    # k=1 is the nearest neighbour whatever T
    assert weighted_knn_predict(bank, labels, q, k=1, temperature=1.0).tolist() == [0]


def test_weighted_knn_matches_brute_force_numpy(digits):
    xtr, ytr, xte, yte = digits
    bank = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    query = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    sim = query @ bank.T
    want = {}
    for k in (20, 200):
        idx = np.argsort(-sim, axis=1)[:, :k]
        votes = np.zeros((len(query), 10))
        for i in range(len(query)):
            np.add.at(votes[i], ytr[idx[i]], np.exp(sim[i, idx[i]] / 0.07))
        want[k] = float((votes.argmax(1) == yte).mean())
    got = weighted_knn(xtr, ytr, xte, yte, ks=(20, 200), temperature=0.07)
    assert got == pytest.approx(want, abs=1 / 300 + 1e-12)  # one tie-broken query at most
    assert got[20] > 0.9


def test_weighted_knn_refuses_bad_k():
    with pytest.raises(InvalidProblemError, match="k >= 1"):
        weighted_knn_predict(np.eye(3), np.arange(3), np.eye(3), k=0)
