r"""Sampling training examples uniformly over pseudo-labels (DeepCluster).

k-means pseudo-labels are very unbalanced; DeepCluster (Caron et al., ECCV 2018,
https://arxiv.org/abs/1807.05520, Sec. 3.3 "Avoiding trivial solutions", and
facebookresearch/deepcluster ``util.py: UnifLabelSampler``) therefore samples each epoch's
images from a uniform distribution over the pseudo-labels, then uniformly within the chosen
label. Concretely, with :math:`L` non-empty labels and :math:`M` samples per epoch, each label
gets :math:`q = \lfloor M / L \rfloor + 1` draws (without replacement when the label has at
least :math:`q` members, with replacement otherwise), the :math:`qL` indices are shuffled and
the first :math:`M` kept. So every label receives :math:`M/L` draws up to the truncation, and
within a label every member is equally likely.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from .core.arrays import as_tensor

__all__ = ["UniformLabelSampler", "uniform_label_indices"]


@torch.no_grad()
def uniform_label_indices(labels: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    r"""One epoch of indices drawn uniformly over non-empty labels, then uniformly within.

    .. math:: P(\text{index } i) = \frac{1}{L} \cdot \frac{1}{|\{j : y_j = y_i\}|}

    (in expectation; per-label counts are exactly :math:`q` before the final truncation to
    ``num_samples``).

    Parameters
    ----------
    labels : torch.Tensor [N] int64
        Pseudo-labels (any non-negative integers; empty labels are skipped).
    num_samples : int
        ``M``, number of indices returned.
    generator : torch.Generator
        CPU generator.

    Returns
    -------
    torch.Tensor [M] int64
        Indices into ``labels``.
    """
    labels = labels.detach().to("cpu", torch.int64)
    n = labels.shape[0]
    # Group members by label in a random order within each group: sort by a random key,
    # then stably by label.
    key_order = torch.randperm(n, generator=generator)
    by_label = key_order[torch.sort(labels[key_order], stable=True).indices]
    present, sizes = torch.unique_consecutive(labels[by_label], return_counts=True)
    n_labels = present.shape[0]
    starts = torch.cumsum(sizes, 0) - sizes
    per_label = num_samples // n_labels + 1
    offsets = torch.arange(per_label).expand(n_labels, per_label)
    with_repl = (torch.rand((n_labels, per_label), generator=generator, dtype=torch.float64)
                 * sizes[:, None]).floor().to(torch.int64).clamp_max(sizes[:, None] - 1)
    # Without replacement whenever the label has enough members (DeepCluster's util.py also
    # replaces when len == q, which is not needed).
    pos = torch.where((sizes >= per_label)[:, None], offsets, with_repl)
    picked = by_label[(starts[:, None] + pos).flatten()]
    shuffled = picked[torch.randperm(picked.shape[0], generator=generator)]
    return shuffled[:num_samples]


class UniformLabelSampler(Sampler[int]):
    """A ``torch.utils.data.Sampler`` over dataset indices, uniform over pseudo-labels.

    Each ``iter()`` draws a fresh epoch with :func:`uniform_label_indices` from one generator
    seeded once with ``seed``, so successive epochs differ but a run is reproducible.

    Parameters
    ----------
    labels : array [N] of int
        Pseudo-labels of the dataset (numpy or torch, any device).
    num_samples : int, optional
        Indices per epoch (``N`` when omitted, as DeepCluster's ``len(dataset)``).
    seed : int or None
        Generator seed (None: fresh randomness).
    """

    def __init__(self, labels, num_samples: int | None = None, seed: int | None = 0) -> None:
        t = as_tensor(np.asarray(labels) if isinstance(labels, (list, tuple)) else labels, "labels")
        if t.ndim != 1 or t.shape[0] == 0:
            raise ValueError(f"labels: expected a non-empty 1-D array [N], found shape {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"labels: expected an integer dtype, found {t.dtype}")
        t = t.detach().to("cpu", torch.int64)
        if bool((t < 0).any()):
            raise ValueError(f"labels: expected non-negative integers, found minimum {int(t.min())}")
        if num_samples is None:
            num_samples = int(t.shape[0])
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples: expected an int >= 1, found {num_samples!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed: expected None or an int, found {seed!r}")
        self.labels = t
        self.num_samples = int(num_samples)
        self.seed = seed
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def __iter__(self) -> Iterator[int]:
        return iter(uniform_label_indices(self.labels, self.num_samples, self.generator).tolist())

    def __len__(self) -> int:
        return self.num_samples
