"""``assignsolve compare``: compare solvers on fixed features (one table, one plot)."""


from __future__ import annotations

import argparse
import re

import attrs
from collections.abc import Sequence
from pathlib import Path


from ..core.errors import CompareError
from .options import parse_named_kv
from ..compare.protocol import STATUS_OK
from ..compare.report import _columns_for, aggregate, format_table, write_outputs
from ..compare import runner as _runner
from ..compare.config import CompareConfig
from ..compare.runner import compare
from ..compare.scales import EPSILON_REL, PAIR_K, TAU_REL

HELP = "compare solvers on fixed features: one table, one plot"
DESCRIPTION = _runner.__doc__


def parse_solver_opts(items: Sequence[str]) -> dict[str, dict]:
    """``["sinkhorn-gpu.epsilon=0.05", "kmeans.preprocess=false"]`` -> ``{name: {key: value}}``.

    Values are typed as in ``run --solver-opt`` (:func:`assignsolve.cli.options.parse_value`):
    ``false`` is False, ``0.05`` a float, ``none`` None, ``'kmeans++'`` or ``kmeans++`` a string.
    """
    return parse_named_kv(items, "--solver-opt", error=CompareError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``assignsolve compare``."""
    parser.add_argument("--data", "--features", dest="features", default=None, metavar="PATH|digits",
                        help="features: .npy/.npz/.pt file of [N, D] features or [N, C, H, W] images (flattened "
                             "pixels), or 'digits' (default: digits; --features is an alias); with --run: the "
                             "images to embed (default: the run's own data)")
    parser.add_argument("--run", default=None, metavar="DIR",
                        help="a trained run's folder: compare on the features of its checkpoint")
    parser.add_argument("--labels", default=None, metavar="PATH", help="optional labels file (.npy/.pt)")
    parser.add_argument("--solvers", default=None, metavar="A,B,...",
                        help="comma-separated solver names (default: every registered solver)")
    parser.add_argument("--n-clusters", "--k", dest="k", type=int, default=None, metavar="K",
                        help="clusters K (default: number of label classes; --k is an alias)")
    parser.add_argument("--iters", type=int, default=10, help="protocol rounds T (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared initial centroids and solvers")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per solver, 0 for none (default: 120)")
    parser.add_argument("--solver-opt", action="append", default=[], metavar="NAME.key=value",
                        help="solver option, repeatable (e.g. sinkhorn-gpu.epsilon=0.05)")
    parser.add_argument("--normalize", choices=["l2", "none"], default="l2", help="feature preprocessing")
    parser.add_argument("--init", choices=["kmeans++", "random"], default="kmeans++",
                        help="shared initial centroids")
    parser.add_argument("--metric", choices=["cosine", "dot", "l2"], default="cosine",
                        help="scores from features and centroids")
    parser.add_argument("--update", choices=["soft", "hard"], default="soft",
                        help="centroids weighted by the soft assignment when given (default) or by labels")
    parser.add_argument("--tol", type=float, default=1e-6, help="fixed-point tolerance of the protocol")
    parser.add_argument("--device", default="cpu", help="device for solvers with a device option")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: torch's default)")
    parser.add_argument("--isolation", choices=["process", "inline"], default="process",
                        help="one spawned worker per solver (timeouts, crash isolation) or in-process")
    parser.add_argument("--tracemalloc", action="store_true", help="also record tracemalloc peaks")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up round on a subset before each timed run")
    parser.add_argument("--epsilon-rel", type=float, default=EPSILON_REL,
                        help="epsilon of entropic solvers = this x std of the initial scores (default: 0.1)")
    parser.add_argument("--tau-rel", type=float, default=TAU_REL,
                        help="temperature of two-view solvers (iic) = this x std of the initial scores (default: 0.1)")
    parser.add_argument("--pair-k", type=int, default=PAIR_K,
                        help="two-view solvers pair each sample with one of its k nearest neighbours (default: 10)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="run R times with seeds seed..seed+R-1; the table gives mean +- std (default: 1)")
    parser.add_argument("--no-times", dest="times", action="store_false",
                        help="leave the measured columns (seconds, mem_mb) out of the printed table, so that "
                             "two invocations print byte-identical tables")
    parser.add_argument("--out", default="compare-out", metavar="DIR", help="output folder (default: compare-out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier compare in --out (refused without it)")


#: what compare writes into --out (compare/report.py): never replaced without --overwrite
OUTPUT_FILES = ("results.csv", "results.json", "labels.npz", "compare.png", "repeat.csv", "repeat.json")


def check_out(out: str, overwrite: bool = False) -> Path:
    """``--out`` must be (or become) a folder without an earlier compare's results (unless
    ``overwrite``): checked, and created, before any solver runs."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CompareError(f"--out: expected a folder, found a file {str(path)!r}")
    earlier = [name for name in OUTPUT_FILES if (path / name).exists()]
    if earlier and not overwrite:
        raise CompareError(f"--out: {str(path)!r} already holds the results of an earlier compare "
                           f"({', '.join(earlier)}); choose another --out or pass --overwrite to replace them")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompareError(f"--out: cannot create the folder {str(path)!r} ({exc.strerror})") from exc
    return path


def main(args: argparse.Namespace) -> int:
    from ..compare.sources import load_run, load_source

    if args.repeat < 1:
        raise CompareError(f"--repeat: expected an int >= 1, found {args.repeat}")
    cfg = CompareConfig(k=args.k, iters=args.iters, seed=args.seed,
                        timeout=args.timeout if args.timeout and args.timeout > 0 else None,
                        normalize=args.normalize, init=args.init, metric=args.metric, update=args.update, tol=args.tol,
                        device=args.device, isolation=args.isolation, tracemalloc=args.tracemalloc,
                        warmup=args.warmup, threads=args.threads,
                        solver_opts=parse_solver_opts(args.solver_opt), epsilon_rel=args.epsilon_rel,
                        tau_rel=args.tau_rel, pair_k=args.pair_k)
    check_out(args.out, args.overwrite)  # before the solvers: their results are never lost to a bad --out
    try:
        if args.run is not None:
            data = load_run(args.run, args.features, args.labels)
        else:
            data = load_source(args.features or "digits", args.labels)
    except (FileNotFoundError, ValueError) as exc:
        raise CompareError(str(exc)) from exc
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()] if args.solvers else None
    print(f"compare: {data.name} {data.x.shape[0]}x{data.x.shape[1]}, "
          f"K = {cfg.k if cfg.k is not None else 'from labels'}, T = {cfg.iters}, seed = {cfg.seed}"
          + (f"..{cfg.seed + args.repeat - 1} (R = {args.repeat})" if args.repeat > 1 else ""))
    log = print if args.times else (lambda line: print(re.sub(r" in [0-9.]+ s", "", line)))
    runs = [compare(data.x, data.labels, solvers, attrs.evolve(cfg, seed=cfg.seed + r), name=data.name, log=log)
            for r in range(args.repeat)]
    result = runs[0]
    paths = write_outputs(result, args.out, runs)
    columns = _columns_for(result, times=args.times)
    print()
    print(f"score std(S0) = {result.info['score_std']:.4g}; eps = {cfg.epsilon_rel:g} x std(S0) for entropic "
          f"solvers, tau = {cfg.tau_rel:g} x std(S0) for two-view solvers (* = set by --solver-opt)")
    print(format_table(aggregate(runs) if args.repeat > 1 else result.rows, columns,
                       has_labels=result.true_labels is not None, times=args.times))
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if any(r["status"] == STATUS_OK for r in result.rows) else 1
