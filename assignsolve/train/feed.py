"""Where the training loop's images come from: :class:`MemoryFeed` (a tensor in memory) or
:class:`StreamFeed` (a :class:`~assignsolve.datasets.streamed.StreamedImages` decoded by a torch
``DataLoader`` with ``--workers`` processes).

The loop asks a feed for two things only, so it does not care where the images live:

- :meth:`batches` ``(index batches)`` -> ``(idx, images)`` for each batch, in the order given
  (the recipe's seeded order: shuffling, repeats and views stay the loop's business);
- :meth:`chunks` ``(lo, hi, chunk)`` -> images ``lo..hi`` in consecutive chunks (the whole-dataset
  passes: SeLa's and DeepCluster's relabelling, evaluation, held-out features).

The images are the same tensors either way (:mod:`assignsolve.datasets.streamed`), and a
stream's ``DataLoader`` draws its worker seed from a generator of its own, never torch's global
one, so a streamed run's augmentations, losses and labels are an in-memory run's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import torch

from ..core.errors import DataError
from ..datasets.streamed import StreamedImages

__all__ = ["MemoryFeed", "StreamFeed", "feed_for"]


class MemoryFeed:
    """Batches sliced from a tensor ``x`` [N, ...] in memory."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batches(self, batches: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in batches:
            yield idx, self.x[idx]

    def chunks(self, lo: int, hi: int, chunk: int) -> Iterator[torch.Tensor]:
        for s in range(lo, hi, chunk):
            yield self.x[s:min(s + chunk, hi)]

    def first(self) -> torch.Tensor:
        return self.x[:1]


class StreamFeed:
    """Batches decoded from disk by a ``DataLoader`` (``workers`` processes; 0: in this one)."""

    def __init__(self, dataset: StreamedImages, workers: int = 0, pin_memory: bool = False):
        self.dataset, self.workers, self.pin_memory = dataset, int(workers), pin_memory

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index_batches: list[list[int]]) -> Iterator[torch.Tensor]:
        from torch.utils.data import DataLoader

        loader = DataLoader(self.dataset, batch_sampler=index_batches, num_workers=self.workers,
                            pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(0),
                            prefetch_factor=2 if self.workers else None)
        try:
            yield from loader
        except DataError as exc:  # a worker's DataError comes back wrapped in its traceback: its own line again
            raise DataError(_original_message(str(exc))) from None

    def batches(self, batches: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(batches)
        yield from zip(batches, self._load([b.tolist() for b in batches]))

    def chunks(self, lo: int, hi: int, chunk: int) -> Iterator[torch.Tensor]:
        yield from self._load([list(range(s, min(s + chunk, hi))) for s in range(lo, hi, chunk)])

    def first(self) -> torch.Tensor:
        return self.dataset[0][None]


def _original_message(text: str) -> str:
    """The worker's own message out of ``Caught DataError in DataLoader worker ... Original Traceback``."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not text.startswith("Caught "):
        return text
    return re.sub(r"^[\w.]*DataError: ", "", lines[-1])


def feed_for(data, workers: int = 0, device: torch.device | None = None) -> MemoryFeed | StreamFeed:
    """The feed of a split: streamed for :class:`StreamedImages`, else its tensor ``x``; a plain tensor works too."""
    if isinstance(data, StreamedImages):
        return StreamFeed(data, workers, pin_memory=device is not None and device.type == "cuda")
    return MemoryFeed(data if isinstance(data, torch.Tensor) else data.x)
