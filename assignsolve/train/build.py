"""Build a run's model from its config: encoder, the recipe's heads, AMDIM's local maps.

Shared by the training loop (``run``) and the held-out evaluation of a saved run
(:mod:`.saved`), so a checkpoint's state dicts always meet the modules they were saved from.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn as nn

from ..heads import ProjectionHead
from ..registry.manager import get_encoder, recipe_entry
from .assigner import Assigner
from .model import LocalMaps, LocalProjection, Model
from .preflight import build_encoder

__all__ = ["Built", "build_model"]


@attrs.frozen(eq=False)
class Built:
    """What :func:`build_model` returns."""

    model: Model
    recipe: object
    assigner: Assigner
    recipe_name: str
    amdim_weight: float


def build_model(cfg, input_shape: tuple[int, ...], k: int, n: int, d, device: torch.device) -> Built:
    """The encoder (``cfg.encoder``), the recipe's heads and, with AMDIM, its local projections,
    on ``device``; ``k`` clusters, ``n`` training samples. Initialisation draws from torch's global
    generator (seed it first for a reproducible model)."""
    recipe_name = cfg.recipe
    recipe_cls = recipe_entry(recipe_name).cls
    # AMDIM is an added objective: any recipe gets it with --amdim-weight > 0 (the amdim recipe by default)
    amdim_weight = cfg.amdim_weight or recipe_cls.default_amdim_weight
    encoder = build_encoder(get_encoder, cfg.encoder, input_shape, cfg.encoder_opt).to(device)
    feat_dim = int(encoder.out_dim)
    assigner = Assigner(cfg, recipe_name)
    recipe = recipe_cls(cfg, k, n, feat_dim, assigner, d, device)
    recipe.pooled_features = bool(getattr(encoder, "globally_pooled", True))
    heads = nn.ModuleDict(recipe.build_heads())
    local_maps = None
    if amdim_weight > 0:
        local_maps = LocalMaps(encoder, input_shape, device)
        heads["amdim_global"] = ProjectionHead(feat_dim, cfg.hidden_dim, cfg.proj_dim, normalize=False)
        heads["amdim_local"] = nn.ModuleList(LocalProjection(c, cfg.proj_dim) for c in local_maps.channels)
    model = Model(encoder, heads, local_maps).to(device)
    return Built(model, recipe, assigner, recipe_name, float(amdim_weight))
