"""The one seeding kernel (``ops.centroids``) of the kmeans plugin and ``compare`` against
scikit-learn's ``kmeans_plusplus``, fed the very same uniforms, and against hand references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from assignsolve.core.errors import ConfigError
from assignsolve.ops.centroids import init_centroids, kmeans_plusplus


class TorchDraws(np.random.RandomState):
    """A ``random_state`` for scikit-learn that hands out the draws ``kmeans_plusplus`` takes from a
    torch generator: one uniform index (``choice``), then ``n_local_trials`` uniforms per step."""

    def __init__(self, seed: int):
        super().__init__(0)
        self.gen = torch.Generator().manual_seed(seed)

    def choice(self, n, p=None):
        assert p is None or np.allclose(p, 1.0 / n)  # unit sample weights: a uniform index
        return int(torch.randint(n, (1,), generator=self.gen))

    def uniform(self, size=None):
        return torch.rand(size, generator=self.gen, dtype=torch.float64).numpy()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n_local_trials", [None, 1, 5])
def test_same_uniforms_give_sklearns_seeds(n_local_trials):
    x = np.random.default_rng(3).normal(size=(300, 6))
    for seed in range(4):
        ours = kmeans_plusplus(torch.from_numpy(x), 9, _gen(seed), n_local_trials)
        _, theirs = sk_kmeans_plusplus(x, 9, random_state=TorchDraws(seed), n_local_trials=n_local_trials)
        assert ours.dtype == torch.int64 and ours.tolist() == theirs.tolist()
    # the draws matter: another seed picks other rows
    assert kmeans_plusplus(torch.from_numpy(x), 9, _gen(0)).tolist() != kmeans_plusplus(
        torch.from_numpy(x), 9, _gen(1)).tolist()


def test_float32_seeds_match_sklearn_on_separated_blobs_and_lloyd_agrees():
    x, y = make_blobs(n_samples=900, n_features=5, centers=12, cluster_std=0.3, center_box=(-40, 40),
                      random_state=1)
    x32 = x.astype(np.float32)
    for seed in range(3):
        idx = kmeans_plusplus(torch.from_numpy(x32), 12, _gen(seed))
        _, theirs = sk_kmeans_plusplus(x32, 12, random_state=TorchDraws(seed))
        assert idx.tolist() == theirs.tolist()
        assert sorted(y[idx.numpy()].tolist()) == list(range(12))  # one seed in every blob
        # Lloyd from these seeds finds the blobs, as sklearn's own k-means++ KMeans does
        ours = KMeans(12, init=x[idx.numpy()], n_init=1).fit(x)
        sk = KMeans(12, init="k-means++", n_init=1, random_state=seed).fit(x)
        assert adjusted_rand_score(y, ours.labels_) == 1.0 == adjusted_rand_score(y, sk.labels_)
        assert ours.inertia_ == pytest.approx(sk.inertia_, rel=1e-9)


def test_k_above_n_and_duplicates():
    x = torch.tensor([[0.0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [-10, 5]])
    big = kmeans_plusplus(x, 9, _gen(0))
    assert set(big[:6].tolist()) == set(range(6)) and len(big) == 9  # every point before any repeat
    same = torch.ones(5, 3)
    idx = kmeans_plusplus(same, 3, _gen(0))  # zero potential: uniform candidates, still valid rows
    assert idx.shape == (3,) and 0 <= int(idx.min()) and int(idx.max()) < 5


def test_init_centroids_rows_and_random_draw():
    x = torch.arange(40, dtype=torch.float64).reshape(20, 2)
    np.testing.assert_array_equal(init_centroids(x, 4, "kmeans++", _gen(2)).numpy(),
                                  x[kmeans_plusplus(x, 4, _gen(2))].numpy())
    # "random": K distinct rows, randperm(N)[:K] (faiss), with replacement only for K > N
    np.testing.assert_array_equal(init_centroids(x, 4, "random", _gen(5)).numpy(),
                                  x[torch.randperm(20, generator=_gen(5))[:4]].numpy())
    c = init_centroids(x, 25, "random", _gen(5))
    assert c.shape == (25, 2) and set(c[:, 0].tolist()) <= set(x[:, 0].tolist())
    with pytest.raises(ConfigError, match=r"init: expected 'kmeans\+\+' or 'random', found 'kmeans'"):
        init_centroids(x, 4, "kmeans", _gen(0))
