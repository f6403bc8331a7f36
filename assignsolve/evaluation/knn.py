"""Weighted kNN classification of held-out features (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", section 3.4; the protocol of DINO's
``eval_knn.py`` and solo-learn's ``WeightedKNNClassifier``).

Features are L2-normalised; each query votes for the labels of its ``k`` most cosine-similar
bank samples with weight ``exp(sim / T)``; the class with the largest total wins.

The neighbours come from :func:`top_k_similar`, which never holds more than
:data:`BLOCK_BYTES` (32 MiB) of similarities: blocks of queries against blocks of the bank, the
running top ``k`` merged block by block, so a bank of a million samples needs no N x N matrix.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .. import InvalidProblemError

__all__ = ["BLOCK_BYTES", "top_k_similar", "weighted_knn", "weighted_knn_predict"]

#: the most bytes of float32 similarities :func:`top_k_similar` holds at once
BLOCK_BYTES = 32 << 20


def _block_shape(n: int, k: int, max_bytes: int) -> tuple[int, int]:
    """(query rows, bank columns) of one block: rows x columns x 4 bytes <= ``max_bytes``
    (at least 64 rows, the whole bank as one block when it fits)."""
    budget = max(max_bytes // 4, 1)
    cols = max(min(n, budget // 64), min(k, n))
    return max(1, budget // cols), cols


@torch.no_grad()
def top_k_similar(queries: torch.Tensor, bank: torch.Tensor, k: int, self_offset: int | None = None,
                  max_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` [M, k], descending: the ``k`` largest ``queries @ bank.T`` of each row.

    Computed block by block (at most ``max_bytes``, default :data:`BLOCK_BYTES`, of similarities
    at a time). ``self_offset``:
    query row ``i`` is bank row ``self_offset + i``, which is skipped (leave-one-out).
    """
    n = bank.shape[0]
    if not 1 <= k <= n:
        raise InvalidProblemError(f"top_k_similar: expected 1 <= k <= {n} bank rows, found k={k}")
    rows, cols = _block_shape(n, k, BLOCK_BYTES if max_bytes is None else max_bytes)
    values, indices = [], []
    for r0 in range(0, queries.shape[0], rows):
        q = queries[r0:r0 + rows]
        best_v = best_i = None
        for c0 in range(0, n, cols):
            sim = q @ bank[c0:c0 + cols].T
            if self_offset is not None:  # the query's own bank row, if it is in this block
                own = torch.arange(q.shape[0], device=q.device) + (self_offset + r0 - c0)
                inside = (own >= 0) & (own < sim.shape[1])
                sim[inside.nonzero().flatten(), own[inside]] = -float("inf")
            v, i = sim.topk(min(k, sim.shape[1]), dim=1)
            i += c0
            if best_v is not None:
                v, pick = torch.cat([best_v, v], 1).topk(k, dim=1)
                i = torch.cat([best_i, i], 1).gather(1, pick)
            best_v, best_i = v, i
        values.append(best_v)
        indices.append(best_i)
    return torch.cat(values), torch.cat(indices)


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
    """Predicted labels [M] of ``queries`` [M, D] from ``bank`` [N, D] with ``bank_labels`` [N]
    (``chunk_size`` queries voted at a time; their similarities in blocks of :data:`BLOCK_BYTES`)."""
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
        top, idx = top_k_similar(xq[start:start + chunk_size], xb, k)
        votes = torch.zeros(top.shape[0], n_classes, device=dev)
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
