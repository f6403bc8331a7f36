"""Data sources: the bundled digits set and feature files (``.npy``, ``.npz``, ``.pt``).

Every loader returns plain arrays plus optional integer labels and raises a clear error
for a missing path or an unexpected format. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch

__all__ = ["FeatureSet", "load_digits", "load_features"]


@attrs.frozen(eq=False)
class FeatureSet:
    """Fixed features ``x`` [N, D] float32 with optional labels [N] int64 and a name."""

    x: np.ndarray
    labels: np.ndarray | None
    name: str


def load_digits(kind: str = "pixels") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1,797 real 8x8 images, 10 classes), no download.

    ``kind="pixels"``: [1797, 64] float32 in [0, 1]; ``kind="images"``: [1797, 1, 8, 8].
    """
    from sklearn.datasets import load_digits as _load

    data = _load()
    x = (data.data / 16.0).astype(np.float32)
    if kind == "images":
        x = x.reshape(-1, 1, 8, 8)
    elif kind != "pixels":
        raise ValueError(f"kind: expected 'pixels' or 'images', found {kind!r}")
    return x, data.target.astype(np.int64)


def _from_mapping(obj, path: Path) -> tuple[object, object]:
    keys = list(obj.keys())
    for key in ("features", "x", "embeddings"):
        if key in obj:
            labels = next((obj[k] for k in ("labels", "y", "targets") if k in obj), None)
            return obj[key], labels
    raise ValueError(f"{path}: expected a key 'features' (or 'x', 'embeddings'), found keys {keys}")


def _as_numpy(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def load_features(source: str | Path, labels: str | Path | None = None) -> FeatureSet:
    """Load an [N, D] feature matrix and optional labels.

    ``source`` is ``"digits"`` (the bundled pixels), a ``.npy`` file (array [N, D]), a
    ``.npz`` file or a ``.pt`` file (a tensor, or a dict with ``features`` and optional
    ``labels``). ``labels`` optionally names a separate ``.npy``/``.pt`` file of [N] ints.
    """
    if str(source) == "digits":
        x, y = load_digits("pixels")
        return FeatureSet(x, y if labels is None else _load_labels(labels, len(x)), "digits")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"features: no such file {str(path)!r} (expected a .npy, .npz or .pt file, or 'digits')")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        x, y = np.load(path, allow_pickle=False), None
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            x, y = _from_mapping(dict(z), path)
    elif suffix in (".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        x, y = _from_mapping(obj, path) if isinstance(obj, dict) else (obj, None)
    else:
        raise ValueError(f"features: expected a .npy, .npz or .pt file, found {str(path)!r}")
    x = _as_numpy(x, "features")
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric [N, D] array, found shape {x.shape} dtype {x.dtype}")
    if labels is not None:
        y = _load_labels(labels, len(x))
    elif y is not None:
        y = _check_labels(_as_numpy(y, "labels"), len(x), str(path))
    return FeatureSet(x.astype(np.float32, copy=False), y, path.stem)


def _load_labels(path: str | Path, n: int) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labels: no such file {str(path)!r}")
    if path.suffix.lower() in (".pt", ".pth"):
        y = _as_numpy(torch.load(path, map_location="cpu", weights_only=True), "labels")
    else:
        y = np.load(path, allow_pickle=False)
    return _check_labels(y, n, str(path))


def _check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: expected integer labels of shape ({n},), found shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)
