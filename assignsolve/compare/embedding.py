"""Features (and head logits, labels) of a trained run: ``assignsolve embed``, ``compare --run``.

The run is read back by :func:`assignsolve.train.saved.load_run` - the one loader shared with
``assignsolve eval``: ``DIR/config.json`` rebuilds the model exactly as ``run`` built it and
``DIR/checkpoint.pt`` (``torch.load(weights_only=True)``, so a user's file cannot run code) fills
in the encoder, heads and recipe state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import CompareError


@torch.no_grad()
def embed_run(run_dir: str | Path, data: str | None = None, batch_size: int = 512, mode: str = "auto",
              workers: int = 0) -> dict:
    """``features`` [N, F] float32 (encoder output), ``logits`` [N, K] (the head the run reads out,
    :meth:`Recipe.readout_logits <assignsolve.train.recipes.base.Recipe.readout_logits>`: the
    lowest-loss sub-head of SeLa and IIC, CoKe's classifier scores, else the first cluster head or
    SwAV's prototype scores), ``labels`` [N] (when the data has them).

    ``data``: the source to embed (default: the run's own ``--data``), read like ``run`` reads it
    (:func:`assignsolve.data.load_dataset`), at the run's ``--image-size``; an ImageFolder
    streamed from disk as ``mode`` says (``--data-mode``), decoded by ``workers`` processes.
    """
    from ..data import load_dataset
    from ..train.feed import feed_for
    from ..train.saved import load_run, run_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"--run: expected a run folder, found {str(run_dir)!r}")
    cfg, _ = run_config(run_dir)
    source = data if data is not None else cfg.data
    images = load_dataset(source, image_size=cfg.image_size, data_dir=cfg.data_dir, mode=mode)
    saved = load_run(run_dir, tuple(int(s) for s in images.input_shape), len(images), torch.device("cpu"))
    model = saved.trained.model
    model.eval()
    feats, logits = [], []
    feed = feed_for(images, workers)
    for chunk in feed.chunks(0, len(feed), batch_size):
        out = model(chunk.float())
        feats.append(out["feat"].float())
        readout = saved.trained.recipe.readout_logits(out)
        if readout is not None:
            logits.append(readout.float())
    result = {"features": torch.cat(feats).numpy().astype(np.float32)}
    if logits:
        result["logits"] = torch.cat(logits).numpy().astype(np.float32)
    if images.labels is not None:
        result["labels"] = images.labels.numpy().astype(np.int64)
    result["source"], result["epoch"] = str(source), int(saved.epoch)
    return result
