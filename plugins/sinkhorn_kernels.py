r"""The ``sinkhorn-gpu`` sweeps: stabilised kernel blocks, fused row/column passes, exact repairs.

See :mod:`assignsolve_plugins.sinkhorn_gpu` for the algorithm. Kernel blocks are computed as
``exp2((S/eps + beta + alpha) * log2 e)``: torch's CPU ``exp`` is ~4x slower than ``exp2`` here
and takes a very slow scalar path for results below the normal range. Row blocks are scheduled
by :class:`~assignsolve_plugins.sinkhorn_blocks.BlockRunner` (worker threads on CPU that flush
denormals, one join per sweep); column sums accumulate per part and are added by cascade
summation. Row sums are ``torch.sum`` (of the streamed block, or of ``K v`` for the cached one).
"""

from __future__ import annotations

import math

import attrs
import torch

from .sinkhorn_blocks import LOG2E, BlockRunner, all_reduce
from .sinkhorn_swav import colsum_into

__all__ = ["SinkhornState", "sinkhorn_sweep", "column_update", "soft_codes", "column_logsumexp",
           "CACHED_ZERO_MARGIN"]

# The cached kernel stores entries below exp(log(tiny) + 1 + margin) as zeros, so that its
# products with the scalings (|log v| <= absorb_threshold, a_i / r_i) stay normal floats
# (float32 denormal products are ~100x slower on some x86 CPUs).
CACHED_ZERO_MARGIN = 40.0
_ZERO_SLACK = 1.001
_all_reduce = all_reduce


def _limits(dtype: torch.dtype, cached: bool = False) -> tuple[float, float, float, float]:
    """(exponent floor, row-sum low, row-sum high, column-mass low factor) for ``dtype``.

    With ``cached`` the floor is the cached kernel's zeroing threshold (entries whose
    exponent is below it are stored as exact zeros, see :func:`_kernel_block`).
    """
    fi = torch.finfo(dtype)
    floor = math.log(fi.tiny) + 1.0 + (CACHED_ZERO_MARGIN if cached else 0.0)
    lo, hi = 2.0 ** -20, 2.0 ** 60 if dtype == torch.float32 else 2.0 ** 500
    # Floored entries add at most exp(floor) * mass / lo to a column sum; a column mass
    # above col_lo * mass is therefore exact to the dtype's precision.
    col_lo = math.exp(floor) / lo / fi.eps
    return floor, lo, hi, col_lo


@torch.no_grad()
def column_logsumexp(scores: torch.Tensor, cols: torch.Tensor, log_w: torch.Tensor, inv_eps: float,
                     block_size: int, device: torch.device, dtype: torch.dtype,
                     distributed: bool = False) -> torch.Tensor:
    r"""Exact :math:`\log\sum_i \exp(\log w_i + S_{ik}/\varepsilon)` for the columns ``cols``.

    Two streamed passes (column max, then shifted sum) over ``S[:, cols]``, all-reduced
    across ranks when ``distributed``. Used to repair columns whose mass underflowed.

    Parameters
    ----------
    scores : tensor [N, K]
        Scores, any device and floating dtype.
    cols : tensor [J] int64
        Columns to compute, on ``device``.
    log_w : tensor [N]
        Log row weights (``log a_i + alpha_i``), compute dtype, ``device``.
    inv_eps : float
        ``1 / epsilon``.
    block_size : int
        Rows per block.
    device, dtype : torch.device, torch.dtype
        Compute device and dtype.
    distributed : bool
        All-reduce (max, then sum) across ranks.

    Returns
    -------
    tensor [J]
    """
    floor = _limits(dtype)[0]
    n = scores.shape[0]
    cols_src = cols.to(scores.device)
    m = torch.full((cols.numel(),), -math.inf, dtype=dtype, device=device)
    for s in range(0, n, block_size):
        x = scores[s:s + block_size].index_select(1, cols_src).to(device, dtype).mul_(inv_eps)
        x.add_(log_w[s:s + block_size, None])
        m = torch.maximum(m, x.amax(0))
    _all_reduce(m, torch.distributed.ReduceOp.MAX, distributed)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    acc = torch.zeros_like(m)
    for s in range(0, n, block_size):
        x = scores[s:s + block_size].index_select(1, cols_src).to(device, dtype).mul_(inv_eps)
        x.add_(log_w[s:s + block_size, None]).sub_(m_safe).mul_(LOG2E).exp2_()
        acc += x.sum(0)
    _all_reduce(acc, torch.distributed.ReduceOp.SUM, distributed)
    return acc.log() + m_safe




@attrs.define
class SinkhornState:
    """Vectors carried between sweeps (never an ``N x K`` matrix unless ``cache`` is set).

    Attributes
    ----------
    beta : tensor [K]
        Absorbed column potential divided by epsilon, ``g / eps``.
    log_v : tensor [K]
        Column scaling not yet absorbed into ``beta`` (zero in streaming mode).
    alpha : tensor [N]
        Row stabiliser the kernel of each row was built with.
    alpha_next : tensor [N]
        ``alpha - log(row sum)`` from the last sweep (the absorbed row update).
    cache : tensor [N, K], list or None
        Cached kernel ``exp(S/eps + beta + alpha)`` as one contiguous tensor; ``None`` when
        streaming. Any other non-``None`` value (e.g. ``[]``) requests a cache, built on
        the first sweep.
    stale : bool
        Whether the cache must be rebuilt (after an absorption).
    runner : BlockRunner or None
        Row-block schedule of this solve (built on the first sweep when None).
    parts : tensor [P, K] or None
        Per-part column sums (scratch).
    scratch : list of tensors
        One ``[rows, K]`` block buffer per worker (streaming mode).
    """

    beta: torch.Tensor
    log_v: torch.Tensor
    alpha: torch.Tensor
    alpha_next: torch.Tensor
    cache: torch.Tensor | list | None
    stale: bool = True
    runner: BlockRunner | None = None
    parts: torch.Tensor | None = None
    scratch: list = attrs.field(factory=list)


def _prepare(state: SinkhornState, n: int, k: int, block_size: int, device, dtype) -> BlockRunner:
    if state.runner is None:
        state.runner = BlockRunner(n, block_size, device)
    if state.parts is None:
        state.parts = torch.empty((state.runner.n_parts, k), dtype=dtype, device=device)
    if not state.scratch:  # one block buffer per worker: streamed kernel, or K * v of a cached block
        state.scratch = [torch.empty((min(n, block_size), k), dtype=dtype, device=device)
                         for _ in range(state.runner.workers)]
    return state.runner


@torch.no_grad()
def _kernel_block(s_blk: torch.Tensor, beta2: torch.Tensor, alpha2_blk: torch.Tensor, inv2: float,
                  out: torch.Tensor | None = None, zero_below: float | None = None) -> torch.Tensor:
    r"""``exp2(S/eps * log2 e + beta2 + alpha2)`` for one block (base-2 potentials).

    Parameters
    ----------
    s_blk : tensor [B, K]
        Scores of the block, compute dtype and device.
    beta2 : tensor [K]
        ``beta * log2 e``.
    alpha2_blk : tensor [B]
        ``alpha * log2 e``.
    inv2 : float
        ``log2 e / epsilon``.
    out : tensor [B, K], optional
        Buffer to write into.
    zero_below : float, optional
        Store entries below this value as exact zeros (cached kernel).
    """
    out = torch.add(beta2, s_blk, alpha=inv2, out=out)
    out.add_(alpha2_blk[:, None]).exp2_()
    if zero_below is not None:
        torch.nn.functional.threshold_(out, zero_below, 0.0)
    return out


def _stable_lse_rows(x: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Row log-sum-exp of ``x`` [B, K] (in place: ``x`` becomes ``exp(x - max)``).

    Returns ``(lse [B], rowsum [B])``. ``floor`` is accepted for the callers' vocabulary:
    ``exp2`` needs no exponent floor.
    """
    m = x.amax(1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    x.sub_(m[:, None]).mul_(LOG2E).exp2_()
    ssum = x.sum(1)
    return m + ssum.log(), ssum


@torch.no_grad()
def _exact_alpha(s_rows: torch.Tensor, beta_v: torch.Tensor, inv_eps: float, floor: float) -> torch.Tensor:
    r"""Exact row stabiliser :math:`-\log\sum_k \exp(S_{ik}/\varepsilon + \beta_k + \log v_k)`.

    Parameters
    ----------
    s_rows : tensor [B, K]
        Scores of the rows to repair (compute dtype and device).
    beta_v : tensor [K]
        ``beta + log_v``.
    inv_eps : float
        ``1 / epsilon``.
    floor : float
        Exponent floor.
    """
    return -_stable_lse_rows(torch.add(beta_v, s_rows, alpha=inv_eps), floor)[0]






@torch.no_grad()
def _build_kernel(scores, state: SinkhornState, inv_eps: float, device, dtype, floor: float) -> torch.Tensor:
    """(Re)build the whole cached kernel ``exp(S/eps + beta + alpha)`` as one contiguous tensor."""
    n, k = scores.shape
    kmat = state.cache
    if not (isinstance(kmat, torch.Tensor) and kmat.shape == (n, k) and kmat.dtype == dtype
            and kmat.device == device and kmat.is_contiguous()):
        kmat = torch.empty((n, k), dtype=dtype, device=device)
    beta2, alpha2, zero = state.beta * LOG2E, state.alpha * LOG2E, math.exp(floor) * _ZERO_SLACK

    def build(g, p, s, e, first):
        _kernel_block(scores[s:e].to(device, dtype, non_blocking=True), beta2, alpha2[s:e], inv_eps * LOG2E,
                      out=kmat[s:e], zero_below=zero)
    state.runner.run(build)
    state.cache = kmat
    state.stale = False
    return kmat


def _bad_rows(r: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ~((r > lo) & (r < hi))


@torch.no_grad()
def sinkhorn_sweep(scores: torch.Tensor, state: SinkhornState, a: torch.Tensor, inv_eps: float,
                   block_size: int, device: torch.device, dtype: torch.dtype,
                   row_update: bool = True, distributed: bool = False) -> torch.Tensor:
    r"""One fused Sinkhorn sweep: row update and column sums in a single pass over the matrix.

    For each row block, with :math:`\tilde K_{ik} = \exp(S_{ik}/\varepsilon + \beta_k + \alpha_i)`
    (cached, or recomputed from ``S`` when streaming): :math:`r_i = \sum_k \tilde K_{ik} v_k`
    (row update :math:`u_i = 1/r_i`) and :math:`c_k \mathrel{+}= \sum_i a_i u_i \tilde K_{ik}`,
    so that the plan after the row update has column sums :math:`v_k c_k`. The block is read
    from memory once; its second product runs from cache. With ``row_update=False`` (SwAV's
    first column normalisation) ``u = 1``. If a row sum leaves the safe range (rare: first
    sweeps on peaked scores), those rows get an exact ``logsumexp`` stabiliser and the sweep
    is redone.

    Parameters
    ----------
    scores : tensor [N, K]
        Scores (any device, any float dtype; blocks are moved/cast on the fly).
    state : SinkhornState
        Potentials; ``alpha_next`` is written, the cache (if any) is rebuilt if stale.
    a : tensor [N]
        Row masses (compute dtype, ``device``).
    inv_eps : float
        ``1 / epsilon``.
    block_size : int
        Rows per block.
    device, dtype : torch.device, torch.dtype
        Compute device and dtype.
    row_update : bool
        Apply the row update before accumulating column sums.
    distributed : bool
        All-reduce the column sums across ranks.

    Returns
    -------
    c : tensor [K]
        Column sums of the plan divided by ``v`` (all-reduced).
    """
    cached = state.cache is not None
    floor, lo, hi, _ = _limits(dtype, cached=cached)
    n, k = scores.shape
    runner = _prepare(state, n, k, block_size, device, dtype)
    if cached and (state.stale or not isinstance(state.cache, torch.Tensor)):
        state.alpha.copy_(state.alpha_next)
        _build_kernel(scores, state, inv_eps, device, dtype, floor)
    v = state.log_v.exp()
    # streaming absorbs v into beta every sweep (column_update), so v is 1 and r is a plain row sum
    unit_v = not cached and not bool(state.log_v.any())
    r_all = torch.empty(n, dtype=dtype, device=device)
    parts = state.parts
    inv2 = inv_eps * LOG2E

    def block(g, p, s, e, first):
        if cached:
            kt = state.cache[s:e]
        else:
            kt = _kernel_block(scores[s:e].to(device, dtype, non_blocking=True), beta2, alpha2[s:e], inv2,
                               out=state.scratch[g][: e - s])
        if row_update:
            # row sums by cascade summation (torch.sum; faster than mv here and more accurate)
            if unit_v:
                r = torch.sum(kt, 1, out=r_all[s:e])
            elif cached:
                r = torch.sum(torch.mul(kt, v, out=state.scratch[g][: e - s]), 1, out=r_all[s:e])
            else:  # streamed block in the scratch buffer, v not absorbed (not reached by the solver)
                r = torch.mv(kt, v, out=r_all[s:e])
            colsum_into(kt, torch.div(a[s:e], r), parts[p], first)
        else:
            colsum_into(kt, a[s:e], parts[p], first)

    for attempt in range(2):
        beta2, alpha2 = state.beta * LOG2E, state.alpha * LOG2E
        runner.run(block)
        c = parts.sum(0)
        if not row_update:
            state.alpha_next.copy_(state.alpha)
            break
        bad = _bad_rows(r_all, lo, hi)
        if attempt == 1 or not bool(bad.any()):
            break
        # exact repair of the bad rows' stabilisers (and cached kernel rows), then redo the sweep
        idx = bad.nonzero().squeeze(1)
        s_rows = scores.index_select(0, idx.to(scores.device)).to(device, dtype)
        state.alpha[idx] = _exact_alpha(s_rows, state.beta + state.log_v, inv_eps, floor)
        if cached:
            state.cache[idx] = _kernel_block(s_rows, state.beta * LOG2E, state.alpha[idx] * LOG2E, inv2,
                                             zero_below=math.exp(floor) * _ZERO_SLACK)
    if row_update:
        torch.sub(state.alpha, r_all.log(), out=state.alpha_next)
    return _all_reduce(c, torch.distributed.ReduceOp.SUM, distributed)


@torch.no_grad()
def column_update(scores: torch.Tensor, state: SinkhornState, a: torch.Tensor, log_b: torch.Tensor,
                  c: torch.Tensor, mass: float, inv_eps: float, block_size: int,
                  device: torch.device, dtype: torch.dtype, absorb_threshold: float,
                  distributed: bool = False) -> None:
    r"""Column update :math:`v_k \leftarrow b_k / c_k`, exact where ``c_k`` underflowed, then absorb.

    Parameters
    ----------
    scores : tensor [N, K]
        Scores (for the exact repair of tiny columns).
    state : SinkhornState
        Updated in place: ``log_v`` (and ``beta``, ``alpha``, ``stale`` on absorption).
    a : tensor [N]
        Row masses.
    log_b : tensor [K]
        Log column masses.
    c : tensor [K]
        Output of :func:`sinkhorn_sweep`.
    mass : float
        Total mass ``sum(a)``.
    inv_eps : float
        ``1 / epsilon``.
    block_size : int
        Rows per block.
    device, dtype : torch.device, torch.dtype
        Compute device and dtype.
    absorb_threshold : float
        Absorb ``log_v`` into ``beta`` when ``max |log v|`` exceeds it (``0``: always).
    distributed : bool
        All-reduce the repair across ranks.
    """
    col_lo = _limits(dtype, cached=state.cache is not None)[3] * _ZERO_SLACK
    log_c = c.log()
    tiny = ~(c > col_lo * mass)
    if bool(tiny.any()):
        cols = tiny.nonzero().squeeze(1)
        log_w = a.log() + state.alpha_next
        log_c[cols] = column_logsumexp(scores, cols, log_w, inv_eps, block_size, device, dtype,
                                       distributed) + state.beta[cols]
    new_log_v = log_b - log_c  # plan column sums v_k c_k become b_k
    state.log_v.copy_(new_log_v)
    if state.cache is None or bool(new_log_v.abs().max() > absorb_threshold) or bool(tiny.any()):
        state.beta.add_(state.log_v)
        state.log_v.zero_()
        if state.cache is None:
            state.alpha.copy_(state.alpha_next)
        else:
            state.stale = True


@torch.no_grad()
def soft_codes(scores: torch.Tensor, state: SinkhornState, a: torch.Tensor, inv_eps: float,
               block_size: int, device: torch.device, dtype: torch.dtype,
               out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    r"""Row-normalised plan :math:`\mathrm{softmax}_k(S_{ik}/\varepsilon + \beta_k + \log v_k)`.

    This is the final row update, so the returned codes' rows sum to one exactly and
    the plan is ``a[:, None] * codes``. Also returns the dual objective
    :math:`\langle Q, S\rangle + \varepsilon H(Q) = -\varepsilon(\sum_i a_i\log a_i
    + \sum_k q_k (\beta_k + \log v_k) - \sum_i a_i \ell_i)` with :math:`q = Q^\top 1`
    and :math:`\ell_i` the row log-normalisers.

    Parameters
    ----------
    scores : tensor [N, K]
    state : SinkhornState
    a : tensor [N]
    inv_eps : float
    block_size : int
    device, dtype : compute device and dtype
    out_dtype : torch.dtype
        dtype of the returned codes.

    Returns
    -------
    codes : tensor [N, K] (on ``device``)
    col_mass : tensor [K]
        :math:`q = Q^\top 1` (this rank's rows).
    row_part : tensor []
        :math:`\sum_i a_i \log a_i - \sum_i a_i \ell_i` (this rank's rows).
    """
    n, k = scores.shape
    floor = _limits(dtype)[0]
    beta_v = state.beta + state.log_v
    codes = torch.empty((n, k), dtype=out_dtype, device=device)
    lse = torch.empty(n, dtype=dtype, device=device)
    for s in range(0, n, block_size):
        e = min(n, s + block_size)
        x = torch.add(beta_v, scores[s:e].to(device, dtype), alpha=inv_eps)
        lse[s:e], ssum = _stable_lse_rows(x, floor)
        codes[s:e] = x.div_(ssum[:, None])
    col_mass = (a.to(out_dtype) @ codes).to(dtype)
    row_part = torch.xlogy(a, a).sum() - a @ lse  # per-rank part of the objective
    return codes, col_mass, row_part
