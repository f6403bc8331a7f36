"""``assignsolve eval``: held-out linear probe, kNN and cluster metrics of a trained run.

Reads ``DIR/config.json`` and ``DIR/checkpoint.pt`` (``torch.load(weights_only=True)``),
computes the frozen encoder's features once per split, and reports the trained encoder beside
the run's own random (epoch-0) encoder. Data: the run's ``--data`` unless ``--data`` is given;
its test split, else ``--test-data`` (default: the run's), else a seeded stratified 80/20 split (the same as
``run --holdout``; the output says which, see :mod:`assignsolve.train.heldout`). Rows are
printed as a table and appended to ``DIR/eval.jsonl`` (rewritten atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HELP = "held-out linear probe / kNN / cluster metrics of a trained run"
DESCRIPTION = __doc__

PROTOCOLS = ("linear", "knn", "cluster")
COLUMNS = ("encoder", "epoch", "probe_acc", "knn20_acc", "knn200_acc", "pl_nmi", "pl_ari", "pl_acc",
           "head_nmi", "head_acc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder (config.json, checkpoint.pt)")
    parser.add_argument("--data", metavar="SOURCE", default=None, help="data source (default: the run's --data)")
    parser.add_argument("--test-data", metavar="PATH", default=None, help="held-out source (overrides one in SOURCE)")
    parser.add_argument("--test-labels", metavar="PATH", default=None, help=".npy/.pt labels of --test-data")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder of the named datasets (default: $ASSIGNSOLVE_DATA_DIR or ~/.cache/assignsolve/datasets)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="fetch a named dataset missing from --data-dir (default: on)")
    parser.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                        help="protocols to run (default: all three)")
    parser.add_argument("--random", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate the run's random (untrained, same seed and architecture) encoder")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', ...")
    add_data_mode_arguments(parser)


def add_data_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-mode`` and ``--workers``, as ``run`` has them (eval and embed)."""
    from ..datasets.streamed import DATA_MODES

    parser.add_argument("--data-mode", default="auto", metavar="MODE",
                        help=f"{'|'.join(DATA_MODES)}: ImageFolder images read into memory, streamed from disk, or "
                             "'auto': streamed when their float32 tensor would exceed 1 GiB (default: auto)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="DataLoader worker processes decoding streamed images (default: 0)")


def check_data_flags(args: argparse.Namespace, error) -> None:
    """``--data-mode`` one of the modes, ``--workers`` an int >= 0; else ``error`` (one line, exit 2)."""
    from ..datasets.streamed import DATA_MODES

    if args.data_mode not in DATA_MODES:
        raise error(f"--data-mode: expected one of {list(DATA_MODES)}, found {args.data_mode!r}")
    if args.workers < 0:
        raise error(f"--workers: expected an int >= 0, found {args.workers}")


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to ``path``: the old lines plus the new, written to a temporary file then renamed."""
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(old + "".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def _cell(row, col):
    v = row.get(col)
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def evaluate_run(args: argparse.Namespace) -> tuple[list[dict], str]:
    """The rows (random first, then trained) and the split note."""
    import torch

    from ..data import load_splits
    from ..train.heldout import eval_splits, outputs_of, protocol_rows
    from ..train.rng import _kept_rng
    from ..core.errors import TrainError
    from ..train.saved import load_run, run_config

    check_data_flags(args, TrainError)
    cfg, _ = run_config(args.run)
    source = args.data or cfg.data
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    same = source == cfg.data  # the run's own data: its --test-data, --test-labels, --data-dir by default
    splits = load_splits(source, image_size=cfg.image_size,
                         test_data=args.test_data or (cfg.test_data if same else None),
                         test_labels=args.test_labels or (cfg.test_labels if same else None),
                         data_dir=args.data_dir or cfg.data_dir, download=args.download and cfg.download,
                         mode=args.data_mode)
    parts = eval_splits(splits, str(source), holdout=cfg.holdout if same else 0.0, seed=cfg.seed)
    saved = load_run(args.run, tuple(int(s) for s in parts.train.input_shape), len(parts.train), device)
    rows = []
    for name, built in ([("random", saved.random)] if args.random else []) + [("trained", saved.trained)]:
        with _kept_rng(device):
            t0 = time.perf_counter()
            need_train = any(p in args.protocol for p in ("linear", "knn"))
            train_out = outputs_of(built.model, parts.train, device, workers=args.workers) if need_train else None
            test_out = outputs_of(built.model, parts.test, device, workers=args.workers)
            row = protocol_rows(args.protocol, train_out, test_out, parts.train, parts.test,
                                recipe=built.recipe, assigner=built.assigner, device=device)
        rows.append({"encoder": name, "epoch": 0 if name == "random" else saved.epoch, **row,
                     "data": str(source), "test": parts.test.name, "split": parts.note,
                     "protocols": list(args.protocol), "seconds": time.perf_counter() - t0,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return rows, parts.note


def main(args: argparse.Namespace) -> int:
    from .options import format_table

    rows, note = evaluate_run(args)
    print(f"assignsolve eval: {note}", file=sys.stderr)
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    print(format_table(rows, cols, cell=_cell, left=("encoder",)))
    append_jsonl(Path(args.run) / "eval.jsonl", rows)
    return 0
