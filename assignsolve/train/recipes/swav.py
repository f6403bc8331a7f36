"""SwAV (Caron et al., NeurIPS 2020): per-batch codes of two views, swapped prediction.

Codes come from the solver in SwAV's regime as the solver itself declares it
(``recipe_options["swav"]``; sinkhorn-gpu: ``mode="swav"``, 10 fixed iterations at epsilon 0.05),
through the solver's trusted per-batch ``codes(scores)`` when it has one, else through a
:class:`Problem`. Multi-crop (``--small-crops``: codes from the two large views only),
prototypes frozen for the first ``--freeze-prototypes`` steps (SwAV's
``freeze_prototypes_niters``; default one epoch) and an optional ``--queue-size`` queue.
Reference: ``facebookresearch/swav`` ``main_swav.py``.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from ...core.problem import Problem
from ...heads import ProjectionHead, Prototypes
from ...objectives import swav_loss, swav_multicrop_loss
from ...ops.dist import gather_rows, row_offset
from .base import Recipe


def _fast_codes(solver):
    """The solver's ``codes`` entry on rows already gathered (``distributed=False``), or None."""
    if not callable(getattr(solver, "codes", None)):
        return None
    if attrs.has(type(solver)) and "distributed" in {f.name for f in attrs.fields(type(solver))}:
        solver = attrs.evolve(solver, distributed=False)  # the recipe gathers the rows itself
    return solver.codes


class SwAV(Recipe):
    """Caron et al., NeurIPS 2020: per-batch codes of both views (solver), swapped prediction."""

    name: ClassVar[str] = "swav"
    solver_defaults: ClassVar[dict] = {"epsilon": 0.05}  # SwAV: epsilon 0.05
    two_views: ClassVar[bool] = True
    #: SwAV's 0.1 is for 3,000 prototypes; with K = 10 prototypes 0.25 measured better on 5,000 MNIST
    #: digits (accuracy at seeds 0-2: 0.944 / 0.917 / 0.874 at 0.1, 0.948 / 0.946 / 0.952 at 0.2,
    #: 0.955 / 0.952 / 0.956 at 0.25; held out 0.919 / 0.951 / 0.957) and on 8x8 digits (NMI 0.800 /
    #: 0.873 / 0.873); 0.3 lost the digits (0.716): docs/training.md
    default_temperature: ClassVar[float] = 0.25
    #: the two views learn stroke-width invariance (as IIC's and CoKe's; docs/training.md)
    default_stroke_jitter: ClassVar[float] = 0.5

    def build_heads(self):
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, self.cfg.proj_dim),
                "proto": Prototypes(self.cfg.proj_dim, self.k)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        q = self.cfg.queue_size
        self.queue = torch.zeros(2, q, self.cfg.proj_dim, device=self.device) if q else None
        self.queue_fill = 0
        self.steps = 0  # optimiser steps so far (prototype freezing)
        self._codes_fn = _fast_codes(self.assign.solver)

    @torch.no_grad()
    def _codes(self, ctx, scores: torch.Tensor, view: int) -> torch.Tensor:
        local = scores.detach().float()
        full = gather_rows(local, self.dist)  # SwAV solves over the global batch
        offset = row_offset(local.shape[0], self.dist, local.device)
        if self.queue is not None and self.queue_fill >= self.queue.shape[1]:
            proto = ctx.model_heads["proto"].weight.detach().float()
            full = torch.cat([full, self.queue[view] @ proto.T])
        if self._codes_fn is not None:
            q = self._codes_fn(full).float().to(local.device)
            self.assign.calls += 1
        else:
            result = self.assign(Problem(scores=full))
            q = self.assign.soft_codes(result, self.k).to(local.device)
        return q[offset: offset + local.shape[0]]

    def extra_views(self, v2):
        """Multi-crop (Caron et al. 2020, Sec. 3.2): ``--small-crops`` low-resolution crops of the
        augmented view; they predict the large views' codes but get none themselves."""
        if not self.cfg.small_crops or v2.dim() != 4:
            return []
        from ...greyviews import small_crops
        return small_crops(v2, self.cfg.small_crops)

    def loss(self, ctx, out1, out2, idx):
        q1 = self._codes(ctx, out1["proto"], 0)
        q2 = self._codes(ctx, out2["proto"], 1)
        if self.queue is not None:  # newest first; the oldest rows drop off the end
            with torch.no_grad():
                fresh = torch.stack([out1["z"].detach().float(), out2["z"].detach().float()])
                self.queue = torch.cat([fresh, self.queue], dim=1)[:, : self.cfg.queue_size]
                self.queue_fill = min(self.queue_fill + fresh.shape[1], self.cfg.queue_size)
        small = [o["proto"] for o in out2.get("extra", [])]
        if small:
            loss = swav_multicrop_loss([out1["proto"], out2["proto"], *small], [q1, q2], self.cfg.temperature_used)
        else:
            loss = swav_loss(out1["proto"], out2["proto"], q1, q2, self.cfg.temperature_used)
        return loss, q1.argmax(1)

    @property
    def freeze_steps(self) -> int:
        """SwAV's ``freeze_prototypes_niters`` (313 = one ImageNet epoch at batch 4096): one epoch."""
        if self.cfg.freeze_prototypes is not None:
            return self.cfg.freeze_prototypes
        return max(1, self.n // (self.cfg.batch_size * self.dist.world))

    def before_step(self, ctx):
        if self.steps < self.freeze_steps:  # as SwAV: no gradient, so the optimiser skips them
            for p in ctx.model_heads["proto"].parameters():
                p.grad = None
        self.steps += 1

    def after_step(self, ctx):
        ctx.model_heads["proto"].normalize_()

    def eval_problem(self, outputs):
        return Problem(scores=outputs["proto"].float())

    def head_labels(self, outputs):
        return outputs["proto"].argmax(1)

    def state_dict(self):
        return {"queue": self.queue, "queue_fill": self.queue_fill, "steps": self.steps}

    def load_state_dict(self, state):
        if state.get("queue") is not None:
            self.queue = state["queue"].to(self.device)
        self.queue_fill = int(state.get("queue_fill", 0))
        self.steps = int(state.get("steps", 0))
