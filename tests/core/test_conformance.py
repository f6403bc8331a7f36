"""Every registered solver (built-in and the installed example plugin) passes the conformance suite."""

import unittest

import pytest

from assignsolve import get_solver, list_solvers
from assignsolve.testing import CHECKS

SOLVERS = list_solvers()


def test_builtins_and_example_are_registered():
    expected = {"lp", "sinkhorn-pot", "sinkhorn-gpu", "kmeans", "coke", "iic", "greedy-balanced"}
    assert expected <= set(SOLVERS), f"missing: {sorted(expected - set(SOLVERS))}"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", SOLVERS)
def test_conformance(name, check):
    try:
        check(get_solver(name))
    except unittest.SkipTest as exc:
        pytest.skip(str(exc))
