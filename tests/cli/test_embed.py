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


def _digits_run(tmp_path, name, **opts):
    """A one-epoch run on 120 of the digits, in ``tmp_path / name``."""
    from assignsolve.train.config import config_from_args
    from assignsolve.train.loop import run

    out = tmp_path / name
    run(config_from_args({"data": "digits", "limit": 120, "epochs": 1, "batch_size": 60, "progress": False,
                          "out": str(out), "device": "cpu", **opts}))
    return out


def _encoder_features(ckpt, data, n):
    """Independent reference: the encoder rebuilt by hand from the checkpoint's weights, on the
    first ``n`` images; and the checkpoint's config (format 2: a JSON string)."""
    from assignsolve.registry.manager import get_encoder

    config = json.loads(ckpt["config"])
    enc = get_encoder(config["encoder"], tuple(data.input_shape), **config["encoder_opt"])
    enc.load_state_dict(ckpt["encoder"])
    enc.eval()
    with torch.no_grad():
        return enc(data.x[:n]), config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _digits_run(tmp_path_factory.mktemp("run"), "r", eval_every=1)


def test_embed_writes_the_checkpoints_features_logits_labels(run_dir, tmp_path, capsys):
    from assignsolve.data import load_dataset

    out = tmp_path / "emb.npz"
    code, stdout, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(out))
    assert code == 0, err
    saved = np.load(out)
    data = load_dataset("digits")
    assert saved["features"].shape[0] == 1797 and saved["labels"].tolist() == data.labels.tolist()
    ref, _ = _encoder_features(torch.load(run_dir / "checkpoint.pt", weights_only=True), data, 50)
    np.testing.assert_allclose(saved["features"][:50], ref.numpy(), rtol=1e-5, atol=1e-5)
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


def test_a_saved_run_is_rebuilt_with_the_heads_it_had_not_todays_default(tmp_path):
    # config.json records n_heads_used: a run made when the recipe's default was 2 heads (here:
    # --n-heads 2, then the flag erased as if it had been the default) is rebuilt with 2, and
    # without that record the rebuilt model (1 head) does not fit and is refused
    from assignsolve.core.errors import TrainError
    from assignsolve.train.config import config_from_args
    from assignsolve.train.loop import run
    from assignsolve.train.saved import load_run

    out = tmp_path / "r"
    run(config_from_args({"data": "digits", "limit": 60, "epochs": 1, "batch_size": 30, "progress": False,
                          "out": str(out), "device": "cpu", "solver": "sinkhorn-pot", "n_heads": 2}))
    path = out / "config.json"
    config = json.loads(path.read_text())
    assert config["n_heads_used"] == 2
    config["n_heads"] = None
    path.write_text(json.dumps(config))
    saved = load_run(out, (1, 8, 8), 60, torch.device("cpu"))
    assert saved.cfg.n_heads == 2 and len(saved.trained.model.heads["cluster"].heads) == 2
    del config["n_heads_used"]
    path.write_text(json.dumps(config))
    with pytest.raises(TrainError, match="expected the encoder/heads/recipe state"):
        load_run(out, (1, 8, 8), 60, torch.device("cpu"))


def test_embed_writes_the_sub_head_sela_reads_out(tmp_path, capsys):
    # SeLa reads out its lowest-loss sub-head (best_head, checkpointed); embed writes that head's
    # logits, W_j h + b_j computed here from the checkpoint's weights, not the first head's
    from assignsolve.data import load_dataset

    run_dir = _digits_run(tmp_path, "sela", solver="sinkhorn-pot", n_heads=3)
    path = run_dir / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["recipe"]["best_head"] = 1
    torch.save(ckpt, path)
    out = tmp_path / "emb.npz"
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(out))
    assert code == 0, err
    feat, config = _encoder_features(ckpt, load_dataset("digits"), 50)
    assert config["head_bn"] is None  # SeLa's heads read the features as they are (default 'off')
    heads = {j: feat @ ckpt["heads"][f"cluster.heads.{j}.weight"].T + ckpt["heads"][f"cluster.heads.{j}.bias"]
             for j in (0, 1)}
    logits = np.load(out)["logits"][:50]
    np.testing.assert_allclose(logits, heads[1].numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(logits - heads[0].numpy()).max() > 1e-3


def test_embed_writes_cokes_classifier_scores(tmp_path, capsys):
    # CoKe's read-out: the predictor's output, unit rows, against the first clustering's previous
    # centres, over the temperature; the heads rebuilt here from the checkpoint by hand
    from assignsolve.data import load_dataset
    from assignsolve.heads import ProjectionHead

    run_dir = _digits_run(tmp_path, "coke", solver="coke")
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    out = tmp_path / "emb.npz"
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(out))
    assert code == 0, err
    feat, config = _encoder_features(ckpt, load_dataset("digits"), 50)
    d, hidden = config["proj_dim"], config["hidden_dim"]
    heads = torch.nn.ModuleDict({"proj": ProjectionHead(feat.shape[1], hidden, d, out_bn=True),
                                 "pred": ProjectionHead(d, hidden, d)})
    heads.load_state_dict(ckpt["heads"])
    heads.eval()
    with torch.no_grad():
        pred = heads["pred"](heads["proj"](feat))
    centres = ckpt["recipe"]["banks"][0]["previous_centres"]
    ref = torch.nn.functional.normalize(pred, dim=1) @ centres.T / config["temperature_used"]
    logits = np.load(out)["logits"]
    assert logits.shape == (1797, 10)
    np.testing.assert_allclose(logits[:50], ref.numpy(), rtol=1e-4, atol=1e-4)
    # the temperature the run trained with (temperature_used), not today's default
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "temperature_used": config["temperature_used"] / 2}))
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(tmp_path / "t.npz"))
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "t.npz")["logits"], 2 * logits, rtol=1e-5, atol=1e-5)
    path.write_text(json.dumps(config))
    # the bank holds one label per trained sample (120, --limit), recorded as n_samples_used (since
    # 2026-12-07) in config.json and the checkpoint's config; an older run resumed since has it in
    # the checkpoint only, and loads; one with neither does not fit 1,797 and is refused
    assert config["n_samples_used"] == 120
    del config["n_samples_used"]
    path.write_text(json.dumps(config))
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(tmp_path / "resumed.npz"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npz")["logits"], logits)
    saved = json.loads(ckpt["config"])
    del saved["n_samples_used"]
    torch.save({**ckpt, "config": json.dumps(saved)}, run_dir / "checkpoint.pt")
    code, _, err = _main(capsys, "embed", "--run", str(run_dir), "--out", str(tmp_path / "old.npz"))
    assert code == 2 and "recipe state" in err and "for 1797 samples" in err and len(err.strip().splitlines()) == 1
