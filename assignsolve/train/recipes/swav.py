"""SwAV (Caron et al., NeurIPS 2020): per-batch codes of two views, swapped prediction."""

from __future__ import annotations

from typing import ClassVar


import torch

from ...core.problem import Problem
from ...heads import ProjectionHead
from ...heads import Prototypes
from .base import Recipe
from ...objectives import swav_loss
from ...ops.dist import gather_rows
from ...ops.dist import row_offset


class SwAV(Recipe):
    """Caron et al., NeurIPS 2020: per-batch codes of both views (solver), swapped prediction."""

    name: ClassVar[str] = "swav"
    solver_defaults: ClassVar[dict] = {"epsilon": 0.05}  # SwAV: epsilon 0.05
    two_views: ClassVar[bool] = True

    def build_heads(self):
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, self.cfg.proj_dim),
                "proto": Prototypes(self.cfg.proj_dim, self.k)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        q = self.cfg.queue_size
        self.queue = torch.zeros(2, q, self.cfg.proj_dim, device=self.device) if q else None
        self.queue_fill = 0

    @torch.no_grad()
    def _codes(self, ctx, scores: torch.Tensor, view: int) -> torch.Tensor:
        local = scores.detach().float()
        full = gather_rows(local, self.dist)  # SwAV solves over the global batch
        offset = row_offset(local.shape[0], self.dist, local.device)
        if self.queue is not None and self.queue_fill >= self.queue.shape[1]:
            proto = ctx.model_heads["proto"].weight.detach().float()
            full = torch.cat([full, self.queue[view] @ proto.T])
        result = self.assign(Problem(scores=full))
        q = self.assign.soft_codes(result, self.k).to(local.device)
        return q[offset: offset + local.shape[0]]

    def loss(self, ctx, out1, out2, idx):
        q1 = self._codes(ctx, out1["proto"], 0)
        q2 = self._codes(ctx, out2["proto"], 1)
        if self.queue is not None:  # newest first; the oldest rows drop off the end
            with torch.no_grad():
                fresh = torch.stack([out1["z"].detach().float(), out2["z"].detach().float()])
                self.queue = torch.cat([fresh, self.queue], dim=1)[:, : self.cfg.queue_size]
                self.queue_fill = min(self.queue_fill + fresh.shape[1], self.cfg.queue_size)
        loss = swav_loss(out1["proto"], out2["proto"], q1, q2, self.cfg.temperature)
        return loss, q1.argmax(1)

    def after_step(self, ctx):
        ctx.model_heads["proto"].normalize_()

    def eval_problem(self, outputs):
        return Problem(scores=outputs["proto"].float())

    def head_labels(self, outputs):
        return outputs["proto"].argmax(1)

    def state_dict(self):
        return {"queue": self.queue, "queue_fill": self.queue_fill}

    def load_state_dict(self, state):
        if state.get("queue") is not None:
            self.queue = state["queue"].to(self.device)
        self.queue_fill = int(state.get("queue_fill", 0))
