"""The output of an assignment solver."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import torch

from .arrays import Array, to_family
from .problem import Problem

__all__ = ["Assignment"]


def _freeze(mapping: Mapping | None) -> Mapping:
    return types.MappingProxyType(dict(mapping or {}))


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@attrs.frozen(eq=False)
class Assignment:
    """Pseudo-labels for ``N`` samples over ``K`` clusters, with how they were found.

    Attributes
    ----------
    labels : array [N] int64
        Hard assignment, in the input's family (numpy or torch, same device).
    soft : array [N, K] or None
        Soft assignment, rows sum to 1; ``None`` for hard-only solvers.
    n_clusters : int
        ``K``.
    converged : bool
        False when the solver stopped at ``max_iter`` before reaching ``tol``.
    n_iters : int
        Iterations performed.
    errors : tuple of float
        History of the stopping criterion (for Sinkhorn: marginal error).
    objective : float
        The solver's own objective at the returned point (documented per solver).
    solver : str
        Registered name of the solver that produced this.
    seconds : float
        Wall time of the solve.
    extras : mapping
        Solver-specific read-only information (e.g. number of empty-cluster repairs).
    """

    labels: Array
    n_clusters: int
    soft: Array | None = None
    converged: bool = True
    n_iters: int = 0
    errors: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    objective: float = attrs.field(default=math.nan, converter=float)
    solver: str = ""
    seconds: float = 0.0
    extras: Mapping = attrs.field(factory=dict, converter=_freeze)

    @classmethod
    def for_problem(
        cls,
        problem: Problem,
        *,
        labels: torch.Tensor | None = None,
        soft: torch.Tensor | None = None,
        **fields,
    ) -> "Assignment":
        """Build the result of ``problem`` from torch tensors, returned in the input's family.

        ``labels`` default to ``soft.argmax(1)``. ``soft`` rows are renormalised only by the
        solver itself; here they are just converted to the family's dtype (float32/float64).
        """
        if labels is None:
            if soft is None:
                raise ValueError("Assignment.for_problem needs labels or soft")
            labels = soft.argmax(dim=1)
        fam = problem.family
        return cls(
            labels=to_family(labels, fam, torch.int64),
            soft=to_family(soft, fam, fam.result_dtype),
            n_clusters=problem.n_clusters,
            **fields,
        )

    # ------------------------------------------------------------ views
    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def cluster_sizes(self) -> np.ndarray:
        """Number of samples per cluster, [K] int64 numpy array."""
        labels = self.labels.cpu().numpy() if isinstance(self.labels, torch.Tensor) else self.labels
        return np.bincount(np.asarray(labels, dtype=np.int64), minlength=self.n_clusters)

    @property
    def n_empty(self) -> int:
        """Clusters that received no sample."""
        return int((self.cluster_sizes == 0).sum())

    @property
    def size_entropy(self) -> float:
        """Entropy (nats) of the cluster-size distribution; ``ln K`` when perfectly balanced."""
        p = self.cluster_sizes / max(self.n_samples, 1)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    @property
    def marginal_error(self) -> float:
        """Last recorded stopping-criterion value (NaN if the solver records none)."""
        return self.errors[-1] if self.errors else math.nan
