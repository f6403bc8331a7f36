"""TwoViews and the augmentation functions (assignsolve/augment.py)."""

from __future__ import annotations

import pytest
import torch
import kornia.augmentation as K

from assignsolve.augment import STRENGTHS, TwoViews, add_noise, feature_view


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
    rgb = [type(m) for m in TwoViews((3, 32, 32)).pipeline]
    gray = [type(m) for m in TwoViews((1, 8, 8)).pipeline]
    assert K.ColorJitter in rgb and K.RandomGrayscale in rgb and K.RandomHorizontalFlip in rgb
    assert K.ColorJitter not in gray and K.RandomHorizontalFlip not in gray
    crop = TwoViews((1, 8, 8)).pipeline[0]
    assert isinstance(crop, K.RandomResizedCrop)
    assert tuple(crop.flags["size"]) == (8, 8)


@pytest.mark.parametrize("strength", sorted(STRENGTHS))
def test_crop_area_follows_the_scale_range(strength):
    # Crop a coordinate image (channel 0 = x ramp, channel 1 = y ramp): after resizing back,
    # the span of each ramp measures the crop's side, so their product is the kept area.
    lo, hi = STRENGTHS[strength].crop_scale_small
    crop = TwoViews((1, 32, 32), strength).pipeline[0]
    ramp = torch.linspace(0, 1, 32)
    grid = torch.stack([ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32)])[None].repeat(400, 1, 1, 1)
    torch.manual_seed(0)
    out = crop(grid)
    side = lambda c: ((out[:, c].amax((1, 2)) - out[:, c].amin((1, 2))) * 31 + 1) / 32  # noqa: E731
    area = side(0) * side(1)
    assert float(area.min()) >= lo - 0.02 and float(area.max()) <= hi + 1e-6
    # area ~ U(lo, hi) up to integer pixel sizes (which round down): mean a bit under (lo+hi)/2
    assert lo + 0.3 * (hi - lo) < float(area.mean()) < lo + 0.6 * (hi - lo)


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
