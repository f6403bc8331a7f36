"""benchmarks/learn.py end to end on 200 digits, 1 epoch, 2 solvers (the real ``assignsolve run``)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture()
def tiny_npz(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.random.default_rng(0).permutation(len(d.target))[:200]
    images = np.round(d.images[keep] * 255 / 16).astype(np.uint8)[:, None]  # [200, 1, 8, 8]
    path = tmp_path / "tiny.npz"
    np.savez(path, images=images, labels=d.target[keep].astype(np.int64))
    return path, images, d.target[keep]


@pytest.mark.slow  # two subprocess runs: ~25 s of CPU, over the 10 s budget of a fast test
def test_learn_script_table_on_tiny_digits(tiny_npz, tmp_path, capsys, benchmark_script):
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    path, images, labels = tiny_npz
    bench = benchmark_script("learn")
    out = tmp_path / "runs"
    rc = bench.main(["--data", str(path), "--solvers", "kmeans,sinkhorn-gpu", "--epochs", "1", "--out", str(out),
                     "--json", str(tmp_path / "t.json"), "--", "--encoder-opt", "width=8", "--batch-size", "64",
                     "--hidden-dim", "32", "--proj-dim", "16"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "threads: torch" in printed and "load average after" in printed
    table = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["solver"] for r in table] == ["pixels", "kmeans", "sinkhorn-gpu"]
    # the pixel reference is sklearn's KMeans on the raw pixels, recomputed here independently
    pred = KMeans(10, n_init=10, random_state=0).fit_predict(images.reshape(200, -1) / 255.0)
    assert table[0]["pl_nmi"] == pytest.approx(normalized_mutual_info_score(labels, pred), abs=1e-9)
    for row, recipe in zip(table[1:], ("deepcluster", "swav")):
        assert row["status"] == "ok" and row["epochs"] == 1 and row["recipe"] == recipe
        hist = [json.loads(line) for line in (out / row["solver"] / "metrics.jsonl").read_text().splitlines()]
        assert row["pl_acc"] == hist[-1]["pl_acc"] and row["knn_acc_0"] == hist[0]["knn_acc"]
        assert row["img_per_s"] == pytest.approx(hist[1]["steps"] * 64 / hist[1]["seconds"])
        assert f"| {row['solver']}" in printed


def test_learn_script_refuses_a_missing_file(tmp_path, capsys, benchmark_script):
    assert benchmark_script("learn").main(["--data", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err
    assert "none.npz" in err and "'digits'" in err and err.count("\n") == 1
