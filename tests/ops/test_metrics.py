"""Metrics against independent references: brute-force permutations, sklearn, a numpy kNN."""

import itertools

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from assignsolve import metrics


def brute_force_accuracy(pred, true):
    k = max(pred.max(), true.max()) + 1
    best = 0
    for perm in itertools.permutations(range(k)):
        best = max(best, np.mean(np.array(perm)[pred] == true))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_accuracy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, (true + 2) % 5, rng.integers(0, 5, 200))
    assert metrics.hungarian_accuracy(pred, true) == pytest.approx(brute_force_accuracy(pred, true), abs=1e-12)


def test_hungarian_accuracy_with_more_clusters_than_classes():
    true = np.array([0, 0, 1, 1, 1, 1])
    pred = np.array([3, 4, 0, 0, 0, 1])
    # best map: 0 -> 1 (3 right), and one of {3, 4} -> 0 (1 right)
    assert metrics.hungarian_accuracy(pred, true) == pytest.approx(4 / 6)


def test_nmi_ari_match_sklearn_and_accept_tensors():
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 4, 100), rng.integers(0, 6, 100)
    assert metrics.nmi(torch.as_tensor(pred), true) == pytest.approx(skm.normalized_mutual_info_score(true, pred))
    assert metrics.ari(pred, true) == pytest.approx(skm.adjusted_rand_score(true, pred))


def test_label_validation():
    with pytest.raises(ValueError, match="expected equal lengths, found 3 and 2"):
        metrics.nmi(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="expected integer labels"):
        metrics.ari(np.array([0.5, 1.0]), np.array([0, 1]))


def numpy_knn(x, y, k, t):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    correct = 0
    for i in range(len(x)):
        nn = np.argsort(-sim[i], kind="stable")[:k]
        votes = np.zeros(y.max() + 1)
        np.add.at(votes, y[nn], np.exp(sim[i, nn] / t))
        correct += votes.argmax() == y[i]
    return correct / len(x)


def test_knn_accuracy_matches_numpy_reference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 8)) + 1.5 * np.eye(8)[y]
    got = metrics.knn_accuracy(x, y, k=7, temperature=0.1, chunk_size=64)
    assert got == pytest.approx(numpy_knn(x, y, 7, 0.1), abs=1e-12)
    assert 0.6 < got <= 1.0


def test_size_stats():
    s = metrics.size_stats(np.array([0, 0, 0, 2]), 4)
    assert s["size_min"] == 0 and s["size_max"] == 3 and s["n_empty"] == 2
    assert s["size_entropy"] == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
