r"""Entropic optimal transport through POT's Sinkhorn solvers: the ``sinkhorn-pot`` solver.

.. math::

    Q^\star = \arg\max_{Q \ge 0} \; \langle Q, S \rangle + \varepsilon H(Q)
    \quad \text{s.t.} \quad Q \mathbf 1_K = a,\; Q^\top \mathbf 1_N = b,
    \qquad H(Q) = -\sum_{ij} Q_{ij} \log Q_{ij},

i.e. POT's :math:`\min_Q \langle Q, M \rangle - \varepsilon H(Q)` with cost :math:`M = -S`
(shifted by the constant :math:`\max S`, which leaves the plan unchanged because
:math:`\sum_{ij} Q_{ij}` is fixed, and keeps the Gibbs kernel :math:`e^{-M/\varepsilon}` in
:math:`(0, 1]`). This is the pseudo-labelling problem of SeLa (with
:math:`\varepsilon = 1/\lambda`, scores = log-probabilities) and SwAV (:math:`\varepsilon = 0.05`,
scores = prototype similarities).

The plan is computed by :func:`ot.sinkhorn` (Cuturi's matrix scaling, ``method="sinkhorn"``)
or, when :math:`(\max S - \min S)/\varepsilon` is large enough for the kernel or the scalings to
leave the float64 range, its log-domain form (``method="sinkhorn_log"``, alternating
log-sum-exp updates of the dual potentials, Peyré & Cuturi 2019, sec. 4.4).

References
----------
.. [1] M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.
.. [2] G. Peyré, M. Cuturi, "Computational Optimal Transport", Foundations and Trends in Machine
   Learning 11(5-6), 2019, ch. 4.
.. [3] R. Flamary et al., "POT: Python Optimal Transport", JMLR 22(78), 2021
   (``ot.bregman.sinkhorn_knopp``, ``ot.bregman.sinkhorn_log``).
.. [4] Y. M. Asano, C. Rupprecht, A. Vedaldi, "Self-labelling via simultaneous clustering and
   representation learning", ICLR 2020.
.. [5] M. Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
   Assignments", NeurIPS 2020.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import attrs
import torch

import assignsolve
from assignsolve import Assignment, AssignsolveError, BaseSolver, Problem
from assignsolve.plugin import optional_import, resolve_device
from assignsolve.ops.ties import balanced_argmax
from assignsolve.core.guards import check_exponent_range, refuse_unsupported

__all__ = ["SinkhornPOT", "SinkhornNumericalError", "SinkhornPOTResult", "choose_method",
           "entropy", "sinkhorn_pot_plan"]

METHODS = ("auto", "sinkhorn", "sinkhorn_log")

#: ``method="auto"`` switches to the log domain when ``(max S - min S) / epsilon`` exceeds half
#: of ``-log(smallest normal float64)`` (= 354.0): past it the kernel entries fall below
#: ``sqrt(tiny)`` and the scalings ``u, v`` that must compensate them risk over/underflow.
AUTO_LOG_BOUND = -0.5 * math.log(torch.finfo(torch.float64).tiny)

#: Largest score spread (and spread / epsilon) accepted: a sixteenth of the float64 maximum, so
#: that costs ``max S - S`` and sums of two dual potentials stay finite.
SPREAD_LIMIT = torch.finfo(torch.float64).max / 16

_POT_NUMERICAL = "numerical errors at iteration"


class SinkhornNumericalError(AssignsolveError, FloatingPointError):
    """Plain Sinkhorn scaling under/overflowed before reaching ``tol``."""


@attrs.frozen
class SinkhornPOTResult:
    """Output of :func:`sinkhorn_pot_plan` (torch float64 tensors on the input's device)."""

    plan: torch.Tensor  #: [N, K] transport plan Q
    log_v: torch.Tensor  #: [K] column potential (log of POT's scaling v)
    errors: tuple[float, ...]  #: column-marginal error, every 10 iterations, then at the end
    n_iters: int  #: iterations performed
    method: str  #: "sinkhorn" or "sinkhorn_log"
    numerical_error_at: int | None  #: iteration where plain scaling broke down, else None


def choose_method(scores: torch.Tensor, epsilon: float) -> str:
    r"""``"sinkhorn_log"`` when :math:`(\max S - \min S)/\varepsilon >` :data:`AUTO_LOG_BOUND`, else ``"sinkhorn"``.

    Parameters
    ----------
    scores : Tensor [N, K]
        ``S``.
    epsilon : float
        Entropic regularisation.
    """
    spread = float(scores.max() - scores.min())
    return "sinkhorn_log" if spread / epsilon > AUTO_LOG_BOUND else "sinkhorn"


@torch.no_grad()
def entropy(plan: torch.Tensor) -> float:
    r""":math:`H(Q) = -\sum_{ij} Q_{ij} \log Q_{ij}` with :math:`0 \log 0 = 0`; ``plan`` [N, K]."""
    return float(-torch.special.xlogy(plan, plan).sum())


@torch.no_grad()
def sinkhorn_pot_plan(scores: torch.Tensor, a: torch.Tensor, b: torch.Tensor, epsilon: float,
                      method: str = "sinkhorn", tol: float = 1e-6, max_iter: int = 1000) -> SinkhornPOTResult:
    r"""Entropic OT plan :math:`\arg\max_Q \langle Q, S\rangle + \varepsilon H(Q)`, :math:`Q1 = a,\ Q^\top 1 = b`, by POT.

    Calls ``ot.sinkhorn(a, b, M, reg=epsilon, method=method, numItermax=max_iter,
    stopThr=tol, log=True)`` with ``M = max(S) - S``; POT's torch backend keeps everything on
    the tensors' device.

    Parameters
    ----------
    scores : Tensor [N, K] float64
        ``S``, higher is better.
    a : Tensor [N] float64
        Row marginal.
    b : Tensor [K] float64
        Column marginal, same total mass as ``a``.
    epsilon : float
        Entropic regularisation ``reg`` (> 0).
    method : {"sinkhorn", "sinkhorn_log"}
        POT method: matrix scaling (Cuturi 2013) or log-domain potentials.
    tol : float
        POT's ``stopThr``: stop when :math:`\|Q^\top 1 - b\|_2 <` ``tol`` (checked every 10
        iterations; the row marginal is exact after each row update).
    max_iter : int
        POT's ``numItermax``.

    Returns
    -------
    SinkhornPOTResult
        ``errors`` are POT's checks, plus the error of the returned plan when the last
        iteration was not a check.
    """
    ot = optional_import("ot", "the 'sinkhorn-pot' solver", "pot")
    cost = scores.max() - scores
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.sinkhorn(a, b, cost, reg=epsilon, method=method, numItermax=max_iter,
                                stopThr=tol, log=True, warn=False)
    broke = None
    for w in caught:
        text = str(w.message)
        if _POT_NUMERICAL in text:
            broke = int(text.rsplit(" ", 1)[-1])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    last = int(log["niter"])
    n_iters = broke if broke is not None else last + 1
    errors = [float(e) for e in log["err"]]
    final = float(torch.linalg.vector_norm(plan.sum(0) - b))
    if broke is not None or last % 10 != 0 or not errors:
        errors.append(final)
    log_v = log["log_v"] if "log_v" in log else torch.log(log["v"])
    return SinkhornPOTResult(plan=plan, log_v=log_v, errors=tuple(errors), n_iters=n_iters,
                             method=method, numerical_error_at=broke)


@attrs.frozen
class SinkhornPOT(BaseSolver):
    r"""Entropic OT (Sinkhorn) through POT: max <Q, S> + epsilon H(Q) with marginals a, b.

    .. math::

        \max_{Q \ge 0} \langle Q, S \rangle + \varepsilon H(Q) \quad \text{s.t.} \quad
        Q 1 = a,\ Q^\top 1 = b, \qquad H(Q) = -\sum_{ij} Q_{ij}\log Q_{ij}

    (POT's ``ot.sinkhorn(a, b, M=-S, reg=epsilon)``; Cuturi 2013, SeLa/SwAV pseudo-labels).

    Parameters
    ----------
    epsilon : float
        Entropic regularisation (> 0); SeLa's ``1/lambda``, SwAV's ``eps`` (0.05).
    tol : float
        Stop when the column-marginal error :math:`\|Q^\top 1 - b\|_2 <` ``tol`` (POT's
        ``stopThr``; checked every 10 iterations). ``converged`` is this test on the returned plan.
    max_iter : int
        Maximum Sinkhorn iterations (POT's ``numItermax``).
    method : {"auto", "sinkhorn", "sinkhorn_log"}
        ``"auto"``: ``"sinkhorn_log"`` when ``(max S - min S) / epsilon > 354`` (half the
        float64 exponent range, :data:`AUTO_LOG_BOUND`), else the faster ``"sinkhorn"``.
    device : str, torch.device or None
        Where POT computes (its torch backend): ``None`` = the input's device, ``"auto"`` =
        CUDA when available.

    Notes
    -----
    Computes in float64 (POT's torch backend, on ``device``) whatever the input dtype, and
    returns ``soft`` in the input's family, device and dtype. ``soft = Q / (Q 1)`` row-wise,
    computed as :math:`\mathrm{softmax}_j(S_{ij}/\varepsilon + \log v_j)` so that rows of
    zero mass (``a_i = 0``) still get their conditional distribution; ``labels`` its argmax.
    ``objective`` = :math:`\langle Q, S\rangle + \varepsilon H(Q)` (also in ``extras`` as
    ``transport_score`` and ``entropy``). ``extras["method"]`` is the POT method used. If
    plain scaling under/overflows before reaching ``tol`` a :class:`SinkhornNumericalError`
    says so (use ``method="sinkhorn_log"``).
    """

    name: ClassVar[str] = "sinkhorn-pot"
    needs: ClassVar[str] = "scores"
    gpu: ClassVar[bool] = True
    requires_n_ge_k: ClassVar[bool] = False
    default_recipe: ClassVar[str | None] = "sela"
    #: the recipes' paper values (SeLa: lambda = 1/epsilon = 10; SwAV: epsilon 0.05)
    recipe_options: ClassVar[dict] = {"sela": {"epsilon": 0.1}, "swav": {"epsilon": 0.05}}

    epsilon: float = 0.05
    tol: float = 1e-6
    max_iter: int = 1000
    method: str = "auto"
    device: str | torch.device | None = None

    def __attrs_post_init__(self) -> None:
        for field in ("epsilon", "tol"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{field}: expected a finite float > 0, found {value!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter: expected an int >= 1, found {self.max_iter!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, found {self.method!r}")

    def solve(self, problem: Problem) -> Assignment:
        refuse_unsupported(self.name, problem, a=False, b=False)
        device = resolve_device(self.device, problem.device)
        scores = problem.scores.detach().to(device=device, dtype=torch.float64)
        check_exponent_range(float(scores.max()) - float(scores.min()), "max S - min S", self.name,
                             "a finite score spread", SPREAD_LIMIT)
        check_exponent_range((float(scores.max()) - float(scores.min())) / float(self.epsilon),
                             f"(max S - min S) / epsilon, epsilon = {self.epsilon:g}", self.name,
                             "a score spread / epsilon in the float64 range", SPREAD_LIMIT)
        a = problem.row_marginal(torch.float64, device)
        b = problem.col_marginal(torch.float64, device)
        b = b * (a.sum() / b.sum())  # Problem accepts a 1e-5 relative mass mismatch; Sinkhorn cannot
        eps = float(self.epsilon)
        # zero masses exactly: solve on the rows with a_i > 0 and columns with b_k > 0, then put the
        # zero rows/columns back (plan 0, log v_k = -inf: no sample goes to a zero-mass cluster)
        rows, cols = a > 0, b > 0
        sub = scores[rows][:, cols]
        method = choose_method(sub, eps) if self.method == "auto" else self.method
        res = sinkhorn_pot_plan(sub, a[rows], b[cols], eps, method=method, tol=float(self.tol),
                                max_iter=self.max_iter)
        plan = torch.zeros_like(scores)
        plan[rows.nonzero()[:, :1], cols.nonzero()[:, 0][None, :]] = res.plan
        log_v = torch.full_like(b, -math.inf)
        log_v[cols] = res.log_v
        res = attrs.evolve(res, plan=plan, log_v=log_v)
        final = max(res.errors[-1], float(torch.linalg.vector_norm(plan.sum(1) - a)))
        converged = final < self.tol
        if not bool(torch.isfinite(plan).all()) or (res.numerical_error_at is not None and not converged):
            spread = float(scores.max() - scores.min())
            raise SinkhornNumericalError(
                f"sinkhorn-pot: method {method!r} hit a numerical under/overflow at iteration "
                f"{res.numerical_error_at} with (max S - min S) / epsilon = {spread / eps:.4g}; "
                "expected a finite plan: use method='sinkhorn_log' (or 'auto') or a larger epsilon"
            )
        soft = torch.softmax(scores / eps + res.log_v[None, :], dim=1)
        labels = balanced_argmax(soft, b)  # identical rows tie: spread them as b asks
        score, ent = float((plan * scores).sum()), entropy(plan)
        return Assignment.for_problem(
            problem, soft=soft, labels=labels, converged=converged, n_iters=res.n_iters, errors=res.errors,
            objective=score + eps * ent,
            extras={"method": method, "transport_score": score, "entropy": ent,
                    "numerical_error_at": res.numerical_error_at},
        )


@assignsolve.hookimpl
def register_solvers(register):
    register(SinkhornPOT)
