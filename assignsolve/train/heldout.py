"""Held-out evaluation of an encoder: the split rule, features computed once, the protocols.

Split rule (:func:`stratified_split`): a source with its own test split (a CIFAR test batch,
an ImageFolder ``val/``, a tensor file's ``test`` entry, ``--test-data``) is evaluated on it.
A source without one (``digits``, ``mnist5k.npz``) is split here: in every class, a seeded
permutation (``torch.Generator().manual_seed(seed)``) puts ``round(fraction * n_class)``
samples (at least one of a class with two or more) into the held-out part. ``run --holdout F``
trains on the rest only; otherwise the run saw the held-out samples too (the solver labelled
them, the labels were never used), and every printout says which of the two it was.

Protocols (:func:`protocol_rows`), on features of the frozen encoder computed once per split:
``linear`` (:func:`assignsolve.evaluation.linear_probe`: top-1 on the held-out part),
``knn`` (:func:`assignsolve.evaluation.weighted_knn`, k = 20 and 200, T = 0.07, the train
part as the memory bank) and ``cluster`` (NMI/ARI/Hungarian accuracy of the solver's
pseudo-labels and of the head's argmax on the held-out part).
"""

from __future__ import annotations

import math

import attrs
import torch

from .. import metrics as M
from ..core.errors import TrainError
from ..datasets.tensors import TensorData

__all__ = ["EvalSplits", "eval_splits", "outputs_of", "protocol_rows", "stratified_split"]

PROTOCOLS = ("linear", "knn", "cluster")


def stratified_split(n: int, labels: torch.Tensor | None, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_idx, test_idx)`` (sorted int64) of the rule in the module docstring."""
    if not 0.0 < fraction < 1.0:
        raise TrainError(f"holdout: expected a fraction in (0, 1), found {fraction!r}")
    gen = torch.Generator().manual_seed(int(seed))
    groups = [torch.arange(n)] if labels is None else \
        [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    test = []
    for idx in groups:
        take = int(round(fraction * len(idx)))
        take = max(take, 1) if len(idx) >= 2 else 0
        test.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.cat(test)] = True
    if not mask.any() or mask.all():
        raise TrainError(f"holdout: {n} samples cannot be split into a train and a held-out part")
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()


@attrs.frozen(eq=False)
class EvalSplits:
    """The train part (probe fit, kNN bank), the held-out part, and a line saying what it is."""

    train: TensorData
    test: TensorData
    note: str
    split_here: bool


def eval_splits(splits, source: str, holdout: float = 0.0, seed: int = 0, default_fraction: float = 0.2) -> EvalSplits:
    """The parts to evaluate on from :func:`assignsolve.data.load_splits`' result.

    ``holdout``: the fraction the run held out of training (0: it trained on everything).
    """
    if splits.test is not None:
        return EvalSplits(splits.train, splits.test, f"evaluated on the test split of {source} "
                          f"({len(splits.test)} samples; probe and kNN bank: its {len(splits.train)} train samples)", False)
    frac = holdout or default_fraction
    tr, te = stratified_split(len(splits.train), splits.train.labels, frac, seed)
    pct = f"{100 * frac:g}%"
    seen = (f"the run trained on the other {100 - 100 * frac:g}% only" if holdout else
            "the run trained on all of it, so the solver labelled these samples too (their labels were never used)")
    note = (f"no test split in {source}: evaluated on a held-out {pct} of it ({len(te)} samples, seeded stratified "
            f"split, seed {seed}); {seen}")
    return EvalSplits(splits.train.take(tr, splits.train.name), splits.train.take(te, splits.train.name + "-heldout"),
                      note, True)


@torch.no_grad()
def outputs_of(model, data, device: torch.device, chunk: int = 512, workers: int = 0) -> dict:
    """Eval-mode outputs (float32, on CPU) of ``model`` for every sample of ``data`` (a tensor, a
    :class:`TensorData`, or streamed images decoded by ``workers`` processes), ``chunk`` at a time."""
    from .feed import feed_for

    feed = feed_for(data, workers, device)
    was = model.training
    model.eval()
    parts: dict[str, list] = {}
    try:
        for x in feed.chunks(0, len(feed), chunk):
            out = model(x.to(device))
            for key, value in out.items():
                if key != "amdim":
                    parts.setdefault(key, []).append(value)
    finally:
        model.train(was)
    result = {}
    for key, chunks in parts.items():
        if isinstance(chunks[0], (list, tuple)):  # a list of heads
            result[key] = [torch.cat([c[h] for c in chunks]).float().cpu() for h in range(len(chunks[0]))]
        else:
            result[key] = torch.cat(chunks).float().cpu()
    return result


def _need_labels(data: TensorData, protocol: str) -> torch.Tensor:
    if data.labels is None:
        raise TrainError(f"--protocol {protocol}: expected labels in {data.name}, found none")
    return data.labels


def protocol_rows(protocols, train_out: dict | None, test_out: dict, train: TensorData, test: TensorData,
                  recipe=None, assigner=None, device=None, probe_config=None) -> dict:
    """The metrics of ``protocols`` from cached outputs: ``probe_acc``, ``knn20_acc``/``knn200_acc``,
    ``pl_*``/``head_*`` (cluster; needs the run's ``recipe`` and ``assigner``)."""
    from ..evaluation import linear_probe, weighted_knn

    row: dict = {}
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise TrainError(f"--protocol: expected one of {list(PROTOCOLS)}, found {protocol!r}")
        y_te = _need_labels(test, protocol)
        if protocol == "linear":
            res = linear_probe(train_out["feat"], _need_labels(train, protocol), test_out["feat"], y_te,
                               config=probe_config, device=device)
            row.update(probe_acc=res.test_acc, probe_train_acc=res.train_acc, probe_weight_decay=res.weight_decay,
                       probe_converged=res.converged)
        elif protocol == "knn":
            accs = weighted_knn(train_out["feat"], _need_labels(train, protocol), test_out["feat"], y_te,
                                ks=(20, 200), device=device)
            row.update({f"knn{k}_acc": v for k, v in accs.items()})
        else:
            result = assigner(recipe.eval_problem({k: _to(v, device) for k, v in test_out.items()}))
            pseudo = torch.as_tensor(result.labels).cpu()
            row.update({f"pl_{k}": v for k, v in M.clustering_scores(pseudo, y_te).items()})
            row["pl_converged"] = bool(getattr(result, "converged", True))
            head = recipe.head_labels({k: _to(v, device) for k, v in test_out.items()})
            if head is not None:
                row.update({f"head_{k}": v for k, v in M.clustering_scores(head.cpu(), y_te).items()})
    row["n_train"], row["n_test"] = len(train), len(test)
    return {k: (float(v) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}


def _to(value, device):
    if isinstance(value, (list, tuple)):
        return [v.to(device) for v in value]
    return value.to(device)
