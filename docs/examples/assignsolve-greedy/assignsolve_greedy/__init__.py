r"""Capacity-constrained greedy assignment: an example third-party assignsolve plugin.

Objective (approximately maximised): :math:`\max_y \sum_i S_{i, y_i}` subject to every
cluster receiving at most :math:`\lceil N / K \rceil` samples. The greedy rule visits all
(sample, cluster) pairs in decreasing score order and accepts a pair when the sample is
still free and the cluster still has room. It is a 1/2-approximation of the balanced
assignment LP and needs no iterations, which makes it a handy baseline.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

import assignsolve
from assignsolve.plugin import Assignment, BaseSolver, Problem


@attrs.frozen
class GreedyBalanced(BaseSolver):
    """Greedy assignment with cluster capacity ceil(N/K) (example plugin)."""

    name: ClassVar[str] = "greedy-balanced"
    needs: ClassVar[str] = "scores"
    gpu: ClassVar[bool] = False
    requires_n_ge_k: ClassVar[bool] = False
    default_recipe: ClassVar[str] = "greedy-relabel"  # `assignsolve run --solver greedy-balanced`

    slack: float = 1.0  #: capacity = ceil(slack * N / K); slack >= 1

    def __attrs_post_init__(self) -> None:
        if not self.slack >= 1.0:
            raise ValueError(f"slack: expected >= 1, found {self.slack}")

    def solve(self, problem: Problem) -> Assignment:
        scores = problem.scores.detach().to("cpu", torch.float64)
        n, k = scores.shape
        capacity = math.ceil(self.slack * n / k)
        order = torch.argsort(scores.flatten(), descending=True, stable=True).tolist()
        labels = torch.full((n,), -1, dtype=torch.int64)
        room = [capacity] * k
        left = n
        for flat in order:
            i, j = divmod(flat, k)
            if labels[i] < 0 and room[j] > 0:
                labels[i] = j
                room[j] -= 1
                left -= 1
                if left == 0:
                    break
        soft = torch.nn.functional.one_hot(labels, k).to(torch.float64)
        objective = float(scores.gather(1, labels[:, None]).sum())
        return Assignment.for_problem(problem, labels=labels, soft=soft, objective=objective,
                                      extras={"capacity": capacity})


@assignsolve.hookimpl
def register_solvers(register):
    register(GreedyBalanced)


# --------------------------------------------------------------------------- a training recipe
# A recipe says which heads the model has, when the solver is called and what the loss is.
# This one is SeLa's loop cut down to its core: every epoch, the whole dataset's head logits go
# to the solver (greedy-balanced by default: its `default_recipe`), and the head is trained
# with cross-entropy on those labels. Imported lazily so `assignsolve solvers` stays fast.
def _greedy_relabel_recipe():
    import torch.nn.functional as F

    from assignsolve.heads import ClusterHeads
    from assignsolve.train.recipes import Recipe

    class GreedyRelabel(Recipe):
        """Relabel the whole dataset with the solver every epoch, cross-entropy on the labels (example)."""

        name: ClassVar[str] = "greedy-relabel"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.labels = None  # [N] pseudo-labels of the current epoch

        def build_heads(self):
            return {"cluster": ClusterHeads(self.feat_dim, self.k, 1)}

        def start_epoch(self, ctx, epoch):
            logits = ctx.all_outputs()["logits"][0]
            self.labels = torch.as_tensor(self.assign(self.eval_problem({"logits": [logits]})).labels).to(self.device)

        def loss(self, ctx, out1, out2, idx):
            y = self.labels[idx.to(self.device)]
            return F.cross_entropy(out1["logits"][0], y), y

        def eval_problem(self, outputs):
            return Problem.from_logits(outputs["logits"][0].float())

        def head_labels(self, outputs):
            return outputs["logits"][0].argmax(1)

        def state_dict(self):
            return {"labels": self.labels}

        def load_state_dict(self, state):
            self.labels = None if state.get("labels") is None else state["labels"].to(self.device)

    return GreedyRelabel


@assignsolve.hookimpl
def register_recipes(register):
    register(_greedy_relabel_recipe())
