"""ImageFolder directories read into memory with Pillow.

Layouts (class folders sorted by name give the label indices):

- ``root/<class>/<image>``: one labelled split;
- ``root/<image>`` (no sub-folders): one unlabelled split;
- ``root/train/<class>/<image>`` with ``root/val/<class>/<image>`` (or ``test/``), as ImageNet is
  laid out: the two are read as the train and test splits, the held-out classes indexed like the
  training classes (a class only in ``val/`` is an error).

Every file Pillow cannot read, an image whose pixel count trips Pillow's decompression-bomb
limit (``Image.MAX_IMAGE_PIXELS``; its warning is turned into an error too), and a mixed-size
folder without ``image_size`` raise :class:`~assignsolve.errors.DataError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError
from .tensors import TensorData

__all__ = ["IMAGE_EXTENSIONS", "check_same_size", "is_split_folder", "list_image_folder", "load_image_folder",
           "load_image_folder_splits", "read_image", "to_tensor"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEST_FOLDERS = ("val", "test")


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def is_split_folder(root: Path) -> bool:
    """True for ``root/train/<class>/`` beside ``root/val/`` or ``root/test/``."""
    train = root / "train"
    return train.is_dir() and any((root / t).is_dir() for t in TEST_FOLDERS) and bool(_class_dirs(train))


def _items(root: Path, classes: tuple[str, ...] | None = None) -> tuple[list[tuple[Path, int]], tuple[str, ...] | None]:
    class_dirs = _class_dirs(root)
    if not class_dirs:
        return [(f, -1) for f in _image_files(root)], None
    names = tuple(d.name for d in class_dirs)
    index = {c: i for i, c in enumerate(classes if classes is not None else names)}
    unknown = [c for c in names if c not in index]
    if unknown:
        raise DataError(f"{root}: expected the class folders of the training split, found {unknown[:5]} that it lacks")
    items = []
    for d in class_dirs:
        items += [(f, index[d.name]) for f in _image_files(d)]
    return items, (classes if classes is not None else names)


def list_image_folder(root: Path, classes: tuple[str, ...] | None = None
                      ) -> tuple[list[tuple[Path, int]], tuple[str, ...] | None]:
    """``([(file, label), ...], class names)`` of one split, in reading order (label -1 and class
    names None for an unlabelled folder); no image files is a :class:`DataError`."""
    items, classes = _items(root, classes)
    if not items:
        raise DataError(f"{root}: expected an ImageFolder directory (class sub-folders of {', '.join(IMAGE_EXTENSIONS)} "
                        f"images) or CIFAR-10 batches (data_batch_1..5, test_batch), found no image files")
    return items, classes


def check_same_size(path: Path, a: np.ndarray, shape: tuple[int, ...], first: Path) -> None:
    """A :class:`DataError` when image ``a`` (read from ``path``) is not shaped like the first one."""
    if a.shape != tuple(shape):
        (h0, w0), (h, w) = shape[:2], a.shape[:2]
        raise DataError(f"{path}: expected {w0}x{h0} pixels like {first}, found {w}x{h}; pass image_size to resize "
                        f"every image")


def read_image(path: Path, image_size: int | None) -> np.ndarray:
    """One image as uint8 [H, W, 3] (RGB; resized to ``image_size`` squared, Pillow bilinear)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = img.convert("RGB")
                if image_size is not None:
                    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: expected an image file Pillow can read, could not read it ({first})") from None


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [0, 1] (the one conversion, in memory or streamed)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def load_image_folder(root: Path, image_size: int | None, classes: tuple[str, ...] | None = None,
                      name: str | None = None) -> TensorData:
    """One ImageFolder split as :class:`TensorData` (images read as RGB, uint8 / 255).

    ``classes``: the training split's class names, for a held-out split whose labels must index
    them. ``image_size``: resize every image to a square (Pillow bilinear); None requires every
    image to have the size of the first.
    """
    items, classes = list_image_folder(root, classes)
    arrays, first = [], items[0][0]
    for f, _ in items:
        a = read_image(f, image_size)
        if arrays:
            check_same_size(f, a, arrays[0].shape, first)
        arrays.append(a)
    x = to_tensor(np.stack(arrays))
    y = torch.tensor([label for _, label in items], dtype=torch.int64) if classes is not None else None
    return TensorData(x, y, name or root.name, classes)


def load_image_folder_splits(root: Path, image_size: int | None, splits: tuple[str, ...],
                             reader=None) -> dict[str, TensorData]:
    """``{"train": ..., "test": ...}`` from ``root/train`` and ``root/val`` (or ``root/test``).

    Without ``image_size`` the held-out images must have the training images' size. ``reader``:
    the one-split loader (default :func:`load_image_folder`; the streamed path passes
    :func:`assignsolve.datasets.streamed.stream_image_folder`).
    """
    read = reader or load_image_folder
    out: dict = {}
    if "train" in splits:
        out["train"] = read(root / "train", image_size, name=root.name)
    if "test" in splits:
        classes = tuple(d.name for d in _class_dirs(root / "train"))
        test_dir = next(root / t for t in TEST_FOLDERS if (root / t).is_dir())
        test = read(test_dir, image_size, classes=classes, name=f"{root.name}-{test_dir.name}")
        if "train" in out and test.input_shape != out["train"].input_shape:
            raise DataError(f"{test_dir}: expected images of shape {list(out['train'].input_shape)} like "
                            f"{root / 'train'}, found {list(test.input_shape)}; pass image_size to resize every image")
        out["test"] = test
    return out
