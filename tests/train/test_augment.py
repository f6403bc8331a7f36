"""TwoViews and the augmentation functions (assignsolve/augment.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import kornia.augmentation as K

from assignsolve.augment import STRENGTHS, TwoViews, add_noise, affine_theta, feature_view, random_crop_affine


def digits_like(b: int = 16) -> torch.Tensor:
    """Structured 8x8 images (a bright bar that moves), so geometric changes are visible."""
    x = torch.zeros(b, 1, 8, 8)
    for i in range(b):
        x[i, 0, 1:7, 2 + i % 4] = 1.0
    return x


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 80, 72), (40,)])
@pytest.mark.parametrize("strength", sorted(STRENGTHS))
def test_shapes_dtype_range_and_views_differ(shape, strength):
    torch.manual_seed(0)
    x = torch.rand(6, *shape)
    v1, v2 = TwoViews(shape, strength)(x)
    for v in (v1, v2):
        assert v.shape == x.shape and v.dtype == x.dtype and v.device == x.device
        assert torch.isfinite(v).all()
        if len(shape) == 3:
            assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert not torch.equal(v, x)
    assert (v1 - v2).abs().mean() > 1e-3


def test_deterministic_under_manual_seed_and_different_seeds_differ():
    x = torch.rand(8, 3, 32, 32)
    aug = TwoViews((3, 32, 32))
    torch.manual_seed(5)
    a1, b1 = aug(x)
    torch.manual_seed(5)
    a2, b2 = aug(x)
    torch.manual_seed(6)
    a3, _ = aug(x)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3)


def test_each_sample_gets_its_own_transform():
    x = digits_like(1).repeat(12, 1, 1, 1)
    torch.manual_seed(0)
    v, _ = TwoViews((1, 8, 8))(x)
    flat = v.flatten(1)
    assert torch.cdist(flat, flat).triu(1)[torch.triu(torch.ones(12, 12, dtype=torch.bool), 1)].min() > 1e-3


def test_device_argument_and_dtype_preserved():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    aug = TwoViews((1, 8, 8), device=torch.device("cpu"))
    v1, v2 = aug(x)
    assert aug.device == torch.device("cpu") and v1.device.type == "cpu" and v1.dtype == torch.float64
    feats = TwoViews((5,), device="cpu")(torch.randn(4, 5, dtype=torch.float64))
    assert all(f.dtype == torch.float64 and f.device.type == "cpu" for f in feats)


def test_rgb_gets_colour_ops_gray_does_not():
    assert [type(m) for m in TwoViews((3, 32, 32)).pipeline] == [K.ColorJitter, K.RandomGrayscale]
    assert len(TwoViews((1, 8, 8)).pipeline) == 0
    # the geometric warp with all randomness removed is the identity; flip_p=1 mirrors exactly
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(random_crop_affine(x, (1.0, 1.0), (1.0, 1.0)), x)
    torch.testing.assert_close(random_crop_affine(x, (1.0, 1.0), (1.0, 1.0), flip_p=1.0), x.flip(-1))
    assert TwoViews((3, 100, 100)).crop_scale == STRENGTHS["default"].crop_scale_large
    assert TwoViews((3, 32, 32)).crop_scale == STRENGTHS["default"].crop_scale_small == (0.5, 1.0)


def warp(x, theta):
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def test_affine_theta_exact_maps():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 6)
    one, zero = torch.ones(2), torch.zeros(2)
    args = dict(crop_w=one, crop_h=one, cx=zero, cy=zero, angle=zero, tx=zero, ty=zero, flip=one, height=6, width=6)
    torch.testing.assert_close(warp(x, affine_theta(**args)), x)
    torch.testing.assert_close(warp(x, affine_theta(**{**args, "flip": -one})), x.flip(-1))
    # +90 degrees = a quarter turn clockwise on screen = torch.rot90 with k=-1
    torch.testing.assert_close(warp(x, affine_theta(**{**args, "angle": zero + math.pi / 2})),
                               torch.rot90(x, -1, (2, 3)))
    # translation by 2/6 normalised = one pixel to the right, zero padding enters on the left
    shifted = warp(x, affine_theta(**{**args, "tx": zero + 2 / 6}))
    torch.testing.assert_close(shifted[..., 1:], x[..., :-1])
    assert float(shifted[..., 0].abs().max()) < 1e-6
    # left-half crop (w_c = 1/2 centred at -1/2) of a 6x4 image whose value is the column index:
    # output pixel centres read input columns -0.25, 0.25, 0.75, 1.25 (bilinear, zero outside)
    y = torch.arange(4.0).repeat(1, 1, 6, 1)
    o, z = torch.ones(1), torch.zeros(1)
    half = warp(y, affine_theta(o / 2, o, -o / 2, z, z, z, z, o, 6, 4))
    torch.testing.assert_close(half[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.25]).repeat(6, 1))


@pytest.mark.parametrize("strength", sorted(STRENGTHS))
def test_crop_area_follows_the_scale_range(strength):
    # Crop a coordinate image (channel 0 = x ramp, channel 1 = y ramp): after resizing back,
    # the span of each ramp measures the crop's side, so their product is the kept area.
    lo, hi = STRENGTHS[strength].crop_scale_small
    ramp = torch.linspace(0, 1, 32)
    grid = torch.stack([ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32)])[None].repeat(400, 1, 1, 1)
    torch.manual_seed(0)
    out = random_crop_affine(grid, (lo, hi))
    side = lambda c: (out[:, c].amax((1, 2)) - out[:, c].amin((1, 2))) * 31 / 32 + 1 / 32  # noqa: E731
    area = side(0) * side(1)
    assert float(area.min()) >= lo - 0.03 and float(area.max()) <= hi + 1e-6
    # expected kept area: s ~ U(lo, hi), log r ~ U(log 3/4, log 4/3), sides min(sqrt(s r), 1) and
    # min(sqrt(s / r), 1); Monte Carlo in numpy from that specification
    rng = np.random.default_rng(0)
    s_, r_ = rng.uniform(lo, hi, 200_000), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), 200_000))
    expected = np.mean(np.minimum(np.sqrt(s_ * r_), 1) * np.minimum(np.sqrt(s_ / r_), 1))
    assert abs(float(area.mean()) - expected) < 0.015


def test_add_noise_statistics():
    torch.manual_seed(0)
    x = torch.full((64, 1, 16, 16), 0.5)
    y = add_noise(x, 0.05)
    assert abs(float((y - x).std()) - 0.05) < 0.003 and abs(float((y - x).mean())) < 0.003
    assert add_noise(x, 0.0) is x
    assert float(add_noise(torch.ones(2, 1, 4, 4), 0.5).max()) <= 1.0


def test_feature_view_statistics():
    torch.manual_seed(0)
    x = torch.randn(4000, 20) * torch.linspace(0.5, 5, 20) + 3.0
    dropped = feature_view(x, drop=0.25, noise=0.0)
    zero = dropped == 0
    assert abs(float(zero.float().mean()) - 0.25) < 0.01
    assert torch.equal(dropped[~zero], x[~zero])  # no rescaling of kept coordinates
    noisy = feature_view(x, drop=0.0, noise=0.1)
    rel = (noisy - x).std(dim=0) / x.std(dim=0)
    torch.testing.assert_close(rel, torch.full((20,), 0.1), atol=0.006, rtol=0)
    assert torch.equal(feature_view(x, 0.0, 0.0), x)


@pytest.mark.parametrize(("args", "x", "error", "match"), [
    (((1, 8, 8),), torch.rand(2, 3, 8, 8), ValueError, r"expected a batch \[B, 1, 8, 8\], found shape \[2, 3, 8, 8\]"),
    (((1, 8, 8),), torch.rand(2, 1, 8, 8) * 255, ValueError, r"expected images in \[0, 1\], found values in"),
    (((1, 8, 8),), torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError, r"expected a floating-point batch, found dtype torch.uint8"),
    (((10,),), torch.rand(2, 11), ValueError, r"expected a batch \[B, 10\], found shape \[2, 11\]"),
])
def test_bad_batches(args, x, error, match):
    with pytest.raises(error, match=match):
        TwoViews(*args)(x)


def test_bad_construction():
    with pytest.raises(ValueError, match=r"expected strength one of \['default', 'strong', 'weak'\], found 'medium'"):
        TwoViews((1, 8, 8), "medium")
    with pytest.raises(ValueError, match=r"expected input_shape \(C, H, W\) or \(D,\) of positive ints, found \(8, 8\)"):
        TwoViews((8, 8))
    with pytest.raises(TypeError, match="expected a torch.Tensor batch, found ndarray"):
        import numpy as np
        TwoViews((3,))(np.zeros((2, 3), np.float32))
