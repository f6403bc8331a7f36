"""Size statistics of a labelling or a plan: balance (normalised entropy) and marginal error."""

from __future__ import annotations

import math

import torch

__all__ = ["balance", "marginal_error"]


def marginal_error(q: torch.Tensor) -> float:
    r"""L1 distance of the plan's cluster marginal to uniform: :math:`\sum_k |\frac1N\sum_i q_{ik} - \frac1K|`.

    Rows of ``q`` sum to one, so the row marginal is exact and this is the plan's whole marginal
    violation of the balanced transport polytope (0 for a perfectly balanced plan, at most
    :math:`2 (1 - 1/K)`).

    Parameters
    ----------
    q : Tensor [N, K]
        Soft assignment or one-hot labels.
    """
    n, k = q.shape
    return float((q.double().sum(0) / n - 1.0 / k).abs().sum())


def balance(labels: torch.Tensor, k: int) -> float:
    """Normalised entropy of the label histogram: 1 = perfectly balanced, 0 = one cluster."""
    if k < 2 or labels.numel() == 0:
        return 1.0
    p = torch.bincount(labels.detach().flatten().cpu(), minlength=k).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum() / math.log(k))
