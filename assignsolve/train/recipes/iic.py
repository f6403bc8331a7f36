"""IIC (Ji et al., ICCV 2019): mutual information of two views' cluster heads."""

from __future__ import annotations

from typing import ClassVar


import torch

from ...core.problem import Problem
from ...heads import ClusterHeads
from .base import Recipe
from ...mi import iic_multihead_loss


class IICRecipe(Recipe):
    """Ji et al., ICCV 2019: maximise I(z, z') of two views; main + over-clustering sub-heads."""

    name: ClassVar[str] = "iic"
    two_views: ClassVar[bool] = True

    def build_heads(self):
        heads = ClusterHeads(self.feat_dim, self.k, self.cfg.n_heads or 5,
                             overcluster=self.cfg.overcluster or 5 * self.k, input_bn=True)
        # PyTorch's default Linear init, as IIC's heads: with DeepCluster's N(0, 0.01^2) init every
        # softmax starts uniform, where the MI and its gradient vanish (the run stalls collapsed).
        for layer in [*heads.heads, *heads.overcluster_heads]:
            layer.reset_parameters()
        return {"cluster": heads}

    def loss(self, ctx, out1, out2, idx):
        p = lambda zs: [torch.softmax(z.float(), dim=1) for z in zs]  # noqa: E731
        main = iic_multihead_loss(p(out1["logits"]), p(out2["logits"]), lamb=self.cfg.iic_lamb)
        over = iic_multihead_loss(p(out1["over"]), p(out2["over"]), lamb=self.cfg.iic_lamb)
        return main + over, out1["logits"][0].argmax(1)

    def eval_problem(self, outputs):
        return Problem.from_logits(outputs["logits"][0].float())

    def head_labels(self, outputs):
        return outputs["logits"][0].argmax(1)
