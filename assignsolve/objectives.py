r"""Training objectives of the representation-learning loop, as pure differentiable functions.

Each function takes model outputs (and, for the pseudo-label losses, targets produced by an
assignment solver under ``torch.no_grad()``) and returns a scalar loss; the training loop in
:mod:`assignsolve.train` only wires them. The IIC mutual-information loss lives in
:mod:`assignsolve.mi`.

* :func:`pseudo_label_loss`: cross-entropy of one or several heads against hard pseudo-labels
  (DeepCluster, SeLa, CoKe); :func:`pseudo_label_losses`: each head's.
* :func:`soft_cross_entropy` and :func:`swav_loss`: the swapped-prediction loss of SwAV.
* :func:`coke_two_view_loss`: CoKe's two-view loss, hard previous-epoch labels mixed with the
  other view's soft labels.
* :func:`tanh_clip`, :func:`nce_global_local`, :func:`nce_local_local` and :func:`amdim_loss`:
  AMDIM's multiscale noise-contrastive estimation between two views.

References
----------
M. Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features", ECCV 2018.
Y. M. Asano, C. Rupprecht, A. Vedaldi, "Self-labelling via simultaneous clustering and
representation learning" (SeLa), ICLR 2020.
M. Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments" (SwAV), NeurIPS 2020; ``facebookresearch/swav`` ``main_swav.py``.
Q. Qian et al., "Unsupervised Visual Representation Learning by Online Constrained K-Means"
(CoKe), CVPR 2022; ``idstcv/CoKe`` ``coke/builder_single_view.py``, ``main_double_view.py``.
P. Bachman, R. D. Hjelm, W. Buchwalter, "Learning Representations by Maximizing Mutual
Information Across Views" (AMDIM), NeurIPS 2019; ``Philip-Bachman/amdim-public`` ``costs.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "pseudo_label_loss",
    "pseudo_label_losses",
    "soft_cross_entropy",
    "swav_loss",
    "coke_two_view_loss",
    "tanh_clip",
    "nce_global_local",
    "nce_local_local",
    "amdim_loss",
]


def _check_2d(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D tensor [B, K], found shape {tuple(x.shape)}")


def pseudo_label_loss(
    logits: Sequence[torch.Tensor] | torch.Tensor,
    labels: Sequence[torch.Tensor] | torch.Tensor,
) -> torch.Tensor:
    r"""Mean cross-entropy of ``H`` heads against their pseudo-labels.

    .. math:: \mathcal L = \frac1H \sum_{h=1}^H \frac1B \sum_{i=1}^B
              -\log \operatorname{softmax}(z^{(h)}_i)_{y^{(h)}_i}

    SeLa trains several heads, each on the labels its own solver call produced; DeepCluster
    and CoKe use one head (``H = 1``).

    Parameters
    ----------
    logits : torch.Tensor [B, K_h] or sequence of them
        Head outputs (one tensor per head; ``K_h`` may differ between heads).
    labels : torch.Tensor [B] int64 or sequence of them
        Pseudo-labels in ``[0, K_h)``, one tensor per head (a single tensor is shared by all
        heads).

    Returns
    -------
    torch.Tensor []
        Scalar loss, differentiable in ``logits``: the mean of :func:`pseudo_label_losses`.
    """
    return pseudo_label_losses(logits, labels).mean()


def pseudo_label_losses(
    logits: Sequence[torch.Tensor] | torch.Tensor,
    labels: Sequence[torch.Tensor] | torch.Tensor,
) -> torch.Tensor:
    r"""Each head's cross-entropy against its pseudo-labels, :math:`\frac1B \sum_i
    -\log \operatorname{softmax}(z^{(h)}_i)_{y^{(h)}_i}` for ``h = 1..H``: a tensor [H], differentiable
    in ``logits`` (arguments as :func:`pseudo_label_loss`, whose loss is their mean; SeLa reads out
    the head whose summed loss over an epoch is the lowest)."""
    heads = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    if not heads:
        raise ValueError("logits: expected at least one head, found none")
    targets = [labels] * len(heads) if isinstance(labels, torch.Tensor) else list(labels)
    if len(targets) != len(heads):
        raise ValueError(f"labels: expected {len(heads)} label tensors (one per head), found {len(targets)}")
    losses = []
    for h, (z, y) in enumerate(zip(heads, targets)):
        _check_2d(z, f"logits[{h}]")
        if y.shape != (z.shape[0],):
            raise ValueError(f"labels[{h}]: expected shape ({z.shape[0]},), found {tuple(y.shape)}")
        losses.append(F.cross_entropy(z.float(), y.to(z.device, torch.int64)))
    return torch.stack(losses)


def soft_cross_entropy(logits: torch.Tensor, q: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Cross-entropy against soft targets: :math:`-\frac1B \sum_i \sum_k q_{ik} \log\operatorname{softmax}(z_i / \tau)_k`.

    Parameters
    ----------
    logits : torch.Tensor [B, K]
        Predictions (for SwAV: prototype scores, cosine similarities).
    q : torch.Tensor [B, K]
        Targets, rows on the simplex (codes from a solver; treated as constants).
    temperature : float
        :math:`\tau` (SwAV: 0.1).

    Returns
    -------
    torch.Tensor []
    """
    _check_2d(logits, "logits")
    _check_2d(q, "q")
    if q.shape != logits.shape:
        raise ValueError(f"q: expected shape {tuple(logits.shape)} like logits, found {tuple(q.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, found {temperature}")
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return -(q.detach().to(logp.dtype) * logp).sum(dim=1).mean()


def swav_loss(
    scores1: torch.Tensor,
    scores2: torch.Tensor,
    q1: torch.Tensor,
    q2: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    r"""SwAV's swapped prediction: each view predicts the other view's code.

    .. math:: \mathcal L = \frac12 \Big[\ell(z_1, q_2) + \ell(z_2, q_1)\Big],\qquad
              \ell(z, q) = -\frac1B \sum_i \sum_k q_{ik} \log \frac{\exp(z_{ik}/\tau)}{\sum_{k'} \exp(z_{ik'}/\tau)}

    where :math:`z_v = \hat x_v^\top C` are the prototype scores of view ``v`` and :math:`q_v`
    its code (soft assignment from the solver, computed without gradient).

    Parameters
    ----------
    scores1, scores2 : torch.Tensor [B, K]
        Prototype scores of the two views (normalised embeddings times normalised prototypes).
    q1, q2 : torch.Tensor [B, K]
        Codes of the two views, rows on the simplex.
    temperature : float
        :math:`\tau` (0.1 in SwAV).

    Returns
    -------
    torch.Tensor []

    References
    ----------
    Caron et al., NeurIPS 2020, Eq. (1)-(2); ``facebookresearch/swav`` ``main_swav.py`` (the
    ``subloss`` over crops, averaged).
    """
    return 0.5 * (soft_cross_entropy(scores1, q2, temperature) + soft_cross_entropy(scores2, q1, temperature))


def swav_multicrop_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    r"""SwAV's multi-crop swapped prediction: codes from the first views only, predicted by all others.

    .. math:: \mathcal L = \frac{1}{|A|} \sum_{i \in A} \frac{1}{V - 1} \sum_{v \ne i} \ell(z_v, q_i)

    with :math:`A` the first ``len(codes)`` views (SwAV's ``crops_for_assign``, the two large
    crops) and :math:`V` = ``len(scores)`` (large + small crops). With two views and two codes
    it equals :func:`swav_loss`. ``facebookresearch/swav`` ``main_swav.py`` (``subloss``).
    """
    if len(codes) < 1 or len(scores) < 2 or len(codes) > len(scores):
        raise ValueError(f"codes: expected 1..{len(scores)} codes for {len(scores)} views (>= 2), found {len(codes)}")
    total = scores[0].new_zeros((), dtype=torch.float32)
    for i, q in enumerate(codes):
        sub = sum(soft_cross_entropy(z, q, temperature) for v, z in enumerate(scores) if v != i)
        total = total + sub / (len(scores) - 1)
    return total / len(codes)


def coke_two_view_loss(
    pred: Sequence[torch.Tensor], proj: Sequence[torch.Tensor], labels: torch.Tensor, alpha: float = 0.2
) -> torch.Tensor:
    r"""CoKe's two-view loss for one clustering (Qian et al. 2022; ``idstcv/CoKe`` ``main_double_view.py``).

    ``pred = (p_1, p_2)`` and ``proj = (j_1, j_2)`` are the logits :math:`\hat x^\top \bar c_k / T`
    of the predictor and of the projection of views 1 and 2 against the previous epoch's centres;
    ``labels`` the previous epoch's hard labels. With :math:`s_v = \operatorname{softmax}(j_v)`
    (no gradient) and :math:`\bar v` the other view,

    .. math:: \mathcal L = \frac14 \sum_{v=1}^{2} \sum_{z \in \{p_v, j_v\}}
              \alpha\, \mathrm{CE}(z, y) + (1 - \alpha)\, \mathrm{CE}(z, s_{\bar v}),

    the mean over the four logits of the reference's ``loss_pred + loss_proj`` (its factor
    ``0.5 / (2 * num_head)`` over the sum of the heads' terms; average this over the heads).
    ``alpha`` 0.2 as ``--coke-alpha``; ``alpha = 1``: hard labels only.
    """
    (p1, p2), (j1, j2) = pred, proj
    for x, name in ((p1, "pred[0]"), (p2, "pred[1]"), (j1, "proj[0]"), (j2, "proj[1]")):
        _check_2d(x, name)
    with torch.no_grad():
        s1, s2 = F.softmax(j1.float(), dim=1), F.softmax(j2.float(), dim=1)
    total = p1.new_zeros((), dtype=torch.float32)
    for z, other in ((p1, s2), (j1, s2), (p2, s1), (j2, s1)):
        z = z.float()
        hard = F.cross_entropy(z, labels)
        soft = -(F.log_softmax(z, dim=1) * other).sum(1).mean()
        total = total + alpha * hard + (1.0 - alpha) * soft
    return total / 4


def tanh_clip(x: torch.Tensor, clip: float = 20.0) -> torch.Tensor:
    r"""Soft clipping :math:`c \tanh(x / c)` to :math:`(-c, c)` (AMDIM's ``tanh_clip``).

    Parameters
    ----------
    x : torch.Tensor [...]
        Any shape.
    clip : float
        :math:`c > 0` (AMDIM uses 20 for the NCE scores).

    Returns
    -------
    torch.Tensor [...]
        Same shape as ``x``.
    """
    if not clip > 0:
        raise ValueError(f"clip: expected > 0, found {clip}")
    return clip * torch.tanh(x / clip)


def nce_global_local(
    source: torch.Tensor,
    target: torch.Tensor,
    clip: float = 20.0,
    reg_weight: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""AMDIM NCE: a global vector of one view predicts every local vector of the other view.

    With :math:`s_{ijl} = c \tanh\big(\langle g_i, f_{jl}\rangle / (c \sqrt D)\big)` between the
    source of sample ``i`` and location ``l`` of the target of sample ``j``, each positive pair
    ``(i, i, l)`` is scored against all negatives ``(i, j != i, l')`` of the same source:

    .. math:: \mathcal L = -\frac{1}{B L}\sum_{i, l}
              \Big[s_{iil} - \log\Big(e^{s_{iil}} + \sum_{j \ne i}\sum_{l'} e^{s_{ijl'}}\Big)\Big],
              \qquad R = w \cdot \operatorname{mean}_{ijl}\big(\langle g_i, f_{jl}\rangle^2 / D\big)

    The penalty ``R`` on the squared raw scores keeps them from growing (AMDIM's ``lgt_reg``).

    Parameters
    ----------
    source : torch.Tensor [B, D]
        Global features of view 1 (or one location per sample, for local-to-local).
    target : torch.Tensor [B, D, L]
        ``L`` local features per sample of view 2 (a flattened [B, D, H, W] map).
    clip : float
        Soft-clipping constant ``c`` (20).
    reg_weight : float
        Weight ``w`` of the score penalty (0.05 in AMDIM).

    Returns
    -------
    (torch.Tensor [], torch.Tensor [])
        The NCE loss (mean over positives) and the penalty ``R``; both differentiable.

    References
    ----------
    Bachman et al., NeurIPS 2019, Sec. 3; ``amdim-public`` ``costs.py`` (``LossMultiNCE`` /
    ``loss_xent``), re-derived, not copied: negatives of a source are all locations of all
    other samples in the batch.
    """
    _check_2d(source, "source")
    if target.ndim != 3 or target.shape[:2] != source.shape:
        raise ValueError(
            f"target: expected shape [{source.shape[0]}, {source.shape[1]}, L], found {tuple(target.shape)}"
        )
    b, d = source.shape
    if b < 2:
        raise ValueError(f"source: expected a batch of at least 2 samples (negatives), found {b}")
    raw = torch.einsum("id,jdl->ijl", source.float(), target.float()) / math.sqrt(d)  # [B, B, L]
    reg = reg_weight * raw.pow(2).mean()
    s = tanh_clip(raw, clip)
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    pos = s[eye]  # [B, L]: s[i, i, :]
    neg = s.masked_fill(eye[:, :, None], -math.inf).flatten(1)  # [B, B*L], positives removed
    neg_lse = torch.logsumexp(neg, dim=1, keepdim=True)  # [B, 1], shared by the L positives of i
    log_num = pos
    log_den = torch.logaddexp(pos, neg_lse.expand_as(pos))
    return -(log_num - log_den).mean(), reg


def nce_local_local(
    source: torch.Tensor,
    target: torch.Tensor,
    clip: float = 20.0,
    reg_weight: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""AMDIM's local-to-local term: one random location of view 1 predicts all locations of view 2.

    .. math:: \mathcal L = \mathcal L_{\mathrm{NCE}}\big(f^{(1)}_{i,\, l_i},\; f^{(2)}\big),
              \quad l_i \sim \mathcal U\{1..L\}

    (AMDIM's "5-5" term picks the source location with a random mask each step.)

    Parameters
    ----------
    source : torch.Tensor [B, D, L]
        Local features of view 1.
    target : torch.Tensor [B, D, L']
        Local features of view 2.
    clip, reg_weight
        As in :func:`nce_global_local`.
    generator : torch.Generator, optional
        Draws the source locations (default: the global generator).

    Returns
    -------
    (torch.Tensor [], torch.Tensor [])
    """
    if source.ndim != 3:
        raise ValueError(f"source: expected shape [B, D, L], found {tuple(source.shape)}")
    b, _, n_loc = source.shape
    pick = torch.randint(n_loc, (b,), generator=generator, device="cpu").to(source.device)
    src = source[torch.arange(b, device=source.device), :, pick]  # [B, D]
    return nce_global_local(src, target, clip=clip, reg_weight=reg_weight)


def amdim_loss(
    global1: torch.Tensor,
    locals1: Sequence[torch.Tensor],
    global2: torch.Tensor,
    locals2: Sequence[torch.Tensor],
    clip: float = 20.0,
    reg_weight: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""AMDIM multiscale NCE between two views, symmetric in the views.

    .. math:: \mathcal L = \frac{1}{|\mathcal P|} \sum_{(a, b) \in \mathcal P}
              \tfrac12\big[\mathcal L_{\mathrm{NCE}}(a^{(1)}, b^{(2)}) + \mathcal L_{\mathrm{NCE}}(a^{(2)}, b^{(1)})\big] + R

    over the pairs :math:`\mathcal P` = (global, each local scale) plus (coarsest local,
    coarsest local): AMDIM's 1-5, 1-7 and 5-5 terms, with its penalty ``R`` on squared scores
    averaged the same way.

    Parameters
    ----------
    global1, global2 : torch.Tensor [B, D]
        Global embeddings of the two views.
    locals1, locals2 : sequence of torch.Tensor [B, D, H_s, W_s]
        Local embeddings at one or more scales (same dimension ``D``), coarsest first.
    clip, reg_weight
        As in :func:`nce_global_local`.
    generator : torch.Generator, optional
        For the random source location of the local-to-local term.

    Returns
    -------
    torch.Tensor []
    """
    locals1, locals2 = list(locals1), list(locals2)
    if not locals1 or len(locals1) != len(locals2):
        raise ValueError(
            f"locals1/locals2: expected the same non-zero number of scales, found {len(locals1)} and {len(locals2)}"
        )
    flat1 = [m.flatten(2) for m in locals1]
    flat2 = [m.flatten(2) for m in locals2]
    terms, regs = [], []
    for t1, t2 in zip(flat1, flat2):
        for src, trg in ((global1, t2), (global2, t1)):
            loss, reg = nce_global_local(src, trg, clip, reg_weight)
            terms.append(loss)
            regs.append(reg)
    for src, trg in ((flat1[0], flat2[0]), (flat2[0], flat1[0])):
        loss, reg = nce_local_local(src, trg, clip, reg_weight, generator)
        terms.append(loss)
        regs.append(reg)
    return torch.stack(terms).mean() + torch.stack(regs).mean()
