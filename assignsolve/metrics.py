"""Clustering and representation metrics: NMI, ARI, Hungarian accuracy, kNN accuracy.

NMI and ARI delegate to scikit-learn; Hungarian accuracy uses
:func:`scipy.optimize.linear_sum_assignment` on the contingency table (the standard
unsupervised-clustering accuracy of IIC/SCAN), so predicted and true label sets may
differ in size.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

__all__ = ["nmi", "ari", "hungarian_accuracy", "knn_accuracy", "clustering_scores", "size_stats"]


def _labels(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D label array, found shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels, found dtype {arr.dtype}")
    return arr.astype(np.int64)


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _labels(pred, "pred"), _labels(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred/true: expected equal lengths, found {p.shape[0]} and {t.shape[0]}")
    return p, t


def nmi(pred, true) -> float:
    """Normalised mutual information (arithmetic normalisation, sklearn's default)."""
    p, t = _pair(pred, true)
    return float(skm.normalized_mutual_info_score(t, p))


def ari(pred, true) -> float:
    """Adjusted Rand index."""
    p, t = _pair(pred, true)
    return float(skm.adjusted_rand_score(t, p))


def hungarian_accuracy(pred, true) -> float:
    """Accuracy under the best one-to-one map of predicted clusters to classes.

    ``max_perm (1/N) sum_i [perm(pred_i) == true_i]``; with more clusters than classes the
    unmatched clusters count as errors.
    """
    p, t = _pair(pred, true)
    _, p_idx = np.unique(p, return_inverse=True)
    _, t_idx = np.unique(t, return_inverse=True)
    table = np.zeros((p_idx.max() + 1, t_idx.max() + 1), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(p))


@torch.no_grad()
def knn_accuracy(
    features, labels, k: int = 20, temperature: float = 0.07, chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Leave-one-out weighted kNN accuracy on L2-normalised features (Wu et al. 2018 protocol).

    Each sample votes with its ``k`` nearest other samples (cosine similarity), weights
    ``exp(sim / temperature)``; the similarities are held 32 MiB at a time
    (:func:`assignsolve.evaluation.knn.top_k_similar`).
    """
    x = torch.as_tensor(features).float()
    y = torch.as_tensor(_labels(labels, "labels"))
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features: expected shape [{y.shape[0]}, D], found {tuple(x.shape)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"knn_accuracy: expected at least 2 samples, found {n}")
    dev = torch.device(device) if device is not None else x.device
    x = torch.nn.functional.normalize(x.to(dev), dim=1)
    y = y.to(dev)
    k = min(k, n - 1)
    n_classes = int(y.max()) + 1
    from .evaluation.knn import top_k_similar  # similarities in 32 MiB blocks, never N x N

    correct = 0
    for start in range(0, n, chunk_size):
        top, idx = top_k_similar(x[start:start + chunk_size], x, k, self_offset=start)  # leave one out
        votes = torch.zeros(top.shape[0], n_classes, device=dev)
        votes.scatter_add_(1, y[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == y[start:start + chunk_size]).sum())
    return correct / n


def size_stats(pred, n_clusters: int) -> dict[str, float]:
    """Cluster-size min/max and entropy (nats; ``ln K`` when balanced)."""
    p = _labels(pred, "pred")
    sizes = np.bincount(p, minlength=n_clusters)
    frac = sizes / max(len(p), 1)
    nz = frac[frac > 0]
    return {
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "size_entropy": float(-(nz * np.log(nz)).sum()),
        "n_empty": int((sizes == 0).sum()),
    }


def clustering_scores(pred, true) -> dict[str, float]:
    """NMI, ARI and Hungarian accuracy in one dict."""
    return {"nmi": nmi(pred, true), "ari": ari(pred, true), "acc": hungarian_accuracy(pred, true)}
