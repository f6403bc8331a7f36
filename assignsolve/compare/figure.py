"""``compare.png``: cluster sizes, accuracy against time, and the best solver's confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .protocol import STATUS_OK
from .summary import ranked


def matched_confusion(pred: np.ndarray, true: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix [classes, K] with clusters reordered by the Hungarian match to classes.

    Returns the matrix (rows: true classes in sorted order; columns: clusters, the one matched to
    class ``j`` in column ``j``, unmatched clusters after) and the cluster order used.
    """
    from scipy.optimize import linear_sum_assignment

    classes = np.unique(true)
    cls_index = np.searchsorted(classes, true)
    m = np.zeros((classes.size, k), dtype=np.int64)
    np.add.at(m, (cls_index, pred), 1)
    rows, cols = linear_sum_assignment(-m)
    order = list(cols[np.argsort(rows)]) + [c for c in range(k) if c not in set(cols)]
    return m[:, order], np.asarray(order)


def plot(result, path: str | Path) -> None:
    """Three panels (two without labels); failed solvers named in the title."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    has_truth = result.true_labels is not None
    ok = [r for r in ranked(result.rows, has_truth) if r["status"] == STATUS_OK]
    k, n = result.info["k"], result.info["n"]
    fig, axes = plt.subplots(1, 3 if has_truth and ok else 2, figsize=(17 if has_truth else 12, 5.2),
                             constrained_layout=True)
    ax1, ax2 = axes[0], axes[1]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles, markers = ["-", "--", "-.", ":"], ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
    for i, r in enumerate(ok):
        sizes = np.sort(np.bincount(result.labels[r["solver"]], minlength=k))[::-1]
        ax1.step(np.arange(1, k + 1), sizes, where="mid", color=colours[i % len(colours)],
                 linestyle=styles[i % len(styles)], linewidth=1.8,
                 label=f"{r['solver']} ({sizes.min()}-{sizes.max()})")
    ax1.axhline(n / k, color="grey", linestyle="--", linewidth=1, label=f"N/K = {n / k:.0f} (balanced)")
    ax1.set(xlabel="cluster rank (largest first)", ylabel="cluster size",
            title=f"cluster sizes, {result.info['source']} (N={n}, K={k})")
    ax1.legend(fontsize=8, title="solver (min-max size)", title_fontsize=8)
    ax1.grid(True, alpha=0.3)
    key, ylabel = ("acc", "Hungarian accuracy") if has_truth else ("size_entropy", "size entropy (nats)")
    for i, r in enumerate(ok):  # markers differ so that coinciding points stay visible
        ax2.scatter(r["seconds"], r[key], s=90, color=colours[i % len(colours)], marker=markers[i % len(markers)],
                    edgecolor="black", alpha=0.85, zorder=3,
                    label=f"{'* ' if i == 0 else ''}{r['solver']}: {r[key]:.3f} in {r['seconds']:.2g} s")
    if ok:
        ax2.set_xscale("log")
        ax2.margins(x=0.2, y=0.15)
        ax2.legend(fontsize=8, title="best first", title_fontsize=8)
    ax2.grid(True, alpha=0.3, which="both")
    ax2.set(xlabel="wall seconds (log scale)", ylabel=ylabel, title=f"{ylabel} vs time (up-left is better)")
    if has_truth and ok:
        best = ok[0]
        m, order = matched_confusion(result.labels[best["solver"]], result.true_labels, k)
        ax3 = axes[2]
        ax3.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax3.text(j, i, str(v), ha="center", va="center", fontsize=7,
                         color="white" if v > m.max() / 2 else "black")
        classes = np.unique(result.true_labels)
        ax3.set_xticks(range(m.shape[1]), [str(c) for c in order], fontsize=8)
        ax3.set_yticks(range(m.shape[0]), [str(c) for c in classes], fontsize=8)
        ax3.set(xlabel="cluster (matched to the class of its row)", ylabel="true class",
                title=f"confusion of the best: {best['solver']} (acc {best['acc']:.3f})")
    failed = [f"{r['solver']} ({r['status']})" for r in result.rows if r["status"] != STATUS_OK]
    if failed:
        fig.suptitle("not completed: " + ", ".join(failed), fontsize=9, color="firebrick")
    fig.savefig(path, dpi=100)
    plt.close(fig)
