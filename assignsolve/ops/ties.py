"""Hard labels from soft assignments when rows tie: break ties toward the emptier cluster.

``soft.argmax(1)`` sends every tied row to the lowest tied index. When many rows tie (identical
rows: a Sinkhorn plan then has every row equal to ``b``, so with uniform ``b`` every entry ties)
that puts every sample in cluster 0 although the plan itself is perfectly balanced.
:func:`balanced_argmax` keeps the argmax of untied rows and gives each tied row, in index
order, to the tied cluster furthest below its target count ``N b_k / sum(b)``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["balanced_argmax"]


@torch.no_grad()
def balanced_argmax(soft: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    r"""Labels ``y_i \in \arg\max_k soft_{ik}`` with ties broken toward the emptiest cluster.

    Parameters
    ----------
    soft : Tensor [N, K]
        Non-negative soft assignment.
    b : Tensor [K]
        Target cluster masses (any positive total); target counts are ``N b / sum(b)``.
    rtol : float
        Entries within ``rtol * max_k soft_ik`` of a row's maximum count as tied.

    Returns
    -------
    Tensor [N] int64 on ``soft``'s device. Equal to ``soft.argmax(1)`` on rows without ties.
    """
    labels = soft.argmax(dim=1)
    peak = soft.max(dim=1, keepdim=True).values
    tied = soft >= peak - rtol * peak.abs()
    multi = tied.sum(dim=1) > 1
    if not bool(multi.any()):
        return labels
    n, k = soft.shape
    bb = b.detach().double().cpu()
    target = (n * bb / bb.sum()).numpy()
    counts = np.bincount(labels[~multi].cpu().numpy(), minlength=k).astype(np.float64)
    rows = multi.nonzero().flatten().cpu().numpy()
    masks = tied[multi].cpu().numpy()
    out = labels.cpu().numpy().copy()
    for i, mask in zip(rows, masks):
        room = np.where(mask, target - counts, -np.inf)
        j = int(np.argmax(room))  # first of the emptiest tied clusters
        out[i] = j
        counts[j] += 1.0
    return torch.from_numpy(out).to(soft.device)
