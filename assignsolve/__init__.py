"""assignsolve: pluggable assignment solvers for clustering-based self-supervised learning.

The assignment step (model outputs -> pseudo-labels) of DeepCluster, SeLa, SwAV, CoKe and
IIC behind one interface::

    problem = assignsolve.Problem.from_logits(logits)
    result = assignsolve.solve(problem, "sinkhorn-gpu", epsilon=0.05)
    result.labels, result.soft, result.converged

Solvers are plugins (entry-point group ``assignsolve``); see ``assignsolve solvers``.
"""

from .core.arrays import Family
from .core.assignment import Assignment
from .core.errors import (
    AssignsolveError,
    CollapsedWarning,
    DuplicateNameError,
    InvalidProblemError,
    MissingDependencyError,
    NotConvergedWarning,
    UnknownEncoderError,
    UnknownPluginError,
    UnknownSolverError,
)
from .registry.hookspecs import hookimpl
from .registry.manager import get_encoder, get_plugin_manager, get_solver, list_encoders, list_solvers
from .core.problem import Problem
from .core.solver import BaseSolver, Solver, solve

__version__ = "0.1.0"

__all__ = [
    "Assignment", "AssignsolveError", "BaseSolver", "CollapsedWarning", "DuplicateNameError", "Family",
    "InvalidProblemError", "MissingDependencyError", "NotConvergedWarning", "Problem", "Solver",
    "UnknownEncoderError", "UnknownPluginError", "UnknownSolverError", "get_encoder",
    "get_plugin_manager", "get_solver", "hookimpl", "list_encoders", "list_solvers", "solve",
]
