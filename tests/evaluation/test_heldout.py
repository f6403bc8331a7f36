"""The held-out split rule, checkpoints readable with weights_only=True, the protocols' numbers."""

import random

import numpy as np
import pytest
import torch

from assignsolve.core.errors import TrainError
from assignsolve.data import load_splits
from assignsolve.train.heldout import eval_splits, protocol_rows, stratified_split
from assignsolve.train.rng import _rng_state, _set_rng_state


def test_stratified_split_takes_round_fraction_of_every_class_seeded():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 2 + [3] * 1)
    tr, te = stratified_split(len(y), y, 0.2, seed=3)
    # per class round(0.2 n_c), at least one of a class with >= 2, none of a singleton
    assert torch.bincount(y[te], minlength=4).tolist() == [2, 1, 1, 0]
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(len(y)))
    assert len(set(tr.tolist()) & set(te.tolist())) == 0
    tr2, te2 = stratified_split(len(y), y, 0.2, seed=3)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    draws = {tuple(stratified_split(len(y), y, 0.2, seed=s)[1].tolist()) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(TrainError, match="holdout: expected a fraction in"):
        stratified_split(10, None, 1.0, 0)


def test_digits_has_no_test_split_and_the_note_says_what_was_held_out():
    splits = load_splits("digits")
    assert splits.test is None
    parts = eval_splits(splits, "digits", holdout=0.0, seed=0)
    counts = np.bincount(splits.train.labels.numpy())
    assert len(parts.test) == int(sum(round(0.2 * c) for c in counts)) == 359
    assert len(parts.train) + len(parts.test) == 1797
    assert parts.note.startswith("no test split in digits: evaluated on a held-out 20% of it (359 samples")
    assert "the solver labelled these samples too" in parts.note
    held = eval_splits(splits, "digits", holdout=0.25, seed=0)
    assert len(held.test) == int(sum(round(0.25 * c) for c in counts))
    assert "the run trained on the other 75% only" in held.note


def test_source_with_test_split_is_evaluated_on_it(tmp_path):
    x = np.random.default_rng(0).random((30, 1, 4, 4), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x_train=x[:20], y_train=np.arange(20) % 2, x_test=x[20:], y_test=np.arange(10) % 2)
    parts = eval_splits(load_splits(tmp_path / "d.npz"), "d.npz", holdout=0.2)
    assert not parts.split_here and len(parts.test) == 10 and len(parts.train) == 20
    assert parts.note.startswith("evaluated on the test split of d.npz (10 samples")


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    state = _rng_state(torch.device("cpu"))
    want = (np.random.rand(3).tolist(), random.random(), torch.rand(2).tolist())
    torch.save({"rng": state}, tmp_path / "c.pt")
    _set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"], torch.device("cpu"))
    assert (np.random.rand(3).tolist(), random.random(), torch.rand(2).tolist()) == want


def test_protocol_rows_against_sklearn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier

    from assignsolve.datasets.tensors import TensorData

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 5, generator=g) * 3
    ytr, yte = torch.arange(60) % 3, torch.arange(30) % 3
    ftr, fte = centres[ytr] + torch.randn(60, 5, generator=g), centres[yte] + torch.randn(30, 5, generator=g)
    train, test = TensorData(ftr, ytr, "tr"), TensorData(fte, yte, "te")

    class Head:  # the head's argmax is the labels we score; the "solver" returns fixed labels
        def eval_problem(self, outs):
            return outs["proto"]

        def head_labels(self, outs):
            return outs["proto"].argmax(1)

    class Fixed:
        def __call__(self, scores):
            return type("R", (), {"labels": (scores[:, 0] > 0).long(), "converged": True})()

    proto = torch.randn(30, 3, generator=g)
    row = protocol_rows(("knn", "cluster"), {"feat": ftr}, {"feat": fte, "proto": proto}, train, test,
                        recipe=Head(), assigner=Fixed(), device="cpu")
    assert row["head_nmi"] == pytest.approx(normalized_mutual_info_score(yte, proto.argmax(1)))
    assert row["head_ari"] == pytest.approx(adjusted_rand_score(yte, proto.argmax(1)))
    assert row["pl_nmi"] == pytest.approx(normalized_mutual_info_score(yte, (proto[:, 0] > 0).long()))
    # weighted kNN with k = 200 >= N: every bank sample votes; k=20 close to sklearn's cosine 20-NN
    nn = KNeighborsClassifier(20, metric="cosine").fit(ftr, ytr)
    assert abs(row["knn20_acc"] - nn.score(fte, yte)) <= 0.1
    assert row["n_train"] == 60 and row["n_test"] == 30
    with pytest.raises(TrainError, match="expected labels in nolab"):
        protocol_rows(("linear",), {"feat": ftr}, {"feat": fte}, train, TensorData(fte, None, "nolab"))
