"""Everything a plugin author imports, in one place::

    from assignsolve.plugin import Assignment, BaseSolver, Problem, hookimpl, to_family

Solvers (``register_solvers``), encoders (``register_encoders``) and training recipes
(``register_recipes``) are registered through these hooks; see docs/plugins.md.
"""

from __future__ import annotations

from .core.arrays import Family, as_tensor, family_of, is_floating, resolve_device, to_family
from .core.assignment import Assignment
from .core.errors import (
    AssignsolveError,
    ConfigError,
    DuplicateNameError,
    InvalidProblemError,
    MissingDependencyError,
    NotConvergedWarning,
    optional_import,
)
from .core.problem import Problem
from .core.solver import BaseSolver, Solver
from .core.validators import above, at_least, choice, is_bool, is_int
from .registry.hookspecs import hookimpl

__all__ = [
    "Assignment", "AssignsolveError", "BaseSolver", "ConfigError", "DuplicateNameError", "Family",
    "InvalidProblemError", "MissingDependencyError", "NotConvergedWarning", "Problem", "Solver",
    "above", "as_tensor", "at_least", "choice", "family_of", "hookimpl", "is_bool", "is_floating", "is_int",
    "optional_import", "resolve_device", "to_family",
]
