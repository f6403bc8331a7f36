"""Array files: ``.npy``, ``.npz`` and ``.pt``, read safely and only as far as needed.

- ``.npy``: ``np.load(allow_pickle=False)`` after checking the magic bytes, so a text file named
  ``.npy`` says so instead of "pickled data".
- ``.npz``: opened lazily; only the members that are used (the array, its labels, the split
  keys) are decompressed. An unused compressed array of any size costs nothing.
- ``.pt``/``.pth``: ``torch.load(weights_only=True)``: tensors and plain containers only, no code.

A file may carry its own held-out split (see :func:`read_array_splits`). Every failure (missing,
empty, truncated, corrupt, unexpected keys) raises :class:`~assignsolve.errors.DataError` with
one line naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs
import numpy as np
import torch

from ..core.errors import DataError, DataFileNotFoundError

__all__ = ["ARRAY_KEYS", "FEATURE_KEYS", "LABEL_KEYS", "RawSplit", "close", "is_array_file", "open_array_file",
           "read_array_splits"]

FEATURE_KEYS = ("features", "x", "embeddings")
ARRAY_KEYS = ("images", "x", "features", "data", "embeddings")
LABEL_KEYS = ("labels", "y", "targets")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
SUFFIXES = (".npy", ".npz", ".pt", ".pth")


def _first_line(exc: BaseException) -> str:
    """``"Type: first sentence"`` of an exception, on one line. For torch's weights-only
    refusal, the line that says what was refused rather than the boilerplate around it."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        useful = [ln for ln in lines[1:] if not ln.startswith(("Please file an issue", "Check the documentation"))]
        tail = lines[1].split("WeightsUnpickler error:")[-1].strip() if len(lines) > 1 else ""
        lines = useful or ([tail] if tail else lines)
    text = lines[0] if lines else ""
    if len(text) > 160 and ". " in text:
        text = text[: text.index(". ") + 1]
    text = text[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _head(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise DataError(f"{path}: could not read it ({exc.strerror or exc})") from None


def _check_file(path: Path, magic: tuple[bytes, ...], kind: str) -> None:
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file (expected a {kind})")
    if path.is_dir():
        raise DataError(f"{path}: expected a {kind}, found a directory")
    head = _head(path)
    if not head:
        raise DataError(f"{path}: expected a {kind}, found an empty file (0 bytes)")
    if magic and not head.startswith(magic):
        raise DataError(f"{path}: expected a {kind}, found a file starting with {head!r} (not that format)")


class _LazyNpz(Mapping):
    """A read-only view of an open ``NpzFile``: keys come from the zip directory; a value is
    decompressed on first access only (and then cached), with errors naming file and key."""

    def __init__(self, npz, path: Path):
        self._npz, self._path, self._cache = npz, path, {}

    def __getitem__(self, key: str):
        if key not in self._cache:
            if key not in self._npz.files:
                raise KeyError(key)
            try:
                self._cache[key] = self._npz[key]
            except Exception as exc:  # zlib.error, BadZipFile (CRC), ValueError (truncated), ...
                raise DataError(f"{self._path}: could not read the array {key!r} ({_first_line(exc)}); "
                                f"the file is truncated or corrupt") from None
        return self._cache[key]

    def __iter__(self):
        return iter(self._npz.files)

    def __len__(self) -> int:
        return len(self._npz.files)


def open_array_file(path: Path):
    """An ndarray (``.npy``), a lazy mapping (``.npz``; the caller closes it with :func:`close`),
    or whatever ``torch.load(weights_only=True)`` returns (``.pt``/``.pth``)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        _check_file(path, (_NPY_MAGIC,), "NumPy .npy file")
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:  # truncated: ValueError/EOFError; object arrays: ValueError
            raise DataError(f"{path}: could not read the .npy array ({_first_line(exc)}); the file is truncated "
                            f"or corrupt, or holds Python objects") from None
    if suffix == ".npz":
        _check_file(path, _ZIP_MAGIC, "NumPy .npz file (a zip archive)")
        try:
            return _LazyNpz(np.load(path, allow_pickle=False), path)
        except Exception as exc:  # zipfile.BadZipFile for a truncated or corrupt archive
            raise DataError(f"{path}: could not open the .npz archive ({_first_line(exc)}); the file is "
                            f"truncated or corrupt") from None
    if suffix in (".pt", ".pth"):
        _check_file(path, (), "tensor or dict of tensors saved with torch.save")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError (refused global, corrupt), EOFError, RuntimeError
            raise DataError(f"{path}: expected a tensor or a dict of tensors saved with torch.save, could not "
                            f"load it with weights_only=True ({_first_line(exc)})") from None
    raise DataError(f"{path}: expected a .npy, .npz or .pt file, found the suffix {suffix or '(none)'!r}")


def close(content) -> None:
    if isinstance(content, _LazyNpz):
        content._npz.close()


def _variants(keys: tuple[str, ...], split: str) -> list[str]:
    return [f"{k}_{split}" for k in keys] + [f"{split}_{k}" for k in keys]


def _pick(mapping: Mapping, keys: list[str] | tuple[str, ...]):
    key = next((k for k in keys if k in mapping), None)
    return (key, mapping[key]) if key is not None else (None, None)


def _split_mask(value, n: int, where: str) -> np.ndarray:
    """Boolean [n] mask of the held-out samples from a ``split`` array: bools (True = test),
    integers (0 = train, 1 = test) or strings ('train', and 'test' or 'val')."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.shape != (n,):
        raise DataError(f"{where}: expected a split array of shape ({n},), found shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu":
        if not np.isin(arr, (0, 1)).all():
            raise DataError(f"{where}: expected split values 0 (train) or 1 (test), found {sorted(set(arr.tolist()) - {0, 1})[:5]}")
        return arr == 1
    if arr.dtype.kind in "US":
        text = np.char.lower(arr.astype(str))
        bad = sorted(set(text.tolist()) - {"train", "test", "val"})
        if bad:
            raise DataError(f"{where}: expected split values 'train', 'test' or 'val', found {bad[:5]}")
        return text != "train"
    raise DataError(f"{where}: expected a split array of bools, 0/1 or 'train'/'test', found dtype {arr.dtype}")


@attrs.frozen(eq=False)
class RawSplit:
    """One split's raw arrays as found in a file, with the names that errors should use."""

    x: object
    labels: object
    where: str
    labels_where: str


def read_array_splits(path: Path, keys: tuple[str, ...]) -> dict[str, RawSplit]:
    """Raw ``{"train": RawSplit, "test": RawSplit}`` (test only when present) from one file.

    ``keys`` name the array in a dict or ``.npz`` (the first present wins); labels are under
    ``labels``/``y``/``targets``. A held-out split is found, in this order, as
    - a ``test`` entry (a ``.pt`` dict with the same keys, or an array/tensor, whose labels are
      then ``test_labels``/``labels_test``/``y_test``/...);
    - ``<key>_test``/``test_<key>`` arrays (``x_test``, ``y_test`` as in Keras' ``mnist.npz``),
      with ``<key>_train``/``train_<key>`` accepted for the training array;
    - a ``split`` array, one value per sample: bools (True = test), 0/1, or 'train'/'test'/'val'.
    Only the members named here are read from an ``.npz``.
    """
    content = open_array_file(path)
    try:
        if not isinstance(content, Mapping):
            return {"train": RawSplit(content, None, str(path), str(path))}
        key, x = _pick(content, list(keys) + _variants(keys, "train"))
        if key is None:
            raise DataError(f"{path}: expected a key among {list(keys)}, found keys {list(content.keys())}")
        ykey, y = _pick(content, LABEL_KEYS + tuple(_variants(LABEL_KEYS, "train")))
        out = {"train": RawSplit(x, y, f"{path}[{key!r}]", f"{path}[{ykey!r}]")}
        test_labels = _variants(LABEL_KEYS, "test")
        if "test" in content:
            test = content["test"]
            if isinstance(test, Mapping):
                tkey, tx = _pick(test, keys)
                if tkey is None:
                    raise DataError(f"{path}['test']: expected a key among {list(keys)}, found keys {list(test.keys())}")
                tykey, ty = _pick(test, LABEL_KEYS)
                out["test"] = RawSplit(tx, ty, f"{path}['test'][{tkey!r}]", f"{path}['test'][{tykey!r}]")
            else:
                tykey, ty = _pick(content, test_labels)
                out["test"] = RawSplit(test, ty, f"{path}['test']", f"{path}[{tykey!r}]")
        else:
            tkey, tx = _pick(content, _variants(keys, "test"))
            if tkey is not None:
                tykey, ty = _pick(content, test_labels)
                out["test"] = RawSplit(tx, ty, f"{path}[{tkey!r}]", f"{path}[{tykey!r}]")
        if "split" in content:
            if "test" in out:
                raise DataError(f"{path}: expected either a 'split' array or test arrays, found both")
            out = _apply_split(out["train"], _tensor_or_array(content["split"]), f"{path}['split']")
        return out
    finally:
        close(content)


def _tensor_or_array(value):
    return value if isinstance(value, torch.Tensor) else np.asarray(value)


def _apply_split(raw: RawSplit, split, where: str) -> dict[str, RawSplit]:
    x = _tensor_or_array(raw.x)
    n = len(x)
    mask = _split_mask(split, n, where)
    if mask.all():
        raise DataError(f"{where}: expected some training samples, found every sample marked test")
    y = None if raw.labels is None else _tensor_or_array(raw.labels)
    if y is not None and tuple(y.shape) != (n,):
        raise DataError(f"{raw.labels_where}: expected integer labels of shape ({n},), found shape {tuple(y.shape)}")
    if isinstance(x, torch.Tensor):
        mask = torch.from_numpy(mask)
    out = {"train": RawSplit(x[~mask], None if y is None else y[~mask], raw.where, raw.labels_where)}
    if mask.any():
        out["test"] = RawSplit(x[mask], None if y is None else y[mask], f"{raw.where} (split test)",
                               f"{raw.labels_where} (split test)")
    return out


def is_array_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES
