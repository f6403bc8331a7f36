"""Data sources: the bundled digits set, feature files, image folders and CIFAR-10 batches.

- :func:`load_features` -> :class:`FeatureSet` (numpy) for solvers on fixed features
  (``assignsolve compare``).
- :func:`load_dataset` -> :class:`TensorData` (torch) for the representation-learning loop
  (``assignsolve run``): images [N, C, H, W] float32 in [0, 1] or features [N, D], from
  ``"digits"``, an ImageFolder directory, a CIFAR-10 python batch directory, or a
  ``.npy``/``.npz``/``.pt`` file.

Every loader raises a clear error naming the path and what was expected for a missing path or
an unexpected format. Nothing is downloaded.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import attrs
import numpy as np
import torch

__all__ = ["FeatureSet", "TensorData", "load_dataset", "load_digits", "load_features"]


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


_FEATURE_KEYS = ("features", "x", "embeddings")
_ARRAY_KEYS = ("images", "x", "features", "data", "embeddings")
_LABEL_KEYS = ("labels", "y", "targets")


def _array_from_mapping(obj, path: Path, keys: tuple[str, ...]) -> tuple[object, object]:
    for key in keys:
        if key in obj:
            return obj[key], next((obj[k] for k in _LABEL_KEYS if k in obj), None)
    raise ValueError(f"{path}: expected a key among {list(keys)}, found keys {list(obj.keys())}")


def _read_array_file(path: Path, keys: tuple[str, ...], expected: str) -> tuple[object, object]:
    """(array, labels or None) from a ``.npy``, ``.npz`` or ``.pt`` file; ``keys`` name the array
    in a dict (the first present wins), labels under 'labels', 'y' or 'targets'. ``expected`` opens
    the error for any other suffix."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False), None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return _array_from_mapping(dict(z), path, keys)
    if suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: expected a tensor or a dict of tensors saved with torch.save ({exc})") from None
        return _array_from_mapping(obj, path, keys) if isinstance(obj, dict) else (obj, None)
    raise ValueError(f"{expected}, found {str(path)!r}")


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
    x, y = _read_array_file(path, _FEATURE_KEYS, "features: expected a .npy, .npz or .pt file")
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


# ====================================================================== tensors for training
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_CIFAR_TRAIN = re.compile(r"data_batch_(\d+)$")


@attrs.frozen(eq=False)
class TensorData:
    """A training set as torch tensors.

    Attributes
    ----------
    x : Tensor [N, C, H, W] or [N, D]
        float32 images in [0, 1], or feature vectors.
    labels : Tensor [N] int64 or None
        Ground-truth classes, used only for evaluation.
    name : str
        Short name for logs ("digits", a directory or file stem).
    classes : tuple of str or None
        Class names by label index, when the source has them.
    """

    x: torch.Tensor
    labels: torch.Tensor | None
    name: str
    classes: tuple[str, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32 or self.x.dim() not in (2, 4):
            raise ValueError(f"TensorData.x: expected a float32 tensor [N, C, H, W] or [N, D], found "
                             f"{type(self.x).__name__} {getattr(self.x, 'dtype', '')} shape {list(getattr(self.x, 'shape', []))}")
        n = self.x.shape[0]
        if self.labels is not None and (not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64
                                        or tuple(self.labels.shape) != (n,)):
            raise ValueError(f"TensorData.labels: expected an int64 tensor of shape ({n},) or None, found "
                             f"{getattr(self.labels, 'dtype', type(self.labels).__name__)} shape {list(getattr(self.labels, 'shape', []))}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) or (D,)."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    @property
    def n_classes(self) -> int | None:
        """Number of ground-truth classes (max label + 1, or len(classes)), None without labels."""
        if self.labels is None:
            return None
        return max(int(self.labels.max()) + 1 if len(self.labels) else 0, len(self.classes or ()))

    def __len__(self) -> int:
        return int(self.x.shape[0])


def load_dataset(source: str | Path, image_size: int | None = None, *, split: str = "train",
                 labels: str | Path | None = None) -> TensorData:
    """Load a training set as :class:`TensorData`.

    Parameters
    ----------
    source : str or Path
        ``"digits"``: scikit-learn's 1,797 8x8 digits as images [1797, 1, 8, 8].
        A directory in ImageFolder layout: one sub-folder per class holding image files
        (``root/cat/001.png``), read with Pillow as RGB, labels = sorted class folders; a folder
        holding only images (no sub-folders) loads them unlabelled.
        A CIFAR-10 python directory (``data_batch_1`` .. ``data_batch_5``, ``test_batch``
        pickles with ``b"data"`` [N, 3072] uint8 and ``b"labels"``), or its parent holding
        ``cifar-10-batches-py``; detected by those file names.
        A ``.npy``, ``.npz`` or ``.pt`` file: images [N, C, H, W] (uint8 0..255 or float in
        [0, 1]; [N, H, W] and channels-last [N, H, W, 1|3] accepted) or features [N, D]; a
        ``.npz``/``.pt`` dict may hold ``images``/``x``/``features``/``data`` plus ``labels``.
    image_size : int or None
        Resize images to ``image_size`` x ``image_size`` (bilinear, antialiased). None: keep the
        size (an image folder then needs all images the size of its first one).
    split : str
        CIFAR-10 only: ``"train"`` (data_batch_*), ``"test"`` (test_batch) or ``"all"``.
    labels : str or Path or None
        Optional separate ``.npy``/``.pt`` file of [N] integer labels (overrides any found).

    Returns
    -------
    TensorData
        ``x`` float32 [N, C, H, W] in [0, 1] or [N, D]; ``labels`` int64 [N] or None.
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0):
        raise ValueError(f"image_size: expected a positive int or None, found {image_size!r}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split: expected 'train', 'test' or 'all', found {split!r}")
    if str(source) == "digits":
        x, y = load_digits("images")
        data = TensorData(torch.from_numpy(x), torch.from_numpy(y), "digits", tuple(str(i) for i in range(10)))
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"dataset: no such file or directory {str(path)!r} (expected 'digits', an ImageFolder or "
                f"CIFAR-10 batch directory, or a .npy, .npz or .pt file)")
        if path.is_dir():
            cifar = _cifar_dir(path)
            data = _load_cifar(cifar, split) if cifar is not None else _load_image_folder(path, image_size)
        else:
            data = _load_tensor_file(path)
    if labels is not None:
        y = torch.from_numpy(_load_labels(labels, len(data)))
        data = attrs.evolve(data, labels=y, classes=None)
    if image_size is not None:
        data = _resize(data, image_size)
    return data


def _resize(data: TensorData, size: int) -> TensorData:
    if not data.is_image:
        raise ValueError(f"{data.name}: image_size={size} applies to images, found features of shape {list(data.x.shape)}")
    if data.input_shape[1:] == (size, size):
        return data
    out = torch.cat([torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                                                     antialias=True) for chunk in data.x.split(4096)])
    return attrs.evolve(data, x=out.clamp_(0.0, 1.0))


# ---------------------------------------------------------------- CIFAR-10 python batches
def _cifar_dir(path: Path) -> Path | None:
    for d in (path, path / "cifar-10-batches-py"):
        if d.is_dir() and any(_CIFAR_TRAIN.match(f.name) or f.name == "test_batch" for f in d.iterdir()):
            return d
    return None


def _load_cifar(path: Path, split: str) -> TensorData:
    train = sorted((f for f in path.iterdir() if _CIFAR_TRAIN.match(f.name)),
                   key=lambda f: int(_CIFAR_TRAIN.match(f.name).group(1)))
    test = [path / "test_batch"] if (path / "test_batch").is_file() else []
    files = {"train": train, "test": test, "all": train + test}[split]
    if not files:
        found = ", ".join(f.name for f in train + test)
        raise FileNotFoundError(f"{path}: expected CIFAR-10 {split!r} batches "
                                f"({'data_batch_1..5' if split == 'train' else 'test_batch'}), found only {found}")
    xs, ys = [], []
    for f in files:
        # The CIFAR-10 "python version" is a pickle (https://www.cs.toronto.edu/~kriz/cifar.html);
        # only load batches from a source you trust.
        try:
            with open(f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
        except Exception as exc:
            raise ValueError(f"{f}: expected a CIFAR-10 python batch (a pickled dict), could not read it ({exc})") from None
        if not isinstance(batch, dict) or b"data" not in batch or not ({b"labels", b"fine_labels"} & batch.keys()):
            keys = sorted(batch.keys()) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"{f}: expected a dict with b'data' and b'labels', found {keys}")
        data = np.asarray(batch[b"data"])
        y = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or y.shape != (len(data),):
            raise ValueError(f"{f}: expected b'data' uint8 [N, 3072] and {len(data)} labels, "
                             f"found data {data.dtype} {data.shape} and labels {y.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64))
    classes = None
    meta = path / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                names = pickle.load(fh, encoding="bytes").get(b"label_names")
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        except Exception:
            classes = None
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    name = "cifar10" if path.name in ("cifar-10-batches-py", "cifar10", "cifar-10") else path.name
    return TensorData(x, torch.from_numpy(np.concatenate(ys)), name if split == "train" else f"{name}-{split}", classes)


# ---------------------------------------------------------------- ImageFolder
def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def _load_image_folder(root: Path, image_size: int | None) -> TensorData:
    from PIL import Image

    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items: list[tuple[Path, int]] = []
    classes: tuple[str, ...] | None = None
    if class_dirs:
        classes = tuple(d.name for d in class_dirs)
        for label, d in enumerate(class_dirs):
            items += [(f, label) for f in _image_files(d)]
    else:
        items = [(f, -1) for f in _image_files(root)]
    if not items:
        raise ValueError(f"{root}: expected an ImageFolder directory (class sub-folders of {', '.join(IMAGE_EXTENSIONS)} "
                         f"images) or CIFAR-10 batches (data_batch_1..5, test_batch), found no image files")
    arrays, size, first = [], None, items[0][0]
    for f, _ in items:
        try:
            with Image.open(f) as img:
                img = img.convert("RGB")
                if image_size is not None:
                    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                elif size is None:
                    size = img.size
                elif img.size != size:
                    raise ValueError(f"{f}: expected {size[0]}x{size[1]} pixels like {first}, found "
                                     f"{img.size[0]}x{img.size[1]}; pass image_size to resize every image")
                arrays.append(np.asarray(img, dtype=np.uint8))
        except (OSError, SyntaxError) as exc:  # Pillow's UnidentifiedImageError is an OSError
            raise ValueError(f"{f}: expected an image file Pillow can read, could not read it ({exc})") from None
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    y = torch.tensor([label for _, label in items], dtype=torch.int64) if classes is not None else None
    return TensorData(x, y, root.name, classes)


# ---------------------------------------------------------------- array files
def _load_tensor_file(path: Path) -> TensorData:
    x, y = _read_array_file(path, _ARRAY_KEYS, "dataset: expected 'digits', a directory, or a .npy, .npz or .pt file")
    x = torch.as_tensor(_as_numpy(x, "x")) if not isinstance(x, torch.Tensor) else x.detach().cpu()
    x = _to_float_images_or_features(x, path)
    if y is not None:
        y = torch.from_numpy(_check_labels(_as_numpy(y, "labels"), len(x), str(path)))
    return TensorData(x, y, path.stem)


def _to_float_images_or_features(x: torch.Tensor, path: Path) -> torch.Tensor:
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{path}: expected uint8 or float images, or numeric features, found dtype {x.dtype}")
    if x.dim() not in (2, 3, 4):
        raise ValueError(f"{path}: expected images [N, C, H, W] (or [N, H, W]) or features [N, D], "
                         f"found shape {list(x.shape)}")
    if x.dim() == 2:  # features [N, D], any real dtype
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError(f"{path}: expected finite features, found NaN or inf")
        return x.contiguous()
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise ValueError(f"{path}: expected uint8 (0..255) or float ([0, 1]) images, found dtype {x.dtype}")
    if x.dim() == 3:  # [N, H, W] grayscale
        x = x[:, None]
    elif x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):  # channels-last [N, H, W, C]
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0).contiguous()
    x = x.float().contiguous()
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(f"{path}: expected float images in [0, 1] (or uint8 0..255), found values in [{lo:.4g}, {hi:.4g}]")
    return x
