"""A trained run read back from its folder: ``DIR/config.json`` + ``DIR/checkpoint.pt``.

The checkpoint is read with ``torch.load(weights_only=True)`` (tensors, numbers, strings and
containers only; nothing unpickled that could name code). :func:`load_run` rebuilds the model
exactly as ``run`` built it (:func:`assignsolve.train.build.build_model` after seeding with the
run's seed), so the *random* model is the run's own epoch-0 encoder, and the *trained* one has
the checkpoint's encoder, heads and recipe state loaded into the same modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import torch

from ..core.errors import TrainError
from .build import Built, build_model
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .rng import _seed_everything

__all__ = ["SavedRun", "load_run", "run_config"]

#: keys run writes into config.json beside the TrainConfig fields
_EXTRA = ("recipe", "n_clusters_used", "optimizer_used", "lr_used", "relabel_every_used", "temperature_used",
          "solver_options_used", "n_heads_used", "head_bn_used", "n_samples_used")


#: options a saved run is rebuilt with as it used them when config.json left them to a default
_AS_USED = (("n_heads", int), ("head_bn", str), ("temperature", float))


def run_config(run_dir: str | Path) -> tuple[TrainConfig, dict]:
    """``(TrainConfig, extras)`` from ``DIR/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise TrainError(f"--run: expected a run folder with config.json, found no {str(path)!r}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: expected the JSON config written by 'assignsolve run' ({exc})") from exc
    known = {f.name for f in attrs.fields(TrainConfig)}
    unknown = sorted(set(raw) - known - set(_EXTRA))
    if unknown:
        raise TrainError(f"{path}: unknown keys {unknown} (written by a newer assignsolve?)")
    return TrainConfig(**{k: v for k, v in raw.items() if k in known}), {k: raw[k] for k in _EXTRA if k in raw}


@attrs.frozen(eq=False)
class SavedRun:
    cfg: TrainConfig
    k: int
    epoch: int
    trained: Built
    random: Built


def load_run(run_dir: str | Path, input_shape: tuple[int, ...], n: int, device: torch.device) -> SavedRun:
    """The run's trained and random (epoch-0) models on ``device``; the recipe state (per-sample
    labels, banks) is sized for the samples the run trained on (``n_samples_used`` in its
    config.json, or in the checkpoint's config when an older run was resumed since), or ``n`` for
    a run saved before that was recorded, whatever data is read out."""
    from ..ops.dist import Dist

    cfg, extra = run_config(run_dir)
    # the heads the run had (and CoKe's read-out temperature), whatever today's defaults
    for field, cast in _AS_USED:
        if getattr(cfg, field) is None and f"{field}_used" in extra:
            cfg = attrs.evolve(cfg, **{field: cast(extra[f"{field}_used"])})
    k = int(extra.get("n_clusters_used") or cfg.n_clusters or 10)
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise TrainError(f"--run: expected a checkpoint at {str(path)!r}, found none")
    ckpt = load_checkpoint(path, device)  # weights_only=True, format 2, complete (TrainError otherwise)
    # config.json is written when a run starts; a resume (of a run older than the record) updates
    # only the checkpoint's copy
    n = int(extra.get("n_samples_used", ckpt["config"].get("n_samples_used", n)))
    d = Dist()
    models = []
    for _ in range(2):
        _seed_everything(cfg.seed)  # the same initialisation as run's epoch 0
        models.append(build_model(cfg, input_shape, k, n, d, device))
    random, trained = models
    try:
        trained.model.encoder.load_state_dict(ckpt["encoder"])
        trained.model.heads.load_state_dict(ckpt["heads"])
        trained.recipe.load_state_dict(ckpt["recipe"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TrainError(f"{path}: expected the encoder/heads/recipe state of {cfg.encoder} on input "
                         f"{list(input_shape)} for {n} samples ({str(exc).splitlines()[0]}; "
                         f"is --data the run's data?)") from exc
    return SavedRun(cfg, k, int(ckpt.get("epoch", 0)), trained, random)
