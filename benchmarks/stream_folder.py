"""ImageFolder in memory vs streamed from disk (``--data-mode``): training images/s and peak memory.

Run: ``python benchmarks/stream_folder.py [--n 1000 20000] [--size 32] [--workers 0 2]``.
Writes ``N`` random ``size`` x ``size`` PNGs (10 class folders) to a temporary folder, then
trains one epoch of the real loop (SwAV, ``cnn`` width 8, batch 256) on it in a fresh
subprocess per configuration and prints, beside the thread count and the load average:

- images/s of the training epoch (``seconds`` of its metrics row: decode + augment + step);
- the growth of the process's peak RSS (``ru_maxrss`` at the end minus ``ru_maxrss`` after the
  imports, so the interpreter and torch are not counted; glibc's ``MALLOC_MMAP_THRESHOLD_`` set to
  128 KiB so that freed buffers leave the RSS) and the workers' peak RSS (which counts the pages
  they share with the parent after the fork);
- the float32 tensor the in-memory path holds (N x 3 x size x size x 4 bytes).

``tests/train/test_stream_memory.py`` (slow) asserts the bound with the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CLASSES = 10


def write_folder(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``n`` PNGs of ``size`` x ``size`` RGB noise, a class-dependent bright band, in 10 class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    band = max(1, size // CLASSES)
    for c in range(CLASSES):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % CLASSES
        a = rng.integers(0, 100, size=(size, size, 3), dtype=np.uint8)
        a[c * band:(c + 1) * band] += 150
        Image.fromarray(a).save(root / f"class{c:02d}" / f"{i:06d}.png", compress_level=1)
    return root


def _child(spec: dict) -> dict:
    """One training run in this process; peak memory from getrusage (KiB on Linux)."""
    import torch

    from assignsolve.train.config import TrainConfig
    from assignsolve.train.loop import run

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = TrainConfig(data=spec["data"], data_mode=spec["mode"], workers=spec["workers"], epochs=1, batch_size=256,
                      encoder="cnn", encoder_opt={"width": 8}, proj_dim=16, hidden_dim=32, out=spec["out"],
                      progress=False, seed=0)
    result = run(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    train_seconds = sum(r["seconds"] for r in result["history"] if "seconds" in r)
    n = int(spec["n"])
    return {"n": n, "mode": spec["mode"], "workers": spec["workers"], "threads": torch.get_num_threads(),
            "images_per_s": n / train_seconds, "train_seconds": train_seconds,
            "rss_growth_mib": (peak - base) / 1024, "rss_base_mib": base / 1024, "workers_peak_mib": workers_peak / 1024,
            "tensor_mib": n * 3 * spec["size"] ** 2 * 4 / 2**20, "knn_acc": result.get("knn_acc")}


def measure(data: Path, n: int, size: int, mode: str, workers: int, out: Path) -> dict:
    """:func:`_child` in a fresh interpreter (so each peak is its own); its JSON line."""
    spec = {"data": str(data), "n": n, "size": size, "mode": mode, "workers": workers, "out": str(out)}
    # buffers of 128 KiB and more are mmap'd and unmapped on free (glibc), so the peak is live
    # memory, not heap the allocator kept from an earlier phase (which moved peaks by ~100 MiB)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"stream_folder child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 20000])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    import torch

    print(f"threads: torch {torch.get_num_threads()}, cpu_count {os.cpu_count()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {os.getloadavg()[0]:.2f}")
    cols = ("n", "mode", "workers", "images_per_s", "rss_growth_mib", "workers_peak_mib", "tensor_mib", "knn_acc")
    print("  ".join(f"{c:>16}" for c in cols))
    with tempfile.TemporaryDirectory(prefix="stream-folder-") as tmp:
        for n in args.n:
            data = write_folder(Path(tmp) / f"f{n}", n, args.size)
            configs = [("memory", 0)] + [("stream", w) for w in args.workers]
            for mode, workers in configs:
                row = measure(data, n, args.size, mode, workers, Path(tmp) / f"run-{n}-{mode}-{workers}")
                print("  ".join(f"{row[c]:>16.4g}" if isinstance(row[c], float) else f"{row[c]!s:>16}" for c in cols),
                      flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
