r"""Linear probe: multinomial logistic regression on frozen features.

The classifier minimises the mean cross-entropy plus an L2 penalty on the weights,

.. math:: \min_{W, c}\ \frac{1}{N}\sum_i -\log \operatorname{softmax}(W x_i + c)_{y_i}
          + \frac{\lambda}{2} \lVert W \rVert_F^2 ,

with full-batch L-BFGS (strong Wolfe line search) on features standardised with the train
split's mean and standard deviation. This is scikit-learn's ``LogisticRegression`` objective
with ``C = 1 / (N lambda)`` (tests check the two agree). ``lambda`` is chosen from a
logarithmic sweep by accuracy on a held-out part of the train split, then the probe is refit
on the whole train split and scored once on the test split: the protocol of CLIP's linear
probes (Radford et al. 2021, appendix A.3), with features computed once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from .. import InvalidProblemError, NotConvergedWarning

__all__ = ["LinearProbeConfig", "LinearProbeResult", "fit_logistic", "linear_probe"]


def _positive(instance, attribute, value):
    if not value > 0:
        raise InvalidProblemError(f"{attribute.name}: expected a positive value, found {value!r}")


def _weight_decays(instance, attribute, value):
    if not value or any(not (w >= 0) for w in value):
        raise InvalidProblemError(f"weight_decays: expected a non-empty list of values >= 0, found {value!r}")


def _fraction(instance, attribute, value):
    if not 0.0 < value < 1.0:
        raise InvalidProblemError(f"val_fraction: expected a value in (0, 1), found {value!r}")


@attrs.frozen
class LinearProbeConfig:
    """How the probe is fit: the L2 sweep, the validation split, L-BFGS limits."""

    weight_decays: tuple[float, ...] = attrs.field(
        default=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), converter=tuple, validator=_weight_decays)
    val_fraction: float = attrs.field(default=0.2, validator=_fraction)
    max_iter: int = attrs.field(default=500, validator=_positive)
    tol: float = attrs.field(default=1e-6, validator=_positive)
    seed: int = 0


@attrs.frozen
class LinearProbeResult:
    """Top-1 accuracies of the probe and how it was chosen."""

    test_acc: float
    train_acc: float
    weight_decay: float
    val_acc: Mapping[float, float]
    n_train: int
    n_test: int
    n_iter: int
    converged: bool


def _as_float(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.ndim != 2 or t.shape[0] == 0:
        raise InvalidProblemError(f"{name}: expected a non-empty [N, D] array, found shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise InvalidProblemError(f"{name}: expected finite values, found NaN/inf entries")
    return t


def _as_labels(y, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().cpu()
    if t.ndim != 1 or t.shape[0] != n or torch.is_floating_point(t):
        raise InvalidProblemError(f"{name}: expected {n} integer labels, found {tuple(t.shape)} {t.dtype}")
    if int(t.min()) < 0:
        raise InvalidProblemError(f"{name}: expected non-negative labels, found {int(t.min())}")
    return t.to(torch.int64)


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float,
    max_iter: int = 500, tol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """``(W [C, D], c [C], n_iter, converged)`` minimising the objective of the module docstring.

    Converged means the gradient's max-norm fell below ``tol`` before ``max_iter`` iterations.
    """
    w = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    c = torch.zeros(n_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + c, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    n_iter = int(opt.state[w].get("n_iter", 0))
    closure()
    grad = max(float(w.grad.abs().max()), float(c.grad.abs().max()))
    return w.detach(), c.detach(), n_iter, grad <= tol * 10


def _accuracy(w, c, x, y) -> float:
    return float(((x @ w.T + c).argmax(1) == y).double().mean())


def linear_probe(train_x, train_y, test_x, test_y, config: LinearProbeConfig | None = None,
                 device=None) -> LinearProbeResult:
    """Fit on ``(train_x, train_y)``, choose the L2 weight on a validation part, score the test split."""
    cfg = config or LinearProbeConfig()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    xtr, xte = _as_float(train_x, "train features").to(dev), _as_float(test_x, "test features").to(dev)
    if xtr.shape[1] != xte.shape[1]:
        raise InvalidProblemError(f"test features: expected dimension {xtr.shape[1]}, found {xte.shape[1]}")
    ytr = _as_labels(train_y, xtr.shape[0], "train labels").to(dev)
    yte = _as_labels(test_y, xte.shape[0], "test labels").to(dev)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-12 * float(xtr.abs().max()) + 1e-300)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std

    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(xtr.shape[0], generator=gen).to(dev)
    n_val = max(1, int(round(cfg.val_fraction * xtr.shape[0])))
    if xtr.shape[0] - n_val < 1:
        raise InvalidProblemError(f"train features: expected at least 2 samples, found {xtr.shape[0]}")
    val, fit = perm[:n_val], perm[n_val:]
    val_acc = {}
    for wd in cfg.weight_decays:
        w, c, _, _ = fit_logistic(xtr[fit], ytr[fit], n_classes, wd, cfg.max_iter, cfg.tol)
        val_acc[float(wd)] = _accuracy(w, c, xtr[val], ytr[val])
    # ties go to the strongest regularisation (the sweep's most conservative model)
    best = max(sorted(val_acc, reverse=True), key=lambda wd: val_acc[wd])
    w, c, n_iter, converged = fit_logistic(xtr, ytr, n_classes, best, cfg.max_iter, cfg.tol)
    if not converged:
        warnings.warn(f"linear probe: L-BFGS stopped at max_iter={cfg.max_iter} before the gradient "
                      f"fell below tol={cfg.tol}", NotConvergedWarning, stacklevel=2)
    return LinearProbeResult(
        test_acc=_accuracy(w, c, xte, yte), train_acc=_accuracy(w, c, xtr, ytr), weight_decay=best,
        val_acc=val_acc, n_train=int(xtr.shape[0]), n_test=int(xte.shape[0]), n_iter=n_iter,
        converged=converged)
