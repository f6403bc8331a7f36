r"""Built-in plugin ``iic``: pseudo-labels from two views' agreement, scored by mutual information.

IIC (Ji et al., ICCV 2019) does not solve an assignment problem: a network is trained to
maximise the mutual information :math:`I(z, z')` between the cluster variables of two views
(see :mod:`assignsolve.mi`), and the cluster of a sample is read off the head's output. The
solver here is that read-out step, with the IIC objective reported for the batch:

.. math::

    p_1 = \operatorname{softmax}(S),\quad p_2 = \operatorname{softmax}(S'),\qquad
    q_i = \frac{p_{1,i} \odot p_{2,i}}{\mathbf 1^\top (p_{1,i} \odot p_{2,i})},\qquad
    y_i = \arg\max_k q_{ik},

and the objective is :math:`I(z, z')` of the joint :math:`P` of :func:`assignsolve.mi.iic_joint`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

import assignsolve
from assignsolve import Assignment, BaseSolver, Problem
from assignsolve.plugin import resolve_device, to_family
from assignsolve.mi import iic_joint, mutual_information_of_joint
from assignsolve.ops.ties import balanced_argmax
from assignsolve.core.guards import check_castable, refuse_unsupported

__all__ = ["IIC", "iic_agreement"]


@torch.no_grad()
def iic_agreement(p1: torch.Tensor, p2: torch.Tensor | None = None) -> torch.Tensor:
    r"""Soft assignment from two views: :math:`q_i \propto p_{1,i} \odot p_{2,i}`.

    The normalised product is the posterior of the cluster when both views are treated as
    independent evidence for it (a product of experts); it is peaked where the views agree
    and flat where they disagree. With one view, ``q = p1`` unchanged.

    Parameters
    ----------
    p1 : torch.Tensor [N, K]
        Probabilities of the first view.
    p2 : torch.Tensor [N, K], optional
        Probabilities of the second view.

    Returns
    -------
    torch.Tensor [N, K]
        Rows on the simplex. A row whose product underflows to zero everywhere (views
        confidently disagreeing) falls back to the mean ``(p1 + p2) / 2``.
    """
    if p2 is None:
        return p1
    q = p1 * p2
    total = q.sum(dim=1, keepdim=True)
    fallback = (p1 + p2) / 2.0
    ok = total > torch.finfo(q.dtype).tiny
    return torch.where(ok, q / torch.where(ok, total, torch.ones_like(total)), fallback)


@attrs.frozen
class IIC(BaseSolver):
    """Invariant Information Clustering read-out: argmax of the two views' agreement (Ji et al. 2019).

    Parameters
    ----------
    lamb : float
        :math:`\\lambda` of the IIC loss reported in ``extras["loss"]`` (1 in the paper); the
        objective is always the plain mutual information (``lamb = 1``).
    device : str or torch.device, optional
        Where to compute; ``None``: the input's device; ``"auto"``: CUDA when available.

    Notes
    -----
    ``problem.scores`` [N, K] are read as logits or log-probabilities of the first view
    (``softmax`` is applied; it is the identity on log-probabilities up to normalisation) and
    ``problem.paired_scores`` as the second view. Without a second view, ``p2 = p1``: the joint
    becomes :math:`\\frac1N\\sum_i p_i p_i^\\top` and the MI measures how confident and balanced
    the single view is; the soft assignment is ``p1`` itself.

    The result carries ``objective = I(z, z')`` in nats, ``extras``: ``mi`` (same),
    ``loss`` (:math:`\\mathcal L_\\lambda`), ``joint`` [K, K] (in the input's family),
    ``marginal_entropy`` (:math:`H(P_c)`), ``n_views`` (1 or 2). The computation is closed-form:
    ``converged`` is True and ``n_iters`` 0, except when every sample lands in one cluster
    (identical rows): then ``converged=False`` with a ``CollapsedWarning``. Rows whose maximum
    ties (constant scores) go to the emptiest tied cluster. IIC balances clusters only through
    the entropy term, so a non-uniform ``a`` or ``b`` and size bounds are refused
    (``UnsupportedProblemError``).
    """

    name: ClassVar[str] = "iic"
    needs: ClassVar[str] = "scores"
    gpu: ClassVar[bool] = True
    requires_n_ge_k: ClassVar[bool] = False
    default_recipe: ClassVar[str | None] = "iic"

    lamb: float = attrs.field(default=1.0)
    device: str | torch.device | None = attrs.field(default=None)

    @lamb.validator
    def _check_lamb(self, attribute, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"lamb: expected a number > 0, found {value!r}")

    def solve(self, problem: Problem) -> Assignment:
        # IIC balances clusters only through its entropy term: a, b and size bounds are refused.
        refuse_unsupported(self.name, problem, instead="'sinkhorn-pot' or 'lp'")
        device = resolve_device(self.device, problem.device)
        dtype = torch.float64 if problem.scores.dtype == torch.float64 else torch.float32
        check_castable(problem.paired_scores, dtype, "paired_scores", " of the scores")
        p1 = torch.softmax(problem.scores.detach().to(device=device, dtype=dtype), dim=1)
        p2 = None
        if problem.paired_scores is not None:
            p2 = torch.softmax(problem.paired_scores.detach().to(device=device, dtype=dtype), dim=1)
        with torch.no_grad():
            joint = iic_joint(p1, p2)
            mi = float(mutual_information_of_joint(joint, lamb=1.0))
            loss = -float(mutual_information_of_joint(joint, lamb=float(self.lamb)))
            marg = joint.sum(dim=1)
            marg_entropy = float(-(marg * torch.log(marg.clamp(min=torch.finfo(dtype).tiny))).sum())
            soft = iic_agreement(p1, p2)
        return Assignment.for_problem(
            problem,
            labels=balanced_argmax(soft, torch.ones(problem.n_clusters)),  # ties: spread evenly
            soft=soft,
            converged=True,
            n_iters=0,
            objective=mi,
            extras={
                "mi": mi,
                "loss": loss,
                "lamb": float(self.lamb),
                "joint": to_family(joint, problem.family, problem.family.result_dtype),
                "marginal_entropy": marg_entropy,
                "n_views": 1 if p2 is None else 2,
            },
        )


@assignsolve.hookimpl
def register_solvers(register):
    register(IIC)
