"""``assignsolve embed``: a trained run's features, checked against the encoder rebuilt by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def _main(capsys, *args):
    from assignsolve.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from assignsolve.train.config import config_from_args
    from assignsolve.train.loop import run

    out = tmp_path_factory.mktemp("run") / "r"
    run(config_from_args({"data": "digits", "limit": 120, "epochs": 1, "batch_size": 60, "progress": False,
                          "out": str(out), "device": "cpu", "eval_every": 1}))
    return out


def test_embed_writes_the_checkpoints_features_logits_labels(run_dir, tmp_path, capsys):
    from assignsolve.data import load_dataset
    from assignsolve.registry.manager import get_encoder

    out = tmp_path / "emb.npz"
    code, stdout, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(out))
    assert code == 0, err
    saved = np.load(out)
    data = load_dataset("digits")
    assert saved["features"].shape[0] == 1797 and saved["labels"].tolist() == data.labels.tolist()
    # independent reference: the encoder rebuilt by hand from the checkpoint's weights
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    config = json.loads(ckpt["config"])  # format 2: the config as a JSON string
    enc = get_encoder(config["encoder"], tuple(data.input_shape), **config["encoder_opt"])
    enc.load_state_dict(ckpt["encoder"])
    enc.eval()
    with torch.no_grad():
        ref = enc(data.x[:50]).numpy()
    np.testing.assert_allclose(saved["features"][:50], ref, rtol=1e-5, atol=1e-5)
    assert saved["logits"].shape == (1797, 10)
    # refuses to overwrite; the file compare --features reads
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(out))
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    from assignsolve.compare.sources import load_source
    assert load_source(str(out)).x.shape == saved["features"].shape


def test_compare_run_dir_and_bad_checkpoints(run_dir, tmp_path, capsys):
    code, stdout, err = _main(capsys, "compare", "--run", str(run_dir), "--solvers", "kmeans,sinkhorn-pot",
                              "--iters", "3", "--isolation", "inline", "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "r features 1797x" in stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((run_dir / "config.json").read_text())
    torch.save({"config": {}, "encoder": {}, "heads": {}, "evil": torch.nn.Linear(2, 2)}, bad / "checkpoint.pt")
    code, _, err = _main(capsys, "embed", "--run", str(bad), "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "refused to load objects other than tensors" in err and len(err.strip().splitlines()) == 1
    code, _, err = _main(capsys, "embed", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "run folder" in err
