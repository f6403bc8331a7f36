"""Weighted kNN classification of held-out features (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", section 3.4; the protocol of DINO's
``eval_knn.py`` and solo-learn's ``WeightedKNNClassifier``).

Features are L2-normalised; each query votes for the labels of its ``k`` most cosine-similar
bank samples with weight ``exp(sim / T)``; the class with the largest total wins.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .. import InvalidProblemError

__all__ = ["weighted_knn", "weighted_knn_predict"]


def _features(x, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise InvalidProblemError(f"{name}: expected a non-empty [N, D] array, found shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise InvalidProblemError(f"{name}: expected finite values, found NaN/inf entries")
    return torch.nn.functional.normalize(t.to(device=device, dtype=torch.float32), dim=1)


def _targets(y, n: int, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if t.ndim != 1 or t.shape[0] != n:
        raise InvalidProblemError(f"{name}: expected {n} labels, found shape {tuple(t.shape)}")
    if torch.is_floating_point(t) or (t.numel() and int(t.min()) < 0):
        raise InvalidProblemError(f"{name}: expected non-negative integer labels")
    return t.to(device=device, dtype=torch.int64)


@torch.no_grad()
def weighted_knn_predict(
    bank, bank_labels, queries, k: int = 20, temperature: float = 0.07,
    chunk_size: int = 1024, device=None,
) -> torch.Tensor:
    """Predicted labels [M] of ``queries`` [M, D] from ``bank`` [N, D] with ``bank_labels`` [N]."""
    if k < 1 or temperature <= 0:
        raise InvalidProblemError(f"weighted kNN: expected k >= 1 and temperature > 0, found k={k}, T={temperature}")
    dev = torch.device(device) if device is not None else (
        bank.device if isinstance(bank, torch.Tensor) else torch.device("cpu"))
    xb = _features(bank, "bank features", dev)
    xq = _features(queries, "query features", dev)
    if xb.shape[1] != xq.shape[1]:
        raise InvalidProblemError(f"query features: expected dimension {xb.shape[1]}, found {xq.shape[1]}")
    yb = _targets(bank_labels, xb.shape[0], "bank labels", dev)
    k = min(k, xb.shape[0])
    n_classes = int(yb.max()) + 1
    out = []
    for start in range(0, xq.shape[0], chunk_size):
        sim = xq[start:start + chunk_size] @ xb.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], n_classes, device=dev)
        # subtracting the row max leaves the argmax unchanged and keeps exp finite
        weights = ((top - top[:, :1]) / temperature).exp()
        votes.scatter_add_(1, yb[idx], weights)
        out.append(votes.argmax(1))
    return torch.cat(out).cpu()


def weighted_knn(
    bank, bank_labels, queries, query_labels, ks: Iterable[int] = (20, 200),
    temperature: float = 0.07, device=None,
) -> dict[int, float]:
    """Top-1 accuracy of the weighted kNN classifier for each ``k`` in ``ks``: ``{k: acc}``."""
    yq = _targets(query_labels, len(queries), "query labels", "cpu")
    return {int(k): float((weighted_knn_predict(bank, bank_labels, queries, k, temperature,
                                                device=device) == yq).double().mean())
            for k in ks}
