"""Rows for the table: sorted best first, the best marked, and mean +- std over ``--repeat`` seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .protocol import STATUS_OK

#: numeric columns averaged over repeats
NUMERIC = ("nmi", "ari", "acc", "objective", "size_min", "size_max", "size_entropy", "marginal_error",
           "rounds", "n_iters", "seconds", "mem_mb")


def _value(v):
    return v[0] if isinstance(v, tuple) else v


def sort_key(has_labels: bool):
    """Finished rows first, by accuracy (with labels) or the solver's objective, descending."""
    key = "acc" if has_labels else "objective"

    def k(row: Mapping):
        if row["status"] != STATUS_OK:
            return (1, 0.0, row["solver"])
        v = _value(row.get(key))
        v = -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return (0, -v, row["solver"])
    return k


def ranked(rows: Sequence[Mapping], has_labels: bool) -> list[dict]:
    """Copies of ``rows`` sorted by :func:`sort_key`, the first finished one with ``best = "*"``."""
    out = [dict(r, best="") for r in sorted(rows, key=sort_key(has_labels))]
    if out and out[0]["status"] == STATUS_OK:
        out[0]["best"] = "*"
    return out


def aggregate(runs: Sequence) -> list[dict]:
    """One row per solver over several :class:`CompareResult` (one per seed): ``(mean, std)`` cells.

    The std is the population std over the repeats that finished; ``status`` is ``ok`` when every
    repeat finished, else e.g. ``ok 2/3`` (numbers over the finished ones) or the first failure.
    ``converged`` is True only when every repeat converged.
    """
    out = []
    for first in runs[0].rows:
        rows = [res.row(first["solver"]) for res in runs]
        ok = [r for r in rows if r["status"] == STATUS_OK]
        row = {k: v for k, v in first.items() if k not in NUMERIC}
        if not ok:
            out.append(row)
            continue
        row.update(status=STATUS_OK if len(ok) == len(rows) else f"ok {len(ok)}/{len(rows)}", reason="")
        for col in NUMERIC:
            vals = [float(r[col]) for r in ok if r.get(col) is not None]
            if vals:
                row[col] = (float(np.mean(vals)), float(np.std(vals)))
        row["converged"] = all(bool(r.get("converged")) for r in ok)
        row["collapse"] = next((r["collapse"] for r in ok if r.get("collapse")), "")
        out.append(row)
    return out
