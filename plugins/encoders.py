r"""Built-in encoders: ResNet-18/50, a small CNN, an MLP, and the ``timm:`` family.

An encoder maps a batch :math:`x \in \mathbb{R}^{B \times \text{input\_shape}}` to features
:math:`f_\theta(x) \in \mathbb{R}^{B \times \text{out\_dim}}`; it carries an ``out_dim`` int.
Encoders are registered through the ``register_encoders`` hook exactly like a third-party
plugin would, and built by name::

    enc = assignsolve.get_encoder("resnet18", (3, 32, 32))   # CIFAR stem picked automatically
    feats = enc(images)                                       # [B, 512]

The ResNets follow He et al., "Deep Residual Learning for Image Recognition", CVPR 2016
(BasicBlock for ResNet-18, Bottleneck with the stride on the 3x3 convolution -- the "ResNet
v1.5" variant of torchvision's ``models/resnet.py`` -- for ResNet-50), without the final fully
connected layer, so the trunk has 11,176,512 / 23,508,032 parameters with the ImageNet stem
(torchvision's 11,689,512 / 25,557,032 minus the 1000-class fc). The CIFAR stem (3x3 stride-1
convolution, no max-pool) is the usual small-image variant used by SeLa, SwAV and CoKe
experiments on CIFAR-10; it is picked automatically when ``min(H, W) <= 64``.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Sequence

import torch
from torch import nn

import assignsolve

__all__ = ["CNN", "MLP", "ResNet", "cnn", "mlp", "resnet18", "resnet50"]


# ------------------------------------------------------------------ validation helpers
def _check_shape(input_shape, ndim: int | tuple[int, ...], who: str) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints with an allowed number of dimensions."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Iterable) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in input_shape):
        raise ValueError(f"{who}: expected input_shape as a tuple of ints, found {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in allowed or any(s <= 0 for s in shape):
        want = " or ".join({1: "(D,)", 3: "(C, H, W)"}.get(n, f"{n} dims") for n in allowed)
        raise ValueError(f"{who}: expected input_shape {want} with positive sizes, found {shape}")
    return shape


def _check_batch(x: torch.Tensor, input_shape: tuple[int, ...], who: str, spatial_free: bool) -> None:
    """Raise when ``x`` is not a batch [B, *input_shape] (spatial sizes free for conv nets)."""
    ok = x.dim() == len(input_shape) + 1
    if ok:
        ok = x.shape[1] == input_shape[0] if spatial_free else tuple(x.shape[1:]) == input_shape
    if not ok:
        want = f"[B, {input_shape[0]}, H, W]" if spatial_free else f"[B, {', '.join(map(str, input_shape))}]"
        raise ValueError(f"{who}: expected a batch {want}, found shape {list(x.shape)}")


def _positive_int(value, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{who}: expected {name} a positive int, found {value!r}")
    return value


def _init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, BN weight 1 / bias 0, as in torchvision's ResNet."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------ ResNet
def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    r"""Two 3x3 convolutions with identity shortcut: :math:`y = \mathrm{relu}(x + F(x))`."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    r"""1x1 reduce, 3x3 (strided), 1x1 expand (x4) with shortcut: :math:`y = \mathrm{relu}(x + F(x))`."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    r"""ResNet trunk :math:`f_\theta: [B, C, H, W] \to [B, 512 \cdot e]` (global average pooled).

    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; layout and
    initialisation as torchvision's ``models/resnet.py`` (no fc layer).

    Parameters
    ----------
    block : type
        ``BasicBlock`` (expansion e = 1) or ``Bottleneck`` (e = 4).
    layers : sequence of 4 ints
        Blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-50.
    input_shape : tuple (C, H, W)
        Shape of one input image; C sets the stem's input channels.
    cifar_stem : bool
        True: 3x3 stride-1 stem and no max-pool (small images); False: ImageNet 7x7 stride-2
        stem followed by a 3x3 stride-2 max-pool.
    zero_init_residual : bool
        Start every residual branch's last BN at zero (Goyal et al. 2017), as torchvision's option.

    Attributes
    ----------
    out_dim : int
        512 * e, the width of the pooled features.
    """

    def __init__(self, block: type, layers: Sequence[int], input_shape: tuple[int, int, int], *,
                 cifar_stem: bool, zero_init_residual: bool = False):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.cifar_stem = bool(cifar_stem)
        cin = self.input_shape[0]
        if self.cifar_stem:
            self.conv1 = nn.Conv2d(cin, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(cin, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 512 * block.expansion
        _init_conv_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self._inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        mods += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs [B, C_s, H_s, W_s] (for local/multiscale objectives)."""
        _check_batch(x, self.input_shape, type(self).__name__, spatial_free=True)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, out_dim]."""
        return torch.flatten(self.avgpool(self.feature_maps(x)[-1]), 1)


def _auto_stem(shape: tuple[int, int, int], cifar_stem: bool | None) -> bool:
    if cifar_stem is None:
        return min(shape[1], shape[2]) <= 64
    if not isinstance(cifar_stem, bool):
        raise ValueError(f"cifar_stem: expected True, False or None (auto), found {cifar_stem!r}")
    return cifar_stem


def resnet18(input_shape: tuple[int, ...], *, cifar_stem: bool | None = None,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-18 trunk (BasicBlock, 11.2M parameters), out_dim 512.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape.
    cifar_stem : bool or None
        None (default): the 3x3 stride-1 stem without max-pool when ``min(H, W) <= 64``,
        otherwise the ImageNet 7x7/2 stem with max-pool.
    zero_init_residual : bool
        Zero-initialise the last BN of each residual branch.
    """
    shape = _check_shape(input_shape, 3, "resnet18")
    return ResNet(BasicBlock, (2, 2, 2, 2), shape, cifar_stem=_auto_stem(shape, cifar_stem),
                  zero_init_residual=zero_init_residual)


def resnet50(input_shape: tuple[int, ...], *, cifar_stem: bool | None = None,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 trunk (Bottleneck, 23.5M parameters), out_dim 2048.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape.
    cifar_stem : bool or None
        None (default): the 3x3 stride-1 stem without max-pool when ``min(H, W) <= 64``,
        otherwise the ImageNet 7x7/2 stem with max-pool.
    zero_init_residual : bool
        Zero-initialise the last BN of each residual branch.
    """
    shape = _check_shape(input_shape, 3, "resnet50")
    return ResNet(Bottleneck, (3, 4, 6, 3), shape, cifar_stem=_auto_stem(shape, cifar_stem),
                  zero_init_residual=zero_init_residual)


# ------------------------------------------------------------------ small CNN
class CNN(nn.Module):
    r"""Small VGG-style CNN :math:`f_\theta: [B, C, H, W] \to [B, 4w]`.

    Three stages of two (conv 3x3 -> BN -> ReLU) blocks with widths ``w, 2w, 4w``; a 2x2
    max-pool between stages while the feature map is larger than 2x2; global average
    pooling at the end. About 1.1M parameters at w = 64; fits 8x8 digits (8 -> 4 -> 2) and
    32x32 CIFAR (32 -> 16 -> 8), in the spirit of the small "ConvNet" backbones of IIC
    (Ji et al., ICCV 2019) and the AlexNet-lite models of DeepCluster/SeLa CIFAR baselines.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape.
    width : int
        w, channels of the first stage (default 64).

    Attributes
    ----------
    out_dim : int
        4 * width.
    """

    def __init__(self, input_shape: tuple[int, int, int], *, width: int = 64):
        super().__init__()
        self.input_shape = tuple(input_shape)
        widths = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        cin, size = self.input_shape[0], min(self.input_shape[1:])
        for stage, cout in enumerate(widths):
            if stage > 0 and size > 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, out_dim]."""
        _check_batch(x, self.input_shape, "cnn", spatial_free=True)
        return torch.flatten(self.pool(self.features(x)), 1)


def cnn(input_shape: tuple[int, ...], *, width: int = 64) -> CNN:
    """Small CNN (6 conv layers, widths w/2w/4w), out_dim 4 * width; the default encoder.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape (8x8 digits, 32x32 CIFAR, ...).
    width : int
        Channels of the first stage (default 64, out_dim 256).
    """
    shape = _check_shape(input_shape, 3, "cnn")
    return CNN(shape, width=_positive_int(width, "width", "cnn"))


# ------------------------------------------------------------------ MLP
class MLP(nn.Module):
    r"""Multi-layer perceptron :math:`f_\theta: [B, *\text{input\_shape}] \to [B, \text{out\_dim}]`.

    The input is flattened to :math:`D = \prod \text{input\_shape}`, then ``depth`` hidden
    layers (Linear -> BN -> ReLU, ``hidden_dim`` wide) and a final Linear -> BN -> ReLU of
    width ``out_dim``.

    Parameters
    ----------
    input_shape : tuple
        (D,) for feature vectors or (C, H, W) for images (flattened).
    hidden_dim : int
        Width of the hidden layers.
    out_dim : int
        Width of the output features.
    depth : int
        Number of hidden layers (0 allowed: a single Linear -> BN -> ReLU layer).
    """

    def __init__(self, input_shape: tuple[int, ...], *, hidden_dim: int = 512, out_dim: int = 256,
                 depth: int = 1):
        super().__init__()
        self.input_shape = tuple(input_shape)
        dims = [math.prod(self.input_shape)] + [hidden_dim] * depth + [out_dim]
        layers: list[nn.Module] = [nn.Flatten(1)]
        for din, dout in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(din, dout, bias=False), nn.BatchNorm1d(dout), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, *input_shape] -> [B, out_dim]."""
        _check_batch(x, self.input_shape, "mlp", spatial_free=False)
        return self.net(x)


def mlp(input_shape: tuple[int, ...], *, hidden_dim: int = 512, out_dim: int = 256, depth: int = 1) -> MLP:
    """MLP on flat features [D] or flattened images, out_dim 256 by default.

    Parameters
    ----------
    input_shape : tuple
        (D,) or (C, H, W).
    hidden_dim : int
        Width of each hidden layer (default 512).
    out_dim : int
        Output width (default 256).
    depth : int
        Hidden layers (default 1).
    """
    shape = _check_shape(input_shape, (1, 2, 3), "mlp")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"mlp: expected depth a non-negative int, found {depth!r}")
    return MLP(shape, hidden_dim=_positive_int(hidden_dim, "hidden_dim", "mlp"),
               out_dim=_positive_int(out_dim, "out_dim", "mlp"), depth=depth)


# ------------------------------------------------------------------ timm family
class TimmEncoder(nn.Module):
    """A ``timm`` model without classifier (``num_classes=0``): [B, C, H, W] -> [B, num_features]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.out_dim = int(model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def timm_encoder(input_shape: tuple[int, ...], *, variant: str, pretrained: bool = False, **options) -> TimmEncoder:
    """Any timm model by name (``timm:resnet18``), classifier removed, ``in_chans`` from input_shape.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        One image's shape; C is passed as ``in_chans``.
    variant : str
        The timm model name (the part after ``timm:``).
    pretrained : bool
        Load timm's pretrained weights (needs them cached locally; default False).
    **options
        Passed to ``timm.create_model``.
    """
    import timm

    shape = _check_shape(input_shape, 3, f"timm:{variant}")
    if not timm.is_model(variant):
        close = difflib.get_close_matches(variant, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(f"timm: expected a timm model name, found {variant!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    model = timm.create_model(variant, pretrained=pretrained, num_classes=0, in_chans=shape[0], **options)
    return TimmEncoder(model)


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except Exception:  # timm imports torchvision, which may be absent or broken
        return False
    return True


@assignsolve.hookimpl
def register_encoders(register):
    register("cnn", cnn, "small 6-layer CNN (widths 64/128/256), out_dim 256; default, for 8x8 to 32x32 images")
    register("mlp", mlp, "MLP for flat features [D] or flattened images, out_dim 256")
    register("resnet18", resnet18, "ResNet-18 trunk (He et al. 2016), out_dim 512; CIFAR stem when min(H,W) <= 64")
    register("resnet50", resnet50, "ResNet-50 trunk (He et al. 2016), out_dim 2048; CIFAR stem when min(H,W) <= 64")
    if _timm_available():
        register("timm:", timm_encoder, "any timm model: timm:NAME (classifier removed)")
