"""MNIST from its official IDX files (``train-*`` 60,000 images, ``t10k-*`` 10,000).

IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 sizes, then the values row-major and big-endian. Type codes: 0x08
uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Images are
``idx3-ubyte`` [N, 28, 28], labels ``idx1-ubyte`` [N]. Files are read gzip-compressed (``.gz``,
as distributed) or not.

Mirrors and MD5s of the four ``.gz`` files as listed by torchvision
(``torchvision/datasets/mnist.py``, ``MNIST.mirrors`` / ``MNIST.resources``); the S3 mirror comes
first because yann.lecun.com often refuses downloads.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, DataFileNotFoundError
from .download import Resource
from .tensors import TensorData, as_labels

__all__ = ["FILES", "RESOURCES", "load_mnist", "read_idx"]

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
RESOURCES = tuple(Resource(name, tuple(m + name for m in MIRRORS), md5=md5) for name, md5 in _MD5.items())
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzip or plain), native byte order; errors name the file."""
    path = Path(path)
    try:
        with _open(path) as fh:
            head = fh.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_TYPES or head[3] == 0:
                raise DataError(f"{path}: expected an IDX file (magic 00 00 <type> <ndim>), found {head!r}")
            ndim = head[3]
            dims_raw = fh.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header ({ndim} dimensions announced)")
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            data = fh.read(n_bytes)
            if len(data) != n_bytes:
                raise DataError(f"{path}: truncated IDX file: expected {n_bytes} bytes of data for shape "
                                f"{list(shape)}, found {len(data)}")
            if fh.read(1):
                raise DataError(f"{path}: expected {n_bytes} bytes of data for shape {list(shape)}, found more")
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: could not read the IDX file ({type(exc).__name__}: {exc})") from None
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (the plain file first)."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def missing_files(folder: Path, splits: tuple[str, ...]) -> list[str]:
    return [stem + ".gz" for s in splits for stem in FILES[s] if find_file(folder, stem) is None]


def load_mnist(folder: str | Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, TensorData]:
    """``{"train": 60,000, "test": 10,000}`` MNIST digits as [N, 1, 28, 28] float32 in [0, 1]
    with int64 labels 0..9, from ``folder`` holding the IDX files (gzip or not)."""
    folder = Path(folder)
    out = {}
    for split in splits:
        paths = [find_file(folder, stem) for stem in FILES[split]]
        if None in paths:
            raise DataFileNotFoundError(f"{folder}: expected the MNIST files {', '.join(s + '[.gz]' for s in FILES[split])}, "
                                        f"missing {', '.join(missing_files(folder, (split,)))}")
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{paths[0]}: expected uint8 images [N, H, W], found {images.dtype} {list(images.shape)}")
        y = as_labels(labels, len(images), f"{paths[1]} (labels for {paths[0].name})")
        if len(y) and int(y.max()) > 9:
            raise DataError(f"{paths[1]}: expected digit labels 0..9, found {int(y.max())}")
        x = torch.from_numpy(images.copy())[:, None].float().div_(255.0)
        out[split] = TensorData(x, y, "mnist" if split == "train" else "mnist-test", tuple(str(i) for i in range(10)))
    return out
