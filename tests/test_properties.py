"""The hypothesis property suite (assignsolve.testing.check_properties) over every registered solver.

Deterministic (derandomize=True); each solver gets MAX_EXAMPLES random problems.
"""

import pytest

from assignsolve import list_solvers
from assignsolve.testing import check_properties

MAX_EXAMPLES = 40

#: Known failures, each owned by an open fix elsewhere (not a weaker property here).
KNOWN = {
    "sinkhorn-gpu": "issue 11: sinkhorn-gpu returns NaN soft for a zero entry in b (its rewrite "
                    "in progress fixes zero-b, huge scores and size bounds)",
}


def _params():
    for name in list_solvers():
        marks = [pytest.mark.xfail(reason=KNOWN[name], strict=False)] if name in KNOWN else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_properties(name):
    check_properties(name, max_examples=MAX_EXAMPLES)
