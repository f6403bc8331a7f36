"""Benchmark: the ``lp`` solver (cvxpy + HiGHS simplex) against its exact peers, in the same run.

* transport form vs ``ot.emd`` (POT's network simplex, C++) on N = 500, K = 20;
* size-bounded assignment form vs ``scipy.optimize.linear_sum_assignment`` on the cost matrix
  with each cluster column replicated ``max_cluster_size`` times (the textbook reduction).

Run with ``python -m pytest benchmarks/bench_lp.py --benchmark-enable`` (timed, several rounds);
without ``--benchmark-enable`` (the project default) each function runs once as a smoke test.
``extra_info`` records the peer's median time and the ratio ``lp / peer`` (> 1: lp slower).
Both also check the objectives agree, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import ot
from assignsolve import Problem
from assignsolve_plugins.lp import LPSolver

N, K = 500, 20
ROUNDS = 5


def _scores(seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(scale=2.0, size=(N, K))
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _record(benchmark, peer: str, peer_seconds: float, solver, problem) -> None:
    if benchmark.stats is not None:  # timed run
        lp_seconds = benchmark.stats.stats.median
    else:  # --benchmark-disable: time one call ourselves so the ratio is still reported
        lp_seconds = _median_seconds(lambda: solver(problem), 1)
    benchmark.extra_info.update({
        "N": N, "K": K, "peer": peer, "lp_median_s": lp_seconds, "peer_median_s": peer_seconds,
        "ratio_lp_over_peer": lp_seconds / peer_seconds,
    })


@pytest.mark.benchmark(group="lp-transport")
def test_lp_transport_vs_ot_emd(benchmark):
    S = _scores()
    a, b = np.full(N, 1 / N), np.full(K, 1 / K)
    problem, solver = Problem(scores=S), LPSolver()
    result = benchmark.pedantic(solver, args=(problem,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    rounds = ROUNDS if benchmark.enabled else 1
    peer_seconds = _median_seconds(lambda: ot.emd(a, b, -S), rounds)
    reference = float((ot.emd(a, b, -S) * S).sum())
    assert result.converged and result.objective == pytest.approx(reference, rel=1e-8)
    _record(benchmark, "ot.emd", peer_seconds, solver, problem)


@pytest.mark.benchmark(group="lp-bounded")
def test_lp_bounded_vs_replicated_hungarian(benchmark):
    S = _scores(seed=1)
    S[:, 0] += 1.5  # a popular cluster, so the bound binds
    hi = 30
    problem, solver = Problem(scores=S, max_cluster_size=hi), LPSolver()
    result = benchmark.pedantic(solver, args=(problem,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    rounds = ROUNDS if benchmark.enabled else 1

    def hungarian():
        return linear_sum_assignment(np.repeat(S, hi, axis=1), maximize=True)

    peer_seconds = _median_seconds(hungarian, rounds)
    rows, cols = hungarian()
    reference = float(S[rows, cols // hi].sum()) / N
    assert result.cluster_sizes.max() <= hi
    assert result.converged and result.objective == pytest.approx(reference, rel=1e-8)
    _record(benchmark, "linear_sum_assignment (replicated columns)", peer_seconds, solver, problem)
