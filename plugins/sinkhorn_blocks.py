"""Row-block scheduling shared by the ``sinkhorn-gpu`` kernels (CPU worker threads, CUDA one block).

A Sinkhorn sweep is a loop over row blocks of an ``N x K`` matrix whose per-block work is a few
torch ops on a cache-resident block. Run with torch's own intra-op threads, every op is an
OpenMP fork/join, and on a shared machine the thread that lost its core holds up the barrier
(hundreds of barriers per sweep). :class:`BlockRunner` instead hands parts (runs of blocks) to
``workers`` Python threads, each taking the next part when it is done and running
single-threaded torch ops (the GIL is released inside every op), with one join per sweep:
scikit-learn's scheme, as in ``plugins/kmeans.py``. On CUDA
the blocks run in order on the current stream.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["BlockRunner", "block_rows", "all_reduce", "exp_limits"]

LOG2E = 1.0 / math.log(2.0)
#: CPU row block: ~2 MiB: its second product reads it from cache (L2, 1-2 MiB per core, and L3); bigger
#: blocks mean fewer ops (smaller ones measured no faster on a 1 MiB-L2 core).
CPU_BLOCK_BYTES = 2 << 20
#: Below this many matrix bytes a CPU sweep runs inline (one block, torch's own threads).
CPU_INLINE_BYTES = 4 << 20
CUDA_BLOCK_BYTES = 256 << 20


def block_rows(n: int, k: int, device: torch.device, itemsize: int = 4) -> int:
    """Rows per block: ~2 MiB on CPU (the whole matrix when it is under 4 MiB), ~256 MiB on CUDA."""
    if device.type == "cpu":
        if n * k * itemsize <= CPU_INLINE_BYTES:
            return max(1, n)
        rows = max(1, CPU_BLOCK_BYTES // max(1, k * itemsize))
        return int(min(n, rows // 64 * 64 if rows > 64 else rows))  # whole 64-row sum chunks
    return int(max(1, min(n, 65536, CUDA_BLOCK_BYTES // max(1, k * itemsize))))


def all_reduce(t: torch.Tensor, op, distributed: bool) -> torch.Tensor:
    """``torch.distributed.all_reduce`` in place when ``distributed``; returns ``t``."""
    if distributed:
        torch.distributed.all_reduce(t, op=op)
    return t


def exp_limits(dtype: torch.dtype) -> tuple[float, float]:
    """(lowest, highest) base-2 exponent whose ``exp2`` is a normal number of ``dtype``."""
    fi = torch.finfo(dtype)
    return math.log2(fi.tiny), math.log2(fi.max)


def _flush_denormals() -> None:
    """Pool-thread initializer: flush denormal results and inputs to zero in this thread only.

    ``exp2`` whose result underflows (most entries of a streamed kernel block: scores spread
    over more than ~87 epsilon) is about 3-4x slower with denormals; the flushed values are
    below ``2**-126`` of the row maximum, far under float32 precision of any row or column sum.
    """
    torch.set_flush_denormal(True)


class BlockRunner:
    """Runs ``fn(g, p, start, stop, first)`` over the row blocks of an ``n``-row matrix.

    Blocks are grouped into *parts* (consecutive blocks whose column sums accumulate into one
    ``[K]`` row of a partial-sum buffer; ``first`` marks a part's first block). Worker ``g``
    (``0 <= g < workers``, for per-worker scratch buffers) takes the next part when done, so the
    result of a part never depends on which worker ran it; inline runs go in order.
    Accumulating within small parts and adding the parts with ``torch.sum`` (cascade
    summation) keeps float32 column sums accurate (a single ``mv`` over all rows accumulates
    sequentially and loses about ``sqrt(N)`` units in the last place).

    Parameters
    ----------
    n : int
        Rows.
    rows : int
        Rows per block.
    device : torch.device
        CPU: worker threads; other devices: inline.
    workers : int, optional
        Worker threads on CPU (default ``torch.get_num_threads()``); ``1`` runs inline with
        torch's own intra-op threads.
    part_rows : int
        Rows per part at least (rounded up to whole blocks).
    max_parts : int
        At most this many parts (bounds the ``[parts, K]`` buffer).

    The worker pool starts on the first :meth:`run`; use as a context manager (or call
    :meth:`close`) so that it lives for one solve, not longer.
    """

    def __init__(self, n: int, rows: int, device: torch.device, workers: int | None = None,
                 part_rows: int = 64, max_parts: int = 4096):
        blocks = [(s, min(n, s + rows)) for s in range(0, n, rows)]
        per_part = max(1, -(-part_rows // rows), -(-len(blocks) // max_parts))
        self.parts = [blocks[i:i + per_part] for i in range(0, len(blocks), per_part)]
        self.n_parts = len(self.parts)
        self._cpu = device.type == "cpu"
        if device.type != "cpu":
            workers = 1
        elif workers is None:
            workers = torch.get_num_threads()
        workers = max(1, min(int(workers), self.n_parts))
        per = -(-self.n_parts // workers)
        self.groups = [list(range(j, min(self.n_parts, j + per))) for j in range(0, self.n_parts, per)]
        self.workers = len(self.groups)
        # one pool thread even with one worker when torch is single-threaded anyway: it runs with
        # denormals flushed (exp2 results below the normal range are ~4x slower otherwise)
        self._threaded = self.workers > 1 or (self._cpu and self.n_parts > 1 and torch.get_num_threads() == 1)
        self._pool: ThreadPoolExecutor | None = None
        self._saved_threads = 0

    def __enter__(self) -> "BlockRunner":
        """Inside the context (CPU, with workers or a single small block) torch runs single-threaded
        process-wide: the vector ops between sweeps are too small for a fork/join, and each sweep's
        parallelism is the workers'. A single block is under 4 MiB (cache-resident), where a
        fork/join per op costs more than it gains on a shared machine."""
        if self.workers > 1 or (self._cpu and self.n_parts == 1):
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._saved_threads:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = 0

    def close(self) -> None:
        """Stop the worker threads (a later :meth:`run` starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        self.close()

    def _group(self, fn: Callable[[int, int, int, int, bool], None], g: int, parts=None) -> None:
        """Worker ``g`` runs the parts ``parts`` yields (its own group when None)."""
        with torch.no_grad():  # grad mode is thread-local
            for p in self.groups[g] if parts is None else parts:
                if p >= self.n_parts:
                    return
                for i, (s, e) in enumerate(self.parts[p]):
                    fn(g, p, s, e, i == 0)

    def run(self, fn: Callable[[int, int, int, int, bool], None]) -> None:
        """One sweep: every block once; returns when all are done (re-raises a worker's error).

        With workers, torch's intra-op thread count is 1 process-wide during the sweep (restored
        after), so that each worker's ops are single-threaded.
        """
        if not self._threaded:
            self._group(fn, 0)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, initializer=_flush_denormals)
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            # dynamic schedule: each worker takes the next part (next() of a count is atomic under
            # the GIL), so a worker whose core is taken by another process holds up the join by
            # one part, not by half the sweep. A part's result does not depend on its worker.
            parts = itertools.count()
            futures = [self._pool.submit(self._group, fn, g, parts) for g in range(self.workers)]
            for f in futures:
                f.result()
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
