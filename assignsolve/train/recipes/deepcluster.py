"""DeepCluster (Caron et al., ECCV 2018): PCA-whitened features -> solver -> fresh top layer."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.problem import Problem
from ...ops.centroids import init_centroids, update_centroids
from ...heads import ClusterHeads
from .base import RelabelRecipe, relabel_due
from ..rng import _epoch_generator
from ..config import deepcluster_pca_dim
from ...objectives import pseudo_label_loss


class DeepCluster(RelabelRecipe):
    """Caron et al., ECCV 2018: features -> PCA-whitening + L2 -> solver -> fresh top layer, CE.

    Feature solvers (k-means, CoKe, ...) get the preprocessed features; score solvers get cosine
    scores to centroids = the means of the previous epoch's clusters in the current space (K
    seeded random samples at the first epoch).
    """

    name: ClassVar[str] = "deepcluster"
    default_optimizer: ClassVar[str] = "sgd"  # Caron et al. 2018, Sec. 4 (see train.config.DEFAULT_LR)

    def build_heads(self):
        return {"cluster": ClusterHeads(self.feat_dim, self.k, 1, input_bn=self.head_input_bn())}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.labels: torch.Tensor | None = None  # [N]
        self._order: torch.Tensor | None = None

    def _problem(self, feats: torch.Tensor, epoch: int) -> Problem:
        from ...ops.pca import preprocess_features

        n, width = feats.shape
        if self.cfg.pca_dim is not None:
            dim = min(self.cfg.pca_dim, width, n - 1)
        else:
            dim = deepcluster_pca_dim(width, self.k, n)
        x = preprocess_features(feats.float(), pca_dim=dim)
        if self.assign.needs in ("features", "scores_or_features"):
            return Problem(features=x, n_clusters=self.k)
        g = _epoch_generator(self.cfg.seed, epoch, salt=1)
        if self.labels is not None:  # the previous clusters' means; an empty one gets a random sample
            fallback = x[torch.randint(x.shape[0], (self.k,), generator=g).to(x.device)]
            cent, _ = update_centroids(x, self.labels.to(x.device), self.k, previous=fallback)
        else:
            cent = init_centroids(x, self.k, "random", g)
        return Problem.from_features(x, cent, metric="cosine")

    def start_epoch(self, ctx, epoch):
        from ...sampling import uniform_label_indices

        # DeepCluster's --reassign: at the start of an epoch that holds a re-labelling point
        if self.labels is None or relabel_due(epoch, epoch + 1, self.cfg.relabel_every_used):
            outs = ctx.all_outputs()
            self.labels = torch.as_tensor(self.assign(self._problem(outs["feat"], epoch)).labels).to(self.device)
            ctx.reset_head("cluster")  # fresh top layer with every new clustering, as DeepCluster
        self._order = uniform_label_indices(self.labels.cpu(), self.n, _epoch_generator(self.cfg.seed, epoch, 2))

    def order(self, epoch):
        return self._order

    def loss(self, ctx, out1, out2, idx):
        y = self.labels[idx.to(self.device)]
        return pseudo_label_loss(out1["logits"], y), y

    def eval_problem(self, outputs):
        return self._problem(outputs["feat"], -1)
