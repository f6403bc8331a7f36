"""Distributed helpers: this process's place in a (possibly single-process) run, row gathers."""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist

from ..core.errors import ConfigError

__all__ = ["Dist", "gather_rows", "init_distributed", "row_offset"]


@attrs.frozen
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_flag == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_flag)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: expected an available device, found {device_flag!r} but CUDA is not available")
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


@torch.no_grad()
def gather_rows(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] over ranks (sizes may differ); identity when not distributed."""
    if not d.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - x.shape[0]
    xp = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    bufs = [torch.empty_like(xp) for _ in range(d.world)]
    dist.all_gather(bufs, xp)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)])


def row_offset(n_local: int, d: Dist, device) -> int:
    if not d.enabled:
        return 0
    sizes = gather_rows(torch.tensor([n_local], device=device), d)
    return int(sizes[: d.rank].sum())
