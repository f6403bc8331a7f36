"""Data sets and the files they come in, one module per concept.

- :mod:`.tensors`: :class:`TensorData` (one split as tensors) and :class:`Splits` (train + test).
- :mod:`.arrays`: ``.npy``/``.npz`` (lazy)/``.pt`` (``weights_only``) files, with split keys.
- :mod:`.imagefolder`: ImageFolder directories, including ``train/`` + ``val/``.
- :mod:`.streamed`: the same folders streamed from disk (a torch ``Dataset``, ``--data-mode``).
- :mod:`.safepickle`: the restricted unpickler for data pickles.
- :mod:`.download`: download-and-verify (checksums, resume, atomic rename).
- :mod:`.mnist`, :mod:`.cifar`, :mod:`.stl10`: the official file formats.
- :mod:`.registry`: ``mnist``, ``cifar10``, ``cifar100``, ``stl10`` by name, under a data folder.

The user-facing entry points are in :mod:`assignsolve.data` (``load_dataset``, ``load_splits``,
``load_features``).
"""

from .registry import DATASETS, default_data_dir, load_named
from .tensors import Splits, TensorData

__all__ = ["DATASETS", "Splits", "TensorData", "default_data_dir", "load_named"]
