r"""IIC-style views for greyscale digits: a clean image paired with strongly augmented copies.

IIC's MNIST setup (Ji et al., ICCV 2019, Sec. 4 and ``xu-ji/IIC`` ``cluster_greyscale_twohead``
with ``--crop_orig``) pairs each *un-augmented* image with ``r`` independently transformed
copies of it (``--num_dataloaders``); the transformed copies get random rotation, scale and
translation. Measured on 5,000 real MNIST digits (``shared/data/README.md`` and
``docs/training.md``), two things decided whether anything was learnt: the clean/augmented
pairing (with both views augmented IIC's MI rose while its clusters ignored the digits) and
*strong* geometry plus a blanked rectangle (milder zoom without erasing stalled at 0.66).

:func:`random_stroke` first thickens or thins each digit's strokes by a random amount
(``GreyParams.stroke``; a run takes its recipe's ``default_stroke_jitter``: on for the two-view
recipes IIC, CoKe and SwAV, off for SeLa and DeepCluster, which lost with it). Without it, IIC at
some seeds clustered by stroke width within each shape family (on 5,000 MNIST digits, seed 3: ten
balanced clusters at accuracy 0.45, with the mean ink of a cluster ranging from 60 to 153). With
it, those seeds reach 0.96 (docs/training.md).

Then :func:`random_affine` draws, per sample, a rotation :math:`\alpha \sim U(\pm 25^\circ)`, a zoom
:math:`s \sim U(0.8, 1.5)`, a shear :math:`\kappa \sim U(\pm 0.15)` and a translation up to
12 % of each side, composes them into one matrix and resamples once with ``grid_sample``
(batched, no per-sample Python). :func:`random_erasing` blanks a random rectangle with
probability 0.25 (Zhong et al., AAAI 2020; torchvision's ``RandomErasing`` defaults: area
2-33 %, aspect 0.3-3.3, value 0).
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F

__all__ = ["GreyParams", "CleanAndAugmented", "affine_matrix", "random_affine", "random_erasing", "erase_mask",
           "cross_extremum", "random_stroke", "small_crops"]


@attrs.frozen
class GreyParams:
    """Magnitudes of the greyscale-digit augmentation (defaults: the ones measured to work)."""

    degrees: float = 25.0
    scale: tuple[float, float] = (0.8, 1.5)
    translate: float = 0.12
    shear: float = 0.15
    stroke: float = 0.5
    erase_p: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.33)
    erase_ratio: tuple[float, float] = (0.3, 3.3)


def affine_matrix(angle: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor, tx: torch.Tensor,
                  ty: torch.Tensor, height: int, width: int) -> torch.Tensor:
    r"""``theta`` [B, 2, 3] for ``F.affine_grid`` that moves image content by :math:`u \mapsto M u + t`.

    In pixel units about the image centre, :math:`M = s\, R_\alpha \begin{pmatrix}1 & \kappa\\ 0 & 1
    \end{pmatrix}` (zoom ``s`` > 1 enlarges the content; positive :math:`\alpha` turns
    clockwise on screen, rows pointing down) and :math:`t` = (tx, ty) in normalised
    coordinates (2 x fraction of the side). ``affine_grid`` wants the inverse map (output
    point -> where to read the input): :math:`\theta = A^{-1} M^{-1} A\, [I \mid -t]` with
    :math:`A = \mathrm{diag}(W, H)`, so non-square images are not distorted.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    # M = s * R * Sh, R = [[c, -s], [s, c]], Sh = [[1, k], [0, 1]]
    m00, m01 = scale * cos, scale * (cos * shear - sin)
    m10, m11 = scale * sin, scale * (sin * shear + cos)
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    # to normalised coordinates: x_n = 2 x / W, y_n = 2 y / H
    i01, i10 = i01 * (height / width), i10 * (width / height)
    t0 = -(i00 * tx + i01 * ty)
    t1 = -(i10 * tx + i11 * ty)
    return torch.stack([torch.stack([i00, i01, t0], -1), torch.stack([i10, i11, t1], -1)], -2)


@torch.no_grad()
def random_affine(x: torch.Tensor, degrees: float = 25.0, scale: tuple[float, float] = (0.8, 1.5),
                  translate: float = 0.12, shear: float = 0.15) -> torch.Tensor:
    r"""Per-sample random rotation, zoom, shear and translation of images [B, C, H, W], one resampling.

    Draws :math:`\alpha \sim U(\pm\text{degrees})`, :math:`s \sim U(\text{scale})`,
    :math:`\kappa \sim U(\pm\text{shear})`, shifts up to ``translate`` of each side; bilinear,
    zero padding (the background of a digit). Returns the same shape and dtype.
    """
    b, _, h, w = x.shape
    dtype = x.dtype if x.is_floating_point() else torch.float32
    u = torch.rand(5, b, device=x.device, dtype=dtype)
    angle = (2 * u[0] - 1) * (degrees * math.pi / 180.0)
    zoom = scale[0] + (scale[1] - scale[0]) * u[1]
    kappa = (2 * u[2] - 1) * shear
    tx, ty = (2 * u[3] - 1) * (2 * translate), (2 * u[4] - 1) * (2 * translate)
    theta = affine_matrix(angle, zoom, kappa, tx, ty, h, w)
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cross_extremum(x: torch.Tensor, largest: bool) -> torch.Tensor:
    """Grey-level dilation (``largest``) or erosion of [B, C, H, W] by the 3x3 cross (a pixel and
    its four neighbours; outside the image counts as background 0)."""
    p = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    views = (p[..., 1:h + 1, 1:w + 1], p[..., :h, 1:w + 1], p[..., 2:, 1:w + 1],  # centre, up, down
             p[..., 1:h + 1, :w], p[..., 1:h + 1, 2:])  # left, right
    stacked = torch.stack(views)
    return stacked.amax(0) if largest else stacked.amin(0)


@torch.no_grad()
def random_stroke(x: torch.Tensor, strength: float = 0.5) -> torch.Tensor:
    r"""Per-sample random stroke width: :math:`t \sim U(\pm\text{strength})` (clipped to [-1, 1]);
    :math:`x + |t| (D(x) - x)` with the cross dilation :math:`D` for :math:`t > 0`, the cross
    erosion for :math:`t < 0`."""
    if strength <= 0 or x.shape[0] == 0:
        return x
    u = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
    t = ((2 * u - 1) * strength).clamp(-1, 1).view(-1, 1, 1, 1)
    target = torch.where(t > 0, cross_extremum(x, True), cross_extremum(x, False))
    return x + t.abs() * (target - x)


def erase_mask(top: torch.Tensor, left: torch.Tensor, eh: torch.Tensor, ew: torch.Tensor,
               height: int, width: int) -> torch.Tensor:
    """Boolean [B, 1, H, W]: True inside the rectangle rows [top, top+eh), cols [left, left+ew)."""
    rows = torch.arange(height, device=top.device).view(1, height, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, width)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1)))
    return inside.unsqueeze(1)


@torch.no_grad()
def random_erasing(x: torch.Tensor, p: float = 0.25, area: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> torch.Tensor:
    r"""Blank one random rectangle per sample with probability ``p`` (batched RandomErasing).

    Area fraction :math:`\sim U(\text{area})`, :math:`\log` aspect :math:`\sim U(\log\text{ratio})`;
    sides clipped to the image (torchvision re-draws instead, up to 10 times), uniform position.
    """
    b, _, h, w = x.shape
    if p <= 0 or b == 0:
        return x
    u = torch.rand(5, b, device=x.device)
    frac = area[0] + (area[1] - area[0]) * u[0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    eh = torch.sqrt(frac * h * w / aspect).round().clamp(1, h).long()
    ew = torch.sqrt(frac * h * w * aspect).round().clamp(1, w).long()
    top = ((h - eh + 1) * u[2]).floor().long().clamp(max=h - 1)
    left = ((w - ew + 1) * u[3]).floor().long().clamp(max=w - 1)
    mask = erase_mask(top, left, eh, ew, h, w) & (u[4] < p).view(-1, 1, 1, 1)
    return x.masked_fill(mask, value)


class CleanAndAugmented:
    r"""``x`` [B, C, H, W] -> (``x``, augmented copies [r B, C, H, W], repeat ``j`` in rows ``jB..(j+1)B``).

    The first view is the clean batch itself (computed once; the loop repeats its outputs
    ``repeats`` times to pair row ``i + jB`` of the second view with clean image ``i``).
    """

    pairs_clean = True

    def __init__(self, repeats: int = 4, params: GreyParams | None = None):
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"CleanAndAugmented: expected repeats an int >= 1, found {repeats!r}")
        self.repeats = repeats
        self.params = params or GreyParams()

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        v = random_affine(random_stroke(x, p.stroke), p.degrees, p.scale, p.translate, p.shear)
        return random_erasing(v.clamp_(0.0, 1.0), p.erase_p, p.erase_area, p.erase_ratio)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.augment(x.repeat(self.repeats, 1, 1, 1))


@torch.no_grad()
def small_crops(x: torch.Tensor, m: int, scale: tuple[float, float] = (0.3, 0.6),
                size_ratio: float = 4 / 7) -> list[torch.Tensor]:
    r"""``m`` random square crops of area fraction :math:`\sim U(\text{scale})` of each image,
    resampled to ``round(size_ratio * H)`` pixels (SwAV's multi-crop, 96 of 224 px; here 16 of 28).
    """
    b, c, h, w = x.shape
    out_h, out_w = max(4, round(size_ratio * h)), max(4, round(size_ratio * w))
    views = []
    for _ in range(m):
        u = torch.rand(3, b, device=x.device, dtype=x.dtype)
        side = torch.sqrt(scale[0] + (scale[1] - scale[0]) * u[0])
        cx, cy = (2 * u[1] - 1) * (1 - side), (2 * u[2] - 1) * (1 - side)
        zero = torch.zeros_like(side)
        theta = torch.stack([torch.stack([side, zero, cx], -1), torch.stack([zero, side, cy], -1)], -2)
        grid = F.affine_grid(theta, [b, c, out_h, out_w], align_corners=False)
        views.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return views
