r"""Invariant Information Clustering (IIC) loss as pure, differentiable torch functions.

For two views of the same ``n`` samples with cluster probabilities ``p1``, ``p2`` [n, K]
(softmax already applied), IIC estimates the joint distribution of the two cluster
variables over the batch and maximises their mutual information:

.. math::

    P = \operatorname{sym}\Big(\frac1n \sum_{i=1}^n p_{1,i}\, p_{2,i}^\top\Big),\qquad
    \operatorname{sym}(A) = \frac{A + A^\top}{2\,\mathbf 1^\top A \mathbf 1},

    \mathcal L_\lambda(P) = -\sum_{c, c'} P_{cc'}
        \big(\ln P_{cc'} - \lambda \ln P_c - \lambda \ln P_{c'}\big),

where :math:`P_c = \sum_{c'} P_{cc'}` and :math:`P_{c'} = \sum_c P_{cc'}` are the marginals
(equal, since :math:`P` is symmetric). Writing :math:`H` for entropy,
:math:`\mathcal L_\lambda = H(P) - 2\lambda H(P_c)`, so :math:`\mathcal L_1 = -I(z, z')`, which is
bounded below by :math:`-\ln K` (reached by a one-to-one pairing with balanced clusters) and
is 0 for a collapsed output (every sample in one cluster). :math:`\lambda > 1` adds an
extra :math:`-2(\lambda - 1) H(P_c)` that rewards balanced marginals.

Entries of :math:`P` and of its marginals below 2.2e-16 (Python's ``sys.float_info.epsilon``, in
every dtype, as ``IID_loss`` does) are clamped to it before the logarithm, which keeps the loss
and its gradient finite.
The marginals are taken from the joint *before* clamping, as in the reference.

These functions are used by the ``iic`` solver (the ``iic`` plugin) and as the
training loss by the training loop; gradients flow through ``p1`` and ``p2``.

References
----------
X. Ji, J. F. Henriques, A. Vedaldi. "Invariant Information Clustering for Unsupervised Image
Classification and Segmentation", ICCV 2019 (Eq. 3). Reference implementation:
``xu-ji/IIC``, ``code/utils/cluster/IID_losses.py`` (``IID_loss``, ``compute_joint``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

__all__ = [
    "IID_EPS",
    "iic_head_losses",
    "iic_joint",
    "iic_loss",
    "iic_loss_from_logits",
    "iic_multihead_loss",
    "mutual_information",
    "mutual_information_of_joint",
]


def _check_pair(p1: torch.Tensor, p2: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(p1, torch.Tensor):
        raise TypeError(f"p1: expected a torch.Tensor [n, K], found {type(p1).__name__}")
    if p1.ndim != 2 or p1.shape[0] == 0 or p1.shape[1] == 0:
        raise ValueError(f"p1: expected a non-empty 2-D tensor [n, K], found shape {tuple(p1.shape)}")
    if not p1.is_floating_point():
        raise ValueError(f"p1: expected a floating-point dtype, found {p1.dtype}")
    if p2 is None:
        return p1
    if not isinstance(p2, torch.Tensor):
        raise TypeError(f"p2: expected a torch.Tensor [n, K], found {type(p2).__name__}")
    if p2.shape != p1.shape:
        raise ValueError(f"p2: expected shape {tuple(p1.shape)} like p1, found {tuple(p2.shape)}")
    return p2


#: The reference clamp: ``IID_loss`` uses ``EPS = sys.float_info.epsilon`` (2.2e-16) in every
#: dtype. Clamping float32 at its own epsilon (1.2e-7) instead changes the loss by up to ~2e-2.
IID_EPS = sys.float_info.epsilon


def _eps(dtype: torch.dtype, eps: float | None) -> float:
    return IID_EPS if eps is None else float(eps)


def iic_joint(p1: torch.Tensor, p2: torch.Tensor | None = None) -> torch.Tensor:
    r"""Symmetrised, normalised joint distribution of the two views' cluster variables.

    .. math:: P = \frac{A + A^\top}{\mathbf 1^\top (A + A^\top) \mathbf 1},\qquad
              A = \sum_i p_{1,i}\, p_{2,i}^\top

    Parameters
    ----------
    p1 : torch.Tensor [n, K]
        Cluster probabilities of the first view (rows on the simplex).
    p2 : torch.Tensor [n, K], optional
        Cluster probabilities of the second (transformed) view; ``p1`` when omitted.

    Returns
    -------
    torch.Tensor [K, K]
        Symmetric, non-negative, sums to 1; differentiable in ``p1`` and ``p2``.
    """
    p2 = _check_pair(p1, p2)
    joint = p1.transpose(0, 1) @ p2  # [K, K] = sum_i p1_i p2_i^T
    joint = (joint + joint.transpose(0, 1)) / 2.0
    return joint / joint.sum()


def mutual_information_of_joint(
    joint: torch.Tensor, lamb: float = 1.0, eps: float | None = None
) -> torch.Tensor:
    r"""IIC objective of a joint ``P``: :math:`\sum P (\ln P - \lambda \ln P_c - \lambda \ln P_{c'})`.

    With ``lamb = 1`` this is the mutual information :math:`I(z, z')` in nats; the IIC loss is
    its negative.

    Parameters
    ----------
    joint : torch.Tensor [K, K]
        Joint distribution (non-negative, sums to 1), e.g. from :func:`iic_joint`.
    lamb : float
        Weight :math:`\lambda` of the marginal entropy terms (1 in the paper).
    eps : float, optional
        Clamp for ``P`` and its marginals before the logarithm; 2.2e-16 (``sys.float_info.epsilon``, the
        reference's) when omitted.

    Returns
    -------
    torch.Tensor []
        Scalar, differentiable.
    """
    if joint.ndim != 2 or joint.shape[0] != joint.shape[1]:
        raise ValueError(f"joint: expected a square 2-D tensor [K, K], found shape {tuple(joint.shape)}")
    tiny = _eps(joint.dtype, eps)
    k = joint.shape[0]
    p_i = joint.sum(dim=1).view(k, 1).clamp(min=tiny)  # row marginal, from the unclamped joint
    p_j = joint.sum(dim=0).view(1, k).clamp(min=tiny)  # column marginal (equal when symmetric)
    p_ij = joint.clamp(min=tiny)
    return (p_ij * (torch.log(p_ij) - lamb * torch.log(p_i) - lamb * torch.log(p_j))).sum()


def iic_loss(
    p1: torch.Tensor,
    p2: torch.Tensor | None = None,
    lamb: float = 1.0,
    eps: float | None = None,
) -> torch.Tensor:
    r"""IIC loss :math:`-\sum P (\ln P - \lambda \ln P_c - \lambda \ln P_{c'})` (``= -I`` at ``lamb = 1``).

    Parameters
    ----------
    p1 : torch.Tensor [n, K]
        Cluster probabilities of the first view (softmax applied).
    p2 : torch.Tensor [n, K], optional
        Cluster probabilities of the second view; ``p1`` when omitted (then the loss is
        :math:`-I` of the batch's self-joint, which still rewards confident, balanced outputs).
    lamb : float
        Entropy weight :math:`\lambda`; ``lamb > 1`` adds :math:`-2(\lambda-1) H(P_c)`.
    eps : float, optional
        Clamp before the logarithm; 2.2e-16 when omitted.

    Returns
    -------
    torch.Tensor []
        Scalar loss, :math:`\ge -\ln K` when ``lamb = 1``; differentiable in ``p1``/``p2``.

    References
    ----------
    Ji, Henriques, Vedaldi, ICCV 2019, Eq. (3); ``xu-ji/IIC`` ``IID_loss``.
    """
    return -mutual_information_of_joint(iic_joint(p1, p2), lamb=lamb, eps=eps)


def mutual_information(
    p1: torch.Tensor, p2: torch.Tensor | None = None, eps: float | None = None
) -> torch.Tensor:
    r"""Mutual information :math:`I(z, z') = \sum P \ln \frac{P}{P_c P_{c'}}` (nats) of :func:`iic_joint`.

    Parameters
    ----------
    p1, p2 : torch.Tensor [n, K]
        Cluster probabilities of two views (``p2`` defaults to ``p1``).
    eps : float, optional
        Clamp before the logarithm; 2.2e-16 when omitted.

    Returns
    -------
    torch.Tensor []
        In :math:`[0, \ln K]` up to the clamp; differentiable.
    """
    return mutual_information_of_joint(iic_joint(p1, p2), lamb=1.0, eps=eps)


def iic_loss_from_logits(
    logits1: torch.Tensor,
    logits2: torch.Tensor | None = None,
    lamb: float = 1.0,
    eps: float | None = None,
) -> torch.Tensor:
    r""":func:`iic_loss` of ``softmax(logits1)`` and ``softmax(logits2)``.

    Parameters
    ----------
    logits1, logits2 : torch.Tensor [n, K]
        Head outputs of the two views (``logits2`` defaults to ``logits1``). Half-precision
        inputs are computed in float32 (the clamp at float16's epsilon would be too coarse).
    lamb, eps
        As in :func:`iic_loss`.

    Returns
    -------
    torch.Tensor []
    """
    def prob(z: torch.Tensor) -> torch.Tensor:
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        return torch.softmax(z, dim=1)

    p1 = prob(logits1)
    p2 = None if logits2 is None else prob(logits2)
    return iic_loss(p1, p2, lamb=lamb, eps=eps)


def iic_head_losses(
    heads1: Sequence[torch.Tensor],
    heads2: Sequence[torch.Tensor] | None = None,
    lamb: float = 1.0,
    eps: float | None = None,
) -> torch.Tensor:
    r"""IIC loss of every sub-head, as a tensor [H] (mean: :func:`iic_multihead_loss`).

    Used to pick the sub-head with the lowest training loss for the read-out, as the
    reference's ``select_sub_head_on_loss`` (no labels needed), among the sub-heads that use
    the most clusters (:func:`assignsolve.train.recipes.iic.read_out_head`).
    """
    heads1 = list(heads1)
    if not heads1:
        raise ValueError("heads1: expected at least one sub-head, found none")
    heads2 = heads1 if heads2 is None else list(heads2)
    if len(heads2) != len(heads1):
        raise ValueError(f"heads2: expected {len(heads1)} sub-heads like heads1, found {len(heads2)}")
    return torch.stack([iic_loss(a, b, lamb=lamb, eps=eps) for a, b in zip(heads1, heads2)])


def iic_multihead_loss(
    heads1: Sequence[torch.Tensor],
    heads2: Sequence[torch.Tensor] | None = None,
    lamb: float = 1.0,
    eps: float | None = None,
) -> torch.Tensor:
    r"""Mean IIC loss over sub-heads: :math:`\frac1H \sum_h \mathcal L_\lambda(p^{(h)}_1, p^{(h)}_2)`.

    IIC trains several randomly initialised sub-heads per head (and an over-clustering head
    with more clusters than classes); each sub-head's loss is computed independently and
    averaged, as in the paper's Section 3.3.

    Parameters
    ----------
    heads1 : sequence of torch.Tensor [n, K_h]
        Probabilities of the first view, one tensor per sub-head (``K_h`` may differ).
    heads2 : sequence of torch.Tensor [n, K_h], optional
        Same for the second view (same length as ``heads1``); ``heads1`` when omitted.
    lamb, eps
        As in :func:`iic_loss`.

    Returns
    -------
    torch.Tensor []
    """
    return iic_head_losses(heads1, heads2, lamb=lamb, eps=eps).mean()
