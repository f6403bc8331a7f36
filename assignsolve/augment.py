r"""Two independently augmented views of a batch, on the batch's device.

Clustering-based self-supervised methods train on pairs of views :math:`(t_1(x), t_2(x))`,
:math:`t_1, t_2 \sim \mathcal{T}`: SwAV predicts the code of one view from the other, IIC
maximises :math:`I(z(t_1 x); z(t_2 x))`, SeLa / DeepCluster train on augmented copies. For
images :math:`\mathcal{T}` is the SimCLR / SwAV recipe scaled down for small images: random
resized crop (scale (0.5, 1) at <= 64 px, (0.2, 1) above), a small random rotation/affine,
horizontal flip, colour jitter and random grayscale for RGB only (a flipped or recoloured digit
is not the same digit), then additive gaussian noise, clamped to [0, 1]. Chen et al., "A
Simple Framework for Contrastive Learning of Visual Representations", ICML 2020; Caron et al.,
SwAV, NeurIPS 2020; Ji et al., IIC, ICCV 2019 (crops, rotation, jitter on small images).

For fixed feature vectors [B, D] there is no geometry: :func:`feature_view` applies feature
dropout (mask each coordinate with probability ``drop``) and gaussian noise scaled per feature
by the batch's standard deviation.

The geometric part (resized crop, rotation, translation, flip) is composed into one affine map
per sample and applied with a single ``grid_sample`` (:func:`random_crop_affine`), so an 8x8
digit is interpolated once, not once per op; colour jitter / grayscale use kornia.augmentation.
Everything is batched with per-sample random parameters; no torchvision. Randomness comes from torch's global generator, so ``torch.manual_seed``
makes a call reproducible on a given device.
"""

from __future__ import annotations

import math

import attrs
import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["STRENGTHS", "AugmentParams", "TwoViews", "add_noise", "affine_theta", "feature_view", "random_crop_affine"]


@attrs.frozen
class AugmentParams:
    """Magnitudes of one augmentation strength (see :data:`STRENGTHS`)."""

    crop_scale_small: tuple[float, float]  #: RandomResizedCrop area range when min(H, W) <= 64
    crop_scale_large: tuple[float, float]  #: same, larger images
    degrees: float  #: max rotation (both signs), degrees
    translate: float  #: max translation, fraction of the side
    jitter: tuple[float, float, float, float]  #: brightness, contrast, saturation, hue (RGB only)
    jitter_p: float  #: probability of colour jitter (RGB only)
    grayscale_p: float  #: probability of grayscale (RGB only)
    flip_p: float  #: probability of horizontal flip (RGB only)
    noise_std: float  #: gaussian noise std on [0, 1] images
    feature_drop: float  #: feature-dropout probability for [B, D] inputs
    feature_noise: float  #: noise std for [B, D] inputs, relative to each feature's std


STRENGTHS: dict[str, AugmentParams] = {
    "weak": AugmentParams((0.8, 1.0), (0.5, 1.0), 5.0, 0.05, (0.2, 0.2, 0.2, 0.05), 0.5, 0.1, 0.5,
                          0.01, 0.05, 0.05),
    "default": AugmentParams((0.5, 1.0), (0.2, 1.0), 10.0, 0.1, (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5,
                             0.03, 0.1, 0.1),
    "strong": AugmentParams((0.3, 1.0), (0.08, 1.0), 20.0, 0.15, (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5,
                            0.05, 0.2, 0.2),
}


@torch.no_grad()
def add_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    r"""Additive gaussian noise clamped to the image range: :math:`\mathrm{clip}_{[0,1]}(x + \sigma \xi)`, :math:`\xi \sim N(0, I)`.

    Parameters
    ----------
    x : Tensor [B, C, H, W]
        Images in [0, 1].
    std : float
        :math:`\sigma \ge 0`.

    Returns
    -------
    Tensor [B, C, H, W]
        Noisy images in [0, 1], same dtype and device.
    """
    if std == 0:
        return x
    return (x + std * torch.randn_like(x)).clamp_(0.0, 1.0)


def affine_theta(crop_w: torch.Tensor, crop_h: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                 angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, flip: torch.Tensor,
                 height: int, width: int) -> torch.Tensor:
    r"""Sampling matrices of "crop, resize, then rotate/translate/flip" for ``F.affine_grid``.

    In normalised coordinates (:math:`[-1, 1]^2`, ``align_corners=False``) an output point
    :math:`u` reads the input at :math:`p = c + D A^{-1} R_lpha^{	op} A (S u - t)` with
    :math:`D = \mathrm{diag}(w_c, h_c)` the crop's side fractions, :math:`c` its centre,
    :math:`A = \mathrm{diag}(W, H)` (rotation in pixel units, so non-square images are not
    sheared), :math:`R_lpha` a rotation by :math:`lpha`, :math:`S = \mathrm{diag}(\pm 1, 1)`
    the flip and :math:`t` the translation of the crop's content.

    Parameters
    ----------
    crop_w, crop_h : Tensor [B]
        Crop width / height as fractions of the image side, in (0, 1].
    cx, cy : Tensor [B]
        Crop centre, normalised coordinates.
    angle : Tensor [B]
        Rotation :math:`\alpha` in radians (positive: clockwise on screen, rows pointing down).
    tx, ty : Tensor [B]
        Translation, normalised coordinates (2 x fraction of the side).
    flip : Tensor [B]
        -1 to flip horizontally, +1 otherwise.
    height, width : int
        H, W of the images.

    Returns
    -------
    Tensor [B, 2, 3]
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    hw, wh = height / width, width / height
    m00, m01 = crop_w * cos, crop_w * sin * hw
    m10, m11 = -crop_h * sin * wh, crop_h * cos
    t0 = cx - (m00 * tx + m01 * ty)
    t1 = cy - (m10 * tx + m11 * ty)
    return torch.stack([torch.stack([m00 * flip, m01, t0], -1), torch.stack([m10 * flip, m11, t1], -1)], -2)


@torch.no_grad()
def random_crop_affine(x: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3),
                       degrees: float = 0.0, translate: float = 0.0, flip_p: float = 0.0) -> torch.Tensor:
    r"""Random resized crop + rotation + translation + horizontal flip, one bilinear resampling.

    Per sample: crop area :math:`s \sim U(	ext{scale})` of the image and aspect
    :math:`r = w_c/h_c` with :math:`\log r \sim U(\log 	ext{ratio})` (the RandomResizedCrop
    of Szegedy et al. 2015 / SimCLR; sides are clipped to the image instead of re-drawn), a
    uniform centre keeping the crop inside, rotation :math:`lpha \sim U(-	ext{degrees},
    	ext{degrees})`, translation up to ``translate`` of each side, and a flip with
    probability ``flip_p``; the crop is resized to the input size. Zero padding outside.

    Parameters
    ----------
    x : Tensor [B, C, H, W]
        Images.
    scale : (float, float)
        Range of the crop's area fraction, within (0, 1].
    ratio : (float, float)
        Range of the crop's aspect ratio w/h.
    degrees : float
        Maximum absolute rotation, degrees.
    translate : float
        Maximum absolute shift as a fraction of the side.
    flip_p : float
        Probability of a horizontal flip.

    Returns
    -------
    Tensor [B, C, H, W]
        Same dtype and device as ``x``.
    """
    b, _, h, w = x.shape
    dtype = x.dtype if x.is_floating_point() else torch.float32
    uniform = lambda lo, hi: torch.empty(b, device=x.device, dtype=dtype).uniform_(lo, hi)  # noqa: E731
    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    crop_w = torch.sqrt(area * aspect).clamp_(max=1.0)
    crop_h = torch.sqrt(area / aspect).clamp_(max=1.0)
    cx = uniform(-1.0, 1.0) * (1.0 - crop_w)
    cy = uniform(-1.0, 1.0) * (1.0 - crop_h)
    angle = uniform(-degrees, degrees) * (math.pi / 180.0)
    tx, ty = uniform(-2 * translate, 2 * translate), uniform(-2 * translate, 2 * translate)
    flip = torch.where(uniform(0.0, 1.0) < flip_p, -1.0, 1.0).to(dtype)
    theta = affine_theta(crop_w, crop_h, cx, cy, angle, tx, ty, flip, h, w)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def feature_view(x: torch.Tensor, drop: float, noise: float) -> torch.Tensor:
    r"""One random view of feature vectors: :math:`\tilde x = m \odot x + \sigma\, s \odot \xi`.

    :math:`m_{ij} \sim \mathrm{Bernoulli}(1 - p)` masks features (dropout without rescaling, so
    kept coordinates keep their value), :math:`s_j` is feature j's standard deviation over the
    batch, :math:`\xi \sim N(0, I)`. Feature dropout + noise is the usual augmentation for
    vectors without spatial structure (cf. VIME, Yoon et al., NeurIPS 2020; SCARF, Bahri et al.,
    ICLR 2022).

    Parameters
    ----------
    x : Tensor [B, D]
        Feature vectors.
    drop : float
        p in [0, 1), probability of zeroing each coordinate.
    noise : float
        :math:`\sigma \ge 0`, noise std relative to each feature's batch std.

    Returns
    -------
    Tensor [B, D]
        Same dtype and device as ``x``.
    """
    out = x
    if drop > 0:
        out = out * (torch.rand_like(x) >= drop).to(x.dtype)
    if noise > 0:
        scale = x.std(dim=0, unbiased=False, keepdim=True)
        out = out + noise * scale * torch.randn_like(x)
    return out


class TwoViews(nn.Module):
    r"""Two independent random views :math:`(t_1(x), t_2(x))`, :math:`t_1, t_2 \sim \mathcal{T}`, of a batch.

    Parameters
    ----------
    input_shape : tuple
        (C, H, W) for images in [0, 1] or (D,) for feature vectors (one sample, no batch dim).
    strength : str
        ``"weak"``, ``"default"`` or ``"strong"`` (magnitudes in :data:`STRENGTHS`).
    device : str, torch.device or None
        Where the views are computed; None: the input's device.

    Call with ``x`` [B, *input_shape] (float; images in [0, 1]); returns a tuple of two
    tensors [B, *input_shape] of the same dtype on ``device`` (images stay in [0, 1]).
    Each sample of each view gets its own random parameters.
    """

    def __init__(self, input_shape: tuple[int, ...], strength: str = "default", device=None):
        super().__init__()
        shape = tuple(input_shape) if not isinstance(input_shape, (str, bytes)) else ()
        if len(shape) not in (1, 3) or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                for s in shape):
            raise ValueError(f"TwoViews: expected input_shape (C, H, W) or (D,) of positive ints, found {input_shape!r}")
        if strength not in STRENGTHS:
            raise ValueError(f"TwoViews: expected strength one of {sorted(STRENGTHS)}, found {strength!r}")
        self.input_shape = shape
        self.strength = strength
        self.params = STRENGTHS[strength]
        self.device = None if device is None else torch.device(device)
        self.is_image = len(shape) == 3
        self.pipeline = self._build_image_pipeline() if self.is_image else nn.Identity()
        if self.device is not None:
            self.to(self.device)

    def _build_image_pipeline(self) -> nn.Module:
        """Colour operations (RGB only); the geometry is :func:`random_crop_affine`."""
        p = self.params
        if self.input_shape[0] != 3:
            return nn.Sequential()
        return nn.Sequential(K.ColorJitter(*p.jitter, p=p.jitter_p), K.RandomGrayscale(p=p.grayscale_p))

    @property
    def crop_scale(self) -> tuple[float, float]:
        """The crop-area range used for this image size."""
        return self.params.crop_scale_small if min(self.input_shape[1:]) <= 64 else self.params.crop_scale_large

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, strength={self.strength!r}, device={self.device}"

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"TwoViews: expected a torch.Tensor batch, found {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != len(self.input_shape) + 1:
            raise ValueError(f"TwoViews: expected a batch [B, {', '.join(map(str, self.input_shape))}], "
                             f"found shape {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"TwoViews: expected a floating-point batch, found dtype {x.dtype}")
        if self.device is not None:
            x = x.to(self.device)
        if self.is_image and x.numel():
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-6 or hi > 1 + 1e-6 or math.isnan(lo + hi):
                raise ValueError(f"TwoViews: expected images in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
        return x

    @torch.no_grad()
    def view(self, x: torch.Tensor) -> torch.Tensor:
        """One random view of a checked batch [B, *input_shape]."""
        if not self.is_image:
            return feature_view(x, self.params.feature_drop, self.params.feature_noise)
        p = self.params
        flip_p = p.flip_p if self.input_shape[0] == 3 else 0.0
        v = random_crop_affine(x, self.crop_scale, degrees=p.degrees, translate=p.translate, flip_p=flip_p)
        if len(self.pipeline):
            v = self.pipeline(v.clamp_(0.0, 1.0))
        return add_noise(v.clamp_(0.0, 1.0), p.noise_std).to(x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, *input_shape] -> (view1, view2), each [B, *input_shape]."""
        x = self._check(x)
        return self.view(x), self.view(x)
