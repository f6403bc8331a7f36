"""What ``compare`` reads: feature files, image files (flattened pixels), or a trained run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import CompareError

#: keys of the feature matrix, then of images, in an .npz/.pt mapping
KEYS = ("features", "x", "embeddings", "images", "data")


def load_source(source: str, labels: str | None = None):
    """A :class:`~assignsolve.data.FeatureSet` from ``digits``, a feature file or an image file.

    An array with more than two dimensions ([N, C, H, W] images, ``images`` in an ``.npz`` as
    ``run`` reads them) is flattened to [N, C*H*W] pixels; integer pixels are scaled to [0, 1]
    (irrelevant under the default L2 normalisation, kept for ``--normalize none``).
    """
    from ..data import FeatureSet, feature_labels, load_features
    from ..datasets import arrays

    if str(source) == "digits":
        return load_features(source, labels)
    path = Path(source)
    if not path.exists():
        raise CompareError(f"features: no such file {str(path)!r} (expected a .npy, .npz or .pt file, or 'digits')")
    if not arrays.is_array_file(path):
        raise CompareError(f"features: expected a .npy, .npz or .pt file, found {str(path)!r}")
    raw = arrays.read_array_splits(path, KEYS)["train"]
    x = raw.x.detach().cpu().numpy() if isinstance(raw.x, torch.Tensor) else np.asarray(raw.x)
    if x.ndim < 2 or x.dtype.kind not in "iuf" or x.shape[0] == 0:
        raise CompareError(f"{raw.where}: expected a numeric [N, D] or [N, C, H, W] array, "
                           f"found shape {x.shape} dtype {x.dtype}")
    name = path.stem
    if x.ndim > 2:
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        x = x.reshape(x.shape[0], -1).astype(np.float32) / scale
        name = f"{path.stem} pixels"
    return FeatureSet(x.astype(np.float32, copy=False), feature_labels(labels, raw, len(x)), name)


def load_run(run_dir: str, data: str | None, labels: str | None = None):
    """Features of a trained run (:func:`assignsolve.compare.embedding.embed_run`) as a FeatureSet."""
    from ..data import FeatureSet, _load_labels
    from .embedding import embed_run

    out = embed_run(run_dir, data)
    y = out.get("labels")
    if labels is not None:
        y = _load_labels(labels, len(out["features"])).numpy()
    return FeatureSet(out["features"], y, f"{Path(run_dir).name} features")
