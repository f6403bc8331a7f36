"""``sinkhorn-gpu``'s fused sweep (one read of each row block) against the two-pass iteration.

Reference: the textbook scaling iteration written out in float64 with whole-matrix products,
``r = K v``, ``u = 1 / r``, ``c = K^T (a u)`` (POT's ``sinkhorn_knopp`` and SeLa's loop make these
two passes); the sweep must give the same ``c`` and row stabiliser to float32 precision.
"""

from __future__ import annotations

import pytest
import torch

from assignsolve_plugins.sinkhorn_blocks import BlockRunner
from assignsolve_plugins.sinkhorn_kernels import SinkhornState, sinkhorn_sweep

N, K, EPS = 300, 40, 0.1


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    s = 2.0 * torch.rand(N, K, generator=g) - 1.0
    beta = 0.5 * torch.randn(K, generator=g)
    alpha = -(s / EPS + beta).amax(1)  # row stabiliser: the largest kernel entry of a row is 1
    a = torch.rand(N, generator=g) + 0.5
    log_v = 0.3 * torch.randn(K, generator=g)
    return s, beta, alpha, a / a.sum(), log_v


def _two_pass(s, beta, alpha, a, log_v, row_update=True):
    kt = torch.exp(s.double() / EPS + beta.double() + alpha.double()[:, None])
    if not row_update:
        return kt.T @ a.double(), alpha.double()
    r = kt @ log_v.double().exp()
    return kt.T @ (a.double() / r), alpha.double() - r.log()


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("block,workers", [(N, 1), (7, 2), (64, 2), (64, 1)])
@pytest.mark.parametrize("unit_v", [True, False])
def test_one_pass_sweep_equals_two_pass_iteration(cache, block, workers, unit_v):
    s, beta, alpha, a, log_v = _inputs(seed=block + workers)
    if unit_v:  # the streaming solver's case (v absorbed every sweep): plain row sums
        log_v = torch.zeros(K)
    state = SinkhornState(beta=beta.clone(), log_v=log_v.clone(), alpha=alpha.clone(),
                          alpha_next=alpha.clone(), cache=[] if cache else None,
                          runner=BlockRunner(N, block, torch.device("cpu"), workers=workers))
    with state.runner:
        c = sinkhorn_sweep(s, state, a, 1.0 / EPS, block, torch.device("cpu"), torch.float32)
    c_ref, alpha_ref = _two_pass(s, beta, alpha, a, log_v)
    rel = float(((c.double() - c_ref).abs() / c_ref).max())
    assert rel < 2e-6, rel
    assert float((state.alpha_next.double() - alpha_ref).abs().max()) < 2e-5
    assert state.runner.workers == min(workers, -(-N // block))


@pytest.mark.parametrize("cache", [True, False])
def test_sweep_without_row_update_is_plain_column_sums(cache):
    s, beta, alpha, a, log_v = _inputs(seed=3)
    state = SinkhornState(beta=beta, log_v=log_v, alpha=alpha.clone(), alpha_next=alpha.clone(),
                          cache=[] if cache else None, runner=BlockRunner(N, 16, torch.device("cpu"), workers=2))
    with state.runner:
        c = sinkhorn_sweep(s, state, a, 1.0 / EPS, 16, torch.device("cpu"), torch.float32, row_update=False)
    c_ref, _ = _two_pass(s, beta, alpha, a, log_v, row_update=False)
    assert float(((c.double() - c_ref).abs() / c_ref).max()) < 2e-6
    assert torch.equal(state.alpha_next, alpha)


def test_pool_threads_flush_denormals_and_the_caller_does_not():
    tiny = torch.tensor([1e-39])  # a float32 denormal
    seen = []
    runner = BlockRunner(256, 64, torch.device("cpu"), workers=2)  # 4 parts of one block, 2 workers
    assert runner.workers == 2
    with runner:
        runner.run(lambda g, p, s, e, first: seen.append(float(tiny * 1.0)))
    assert seen == [0.0] * 4  # flushed on both worker threads
    assert float(tiny * 1.0) == pytest.approx(1e-39, rel=1e-3)  # this thread's float mode is untouched


def test_dynamic_schedule_runs_every_block_once_and_balances():
    """Workers take the next part as they finish: a slowed worker does few parts; every block of
    every part runs exactly once, in order within its part, ``first`` on the part's first block."""
    import time

    runner = BlockRunner(1024, 16, torch.device("cpu"), workers=2, part_rows=64)  # 16 parts of 4 blocks
    assert (runner.n_parts, runner.workers) == (16, 2)
    seen = []

    def fn(g, p, s, e, first):
        if g == 0:
            time.sleep(0.02)
        seen.append((g, p, s, e, first))

    with runner:
        runner.run(fn)
    assert sorted((s, e) for _, _, s, e, _ in seen) == [(s, s + 16) for s in range(0, 1024, 16)]
    for p in range(16):
        mine = [x for x in seen if x[1] == p]
        assert len({g for g, *_ in mine}) == 1  # one worker per part
        assert [x[4] for x in mine] == [True, False, False, False]
        assert [x[2] for x in mine] == sorted(x[2] for x in mine)
    assert sum(1 for x in seen if x[0] == 1 and x[4]) >= 12  # the fast worker took most parts
