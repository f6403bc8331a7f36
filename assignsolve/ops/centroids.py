"""Centroid kernels: seeding (one greedy k-means++ and one random draw, shared by the kmeans plugin and
``compare``), (weighted) cluster means, CoKe's running means, faiss' empty-cluster split."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError

__all__ = ["SPLIT_EPS", "centroid_update", "coke_centre_step", "init_centroids", "kmeans_plusplus",
           "split_empty_clusters", "update_centroids"]


@torch.no_grad()
def update_centroids(
    x: torch.Tensor, labels: torch.Tensor, n_clusters: int, previous: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Cluster means :math:`c_k = \frac{1}{n_k}\sum_{i: y_i = k} x_i`, :math:`n_k = |\{i : y_i = k\}|`.

    Parameters
    ----------
    x : torch.Tensor [N, D]
    labels : torch.Tensor [N] int64
        Values in ``[0, n_clusters)``.
    n_clusters : int
        ``K``.
    previous : torch.Tensor [K, D], optional
        Centroids kept for empty clusters (zeros, like faiss, when omitted); empty clusters are
        then re-seeded by :func:`split_empty_clusters`.

    Returns
    -------
    centroids : torch.Tensor [K, D]
    counts : torch.Tensor [K]
        :math:`n_k`, in ``x``'s dtype.
    """
    sums = torch.zeros((n_clusters, x.shape[1]), dtype=x.dtype, device=x.device)
    sums.index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=n_clusters).to(x.dtype)
    centroids = sums / counts.clamp_min(1.0)[:, None]
    if previous is not None:
        centroids = torch.where((counts == 0)[:, None], previous, centroids)
    return centroids, counts


@torch.no_grad()
def kmeans_plusplus(
    x: torch.Tensor,
    n_clusters: int,
    generator: torch.Generator,
    n_local_trials: int | None = None,
) -> torch.Tensor:
    r"""Greedy k-means++ seeding: indices of ``K`` rows of ``x`` (Arthur & Vassilvitskii,
    "k-means++: the advantages of careful seeding", SODA 2007).

    The first centroid is a uniform data point; then, with
    :math:`D(x) = \min_{c \in C} \lVert x - c\rVert`, draw ``n_local_trials`` candidates
    :math:`x_i` with probability :math:`D(x_i)^2 / \sum_l D(x_l)^2` and keep the one that
    minimises the potential :math:`\sum_l \min(D(x_l)^2, \lVert x_l - x_i\rVert^2)`.
    ``n_local_trials=1`` is plain D²-sampling; the default :math:`2 + \lfloor\ln K\rfloor` is the
    greedy variant suggested in the paper. The draws are scikit-learn's ``_kmeans_plusplus``
    step for step (one uniform index, then per step ``n_local_trials`` uniforms mapped through
    the cumulative :math:`D^2` with ``searchsorted``), so fed the same uniforms it picks the same
    rows (``tests/ops/test_centroids.py``). When every point coincides with a chosen centroid
    (duplicates, or ``K > N`` once every point is chosen) the candidates are uniform, so ``K > N``
    repeats points. Cost: ``K`` passes over ``x``, each one ``[N, n_local_trials]`` GEMM.

    Parameters
    ----------
    x : torch.Tensor [N, D]
        Points, on any device.
    n_clusters : int
        ``K``.
    generator : torch.Generator
        CPU generator (uniforms are drawn on CPU, so a seed gives the same draws on any device).
    n_local_trials : int, optional
        Candidates per step.

    Returns
    -------
    torch.Tensor [K] int64 (CPU)
    """
    n = x.shape[0]
    trials = n_local_trials if n_local_trials is not None else 2 + int(math.log(n_clusters))
    x_sq = x.pow(2).sum(dim=1)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    d2 = (x_sq - 2.0 * (x @ x[first]) + x_sq[first]).clamp_min_(0.0)
    for _ in range(1, n_clusters):
        cum = torch.cumsum(d2.to(torch.float64), dim=0)
        total = float(cum[-1])
        u = torch.rand(trials, generator=generator, dtype=torch.float64)
        if total > 0.0:
            cand = torch.searchsorted(cum, (u * total).to(cum.device)).clamp_max_(n - 1)
        else:  # every point coincides with a chosen centroid
            cand = (u * n).long().clamp_max_(n - 1).to(x.device)
        # [N, trials] squared distances to the candidates, then each candidate's potential.
        dc = (x_sq[:, None] - 2.0 * (x @ x[cand].T) + x_sq[cand][None, :]).clamp_min_(0.0)
        dc = torch.minimum(dc, d2[:, None])
        best = int(torch.argmin(dc.to(torch.float64).sum(dim=0)))
        chosen.append(int(cand[best]))
        d2 = dc[:, best].contiguous()
    return torch.tensor(chosen, dtype=torch.int64)


@torch.no_grad()
def init_centroids(x: torch.Tensor, n_clusters: int, method: str, generator: torch.Generator) -> torch.Tensor:
    """Initial centroids [K, D]: rows of ``x`` chosen by k-means++ or uniformly at random.

    The one seeding entry point of the kmeans plugin and of ``compare`` (whose shared centroids
    are ``init_centroids(x, K, init, torch.Generator().manual_seed(seed))``).

    Parameters
    ----------
    x : torch.Tensor [N, D]
    n_clusters : int
        ``K``.
    method : {"kmeans++", "random"}
        :func:`kmeans_plusplus`, or ``K`` distinct rows drawn uniformly without replacement
        (``randperm(N)[:K]``, faiss' and DeepCluster's default; with replacement only when ``K > N``).
    generator : torch.Generator
        CPU generator; the plugin reuses one across ``n_init`` restarts.

    Returns
    -------
    torch.Tensor [K, D], on ``x``'s device and dtype (a copy).
    """
    n = x.shape[0]
    if method == "kmeans++":
        idx = kmeans_plusplus(x, n_clusters, generator)
    elif method == "random":
        idx = (torch.randperm(n, generator=generator)[:n_clusters] if n_clusters <= n
               else torch.randint(n, (n_clusters,), generator=generator))
    else:
        raise ConfigError(f"init: expected 'kmeans++' or 'random', found {method!r}")
    return x[idx.to(x.device)].clone()


@torch.no_grad()
def centroid_update(x: torch.Tensor, q: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    r"""Weighted means :math:`c_k = \sum_i q_{ik} x_i / \sum_i q_{ik}`; an empty cluster keeps its centroid.

    Parameters
    ----------
    x : Tensor [N, D]
        Features.
    q : Tensor [N, K]
        Soft assignment (or one-hot labels), non-negative.
    previous : Tensor [K, D]
        Centroids kept where :math:`\sum_i q_{ik} = 0`.

    Returns
    -------
    Tensor [K, D]
    """
    q = q.to(dtype=x.dtype, device=x.device)
    mass = q.sum(0)
    sums = q.T @ x
    empty = mass <= torch.finfo(x.dtype).tiny
    c = sums / torch.where(empty, torch.ones_like(mass), mass)[:, None]
    return torch.where(empty[:, None], previous.to(c), c)


@torch.no_grad()
def coke_centre_step(
    centres: torch.Tensor, counts: torch.Tensor, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Running-mean centre update, then renormalisation.

    .. math:: c_k \leftarrow \frac{m_k c_k + \sum_{i: y_i = k} x_i}{m_k + n_k},\quad
              c_k \leftarrow c_k / \|c_k\|,\quad m_k \leftarrow m_k + n_k

    for every cluster with :math:`n_k > 0` in the batch (others unchanged). :math:`m_k` counts
    the samples assigned to :math:`k` so far in the epoch (reset by ``end_epoch``), so the
    first batch of an epoch replaces a centre by its batch mean.

    Parameters
    ----------
    centres : torch.Tensor [K, D]
    counts : torch.Tensor [K] int64
        :math:`m_k`.
    x : torch.Tensor [B, D]
        L2-normalised features.
    labels : torch.Tensor [B] int64

    Returns
    -------
    centres : torch.Tensor [K, D]
    counts : torch.Tensor [K] int64
    """
    k = centres.shape[0]
    batch = torch.bincount(labels, minlength=k)
    new_counts = counts + batch
    sums = torch.zeros_like(centres).index_add_(0, labels, x)
    denom = new_counts.clamp(min=1).to(centres.dtype)[:, None]
    updated = F.normalize((centres * counts.to(centres.dtype)[:, None] + sums) / denom, dim=1)
    touched = (batch > 0)[:, None]
    return torch.where(touched, updated, centres), new_counts


#: Relative perturbation of a split centroid: faiss' ``EPS`` ("a bit above machine epsilon for
#: float16") in ``Clustering.cpp``.
SPLIT_EPS = 1.0 / 1024.0


@torch.no_grad()
def split_empty_clusters(
    centroids: torch.Tensor,
    counts: torch.Tensor,
    generator: torch.Generator,
    eps: float = SPLIT_EPS,
) -> int:
    r"""Re-seed empty clusters by splitting populated ones, in place (faiss ``split_clusters``).

    For each empty cluster :math:`e` (in index order): draw a donor :math:`j` with probability
    :math:`(n_j - 1) / \sum_l (n_l - 1)_+` (faiss: :math:`(n_j - 1)/(N - K)` with a sequential
    rejection scan; singleton clusters are never split), then

    .. math:: c_e = c_j \odot (1 + \epsilon s), \quad c_j \leftarrow c_j \odot (1 - \epsilon s),
              \quad n_e = n_j / 2, \quad n_j \leftarrow n_j - n_e,

    with :math:`s = (+1, -1, +1, \dots)` alternating over dimensions, :math:`\epsilon = 1/1024`.
    The alternating sign (faiss' choice) moves the two copies apart in a direction that survives
    re-normalisation, so it also works for spherical k-means, where a pure rescaling would not.
    Caron et al. 2018, Sec. 3.3 "Avoiding trivial solutions: empty clusters".

    Parameters
    ----------
    centroids : torch.Tensor [K, D]
        Modified in place.
    counts : torch.Tensor [K]
        Cluster sizes; modified in place (the assumed even split).
    generator : torch.Generator
        CPU generator for the donor draws (reproducible on any device).
    eps : float
        Relative perturbation.

    Returns
    -------
    int
        Number of splits performed.
    """
    if not bool((counts == 0).any()):
        return 0
    sizes = counts.detach().to("cpu", torch.float64)
    dim = centroids.shape[1]
    sign = torch.ones(dim, dtype=centroids.dtype, device=centroids.device)
    sign[1::2] = -1.0
    up, down = 1.0 + eps * sign, 1.0 - eps * sign
    n_split = 0
    for e in (sizes == 0).nonzero().flatten().tolist():
        weight = (sizes - 1.0).clamp_min(0.0)
        total = float(weight.sum())
        if total <= 0.0:  # every cluster is a singleton or empty: nothing to split
            break
        j = int(torch.multinomial(weight / total, 1, generator=generator))
        donor = centroids[j].clone()
        centroids[e] = donor * up
        centroids[j] = donor * down
        sizes[e] = sizes[j] / 2.0
        sizes[j] -= sizes[e]
        n_split += 1
    counts.copy_(sizes.to(counts))
    return n_split
