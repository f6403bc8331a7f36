"""The ``kmeans`` solver (DeepCluster) against faiss, scikit-learn and hand formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits, make_blobs

import assignsolve
from assignsolve import InvalidProblemError, NotConvergedWarning, Problem
from assignsolve.sampling import UniformLabelSampler, uniform_label_indices
from assignsolve_plugins.kmeans import (
    SPLIT_EPS,
    KMeans,
    apply_pca,
    assign_nearest,
    fit_pca,
    init_centroids,
    preprocess_features,
    split_empty_clusters,
)

faiss = pytest.importorskip("faiss")


# ----------------------------------------------------------------------------- helpers
def _blobs(n=1500, d=16, k=12, std=2.5, seed=0, dtype=np.float32):
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return x.astype(dtype), y


def _init_from_points(x, k, seed=0):
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(x), k, replace=False)].copy()


def _faiss_kmeans(x, c0, niter, spherical=False):
    """faiss.Kmeans from c0; returns (final objective as a sum, labels, per-iteration obj)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x32.shape[1], c0.shape[0], niter=niter, spherical=spherical,
                      max_points_per_centroid=10**8, min_points_per_centroid=1, seed=1234)
    km.train(x32, init_centroids=np.ascontiguousarray(c0, dtype=np.float32))
    dist, idx = km.index.search(x32, 1)
    return float(dist.sum()), idx[:, 0], np.asarray(km.obj)


def _run(problem, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        return KMeans(**config)(problem)


# ----------------------------------------------------------------------------- vs references
@pytest.mark.parametrize("dataset", ["blobs", "digits"])
def test_objective_matches_faiss_and_sklearn_from_same_init(dataset):
    if dataset == "blobs":
        x, _ = _blobs()
        k = 12
    else:
        x = load_digits().data.astype(np.float32)
        k = 10
    c0 = _init_from_points(x, k, seed=3)
    res = _run(Problem(features=x, n_clusters=k, init_centroids=c0), max_iter=20, tol=0.0)
    ours = res.objective * len(x)  # our objective is a mean, faiss/sklearn report sums

    f_obj, f_labels, f_hist = _faiss_kmeans(x, c0, niter=20)
    sk = SkKMeans(n_clusters=k, init=c0, n_init=1, max_iter=20, tol=0.0, algorithm="lloyd").fit(x)

    assert ours == pytest.approx(f_obj, rel=0.01)
    assert ours == pytest.approx(sk.inertia_, rel=0.01)
    assert res.n_empty == 0 and res.extras["n_repairs"] == 0
    # Same init and no empty cluster: the three are the same deterministic iteration.
    assert np.mean(res.labels == sk.labels_) > 0.99
    assert np.mean(res.labels == f_labels) > 0.99
    # History: errors[t] is the objective of the t-th assignment, as faiss' obj[t] (a sum).
    m = min(len(f_hist), len(res.errors) - 1, 5)
    np.testing.assert_allclose(np.array(res.errors[:m]) * len(x), f_hist[:m], rtol=1e-4)
    # Objective is inertia / N of the returned labels and centroids.
    c = res.extras["centroids"]
    assert res.objective == pytest.approx(float(((x - c[res.labels]) ** 2).sum(1).mean()), rel=1e-5)


def test_float64_matches_sklearn_tightly_and_centroids_are_means():
    x, _ = _blobs(n=800, d=6, k=7, std=3.0, seed=1, dtype=np.float64)
    c0 = _init_from_points(x, 7, seed=5)
    res = _run(Problem(features=x, n_clusters=7, init_centroids=c0), max_iter=300, tol=0.0)
    sk = SkKMeans(n_clusters=7, init=c0, n_init=1, max_iter=300, tol=0.0, algorithm="lloyd").fit(x)
    assert res.converged
    np.testing.assert_array_equal(res.labels, sk.labels_)
    assert res.objective * len(x) == pytest.approx(sk.inertia_, rel=1e-10)
    c = res.extras["centroids"]
    assert c.dtype == np.float64
    np.testing.assert_allclose(c, sk.cluster_centers_, atol=1e-10)
    # At a fixed point each centroid is the mean of its cluster.
    means = np.stack([x[res.labels == j].mean(0) for j in range(7)])
    np.testing.assert_allclose(c, means, atol=1e-10)


def test_preprocessed_digits_match_faiss_on_the_same_features():
    x = load_digits().data.astype(np.float32)
    k = 10
    z = preprocess_features(torch.from_numpy(x), pca_dim=32).numpy()
    c0 = _init_from_points(z, k, seed=0)
    res = _run(Problem(features=z, n_clusters=k, init_centroids=c0), max_iter=20, tol=0.0)
    f_obj, _, _ = _faiss_kmeans(z, c0, niter=20)
    assert res.objective * len(z) == pytest.approx(f_obj, rel=0.01)
    # The solver's own preprocessing (PCA of x, then the same map applied to the centroids)
    # gives the same clustering as preprocessing by hand.
    mean, proj = fit_pca(torch.from_numpy(x), 32)
    raw_init = x[np.random.default_rng(0).choice(len(x), k, replace=False)]
    z_init = torch.nn.functional.normalize(apply_pca(torch.from_numpy(raw_init), mean, proj), dim=1).numpy()
    by_hand = _run(Problem(features=z, n_clusters=k, init_centroids=z_init), max_iter=20, tol=0.0)
    inside = _run(Problem(features=x, n_clusters=k, init_centroids=raw_init), max_iter=20, tol=0.0,
                  preprocess=True, pca_dim=32)
    assert inside.objective == pytest.approx(by_hand.objective, rel=1e-4)
    assert np.mean(inside.labels == by_hand.labels) > 0.99
    assert inside.extras["centroids"].shape == (k, 32)


# ----------------------------------------------------------------------------- empty clusters
@pytest.mark.parametrize("kind", ["duplicates", "far_away"])
def test_adversarial_init_is_repaired(kind):
    x, _ = _blobs(n=1200, d=8, k=10, std=1.5, seed=2)
    k = 10
    ours, theirs = [], []
    for seed in range(8):
        c0 = _init_from_points(x, k, seed=seed)
        if kind == "duplicates":
            c0[5:] = c0[0]  # six identical centroids: five of them get nothing
        else:
            c0[6:] = x.max(0) + 1e3  # four centroids far from every point
        res = _run(Problem(features=x, n_clusters=k, init_centroids=c0), max_iter=100, tol=0.0, seed=seed)
        assert res.extras["n_repairs"] >= 4
        assert res.n_empty == 0 and res.extras["n_empty"] == 0
        assert set(np.unique(res.labels)) == set(range(k))
        ours.append(res.objective * len(x))
        theirs.append(_faiss_kmeans(x, c0, niter=100)[0])
    # Same repair rule as faiss (different random donors): same quality on average. A repair
    # that re-seeds badly (e.g. leaving a centroid at the origin) is several times worse.
    assert np.mean(ours) <= 1.2 * np.mean(theirs)


def test_split_empty_clusters_follows_faiss_rule():
    c = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [4.0, -5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    counts = torch.tensor([0.0, 1.0, 10.0, 0.0], dtype=torch.float64)
    # Cluster 1 is a singleton (weight n-1 = 0): only cluster 2 can donate.
    cc, nn = c.clone(), counts.clone()
    n = split_empty_clusters(cc, nn, torch.Generator().manual_seed(0))
    assert n == 2
    # Cluster 0 splits 2 (10 -> 5 + 5); cluster 3 then splits 0 or 2 (5 -> 2.5 + 2.5).
    assert float(nn.sum()) == pytest.approx(11.0)
    assert nn[1] == 1.0 and (nn > 0).all()
    assert sorted(nn.tolist()) == [1.0, 2.5, 2.5, 5.0]
    s = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    # With one empty cluster the split is exact: c_e = c_j (1 + eps s), c_j <- c_j (1 - eps s).
    cc, nn = c.clone(), torch.tensor([0.0, 1.0, 10.0, 4.0], dtype=torch.float64)
    split_empty_clusters(cc, nn, torch.Generator().manual_seed(1))
    j = 2 if nn[2] == 5.0 else 3
    np.testing.assert_allclose(cc[0], c[j] * (1 + SPLIT_EPS * s))
    np.testing.assert_allclose(cc[j], c[j] * (1 - SPLIT_EPS * s))
    assert nn[0] == nn[j] == {2: 5.0, 3: 2.0}[j]


def test_split_donor_probability_is_proportional_to_size_minus_one():
    sizes = torch.tensor([0.0, 2.0, 5.0, 11.0, 1.0], dtype=torch.float64)
    expected = (sizes - 1).clamp_min(0)[1:4]
    expected = expected / expected.sum()
    gen = torch.Generator().manual_seed(0)
    hits = np.zeros(5)
    trials = 3000
    for _ in range(trials):
        c = torch.arange(15, dtype=torch.float64).reshape(5, 3) + 1
        n = sizes.clone()
        split_empty_clusters(c, n, gen)
        hits[int(torch.nonzero(n != sizes)[-1])] += 1  # the donor's count changed
    assert hits[4] == 0  # singleton never split
    chi2 = ((hits[1:4] - trials * expected.numpy()) ** 2 / (trials * expected.numpy())).sum()
    assert chi2 < stats.chi2.ppf(0.999, df=2)


# ----------------------------------------------------------------------------- cosine
def _spherical_by_hand(x, c0, iters):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = c0 / np.linalg.norm(c0, axis=1, keepdims=True)
    for _ in range(iters):
        labels = np.argmax(x @ c.T, axis=1)
        c = np.stack([x[labels == j].sum(0) for j in range(len(c))])
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
    labels = np.argmax(x @ c.T, axis=1)
    return labels, c, float(np.mean(2 - 2 * (x * c[labels]).sum(1)))


def test_cosine_matches_hand_spherical_kmeans_and_faiss():
    x, _ = _blobs(n=900, d=10, k=8, std=2.0, seed=4, dtype=np.float64)
    c0 = _init_from_points(x, 8, seed=2)
    labels, c, obj = _spherical_by_hand(x, c0, iters=15)
    res = _run(Problem(features=x, n_clusters=8, init_centroids=c0), metric="cosine", max_iter=15, tol=0.0)
    assert res.extras["n_repairs"] == 0
    np.testing.assert_array_equal(res.labels, labels)
    assert res.objective == pytest.approx(obj, rel=1e-10)
    if res.n_iters == 15:
        np.testing.assert_allclose(res.extras["centroids"], c, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(res.extras["centroids"], axis=1), 1.0, atol=1e-12)
    xn = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    f_cos, f_labels, _ = _faiss_kmeans(xn, c0 / np.linalg.norm(c0, axis=1, keepdims=True), 15, spherical=True)
    # faiss' spherical k-means searches an inner-product index: its objective is sum_i cos_i,
    # ours is mean_i |x_i - c_i|^2 = mean_i (2 - 2 cos_i).
    assert res.objective * len(x) == pytest.approx(2 * len(x) - 2 * f_cos, rel=0.01)
    assert np.mean(f_labels == res.labels) > 0.99


# ----------------------------------------------------------------------------- preprocessing
def test_pca_whitening_gives_identity_covariance_and_matches_faiss_pcamatrix():
    x = load_digits().data.astype(np.float64)
    mean, proj = fit_pca(torch.from_numpy(x), 24, eps=0.0)
    z = apply_pca(torch.from_numpy(x), mean, proj).numpy()
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(24), atol=1e-8)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-10)
    # DeepCluster: faiss.PCAMatrix(D, d, eigen_power=-0.5) then L2 normalisation. faiss scales
    # by the scatter (not covariance) eigenvalues, a global 1/sqrt(N) that normalisation removes.
    x32 = x.astype(np.float32)
    pm = faiss.PCAMatrix(64, 24, -0.5)
    pm.train(x32)
    ref = pm.apply_py(x32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = preprocess_features(torch.from_numpy(x32), 24, eps=0.0).numpy()
    sign = np.sign((ref * ours).sum(0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(ours * sign, ref, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    from_numpy = preprocess_features(x32, 24, eps=0.0)  # numpy in, numpy out
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_array_equal(from_numpy, ours)
    # pca_dim=None: normalisation only; whiten=False: plain PCA (variances = eigenvalues).
    assert torch.allclose(preprocess_features(torch.from_numpy(x), None),
                          torch.nn.functional.normalize(torch.from_numpy(x), dim=1))
    _, proj_nw = fit_pca(torch.from_numpy(x), 5, whiten=False)
    var = np.var((x - x.mean(0)) @ proj_nw.numpy(), axis=0)
    np.testing.assert_allclose(var, np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1][:5], rtol=1e-8)


# ----------------------------------------------------------------------------- mechanics
def test_chunking_does_not_change_the_result_and_matches_cdist():
    x = torch.from_numpy(_blobs(n=500, d=7, k=5)[0]).double()
    c = x[:9].clone() + 0.1
    labels_a, d_a = assign_nearest(x, c, chunk_size=7)
    labels_b, d_b = assign_nearest(x, c, chunk_size=10_000)
    big = torch.from_numpy(_blobs(n=2500, d=7, k=5)[0]).double()  # > 1024 rows: blocks on 2 threads
    labels_w, d_w = assign_nearest(big, c, n_workers=2)
    ref_w = torch.cdist(big, c).pow(2)
    assert torch.equal(labels_w, ref_w.argmin(1))
    torch.testing.assert_close(d_w, ref_w.min(1).values, rtol=1e-9, atol=1e-9)
    ref = torch.cdist(x, c).pow(2)
    assert torch.equal(labels_a, labels_b) and torch.equal(labels_a, ref.argmin(1))
    torch.testing.assert_close(d_a, ref.min(1).values, rtol=1e-9, atol=1e-9)
    p = Problem(features=x.numpy(), n_clusters=5)
    assert np.array_equal(_run(p, chunk_size=13).labels, _run(p, chunk_size=4096).labels)


def test_result_types_determinism_and_small_problem():
    x = np.random.default_rng(0).normal(size=(60, 3))
    p = Problem(features=x, n_clusters=4)
    a, b = _run(p, seed=7), _run(p, seed=7)
    assert a.soft is None and a.labels.dtype == np.int64 and a.labels.shape == (60,)
    assert ((a.labels >= 0) & (a.labels < 4)).all()
    assert a.extras["centroids"].dtype == np.float64
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.objective == b.objective
    assert a.solver == "kmeans"
    t = Problem(features=torch.from_numpy(x).float(), n_clusters=4)
    r = _run(t, seed=7)
    assert isinstance(r.labels, torch.Tensor) and r.labels.dtype == torch.int64
    assert isinstance(r.extras["centroids"], torch.Tensor) and r.extras["centroids"].dtype == torch.float32
    # registered under its name, and reachable through solve()
    assert "kmeans" in assignsolve.list_solvers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        s = assignsolve.solve(p, "kmeans", seed=7)
    np.testing.assert_array_equal(s.labels, a.labels)


def test_kmeans_plusplus_and_n_init():
    x, y = _blobs(n=1500, d=5, k=15, std=0.6, seed=8)
    p = Problem(features=x, n_clusters=15)
    ours_pp, ours_rand, sk_pp = [], [], []
    for seed in range(4):
        r = _run(p, init="kmeans++", max_iter=50, seed=seed)
        assert r.extras["init"] == "kmeans++"
        ours_pp.append(r.objective * len(x))
        ours_rand.append(_run(p, init="random", max_iter=50, seed=seed).objective * len(x))
        sk_pp.append(SkKMeans(n_clusters=15, n_init=1, random_state=seed).fit(x).inertia_)
    # Greedy k-means++ matches scikit-learn's (same greedy variant) and beats random seeding.
    assert np.mean(ours_pp) <= 1.05 * np.mean(sk_pp)
    assert np.mean(ours_pp) < 0.5 * np.mean(ours_rand)
    one = _run(p, init="random", seed=0, max_iter=50)
    five = _run(p, init="random", seed=0, max_iter=50, n_init=5)
    assert five.objective <= one.objective  # restart 0 is the n_init=1 run
    # Greedy seeding on well-separated blobs puts one seed in every blob.
    c = init_centroids(torch.from_numpy(x), 15, "kmeans++", torch.Generator().manual_seed(0)).numpy()
    nearest = ((c[:, None] - x[None]) ** 2).sum(-1).argmin(1)
    assert len(np.unique(y[nearest])) == 15


def test_not_converged_is_reported():
    x, _ = _blobs(n=600, d=4, k=6, std=4.0)
    p = Problem(features=x, n_clusters=6)
    with pytest.warns(NotConvergedWarning):
        r = KMeans(max_iter=1, tol=0.0)(p)
    assert not r.converged and r.n_iters == 1 and len(r.errors) == 2
    r = _run(p, max_iter=500, tol=1e-3)
    assert r.converged and r.n_iters < 500
    rel = abs(r.errors[-2] - r.errors[-1]) / r.errors[-1]
    assert rel <= 1e-3 or r.errors[-2] == r.errors[-1]


# ----------------------------------------------------------------------------- errors
def test_clear_errors():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(InvalidProblemError, match=r"expected N >= K, found N = 5 samples for K = 8"):
        KMeans()(Problem(features=x, n_clusters=8))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidProblemError, match=r"features: expected finite values, found 1 NaN"):
        KMeans()(Problem(features=bad, n_clusters=2))
    with pytest.raises(InvalidProblemError, match=r"expected features \[N, D\], found none"):
        KMeans()(Problem(scores=x))
    with pytest.raises(InvalidProblemError, match=r"pca_dim: expected an int in \[1, D = 3\].*found 256"):
        KMeans(preprocess=True)(Problem(features=x, n_clusters=2))
    with pytest.raises(ValueError, match=r"metric: expected one of \('l2', 'cosine'\), found 'dot'"):
        KMeans(metric="dot")
    with pytest.raises(ValueError, match=r"init: expected one of .*found 'k-means\+\+'"):
        KMeans(init="k-means++")
    with pytest.raises(ValueError, match=r"chunk_size: expected an int >= 1, found 0"):
        KMeans(chunk_size=0)
    with pytest.raises(ValueError, match=r"tol: expected a finite float >= 0, found -1"):
        KMeans(tol=-1)


# ----------------------------------------------------------------------------- sampler
def _imbalanced_labels():
    sizes = {0: 1000, 2: 300, 3: 50, 7: 8, 9: 2}  # labels 1, 4, 5, 6, 8 are empty
    labels = np.concatenate([np.full(n, lab) for lab, n in sizes.items()])
    return np.random.default_rng(0).permutation(labels), sizes


def test_sampler_is_uniform_over_labels_and_within_labels():
    labels, sizes = _imbalanced_labels()
    sampler = UniformLabelSampler(labels, num_samples=2000, seed=0)
    assert len(sampler) == 2000
    epochs = [np.fromiter(iter(sampler), dtype=np.int64) for _ in range(30)]
    assert all(len(e) == 2000 for e in epochs)
    drawn = np.concatenate(epochs)
    present = sorted(sizes)
    freq = np.array([(labels[drawn] == lab).sum() for lab in present])
    expected = len(drawn) / len(present)
    chi2 = ((freq - expected) ** 2 / expected).sum()
    bound = stats.chi2.ppf(0.999, df=len(present) - 1)
    assert chi2 < bound
    # The bound discriminates: plain uniform sampling over the dataset fails it.
    naive = np.random.default_rng(0).integers(0, len(labels), size=len(drawn))
    naive_freq = np.array([(labels[naive] == lab).sum() for lab in present])
    assert ((naive_freq - expected) ** 2 / expected).sum() > 100 * bound
    # Within a label every member is equally likely (label 3: 50 members, drawn with replacement
    # across epochs; label 0: 1000 members, without replacement inside an epoch).
    for lab in (3, 0):
        members = np.flatnonzero(labels == lab)
        counts = np.array([(drawn == i).sum() for i in members])
        exp = counts.sum() / len(members)
        stat = ((counts - exp) ** 2 / exp).sum()
        assert stat < stats.chi2.ppf(0.999, df=len(members) - 1)
    # No index of a label repeats inside one epoch when the label is big enough.
    e0 = epochs[0]
    big = e0[labels[e0] == 0]
    assert len(np.unique(big)) == len(big)


def test_sampler_reproducible_and_validates():
    labels, _ = _imbalanced_labels()
    a = list(UniformLabelSampler(labels, 500, seed=3))
    b = list(UniformLabelSampler(torch.from_numpy(labels), 500, seed=3))
    assert a == b
    s = UniformLabelSampler(labels, 500, seed=3)
    assert list(s) != list(s)  # successive epochs differ
    idx = uniform_label_indices(torch.from_numpy(labels), 37, torch.Generator().manual_seed(0))
    assert idx.shape == (37,) and idx.dtype == torch.int64 and int(idx.max()) < len(labels)
    with pytest.raises(ValueError, match=r"labels: expected an integer dtype, found torch.float64"):
        UniformLabelSampler(np.zeros(4))
    with pytest.raises(ValueError, match=r"labels: expected non-negative integers, found minimum -1"):
        UniformLabelSampler(np.array([0, -1]))
    with pytest.raises(ValueError, match=r"num_samples: expected an int >= 1, found 0"):
        UniformLabelSampler(np.array([0, 1]), 0)
    loader = torch.utils.data.DataLoader(torch.arange(len(labels)), batch_size=100,
                                         sampler=UniformLabelSampler(labels, 300, seed=0))
    assert sum(len(batch) for batch in loader) == 300
