"""``assignsolve embed``: features (and head logits, labels) of a trained run, for ``compare --features``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.errors import CompareError

HELP = "write the features of a trained run's checkpoint to an .npz that compare reads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``assignsolve embed``."""
    parser.add_argument("--run", required=True, metavar="DIR", help="the run's folder (holds checkpoint.pt)")
    parser.add_argument("--data", default=None, metavar="SOURCE",
                        help="images to embed, any source 'run' reads (default: the run's own --data)")
    parser.add_argument("--out", required=True, metavar="FILE.npz",
                        help="output: features [N, F], logits [N, K] (when the run has a head), labels [N]")
    parser.add_argument("--batch-size", type=int, default=512, help="images per forward pass (default: 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE.npz when it exists")
    from .eval import add_data_mode_arguments

    add_data_mode_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from ..compare.embedding import embed_run

    out = Path(args.out)
    if out.suffix != ".npz":
        raise CompareError(f"--out: expected a file name ending in .npz, found {str(out)!r}")
    if out.exists() and not args.overwrite:
        raise CompareError(f"--out: {str(out)!r} exists (pass --overwrite to replace it)")
    if args.batch_size < 1:
        raise CompareError(f"--batch-size: expected an int >= 1, found {args.batch_size}")
    from .eval import check_data_flags

    check_data_flags(args, CompareError)
    result = embed_run(args.run, args.data, args.batch_size, mode=args.data_mode, workers=args.workers)
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"embed: {args.run} (epoch {result['epoch']}) on {result['source']}: wrote {out} ({shapes})")
    return 0
