"""ImageFolder splits streamed from disk: :class:`StreamedImages`, a torch ``Dataset`` that
decodes one image per item, so a folder of any size trains without its pixels in memory.

The file list and the labels are :func:`~.imagefolder.list_image_folder`'s, each image is read by
:func:`~.imagefolder.read_image` and converted by :func:`~.imagefolder.to_tensor`: the same
functions the in-memory loader uses, so item ``i`` equals ``load_image_folder(root, size).x[i]``
bit for bit. Paths are kept as one numpy byte-string array (no Python object per file, so
DataLoader worker processes do not copy the list page by page as they touch refcounts).

:func:`choose_mode` resolves ``--data-mode``: ``memory`` reads the folder into a tensor,
``stream`` streams it, ``auto`` streams an ImageFolder whose float32 tensor would exceed
:data:`STREAM_THRESHOLD` bytes (1 GiB). Without ``image_size`` every image must have the first
one's size; a streamed folder finds a different one when it reaches it (a :class:`DataError`
naming the file, like the in-memory loader's).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import DataError
from .imagefolder import check_same_size, list_image_folder, load_image_folder_splits, read_image, to_tensor
from .tensors import count_classes

__all__ = ["DATA_MODES", "STREAM_THRESHOLD", "StreamedImages", "choose_mode", "memory_bytes", "mode_note",
           "stream_image_folder", "stream_image_folder_splits"]

DATA_MODES = ("auto", "memory", "stream")
#: ``--data-mode auto`` streams an ImageFolder whose float32 tensor would be larger than this
STREAM_THRESHOLD = 1 << 30


@attrs.frozen(eq=False)
class StreamedImages(Dataset):
    """One ImageFolder split read image by image: ``self[i]`` is float32 [C, H, W] in [0, 1].

    Attributes mirror :class:`~.tensors.TensorData` (``labels``, ``name``, ``classes``,
    ``input_shape``, ``len``) except ``x``: the pixels are never all in memory.
    """

    root: str
    files: np.ndarray  # byte strings, relative to root
    labels: torch.Tensor | None
    name: str
    classes: tuple[str, ...] | None
    image_size: int | None
    shape: tuple[int, int, int]  # (C, H, W) of every item

    def __len__(self) -> int:
        return int(self.files.shape[0])

    def __getitem__(self, i) -> torch.Tensor:
        path = Path(self.root) / self.files[int(i)].decode()
        a = read_image(path, self.image_size)
        c, h, w = self.shape
        if a.shape != (h, w, c):  # the error names the first file; not built for every item
            check_same_size(path, a, (h, w, c), Path(self.root) / self.files[0].decode())
        return to_tensor(a[None].copy())[0]  # Pillow's array is read-only

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)

    @property
    def is_image(self) -> bool:
        return True

    @property
    def n_classes(self) -> int | None:
        return count_classes(self.labels, self.classes)

    def take(self, idx: torch.Tensor, name: str | None = None) -> "StreamedImages":
        """The items ``idx`` (in that order), still streamed."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return attrs.evolve(self, files=self.files[idx.numpy()], name=name or self.name,
                            labels=None if self.labels is None else self.labels[idx])


def stream_image_folder(root: Path, image_size: int | None, classes: tuple[str, ...] | None = None,
                        name: str | None = None) -> StreamedImages:
    """:func:`~.imagefolder.load_image_folder`'s split, streamed (only the first image is read now)."""
    root = Path(root)
    items, classes = list_image_folder(root, classes)
    files = np.array([str(f.relative_to(root)).encode() for f, _ in items], dtype=np.bytes_)
    h, w, c = read_image(items[0][0], image_size).shape
    labels = torch.tensor([label for _, label in items], dtype=torch.int64) if classes is not None else None
    return StreamedImages(str(root), files, labels, name or root.name, classes, image_size, (c, h, w))


def stream_image_folder_splits(root: Path, image_size: int | None, splits: tuple[str, ...]) -> dict:
    """``{"train": ..., "test": ...}`` of ``root/train`` and ``root/val`` (or ``test/``), streamed."""
    return load_image_folder_splits(root, image_size, splits, reader=stream_image_folder)


def memory_bytes(data) -> int:
    """Bytes the split's float32 samples take (or would take) in memory."""
    return len(data) * int(np.prod(data.input_shape)) * 4


def choose_mode(mode: str, data: StreamedImages | None) -> str:
    """``"memory"`` or ``"stream"`` for ``--data-mode`` ``mode``; ``data``: the source streamed
    (None: not an ImageFolder, which only ``memory`` reads)."""
    if mode not in DATA_MODES:
        raise DataError(f"data_mode: expected one of {list(DATA_MODES)}, found {mode!r}")
    if data is None:
        if mode == "stream":
            raise DataError("data_mode: 'stream' reads ImageFolder directories only; this source is read into "
                            "memory (use --data-mode auto or memory)")
        return "memory"
    if mode == "auto":
        return "stream" if memory_bytes(data) > STREAM_THRESHOLD else "memory"
    return mode


def mode_note(data, mode: str, workers: int, folder: bool = True) -> str:
    """The run log's line: where the samples live, and why (``mode``: the ``--data-mode`` given;
    ``folder``: the source is an ImageFolder, so ``auto`` chose by size)."""
    mib = memory_bytes(data) / 2**20
    shape = "x".join(str(s) for s in data.input_shape)
    if isinstance(data, StreamedImages):
        why = (f"{mib:.0f} MiB as float32 > the {STREAM_THRESHOLD >> 20} MiB threshold of --data-mode auto"
               if mode == "auto" else "--data-mode stream")
        return f"data streamed from disk: {len(data)} images of {shape}, {workers} loader workers ({why})"
    why = f", under the {STREAM_THRESHOLD >> 20} MiB streaming threshold" if mode == "auto" and folder else ""
    return f"data in memory: {len(data)} samples of {shape}, {mib:.1f} MiB as float32{why}"
