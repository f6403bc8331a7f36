"""AMDIM only (Bachman et al., NeurIPS 2019): multiscale NCE; the solver labels for evaluation."""

from __future__ import annotations

from typing import ClassVar

from ...core.problem import Problem
from ...ops.centroids import init_centroids
from ...heads import ProjectionHead
from .base import Recipe
from ..rng import _epoch_generator


class AMDIMOnly(Recipe):
    """Bachman et al., NeurIPS 2019: only the multiscale NCE; the solver labels for evaluation."""

    name: ClassVar[str] = "amdim"
    default_amdim_weight: ClassVar[float] = 1.0  # the AMDIM term is the whole loss
    find_unused_parameters: ClassVar[bool] = True
    two_views: ClassVar[bool] = True

    def build_heads(self):
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, self.cfg.proj_dim)}

    def loss(self, ctx, out1, out2, idx):
        return out1["feat"].new_zeros(()), None

    def eval_problem(self, outputs):
        z = outputs["z"].float()
        if self.assign.needs in ("features", "scores_or_features"):
            return Problem(features=z, n_clusters=self.k)
        g = _epoch_generator(self.cfg.seed, 0, salt=3)
        cent = init_centroids(z, self.k, "random", g)
        return Problem.from_features(z, cent, metric="cosine")
