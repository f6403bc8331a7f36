r"""Capacity-constrained greedy assignment: an example third-party assignsolve plugin.

Objective (approximately maximised): :math:`\max_y \sum_i S_{i, y_i}` subject to every
cluster receiving at most :math:`\lceil N / K \rceil` samples. The greedy rule visits all
(sample, cluster) pairs in decreasing score order and accepts a pair when the sample is
still free and the cluster still has room. It is a 1/2-approximation of the balanced
assignment LP and needs no iterations, which makes it a handy baseline.
"""

from __future__ import annotations

import math

import attrs
import torch

import assignsolve
from assignsolve import Assignment, BaseSolver, Problem


@attrs.frozen
class GreedyBalanced(BaseSolver):
    """Greedy assignment with cluster capacity ceil(N/K) (example plugin)."""

    name = "greedy-balanced"
    needs = "scores"
    gpu = False
    requires_n_ge_k = False

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
