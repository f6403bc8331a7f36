"""Data sources: the bundled digits, standard datasets by name, feature files, image folders.

- :func:`load_features` -> :class:`FeatureSet` (numpy) for solvers on fixed features
  (``assignsolve compare``).
- :func:`load_splits` -> :class:`~assignsolve.datasets.Splits` (torch): the ``train`` split the
  solver labels and the encoder trains on, and the held-out ``test`` split (or None).
- :func:`load_dataset` -> :class:`TensorData`: one split of the same sources (``run`` uses it).

Sources: ``"digits"``; a standard dataset by name (``mnist``, ``cifar10``, ``cifar100``,
``stl10``; see :mod:`assignsolve.datasets.registry`), read from ``data_dir`` and downloaded
there, verified, when missing; an ImageFolder directory (``train/`` + ``val/`` read as splits); a
CIFAR-10/100 python directory (test batch = test split); an STL-10 binary directory; a ``.npy``,
``.npz`` or ``.pt`` file (a ``split``/``test`` key or ``test_data`` gives the test split).

Every bad input (missing, empty, truncated or corrupt file, unexpected keys, dtypes, shapes or
values, unreadable images, decompression bombs, a pickle that names code) raises a
:class:`~assignsolve.errors.DataError` (a ``ValueError``; ``DataFileNotFoundError`` is also a
``FileNotFoundError``) with one line naming the file or value, which the CLI turns into exit 2.
Nothing is unpickled unsafely: pickles go through :mod:`assignsolve.datasets.safepickle`,
``.pt`` files through ``torch.load(weights_only=True)``, ``.npy``/``.npz`` with
``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch

from .datasets import arrays, cifar, imagefolder, stl10, streamed
from .datasets.registry import DATASETS, load_named
from .datasets.tensors import Splits, TensorData, as_images_or_features, as_labels, concat
from .core.errors import DataError, DataFileNotFoundError

__all__ = ["FeatureSet", "Splits", "TensorData", "load_dataset", "load_digits", "load_features", "load_splits"]

IMAGE_EXTENSIONS = imagefolder.IMAGE_EXTENSIONS
_SOURCES = ("'digits', a dataset name (" + ", ".join(DATASETS) + "), an ImageFolder, CIFAR or STL-10 directory, "
            "or a .npy, .npz or .pt file")


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
        raise DataError(f"kind: expected 'pixels' or 'images', found {kind!r}")
    return x, data.target.astype(np.int64)


def load_features(source: str | Path, labels: str | Path | None = None) -> FeatureSet:
    """Load an [N, D] feature matrix and optional labels.

    ``source`` is ``"digits"`` (the bundled pixels), a ``.npy`` file (array [N, D]), a
    ``.npz`` file or a ``.pt`` file (a tensor, or a dict with ``features`` and optional
    ``labels``). ``labels`` optionally names a separate ``.npy``/``.pt`` file of [N] ints.
    Non-finite rows are kept (``compare`` reports and drops them).
    """
    if str(source) == "digits":
        x, y = load_digits("pixels")
        return FeatureSet(x, y if labels is None else _load_labels(labels, len(x)).numpy(), "digits")
    path = Path(source)
    if not path.exists():
        raise DataFileNotFoundError(f"features: no such file {str(path)!r} (expected a .npy, .npz or .pt file, or 'digits')")
    if not arrays.is_array_file(path):
        raise DataError(f"features: expected a .npy, .npz or .pt file, found {str(path)!r}")
    raw = arrays.read_array_splits(path, arrays.FEATURE_KEYS)["train"]
    x = raw.x.detach().cpu().numpy() if isinstance(raw.x, torch.Tensor) else np.asarray(raw.x)
    if x.ndim != 2 or x.dtype.kind not in "iuf":
        raise DataError(f"{path}: expected a numeric [N, D] array, found shape {x.shape} dtype {x.dtype}")
    return FeatureSet(x.astype(np.float32, copy=False), feature_labels(labels, raw, len(x)), path.stem)


def feature_labels(labels, raw, n: int) -> np.ndarray | None:
    """Labels [n] int64 of a feature file: from the ``labels`` file when given, else from the
    file's own label key, else None."""
    if labels is not None:
        return _load_labels(labels, n).numpy()
    if raw.labels is not None:
        return as_labels(raw.labels, n, raw.labels_where).numpy()
    return None


def _load_labels(path: str | Path, n: int) -> torch.Tensor:
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"labels: no such file {str(path)!r}")
    content = arrays.open_array_file(path)
    try:
        if isinstance(content, dict) or hasattr(content, "keys"):
            key = next((k for k in arrays.LABEL_KEYS if k in content), None)
            if key is None:
                raise DataError(f"{path}: expected a key among {list(arrays.LABEL_KEYS)}, found keys {list(content.keys())}")
            return as_labels(content[key], n, f"{path}[{key!r}]")
        return as_labels(content, n, str(path))
    finally:
        arrays.close(content)


# ====================================================================== tensors for training
def _check_args(image_size, split) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0):
        raise DataError(f"image_size: expected a positive int or None, found {image_size!r}")
    if split not in ("train", "test", "all", "unlabeled", "train+unlabeled"):
        raise DataError(f"split: expected 'train', 'test' or 'all' (STL-10 also 'unlabeled', 'train+unlabeled'), "
                        f"found {split!r}")


def _from_raw(raw: arrays.RawSplit, name: str) -> TensorData:
    x = as_images_or_features(raw.x, raw.where)
    y = None if raw.labels is None else as_labels(raw.labels, len(x), raw.labels_where)
    return TensorData(x, y, name)


def is_image_folder(source) -> bool:
    """True for a directory read as an ImageFolder (not a CIFAR or STL-10 one): the sources that stream."""
    path = Path(source)
    if str(source) == "digits" or str(source) in DATASETS or not path.is_dir():
        return False
    return cifar.cifar10_dir(path) is None and cifar.cifar100_dir(path) is None and stl10.stl10_dir(path) is None


def _read_folder(path: Path, image_size, splits: tuple[str, ...], mode: str) -> dict:
    """An ImageFolder's splits, streamed or in memory as ``mode`` (:func:`~.datasets.streamed.choose_mode`) says."""
    split_folder = imagefolder.is_split_folder(path)
    if mode != "memory":  # listing and the first image only; auto reads the pixels only when they are small
        got = streamed.stream_image_folder_splits(path, image_size, splits) if split_folder else \
            {"train": streamed.stream_image_folder(path, image_size)}
        if streamed.choose_mode(mode, got["train"]) == "stream":
            return got
    if split_folder:
        return imagefolder.load_image_folder_splits(path, image_size, splits)
    return {"train": imagefolder.load_image_folder(path, image_size)}


def _read_source(source, image_size, splits: tuple[str, ...], data_dir, download, mode: str = "memory") -> dict:
    """``{split: TensorData or StreamedImages}`` for ``splits`` (those the source has; 'train' always)."""
    if mode != "memory" and not is_image_folder(source):
        streamed.choose_mode(mode, None)  # 'stream' of a source that is not an ImageFolder: the error
    text = str(source)
    if text == "digits":
        x, y = load_digits("images")
        return {"train": TensorData(torch.from_numpy(x), torch.from_numpy(y), "digits", tuple(str(i) for i in range(10)))}
    if text in DATASETS:
        return load_named(text, data_dir, splits, download=download)
    path = Path(source)
    if not path.exists():
        raise DataFileNotFoundError(f"dataset: no such file or directory {text!r} (expected {_SOURCES})")
    if path.is_dir():
        if (d := cifar.cifar10_dir(path)) is not None:
            return cifar.load_cifar10(d, _existing(splits, {"train": d.glob("data_batch_*"), "test": [d / "test_batch"]}))
        if (d := cifar.cifar100_dir(path)) is not None:
            return cifar.load_cifar100(d, _existing(splits, {"train": [d / "train"], "test": [d / "test"]}))
        if (d := stl10.stl10_dir(path)) is not None:
            want = splits if any(s not in ("train", "test") for s in splits) else \
                _existing(splits, {"train": [d / "train_X.bin"], "test": [d / "test_X.bin"]})
            return stl10.load_stl10(d, want)
        return _read_folder(path, image_size, splits, mode)
    if not arrays.is_array_file(path):
        raise DataError(f"{path}: expected {_SOURCES}")
    raw = arrays.read_array_splits(path, arrays.ARRAY_KEYS)
    return {s: _from_raw(r, path.stem if s == "train" else f"{path.stem}-test") for s, r in raw.items() if s in splits}


def _existing(splits: tuple[str, ...], files: dict[str, object]) -> tuple[str, ...]:
    """The requested 'train' (its absence is the loader's error to raise), and 'test' when its
    files exist."""
    return tuple(s for s in splits if s == "train" or any(Path(f).is_file() for f in files[s]))


def load_splits(source: str | Path, image_size: int | None = None, *, labels: str | Path | None = None,
                test_data: str | Path | None = None, test_labels: str | Path | None = None,
                data_dir: str | Path | None = None, download: bool = True, mode: str = "memory") -> Splits:
    """Load a dataset's train split and its held-out test split.

    Parameters
    ----------
    source : str or Path
        ``"digits"`` (no test split); ``mnist``/``cifar10``/``cifar100``/``stl10`` (read from
        ``data_dir``, fetched there first when missing and ``download``); an ImageFolder
        directory (``root/train/`` and ``root/val/`` or ``root/test/``: the two splits; otherwise
        one split); a CIFAR-10 python directory (``data_batch_*`` / ``test_batch``) or
        CIFAR-100 one (``train`` / ``test`` / ``meta``); an STL-10 ``stl10_binary`` directory; a
        ``.npy``/``.npz``/``.pt`` file (test split from a ``test`` entry, ``x_test``-style keys or
        a per-sample ``split`` array: see :func:`assignsolve.datasets.arrays.read_array_splits`).
    image_size : int or None
        Resize images to ``image_size`` x ``image_size`` (bilinear, antialiased).
    labels, test_labels : path or None
        Separate ``.npy``/``.pt`` files of integer labels for the train / test split.
    test_data : path or None
        A separate held-out source (any file or directory above); overrides one found in
        ``source``.
    data_dir : path or None
        Folder of the named datasets (default :func:`assignsolve.datasets.default_data_dir`).
    download : bool
        Allow fetching a named dataset that is not in ``data_dir``.
    mode : str
        ``"memory"`` (tensors), ``"stream"`` (an ImageFolder as
        :class:`~assignsolve.datasets.streamed.StreamedImages`, decoded per item) or ``"auto"``
        (stream an ImageFolder over :data:`~assignsolve.datasets.streamed.STREAM_THRESHOLD`
        bytes); a ``test_data`` that is not an ImageFolder is read into memory.
    """
    _check_args(image_size, "train")
    got = _read_source(source, image_size, ("train", "test"), data_dir, download, mode)
    train, test = got["train"], got.get("test")
    if test_data is not None:
        test_mode = mode if is_image_folder(test_data) else "memory"
        test = _read_source(test_data, image_size, ("train",), data_dir, download, test_mode)["train"]
        test = attrs.evolve(test, name=f"{test.name}-test" if not test.name.endswith("-test") else test.name)
    if labels is not None:
        train = attrs.evolve(train, labels=_load_labels(labels, len(train)), classes=None)
    if test_labels is not None:
        if test is None:
            raise DataError(f"test_labels: {str(test_labels)!r} given, but {source!s} has no test split (pass test_data)")
        test = attrs.evolve(test, labels=_load_labels(test_labels, len(test)), classes=None)
    if image_size is not None:
        train = _resize(train, image_size)
        test = None if test is None else _resize(test, image_size)
    return Splits(train, test)


def load_dataset(source: str | Path, image_size: int | None = None, *, split: str = "train",
                 labels: str | Path | None = None, data_dir: str | Path | None = None,
                 download: bool = True, mode: str = "memory") -> TensorData:
    """Load one split of a source of :func:`load_splits` as :class:`TensorData` (or, with ``mode``
    ``"stream"``/``"auto"``, an ImageFolder as :class:`~assignsolve.datasets.streamed.StreamedImages`).

    ``split``: ``"train"`` (default), ``"test"`` (the held-out split; an error when the source
    has none), ``"all"`` (train followed by test, or train alone), and for STL-10 also
    ``"unlabeled"`` and ``"train+unlabeled"`` (no labels). ``labels`` (a ``.npy``/``.pt`` file of
    [N] ints) overrides the split's labels. Returns images float32 [N, C, H, W] in [0, 1] or
    features [N, D], labels int64 [N] or None.
    """
    _check_args(image_size, split)
    wanted = {"train": ("train",), "test": ("test",), "all": ("train", "test")}.get(split, (split,))
    if split in ("unlabeled", "train+unlabeled") and not _is_stl10(source):
        raise DataError(f"split: {split!r} exists only for STL-10, found the source {str(source)!r}")
    got = _read_source(source, image_size, wanted, data_dir, download, mode)
    if split == "all" and isinstance(got["train"], streamed.StreamedImages) and "test" in got:
        raise DataError(f"{source!s}: split='all' is read into memory only (pass mode='memory')")
    if split == "test":
        if "test" not in got:
            raise DataError(f"{source!s}: split='test' requested, but the source has no test split")
        data = got["test"]
    elif split == "all":
        data = got["train"] if "test" not in got else concat(got["train"], got["test"], got["train"].name + "-all")
    else:
        data = got[split]
    if labels is not None:
        data = attrs.evolve(data, labels=_load_labels(labels, len(data)), classes=None)
    if image_size is not None:
        data = _resize(data, image_size)
    return data


def _is_stl10(source) -> bool:
    return str(source) == "stl10" or (Path(source).is_dir() and stl10.stl10_dir(Path(source)) is not None)


def _resize(data: TensorData, size: int) -> TensorData:
    if not data.is_image:
        raise DataError(f"{data.name}: image_size={size} applies to images, found features of shape {list(data.x.shape)}")
    if data.input_shape[1:] == (size, size):
        return data
    out = torch.cat([torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                                                     antialias=True) for chunk in data.x.split(4096)])
    return attrs.evolve(data, x=out.clamp_(0.0, 1.0))
