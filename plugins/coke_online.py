"""CoKe's online state (one batch at a time): :class:`OnlineCoke` and its tensors :class:`CokeState`.

Split out of :mod:`assignsolve_plugins.coke` (the solver) to keep each module small; the ``coke``
solver's ``online(...)`` returns an :class:`OnlineCoke`, an
:class:`assignsolve.core.solver.OnlineState`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import attrs
import torch
import torch.nn.functional as F

from assignsolve.ops.centroids import coke_centre_step

if TYPE_CHECKING:
    from .coke import CoKe


@attrs.define(eq=False)
class CokeState:
    """Mutable state of an online CoKe run (tensors on one device).

    Attributes
    ----------
    centres : torch.Tensor [K, D]
        Current-epoch centres (unit norm).
    rho : torch.Tensor [K]
        Dual variables.
    counts : torch.Tensor [K] int64
        Samples assigned to each cluster so far in this epoch.
    lower : torch.Tensor [K]
        Lower-bound proportions :math:`\\gamma b_k`.
    labels : torch.Tensor [N] int64
        Latest label of each sample by dataset index (-1: not seen yet).
    previous_labels : torch.Tensor [N] int64
        Labels at the end of the previous epoch (-1 before the first ``end_epoch``).
    previous_centres : torch.Tensor [K, D]
        Centres at the end of the previous epoch (the initial centres before).
    epoch, step : int
        Completed epochs; mini-batches seen in total.
    """

    centres: torch.Tensor
    rho: torch.Tensor
    counts: torch.Tensor
    lower: torch.Tensor
    labels: torch.Tensor
    previous_labels: torch.Tensor
    previous_centres: torch.Tensor
    epoch: int = 0
    step: int = 0

    _TENSORS: ClassVar[tuple[str, ...]] = (
        "centres", "rho", "counts", "lower", "labels", "previous_labels", "previous_centres"
    )

    def state_dict(self) -> dict:
        out = {name: getattr(self, name).detach().clone() for name in self._TENSORS}
        out.update(epoch=int(self.epoch), step=int(self.step))
        return out


class OnlineCoke:
    """A CoKe run over a dataset of ``n_samples``, fed one mini-batch at a time.

    Create it with :meth:`CoKe.online`. Per mini-batch call :meth:`partial_fit` with the
    features and the samples' dataset indices; at the end of each epoch call
    :meth:`end_epoch`. :meth:`targets` and :meth:`logits` give what the network is trained
    on (previous-epoch labels and centres). :meth:`state_dict` / :meth:`load_state_dict`
    checkpoint the run.
    """

    def __init__(self, config: "CoKe", state: CokeState):
        self.config = config
        self.state = state

    # -------------------------------------------------------------- properties
    @property
    def n_samples(self) -> int:
        return int(self.state.labels.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.state.centres.shape[0])

    @property
    def dim(self) -> int:
        return int(self.state.centres.shape[1])

    @property
    def device(self) -> torch.device:
        return self.state.centres.device

    @property
    def dtype(self) -> torch.dtype:
        return self.state.centres.dtype

    @property
    def centres(self) -> torch.Tensor:
        """Current-epoch centres [K, D] (unit norm)."""
        return self.state.centres

    # -------------------------------------------------------------- algorithm
    @torch.no_grad()
    def partial_fit(self, features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Assign one mini-batch, then take the dual step and update the centres.

        Parameters
        ----------
        features : torch.Tensor [B, D]
            Features of the batch (L2-normalised here).
        indices : torch.Tensor [B] int
            Dataset index of each row, in ``[0, n_samples)``.

        Returns
        -------
        torch.Tensor [B] int64
            Labels of the batch under the centres and duals before this step.
        """
        x = self._features(features)
        idx = self._indices(indices, x.shape[0])
        s = self.state
        labels, _ = coke_assign(x, s.centres, s.rho)
        eta = self.config.dual_step_size(self.n_clusters)
        s.rho = coke_dual_step(s.rho, labels, s.lower, eta, clip=self.config.gamma < 1)
        s.centres, s.counts = coke_centre_step(s.centres, s.counts, x, labels)
        s.labels[idx] = labels
        s.step += 1
        return labels

    @property
    def started(self) -> bool:
        """Whether a mini-batch has been assigned (:meth:`start_from` is refused from then on)."""
        return self.state.step > 0

    @torch.no_grad()
    def start_from(self, centres: torch.Tensor) -> None:
        """Replace the initial centres [K, D] (normalised here; also the first epoch's
        ``previous_centres``) before the first :meth:`partial_fit`."""
        if self.started:
            raise ValueError("start_from: expected a run that has seen no mini-batch, found "
                             f"{self.state.step} seen")
        c = torch.as_tensor(centres).detach()
        if tuple(c.shape) != (self.n_clusters, self.dim):
            raise ValueError(f"centres: expected shape {(self.n_clusters, self.dim)}, found {tuple(c.shape)}")
        c = F.normalize(c.to(device=self.device, dtype=self.dtype), dim=1)
        self.state.centres, self.state.previous_centres = c, c.clone()

    @torch.no_grad()
    def end_epoch(self) -> None:
        """Current labels/centres become the targets; per-epoch counts restart at 0."""
        s = self.state
        s.previous_labels = s.labels.clone()
        s.previous_centres = s.centres.clone()
        s.counts = torch.zeros_like(s.counts)
        s.epoch += 1

    @torch.no_grad()
    def targets(self, indices: torch.Tensor) -> torch.Tensor:
        """Training targets [B] int64: previous-epoch labels (the current ones in epoch 0)."""
        idx = self._indices(indices, None)
        prev = self.state.previous_labels[idx]
        return torch.where(prev >= 0, prev, self.state.labels[idx])

    def logits(self, features: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        r"""Training logits :math:`\hat x^\top \bar c_k / T` [B, K] against the previous-epoch centres.

        Differentiable in ``features`` (the centres are constants); ``temperature`` 0.1 as in
        the paper.
        """
        x = F.normalize(features.to(self.dtype), dim=1)
        return x @ self.state.previous_centres.to(x.device).T / temperature

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Tensors and counters of the run (cloned); restore with :meth:`load_state_dict`."""
        return self.state.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore a :meth:`state_dict`; shapes must match this run's (N, K, D)."""
        expected = {
            "centres": (self.n_clusters, self.dim), "rho": (self.n_clusters,),
            "counts": (self.n_clusters,), "lower": (self.n_clusters,),
            "labels": (self.n_samples,), "previous_labels": (self.n_samples,),
            "previous_centres": (self.n_clusters, self.dim),
        }
        missing = [k for k in (*expected, "epoch", "step") if k not in state_dict]
        if missing:
            raise KeyError(f"load_state_dict: expected keys {sorted(expected) + ['epoch', 'step']}, missing {missing}")
        values = {}
        for key, shape in expected.items():
            t = torch.as_tensor(state_dict[key])
            if tuple(t.shape) != shape:
                raise ValueError(f"load_state_dict: {key}: expected shape {shape}, found {tuple(t.shape)}")
            current = getattr(self.state, key)
            values[key] = t.detach().to(device=current.device, dtype=current.dtype).clone()
        for key, value in values.items():
            setattr(self.state, key, value)
        self.state.epoch = int(state_dict["epoch"])
        self.state.step = int(state_dict["step"])

    # -------------------------------------------------------------- validation
    def _features(self, features) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            features = torch.as_tensor(features)
        if features.ndim != 2 or features.shape[1] != self.dim or features.shape[0] == 0:
            raise ValueError(f"features: expected shape [B, {self.dim}] with B >= 1, found {tuple(features.shape)}")
        if not features.is_floating_point():
            raise ValueError(f"features: expected a floating-point dtype, found {features.dtype}")
        return F.normalize(features.detach().to(device=self.device, dtype=self.dtype), dim=1)

    def _indices(self, indices, batch: int | None) -> torch.Tensor:
        idx = torch.as_tensor(indices)
        if idx.ndim != 1 or (batch is not None and idx.shape[0] != batch):
            raise ValueError(f"indices: expected shape [{batch if batch is not None else 'B'}], found {tuple(idx.shape)}")
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(f"indices: expected an integer dtype, found {idx.dtype}")
        idx = idx.to(device=self.device, dtype=torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_samples):
            bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
            raise ValueError(f"indices: expected values in [0, {self.n_samples}), found {bad}")
        return idx


#: The paper's dual step size and the smallest K it was used with (three heads, K = 3000/4000/5000;
#: ``idstcv/CoKe`` ``run_single_view.sh``: ``--coke-dual-lr 20 --coke-k 3000 4000 5000``).
PAPER_ETA = 20.0


PAPER_MIN_K = 3000


@torch.no_grad()
def coke_assign(x: torch.Tensor, centres: torch.Tensor, rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CoKe assignment :math:`y_i = \arg\max_k x_i^\top c_k + \rho_k`.

    Parameters
    ----------
    x : torch.Tensor [B, D]
        L2-normalised features of the mini-batch.
    centres : torch.Tensor [K, D]
        L2-normalised centres.
    rho : torch.Tensor [K]
        Dual variables of the size constraints (>= 0).

    Returns
    -------
    labels : torch.Tensor [B] int64
    scores : torch.Tensor [B, K]
        :math:`x_i^\top c_k + \rho_k`.
    """
    scores = x @ centres.T + rho
    return scores.argmax(dim=1), scores


@torch.no_grad()
def coke_dual_step(
    rho: torch.Tensor, labels: torch.Tensor, lower: torch.Tensor, eta: float, clip: bool = True
) -> torch.Tensor:
    r"""One dual ascent step: :math:`\rho_k \leftarrow [\rho_k - \eta n_k / B + \eta\, \ell_k]_+`.

    Parameters
    ----------
    rho : torch.Tensor [K]
        Current dual variables.
    labels : torch.Tensor [B] int64
        Assignment of the mini-batch, from :func:`coke_assign` with this ``rho``.
    lower : torch.Tensor [K]
        Lower-bound proportions :math:`\ell_k = \gamma b_k` (``gamma / K`` in the paper).
    eta : float
        Dual step size :math:`\eta` (20 in the paper, for K in the thousands).
    clip : bool
        Project onto :math:`\rho \ge 0` (inequality constraints). The reference skips the
        projection when :math:`\gamma = 1` (sizes then constrained to equal :math:`N b_k`).

    Returns
    -------
    torch.Tensor [K]
    """
    counts = torch.bincount(labels, minlength=rho.shape[0]).to(rho.dtype)
    rho = rho - eta * counts / labels.shape[0] + eta * lower
    return rho.clamp(min=0) if clip else rho
