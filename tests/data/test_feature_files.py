"""Feature-file loaders on small files the tests write."""

import numpy as np
import pytest
import torch

from assignsolve.data import load_digits, load_features


def test_digits_is_the_real_bundled_set():
    x, y = load_digits()
    assert x.shape == (1797, 64) and y.shape == (1797,) and set(y.tolist()) == set(range(10))
    assert x.min() == 0.0 and x.max() == 1.0
    assert load_digits("images")[0].shape == (1797, 1, 8, 8)
    fs = load_features("digits")
    assert fs.name == "digits" and np.array_equal(fs.labels, y)


def test_npy_npz_pt_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.integers(0, 4, 20)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "f.npz", features=x, labels=y)
    torch.save({"features": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp_path / "f.pt")
    torch.save(torch.from_numpy(x), tmp_path / "plain.pt")
    a = load_features(tmp_path / "f.npy", labels=tmp_path / "y.npy")
    for fs in (a, load_features(tmp_path / "f.npz"), load_features(tmp_path / "f.pt")):
        np.testing.assert_array_equal(fs.x, x)
        np.testing.assert_array_equal(fs.labels, y)
    assert load_features(tmp_path / "plain.pt").labels is None


def test_feature_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_features(tmp_path / "missing.npy")
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="expected a .npy, .npz or .pt file"):
        load_features(tmp_path / "f.csv")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"expected a numeric \[N, D\] array, found shape \(2, 2, 2\)"):
        load_features(tmp_path / "cube.npy")
    np.save(tmp_path / "f.npy", np.zeros((4, 2)))
    np.save(tmp_path / "y.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(4,\)"):
        load_features(tmp_path / "f.npy", labels=tmp_path / "y.npy")
    np.savez(tmp_path / "bad.npz", data=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"expected a key among \['features', 'x', 'embeddings'\], found keys \['data'\]"):
        load_features(tmp_path / "bad.npz")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="broken.pt: expected a tensor or a dict of tensors saved with torch.save"):
        load_features(tmp_path / "broken.pt")
