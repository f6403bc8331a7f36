"""The in-memory containers every loader returns, and the checks that turn raw arrays into them.

- :class:`TensorData`: one split as torch tensors (images [N, C, H, W] float32 in [0, 1], or
  features [N, D]) with optional int64 labels.
- :class:`Splits`: the ``train`` split (what the solver labels and the encoder trains on) and the
  held-out ``test`` split (None when the source has none).
- :func:`as_images_or_features` / :func:`as_labels`: validate a raw numpy array or tensor and
  convert it, raising :class:`~assignsolve.errors.DataError` with one line naming where it came
  from and what was expected.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from ..core.errors import DataError

__all__ = ["Splits", "TensorData", "as_images_or_features", "as_labels", "concat", "count_classes"]


def count_classes(labels: torch.Tensor | None, classes: tuple[str, ...] | None) -> int | None:
    """Number of ground-truth classes of a split: max label + 1, or ``len(classes)`` when larger;
    None without labels (:class:`TensorData` and the streamed splits)."""
    if labels is None:
        return None
    return max(int(labels.max()) + 1 if len(labels) else 0, len(classes or ()))


@attrs.frozen(eq=False)
class TensorData:
    """A data split as torch tensors.

    Attributes
    ----------
    x : Tensor [N, C, H, W] or [N, D]
        float32 images in [0, 1], or feature vectors.
    labels : Tensor [N] int64 or None
        Ground-truth classes, used only for evaluation.
    name : str
        Short name for logs ("digits", a directory or file stem, "cifar10-test").
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
        return count_classes(self.labels, self.classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, idx: torch.Tensor, name: str | None = None) -> "TensorData":
        """The samples ``idx`` (in that order), as a new split (the streamed splits have the same method)."""
        return attrs.evolve(self, x=self.x[idx], labels=None if self.labels is None else self.labels[idx],
                            name=name or self.name)


@attrs.frozen(eq=False)
class Splits:
    """A dataset's ``train`` split and its held-out ``test`` split (None when there is none).

    ``test`` has the same sample shape as ``train``; its labels index the same classes.
    """

    train: TensorData
    test: TensorData | None = None

    def __attrs_post_init__(self) -> None:
        if self.test is not None and self.test.input_shape != self.train.input_shape:
            raise DataError(f"{self.test.name}: expected test samples shaped like the training samples "
                            f"{list(self.train.input_shape)}, found {list(self.test.input_shape)}")


def concat(a: TensorData, b: TensorData, name: str) -> TensorData:
    """``a`` followed by ``b`` (labels kept only when both have them)."""
    if a.input_shape != b.input_shape:
        raise DataError(f"{b.name}: expected samples shaped {list(a.input_shape)} like {a.name}, found {list(b.input_shape)}")
    labels = None if a.labels is None or b.labels is None else torch.cat([a.labels, b.labels])
    return TensorData(torch.cat([a.x, b.x]), labels, name, a.classes)


def _tensor(value, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected a numeric array, found dtype {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    elif not arr.flags.writeable:  # np.frombuffer, a read-only memmap: torch wants its own copy
        arr = arr.copy()
    try:
        return torch.from_numpy(np.ascontiguousarray(arr))
    except TypeError as exc:  # a numpy dtype torch has no equivalent for
        raise DataError(f"{where}: expected a numeric array torch can hold, found dtype {arr.dtype} ({exc})") from None


def as_images_or_features(value, where: str) -> torch.Tensor:
    """float32 images [N, C, H, W] in [0, 1] or features [N, D] from a raw array.

    Images: uint8 (0..255, divided by 255) or float already in [0, 1]; [N, H, W] is grayscale,
    [N, H, W, 1|3] channels-last. Features: any real dtype, finite. Anything else raises
    :class:`DataError` ``"{where}: expected ..., found ..."``.
    """
    x = _tensor(value, where)
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{where}: expected uint8 or float images, or numeric features, found dtype {x.dtype}")
    if x.dim() not in (2, 3, 4):
        raise DataError(f"{where}: expected images [N, C, H, W] (or [N, H, W]) or features [N, D], "
                        f"found shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: expected at least one sample, found shape {list(x.shape)}")
    if x.dim() == 2:  # features [N, D], any real dtype
        x = x.float()
        if not torch.isfinite(x).all():
            raise DataError(f"{where}: expected finite features, found NaN or inf")
        return x.contiguous()
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        hint = "; convert 16-bit images to uint8 or to float in [0, 1]" if x.dtype in (torch.uint16, torch.int16) else ""
        raise DataError(f"{where}: expected uint8 (0..255) or float ([0, 1]) images, found dtype {x.dtype}{hint}")
    if x.dim() == 3:  # [N, H, W] grayscale
        x = x[:, None]
    elif x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):  # channels-last [N, H, W, C]
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0).contiguous()
    x = x.float().contiguous()
    finite = torch.isfinite(x)
    if not finite.all():
        n_bad = int((~finite).sum())
        raise DataError(f"{where}: expected float images in [0, 1], found {n_bad} NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise DataError(f"{where}: expected float images in [0, 1] (or uint8 0..255), found values in [{lo:.4g}, {hi:.4g}]")
    return x


def as_labels(value, n: int, where: str) -> torch.Tensor:
    """int64 labels [n] from a raw integer array; anything else raises :class:`DataError`."""
    y = _tensor(value, where) if not isinstance(value, (list, tuple)) else torch.as_tensor(value)
    if tuple(y.shape) != (n,) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{where}: expected integer labels of shape ({n},), found shape {tuple(y.shape)} "
                        f"dtype {str(y.dtype).replace('torch.', '')}")
    y = y.to(torch.int64)
    if n and int(y.min()) < 0:
        raise DataError(f"{where}: expected labels >= 0, found {int(y.min())}")
    return y
