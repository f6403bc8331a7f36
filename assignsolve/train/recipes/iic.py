"""IIC (Ji et al., ICCV 2019): mutual information of two views' cluster heads.

Main + over-clustering heads with several sub-heads; the read-out (pseudo-labels, head
accuracy) uses the main sub-head with the lowest training loss in the last epoch, as the
reference's ``select_sub_head_on_loss`` (``xu-ji/IIC`` ``cluster_eval.get_subhead_using_loss``;
no labels needed), among the sub-heads whose argmax uses the most clusters on the whole
training set at the end of that epoch (:func:`read_out_head`): a sub-head that merges two digits
into one cluster can be the most consistent under augmentation, and so the lowest in loss,
while leaving a cluster empty.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ...heads import ClusterHeads
from ...mi import iic_head_losses, iic_multihead_loss
from ..rng import _kept_rng
from .base import LossReadOut, Recipe


class IICRecipe(LossReadOut, Recipe):
    """Ji et al., ICCV 2019: maximise I(z, z') of two views; main + over-clustering sub-heads."""

    name: ClassVar[str] = "iic"
    two_views: ClassVar[bool] = True
    #: the authors' five sub-heads (``--num_sub_heads 5``)
    default_heads: ClassVar[int] = 5
    #: input BN only on globally pooled (all-positive, one dominant direction) features
    default_head_bn: ClassVar[str] = "pooled"
    #: without it some seeds cluster MNIST by stroke width; at 0.5 (the default until 2026-12-07)
    #: others merge digits: 5,000 MNIST digits, seeds 0-4 / held out, seeds 0-4 (docs/training.md):
    #: 0.958 / 0.959 / 0.955 / 0.957 / 0.957 / 0.958 / 0.950 / 0.955 / 0.961 / 0.872 at 0.3,
    #: 0.961 / 0.576 / 0.961 / 0.960 / 0.958 / 0.960 / 0.959 / 0.952 / 0.959 / 0.956 at 0.5, both
    #: with the lowest-loss read-out alone (with :func:`read_out_head` the 0.872 is 0.925)
    default_stroke_jitter: ClassVar[float] = 0.3

    def build_heads(self):
        heads = ClusterHeads(self.feat_dim, self.k, self.cfg.n_heads_used,
                             overcluster=self.cfg.overcluster or 5 * self.k, input_bn=self.head_input_bn())
        # PyTorch's default Linear init, as IIC's heads: with DeepCluster's N(0, 0.01^2) init every
        # softmax starts uniform, where the MI and its gradient vanish (the run stalls collapsed).
        for layer in [*heads.heads, *heads.overcluster_heads]:
            layer.reset_parameters()
        return {"cluster": heads}

    def loss(self, ctx, out1, out2, idx):
        p = lambda zs: [torch.softmax(z.float(), dim=1) for z in zs]  # noqa: E731
        per_head = iic_head_losses(p(out1["logits"]), p(out2["logits"]), lamb=self.cfg.iic_lamb)
        over = iic_multihead_loss(p(out1["over"]), p(out2["over"]), lamb=self.cfg.iic_lamb)
        self.note_head_losses(per_head)
        return per_head.mean() + over, self.head_labels(out1)

    def end_epoch(self, ctx, epoch):
        """The read-out for the next evaluation: :func:`read_out_head` on every training sample's
        eval-mode outputs and this epoch's losses (summed over the DDP ranks, so all choose alike)."""
        losses = self.epoch_head_losses()
        if losses is None:
            return
        with _kept_rng(self.device):  # as evaluation: what training draws next is unchanged
            logits = ctx.all_outputs()["logits"]
        self.best_head = read_out_head(logits, losses)


def read_out_head(logits: list[torch.Tensor], losses: list[float]) -> int:
    """The sub-head to read out: of those whose argmax over all samples (``logits[h]`` [N, K])
    uses the most clusters, the one with the lowest training loss ``losses[h]``. On 5,000 unseen
    MNIST digits (seed 4) the lowest-loss sub-head used 9 of 10 clusters (accuracy 0.872) beside
    four that used 10 (0.832 to 0.926; the lowest-loss of them 0.925)."""
    used = [int(torch.unique(z.argmax(1)).numel()) for z in logits]
    most = [h for h, u in enumerate(used) if u == max(used)]
    return min(most, key=lambda h: losses[h])
