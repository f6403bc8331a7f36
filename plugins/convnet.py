r"""Built-in encoder ``convnet``: a small IIC-style ConvNet whose features keep a 3x3 spatial grid.

:math:`f_\theta: [B, C, H, W] \to [B, 9 \cdot 8w]`: four (conv 3x3 -> BN -> ReLU) stages of
widths ``w, 2w, 4w, 8w`` with a 2x2 max-pool after each of the first three (28 -> 14 -> 7 -> 3),
then an adaptive average pool to 3x3 and a flatten. The shape of IIC's MNIST network
``ClusterNet6c`` (Ji et al., ICCV 2019; ``xu-ji/IIC`` ``code/archs/cluster/net6c.py``: VGG-style
trunk, heads on the flattened last feature map), scaled down for two CPU cores.

Why not the global-average-pooled ``cnn`` on 28x28 digits: a digit's identity is *where* its
strokes are; pooling them away left IIC's main head at 2-3 used clusters (accuracy 0.21 after
3 epochs on 5,000 MNIST digits) where the 3x3 grid reached 0.63 after 5 epochs with the same
loss, data and budget, and a 10 s epoch at w = 16 (docs/training.md). Features are not
non-negative-pooled means, so IIC's heads read them without the input BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

import assignsolve

from .encoders import _check_batch, _check_shape, _init_conv_bn, _positive_int

__all__ = ["ConvNet", "convnet"]


class ConvNet(nn.Module):
    """See the module docstring. ``out_dim = 9 * 8 * width``; ``globally_pooled = False``."""

    globally_pooled = False

    def __init__(self, input_shape: tuple[int, int, int], *, width: int = 16, grid: int = 3):
        super().__init__()
        self.input_shape = tuple(input_shape)
        layers: list[nn.Module] = []
        cin = self.input_shape[0]
        for stage, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.out_dim = 8 * width * grid * grid
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, out_dim]."""
        _check_batch(x, self.input_shape, "convnet", spatial_free=True)
        return torch.flatten(self.pool(self.features(x)), 1)


def convnet(input_shape: tuple[int, ...], *, width: int = 16, grid: int = 3) -> ConvNet:
    """Small IIC-style ConvNet (4 conv stages, widths w/2w/4w/8w, 3x3 grid), out_dim 72 * width.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape (28x28 MNIST; 16 px and more).
    width : int
        Channels of the first stage (default 16: out_dim 1152).
    grid : int
        Side of the pooled feature grid (default 3).
    """
    shape = _check_shape(input_shape, 3, "convnet")
    return ConvNet(shape, width=_positive_int(width, "width", "convnet"), grid=_positive_int(grid, "grid", "convnet"))


@assignsolve.hookimpl
def register_encoders(register):
    register("convnet", convnet, "IIC-style 4-stage ConvNet with a 3x3 feature grid, out_dim 72*width "
             "(default width 16); default for greyscale images of 16+ px")
