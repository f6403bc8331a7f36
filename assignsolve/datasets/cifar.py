"""CIFAR-10 and CIFAR-100, "python version" (https://www.cs.toronto.edu/~kriz/cifar.html).

Each batch file is a pickled dict: ``data`` uint8 [N, 3072] (1024 red, 1024 green, 1024 blue
values, each a row-major 32x32 plane) and ``labels`` (CIFAR-10) or ``fine_labels`` and
``coarse_labels`` (CIFAR-100), as lists of ints. CIFAR-10: ``data_batch_1`` .. ``data_batch_5``
(train, 50,000) and ``test_batch`` (10,000), class names in ``batches.meta`` (``label_names``).
CIFAR-100: ``train`` (50,000), ``test`` (10,000), ``meta`` (``fine_label_names``,
``coarse_label_names``). Every file goes through the restricted unpickler of
:mod:`assignsolve.datasets.safepickle`; a batch that names any other global is refused. The
Python 2 pickles are read with ``encoding="latin1"``; keys may be ``str`` or ``bytes``.

Archive URLs and MD5s as listed by torchvision (``torchvision/datasets/cifar.py``,
``CIFAR10.url``/``tgz_md5`` and ``CIFAR100.url``/``tgz_md5``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, DataFileNotFoundError
from .download import Resource
from .safepickle import safe_load
from .tensors import TensorData, as_labels

__all__ = ["CIFAR10", "CIFAR100", "cifar10_dir", "cifar100_dir", "load_cifar10", "load_cifar100"]

CIFAR10 = Resource("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                   md5="c58f30108f718f92721af3b95e74349a")
CIFAR100 = Resource("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                    md5="eb9058c3a382ffc7106e4002c42a8d85")
CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
_TRAIN = re.compile(r"data_batch_(\d+)$")


def _str_keys(batch, path: Path) -> dict[str, object]:
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in batch.items()}


def _names(values, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (str, bytes)) for v in values):
        raise DataError(f"{path}: expected {key!r} to be a list of class names, found {type(values).__name__}")
    return tuple(v.decode("latin1") if isinstance(v, bytes) else v for v in values)


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, torch.Tensor]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) from one CIFAR python batch."""
    batch = _str_keys(safe_load(path), path)
    alt = {"labels": "fine_labels", "fine_labels": "labels"}.get(label_key)
    key = label_key if label_key in batch else (alt if alt in batch else None)
    if "data" not in batch or key is None:
        raise DataError(f"{path}: expected a dict with 'data' and {label_key!r}, found keys {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: expected 'data' uint8 [N, 3072], found {found}")
    labels = as_labels(np.asarray(batch[key]), len(data), f"{path}[{key!r}]")
    return data.reshape(-1, 3, 32, 32), labels


def _meta(path: Path, key: str) -> tuple[str, ...] | None:
    """Class names from a meta file; None when it is absent. A present but unreadable meta file
    is an error, never skipped."""
    if not path.is_file():
        return None
    meta = _str_keys(safe_load(path), path)
    if key not in meta:
        raise DataError(f"{path}: expected a dict with {key!r}, found keys {sorted(meta)}")
    return _names(meta[key], path, key)


def _tensor_data(files: list[Path], label_key: str, name: str, classes) -> TensorData:
    xs, ys = zip(*(read_batch(f, label_key) for f in files))
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    y = torch.cat(ys)
    if classes is not None and len(y) and int(y.max()) >= len(classes):
        raise DataError(f"{files[0].parent}: expected labels below the {len(classes)} class names, found {int(y.max())}")
    return TensorData(x, y, name, classes)


def cifar10_dir(path: Path) -> Path | None:
    """``path`` or ``path/cifar-10-batches-py`` when it holds CIFAR-10 batches, else None."""
    for d in (path, path / CIFAR10_DIR):
        if d.is_dir() and any(_TRAIN.match(f.name) or f.name == "test_batch" for f in d.iterdir() if f.is_file()):
            return d
    return None


def cifar100_dir(path: Path) -> Path | None:
    """``path`` or ``path/cifar-100-python`` when it holds the CIFAR-100 ``train``/``test`` files
    beside ``meta``, else None."""
    for d in (path, path / CIFAR100_DIR):
        if (d / "meta").is_file() and ((d / "train").is_file() or (d / "test").is_file()):
            return d
    return None


def _display_name(path: Path, default: str, aliases: tuple[str, ...]) -> str:
    return default if path.name in aliases else path.name


def load_cifar10(path: str | Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, TensorData]:
    """``{"train": data_batch_1..N, "test": test_batch}`` as [N, 3, 32, 32] float32 in [0, 1]."""
    path = Path(path)
    train = sorted((f for f in path.iterdir() if _TRAIN.match(f.name)), key=lambda f: int(_TRAIN.match(f.name).group(1)))
    test = [path / "test_batch"] if (path / "test_batch").is_file() else []
    classes = _meta(path / "batches.meta", "label_names")
    name = _display_name(path, "cifar10", (CIFAR10_DIR, "cifar10", "cifar-10"))
    out = {}
    for split in splits:
        files = {"train": train, "test": test}[split]
        if not files:
            found = ", ".join(f.name for f in train + test)
            raise DataFileNotFoundError(f"{path}: expected CIFAR-10 {split!r} batches "
                                        f"({'data_batch_1..5' if split == 'train' else 'test_batch'}), found only {found}")
        out[split] = _tensor_data(files, "labels", name if split == "train" else f"{name}-test", classes)
    return out


def load_cifar100(path: str | Path, splits: tuple[str, ...] = ("train", "test"),
                  labels: str = "fine") -> dict[str, TensorData]:
    """``{"train": train, "test": test}`` CIFAR-100 with its 100 ``fine`` (default) or 20
    ``coarse`` labels."""
    if labels not in ("fine", "coarse"):
        raise DataError(f"labels: expected 'fine' or 'coarse', found {labels!r}")
    path = Path(path)
    classes = _meta(path / "meta", f"{labels}_label_names")
    name = _display_name(path, "cifar100", (CIFAR100_DIR, "cifar100", "cifar-100"))
    out = {}
    for split in splits:
        f = path / split
        if not f.is_file():
            raise DataFileNotFoundError(f"{path}: expected the CIFAR-100 file {split!r}, found "
                                        f"{sorted(p.name for p in path.iterdir())}")
        out[split] = _tensor_data([f], f"{labels}_labels", name if split == "train" else f"{name}-test", classes)
    return out
