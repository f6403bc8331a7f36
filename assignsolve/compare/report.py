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

if TYPE_CHECKING:
    from .runner import CompareResult


#: Columns of the terminal table / CSV, in order.
COLUMNS = ["solver", "status", "nmi", "ari", "acc", "objective", "size_min", "size_max",
           "size_entropy", "marginal_error", "rounds", "n_iters", "converged", "seconds", "mem_mb"]


def _progress(row: Mapping) -> str:
    if row["status"] == STATUS_OK:
        acc = f", acc {row['acc']:.4f}" if "acc" in row else ""
        return f"  {row['solver']}: ok in {row['seconds']:.2f} s{acc}"
    return f"  {row['solver']}: {row['status']} ({row['reason']})"


def _fmt(col: str, value) -> str:
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


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Aligned text table: text left-aligned, numbers right-aligned, ``-`` for missing values."""
    def cell(r, c):
        return _fmt(c, r.get(c)) if r["status"] == STATUS_OK or c in ("solver", "status") else "-"

    table = _table(rows, list(columns or COLUMNS), cell=cell, left={"solver", "status", "converged"})
    notes = [f"  {r['solver']}: {r['status']}: {r['reason']}" for r in rows if r["status"] != STATUS_OK]
    return "\n".join([table] + (["", "not run to completion:"] + notes if notes else []))


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


def _columns_for(result: CompareResult) -> list[str]:
    cols = list(COLUMNS)
    if result.true_labels is None:
        cols = [c for c in cols if c not in ("nmi", "ari", "acc")]
    return cols


def write_outputs(result: CompareResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``labels.npz`` and ``compare.png`` into ``out_dir``.

    ``labels.npz`` holds ``solver:<name>`` [N'] int64 per solver that finished, ``true`` (when
    labels exist) and ``index`` (row indices into the input, after dropping NaN/inf rows).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "labels": out / "labels.npz",
             "png": out / "compare.png"}
    extra = ["reason", "needs", "plugin", "n_empty", "n_not_converged", "solver_error", "solve_seconds",
             "startup_seconds", "threads", "rss_peak_mb", "cuda_peak_mb", "tracemalloc_peak_mb"]
    fields = _columns_for(result) + [c for c in extra if any(c in r for r in result.rows)]
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in result.rows:
            writer.writerow({c: _jsonable(r.get(c)) for c in fields})
    with open(paths["json"], "w") as fh:
        json.dump(_jsonable({"info": result.info, "rows": result.rows}), fh, indent=2)
    arrays = {f"solver:{s}": lab for s, lab in result.labels.items()}
    arrays["index"] = result.kept_index
    if result.true_labels is not None:
        arrays["true"] = result.true_labels
    np.savez(paths["labels"], **arrays)
    plot(result, paths["png"])
    return paths


def plot(result: CompareResult, path: str | Path) -> None:
    """Two panels: sorted cluster sizes per solver; accuracy (or size entropy) against wall time."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = [r for r in result.rows if r["status"] == STATUS_OK]
    k, n = result.info["k"], result.info["n"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles, markers = ["-", "--", "-.", ":"], ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
    for i, r in enumerate(ok):
        sizes = np.sort(np.bincount(result.labels[r["solver"]], minlength=k))[::-1]
        ax1.step(np.arange(1, k + 1), sizes, where="mid", color=colours[i % len(colours)],
                 linestyle=styles[i % len(styles)], linewidth=1.6, label=r["solver"])
    ax1.axhline(n / k, color="grey", linestyle="--", linewidth=1, label="N/K (balanced)")
    ax1.set(xlabel="cluster rank (largest first)", ylabel="cluster size",
            title=f"cluster sizes, {result.info['source']} (N={n}, K={k})")
    ax1.legend(fontsize=8)
    has_truth = result.true_labels is not None
    key, ylabel = ("acc", "Hungarian accuracy") if has_truth else ("size_entropy", "size entropy (nats)")
    for i, r in enumerate(ok):  # markers differ so that coinciding points stay visible
        ax2.scatter(r["seconds"], r[key], s=70, color=colours[i % len(colours)], marker=markers[i % len(markers)],
                    edgecolor="black", alpha=0.8, zorder=3, label=f"{r['solver']} ({r[key]:.3f}, {r['seconds']:.2g} s)")
    if ok:
        ax2.set_xscale("log")
        ax2.margins(x=0.15, y=0.1)
        ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    ax2.set(xlabel="wall seconds (log)", ylabel=ylabel, title=f"{ylabel} vs time")
    failed = [f"{r['solver']} ({r['status']})" for r in result.rows if r["status"] != STATUS_OK]
    if failed:
        fig.suptitle("not completed: " + ", ".join(failed), fontsize=9, color="firebrick")
    fig.savefig(path, dpi=110)
    plt.close(fig)
