"""``assignsolve compare``: compare solvers on fixed features (one table, one plot)."""


from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


from ..core.errors import CompareError
from .options import parse_named_kv
from ..compare.protocol import STATUS_OK
from ..compare.report import _columns_for, format_table, write_outputs
from ..compare import runner as _runner
from ..compare.runner import CompareConfig, compare

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
    parser.add_argument("--data", "--features", dest="features", default="digits", metavar="PATH|digits",
                        help="features: .npy/.npz/.pt file or 'digits' (default: digits; --features is an alias)")
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
    parser.add_argument("--out", default="compare-out", metavar="DIR", help="output folder (default: compare-out)")


def check_out(out: str) -> Path:
    """``--out`` must be (or become) a folder: checked, and created, before any solver runs."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CompareError(f"--out: expected a folder, found a file {str(path)!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompareError(f"--out: cannot create the folder {str(path)!r} ({exc.strerror})") from exc
    return path


def main(args: argparse.Namespace) -> int:
    from ..data import load_features

    check_out(args.out)  # before the solvers: their results are never lost to a bad --out
    try:
        data = load_features(args.features, args.labels)
    except (FileNotFoundError, ValueError) as exc:
        raise CompareError(str(exc)) from exc
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()] if args.solvers else None
    cfg = CompareConfig(k=args.k, iters=args.iters, seed=args.seed,
                        timeout=args.timeout if args.timeout and args.timeout > 0 else None,
                        normalize=args.normalize, init=args.init, metric=args.metric, update=args.update, tol=args.tol,
                        device=args.device, isolation=args.isolation, tracemalloc=args.tracemalloc,
                        warmup=args.warmup, threads=args.threads,
                        solver_opts=parse_solver_opts(args.solver_opt))
    print(f"compare: {data.name} {data.x.shape[0]}x{data.x.shape[1]}, "
          f"K = {cfg.k if cfg.k is not None else 'from labels'}, T = {cfg.iters}, seed = {cfg.seed}")
    result = compare(data.x, data.labels, solvers, cfg, name=data.name)
    paths = write_outputs(result, args.out)
    print()
    print(format_table(result.rows, _columns_for(result)))
    print()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if any(r["status"] == STATUS_OK for r in result.rows) else 1
