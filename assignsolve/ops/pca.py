"""PCA(-whitening) and DeepCluster's feature preprocessing (Caron et al. 2018, Sec. 3)."""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import InvalidProblemError

__all__ = ["apply_pca", "fit_pca", "preprocess_features"]


@torch.no_grad()
def fit_pca(
    x: torch.Tensor, pca_dim: int, whiten: bool = True, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fit a (whitening) PCA projection :math:`z = (x - \mu) P`.

    With :math:`\Sigma = \frac1N \sum_i (x_i - \mu)(x_i - \mu)^\top = U \Lambda U^\top` (eigenvalues
    in decreasing order), :math:`P = U_{:, :d}` and, when whitening,
    :math:`P = U_{:, :d} (\Lambda_{:d} + \epsilon \lambda_1)^{-1/2}` so that
    :math:`\mathrm{Cov}(z) \approx I_d`. This is ``faiss.PCAMatrix(D, d, eigen_power=-0.5)`` as
    DeepCluster uses it (faiss adds 0 to the eigenvalues); the guard :math:`\epsilon \lambda_1` is
    *relative to the largest eigenvalue* :math:`\lambda_1`, so the result does not depend on the
    scale of the features: :math:`x \to c x` gives the same :math:`z` (an absolute guard would
    whiten features x 0.01 differently, issue 9). Constant features (:math:`\lambda_1 = 0`) map to 0.

    Parameters
    ----------
    x : torch.Tensor [N, D]
        Features (any floating dtype; statistics are computed in float64).
    pca_dim : int
        Output dimension ``d``, ``1 <= d <= D``.
    whiten : bool
        Scale each principal direction by :math:`(\lambda + \epsilon)^{-1/2}`.
    eps : float
        Relative guard: :math:`\epsilon \lambda_1` is added to the eigenvalues before the inverse
        square root (0: faiss' exact whitening; then a zero eigenvalue among the ``d`` kept is refused).

    Returns
    -------
    mean : torch.Tensor [D]
        :math:`\mu`, in ``x``'s dtype and device.
    proj : torch.Tensor [D, d]
        :math:`P`, in ``x``'s dtype and device.
    """
    n, dim = x.shape
    if isinstance(pca_dim, bool) or not isinstance(pca_dim, int) or not 1 <= pca_dim <= dim:
        raise InvalidProblemError(
            f"pca_dim: expected an int in [1, D = {dim}] (features have {dim} columns), found {pca_dim!r}"
        )
    if eps < 0:
        raise ValueError(f"eps: expected >= 0, found {eps}")
    xd = x.to(torch.float64)
    mean = xd.mean(dim=0)
    xc = xd - mean
    cov = xc.T @ xc / max(n, 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals = evals.flip(0)[:pca_dim].clamp_min(0.0)
    proj = evecs.flip(1)[:, :pca_dim]
    if whiten:
        top = float(evals[0]) if evals.numel() else 0.0
        if top <= 0.0:  # constant features: every centred row is 0, any finite scale will do
            floor = 1.0
        else:
            floor = eps * top
            if floor == 0.0 and bool((evals <= 0).any()):
                raise InvalidProblemError(
                    f"pca_dim: {int((evals <= 0).sum())} of the {pca_dim} kept principal directions have zero "
                    "variance, which eps = 0 cannot whiten (lower pca_dim or use eps > 0)")
        proj = proj * (evals + floor).rsqrt()[None, :]
    return mean.to(x.dtype), proj.to(x.dtype)


@torch.no_grad()
def apply_pca(x: torch.Tensor, mean: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    r""":math:`z = (x - \mu) P`.

    Parameters
    ----------
    x : torch.Tensor [M, D]
    mean : torch.Tensor [D]
    proj : torch.Tensor [D, d]

    Returns
    -------
    torch.Tensor [M, d]
    """
    return (x - mean.to(x)) @ proj.to(x)


@torch.no_grad()
def preprocess_features(
    x: torch.Tensor,
    pca_dim: int | None = 256,
    whiten: bool = True,
    eps: float = 1e-5,
    normalize: bool = True,
) -> torch.Tensor:
    r"""DeepCluster's feature preprocessing: PCA-whitening to ``pca_dim`` then L2 normalisation.

    .. math:: z_i = \frac{(x_i - \mu) P}{\lVert (x_i - \mu) P \rVert_2}

    with :math:`P` from :func:`fit_pca` (fitted on ``x`` itself, as DeepCluster does every epoch).
    Caron et al. 2018, Sec. 3 / ``clustering.py: preprocess_features`` (``pca=256``).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray [N, D]
        Features, on any device. Half precision is computed in float32. A numpy input gives a
        numpy output.
    pca_dim : int or None
        Output dimension (256 in DeepCluster); ``None`` skips the PCA (normalisation only).
    whiten : bool
        Whiten the principal components (DeepCluster: yes).
    eps : float
        Eigenvalue regulariser of the whitening, relative to the largest eigenvalue (scale-free).
    normalize : bool
        L2-normalise the rows at the end (DeepCluster: yes).

    Returns
    -------
    torch.Tensor or numpy.ndarray [N, pca_dim] (or [N, D] when ``pca_dim`` is None)
        Same family and device as ``x``, float32 or float64.
    """
    was_numpy = isinstance(x, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(x)) if was_numpy else x
    if x.ndim != 2:
        raise InvalidProblemError(f"x: expected a 2-D array [N, D], found shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if pca_dim is not None:
        mean, proj = fit_pca(x, pca_dim, whiten=whiten, eps=eps)
        x = apply_pca(x, mean, proj)
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    return x.numpy() if was_numpy else x
