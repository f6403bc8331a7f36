"""Random state: seeding, saving/restoring every generator, per-epoch generators."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping

import numpy as np
import torch


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _kept_rng(device: torch.device):
    """Evaluation must not change what training draws next (so resume == uninterrupted)."""
    state = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(state, device)


def _epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7919 + salt)
