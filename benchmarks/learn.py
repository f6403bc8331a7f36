"""Does training learn? Every built-in solver with its default recipe on one image ``.npz`` (issue 9).

Each solver runs through the real command, ``python -m assignsolve run --data PATH --solver S
--out OUT/S --no-progress`` with the documented defaults (data-adaptive epochs, encoder, views,
batch; see docs/training.md), one run at a time, each capped at ``--budget-minutes`` of wall time
(a run stopped by the cap is reported with the epochs it finished). The script then reads each
run's ``metrics.jsonl`` and prints one table: pseudo-label NMI/ARI/accuracy, head accuracy and kNN
accuracy of the features, each beside the random encoder's value at epoch 0, with wall time,
training images per second and epochs done. The reference row is scikit-learn ``KMeans`` on the
raw pixels (K = number of classes, ``n_init=10``, seed 0; kNN on the raw pixels), computed here,
in the same session. Thread count and load average (before and after) are printed beside it:
on a shared machine the times are only comparable within one table.

Usage::

    python benchmarks/learn.py --data ../shared/data/mnist5k.npz [--budget-minutes 15]
    python benchmarks/learn.py --data d.npz --solvers iic,kmeans --epochs 1 -- --encoder-opt width=8

Arguments after ``--`` are passed to every ``assignsolve run`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SOLVERS = ("sinkhorn-gpu", "sinkhorn-pot", "lp", "kmeans", "coke", "iic")
COLUMNS = ("solver", "recipe", "epochs", "pl_nmi", "pl_ari", "pl_acc", "head_acc", "knn_acc", "wall_s", "img_per_s",
           "status")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True,
                   help="image .npz (images uint8/float [N,C,H,W] + labels), or 'digits' (scikit-learn's 8x8 digits)")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="wall-time cap of each run (default 15)")
    p.add_argument("--solvers", default=",".join(SOLVERS), help=f"comma-separated (default: {','.join(SOLVERS)})")
    p.add_argument("--epochs", type=int, default=None, help="override the data-adaptive epochs (default: none)")
    p.add_argument("--out", default="runs/learn-bench", help="folder of the runs (default runs/learn-bench)")
    p.add_argument("--json", default=None, help="also write the table as JSON to this file")
    return p.parse_args(argv), extra


def pixel_kmeans(data_path: str) -> dict:
    """sklearn KMeans on the raw pixels (and kNN on them): the reference every recipe must beat."""
    import numpy as np
    from sklearn.cluster import KMeans

    from assignsolve import metrics as M
    from assignsolve.data import load_dataset

    data = load_dataset(data_path)
    if data.labels is None:
        raise SystemExit(f"{data_path}: expected labels in the file (the table scores against them), found none")
    x = data.x.reshape(data.x.shape[0], -1).double().numpy()
    y = data.labels.numpy()
    k = int(np.unique(y).size)
    t0 = time.perf_counter()
    pred = KMeans(k, n_init=10, random_state=0).fit_predict(x)
    scores = M.clustering_scores(pred, y)
    return {"solver": "pixels", "recipe": "sklearn KMeans", "epochs": 0, "pl_nmi": scores["nmi"],
            "pl_ari": scores["ari"], "pl_acc": scores["acc"], "head_acc": None,
            "knn_acc": M.knn_accuracy(x, y, k=20), "wall_s": time.perf_counter() - t0, "img_per_s": None,
            "status": "ok", "n": int(x.shape[0])}


def run_one(solver: str, args: argparse.Namespace, extra: list[str]) -> dict:
    """One ``assignsolve run`` under the wall-time cap; its first and last evaluated rows."""
    out = Path(args.out) / solver
    if (out / "checkpoint.pt").exists() or (out / "metrics.jsonl").exists():
        raise SystemExit(f"{out}: expected an empty run folder (a previous run is there; remove it or pass --out)")
    cmd = [sys.executable, "-m", "assignsolve", "run", "--data", args.data, "--solver", solver,
           "--out", str(out), "--no-progress"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    cmd += extra
    t0 = time.perf_counter()
    status = "ok"
    log = out.parent / f"{solver}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=args.budget_minutes * 60).returncode
            if rc != 0:
                status = f"exit {rc} (see {log})"
        except subprocess.TimeoutExpired:
            status = f"stopped at {args.budget_minutes:g} min"
    wall = time.perf_counter() - t0
    rows = []
    if (out / "metrics.jsonl").exists():
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    base = rows[0] if rows else {}
    evaluated = [r for r in rows if "knn_acc" in r]
    last = evaluated[-1] if evaluated else {}
    trained = [r for r in rows[1:] if "seconds" in r]
    images = sum(r.get("steps", 0) for r in trained) * (config.get("batch_size") or 0)
    train_s = sum(r["seconds"] for r in trained)
    row = {"solver": solver, "recipe": config.get("recipe", "?"), "epochs": int(last.get("epoch", 0)),
           "wall_s": wall, "img_per_s": images / train_s if train_s > 0 else None, "status": status}
    for key in ("pl_nmi", "pl_ari", "pl_acc", "head_acc", "knn_acc"):
        row[key] = last.get(key)
        row[key + "_0"] = base.get(key)
    return row


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key in ("wall_s", "img_per_s"):
        return f"{value:.0f}"
    if isinstance(value, float):
        shown = f"{value:.3f}"
        base = row.get(key + "_0")
        return shown if base is None or row["epochs"] == 0 else f"{shown} ({base:.3f})"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cells = [list(COLUMNS)] + [[_cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    if args.data != "digits" and not Path(args.data).is_file():
        print(f"--data: no such file {args.data!r} (a file, or 'digits' for scikit-learn's digits)", file=sys.stderr)
        return 2
    solvers = [s for s in args.solvers.split(",") if s]
    import torch

    load0 = os.getloadavg()
    print(f"threads: torch {torch.get_num_threads()}, cpu_count {os.cpu_count()}; load average before "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; budget {args.budget_minutes:g} min per run", flush=True)
    ref = pixel_kmeans(args.data)
    rows = [ref]
    for solver in solvers:
        rows.append(run_one(solver, args, extra))
        print(f"{solver}: {rows[-1]['status']}, {rows[-1]['epochs']} epochs, {rows[-1]['wall_s']:.0f} s", flush=True)
    load1 = os.getloadavg()
    print(f"\n{args.data}: {ref['n']} images; value (random encoder at epoch 0); pixels = sklearn KMeans "
          "on the raw pixels (kNN on the raw pixels)")
    print(format_table(rows))
    print(f"load average after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "load_before": load0, "load_after": load1}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
