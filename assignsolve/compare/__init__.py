"""Compare assignment solvers on fixed features (``assignsolve compare``).

:mod:`.config` (``CompareConfig``), :mod:`.protocol` (the shared loop), :mod:`.measure` (time, peak memory), :mod:`.isolation`
(one worker process per solver), :mod:`.runner` (``compare()``: orchestration) and
:mod:`.report` (table, files, figure). Names are imported lazily.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CompareConfig": "config", "CompareResult": "runner", "compare": "runner",
    "drop_nonfinite": "protocol", "run_protocol": "protocol",
    "format_table": "report", "plot": "report", "write_outputs": "report", "COLUMNS": "report",
}
_ELSEWHERE = {
    "CompareError": "assignsolve.core.errors", "centroid_update": "assignsolve.ops.centroids",
    "init_centroids": "assignsolve.ops.centroids", "kmeans_plusplus": "assignsolve.ops.centroids",
    "marginal_error": "assignsolve.ops.stats", "parse_solver_opts": "assignsolve.cli.compare",
    "add_arguments": "assignsolve.cli.compare", "main": "assignsolve.cli.compare",
}

__all__ = sorted([*_WHERE, *_ELSEWHERE])


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
