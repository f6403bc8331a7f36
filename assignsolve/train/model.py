"""The network: encoder + the recipe's heads (:class:`Model`), AMDIM's feature-map hooks."""

from __future__ import annotations


import torch
import torch.nn as nn

from ..core.errors import TrainError


class LocalMaps:
    """Forward hooks that keep the encoder's intermediate feature maps (for AMDIM).

    A dry run records every sub-module that outputs a [B, C, H, W] map; the last module at
    the coarsest spatial size > 1 and the last module at the next larger size are kept
    (for a ResNet: the outputs of layer4 and layer3; for the small CNN: its last two stages).
    """

    def __init__(self, encoder: nn.Module, input_shape: tuple[int, ...], device):
        self.maps: list[torch.Tensor] = []
        seen: list[tuple[str, int, int]] = []
        hooks = []
        for name, mod in encoder.named_modules():
            if name:
                hooks.append(mod.register_forward_hook(
                    lambda m, i, o, _n=name: seen.append((_n, int(o.shape[1]), int(o.shape[2] * o.shape[3])))
                    if isinstance(o, torch.Tensor) and o.ndim == 4 else None))
        was = encoder.training
        encoder.eval()
        with torch.no_grad():
            encoder(torch.zeros((2, *input_shape), device=device))
        encoder.train(was)
        for h in hooks:
            h.remove()
        spatial = [s for s in seen if s[2] > 1]
        if not spatial:
            raise TrainError(
                "AMDIM: expected an encoder with convolutional feature maps [B, C, H, W], found none "
                f"(input shape {tuple(input_shape)}); use a convolutional encoder or --amdim-weight 0")
        sizes = sorted({s[2] for s in spatial})
        chosen = []
        for size in sizes[:2]:  # coarsest first
            chosen.append([s for s in spatial if s[2] == size][-1])
        self.names = [c[0] for c in chosen]
        self.channels = [c[1] for c in chosen]
        modules = dict(encoder.named_modules())
        self._handles = [modules[n].register_forward_hook(self._keep) for n in self.names]
        self._order = {id(modules[n]): i for i, n in enumerate(self.names)}
        self._slots: list[torch.Tensor | None] = [None] * len(self.names)

    def _keep(self, module, inputs, output):
        self._slots[self._order[id(module)]] = output

    def pop(self) -> list[torch.Tensor]:
        out, self._slots = list(self._slots), [None] * len(self.names)
        return out


class Model(nn.Module):
    """Encoder plus the recipe's heads; ``forward`` returns a dict so DDP sees one module call.

    Keys: ``feat`` [B, F] always; ``logits`` (list of [B, K]) and ``over`` (IIC) from
    :class:`ClusterHeads`; ``z`` [B, d] (unit rows) from :class:`ProjectionHead`; ``proto``
    [B, K] from :class:`Prototypes`; ``pred`` [B, d] (CoKe's predictor on ``z``); ``amdim``
    (global [B, d], locals [B, d, H, W] coarsest first) when the AMDIM term is on.
    """

    def __init__(self, encoder: nn.Module, heads: nn.ModuleDict, local_maps: LocalMaps | None):
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        self._local = local_maps

    def forward(self, x: torch.Tensor, with_amdim: bool = False) -> dict:
        feat = self.encoder(x)
        out = {"feat": feat}
        h = self.heads
        if "cluster" in h:
            out["logits"], over = h["cluster"].all_logits(feat)
            if h["cluster"].overcluster is not None:
                out["over"] = over
        if "proj" in h:
            out["z"] = h["proj"](feat)
            if "proto" in h:
                out["proto"] = h["proto"](out["z"])
            if "pred" in h:
                out["pred"] = h["pred"](out["z"])
        if self._local is not None:
            maps = self._local.pop()
            if with_amdim:
                g = h["amdim_global"](feat)
                locs = [proj(m) for proj, m in zip(h["amdim_local"], maps)]
                out["amdim"] = (g, locs)
        return out


class LocalProjection(nn.Module):
    """AMDIM-style 1x1 convolutional embedding of a feature map: ``W2 relu(W1 f) + W0 f``."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(cin, dim, 1), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1))
        self.shortcut = nn.Conv2d(cin, dim, 1, bias=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.mlp(f) + self.shortcut(f)
