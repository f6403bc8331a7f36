"""The per-run summary PNG: which values are drawn, and that a real PNG is written."""

from __future__ import annotations

from PIL import Image

from assignsolve.evaluation.summary import summary_series, write_summary_png

ROWS = [
    {"epoch": 0, "pl_nmi": 0.2, "pl_acc": 0.3, "knn_acc": 0.9, "pl_balance": 0.5},
    {"epoch": 1, "loss": 2.0, "pl_nmi": 0.5, "pl_acc": 0.6, "knn_acc": 0.92, "pl_balance": 0.8,
     "head_acc": float("nan"), "note": "text"},
    {"epoch": 2, "loss": 1.5, "pl_nmi": 0.7, "pl_acc": 0.8, "knn_acc": 0.95, "pl_balance": 0.9},
]


def test_series_take_every_finite_value_at_its_epoch():
    s = summary_series(ROWS)
    assert s["loss"] == {"loss": ([1.0, 2.0], [2.0, 1.5])}  # epoch 0 has no loss
    assert s["NMI"]["pl_nmi"] == ([0.0, 1.0, 2.0], [0.2, 0.5, 0.7])
    assert "head_acc" not in s["accuracy"]  # NaN is not drawn
    assert s["accuracy"]["knn_acc"][1] == [0.9, 0.92, 0.95]
    assert s["cluster balance"]["pl_balance"][1][-1] == 0.9


def test_png_is_written_atomically(tmp_path):
    out = write_summary_png(ROWS, tmp_path / "summary.png", title="swav / sinkhorn-gpu")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1000, 700)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.png"]  # no temporary file left


def test_empty_history_still_draws(tmp_path):
    out = write_summary_png([], tmp_path / "s.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
