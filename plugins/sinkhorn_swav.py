r"""SwAV's per-batch Sinkhorn (``distributed_sinkhorn``) as four passes over one buffer.

SwAV (Caron et al., NeurIPS 2020; ``facebookresearch/swav`` ``main_swav.py``) computes
:math:`Q = \exp(S/\varepsilon)`, then alternately normalises the columns (prototypes, to mass
``1/K``) and the rows (samples, to ``1/B``), ``n_iter`` times, and returns the rows scaled to sum
to one. Every normalisation is a diagonal scaling, so the result is
:math:`\mathrm{codes}_{ik} = q_{ik} v_k / \sum_j q_{ij} v_j` for a column scaling ``v`` that only
needs matrix-vector products with :math:`q_{ik} = 2^{(S_{ik} - m_i) \log_2 e/\varepsilon}`
(``m_i`` the row max: rows never underflow, and near-max entries are exact). The row weights of
the first column normalisation are :math:`w_i = 2^{(m_i - M)\log_2 e/\varepsilon}` (``M`` the
global max); afterwards row scalings cancel. Passes over the buffer:

1. build ``q`` (row max, shift, scale, ``exp2``) and the column sums ``q^T w``;
2. ``n_iter - 1`` fused sweeps: per row block ``r = q v`` (row normalisation) then ``q^T (a/r)``
   (next column normalisation) while the block is in cache;
3. the output: ``q v / r`` in place.

The reference makes about 16 full passes (each ``/=`` reads and writes ``Q``). ``exp2`` is used
because torch's CPU ``exp`` is about 4x slower here and takes a very slow path for results below
the normal range. Column sums accumulate over parts of <= 64 rows added by ``torch.sum``
(cascade summation; one ``mv`` over all rows loses ~1e-6), row sums in the sweeps are ``mv``
(16-lane accumulators: as accurate here as ``torch.sum`` and one pass instead of two), the final
row sums ``torch.sum``: float32 codes stay within ~2.5e-7 of float64.
"""

from __future__ import annotations

import math

import attrs
import torch

from assignsolve import InvalidProblemError

from .sinkhorn_blocks import LOG2E, BlockRunner, all_reduce, block_rows

__all__ = ["SwavCodes", "swav_codes"]


@attrs.frozen(eq=False)
class SwavCodes:
    r"""Result of :func:`swav_codes` (tensors on the scores' device).

    Attributes
    ----------
    codes : tensor [B, K]
        Rows sum to one (SwAV's ``Q.t()``).
    v : tensor [K]
        Final column scaling (``0`` for zero-mass clusters).
    row_max : tensor [B]
        ``m_i = max_k S_ik``.
    row_sum : tensor [B]
        :math:`\sum_k q_{ik} v_k` before the final row normalisation.
    epsilon : float
    """

    codes: torch.Tensor
    v: torch.Tensor
    row_max: torch.Tensor
    row_sum: torch.Tensor
    epsilon: float

    @property
    def log_v(self) -> torch.Tensor:
        """Natural log of ``v``: the dual potential ``g / epsilon`` up to a constant."""
        return self.v.log()

    @property
    def lse(self) -> torch.Tensor:
        r"""Row log-normalisers :math:`\log\sum_k \exp(S_{ik}/\varepsilon + \log v_k)`."""
        return self.row_max * (1.0 / self.epsilon) + self.row_sum.log()


def colsum_into(q: torch.Tensor, u: torch.Tensor, out: torch.Tensor, first: bool, chunk: int = 64) -> None:
    r"""``out (+)= q^T u`` accumulated over chunks of <= ``chunk`` rows added by cascade summation.

    ``q`` [R, K] contiguous rows, ``u`` [R], ``out`` [K]; ``first`` overwrites ``out``.
    """
    rows = q.shape[0]
    h = rows // chunk * chunk if rows > chunk else 0
    if h:
        prod = torch.bmm(u[:h].view(-1, 1, chunk), q[:h].view(-1, chunk, q.shape[1]))
        if first:
            torch.sum(prod, 0, out=out.view(1, -1))
        else:
            out.add_(prod.sum(0)[0])
        first = False
    if h < rows:
        if first:
            torch.mv(q[h:].T, u[h:], out=out)
        else:
            out.addmv_(q[h:].T, u[h:])


def _check(scores: torch.Tensor, epsilon: float, n_iter: int) -> torch.dtype:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or 0 in scores.shape:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise InvalidProblemError(f"scores: expected a non-empty [B, K] torch tensor, found {shape}")
    if not scores.is_floating_point():
        raise InvalidProblemError(f"scores: expected a floating-point dtype, found {scores.dtype}")
    if not (epsilon > 0) or isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise InvalidProblemError(f"epsilon, n_iter: expected > 0 and an int >= 1, found {epsilon!r}, {n_iter!r}")
    return torch.float64 if scores.dtype == torch.float64 else torch.float32


@torch.no_grad()
def swav_codes(scores: torch.Tensor, epsilon: float = 0.05, n_iter: int = 3, *,
               a: torch.Tensor | None = None, b: torch.Tensor | None = None,
               distributed: bool = False, block_size: int | None = None,
               workers: int | None = None) -> SwavCodes | None:
    r"""SwAV codes of a batch: ``n_iter`` column + row normalisations of ``exp(S/eps)``.

    Trusted-input path: checks are O(B + K) (a NaN/inf score shows up in its row max), no copy
    of ``scores`` is made, and the only ``[B, K]`` allocation is the returned ``codes``.

    Parameters
    ----------
    scores : tensor [B, K]
        Prototype scores, any device; float32 (float16/bfloat16 are computed in float32) or
        float64. Not modified.
    epsilon : float
        Entropic regularisation (SwAV: 0.05).
    n_iter : int
        Sinkhorn iterations (SwAV: 3).
    a : tensor [B], optional
        Row masses (uniform when None; scale-free).
    b : tensor [K], optional
        Column masses (uniform when None; scale-free). A zero entry gives that cluster no
        mass, exactly.
    distributed : bool
        Rows sharded over ``torch.distributed`` ranks: the global max and the column sums are
        all-reduced (SwAV's ``dist.all_reduce``).
    block_size : int, optional
        Rows per block (default: ~2 MiB on CPU, the whole batch when under 4 MiB).
    workers : int, optional
        CPU worker threads (default ``torch.get_num_threads()``).

    Returns
    -------
    SwavCodes or None
        ``None`` when float underflow left a cluster with zero mass that ``b`` gives mass (scores
        spread over more than ~87 epsilon): the caller falls back to the log-domain solver.

    Raises
    ------
    InvalidProblemError
        Non-finite scores (naming the first bad row), a bad shape or parameters.
    """
    cdt = _check(scores, epsilon, n_iter)
    n, k = scores.shape
    dev = scores.device
    c2 = LOG2E / float(epsilon)  # exp(x / eps) = exp2(x * c2)
    rows = block_size or block_rows(n, k, dev)
    runner = BlockRunner(n, min(rows, n), dev, workers)
    codes = torch.empty((n, k), dtype=cdt, device=dev)
    m = torch.empty(n, dtype=cdt, device=dev)
    r = torch.empty(n, dtype=cdt, device=dev)
    parts = torch.empty((runner.n_parts, k), dtype=cdt, device=dev)
    part_max = [0.0] * runner.n_parts
    a_ = None if a is None else a.to(dev, cdt)
    b_ = None if b is None else b.to(dev, cdt)

    def build(g, p, s, e, first):
        src = scores[s:e] if scores.dtype == cdt else scores[s:e].to(cdt)
        mb = torch.amax(src, 1, out=m[s:e])
        q = torch.sub(src, mb[:, None], out=codes[s:e])
        q.mul_(c2).exp2_()
        if first:  # weights relative to the block max (a 0-dim tensor: no host sync)
            mt = mb.max()
            part_max[p] = mt
        else:  # later block of a part: rescale the part online if its max grows
            mj, old = float(mb.max()), float(part_max[p])
            if mj > old:
                parts[p].mul_(2.0 ** ((old - mj) * c2))
                part_max[p] = mj
            mt = part_max[p]
        w = (mb - mt).mul_(c2).exp2_()
        if a_ is not None:
            w.mul_(a_[s:e])
        colsum_into(q, w, parts[p], first)

    def sweep(g, p, s, e, first):
        q = codes[s:e]
        rb = torch.mv(q, v, out=r[s:e])
        u = torch.reciprocal(rb) if a_ is None else torch.div(a_[s:e], rb)
        colsum_into(q, u, parts[p], first)

    def output(g, p, s, e, first):
        q = codes[s:e].mul_(v)
        rb = torch.sum(q, 1, out=r[s:e])
        q.mul_(torch.reciprocal(rb)[:, None])  # a multiply is ~2x faster than a divide here

    def col_scaling(c):
        all_reduce(c, torch.distributed.ReduceOp.SUM, distributed)
        if b_ is None:
            return torch.reciprocal(c)
        return torch.where(b_ > 0, b_ / c, torch.zeros_like(c))

    with runner:
        runner.run(build)
        if not bool(torch.isfinite(m).all()):
            i = int((~torch.isfinite(m)).nonzero()[0])
            raise InvalidProblemError(f"scores: expected finite values, found NaN/inf in row {i}")
        if runner.n_parts == 1 and not distributed:
            v = col_scaling(parts[0])
        else:
            pm = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=dev) for x in part_max])
            gmax = all_reduce(pm.max().reshape(1), torch.distributed.ReduceOp.MAX, distributed)
            scale = torch.exp2((pm - gmax) * c2).to(cdt)
            v = col_scaling((parts * scale[:, None]).sum(0))
        for _ in range(n_iter - 1):
            runner.run(sweep)
            v = col_scaling(parts[0] if runner.n_parts == 1 else parts.sum(0))
        runner.run(output)
    lo_hi = torch.aminmax(r)
    if not (bool(torch.isfinite(v.sum())) and float(lo_hi.min) > 0 and math.isfinite(float(lo_hi.max))):
        return None
    return SwavCodes(codes=codes, v=v, row_max=m, row_sum=r, epsilon=float(epsilon))
