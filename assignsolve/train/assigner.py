"""The solver as the loop sees it: called by name, under ``no_grad``, in float32, counted."""

from __future__ import annotations

import warnings

import attrs
import torch
import torch.nn.functional as F

from ..core.errors import AssignsolveError, NotConvergedWarning, TrainError
from ..core.problem import Problem
from ..registry.manager import get_solver, recipe_entry, solver_entry
from .config import TrainConfig


def _solver_fields(name: str) -> set[str]:
    cls = solver_entry(name).cls
    return {f.name for f in attrs.fields(cls)} if attrs.has(cls) else set()


class Assigner:
    """Calls the configured solver (by name) under ``no_grad`` in float32 and counts non-convergence."""

    def __init__(self, cfg: TrainConfig, recipe: str):
        fields = _solver_fields(cfg.solver)
        entry = solver_entry(cfg.solver)
        opts = dict(cfg.solver_opt)
        # the recipe's paper defaults where the solver has the option, then the solver's own
        # options for this recipe (``recipe_options``); the user's --solver-opt always wins
        paper = dict(recipe_entry(recipe).cls.solver_defaults)
        own = dict(entry.recipe_options.get(recipe, {}))
        for key, value in {**paper, "seed": cfg.seed}.items():
            if key in fields and key not in opts and key not in own:
                opts[key] = value
        opts = {**own, **opts}
        self.name = cfg.solver
        self.options = opts
        try:
            self.solver = get_solver(cfg.solver, **opts)
        except AssignsolveError:
            raise
        except (TypeError, ValueError) as exc:  # unknown or bad --solver-opt: a message, exit 2
            raise TrainError(f"--solver-opt for solver {cfg.solver!r}: {exc}") from exc
        self.needs = solver_entry(cfg.solver).needs
        self.not_converged = 0
        self.calls = 0

    @torch.no_grad()
    def __call__(self, problem: Problem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            result = self.solver(problem)
        self.calls += 1
        self.not_converged += int(not result.converged)
        return result

    def soft_codes(self, result, k: int) -> torch.Tensor:
        if result.soft is not None:
            return torch.as_tensor(result.soft).float()
        return F.one_hot(torch.as_tensor(result.labels), k).float()
