"""DeepCluster's PCA-whitening is scale-free (issue 9): features x 0.01 give the same clustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from assignsolve.core.errors import InvalidProblemError
from assignsolve.ops.pca import fit_pca, preprocess_features


def _features(seed: int = 0) -> np.ndarray:
    """4 well separated blobs in 3 directions, plus 29 low-variance directions (eigenvalues down to 1e-6)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 3)) * 3.0
    x = np.concatenate([centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 3)) * 0.3,
                        rng.normal(size=(400, 29)) * np.logspace(-1, -3, 29)], axis=1)
    return x @ np.linalg.qr(rng.normal(size=(32, 32)))[0]  # rotate: no axis-aligned shortcut


def numpy_whiten(x: np.ndarray, d: int, rel: float = 1e-5) -> np.ndarray:
    """Hand reference: eigh of the biased covariance, guard rel * largest eigenvalue, L2 rows."""
    xc = x - x.mean(0)
    lam, u = np.linalg.eigh(xc.T @ xc / len(x))
    lam, u = lam[::-1][:d].clip(0), u[:, ::-1][:, :d]
    z = xc @ u / np.sqrt(lam + rel * lam[0])
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _sign_fixed(z: np.ndarray) -> np.ndarray:  # eigenvectors are defined up to sign
    return z * np.sign(z[np.abs(z).argmax(0), np.arange(z.shape[1])])


@pytest.mark.parametrize("d", [8, 32])
def test_whitening_matches_numpy_reference_and_ignores_scale(d):
    x = _features()
    ref = numpy_whiten(x, d)
    for scale in (1.0, 0.01, 100.0):
        ours = preprocess_features(torch.from_numpy(x * scale), pca_dim=d).numpy()
        np.testing.assert_allclose(_sign_fixed(ours), _sign_fixed(ref), atol=1e-6)


def test_features_times_001_give_the_same_clustering():
    x = _features(1)
    labels = []
    for scale in (1.0, 0.01):
        z = preprocess_features(torch.from_numpy(x * scale), pca_dim=32).numpy()
        labels.append(KMeans(4, n_init=4, random_state=0).fit_predict(z))
    np.testing.assert_array_equal(labels[0], labels[1])
    # an absolute 1e-5 (the old guard) whitens the 0.01-scaled features differently:
    xs = (x * 0.01) - (x * 0.01).mean(0)
    lam, u = np.linalg.eigh(xs.T @ xs / len(xs))
    old = xs @ u / np.sqrt(lam.clip(0) + 1e-5)
    new = numpy_whiten(x * 0.01, 32)
    old = old / np.linalg.norm(old, axis=1, keepdims=True)
    assert np.abs(np.abs(old @ old.T) - np.abs(new @ new.T)).max() > 0.1


def test_zero_guard_refuses_zero_variance_and_constant_features_map_to_zero():
    x = torch.from_numpy(np.c_[_features()[:, :4], np.zeros((400, 2))])
    with pytest.raises(InvalidProblemError, match="zero variance"):
        fit_pca(x, 6, eps=0.0)
    mean, proj = fit_pca(torch.ones(10, 3), 2)
    assert torch.isfinite(proj).all()
    assert torch.count_nonzero((torch.ones(10, 3) - mean) @ proj) == 0
