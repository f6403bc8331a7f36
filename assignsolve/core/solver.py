"""The solver protocol, a base class that handles the common bookkeeping, and ``solve()``."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import attrs

from .assignment import Assignment
from .errors import CollapsedWarning, InvalidProblemError, NotConvergedWarning
from .problem import Problem

__all__ = ["Solver", "BaseSolver", "Needs", "OnlineSolver", "OnlineState", "check_problem", "report_collapse"]

Needs = Literal["scores", "features", "scores_or_features"]


@runtime_checkable
class Solver(Protocol):
    """What the framework calls: configuration only, no problem data.

    ``name``/``needs``/``gpu``/``requires_n_ge_k`` are class attributes (``ClassVar``; a plain
    attrs field such as ``name: str = "mine"`` is an instance field and is rejected at
    registration); calling an instance on a :class:`Problem` returns an :class:`Assignment` in
    the problem's array family and device.

    Optional training metadata (defaults on :class:`BaseSolver`): ``default_recipe``, the recipe
    ``assignsolve run`` uses when ``--method`` is not given (None: ``deepcluster`` for feature
    solvers, ``sela`` otherwise), and ``recipe_options``, ``{recipe name: {option: value}}``
    applied when the solver runs under that recipe (the user's ``--solver-opt`` wins), and
    ``recipe_training``, ``{recipe name: {training option: value}}``, training defaults
    (:class:`~assignsolve.train.TrainConfig` fields such as ``lr``) that ``assignsolve run``
    takes under that recipe where the user gave none (``lr`` only with the optimiser it is for:
    the entry's ``optimizer`` when it names one, else the recipe's own).
    """

    name: ClassVar[str]
    needs: ClassVar[Needs]
    gpu: ClassVar[bool]
    requires_n_ge_k: ClassVar[bool]

    def __call__(self, problem: Problem) -> Assignment: ...


@runtime_checkable
class OnlineState(Protocol):
    """Per-batch bookkeeping of an online solver (what ``OnlineSolver.online`` returns; CoKe's ``OnlineCoke``).

    ``partial_fit(features [B, D], indices [B]) -> labels [B]`` assigns a batch and updates the
    centres; ``end_epoch()`` makes this epoch's labels and centres the next epoch's targets;
    ``targets(indices) -> labels`` are the previous epoch's labels (this epoch's where none);
    ``logits(features, temperature) -> [B, K]`` scores against the previous epoch's centres;
    ``state_dict()``/``load_state_dict(state)`` checkpoint it; ``centres`` [K, D] are the current centres.
    """

    centres: Any

    def partial_fit(self, features, indices): ...

    def end_epoch(self) -> None: ...

    def targets(self, indices): ...

    def logits(self, features, temperature: float = 0.1): ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Mapping) -> None: ...


@runtime_checkable
class OnlineSolver(Protocol):
    """A solver that can also run online, one batch at a time (CoKe): ``online(n, dim, k, device) -> OnlineState``."""

    def online(self, n: int, dim: int, k: int, device=None) -> OnlineState: ...


def check_problem(solver: Solver, problem: Problem) -> None:
    """Raise :class:`InvalidProblemError` when ``problem`` lacks what ``solver`` needs."""
    if not isinstance(problem, Problem):
        raise TypeError(f"{solver.name}: expected an assignsolve.Problem, found {type(problem).__name__}")
    needs = solver.needs
    if needs == "scores" and problem.scores is None:
        raise InvalidProblemError(f"solver {solver.name!r} expected scores [N, K], found none (only features)")
    if needs == "features" and problem.features is None:
        raise InvalidProblemError(f"solver {solver.name!r} expected features [N, D], found none (only scores)")
    if solver.requires_n_ge_k and problem.n_clusters > problem.n_samples:
        raise InvalidProblemError(
            f"solver {solver.name!r} expected N >= K, found N = {problem.n_samples} samples "
            f"for K = {problem.n_clusters} clusters"
        )


@attrs.frozen
class BaseSolver:
    """Convenience base: validates, times, names the result and warns on non-convergence.

    Subclasses are ``@attrs.frozen`` classes that set the class attributes and implement
    ``solve(problem) -> Assignment``. Using this base is optional: the protocol is all the
    framework relies on.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = "scores"
    gpu: ClassVar[bool] = False
    requires_n_ge_k: ClassVar[bool] = False
    #: recipe used by ``assignsolve run`` when ``--method`` is not given (None: by ``needs``)
    default_recipe: ClassVar[str | None] = None
    #: ``{recipe name: {option: value}}``: this solver's options under that recipe
    recipe_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: ``{recipe name: {TrainConfig field: value}}``: training defaults under that recipe
    recipe_training: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def solve(self, problem: Problem) -> Assignment:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, problem: Problem) -> Assignment:
        check_problem(self, problem)
        start = time.perf_counter()
        result = self.solve(problem)
        result = attrs.evolve(result, solver=self.name, seconds=time.perf_counter() - start)
        result = report_collapse(self.name, problem, result)
        if not result.converged and "collapsed_to" not in result.extras:
            reason = result.extras.get("not_converged_reason")
            warnings.warn(
                NotConvergedWarning(
                    f"{self.name}: not converged: {reason}" if reason else
                    f"{self.name}: not converged after {result.n_iters} iterations "
                    f"(last error {result.marginal_error:.3g}); raise max_iter or tol"
                ),
                stacklevel=2,
            )
        return result


def report_collapse(name: str, problem: Problem, result: Assignment) -> Assignment:
    """``result`` with ``converged=False`` and a :class:`CollapsedWarning` when every sample went to
    one cluster although the problem asks for several (see :func:`validators.collapsed_to`)."""
    from .guards import collapsed_to

    if not result.converged:
        return result
    cluster = collapsed_to(problem, result.labels)
    if cluster is None:
        return result
    warnings.warn(
        CollapsedWarning(
            f"{name}: every one of the N = {problem.n_samples} samples went to cluster {cluster} "
            f"of K = {problem.n_clusters} (collapse); reported as converged=False"
        ),
        stacklevel=3,
    )
    return attrs.evolve(result, converged=False, extras={**result.extras, "collapsed_to": cluster})


def solve(problem: Problem, solver: str | Solver = "sinkhorn-gpu", **config) -> Assignment:
    """Solve ``problem`` with a registered solver (by name, with ``config``) or a solver instance.

    >>> import numpy as np, assignsolve
    >>> p = assignsolve.Problem.from_logits(np.random.default_rng(0).normal(size=(8, 2)))
    >>> assignsolve.solve(p, "sinkhorn-pot", epsilon=0.1).labels.shape
    (8,)
    """
    from ..registry.manager import get_solver

    if isinstance(solver, str):
        solver = get_solver(solver, **config)
    elif config:
        raise TypeError("solve(): pass configuration either to the solver instance or by name, not both")
    return solver(problem)
