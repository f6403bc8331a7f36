r"""Heads that sit on an encoder's features: projection, cluster (sub-)heads, prototypes.

- :class:`ProjectionHead` -- MLP :math:`g(h) = W_2\,\mathrm{relu}(\mathrm{BN}(W_1 h))`, optionally
  L2-normalised (SwAV's projection head, Caron et al., NeurIPS 2020).
- :class:`ClusterHeads` -- several linear classifiers ("sub-heads") over the same features,
  one logit vector per head (SeLa, Asano et al., ICLR 2020; IIC, Ji et al., ICCV 2019), plus an
  optional IIC over-clustering head with its own sub-heads; ``reset_parameters()`` draws a fresh
  top layer as DeepCluster does every epoch (Caron et al., ECCV 2018: weights N(0, 0.01^2), bias 0).
- :class:`Prototypes` -- SwAV's prototype matrix :math:`C \in \mathbb{R}^{K \times d}` (linear,
  no bias) whose rows are re-normalised to unit length each step with :meth:`Prototypes.normalize_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClusterHeads", "ProjectionHead", "Prototypes"]


def _positive_int(value, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{who}: expected {name} a positive int, found {value!r}")
    return value


def _check_features(x: torch.Tensor, in_dim: int, who: str) -> None:
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{who}: expected features [B, {in_dim}], found shape {list(x.shape)}")


class ProjectionHead(nn.Module):
    r"""MLP projection :math:`z = g(h) = W_2\,\mathrm{relu}(\mathrm{BN}(W_1 h + b_1)) + b_2`, optionally :math:`z / \|z\|_2`.

    SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments", NeurIPS 2020) projects the 2048-d ResNet features with a 2048 -> 128 MLP
    and L2-normalises the output before the prototypes.

    Parameters
    ----------
    in_dim : int
        d_in, width of the encoder features [B, d_in].
    hidden_dim : int
        Width of the hidden layer (0: a single linear layer, no BN/ReLU).
    out_dim : int
        d_out, width of the projection [B, d_out].
    normalize : bool
        L2-normalise each output row (default True).
    out_bn : bool
        Batch-normalise the output before the L2 normalisation, as CoKe's projection (Qian et
        al., CVPR 2022, ``coke/builder_single_view.py``): centred, unit-variance coordinates
        spread the unit rows over the sphere, so cosine similarities to cluster centres vary
        from the first step instead of all rows sitting in one narrow cone.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, normalize: bool = True,
                 out_bn: bool = False):
        super().__init__()
        self.in_dim = _positive_int(in_dim, "in_dim", "ProjectionHead")
        self.out_dim = _positive_int(out_dim, "out_dim", "ProjectionHead")
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 0:
            raise ValueError(f"ProjectionHead: expected hidden_dim a non-negative int, found {hidden_dim!r}")
        self.hidden_dim = hidden_dim
        self.normalize = bool(normalize)
        self.out_bn = bool(out_bn)
        if hidden_dim == 0 and not out_bn:
            self.net = nn.Linear(in_dim, out_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)] if hidden_dim == 0 else [
                nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, out_dim)]
            self.net = nn.Sequential(*layers, *([nn.BatchNorm1d(out_dim)] if out_bn else []))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> [B, out_dim] (unit rows when ``normalize``)."""
        _check_features(h, self.in_dim, "ProjectionHead")
        z = self.net(h)
        return F.normalize(z, dim=1) if self.normalize else z


class ClusterHeads(nn.Module):
    r"""Sub-heads :math:`s^{(j)} = W^{(j)} h + b^{(j)} \in \mathbb{R}^{B \times K}`, :math:`j = 1..n_\text{heads}`.

    SeLa (Asano et al., "Self-labelling via simultaneous clustering and representation
    learning", ICLR 2020) and IIC (Ji et al., "Invariant Information Clustering", ICCV 2019)
    train several linear heads on one trunk; each gets its own pseudo-labels (SeLa) or its
    own MI loss (IIC). IIC adds an over-clustering head with ``overcluster`` > K clusters and
    its own sub-heads, trained alternately with the main head. The heads return logits;
    apply ``softmax`` where probabilities are needed.

    Parameters
    ----------
    in_dim : int
        d, width of the features [B, d].
    n_clusters : int
        K, clusters of each main head.
    n_heads : int
        Number of sub-heads (main heads, and over-clustering heads when present).
    overcluster : int or None
        K' clusters of the over-clustering sub-heads (IIC uses K' = 70 for CIFAR-10); None: none.
    input_bn : bool
        Standardise the features with a non-affine ``BatchNorm1d`` before every head (the
        recipes' ``--head-bn``: IIC's default on globally pooled features, the exact LP's under
        SeLa from 2026-12-04 to 2026-12-07). Globally pooled post-ReLU features are all positive
        and share one dominant common direction, so a linear head on them first splits the data
        along that direction (how much ink an 8x8 digit has), a clustering that survives
        augmentation and that the MI objective then locks in; centred inputs let it find the
        classes (measured on digits: IIC pseudo-label NMI after 30 epochs 0.40 -> 0.59;
        docs/training.md). IIC's own heads read un-pooled feature maps, where the common
        direction does not dominate.

    Attributes
    ----------
    heads : nn.ModuleList
        ``n_heads`` Linear(d, K).
    overcluster_heads : nn.ModuleList
        ``n_heads`` Linear(d, K') when ``overcluster`` is given, else empty.
    input_norm : nn.Module
        ``BatchNorm1d(d, affine=False)`` with ``input_bn``, else the identity.
    """

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 1, overcluster: int | None = None,
                 input_bn: bool = False):
        super().__init__()
        self.in_dim = _positive_int(in_dim, "in_dim", "ClusterHeads")
        self.n_clusters = _positive_int(n_clusters, "n_clusters", "ClusterHeads")
        self.n_heads = _positive_int(n_heads, "n_heads", "ClusterHeads")
        self.overcluster = None if overcluster is None else _positive_int(overcluster, "overcluster", "ClusterHeads")
        self.heads = nn.ModuleList(nn.Linear(in_dim, n_clusters) for _ in range(n_heads))
        self.overcluster_heads = nn.ModuleList(
            nn.Linear(in_dim, overcluster) for _ in range(n_heads if overcluster is not None else 0))
        self.input_norm = nn.BatchNorm1d(in_dim, affine=False) if input_bn else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh top layers: weights ~ N(0, 0.01^2), bias 0 (DeepCluster's per-epoch re-init)."""
        for layer in [*self.heads, *self.overcluster_heads]:
            nn.init.normal_(layer.weight, mean=0.0, std=0.01)
            nn.init.zeros_(layer.bias)

    def _head_input(self, h: torch.Tensor) -> torch.Tensor:
        _check_features(h, self.in_dim, "ClusterHeads")
        return self.input_norm(h)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        """[B, in_dim] -> list of ``n_heads`` logits [B, n_clusters]."""
        h = self._head_input(h)
        return [head(h) for head in self.heads]

    def overcluster_logits(self, h: torch.Tensor) -> list[torch.Tensor]:
        """[B, in_dim] -> list of ``n_heads`` logits [B, overcluster] (empty when no over-clustering)."""
        h = self._head_input(h)
        return [head(h) for head in self.overcluster_heads]

    def all_logits(self, h: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Main and over-clustering logits from one pass of the input normalisation (one update of
        its running statistics per training step, however many heads read it)."""
        h = self._head_input(h)
        return [head(h) for head in self.heads], [head(h) for head in self.overcluster_heads]


class Prototypes(nn.Module):
    r"""SwAV prototypes: scores :math:`S = Z C^\top` with unit rows :math:`\|c_k\|_2 = 1`.

    Caron et al., NeurIPS 2020: a bias-free linear layer whose weight rows are re-normalised
    before every forward pass of a training step (call :meth:`normalize_`), so with unit
    features the scores are cosine similarities in [-1, 1].

    Parameters
    ----------
    in_dim : int
        d, width of the (normalised) projections [B, d].
    n_clusters : int
        K, number of prototypes.
    """

    def __init__(self, in_dim: int, n_clusters: int):
        super().__init__()
        self.in_dim = _positive_int(in_dim, "in_dim", "Prototypes")
        self.n_clusters = _positive_int(n_clusters, "n_clusters", "Prototypes")
        self.linear = nn.Linear(in_dim, n_clusters, bias=False)
        self.normalize_()

    @property
    def weight(self) -> torch.Tensor:
        """The prototype matrix C [K, d]."""
        return self.linear.weight

    @torch.no_grad()
    def normalize_(self) -> Prototypes:
        """Rescale every prototype row to unit L2 norm, in place (no gradient)."""
        self.linear.weight.copy_(F.normalize(self.linear.weight, dim=1))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> scores [B, n_clusters]."""
        _check_features(z, self.in_dim, "Prototypes")
        return self.linear(z)
