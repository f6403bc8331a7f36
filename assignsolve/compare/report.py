"""Reporting ``compare`` results: the terminal table, results.csv/json, labels.npz, compare.png."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

from ..cli.options import format_table as _table
from .protocol import STATUS_OK
from .scales import scale_text
from .summary import aggregate, ranked  # noqa: F401  (aggregate: re-exported for the CLI)

if TYPE_CHECKING:
    from .runner import CompareResult


#: Columns of the terminal table / CSV, in order.
COLUMNS = ["best", "solver", "status", "acc", "seconds", "nmi", "ari", "scale", "objective", "size_min",
           "size_max", "size_entropy", "marginal_error", "rounds", "n_iters", "converged", "mem_mb"]
#: measured columns (left out by ``--no-times``)
TIMES = ("seconds", "mem_mb")


def _progress(row: Mapping) -> str:
    if row["status"] == STATUS_OK:
        acc = f", acc {row['acc']:.4f}" if "acc" in row else ""
        return f"  {row['solver']}: ok in {row['seconds']:.2f} s{acc}"
    return f"  {row['solver']}: {row['status']} ({row['reason']})"


def _fmt(col: str, value) -> str:
    if isinstance(value, tuple):  # (mean, std) over repeats
        return f"{_fmt(col, value[0])}+-{value[1]:.2g}" if col not in ("rounds", "n_iters", "size_min",
               "size_max") else f"{value[0]:.4g}+-{value[1]:.2g}"
    if col == "scale":
        return scale_text(value or {})
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if col == "converged":
        return "yes" if value else "no"
    if isinstance(value, bool) or isinstance(value, (int, np.integer)) or isinstance(value, str):
        return str(value)
    if col in ("nmi", "ari", "acc"):
        return f"{value:.4f}"
    if col == "size_entropy":
        return f"{value:.3f}"
    if col == "marginal_error":
        return f"{value:.2e}"
    if col == "seconds":
        return f"{value:.3f}"
    if col == "mem_mb":
        return f"{value:.1f}"
    return f"{value:.5g}"


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, has_labels: bool = True,
                 times: bool = True) -> str:
    """Aligned text table, best first (:func:`.summary.ranked`), ``-`` for missing values, then notes.

    Notes under the table: failures with their reason, collapses, and each solver's own
    ``time_note`` (why it is slow, e.g. lp solved exactly to the vertex; left out with ``times=False``,
    like the measured columns, so that the same command prints the same table).
    """
    rows = ranked(rows, has_labels)

    def cell(r, c):
        return _fmt(c, r.get(c)) if r["status"].startswith(STATUS_OK) or c in ("solver", "status", "best") else "-"

    cols = list(columns or COLUMNS)
    if "best" in cols and "best" not in rows[0]:
        cols.remove("best")
    table = _table(rows, cols, cell=cell, left={"best", "solver", "status", "converged", "scale"})
    lines = [table, "", f"sorted by {'accuracy' if has_labels else 'objective'}, best marked *"]
    notes = [f"  {r['solver']}: {r['status']}: {r['reason']}" for r in rows if not r["status"].startswith(STATUS_OK)]
    collapsed = [f"  {r['solver']}: collapsed ({r['collapse']}): converged=no" for r in rows if r.get("collapse")]
    timed = [f"  {r['solver']}: {r['time_note']}" for r in rows if r.get("time_note") and times]
    for title, block in (("not run to completion:", notes), ("collapse:", collapsed), ("time:", timed)):
        if block:
            lines += ["", title] + block
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


def _columns_for(result: CompareResult, times: bool = True) -> list[str]:
    cols = [c for c in COLUMNS if times or c not in TIMES]
    if result.true_labels is None:
        cols = [c for c in cols if c not in ("nmi", "ari", "acc")]
    return cols


def _csv(path: Path, rows: Sequence[Mapping], fields: Sequence[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _fmt(c, r.get(c)) if c == "scale" or isinstance(r.get(c), tuple)
                             else _jsonable(r.get(c)) for c in fields})


def write_outputs(result: CompareResult, out_dir: str | Path, runs: Sequence | None = None) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``labels.npz`` and ``compare.png`` into ``out_dir``.

    Rows are ranked best first (``best`` = ``*``). ``labels.npz`` holds ``solver:<name>`` [N']
    int64 per solver that finished, ``true`` (when labels exist) and ``index`` (row indices into
    the input, after dropping NaN/inf rows). With several ``runs`` (``--repeat``), also
    ``repeat.csv`` (mean+-std cells) and ``repeat.json`` (every run's rows); the other files are
    those of the first run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "labels": out / "labels.npz",
             "png": out / "compare.png"}
    has_labels = result.true_labels is not None
    extra = ["collapse", "time_note", "reason", "needs", "plugin", "n_empty", "n_not_converged", "solver_error",
             "solve_seconds", "startup_seconds", "threads", "rss_peak_mb", "cuda_peak_mb", "tracemalloc_peak_mb"]
    fields = _columns_for(result) + [c for c in extra if any(c in r for r in result.rows)]
    _csv(paths["csv"], ranked(result.rows, has_labels), fields)
    with open(paths["json"], "w") as fh:
        json.dump(_jsonable({"info": result.info, "rows": ranked(result.rows, has_labels)}), fh, indent=2)
    if runs is not None and len(runs) > 1:
        paths["repeat_csv"], paths["repeat_json"] = out / "repeat.csv", out / "repeat.json"
        _csv(paths["repeat_csv"], ranked(aggregate(runs), has_labels), _columns_for(result))
        with open(paths["repeat_json"], "w") as fh:
            json.dump(_jsonable({"seeds": [r.info["config"]["seed"] for r in runs],
                                 "runs": [r.rows for r in runs]}), fh, indent=2)
    arrays = {f"solver:{s}": lab for s, lab in result.labels.items()}
    arrays["index"] = result.kept_index
    if has_labels:
        arrays["true"] = result.true_labels
    np.savez(paths["labels"], **arrays)
    plot(result, paths["png"])
    return paths


def plot(result: CompareResult, path: str | Path) -> None:
    """Sorted cluster sizes per solver; accuracy (or size entropy) against time; confusion of the best."""
    from .figure import plot as _plot

    _plot(result, path)
