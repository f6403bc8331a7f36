"""Standard datasets by name: ``mnist``, ``cifar10``, ``cifar100``, ``stl10``.

``load_named(name, data_dir)`` looks for the official files under ``data_dir`` and, when they
are missing and ``download`` is true, fetches and verifies them (:mod:`.download`) first:

============  ==============================================  =======================================
name          files under ``data_dir``                        fetched from
============  ==============================================  =======================================
mnist         ``mnist/{train,t10k}-{images-idx3,labels-idx1}  ossci-datasets S3 mirror, then
              -ubyte[.gz]``                                   yann.lecun.com (4 files, MD5 each)
cifar10       ``cifar-10-batches-py/`` (or its                cs.toronto.edu
              ``cifar-10-python.tar.gz``)                     (``cifar-10-python.tar.gz``, MD5)
cifar100      ``cifar-100-python/`` (or its ``.tar.gz``)       cs.toronto.edu (MD5)
stl10         ``stl10_binary/`` (or its ``.tar.gz``)           ai.stanford.edu (2.6 GB, MD5)
============  ==============================================  =======================================

The default ``data_dir`` is ``$ASSIGNSOLVE_DATA_DIR`` when set, else
``~/.cache/assignsolve/datasets`` (:func:`default_data_dir`). Offline, the error names the URL and
the folder where the file can be put by hand. A folder that is already filled is used as it is
(its format is checked on reading; archives are checked against their MD5 when downloaded or
found).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs

from ..core.errors import DataError, DataFileNotFoundError, UnknownNameError
from . import cifar, mnist, stl10
from .download import Resource, extract_tar, fetch
from .tensors import TensorData

__all__ = ["DATASETS", "DatasetSpec", "UnknownDatasetError", "default_data_dir", "dataset_names", "load_named"]


class UnknownDatasetError(UnknownNameError):
    kind = "dataset"


@attrs.frozen
class DatasetSpec:
    """How one named dataset is found, fetched and read.

    ``locate(data_dir)`` returns the folder to read when the files are there (else None);
    ``prepare(data_dir, download)`` makes them be there (or raises); ``read(folder, splits)``.
    """

    name: str
    description: str
    locate: Callable[[Path], Path | None]
    prepare: Callable[..., Path]
    read: Callable[[Path, tuple[str, ...]], dict[str, TensorData]]
    splits: tuple[str, ...] = ("train", "test")


def default_data_dir() -> Path:
    """``$ASSIGNSOLVE_DATA_DIR`` if set, else ``~/.cache/assignsolve/datasets``."""
    env = os.environ.get("ASSIGNSOLVE_DATA_DIR")
    return Path(env).expanduser() if env else Path("~/.cache/assignsolve/datasets").expanduser()


def _missing(name: str, folder: Path, what: str, url: str) -> DataFileNotFoundError:
    return DataFileNotFoundError(f"{name}: {what} not found in {folder} and download is off; download {url} "
                                 f"and put it into {folder}")


# ---------------------------------------------------------------- mnist: four loose .gz files
def _mnist_locate(data_dir: Path) -> Path | None:
    folder = data_dir / "mnist"
    return folder if folder.is_dir() and not mnist.missing_files(folder, ("train", "test")) else None


def _mnist_prepare(data_dir: Path, download: bool, fetcher: Callable) -> Path:
    folder = data_dir / "mnist"
    for resource in mnist.RESOURCES:
        stem = resource.filename[:-3]
        if mnist.find_file(folder, stem) is not None:
            continue
        if not download:
            raise _missing("mnist", folder, resource.filename, resource.urls[0])
        fetcher(resource, folder)
    return folder


# ---------------------------------------------------------------- tarball datasets
def _tar_locate(member_dir: str, probe: Callable[[Path], Path | None]) -> Callable[[Path], Path | None]:
    def locate(data_dir: Path) -> Path | None:
        d = data_dir / member_dir
        return probe(d) if d.is_dir() else None

    return locate


def _tar_prepare(name: str, resource: Resource, member_dir: str, probe) -> Callable[..., Path]:
    def prepare(data_dir: Path, download: bool, fetcher: Callable) -> Path:
        archive = data_dir / resource.filename
        if not archive.exists() and not download:
            raise _missing(name, data_dir, f"{member_dir}/ (or {resource.filename})", resource.urls[0])
        fetcher(resource, data_dir)  # verifies an archive that is already there, downloads one that is not
        folder = probe(extract_tar(archive, data_dir, member_dir))
        if folder is None:
            raise DataFileNotFoundError(f"{archive}: extracted {data_dir / member_dir}, but found no {name} files in it")
        return folder

    return prepare


def _specs() -> dict[str, DatasetSpec]:
    return {
        "mnist": DatasetSpec("mnist", "MNIST digits, 60,000 train / 10,000 test, 1x28x28", _mnist_locate,
                             _mnist_prepare, mnist.load_mnist),
        "cifar10": DatasetSpec(
            "cifar10", "CIFAR-10, 50,000 train / 10,000 test, 3x32x32, 10 classes",
            _tar_locate(cifar.CIFAR10_DIR, cifar.cifar10_dir),
            _tar_prepare("cifar10", cifar.CIFAR10, cifar.CIFAR10_DIR, cifar.cifar10_dir), cifar.load_cifar10),
        "cifar100": DatasetSpec(
            "cifar100", "CIFAR-100, 50,000 train / 10,000 test, 3x32x32, 100 fine classes",
            _tar_locate(cifar.CIFAR100_DIR, cifar.cifar100_dir),
            _tar_prepare("cifar100", cifar.CIFAR100, cifar.CIFAR100_DIR, cifar.cifar100_dir), cifar.load_cifar100),
        "stl10": DatasetSpec(
            "stl10", "STL-10, 5,000 train / 8,000 test / 100,000 unlabeled, 3x96x96",
            _tar_locate(stl10.STL10_DIR, stl10.stl10_dir),
            _tar_prepare("stl10", stl10.STL10, stl10.STL10_DIR, stl10.stl10_dir), stl10.load_stl10,
            splits=stl10.SPLITS),
    }


DATASETS = tuple(_specs())


def dataset_names() -> tuple[str, ...]:
    """The names :func:`load_named` accepts."""
    return DATASETS


def load_named(name: str, data_dir: str | Path | None = None, splits: tuple[str, ...] = ("train", "test"), *,
               download: bool = True, fetcher: Callable | None = None) -> dict[str, TensorData]:
    """Read (fetching first when needed and allowed) the named dataset's ``splits``.

    ``fetcher(resource, folder)`` does the downloading (:func:`~.download.fetch`); tests pass one
    that fails so that no network can be touched.
    """
    specs = _specs()
    if name not in specs:
        raise UnknownDatasetError(name, specs)
    spec = specs[name]
    bad = [s for s in splits if s not in spec.splits]
    if bad:
        raise DataError(f"split: expected one of {list(spec.splits)} for {name}, found {bad[0]!r}")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = spec.locate(data_dir)
    if folder is None:
        folder = spec.prepare(data_dir, download, fetcher or fetch)
    return spec.read(folder, tuple(splits))
