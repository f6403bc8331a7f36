"""STL-10 from its official binaries (https://cs.stanford.edu/~acoates/stl10/).

``stl10_binary/`` holds ``train_X.bin`` (5,000 images), ``train_y.bin``, ``test_X.bin`` (8,000),
``test_y.bin``, ``unlabeled_X.bin`` (100,000) and ``class_names.txt``. An ``*_X.bin`` file is raw
uint8, 96 x 96 x 3 = 27,648 bytes per image, each channel stored column-major (as MATLAB writes
it): read as [N, 3, 96, 96] and swap the last two axes to get row-major [N, 3, H, W]. Labels are
one uint8 per image, 1..10 in the file, 0..9 here.

Splits: ``train`` (labelled 5,000), ``test`` (8,000), ``unlabeled`` (100,000, no labels) and
``train+unlabeled`` (105,000, no labels: the usual self-supervised training set). The unlabeled
file is only read when asked for; as float32 it takes 11 GB.

Archive URL and MD5 as listed by torchvision (``torchvision/datasets/stl10.py``, ``STL10.url`` /
``tgz_md5``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, DataFileNotFoundError
from .download import Resource
from .tensors import TensorData, as_labels

__all__ = ["SPLITS", "STL10", "load_stl10", "read_images", "read_labels", "stl10_dir"]

STL10 = Resource("stl10_binary.tar.gz", ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                 md5="91f7769df0f17e558f3565bffb0c7dfb")
STL10_DIR = "stl10_binary"
SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
_IMAGE_BYTES = 3 * 96 * 96


def read_images(path: Path) -> np.ndarray:
    """uint8 [N, 3, 96, 96] (row-major H, W) from an STL-10 ``*_X.bin`` file."""
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: no such file (expected an STL-10 image binary)")
    size = path.stat().st_size
    if size == 0 or size % _IMAGE_BYTES:
        raise DataError(f"{path}: expected a multiple of {_IMAGE_BYTES} bytes (96x96x3 per image), found {size} bytes")
    raw = np.fromfile(path, dtype=np.uint8)
    return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def read_labels(path: Path, n: int) -> torch.Tensor:
    """int64 labels 0..9 [n] from an STL-10 ``*_y.bin`` file (1..10 on disk)."""
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: no such file (expected STL-10 labels)")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.shape != (n,):
        raise DataError(f"{path}: expected {n} labels (one byte per image), found {len(raw)}")
    if n and (raw.min() < 1 or raw.max() > 10):
        raise DataError(f"{path}: expected labels 1..10, found values in [{raw.min()}, {raw.max()}]")
    return as_labels(raw.astype(np.int64) - 1, n, str(path))


def stl10_dir(path: Path) -> Path | None:
    """``path`` or ``path/stl10_binary`` when it holds ``train_X.bin`` or ``test_X.bin``."""
    for d in (path, path / STL10_DIR):
        if (d / "train_X.bin").is_file() or (d / "test_X.bin").is_file():
            return d
    return None


def _classes(path: Path) -> tuple[str, ...] | None:
    f = path / "class_names.txt"
    if not f.is_file():
        return None
    try:
        names = tuple(line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{f}: could not read the class names ({exc})") from None
    if len(names) != 10:
        raise DataError(f"{f}: expected 10 class names, found {len(names)}")
    return names


def _labelled(path: Path, prefix: str, classes, name: str) -> TensorData:
    images = read_images(path / f"{prefix}_X.bin")
    labels = read_labels(path / f"{prefix}_y.bin", len(images))
    return TensorData(torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0), labels, name, classes)


def load_stl10(path: str | Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, TensorData]:
    """``{split: TensorData}`` for the requested ``splits`` (see :data:`SPLITS`), images
    [N, 3, 96, 96] float32 in [0, 1]."""
    path = Path(path)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise DataError(f"split: expected one of {list(SPLITS)} for STL-10, found {bad[0]!r}")
    classes = _classes(path)
    name = "stl10" if path.name in (STL10_DIR, "stl10", "stl-10") else path.name
    out = {}
    for split in splits:
        if split in ("train", "test"):
            out[split] = _labelled(path, split, classes, name if split == "train" else f"{name}-test")
            continue
        parts = [read_images(path / "train_X.bin")] if split == "train+unlabeled" else []
        parts.append(read_images(path / "unlabeled_X.bin"))
        x = torch.cat([torch.from_numpy(np.ascontiguousarray(p)).float().div_(255.0) for p in parts])
        out[split] = TensorData(x, None, f"{name}-{split}", classes)
    return out
