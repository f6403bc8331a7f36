"""A run's summary picture: loss, NMI, accuracy and cluster balance per epoch, one PNG.

:func:`summary_series` is the pure part (which metric goes in which panel, from the rows of
``metrics.jsonl``); :func:`write_summary_png` draws it with matplotlib's Agg backend and
replaces the file atomically.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["PANELS", "summary_series", "write_summary_png"]

# panel title -> metric keys drawn in it (keys a run does not log are left out)
PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "NMI": ("pl_nmi", "head_nmi"),
    "accuracy": ("pl_acc", "head_acc", "knn_acc", "knn20_acc", "knn200_acc", "probe_acc"),
    "cluster balance": ("pl_balance", "head_balance"),
}


def summary_series(rows: Iterable[Mapping]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """``{panel: {metric: (epochs, values)}}`` for every finite numeric value in ``rows``."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {p: {} for p in PANELS}
    for row in rows:
        epoch = row.get("epoch")
        if not isinstance(epoch, (int, float)):
            continue
        for panel, keys in PANELS.items():
            for key in keys:
                value = row.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    xs, ys = out[panel].setdefault(key, ([], []))
                    xs.append(float(epoch))
                    ys.append(float(value))
    return out


def write_summary_png(rows: Iterable[Mapping], path: str | os.PathLike, title: str = "") -> Path:
    """Draw the four panels of :data:`PANELS` to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    series = summary_series(rows)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (panel, lines) in zip(axes.flat, series.items()):
        for key, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=f"{key} ({ys[-1]:.3g})")
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
