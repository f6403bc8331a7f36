r"""The input of an assignment solver.

A :class:`Problem` holds what the solver needs to produce pseudo-labels for ``N``
samples over ``K`` clusters:

* ``scores`` [N, K]: higher is better (log-probabilities, similarities);
* ``features`` [N, D]: for solvers that cluster features themselves (k-means, CoKe);
* ``paired_scores`` [N, K]: scores of a second view of the same samples (IIC);
* target marginals ``a`` [N] and ``b`` [K] (uniform, each of total mass 1, when omitted);
* optional hard bounds on cluster sizes.

Arrays may be numpy arrays or torch tensors on any device; they are kept as torch tensors
(zero-copy for numpy) and results come back in the input's family (see
:class:`assignsolve.arrays.Family`). Every check raises :class:`InvalidProblemError`
with an "expected X, found Y" message.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch

from .arrays import Array, Family, as_tensor, family_of, is_floating
from .errors import InvalidProblemError

__all__ = ["Problem"]


def _matrix(x: Array | None, name: str) -> torch.Tensor | None:
    if x is None:
        return None
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise InvalidProblemError(f"{name}: expected a 2-D array [N, *], found shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InvalidProblemError(f"{name}: expected a non-empty array, found shape {tuple(t.shape)}")
    if not is_floating(t):
        raise InvalidProblemError(f"{name}: expected a floating-point dtype, found {t.dtype}")
    _check_finite(t, name)
    return t


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        n_bad = int(bad.sum())
        value = t[idx].item()
        hint = ""
        if math.isinf(value) and t.dtype != torch.float64:
            hint = f"; {t.dtype} holds |x| <= {torch.finfo(t.dtype).max:.4g}: was it cast from a larger value?"
        raise InvalidProblemError(
            f"{name}: expected finite values, found {n_bad} NaN/inf entries "
            f"(first at index {idx}: {value}){hint}"
        )


def _marginal(x: Array | None, name: str, length: int) -> torch.Tensor | None:
    if x is None:
        return None
    t = as_tensor(x, name)
    if t.ndim != 1 or t.shape[0] != length:
        raise InvalidProblemError(f"{name}: expected shape ({length},), found {tuple(t.shape)}")
    if not is_floating(t):
        raise InvalidProblemError(f"{name}: expected a floating-point dtype, found {t.dtype}")
    _check_finite(t, name)
    if bool((t < 0).any()):
        i = int((t < 0).nonzero()[0])
        raise InvalidProblemError(f"{name}: expected non-negative masses, found {name}[{i}] = {t[i].item()}")
    total = float(t.double().sum())
    if not total > 0 or not math.isfinite(total):
        raise InvalidProblemError(f"{name}: expected a positive, finite total mass, found {total}")
    return t


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.full((n,), 1.0 / n, dtype=dtype, device=like.device)


@attrs.frozen(eq=False)
class Problem:
    """One assignment problem: ``N`` samples to ``K`` clusters.

    Parameters
    ----------
    scores : array [N, K], optional
        Affinity of sample i to cluster k, higher is better.
    features : array [N, D], optional
        Sample features, for solvers that compute their own centroids.
    a : array [N], optional
        Row marginal (mass of each sample). Uniform ``1/N`` when omitted.
    b : array [K], optional
        Column marginal (target cluster proportions). Uniform ``1/K`` when omitted.
        Must have the same total mass as ``a``.
    n_clusters : int, optional
        ``K``; required when ``scores`` is absent, else must equal ``scores.shape[1]``.
    min_cluster_size, max_cluster_size : int, optional
        Hard bounds on the number of samples per cluster (exact solvers only).
    paired_scores : array [N, K], optional
        Scores of a second view of the same samples (mutual-information solvers).
    init_centroids : array [K, D], optional
        Starting centroids for feature-based solvers.
    """

    scores: torch.Tensor | None = attrs.field(default=None)
    features: torch.Tensor | None = attrs.field(default=None)
    a: torch.Tensor | None = attrs.field(default=None)
    b: torch.Tensor | None = attrs.field(default=None)
    n_clusters: int | None = attrs.field(default=None)
    min_cluster_size: int | None = attrs.field(default=None)
    max_cluster_size: int | None = attrs.field(default=None)
    paired_scores: torch.Tensor | None = attrs.field(default=None)
    init_centroids: torch.Tensor | None = attrs.field(default=None)
    family: Family = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        setter = object.__setattr__  # attrs frozen: normalise once, at construction
        if self.scores is None and self.features is None:
            raise InvalidProblemError("expected scores [N, K] and/or features [N, D], found neither")
        scores = _matrix(self.scores, "scores")
        features = _matrix(self.features, "features")
        first = self.scores if self.scores is not None else self.features
        setter(self, "family", family_of(first))
        n = (scores if scores is not None else features).shape[0]
        if features is not None and features.shape[0] != n:
            raise InvalidProblemError(
                f"features: expected {n} rows to match scores, found {features.shape[0]}"
            )
        if scores is not None:
            k = scores.shape[1]
            if self.n_clusters is not None and int(self.n_clusters) != k:
                raise InvalidProblemError(
                    f"n_clusters: expected {k} (scores.shape[1]), found {self.n_clusters}"
                )
        else:
            if self.n_clusters is None:
                raise InvalidProblemError("n_clusters: expected an int >= 1 when scores are absent, found None")
            k = _positive_int(self.n_clusters, "n_clusters")
        paired = _matrix(self.paired_scores, "paired_scores")
        if paired is not None and scores is not None and paired.shape != scores.shape:
            raise InvalidProblemError(
                f"paired_scores: expected shape {tuple(scores.shape)} like scores, found {tuple(paired.shape)}"
            )
        if paired is not None and scores is None:
            raise InvalidProblemError("paired_scores: expected scores of the first view too, found none")
        centroids = _matrix(self.init_centroids, "init_centroids")
        if centroids is not None:
            d = features.shape[1] if features is not None else centroids.shape[1]
            if centroids.shape != (k, d):
                raise InvalidProblemError(
                    f"init_centroids: expected shape {(k, d)}, found {tuple(centroids.shape)}"
                )
        a = _marginal(self.a, "a", n)
        b = _marginal(self.b, "b", k)
        if a is not None and b is not None:
            sa, sb = float(a.double().sum()), float(b.double().sum())
            if not math.isclose(sa, sb, rel_tol=1e-5, abs_tol=1e-12):
                raise InvalidProblemError(
                    f"marginals: expected equal total mass, found sum(a) = {sa:.8g} and sum(b) = {sb:.8g}"
                )
        lo = None if self.min_cluster_size is None else _positive_int(self.min_cluster_size, "min_cluster_size", 0)
        hi = None if self.max_cluster_size is None else _positive_int(self.max_cluster_size, "max_cluster_size")
        if lo is not None and lo * k > n:
            raise InvalidProblemError(
                f"min_cluster_size: expected at most N/K = {n}/{k} = {n // k}, found {lo} (infeasible)"
            )
        if hi is not None and hi * k < n:
            raise InvalidProblemError(
                f"max_cluster_size: expected at least ceil(N/K) = {math.ceil(n / k)}, found {hi} (infeasible)"
            )
        if lo is not None and hi is not None and lo > hi:
            raise InvalidProblemError(f"min_cluster_size: expected <= max_cluster_size = {hi}, found {lo}")
        for name, value in dict(scores=scores, features=features, paired_scores=paired,
                                init_centroids=centroids, a=a, b=b, n_clusters=k,
                                min_cluster_size=lo, max_cluster_size=hi).items():
            setter(self, name, value)

    # ------------------------------------------------------------------ views
    @property
    def n_samples(self) -> int:
        return (self.scores if self.scores is not None else self.features).shape[0]

    @property
    def device(self) -> torch.device:
        return self.family.device

    def row_marginal(self, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """``a`` (uniform 1/N when omitted) as a tensor."""
        ref = self.scores if self.scores is not None else self.features
        a = self.a if self.a is not None else _uniform(self.n_samples, ref)
        return a.to(dtype=dtype, device=device or a.device)

    def col_marginal(self, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """``b`` (uniform, with the same total mass as ``a``, when omitted) as a tensor."""
        ref = self.scores if self.scores is not None else self.features
        if self.b is not None:
            b = self.b
        else:
            b = _uniform(self.n_clusters, ref)
            if self.a is not None:
                b = b * self.a.double().sum().to(b.dtype)
        return b.to(dtype=dtype, device=device or b.device)

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_logits(cls, logits: Array, **kwargs) -> "Problem":
        """Scores = ``log_softmax(logits)`` (SeLa/SwAV read the solver's epsilon as 1/lambda)."""
        t = _matrix(logits, "logits")
        work = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
        scores = torch.log_softmax(work, dim=1)
        if isinstance(logits, np.ndarray):
            scores = scores.numpy()
        return cls(scores=scores, **kwargs)

    @classmethod
    def from_features(
        cls, features: Array, centroids: Array, metric: str = "cosine", **kwargs
    ) -> "Problem":
        """Scores from features and centroids.

        ``metric="cosine"``: ``<x/|x|, c/|c|>``; ``"dot"``: ``<x, c>``; ``"l2"``: ``-|x - c|^2``.
        The features are kept (for solvers that use them) and the centroids become
        ``init_centroids``.
        """
        x = _matrix(features, "features")
        c = _matrix(centroids, "centroids")
        if c.shape[1] != x.shape[1]:
            raise InvalidProblemError(
                f"centroids: expected {x.shape[1]} columns like features, found {c.shape[1]}"
            )
        if c.is_floating_point() and torch.finfo(c.dtype).max > torch.finfo(x.dtype).max:
            if bool((c.abs() > torch.finfo(x.dtype).max).any()):
                raise InvalidProblemError(
                    f"centroids: expected |values| <= {torch.finfo(x.dtype).max:.4g} (the {x.dtype} "
                    f"range of the features), found {float(c.abs().max()):.6g}"
                )
        c = c.to(device=x.device, dtype=x.dtype)
        if metric == "cosine":
            s = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
        elif metric == "dot":
            s = x @ c.T
        elif metric == "l2":
            s = -torch.cdist(x, c).pow(2)
        else:
            raise InvalidProblemError(f"metric: expected 'cosine', 'dot' or 'l2', found {metric!r}")
        if isinstance(features, np.ndarray):
            s, c = s.numpy(), c.numpy()
        return cls(scores=s, features=features, init_centroids=c, **kwargs)


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidProblemError(f"{name}: expected an int >= {minimum}, found {value!r}")
    return int(value)
