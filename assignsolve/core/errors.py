"""Exceptions and warnings raised by assignsolve.

Every error names the offending value and what was expected, so a user can fix the
input without reading the source.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AssignsolveError(Exception):
    """Base class of every assignsolve error."""


class InvalidProblemError(AssignsolveError, ValueError):
    """An input array or marginal does not have the expected shape, dtype or values."""


class UnknownNameError(AssignsolveError, KeyError):
    """A solver, encoder or plugin name that nothing registered.

    The message lists close matches (``difflib``) and every available name.
    """

    kind = "name"

    def __init__(self, name: str, available: Iterable[str]):
        self.name = name
        self.available = sorted(available)
        close = difflib.get_close_matches(name, self.available, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(self.available) or "(none registered)"
        self.message = f"unknown {self.kind} {name!r}{hint} Available: {listing}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class UnknownSolverError(UnknownNameError):
    kind = "solver"


class UnknownEncoderError(UnknownNameError):
    kind = "encoder"


class UnknownRecipeError(UnknownNameError):
    """No training recipe registered under that name."""

    kind = "recipe"


class UnknownPluginError(UnknownNameError):
    kind = "plugin"


class DuplicateNameError(AssignsolveError, ValueError):
    """Two plugins registered the same solver or encoder name."""


class ConfigError(AssignsolveError, ValueError):
    """A configuration value that cannot work (the message names the option and what was expected)."""


class TrainError(ConfigError):
    """A training configuration or input that cannot work (message says what was expected)."""


class CompareError(ConfigError):
    """Bad arguments to ``compare`` (unknown option, no K, no usable rows...)."""


class DataError(AssignsolveError, ValueError):
    """A data file, folder or dataset name that cannot be loaded; the message names it."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or folder that does not exist."""


class DownloadError(DataError):
    """A dataset file that could not be downloaded or failed its checksum."""


class MissingDependencyError(AssignsolveError, ImportError):
    """An optional package that one feature needs is not installed."""


class NotConvergedWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` before reaching ``tol``.

    The same fact is on the result as ``Assignment.converged == False``.
    """


class CollapsedWarning(NotConvergedWarning):
    """A solver put every sample in one cluster although the problem asks for several.

    Reported as ``Assignment.converged == False`` with ``extras["collapsed_to"]``; a subclass of
    :class:`NotConvergedWarning`, so code counting non-converged solves counts it too.
    """


def optional_import(module: str, purpose: str, install: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` saying who needs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = install or module
        raise MissingDependencyError(
            f"{purpose} needs the optional package {module!r}, which is not installed "
            f"({exc}); install it with: pip install {pkg}"
        ) from exc
