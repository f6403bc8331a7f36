r"""``sinkhorn-gpu``: a fast, streaming, log-stabilised Sinkhorn-Knopp in torch.

Solves the entropic optimal-transport problem of SeLa / SwAV pseudo-labelling

.. math::

    \max_{Q \ge 0} \; \langle Q, S \rangle + \varepsilon H(Q)
    \quad \text{s.t.} \quad Q \mathbf 1_K = a, \; Q^\top \mathbf 1_N = b,
    \qquad H(Q) = -\sum_{ik} Q_{ik} \log Q_{ik},

whose solution is :math:`Q_{ik} = a_i \exp((S_{ik} + g_k)/\varepsilon - \ell_i)` with
:math:`\ell_i = \log\sum_k \exp((S_{ik} + g_k)/\varepsilon)`. With
:math:`S = \log \mathrm{softmax}(\text{logits})` and :math:`\varepsilon = 1/\lambda`
this is SeLa's :math:`P^\lambda` scaling (Asano et al., ICLR 2020, lambda = 25 on
ImageNet); with :math:`S` = prototype scores and :math:`\varepsilon = 0.05`, three
iterations, it is SwAV's ``distributed_sinkhorn`` (Caron et al., NeurIPS 2020).

Design (what makes it fast and finite)
--------------------------------------
* **Matrix-vector form, one fused sweep per iteration.** Only vectors live between
  iterations: the column potential ``g`` [K] (stored as ``beta = g/eps``), a column
  scaling ``v`` [K] and a row stabiliser ``alpha`` [N]. An iteration streams over row
  blocks of ``S``; for a block it forms the stabilised kernel
  ``Kt = exp(S/eps + beta + alpha)``, does the row update ``u = 1/(Kt v)`` *and*
  accumulates the column sums ``c += (a u)^T Kt`` while the block is still in cache,
  then ``v = b / c``. SeLa's loop (``yukimasano/self-label``, ``sinkhornknopp.py``)
  and POT's ``sinkhorn_knopp`` read the matrix twice per iteration (``K v`` then
  ``K^T u``); the fused sweep reads ``S`` from memory once.
* **Log-domain absorption** (Schmitzer, "Stabilized sparse scaling algorithms for
  entropy regularized transport problems", SIAM J. Sci. Comput. 2019; POT's
  ``sinkhorn_stabilized``): the scalings are folded into ``alpha``/``beta``. In the
  streaming mode this happens every sweep, so each kernel row sums to about one and,
  after an exact column update, row sums stay within ``[min_k b_k / m, m / a_i]``
  (``m`` the total mass): finite in float32 at SeLa's ``epsilon = 0.04`` where plain
  ``exp(S/eps)`` underflows to zero. With a cached kernel (``cache_kernel``) the kernel
  is one contiguous ``N x K`` tensor, an iteration is ``r = K v``, ``u = a / r``,
  ``c = K^T u`` (fused over 512 KiB row chunks on CPU, two whole ``mv`` on CUDA) plus
  vector ops, and the scalings are absorbed, and the kernel rebuilt, only when
  ``|log v|`` exceeds ``absorb_threshold``. Cached entries below
  ``exp(log(tiny) + 41)`` are stored as exact zeros (their products with the scalings
  would be slow float denormals); the tiny-column repair threshold is raised to match.
* **Exact repairs instead of NaNs.** A row whose kernel sum leaves a safe range gets
  its stabiliser recomputed by an exact ``logsumexp``; a column whose mass is so small
  that float underflow could have corrupted it (e.g. a cluster no sample prefers,
  early on) gets an exact column ``logsumexp`` over ``S``. Exponents are floored at
  ``log(tiny) + 1`` (inputs below that hit a slow scalar path in CPU ``exp``, and the
  floor changes sums by less than one unit in the last place of the repaired ranges).
* **Streaming and memory.** ``S`` is never copied whole: each block is moved to
  ``device`` and cast to the compute ``dtype`` on the fly (so ``S`` may stay on the
  CPU, in bf16/fp16, while the sweep runs on CUDA). Without a cache the solver holds
  one block of ``exp``-values (``block_size x K``) plus O(N + K) vectors; with
  ``cache_kernel`` it additionally holds the ``N x K`` kernel on ``device``.
* **Distributed rows.** With ``torch.distributed`` initialised (or
  ``distributed=True``) each rank passes its own rows; column sums, the global row
  count and the SwAV global max are ``all_reduce``-d, so every rank holds the same
  ``g`` and its own rows of the plan.

References: Cuturi (NeurIPS 2013); Asano, Rupprecht, Vedaldi (ICLR 2020) and
``yukimasano/self-label``; Caron et al. (NeurIPS 2020) and
``facebookresearch/swav`` ``main_swav.py``; Schmitzer (2019) and POT
``ot/bregman/_sinkhorn.py`` (``sinkhorn_log``, ``sinkhorn_stabilized``).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import attrs
import torch

import assignsolve
from assignsolve import Assignment, BaseSolver, Problem
from assignsolve.plugin import resolve_device

__all__ = ["SinkhornGPU", "SinkhornState", "sinkhorn_sweep", "column_logsumexp", "auto_block_size"]

_CPU_BLOCK_BYTES = 2 << 20  # one block of exp-values stays in a 2 MiB L2 on CPU
_CUDA_BLOCK_BYTES = 256 << 20
_CACHE_AUTO_BYTES = 1 << 30  # cache_kernel="auto" caches a kernel up to 1 GiB
_CACHED_FUSED_BYTES = 512 << 10  # CPU cached sweep: fused K v / K^T u over 512 KiB row chunks
# The cached kernel stores entries below exp(log(tiny) + 1 + margin) as zeros, so that its
# products with the scalings (|log v| <= absorb_threshold, a_i / r_i) stay normal floats.
_CACHED_ZERO_MARGIN = 40.0
_ZERO_SLACK = 1.001


# ---------------------------------------------------------------------------- helpers
def auto_block_size(n: int, k: int, device: torch.device, itemsize: int = 4) -> int:
    """Rows per block: ~2 MiB of exp-values on CPU (cache-resident), ~256 MiB on CUDA.

    Parameters
    ----------
    n, k : int
        ``N`` rows, ``K`` columns.
    device : torch.device
        Compute device.
    itemsize : int
        Bytes per element of the compute dtype.
    """
    budget = _CPU_BLOCK_BYTES if device.type == "cpu" else _CUDA_BLOCK_BYTES
    rows = max(1, budget // max(1, k * itemsize))
    if device.type != "cpu":
        rows = min(rows, 65536)
    return int(min(n, rows))


def _limits(dtype: torch.dtype, cached: bool = False) -> tuple[float, float, float, float]:
    """(exponent floor, row-sum low, row-sum high, column-mass low factor) for ``dtype``.

    With ``cached`` the floor is the cached kernel's zeroing threshold (entries whose
    exponent is below it are stored as exact zeros, see :func:`_kernel_block`).
    """
    fi = torch.finfo(dtype)
    floor = math.log(fi.tiny) + 1.0 + (_CACHED_ZERO_MARGIN if cached else 0.0)
    lo, hi = 2.0 ** -20, 2.0 ** 60 if dtype == torch.float32 else 2.0 ** 500
    # Floored entries add at most exp(floor) * mass / lo to a column sum; a column mass
    # above col_lo * mass is therefore exact to the dtype's precision.
    col_lo = math.exp(floor) / lo / fi.eps
    return floor, lo, hi, col_lo


def _all_reduce(t: torch.Tensor, op, distributed: bool) -> torch.Tensor:
    if distributed:
        torch.distributed.all_reduce(t, op=op)
    return t


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
    """

    beta: torch.Tensor
    log_v: torch.Tensor
    alpha: torch.Tensor
    alpha_next: torch.Tensor
    cache: torch.Tensor | list | None
    stale: bool = True


@torch.no_grad()
def _kernel_block(s_blk: torch.Tensor, beta: torch.Tensor, alpha_blk: torch.Tensor, inv_eps: float,
                  floor: float, out: torch.Tensor | None = None, zero_floor: bool = False) -> torch.Tensor:
    r"""``exp(max(S/eps + beta + alpha, floor))`` for one block (``0`` at the floor if ``zero_floor``).

    Parameters
    ----------
    s_blk : tensor [B, K]
        Scores of the block, compute dtype and device.
    beta : tensor [K]
        Column potential / eps.
    alpha_blk : tensor [B]
        Row stabilisers.
    inv_eps : float
        ``1 / epsilon``.
    floor : float
        Exponent floor (``log(tiny) + 1``).
    out : tensor [B, K], optional
        Buffer to write into.
    zero_floor : bool
        Store entries at the floor as exact zeros (cached kernel).
    """
    out = torch.add(beta, s_blk, alpha=inv_eps, out=out)
    out.add_(alpha_blk[:, None]).clamp_min_(floor).exp_()
    if zero_floor:
        # floored entries become exact zeros: products of tiny kernel entries with the
        # scaling vectors would otherwise be float denormals (~100x slower on CPU)
        torch.nn.functional.threshold_(out, math.exp(floor) * _ZERO_SLACK, 0.0)
    return out


def _stable_lse_rows(x: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Row log-sum-exp of ``x`` [B, K] (in place: ``x`` becomes ``exp(x - max)``, floored).

    Returns ``(lse [B], rowsum [B])``. The exponent floor avoids the slow scalar path
    of CPU ``exp`` for arguments below ``log(tiny)``.
    """
    m = x.amax(1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    x.sub_(m[:, None]).clamp_min_(floor).exp_()
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
        x.add_(log_w[s:s + block_size, None]).sub_(m_safe).clamp_min_(floor).exp_()
        acc += x.sum(0)
    _all_reduce(acc, torch.distributed.ReduceOp.SUM, distributed)
    return acc.log() + m_safe


def _cached_rows(n: int, k: int, device: torch.device, itemsize: int) -> int:
    """Rows per fused chunk of the cached kernel (0: two whole-matrix ``mv`` instead)."""
    if device.type != "cpu" or _CACHED_FUSED_BYTES <= 0:
        return 0
    return int(max(1, min(n, _CACHED_FUSED_BYTES // max(1, k * itemsize))))


@torch.no_grad()
def _build_kernel(scores: torch.Tensor, state: SinkhornState, inv_eps: float, block_size: int,
                  device: torch.device, dtype: torch.dtype, floor: float) -> torch.Tensor:
    """(Re)build the whole cached kernel ``exp(S/eps + beta + alpha)`` as one contiguous tensor."""
    n, k = scores.shape
    kmat = state.cache
    if not (isinstance(kmat, torch.Tensor) and kmat.shape == (n, k) and kmat.dtype == dtype
            and kmat.device == device and kmat.is_contiguous()):
        kmat = torch.empty((n, k), dtype=dtype, device=device)
    for s in range(0, n, block_size):
        e = min(n, s + block_size)
        _kernel_block(scores[s:e].to(device, dtype, non_blocking=True), state.beta, state.alpha[s:e],
                      inv_eps, floor, out=kmat[s:e], zero_floor=True)
    state.cache = kmat
    state.stale = False
    return kmat


@torch.no_grad()
def _cached_sweep(scores: torch.Tensor, state: SinkhornState, a: torch.Tensor, inv_eps: float,
                  block_size: int, device: torch.device, dtype: torch.dtype,
                  row_update: bool, distributed: bool) -> torch.Tensor:
    r"""Cached-kernel sweep: ``r = K v``, ``u = a / r``, ``c = K^T u`` on one contiguous ``K``.

    On CPU the two products are fused over chunks of ``_CACHED_FUSED_BYTES`` (the chunk
    is read from memory once, its second product runs from cache); on CUDA they are two
    whole-matrix ``mv``. Only vector ops besides; the kernel is rebuilt only after an
    absorption (``stale``), and only the offending rows after an exact row repair.
    """
    floor, lo, hi, _ = _limits(dtype, cached=True)
    n, k = scores.shape
    if state.stale or not isinstance(state.cache, torch.Tensor):
        state.alpha.copy_(state.alpha_next)
        _build_kernel(scores, state, inv_eps, block_size, device, dtype, floor)
    kmat = state.cache
    v = state.log_v.exp()
    if not row_update:
        c = torch.mv(kmat.T, a)
        state.alpha_next.copy_(state.alpha)
        return _all_reduce(c, torch.distributed.ReduceOp.SUM, distributed)
    rows = _cached_rows(n, k, device, kmat.element_size())
    r_all = torch.empty(n, dtype=dtype, device=device)
    for attempt in range(2):
        if rows:
            c = torch.zeros(k, dtype=dtype, device=device)
            for s in range(0, n, rows):
                kb = kmat[s:s + rows]
                rb = torch.mv(kb, v, out=r_all[s:s + rows])
                c.addmv_(kb.T, a[s:s + rows] / rb)
        else:
            torch.mv(kmat, v, out=r_all)
            c = torch.mv(kmat.T, a / r_all)
        bad = ~((r_all > lo) & (r_all < hi))
        if attempt == 1 or not bool(bad.any()):
            break
        # exact repair of the bad rows' stabilisers and kernel rows, then redo the sweep
        idx = bad.nonzero().squeeze(1)
        s_rows = scores.index_select(0, idx.to(scores.device)).to(device, dtype)
        state.alpha[idx] = _exact_alpha(s_rows, state.beta + state.log_v, inv_eps, floor)
        kmat[idx] = _kernel_block(s_rows, state.beta, state.alpha[idx], inv_eps, floor, zero_floor=True)
    torch.sub(state.alpha, r_all.log(), out=state.alpha_next)
    return _all_reduce(c, torch.distributed.ReduceOp.SUM, distributed)


@torch.no_grad()
def sinkhorn_sweep(scores: torch.Tensor, state: SinkhornState, a: torch.Tensor, inv_eps: float,
                   block_size: int, device: torch.device, dtype: torch.dtype,
                   row_update: bool = True, distributed: bool = False) -> torch.Tensor:
    r"""One fused Sinkhorn sweep: row update and column sums in a single pass over ``S``.

    For each row block, with :math:`\tilde K_{ik} = \exp(S_{ik}/\varepsilon + \beta_k + \alpha_i)`:
    :math:`r_i = \sum_k \tilde K_{ik} v_k` (row update :math:`u_i = 1/r_i`) and
    :math:`c_k \mathrel{+}= \sum_i a_i u_i \tilde K_{ik}`, so that the plan after the row
    update has column sums :math:`v_k c_k`. The block is read from memory once; the two
    reductions run on it while it is in cache. With ``row_update=False`` (SwAV's first
    column normalisation) ``u = 1``. If any row sum leaves the safe range (rare: first
    sweeps on peaked scores), those rows get an exact ``logsumexp`` stabiliser and the
    sweep is redone, so one host sync per sweep suffices.

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
    if state.cache is not None:
        return _cached_sweep(scores, state, a, inv_eps, block_size, device, dtype, row_update, distributed)
    floor, lo, hi, _ = _limits(dtype)
    n, k = scores.shape
    v = state.log_v.exp()
    r_all = torch.empty(n, dtype=dtype, device=device)
    for attempt in range(2):
        c = torch.zeros(k, dtype=dtype, device=device)
        buf = None
        for s in range(0, n, block_size):
            e = min(n, s + block_size)
            s_blk = scores[s:e].to(device, dtype, non_blocking=True)
            if buf is None or buf.shape[0] != e - s:
                buf = torch.empty((e - s, k), dtype=dtype, device=device)
            kt = _kernel_block(s_blk, state.beta, state.alpha[s:e], inv_eps, floor, out=buf)
            if row_update:
                r = torch.mv(kt, v, out=r_all[s:e])
                c.addmv_(kt.T, a[s:e] / r)
            else:
                c.addmv_(kt.T, a[s:e])
        if not row_update:
            state.alpha_next.copy_(state.alpha)
            break
        bad = ~((r_all > lo) & (r_all < hi))
        if attempt == 1 or not bool(bad.any()):
            break
        # exact repair of the bad rows' stabilisers, then redo the sweep
        idx = bad.nonzero().squeeze(1)
        s_rows = scores.index_select(0, idx.to(scores.device)).to(device, dtype)
        state.alpha[idx] = _exact_alpha(s_rows, state.beta + state.log_v, inv_eps, floor)
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


# ------------------------------------------------------------------------------ solver
@attrs.frozen
class SinkhornGPU(BaseSolver):
    r"""Streaming log-stabilised Sinkhorn-Knopp in torch (SeLa / SwAV), CPU or CUDA.

    Maximises :math:`\langle Q, S\rangle + \varepsilon H(Q)` s.t. :math:`Q 1 = a`,
    :math:`Q^\top 1 = b`; see the module docstring for the algorithm.

    Parameters
    ----------
    epsilon : float
        Entropic regularisation (SeLa: ``1/lambda``, e.g. 0.04 for lambda = 25; SwAV 0.05).
    tol : float or None
        Stop when the relative L1 column-marginal error
        :math:`\sum_k |Q^\top 1 - b|_k / \sum_k b_k` falls below ``tol``; ``None``: run
        exactly ``max_iter`` iterations (reported as converged).
    max_iter : int or None
        Iteration cap; ``None``: 1000 for ``mode="sela"``, 3 for ``mode="swav"``.
    check_every : int
        Record the marginal error (a host sync) every ``check_every`` iterations (SeLa: 10).
    block_size : int or None
        Rows per streamed block; ``None``: auto (~2 MiB of exp-values on CPU, ~256 MiB on CUDA).
    device : str or None
        Compute device; ``"auto"``: CUDA when available, else the input's device.
    dtype : {"float32", "float64"}
        Compute dtype (sums in this dtype; bf16/fp16 scores are upcast per block).
    mode : {"sela", "swav"}
        ``"sela"``: iterate to ``tol``. ``"swav"``: SwAV's schedule (subtract the global
        max, column normalisation first, ``max_iter`` column+row rounds, no tolerance).
    distributed : bool or None
        All-reduce column sums and the row count over ``torch.distributed``; ``None``:
        when a process group is initialised with world size > 1.
    cache_kernel : bool or "auto"
        Keep the ``N x K`` stabilised kernel on ``device`` between iterations (absorb and
        rebuild only when ``|log v| > absorb_threshold``); ``"auto"``: when it fits in
        1 GiB. ``False`` guarantees one block of exp-values at a time.
    absorb_threshold : float
        Natural-log bound on the unabsorbed column scaling in cached mode.
    seed : int or None
        Unused (the algorithm is deterministic); accepted for a uniform vocabulary.
    """

    name: ClassVar[str] = "sinkhorn-gpu"
    needs: ClassVar[str] = "scores"
    gpu: ClassVar[bool] = True
    requires_n_ge_k: ClassVar[bool] = False
    default_recipe: ClassVar[str | None] = "swav"
    #: the recipes' paper values (SeLa: lambda = 1/epsilon = 10; SwAV: epsilon 0.05)
    recipe_options: ClassVar[dict] = {"sela": {"epsilon": 0.1}, "swav": {"epsilon": 0.05}}

    epsilon: float = 0.05
    tol: float | None = 1e-6
    max_iter: int | None = None
    check_every: int = 10
    block_size: int | None = None
    device: str | None = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    mode: Literal["sela", "swav"] = "sela"
    distributed: bool | None = None
    cache_kernel: bool | str = "auto"
    absorb_threshold: float = 30.0
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon: expected a finite float > 0, found {self.epsilon!r}")
        if self.tol is not None and not (self.tol > 0):
            raise ValueError(f"tol: expected a float > 0 or None, found {self.tol!r}")
        if self.max_iter is not None and (isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int)
                                          or self.max_iter < 1):
            raise ValueError(f"max_iter: expected an int >= 1 or None, found {self.max_iter!r}")
        if isinstance(self.check_every, bool) or not isinstance(self.check_every, int) or self.check_every < 1:
            raise ValueError(f"check_every: expected an int >= 1, found {self.check_every!r}")
        if self.block_size is not None and (isinstance(self.block_size, bool)
                                            or not isinstance(self.block_size, int) or self.block_size < 1):
            raise ValueError(f"block_size: expected an int >= 1 or None, found {self.block_size!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', found {self.dtype!r}")
        if self.mode not in ("sela", "swav"):
            raise ValueError(f"mode: expected 'sela' or 'swav', found {self.mode!r}")
        if self.cache_kernel not in (True, False, "auto"):
            raise ValueError(f"cache_kernel: expected True, False or 'auto', found {self.cache_kernel!r}")
        if not self.absorb_threshold > 0:
            raise ValueError(f"absorb_threshold: expected a float > 0, found {self.absorb_threshold!r}")

    # -------------------------------------------------------------- wiring
    def _distributed(self) -> bool:
        if self.distributed is not None:
            if self.distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
                raise RuntimeError("distributed: expected an initialised torch.distributed process group, found none")
            return bool(self.distributed)
        return (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1)

    def solve(self, problem: Problem) -> Assignment:
        scores = problem.scores
        n, k = scores.shape
        device = resolve_device(self.device, scores.device)
        dtype = torch.float64 if self.dtype == "float64" else torch.float32
        dist = self._distributed()
        swav = self.mode == "swav"
        max_iter = self.max_iter if self.max_iter is not None else (3 if swav else 1000)
        tol = None if swav else self.tol
        inv_eps = 1.0 / float(self.epsilon)
        itemsize = torch.finfo(dtype).bits // 8
        block = self.block_size or auto_block_size(n, k, device, itemsize)
        block = min(block, n)

        # ---- marginals (global N when rows are sharded across ranks)
        if dist:
            if problem.a is not None:
                raise ValueError("a: expected None (uniform over all ranks' rows) in distributed mode, "
                                 "found a row-marginal array")
            n_total = _all_reduce(torch.tensor([float(n)], dtype=torch.float64, device=device),
                                  torch.distributed.ReduceOp.SUM, True)
            a = torch.full((n,), 1.0 / float(n_total), dtype=torch.float64, device=device)
        else:
            a = problem.row_marginal(torch.float64, device)
        mass = float(_all_reduce(a.sum().reshape(1), torch.distributed.ReduceOp.SUM, dist))
        b = problem.col_marginal(torch.float64, device)
        b = (b * (mass / float(b.sum()))).to(dtype)
        a = a.to(dtype)
        log_b = b.log()
        b_sum = float(b.sum())

        # ---- state: stabilisers from the row max (SeLa) or the global max (SwAV)
        cache = self.cache_kernel
        if cache == "auto":
            cache = n * k * itemsize <= _CACHE_AUTO_BYTES
        alpha = torch.empty(n, dtype=dtype, device=device)
        for s in range(0, n, block):
            alpha[s:s + block] = scores[s:s + block].to(device, dtype).amax(1)
        if swav:
            gmax = _all_reduce(alpha.max().reshape(1), torch.distributed.ReduceOp.MAX, dist)
            alpha.copy_(gmax.expand(n))
        alpha.mul_(-inv_eps)
        state = SinkhornState(beta=torch.zeros(k, dtype=dtype, device=device),
                              log_v=torch.zeros(k, dtype=dtype, device=device),
                              alpha=alpha, alpha_next=alpha.clone(),
                              cache=[] if cache else None)
        args = dict(inv_eps=inv_eps, block_size=block, device=device, dtype=dtype)

        def col_update(c):
            column_update(scores, state, a, log_b, c, mass, absorb_threshold=self.absorb_threshold,
                          distributed=dist, **args)

        errors: list[float] = []
        converged = tol is None
        it = 0
        if swav:
            # SwAV: Q = exp((S - max)/eps); normalise columns, then rows, ``max_iter`` times.
            c = sinkhorn_sweep(scores, state, a, row_update=False, distributed=dist, **args)
            col_update(c)
            for it in range(1, max_iter):
                c = sinkhorn_sweep(scores, state, a, distributed=dist, **args)
                col_update(c)
            it = max_iter  # the last row normalisation is the output pass below
        else:
            while it < max_iter:
                c = sinkhorn_sweep(scores, state, a, distributed=dist, **args)
                it += 1
                if it % self.check_every == 0 or it == max_iter:
                    # column violation of the plan after this sweep's row update
                    err = float((c * state.log_v.exp() - b).abs().sum()) / b_sum
                    errors.append(err)
                    if not math.isfinite(err):
                        break
                    if tol is not None and err <= tol:
                        converged = True
                        break
                col_update(c)

        out_dtype = problem.family.result_dtype
        codes, col_mass, row_part = soft_codes(scores, state, a, dtype=dtype, out_dtype=out_dtype,
                                               inv_eps=inv_eps, block_size=block, device=device)
        col_mass = _all_reduce(col_mass, torch.distributed.ReduceOp.SUM, dist)
        row_part = _all_reduce(row_part.reshape(1), torch.distributed.ReduceOp.SUM, dist)
        objective = float(-(row_part + col_mass @ (state.beta + state.log_v)) / inv_eps)
        if swav:
            errors.append(float((col_mass - b).abs().sum()) / b_sum)
        g = (state.beta + state.log_v) / inv_eps
        return Assignment.for_problem(
            problem, soft=codes, converged=converged and bool(torch.isfinite(g).all()),
            n_iters=it, errors=errors, objective=objective,
            extras={"block_size": block, "device": str(device), "dtype": self.dtype,
                    "cached_kernel": bool(cache), "distributed": dist, "mode": self.mode,
                    "col_potential": g.cpu().numpy()},
        )


@assignsolve.hookimpl
def register_solvers(register):
    register(SinkhornGPU)
