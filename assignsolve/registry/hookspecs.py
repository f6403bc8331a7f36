"""Plugin hook specifications (pluggy project name ``"assignsolve"``).

A plugin is any module registered under the ``assignsolve`` entry-point group that
implements one or more of these hooks with ``@assignsolve.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("assignsolve")
hookimpl = pluggy.HookimplMarker("assignsolve")


@hookspec
def register_solvers(register: Callable[[type], None]) -> None:
    """Register solver classes: call ``register(SolverClass)`` once per solver.

    A solver class is an attrs frozen class holding configuration only, with class
    attributes ``name`` (str), ``needs`` ("scores", "features" or "scores_or_features"),
    ``gpu`` (bool) and ``requires_n_ge_k`` (bool); its docstring's first line is its
    description. Instances are callables ``solver(problem) -> Assignment``.
    """


@hookspec
def register_encoders(register: Callable[..., None]) -> None:
    """Register encoders: ``register(name, factory, description="")``.

    ``factory(input_shape, **options) -> torch.nn.Module`` with an ``out_dim`` attribute.
    A name ending in ``":"`` (e.g. ``"timm:"``) registers a family:
    ``--encoder timm:resnet18`` calls ``factory(input_shape, variant="resnet18", ...)``.
    """


@hookspec
def register_recipes(register: Callable[[type], None]) -> None:
    """Register training recipes: call ``register(RecipeClass)`` once per recipe.

    A recipe class subclasses :class:`assignsolve.train.recipes.Recipe` and sets the class
    attribute ``name`` (``ClassVar[str]``, the ``--method`` value); its docstring's first line
    is its description. ``assignsolve run --method NAME`` builds it.
    """
