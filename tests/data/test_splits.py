"""Train/test splits from every kind of source (load_splits / load_dataset(split=...))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from assignsolve.data import load_dataset, load_splits
from assignsolve.core.errors import DataError

RNG = np.random.default_rng(5)
IMAGES = RNG.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
LABELS = np.arange(10) % 3


def as_u8(t: torch.Tensor) -> np.ndarray:
    return (t * 255).round().numpy().astype(np.uint8)


def test_npz_split_array_of_strings_bools_and_ints(tmp_path):
    test_rows = np.array([1, 4, 8])
    for kind, split in [("str", np.where(np.isin(np.arange(10), test_rows), "test", "train")),
                        ("bool", np.isin(np.arange(10), test_rows)),
                        ("int", np.isin(np.arange(10), test_rows).astype(np.int8))]:
        np.savez(tmp_path / f"{kind}.npz", images=IMAGES, labels=LABELS, split=split)
        s = load_splits(tmp_path / f"{kind}.npz")
        np.testing.assert_array_equal(as_u8(s.test.x), IMAGES[test_rows])
        np.testing.assert_array_equal(s.test.labels.numpy(), LABELS[test_rows])
        np.testing.assert_array_equal(as_u8(s.train.x), np.delete(IMAGES, test_rows, axis=0))
        assert s.train.name == kind and s.test.name == f"{kind}-test"
        assert len(load_dataset(tmp_path / f"{kind}.npz")) == 7  # the default is the train split only
        assert len(load_dataset(tmp_path / f"{kind}.npz", split="all")) == 10


def test_keras_style_keys_and_pt_test_dict(tmp_path):
    np.savez(tmp_path / "keras.npz", x_train=IMAGES[:6, 0], y_train=LABELS[:6], x_test=IMAGES[6:, 0], y_test=LABELS[6:])
    s = load_splits(tmp_path / "keras.npz")
    assert s.train.input_shape == (1, 4, 4) and len(s.test) == 4
    np.testing.assert_array_equal(s.test.labels.numpy(), LABELS[6:])
    torch.save({"x": torch.from_numpy(IMAGES[:6]), "labels": torch.from_numpy(LABELS[:6]),
                "test": {"x": torch.from_numpy(IMAGES[6:]), "labels": torch.from_numpy(LABELS[6:])}}, tmp_path / "d.pt")
    s = load_splits(tmp_path / "d.pt")
    np.testing.assert_array_equal(as_u8(s.test.x), IMAGES[6:])
    np.testing.assert_array_equal(s.test.labels.numpy(), LABELS[6:])
    np.testing.assert_array_equal(as_u8(load_dataset(tmp_path / "d.pt", split="test").x), IMAGES[6:])


def test_split_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", x=IMAGES, split=np.array(["train"] * 9 + ["holdout"]))
    with pytest.raises(DataError, match=r"bad.npz\['split'\]: expected split values 'train', 'test' or 'val', found \['holdout'\]"):
        load_splits(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", x=IMAGES, split=np.zeros(4, bool))
    with pytest.raises(DataError, match=r"short.npz\['split'\]: expected a split array of shape \(10,\), found shape \(4,\)"):
        load_splits(tmp_path / "short.npz")
    np.savez(tmp_path / "both.npz", x=IMAGES, x_test=IMAGES, split=np.zeros(10, bool))
    with pytest.raises(DataError, match=r"both.npz: expected either a 'split' array or test arrays, found both"):
        load_splits(tmp_path / "both.npz")
    np.savez(tmp_path / "shape.npz", x=IMAGES, x_test=IMAGES[:, :, :2])
    with pytest.raises(DataError, match=r"expected test samples shaped like the training samples \[1, 4, 4\], found \[1, 2, 4\]"):
        load_splits(tmp_path / "shape.npz")
    np.save(tmp_path / "plain.npy", IMAGES)
    assert load_splits(tmp_path / "plain.npy").test is None
    with pytest.raises(DataError, match=r"plain.npy: split='test' requested, but the source has no test split"):
        load_dataset(tmp_path / "plain.npy", split="test")


def test_separate_test_data_and_labels(tmp_path):
    np.save(tmp_path / "train.npy", IMAGES[:6])
    np.save(tmp_path / "test.npy", IMAGES[6:])
    np.save(tmp_path / "ytest.npy", LABELS[6:])
    s = load_splits(tmp_path / "train.npy", test_data=tmp_path / "test.npy", test_labels=tmp_path / "ytest.npy")
    np.testing.assert_array_equal(as_u8(s.test.x), IMAGES[6:])
    assert s.test.labels.tolist() == LABELS[6:].tolist() and s.test.name == "test-test" and s.train.labels is None
    s = load_splits("digits", test_data=tmp_path / "test.npy", image_size=8)  # resized like the training set
    assert s.test.input_shape == (1, 8, 8) and s.train.input_shape == (1, 8, 8)
    with pytest.raises(DataError, match=r"test_labels: .*ytest.npy' given, but .*train.npy has no test split"):
        load_splits(tmp_path / "train.npy", test_labels=tmp_path / "ytest.npy")


def write_split_folder(root, test_name="val"):
    arrays = {}
    for split, classes in (("train", ("ant", "bee", "cow")), (test_name, ("bee", "cow"))):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            a = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / split / cls / "0.png")
            arrays[(split, cls)] = a
    return arrays


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_image_folder_train_and_val(tmp_path, test_name):
    arrays = write_split_folder(tmp_path / "inet", test_name)
    s = load_splits(tmp_path / "inet")
    assert s.train.classes == ("ant", "bee", "cow") and s.train.labels.tolist() == [0, 1, 2]
    assert s.test.labels.tolist() == [1, 2]  # indexed by the training classes, not re-numbered
    assert s.test.name == f"inet-{test_name}"
    np.testing.assert_array_equal(as_u8(s.test.x[1]).transpose(1, 2, 0), arrays[(test_name, "cow")])
    assert len(load_dataset(tmp_path / "inet")) == 3
    (tmp_path / "inet" / test_name / "emu").mkdir()
    with pytest.raises(DataError, match=rf"{test_name}: expected the class folders of the training split, found \['emu'\]"):
        load_splits(tmp_path / "inet")


def test_cifar_test_batch_is_the_test_split(tmp_path):
    from test_datasets_formats import write_cifar10

    written = write_cifar10(tmp_path / "cifar-10-batches-py", batches=2)
    s = load_splits(tmp_path)
    assert len(s.train) == 8 and len(s.test) == 4 and s.test.name == "cifar10-test"
    np.testing.assert_array_equal(s.test.labels.numpy(), written["test_batch"][1])
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    assert load_splits(tmp_path).test is None  # no test batch: no test split, and no error
