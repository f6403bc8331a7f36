"""The recipe interface: what differs between the papers (heads, when the solver runs, the loss).

A recipe is a plugin: register its class with the ``register_recipes`` hook (see docs/plugins.md).
Every hook the loop calls is declared here with a default, so a recipe overrides only what it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import math

import torch
import torch.nn as nn

from ...core.problem import Problem
from ..rng import _epoch_generator

if TYPE_CHECKING:
    from ...ops.dist import Dist
    from ..assigner import Assigner
    from ..config import TrainConfig
    from ..context import Context


class Recipe:
    """What differs between the papers: heads, when the solver is called, and the loss."""

    #: the ``--method`` value (required)
    name: ClassVar[str] = ""
    #: the loss needs two augmented views per batch
    two_views: ClassVar[bool] = False
    #: optimiser when ``--optimizer`` is not given ("adam" or "sgd")
    default_optimizer: ClassVar[str] = "adam"
    #: learning-rate schedule when ``--lr-schedule`` is not given ("constant" or "cosine")
    default_lr_schedule: ClassVar[str] = "constant"
    #: ``--warmup`` when not given: linear learning-rate warm-up over this fraction of the run's
    #: epochs, rounded up to whole epochs (a number in [0, 1])
    default_warmup: ClassVar[float] = 0.0
    #: the paper's solver options, applied where the solver has the option (the solver's own
    #: ``recipe_options[name]``, then ``--solver-opt``, take precedence)
    solver_defaults: ClassVar[Mapping[str, Any]] = {}
    #: ``--temperature`` when not given (SwAV's swapped prediction, CoKe's classifier)
    default_temperature: ClassVar[float] = 0.1
    #: ``--n-heads`` when not given (recipes with several cluster heads or clusterings)
    default_heads: ClassVar[int] = 1
    #: ``--head-bn`` when not given: standardise the cluster heads' input "on", "pooled" (only
    #: when the encoder pools globally) or "off"
    default_head_bn: ClassVar[str] = "off"
    #: ``--stroke-jitter`` when not given and the views are 'grey' (digits of 16+ px): how far each
    #: augmented copy's strokes are thickened or thinned (:func:`assignsolve.greyviews.random_stroke`)
    default_stroke_jitter: ClassVar[float] = 0.0
    #: the default mini-batch is halved (not below 32) while an epoch would have fewer steps than
    #: this (``--batch-size`` not given; :func:`assignsolve.train.autoconfig.auto_batch_size`)
    min_epoch_steps: ClassVar[int] = 0
    #: ``--relabel-every`` when not given (recipes that re-label the whole dataset)
    default_relabel_every: ClassVar[float] = 1.0
    #: weight of the AMDIM term when ``--amdim-weight`` is not given (> 0 adds AMDIM's heads)
    default_amdim_weight: ClassVar[float] = 0.0
    #: DDP: some heads take no part in the loss (AMDIM-only)
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig, k: int, n: int, feat_dim: int, assigner: Assigner, d: Dist, device):
        self.cfg, self.k, self.n, self.feat_dim = cfg, k, n, feat_dim
        self.assign, self.dist, self.device = assigner, d, device
        #: the encoder's ``globally_pooled`` (set by the loop before :meth:`build_heads`)
        self.pooled_features = True

    def head_input_bn(self) -> bool:
        """Whether the cluster heads standardise their input (``--head-bn`` as used, and whether
        the encoder pools globally)."""
        mode = self.cfg.head_bn_used
        return mode == "on" or (mode == "pooled" and self.pooled_features)

    def build_heads(self) -> dict[str, nn.Module]:
        return {}

    def start_epoch(self, ctx: "Context", epoch: int) -> None:
        """Whole-dataset work before an epoch (SeLa, DeepCluster)."""

    def before_batch(self, ctx: "Context", epoch: int, step: int, n_steps: int) -> None:
        """Before step ``step`` of the epoch's ``n_steps`` (SeLa: re-labelling inside an epoch)."""

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order (all ranks identical; each takes its share)."""
        return torch.randperm(self.n, generator=_epoch_generator(self.cfg.seed, epoch))

    def loss(self, ctx: "Context", out1: dict, out2: dict | None, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, the batch's labels for the balance display)."""
        raise NotImplementedError

    def extra_views(self, v2: torch.Tensor) -> list[torch.Tensor]:
        """Extra views of the batch beyond the two (SwAV's multi-crop small crops); none by default."""
        return []

    def before_step(self, ctx: "Context") -> None:
        """After the backward pass, before the optimiser step (SwAV: frozen prototypes lose their grads)."""

    def after_step(self, ctx: "Context") -> None:
        """After each optimiser step (SwAV: renormalise the prototypes)."""

    def end_epoch(self, ctx: "Context", epoch: int) -> None:
        """After an epoch's batches (CoKe: this epoch's labels become the targets)."""

    def eval_problem(self, outputs: dict) -> Problem:
        """The problem the solver solves on the whole dataset at evaluation."""
        raise NotImplementedError

    def head_labels(self, outputs: dict) -> torch.Tensor | None:
        """The head's own labels at evaluation (None: the recipe has no classifier head)."""
        return None

    def readout_logits(self, outputs: dict) -> torch.Tensor | None:
        """The scores [B, K] of the head the recipe reads out, which ``assignsolve embed`` writes as
        ``logits``: the first cluster head, or the prototype scores (SwAV); None when the model has
        neither (recipes that read out another head override it: LossReadOut, CoKe)."""
        if "logits" in outputs:
            return outputs["logits"][0]
        return outputs.get("proto")

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the recipe (labels, queues, banks)."""
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` on resume."""


def relabel_due(start: float, end: float, every: float) -> bool:
    """Whether a re-labelling point ``j * every`` (j = 0, 1, ...) lies in ``[start, end)``, times in
    epochs: SeLa's label optimisations evenly spaced over the run (``every`` = epochs per
    optimisation, ``self-label``'s ``--nopts`` = epochs / every). Step ``s`` of ``S`` in epoch ``e``
    covers ``[e + s/S, e + (s+1)/S)``, so every point falls in exactly one step and an integer
    ``every`` re-labels at the start of every ``every``-th epoch."""
    tol = 1e-9  # float rounding of points that sit on a step boundary
    return math.ceil(end / every - tol) > math.ceil(start / every - tol)


class LossReadOut:
    """Mixin of a recipe with several cluster sub-heads that reads out one chosen on its training
    loss, as IIC's ``select_sub_head_on_loss`` (``xu-ji/IIC`` ``cluster_eval.get_subhead_using_loss``;
    no labels needed): :meth:`note_head_losses` adds each step's per-head losses,
    :meth:`epoch_head_losses` hands over the epoch's sums (summed over the DDP ranks, so every rank
    chooses alike), and the recipe sets ``best_head`` from them at the end of the epoch, before
    the evaluation; ``best_head`` is checkpointed, so ``assignsolve eval`` and ``embed`` read out the
    same head."""

    best_head: int = 0
    _head_loss_sum: torch.Tensor | None = None

    def note_head_losses(self, per_head: torch.Tensor) -> None:
        """Add one step's losses of the sub-heads ([H], any device; not differentiated)."""
        h = per_head.detach().float().cpu()
        self._head_loss_sum = h if self._head_loss_sum is None else self._head_loss_sum + h

    def epoch_head_losses(self) -> list[float] | None:
        """The sub-heads' losses summed over this epoch's steps (and ranks), then reset; None when
        no step noted any (an epoch of no steps)."""
        if self._head_loss_sum is None:
            return None
        losses, self._head_loss_sum = self._head_loss_sum, None
        if self.dist.enabled:
            import torch.distributed as tdist

            losses = losses.to(self.device)
            tdist.all_reduce(losses)
        return [float(v) for v in losses]

    def eval_problem(self, outputs):
        return Problem.from_logits(self.readout_logits(outputs).float())

    def head_labels(self, outputs):
        return self.readout_logits(outputs).argmax(1)

    def readout_logits(self, outputs):
        return outputs["logits"][self.best_head]

    def state_dict(self):
        return {**super().state_dict(), "best_head": self.best_head}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best_head = int(state.get("best_head", 0))


class RelabelRecipe(Recipe):
    """A recipe that keeps whole-dataset pseudo-labels ``self.labels`` and trains cluster heads
    on them (SeLa, DeepCluster): the first head's argmax is the read-out (SeLa's own is the
    lowest-loss head, :class:`LossReadOut`), the labels are the checkpointed state."""

    labels: torch.Tensor | None = None

    def head_labels(self, outputs):
        return outputs["logits"][0].argmax(1)

    def state_dict(self):
        return {"labels": self.labels}

    def load_state_dict(self, state):
        self.labels = None if state.get("labels") is None else state["labels"].to(self.device)
