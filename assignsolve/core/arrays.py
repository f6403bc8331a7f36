"""Moving between numpy arrays and torch tensors without losing the caller's type.

Solvers compute in torch. A :class:`Family` remembers what the caller gave (numpy or
torch, device, dtype) so results can be handed back in the same family and place.
"""

from __future__ import annotations

from typing import Literal, Union

import attrs
import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@attrs.frozen
class Family:
    """Where an input came from: ``kind`` (numpy/torch), ``device`` and ``dtype``."""

    kind: Literal["numpy", "torch"]
    device: torch.device
    dtype: torch.dtype

    @property
    def result_dtype(self) -> torch.dtype:
        """dtype of soft assignments returned for this input: half types widen to float32."""
        return self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32


def family_of(x: Array) -> Family:
    if isinstance(x, torch.Tensor):
        return Family("torch", x.device, x.dtype)
    return Family("numpy", torch.device("cpu"), torch.from_numpy(np.empty(0, dtype=x.dtype)).dtype)


def as_tensor(x: object, name: str) -> torch.Tensor:
    """``x`` as a torch tensor (zero-copy for numpy); anything else is an error naming ``name``."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"{name}: expected a numeric array, found dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"{name}: expected a numpy.ndarray or torch.Tensor, found {type(x).__name__}"
    )


def to_family(t: torch.Tensor | None, family: Family, dtype: torch.dtype | None = None):
    """Return ``t`` converted to ``family`` (numpy or torch on the family's device)."""
    if t is None:
        return None
    t = t.detach()
    if dtype is not None:
        t = t.to(dtype)
    if family.kind == "numpy":
        return t.cpu().numpy()
    return t.to(family.device)


def is_floating(t: torch.Tensor) -> bool:
    return t.dtype in _FLOAT_DTYPES


def resolve_device(device: str | torch.device | None, default: torch.device) -> torch.device:
    """Resolve a solver's ``device`` setting.

    ``None`` means the input's device; ``"auto"`` means CUDA when available, else the
    input's device; anything else is passed to :class:`torch.device`.
    """
    if device is None:
        return torch.device(default)
    if device == "auto":
        if default.type != "cpu":
            return torch.device(default)
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)
