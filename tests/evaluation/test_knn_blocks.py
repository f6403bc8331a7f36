"""kNN neighbours in memory-capped blocks (assignsolve/evaluation/knn.py: top_k_similar) against
the full similarity matrix computed here."""

from __future__ import annotations

import pytest
import torch

from assignsolve import metrics as M
from assignsolve.evaluation import knn
from assignsolve.evaluation.knn import top_k_similar, weighted_knn_predict


def _data(n=300, m=70, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("max_bytes", [4, 4 * 64 * 7, 4 * 64 * 50, 1 << 25])  # 1-col .. single block
def test_blocked_top_k_equals_the_full_matrix(max_bytes):
    q, bank = _data()
    v, i = top_k_similar(q, bank, 9, max_bytes=max_bytes)
    ref_v, ref_i = (q @ bank.T).topk(9, dim=1)
    torch.testing.assert_close(v, ref_v, rtol=1e-6, atol=1e-6)  # float32 matmul of other block shapes
    assert torch.equal(i, ref_i)


@pytest.mark.parametrize("max_bytes", [4 * 64 * 7, 1 << 25])
def test_leave_one_out_skips_exactly_the_own_row(max_bytes):
    _, x = _data(n=200)
    sim = x @ x.T
    sim.fill_diagonal_(-float("inf"))
    ref_v, ref_i = sim[50:130].topk(5, dim=1)
    v, i = top_k_similar(x[50:130], x, 5, self_offset=50, max_bytes=max_bytes)
    assert torch.equal(i, ref_i) and not (i == torch.arange(50, 130)[:, None]).any()
    torch.testing.assert_close(v, ref_v, rtol=1e-6, atol=1e-6)  # float32 matmul of other block shapes


def test_knn_accuracy_and_predictions_unchanged_by_tiny_blocks(monkeypatch):
    q, bank = _data(n=400, m=90, d=6, seed=3)
    y = (bank[:, 0] > 0).long() + (bank[:, 1] > 0).long()
    full_acc = M.knn_accuracy(bank, y, k=7)
    full_pred = weighted_knn_predict(bank, y, q, k=7)
    monkeypatch.setattr(knn, "BLOCK_BYTES", 4 * 64 * 5)  # 320 similarities: k = 7 columns x 45 rows a block
    assert knn._block_shape(400, 7, knn.BLOCK_BYTES) == (45, 7)
    assert M.knn_accuracy(bank, y, k=7) == full_acc > 0.5
    assert torch.equal(weighted_knn_predict(bank, y, q, k=7), full_pred)


def test_block_shape_caps_the_similarities_held():
    for n, k in [(10, 3), (1_281_167, 20), (1_281_167, 200), (50_000, 200)]:
        rows, cols = knn._block_shape(n, k, knn.BLOCK_BYTES)
        assert rows * cols * 4 <= knn.BLOCK_BYTES and cols >= min(k, n) and rows >= 1
    assert knn._block_shape(1_281_167, 20, knn.BLOCK_BYTES) == (64, 131072)
