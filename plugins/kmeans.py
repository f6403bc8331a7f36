r"""Lloyd's k-means, as DeepCluster uses it, in torch (CPU or CUDA).

Objective (minimised over labels :math:`y \in \{0..K-1\}^N` and centroids :math:`C \in \mathbb{R}^{K \times D}`):

.. math::

    \mathcal{L}(y, C) = \frac{1}{N} \sum_{i=1}^{N} \lVert x_i - c_{y_i} \rVert_2^2

Lloyd's algorithm alternates the two exact block minimisations: assignment
:math:`y_i = \arg\min_k \lVert x_i - c_k \rVert^2` and update :math:`c_k = \mathrm{mean}\{x_i : y_i = k\}`.
With ``metric="cosine"`` (spherical k-means) the features and centroids are L2-normalised, so the
assignment is :math:`\arg\max_k \langle \hat x_i, \hat c_k \rangle` and the objective is
:math:`\frac1N\sum_i \lVert \hat x_i - \hat c_{y_i} \rVert^2 = \frac1N\sum_i 2(1 - \cos(x_i, c_{y_i}))`.

DeepCluster (Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features",
ECCV 2018, https://arxiv.org/abs/1807.05520; code facebookresearch/deepcluster ``clustering.py``)
PCA-whitens the convnet features to 256 dimensions, L2-normalises them, and runs faiss' k-means
for 20 iterations from ``K`` random data points. This module reproduces that pipeline:

* :func:`preprocess_features` - PCA-whitening + L2 normalisation (``faiss.PCAMatrix(d, 256,
  eigen_power=-0.5)`` then row normalisation, as in DeepCluster's ``preprocess_features``);
* :func:`assign_nearest` - the assignment step, computed ``chunk_size`` rows at a time as
  :math:`\lVert c_k\rVert^2 - 2\langle x_i, c_k\rangle` (one GEMM per chunk, ``torch.addmm``), so at
  most ``chunk_size x K`` distances ever exist;
* :func:`update_centroids` - cluster sums with ``index_add_`` (no one-hot matrix);
* :func:`split_empty_clusters` - faiss' empty-cluster repair (``faiss/Clustering.cpp``,
  ``split_clusters``): an empty cluster takes a copy of a non-empty centroid ``j`` drawn with
  probability proportional to :math:`n_j - 1`, both copies are perturbed by a relative
  :math:`\pm 1/1024` and the donor's count is split in half;
* :func:`lloyd_kmeans` - the loop, with the objective history, early stopping on ``tol`` and a
  repair counter; :class:`KMeans` wires it as the ``kmeans`` solver.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, NamedTuple

import attrs
import torch

import assignsolve
from assignsolve import Assignment, BaseSolver, Problem
from assignsolve.plugin import resolve_device, to_family
from assignsolve.ops.centroids import SPLIT_EPS, init_centroids, kmeans_plusplus, split_empty_clusters, update_centroids
from assignsolve.ops.pca import apply_pca, fit_pca, preprocess_features

from .feature_guards import prepare_kmeans_features, unscale_kmeans

__all__ = [
    "KMeans",
    "KMeansResult",
    "apply_pca",
    "assign_nearest",
    "fit_pca",
    "init_centroids",
    "kmeans_plusplus",
    "lloyd_kmeans",
    "preprocess_features",
    "split_empty_clusters",
    "update_centroids",
]


_METRICS = ("l2", "cosine")
_INITS = ("random", "kmeans++")


# --------------------------------------------------------------------------- preprocessing


# --------------------------------------------------------------------------- Lloyd steps
#: Rows per block of the CPU thread-parallel assignment (a [1024, K] float32 block is 4 MB at K = 1000).
CPU_BLOCK = 1024


@torch.no_grad()
def assign_nearest(
    x: torch.Tensor,
    centroids: torch.Tensor,
    chunk_size: int = 8192,
    x_sqnorm: torch.Tensor | None = None,
    n_workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Nearest centroid of every row: :math:`y_i = \arg\min_k \lVert x_i - c_k \rVert^2`.

    Uses :math:`\lVert x_i - c_k\rVert^2 = \lVert x_i\rVert^2 + \lVert c_k\rVert^2 - 2 \langle x_i, c_k\rangle`;
    the :math:`k`-independent first term is added after the ``min``. Rows are processed in
    blocks, one ``addmm`` (GEMM) plus one ``min`` per block, each block writing a disjoint slice of
    the output, so at most ``chunk_size * K`` distances exist at any time.

    On CPU with ``n_workers > 1`` the blocks (``min(chunk_size // n_workers, 1024)`` rows) are
    spread over ``n_workers`` threads, each running a single-threaded GEMM, and torch's
    intra-op thread count is set to 1 process-wide for the duration of the call (restored
    after). This is scikit-learn's scheme (OpenMP over 256-row chunks, BLAS limited to one
    thread): it avoids the fork/join barriers of a multi-threaded GEMM per block, which are
    what makes faiss' and torch's BLAS-threaded search slow when cores are shared. On CUDA one
    stream does the blocks in order.

    Parameters
    ----------
    x : torch.Tensor [N, D]
    centroids : torch.Tensor [K, D]
        Same dtype and device as ``x``.
    chunk_size : int
        Rows in flight (all workers together); memory is ``chunk_size * K`` scalars.
    x_sqnorm : torch.Tensor [N], optional
        Precomputed :math:`\lVert x_i\rVert^2` (computed when omitted).
    n_workers : int, optional
        CPU threads; default ``torch.get_num_threads()`` on CPU, 1 on other devices.

    Returns
    -------
    labels : torch.Tensor [N] int64
    sqdist : torch.Tensor [N]
        :math:`\lVert x_i - c_{y_i}\rVert^2`, clamped at 0 against round-off.
    """
    n = x.shape[0]
    k = centroids.shape[0]
    if x_sqnorm is None:
        x_sqnorm = x.pow(2).sum(dim=1)
    c_sqnorm = centroids.pow(2).sum(dim=1)[None, :]
    ct = centroids.T
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    best = torch.empty(n, dtype=x.dtype, device=x.device)
    chunk = max(1, int(chunk_size))
    if n_workers is None:
        n_workers = torch.get_num_threads() if x.device.type == "cpu" else 1
    workers = max(1, min(int(n_workers), chunk, -(-n // min(CPU_BLOCK, n))))
    if x.device.type != "cpu" or workers == 1:
        # CPU: cache-sized blocks (the min pass then reads the block from cache); GPU: big ones.
        step = min(chunk, n) if x.device.type != "cpu" else min(chunk, n, CPU_BLOCK)
        buf = torch.empty((step, k), dtype=x.dtype, device=x.device)
        for start in range(0, n, step):
            stop = min(start + step, n)
            block = buf[: stop - start]
            torch.addmm(c_sqnorm, x[start:stop], ct, beta=1.0, alpha=-2.0, out=block)
            torch.min(block, dim=1, out=(best[start:stop], labels[start:stop]))
    else:
        step = max(1, min(chunk // workers, CPU_BLOCK))

        def work(start: int) -> None:
            stop = min(start + step, n)
            with torch.no_grad():  # grad mode is thread-local
                block = torch.addmm(c_sqnorm, x[start:stop], ct, beta=1.0, alpha=-2.0)
                torch.min(block, dim=1, out=(best[start:stop], labels[start:stop]))

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, range(0, n, step)))
        finally:
            torch.set_num_threads(threads)
    sqdist = (best + x_sqnorm).clamp_min_(0.0)
    return labels, sqdist


# --------------------------------------------------------------------------- initialisation


# --------------------------------------------------------------------------- Lloyd loop
class KMeansResult(NamedTuple):
    """Output of :func:`lloyd_kmeans` (torch tensors on the computation device)."""

    labels: torch.Tensor  #: [N] int64, nearest final centroid
    centroids: torch.Tensor  #: [K, D]
    objective: float  #: mean squared distance to the assigned final centroid
    history: tuple[float, ...]  #: objective at each assignment step (first: initial centroids)
    n_iters: int  #: update steps performed
    converged: bool
    n_repairs: int  #: empty-cluster splits, summed over iterations


@torch.no_grad()
def lloyd_kmeans(
    x: torch.Tensor,
    init: torch.Tensor,
    *,
    max_iter: int = 20,
    tol: float = 1e-4,
    spherical: bool = False,
    chunk_size: int = 8192,
    generator: torch.Generator | None = None,
) -> KMeansResult:
    r"""Lloyd's iterations from ``init``, minimising :math:`\frac1N\sum_i \lVert x_i - c_{y_i}\rVert^2`.

    One iteration = update (means, then :func:`split_empty_clusters`, then re-normalise when
    ``spherical``) followed by assignment (:func:`assign_nearest`). As in faiss, ``history[t]``
    is the objective of the assignment to the centroids of step ``t`` (``history[0]``: ``init``);
    the returned labels are the assignment to the returned centroids (DeepCluster's final
    ``index.search``) and ``objective == history[-1]``.

    Stops early, with ``converged=True``, when the assignment no longer changes (and no split
    happened: a fixed point) or when :math:`|\mathcal L_{t-1} - \mathcal L_t| \le tol \cdot |\mathcal L_t|`
    (``tol > 0``). Otherwise runs ``max_iter`` iterations and reports ``converged=False``.

    Parameters
    ----------
    x : torch.Tensor [N, D]
        Features, float32/float64 (normalised beforehand when ``spherical``).
    init : torch.Tensor [K, D]
        Initial centroids, same dtype/device as ``x``.
    max_iter : int
        Maximum number of update steps (DeepCluster: 20).
    tol : float
        Relative objective change that counts as converged; 0 disables (fixed point only).
    spherical : bool
        Re-normalise the centroids after every update (faiss ``spherical=True``).
    chunk_size : int
        Rows per distance block (memory ``chunk_size * K``).
    generator : torch.Generator, optional
        CPU generator for the empty-cluster donor draws.

    Returns
    -------
    KMeansResult
    """
    k = init.shape[0]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    centroids = init.clone()
    if spherical:
        centroids = torch.nn.functional.normalize(centroids, dim=1)
    x_sq = x.pow(2).sum(dim=1)
    labels, sqdist = assign_nearest(x, centroids, chunk_size, x_sq)
    obj = float(sqdist.mean())
    history = [obj]
    converged = False
    n_iters = 0
    n_repairs = 0
    for it in range(max_iter):
        centroids, counts = update_centroids(x, labels, k)
        n_split = split_empty_clusters(centroids, counts, gen)
        n_repairs += n_split
        if spherical:
            centroids = torch.nn.functional.normalize(centroids, dim=1)
        new_labels, sqdist = assign_nearest(x, centroids, chunk_size, x_sq)
        new_obj = float(sqdist.mean())
        history.append(new_obj)
        n_iters = it + 1
        fixed_point = n_split == 0 and torch.equal(new_labels, labels)
        labels = new_labels
        small_change = tol > 0 and abs(obj - new_obj) <= tol * max(abs(new_obj), 1e-30)
        obj = new_obj
        if fixed_point or small_change:
            converged = True
            break
    return KMeansResult(labels, centroids, obj, tuple(history), n_iters, converged, n_repairs)


# --------------------------------------------------------------------------- solver
def _check(cond: bool, name: str, expected: str, value: object) -> None:
    if not cond:
        raise ValueError(f"{name}: expected {expected}, found {value!r}")


def auto_restarts(k: int) -> int:
    """Restarts for ``n_init="auto"``: 20 up to K = 100, then ``2000 // K`` (restarts x K, so the
    cost, stays at most that of one run with K = 2000), and 1 from K = 2000 on."""
    return max(1, min(20, 2000 // max(int(k), 1)))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@attrs.frozen
class KMeans(BaseSolver):
    """Lloyd's k-means on features, DeepCluster style (PCA-whitening, faiss empty-cluster repair).

    Returns hard labels only (``soft`` is ``None``: a one-hot ``[N, K]`` matrix is exactly what the
    chunked assignment avoids materialising). ``objective`` is the mean squared distance of each
    sample to its final centroid (inertia / N; in the preprocessed space when ``preprocess``);
    ``errors`` is the objective history (one value per assignment step, the first from the initial
    centroids). ``extras``: ``centroids`` [K, D'] (input family; D' = ``pca_dim`` when
    preprocessing), ``n_repairs`` (empty-cluster splits), ``n_empty`` (empty clusters at the end),
    ``init`` (what seeded the centroids), ``n_init_best`` (which restart won).

    Configuration
    -------------
    max_iter : int
        Lloyd iterations (20, DeepCluster's ``clus.niter``).
    tol : float
        Stop when the relative objective change is ``<= tol`` (0: only at a fixed point).
    metric : {"l2", "cosine"}
        "cosine" is spherical k-means (normalised features and centroids).
    init : {"random", "kmeans++"}
        Used when the problem has no ``init_centroids``; "random" = K distinct data points (faiss).
    n_init : int or "auto"
        Restarts with different seeds; the lowest final objective wins (DeepCluster: 1).
        ``"auto"``: :func:`auto_restarts` (20 at K <= 100, falling as 2000 / K to 1 at K >= 2000).
    chunk_size : int
        Rows per distance block; never more than ``chunk_size * K`` distances in memory.
    preprocess : bool
        Apply :func:`preprocess_features` (PCA-whitening to ``pca_dim`` + L2 normalisation) first;
        ``init_centroids`` then go through the same affine map and normalisation.
    pca_dim : int or None
        PCA output dimension when ``preprocess`` (256 in DeepCluster); None: normalisation only.
    whiten : bool
        Whiten the PCA output.
    device : str or None
        Computation device; None = the input's, "auto" = CUDA when available.
    seed : int or None
        Seeds initialisation and empty-cluster donor draws (None: fresh randomness).
    """

    name: ClassVar[str] = "kmeans"
    needs: ClassVar[str] = "features"
    gpu: ClassVar[bool] = True
    requires_n_ge_k: ClassVar[bool] = True
    default_recipe: ClassVar[str | None] = "deepcluster"
    #: DeepCluster's clustering with restarts (the lowest objective wins; ``"auto"``: 20 at K = 10).
    #: DeepCluster runs faiss once per epoch at K = 10,000, where one run's bad local optima
    #: average out (and "auto" gives 1); at K = 10 one bad start decides the epoch's labels: 5,000
    #: MNIST digits, 10 epochs, accuracy 0.806 / 0.804 (seeds 0 / 1) with one run, 0.948 / 0.930
    #: and 0.943 held out with 20 (docs/training.md). ``--solver-opt n_init=1``: the paper's single run.
    recipe_options: ClassVar[dict] = {"deepcluster": {"n_init": "auto"}}

    max_iter: int = 20
    tol: float = 1e-4
    metric: str = "l2"
    init: str = "random"
    n_init: int | str = 1
    chunk_size: int = 8192
    preprocess: bool = False
    pca_dim: int | None = 256
    whiten: bool = True
    device: str | None = None
    seed: int | None = 0

    def __attrs_post_init__(self) -> None:
        _check(_is_int(self.max_iter) and self.max_iter >= 0, "max_iter", "an int >= 0", self.max_iter)
        _check(isinstance(self.tol, (int, float)) and math.isfinite(self.tol) and self.tol >= 0,
               "tol", "a finite float >= 0", self.tol)
        _check(self.metric in _METRICS, "metric", f"one of {_METRICS}", self.metric)
        _check(self.init in _INITS, "init", f"one of {_INITS}", self.init)
        _check(self.n_init == "auto" or (_is_int(self.n_init) and self.n_init >= 1), "n_init",
               "an int >= 1 or 'auto'", self.n_init)
        _check(_is_int(self.chunk_size) and self.chunk_size >= 1, "chunk_size", "an int >= 1", self.chunk_size)
        _check(self.pca_dim is None or (_is_int(self.pca_dim) and self.pca_dim >= 1),
               "pca_dim", "None or an int >= 1", self.pca_dim)
        _check(self.seed is None or _is_int(self.seed), "seed", "None or an int", self.seed)

    def solve(self, problem: Problem) -> Assignment:
        device = resolve_device(self.device, problem.device)
        feats = problem.features
        dtype = torch.float64 if feats.dtype == torch.float64 else torch.float32
        x = feats.detach().to(device=device, dtype=dtype)
        init = problem.init_centroids
        init = None if init is None else init.detach().to(device=device, dtype=dtype)
        x, init, scale_exp = prepare_kmeans_features(self.name, problem, x, init, problem.init_centroids)
        if self.preprocess:
            if self.pca_dim is not None:
                mean, proj = fit_pca(x, self.pca_dim, whiten=self.whiten)
                x = apply_pca(x, mean, proj)
                init = None if init is None else apply_pca(init, mean, proj)
            x = torch.nn.functional.normalize(x, dim=1)
            init = None if init is None else torch.nn.functional.normalize(init, dim=1)
        spherical = self.metric == "cosine"
        if spherical:
            x = torch.nn.functional.normalize(x, dim=1)

        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        k = problem.n_clusters
        best: KMeansResult | None = None
        best_run = 0
        n_init = auto_restarts(k) if self.n_init == "auto" else self.n_init
        for run in range(n_init):
            if init is not None and run == 0:
                start, how = init, "problem.init_centroids"
            else:
                start, how = init_centroids(x, k, self.init, gen), self.init
            res = lloyd_kmeans(x, start, max_iter=self.max_iter, tol=self.tol, spherical=spherical,
                               chunk_size=self.chunk_size, generator=gen)
            if best is None or res.objective < best.objective:
                best, best_run, best_how = res, run, how
        assert best is not None
        n_empty = int((torch.bincount(best.labels, minlength=k) == 0).sum())
        centroids, history, objective = unscale_kmeans(best.centroids, best.history, best.objective,
                                                       scale_exp, not (self.preprocess or spherical))
        fam = problem.family
        # empty clusters left after the repairs (fewer than K distinct points): not a solution
        reason = f"{n_empty} of {k} clusters empty at the end (fewer than K distinct points?)"
        return Assignment.for_problem(
            problem,
            labels=best.labels,
            soft=None,
            converged=best.converged and n_empty == 0,
            n_iters=best.n_iters,
            errors=history,
            objective=objective,
            extras={
                **({"not_converged_reason": reason} if n_empty else {}),
                "centroids": to_family(centroids, fam, fam.result_dtype),
                "n_repairs": best.n_repairs,
                "n_empty": n_empty,
                "init": best_how,
                "n_init_best": best_run,
                "metric": self.metric,
            },
        )


@assignsolve.hookimpl
def register_solvers(register):
    register(KMeans)
