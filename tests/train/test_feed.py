"""A run that streams its ImageFolder from disk (--data-mode stream, --workers) trains exactly as
the in-memory run: the same losses, pseudo-labels, metrics and weights, bit for bit (the images
are the same tensors and the stream draws no random numbers of the run's); bad flags exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from assignsolve import cli
from assignsolve.train.config import TrainConfig
from assignsolve.train.loop import run

METRICS = ("loss", "pl_nmi", "pl_acc", "head_acc", "knn_acc", "probe_acc", "knn20_acc", "batch_balance")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("feed") / "shapes"
    rng = np.random.default_rng(0)
    for c in range(3):  # three classes of noisy 10x10 images with a class-dependent bright stripe
        (root / f"c{c}").mkdir(parents=True)
        for j in range(8):
            a = rng.integers(0, 80, size=(10, 10, 3), dtype=np.uint8)
            a[3 * c:3 * c + 3] += 150
            Image.fromarray(a).save(root / f"c{c}" / f"{j}.png")
    return root


def _run(folder, out, **kw):
    opts = dict(data=str(folder), image_size=8, epochs=2, batch_size=6, out=str(out), progress=False, seed=3,
                eval_every=2)
    result = run(TrainConfig(**{**opts, **kw}))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    return result["history"], ckpt


def _same(a, b):
    (hist_a, ck_a), (hist_b, ck_b) = a, b
    assert len(hist_a) == len(hist_b)
    for ra, rb in zip(hist_a, hist_b):
        assert {k: ra[k] for k in METRICS if k in ra} == {k: rb[k] for k in METRICS if k in rb}
    for name in ("encoder", "heads"):
        assert ck_a[name].keys() == ck_b[name].keys()
        for key, value in ck_a[name].items():
            assert torch.equal(value, ck_b[name][key]), (name, key)
    assert repr(ck_a["recipe"]) == repr(ck_b["recipe"])  # pseudo-labels, queues, centres


@pytest.mark.parametrize("method,solver,workers,extra", [
    ("swav", "sinkhorn-gpu", 2, {}),                                   # per-batch codes, two views, 2 workers
    ("deepcluster", "kmeans", 0, {"holdout": 0.25, "probe_every": 1}),  # whole-dataset pass each epoch + probe
    ("sela", "sinkhorn-pot", 1, {"limit": 20}),                         # whole-dataset relabelling, --limit
])
def test_streamed_run_equals_in_memory_run(folder, tmp_path, capsys, method, solver, workers, extra):
    mem = _run(folder, tmp_path / "mem", method=method, solver=solver, data_mode="memory", **extra)
    assert "data in memory" in capsys.readouterr().err
    got = _run(folder, tmp_path / "stream", method=method, solver=solver, data_mode="stream", workers=workers, **extra)
    n = extra.get("limit") or (18 if "holdout" in extra else 24)
    assert (f"data streamed from disk: {n} images of 3x8x8, {workers} loader workers (--data-mode stream)"
            in capsys.readouterr().err)
    _same(mem, got)
    assert np.isfinite(mem[0][-1]["loss"]) and mem[0][-1]["loss"] != mem[0][1]["loss"]  # it trained


def test_resume_in_the_other_mode_continues_the_same_run(folder, tmp_path):
    opts = dict(method="swav", solver="sinkhorn-gpu", eval_every=1)  # the interrupted run evaluates epoch 1
    whole = _run(folder, tmp_path / "whole", data_mode="memory", **opts)
    _run(folder, tmp_path / "split", data_mode="stream", epochs=1, **opts)
    resumed = _run(folder, tmp_path / "split", data_mode="memory", resume=True, **opts)
    _same(whole, resumed)


@pytest.mark.parametrize("argv,message", [
    (["run", "--data-mode", "disk"], "data_mode: expected one of ['auto', 'memory', 'stream'], found 'disk'"),
    (["run", "--workers", "-1"], "workers: expected an int >= 0, found -1"),
    (["run", "--data", "digits", "--data-mode", "stream"], "'stream' reads ImageFolder directories only"),
    (["eval", "--run", "nowhere", "--data-mode", "disk"], "--data-mode: expected one of ['auto', 'memory', 'stream']"),
    (["embed", "--run", "nowhere", "--out", "f.npz", "--workers", "-2"], "--workers: expected an int >= 0, found -2"),
])
def test_bad_data_flags_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    extra = ["--out", str(tmp_path / "o"), "--no-progress", "--epochs", "1"] if argv[0] == "run" else []
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_eval_and_embed_stream_the_same_numbers(folder, tmp_path, capsys):
    out = tmp_path / "run"
    _run(folder, out, method="swav", solver="sinkhorn-gpu", data_mode="memory", epochs=1, holdout=0.25)
    rows = {}
    for mode, workers in (("memory", "0"), ("stream", "2")):
        assert cli.main(["eval", "--run", str(out), "--data-mode", mode, "--workers", workers,
                         "--protocol", "knn", "--no-random"]) == 0  # probe and solver see the same features
        assert cli.main(["embed", "--run", str(out), "--out", str(tmp_path / f"{mode}.npz"),
                         "--data-mode", mode, "--workers", workers]) == 0
        rows[mode] = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()][-1:]
    capsys.readouterr()
    keys = ("knn20_acc", "knn200_acc", "n_train", "n_test")
    assert [{k: r[k] for k in keys} for r in rows["memory"]] == [{k: r[k] for k in keys} for r in rows["stream"]]
    assert rows["stream"][0]["n_test"] == 6 and rows["stream"][0]["n_train"] == 18
    mem, got = np.load(tmp_path / "memory.npz"), np.load(tmp_path / "stream.npz")
    assert mem["features"].shape == (24, 256)
    for key in ("features", "logits", "labels"):
        np.testing.assert_array_equal(mem[key], got[key])


@pytest.mark.slow
def test_two_process_ddp_run_streamed_equals_in_memory(folder, tmp_path):
    """torchrun, 2 gloo processes: each rank streams its DistributedSampler share and its evaluation shard."""
    import os
    import subprocess
    import sys

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    ckpts = {}
    for mode, workers in (("memory", "0"), ("stream", "1")):
        out = tmp_path / mode
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "assignsolve", "run", "--data", str(folder), "--image-size", "8", "--epochs", "2",
               "--batch-size", "6", "--method", "deepcluster", "--solver", "kmeans", "--encoder-opt", "width=8",
               "--no-progress", "--device", "cpu", "--data-mode", mode, "--workers", workers, "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        ckpts[mode] = (rows, torch.load(out / "checkpoint.pt", weights_only=True))
    assert "data streamed from disk: 24 images" in proc.stderr
    assert ckpts["memory"][0][-1]["steps"] == 2  # 12 samples per rank, batch 6
    _same(ckpts["memory"], ckpts["stream"])
