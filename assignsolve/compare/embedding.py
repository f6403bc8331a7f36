"""Features (and head logits, labels) of a trained run's checkpoint: ``assignsolve embed``, ``compare --run``.

The run's folder holds ``checkpoint.pt`` (written by :func:`assignsolve.train.loop.save_checkpoint`):
its ``config`` rebuilds the encoder (``get_encoder(config.encoder, input_shape, **encoder_opt)``) and
the recipe's heads (``Recipe.build_heads()``), whose ``state_dict`` are then loaded. The file is read
with ``torch.load(weights_only=True)`` - no arbitrary unpickling of a user's file - with one
allowance: the numpy random state saved for ``--resume`` is a tuple holding a ``uint32`` array, so
numpy's array reconstruction (``numpy._core.multiarray._reconstruct``, ``ndarray``, ``dtype`` and the
``UInt32DType`` class) is allow-listed; these build plain numeric arrays and run no code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import CompareError


def _numpy_safe_globals() -> list:
    import numpy
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = [_reconstruct, numpy.ndarray, numpy.dtype]
    dtypes = getattr(numpy, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType") if hasattr(dtypes, n)]
    return allowed


def load_checkpoint(path: Path) -> dict:
    """``torch.load(path, weights_only=True)`` with the numpy-array allowance above; errors name the file."""
    if not path.is_file():
        raise CompareError(f"--run: expected a checkpoint at {str(path)!r}, found none")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused or corrupt file is bad input
        first = next((ln for ln in str(exc).splitlines() if "Unsupported global" in ln), str(exc).splitlines()[0])
        raise CompareError(f"{path}: cannot be read as a weights-only checkpoint ({first.strip()})") from exc
    for key in ("config", "encoder", "heads"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise CompareError(f"{path}: expected an assignsolve run checkpoint with {key!r}, found keys "
                               f"{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}")
    return ckpt


def build_model(ckpt: dict, input_shape: tuple[int, ...], n: int):
    """Encoder + heads of the checkpoint's run, weights loaded, in eval mode (CPU)."""
    import attrs
    import torch.nn as nn

    from ..registry.manager import get_encoder, recipe_entry
    from ..ops.dist import Dist
    from ..train.assigner import Assigner
    from ..train.config import TrainConfig
    from ..train.model import Model

    saved = dict(ckpt["config"])
    recipe_name = saved.pop("recipe", None)
    fields = attrs.fields_dict(TrainConfig)
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    recipe_name = recipe_name or cfg.recipe
    k = int(ckpt["heads"]["proto.linear.weight"].shape[0]) if "proto.linear.weight" in ckpt["heads"] else None
    encoder = get_encoder(cfg.encoder, input_shape, **cfg.encoder_opt)
    device = torch.device("cpu")
    k = k or cfg.n_clusters or _k_from_heads(ckpt["heads"]) or 10
    recipe = recipe_entry(recipe_name).cls(cfg, k, n, int(encoder.out_dim), Assigner(cfg, recipe_name), Dist(), device)
    heads = nn.ModuleDict(recipe.build_heads())
    encoder.load_state_dict(ckpt["encoder"])
    heads.load_state_dict(ckpt["heads"])
    model = Model(encoder, heads, None)
    model.eval()
    return model, cfg


def _k_from_heads(heads: dict) -> int | None:
    for name, t in heads.items():
        if name.startswith("cluster.heads.0.") and name.endswith("weight"):
            return int(t.shape[0])
    return None


@torch.no_grad()
def embed_run(run_dir: str | Path, data: str | None = None, batch_size: int = 512) -> dict:
    """``features`` [N, F] float32 (encoder output), ``logits`` [N, K] (the first cluster head or
    the prototypes, when the recipe has one), ``labels`` [N] (when the data has them).

    ``data``: the source to embed (default: the run's own ``--data``), read like ``run`` reads it
    (:func:`assignsolve.data.load_dataset`), at the run's ``--image-size``.
    """
    from ..data import load_dataset

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"--run: expected a run folder, found {str(run_dir)!r}")
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    source = data if data is not None else ckpt["config"].get("data", "digits")
    images = load_dataset(source, image_size=ckpt["config"].get("image_size"))
    model, cfg = build_model(ckpt, tuple(int(s) for s in images.input_shape), int(images.x.shape[0]))
    feats, logits = [], []
    for chunk in images.x.split(batch_size):
        out = model(chunk.float())
        feats.append(out["feat"].float())
        if "logits" in out:
            logits.append(out["logits"][0].float())
        elif "proto" in out:
            logits.append(out["proto"].float())
    result = {"features": torch.cat(feats).numpy().astype(np.float32)}
    if logits:
        result["logits"] = torch.cat(logits).numpy().astype(np.float32)
    if images.labels is not None:
        result["labels"] = images.labels.numpy().astype(np.int64)
    result["source"], result["epoch"] = str(source), int(ckpt.get("epoch", 0))
    return result
