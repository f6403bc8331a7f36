"""SeLa at ImageNet scale (N = 1,281,167, K = 3000, float32, CPU): time per iteration, peak memory.

Run: ``python benchmarks/imagenet_scale.py [N]`` (default: the full N; the scores alone are
15.4 GB). Streams the scores (``cache_kernel=False``): memory is S plus one block per worker
plus O(N + K) vectors. Prints seconds per sweep and the peak RSS (``ru_maxrss``); the
per-iteration time is linear in N (memory-bound), so a smaller N extrapolates by N_full / N.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import torch

from assignsolve_plugins.sinkhorn_blocks import block_rows
from assignsolve_plugins.sinkhorn_kernels import SinkhornState, column_update, sinkhorn_sweep

N_FULL, K, EPS = 1_281_167, 3000, 0.04


def main(n: int, iters: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.empty(n, K)
    for i in range(0, n, 65536):  # log-softmax of 2 * randn logits, built in chunks
        s[i:i + 65536] = (2.0 * torch.randn(min(65536, n - i), K, generator=g)).log_softmax(1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    dev, dt = torch.device("cpu"), torch.float32
    alpha = -s.amax(1) / EPS
    state = SinkhornState(beta=torch.zeros(K), log_v=torch.zeros(K), alpha=alpha, alpha_next=alpha.clone(), cache=None)
    a, b = torch.full((n,), 1.0 / n), torch.full((K,), 1.0 / K)
    args = dict(inv_eps=1.0 / EPS, block_size=block_rows(n, K, dev), device=dev, dtype=dt)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        c = sinkhorn_sweep(s, state, a, **args)
        column_update(s, state, a, b.log(), c, 1.0, absorb_threshold=30.0, **args)
        times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    best = min(times)
    print(f"N={n} K={K} float32 streaming, threads={torch.get_num_threads()} load={os.getloadavg()[0]:.2f}")
    print(f"seconds per iteration: {[round(x, 3) for x in times]} (best {best:.3f}); "
          f"extrapolated to N={N_FULL}: {best * N_FULL / n:.2f} s")
    print(f"peak RSS {rss:.2f} GiB (scores {n * K * 4 / 2**30:.2f} GiB; RSS after building S {rss0:.2f} GiB)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else N_FULL)
