"""attrs validators in one style: each failure names the field, what was expected and what was found.

    field: int = attrs.field(default=1, validator=at_least(1))

raises ``ConfigError("field: expected a number >= 1, found 0")`` (or the ``error`` class given).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from .errors import ConfigError

__all__ = ["above", "at_least", "at_most", "choice", "is_bool", "is_int"]


def choice(options: Iterable, optional: bool = False, error: type[Exception] = ConfigError):
    """Value must be one of ``options`` (or None when ``optional``)."""
    options = tuple(options)

    def check(instance, attribute, value):
        if optional and value is None:
            return
        if value not in options:
            raise error(f"{attribute.name}: expected one of {list(options)}, found {value!r}")
    return check


def _bound(sign: str, limit, optional: bool, error: type[Exception]):
    """A validator: a real number (not a bool) ``sign limit`` (``">="`` or ``"<="``), or None when ``optional``."""
    holds = (lambda v: v >= limit) if sign == ">=" else (lambda v: v <= limit)

    def check(instance, attribute, value):
        if optional and value is None:
            return
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and holds(value)):
            raise error(f"{attribute.name}: expected a number {sign} {limit}, found {value!r}")
    return check


def at_least(minimum, optional: bool = False, error: type[Exception] = ConfigError):
    """Value must be a real number (not a bool) ``>= minimum`` (or None when ``optional``)."""
    return _bound(">=", minimum, optional, error)


def at_most(maximum, optional: bool = False, error: type[Exception] = ConfigError):
    """Value must be a real number (not a bool) ``<= maximum`` (or None when ``optional``)."""
    return _bound("<=", maximum, optional, error)


def is_bool(error: type[Exception] = ConfigError):
    """Value must be True or False (not a string such as "false")."""
    def check(instance, attribute, value):
        if not isinstance(value, bool):
            raise error(f"{attribute.name}: expected true or false, found {value!r}")
    return check


def above(bound, optional: bool = False, error: type[Exception] = ConfigError):
    """Value must be a real number (not a bool) ``> bound`` (or None when ``optional``)."""
    def check(instance, attribute, value):
        if optional and value is None:
            return
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value > bound
        if not ok:
            raise error(f"{attribute.name}: expected a number > {bound}, found {value!r}")
    return check


def is_int(minimum=None, optional: bool = False, error: type[Exception] = ConfigError):
    """Value must be an integer (Python or numpy, not a bool), ``>= minimum`` when given (or None
    when ``optional``)."""
    def check(instance, attribute, value):
        if optional and value is None:
            return
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not ok or (minimum is not None and value < minimum):
            wanted = "an int" if minimum is None else f"an int >= {minimum}"
            raise error(f"{attribute.name}: expected {wanted}, found {value!r}")
    return check
