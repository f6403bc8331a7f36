"""``assignsolve eval`` and the held-out flags of ``run``, end to end on a small digits file."""

import json

import numpy as np
import pytest

from assignsolve.cli import main
from assignsolve.data import load_digits


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 1-epoch run on 400 digits with 20% held out and the probe every epoch."""
    root = tmp_path_factory.mktemp("evalrun")
    x, y = load_digits("images")
    np.savez(root / "d400.npz", images=x[:400], labels=y[:400])
    out = root / "run"
    rc = main(["run", "--data", str(root / "d400.npz"), "--epochs", "1", "--batch-size", "64", "--holdout", "0.2",
               "--probe-every", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_probes_held_out_split_and_writes_summary(small_run):
    hist = _rows(small_run / "metrics.jsonl")
    assert [r["epoch"] for r in hist] == [0, 1]
    for r in hist:
        assert 0.0 <= r["probe_acc"] <= 1.0 and 0.0 <= r["knn20_acc"] <= 1.0 and 0.0 <= r["knn200_acc"] <= 1.0
    assert (small_run / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((small_run / "config.json").read_text())
    assert cfg["holdout"] == 0.2 and cfg["probe_every"] == 1


def test_eval_reproduces_the_runs_own_probe_numbers(small_run, capsys):
    """The random row is the run's epoch-0 encoder, the trained row its checkpoint: the same features on
    the same split give the probe and kNN numbers the run logged (an end-to-end check of the rebuild,
    the weights_only checkpoint and the split rule)."""
    hist = _rows(small_run / "metrics.jsonl")
    capsys.readouterr()
    assert main(["eval", "--run", str(small_run), "--protocol", "linear", "knn"]) == 0
    cap = capsys.readouterr()
    assert "no test split in" in cap.err and "held-out 20% of it (80 samples" in cap.err
    assert "the run trained on the other 80% only" in cap.err
    lines = cap.out.splitlines()
    assert lines[0].split() == ["encoder", "epoch", "probe_acc", "knn20_acc", "knn200_acc"]
    rows = _rows(small_run / "eval.jsonl")
    assert [r["encoder"] for r in rows] == ["random", "trained"]
    for row, logged in zip(rows, hist):
        for key in ("probe_acc", "knn20_acc", "knn200_acc"):
            assert row[key] == pytest.approx(logged[key], abs=1e-12), key
        assert row["n_test"] == 80 and row["n_train"] == 320
    assert f"{rows[1]['probe_acc']:.4f}" in lines[3]


def test_eval_cluster_protocol_and_append(small_run, capsys):
    before = len(_rows(small_run / "eval.jsonl")) if (small_run / "eval.jsonl").exists() else 0
    assert main(["eval", "--run", str(small_run), "--protocol", "cluster", "--no-random"]) == 0
    rows = _rows(small_run / "eval.jsonl")
    assert len(rows) == before + 1
    new = rows[-1]
    assert new["encoder"] == "trained" and new["protocols"] == ["cluster"]
    for key in ("pl_nmi", "pl_ari", "pl_acc", "head_nmi", "head_acc"):
        assert key in new
    assert 0.1 <= new["pl_acc"] <= 1.0 and 0.0 <= new["pl_nmi"] <= 1.0
    assert "held-out 20%" in new["split"]


def test_eval_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path / "nowhere")]) == 2
    assert "expected a run folder with config.json" in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"data": "digits"}))
    assert main(["eval", "--run", str(tmp_path / "r")]) == 2
    assert "expected a checkpoint at" in capsys.readouterr().err
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "corrupt or truncated" in err and len(err.strip().splitlines()) == 1


def test_run_flags_reach_the_loaders(tmp_path, capsys):
    assert main(["run", "--data", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download",
                 "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mnist" in err and str(tmp_path / "empty") in err
    assert main(["run", "--holdout", "1", "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    assert "holdout: expected a fraction in [0, 1)" in capsys.readouterr().err


def test_eval_jsonl_append_keeps_old_lines(tmp_path):
    from assignsolve.cli.eval import append_jsonl

    path = tmp_path / "eval.jsonl"
    path.write_text('{"a": 1}')  # no final newline
    append_jsonl(path, [{"b": 2}])
    assert _rows(path) == [{"a": 1}, {"b": 2}]
    assert not (tmp_path / "eval.jsonl.tmp").exists()


def test_run_with_test_data_and_wandb_offline(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    x, y = load_digits("images")
    np.save(tmp_path / "tr.npy", x[:150])
    np.save(tmp_path / "trl.npy", y[:150])
    np.savez(tmp_path / "te.npz", images=x[150:200], labels=y[150:200])
    out = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "tr.npy"), "--test-data", str(tmp_path / "te.npz"),
                 "--epochs", "1", "--batch-size", "32", "--probe-every", "1", "--wandb", "--out", str(out),
                 "--no-progress"]) == 2  # a bare .npy has no labels: the probe says so
    assert "expected labels in tr" in capsys.readouterr().err
    np.savez(tmp_path / "tr.npz", images=x[:150], labels=y[:150])
    assert main(["run", "--data", str(tmp_path / "tr.npz"), "--test-data", str(tmp_path / "te.npz"),
                 "--epochs", "1", "--batch-size", "32", "--probe-every", "1", "--wandb", "--out", str(out),
                 "--no-progress"]) == 0
    assert "--probe-every: evaluated on the test split of" in capsys.readouterr().err
    assert (out / "wandb-id.txt").read_text().strip()
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    hist = _rows(out / "metrics.jsonl")
    assert all("probe_acc" in r for r in hist)
    assert main(["eval", "--run", str(out), "--protocol", "knn"]) == 0  # the run's --test-data by default
    rows = _rows(out / "eval.jsonl")
    assert rows[-1]["n_test"] == 50 and rows[-1]["knn20_acc"] == pytest.approx(hist[-1]["knn20_acc"], abs=1e-12)
