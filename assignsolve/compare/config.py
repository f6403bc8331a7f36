"""``compare``'s settings: :class:`CompareConfig` (the CLI flags), checked with the shared validators
of :mod:`assignsolve.core.validators`, so a bad value is one ``CompareError`` line naming the field,
what was expected and what was found (exit code 2 from the CLI)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from ..core.errors import CompareError
from ..core.validators import above, at_least, choice, is_bool, is_int
from .scales import EPSILON_REL, PAIR_K, TAU_REL

__all__ = ["CompareConfig"]

_above = functools.partial(above, error=CompareError)
_at_least = functools.partial(at_least, error=CompareError)
_choice = functools.partial(choice, error=CompareError)
_int = functools.partial(is_int, error=CompareError)
_bool = is_bool(error=CompareError)


def _options(instance, attribute, value) -> None:
    ok = isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values())
    if not ok:
        raise CompareError(f"{attribute.name}: expected a mapping {{solver name: {{option: value}}}}, found {value!r}")


@attrs.frozen
class CompareConfig:
    """Settings of one comparison (the CLI flags).

    Attributes
    ----------
    k : int or None
        Clusters; None: the number of label classes.
    iters : int
        Protocol rounds ``T`` (and ``max_iter`` of feature solvers unless set explicitly).
    seed : int
        Seeds the shared initial centroids and every solver that has a ``seed`` option.
    timeout : float or None
        Seconds per solver (process isolation only); None: no limit.
    normalize : {"l2", "none"}
        Row L2 normalisation of the features before anything else.
    init : {"kmeans++", "random"}
        Shared initial centroids (:func:`assignsolve.ops.centroids.init_centroids`).
    metric : {"cosine", "dot", "l2"}
        Scores from features and centroids.
    update : {"soft", "hard"}
        Centroid update weighted by the soft assignment (when the solver gives one) or by the labels.
    tol : float
        Fixed-point tolerance of the protocol.
    device : str
        Computation device, passed to every solver that has a ``device`` option.
    isolation : {"process", "inline"}
        One spawned worker per solver (crash/timeout isolation), or in this process.
    tracemalloc : bool
        Also record the tracemalloc peak (Python/numpy allocations; slows Python-heavy code).
    warmup : bool
        Before the timed run, one untimed round on the first ``min(N, max(4K, 64))`` rows.
    threads : int or None
        ``torch.set_num_threads`` in the worker (None: torch's default). On a shared or busy
        machine, 1 thread gives far steadier timings of small problems.
    solver_opts : mapping
        ``{solver name: {option: value}}``.
    epsilon_rel, tau_rel : float
        Scale-aware defaults (:mod:`.scales`): ``epsilon = epsilon_rel x std(S0)`` for score solvers
        with an ``epsilon`` option, ``tau = tau_rel x std(S0)`` for two-view solvers (iic).
    pair_k : int
        Two-view solvers pair each sample with one of its ``pair_k`` nearest neighbours.
    """

    k: int | None = attrs.field(default=None, validator=_int(1, optional=True))
    iters: int = attrs.field(default=10, validator=_int(1))
    seed: int = attrs.field(default=0, validator=_int())
    timeout: float | None = attrs.field(default=120.0, validator=_above(0, optional=True))
    normalize: str = attrs.field(default="l2", validator=_choice(("l2", "none")))
    init: str = attrs.field(default="kmeans++", validator=_choice(("kmeans++", "random")))
    metric: str = attrs.field(default="cosine", validator=_choice(("cosine", "dot", "l2")))
    update: str = attrs.field(default="soft", validator=_choice(("soft", "hard")))
    tol: float = attrs.field(default=1e-6, validator=_at_least(0))
    device: str = "cpu"
    isolation: str = attrs.field(default="process", validator=_choice(("process", "inline")))
    tracemalloc: bool = attrs.field(default=False, validator=_bool)
    warmup: bool = attrs.field(default=True, validator=_bool)
    threads: int | None = attrs.field(default=None, validator=_int(1, optional=True))
    solver_opts: Mapping = attrs.field(factory=dict, validator=_options)
    epsilon_rel: float = attrs.field(default=EPSILON_REL, validator=_above(0))
    tau_rel: float = attrs.field(default=TAU_REL, validator=_above(0))
    pair_k: int = attrs.field(default=PAIR_K, validator=_int(1))
