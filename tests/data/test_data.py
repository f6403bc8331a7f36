"""load_dataset / TensorData (assignsolve/data.py) on small files written here."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits as sk_digits

from assignsolve.data import TensorData, load_dataset, load_features


# ------------------------------------------------------------------ digits
def test_digits_images_match_sklearn():
    d = load_dataset("digits")
    ref = sk_digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == torch.float32 and d.input_shape == (1, 8, 8)
    np.testing.assert_allclose(d.x.reshape(1797, 64).numpy(), ref.data / 16.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(d.labels.numpy(), ref.target)
    assert d.labels.dtype == torch.int64 and d.name == "digits" and d.n_classes == 10 and len(d) == 1797
    assert d.is_image
    # the existing numpy loader still agrees
    np.testing.assert_array_equal(load_features("digits").x, d.x.reshape(1797, 64).numpy())


def test_digits_resized():
    d = load_dataset("digits", image_size=16)
    assert d.x.shape == (1797, 1, 16, 16) and float(d.x.min()) >= 0 and float(d.x.max()) <= 1
    ref = torch.nn.functional.interpolate(load_dataset("digits").x[:5], size=(16, 16), mode="bilinear",
                                          align_corners=False, antialias=True)
    torch.testing.assert_close(d.x[:5], ref.clamp(0, 1))


# ------------------------------------------------------------------ ImageFolder
def write_image_folder(root, sizes=None, mode="RGB"):
    rng = np.random.default_rng(0)
    arrays = {}
    for ci, cls in enumerate(["cat", "dog", "emu"]):
        (root / cls).mkdir(parents=True)
        for j in range(2):
            h, w = (sizes or {}).get((cls, j), (6, 5))
            a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            arrays[(cls, j)] = a
            img = Image.fromarray(a, "RGB").convert(mode)
            img.save(root / cls / f"img{j}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return arrays


def test_image_folder(tmp_path):
    arrays = write_image_folder(tmp_path / "pets")
    d = load_dataset(tmp_path / "pets")
    assert d.x.shape == (6, 3, 6, 5) and d.x.dtype == torch.float32 and d.input_shape == (3, 6, 5)
    assert d.labels.tolist() == [0, 0, 1, 1, 2, 2] and d.classes == ("cat", "dog", "emu")
    assert d.name == "pets"
    # pixel values: exact uint8 / 255, CHW layout, sorted order class then file
    np.testing.assert_allclose(d.x[3].permute(1, 2, 0).numpy(), arrays[("dog", 1)] / 255.0, atol=1e-7)


def test_image_folder_grayscale_files_become_rgb_and_resize(tmp_path):
    write_image_folder(tmp_path / "g", mode="L")
    d = load_dataset(tmp_path / "g", image_size=4)
    assert d.x.shape == (6, 3, 4, 4)
    torch.testing.assert_close(d.x[:, 0], d.x[:, 1])
    torch.testing.assert_close(d.x[:, 1], d.x[:, 2])
    # resizing is Pillow's bilinear on the RGB image
    ref = np.asarray(Image.open(tmp_path / "g" / "emu" / "img0.png").convert("RGB").resize((4, 4), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(d.x[4].permute(1, 2, 0).numpy(), ref / 255.0, atol=1e-7)


def test_image_folder_inconsistent_sizes(tmp_path):
    write_image_folder(tmp_path / "mixed", sizes={("dog", 1): (7, 5)})
    with pytest.raises(ValueError, match=r"dog[/\\]img1.png: expected 5x6 pixels like .*cat[/\\]img0.png, found 5x7; "
                                         r"pass image_size"):
        load_dataset(tmp_path / "mixed")
    assert load_dataset(tmp_path / "mixed", image_size=6).x.shape == (6, 3, 6, 6)


def test_flat_image_folder_is_unlabelled(tmp_path):
    for j in range(3):
        Image.fromarray(np.full((4, 4, 3), 40 * j, np.uint8)).save(tmp_path / f"{j}.png")
    d = load_dataset(tmp_path)
    assert d.labels is None and d.x.shape == (3, 3, 4, 4) and d.n_classes is None
    np.testing.assert_allclose(d.x[:, 0, 0, 0].numpy(), [0, 40 / 255, 80 / 255], atol=1e-7)


def test_empty_and_unreadable_image_folder(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty: expected an ImageFolder directory .* found no image files"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"x.png: expected an image file Pillow can read"):
        load_dataset(tmp_path / "bad")


# ------------------------------------------------------------------ CIFAR-10 batches
def write_cifar(root, n_per_batch=4, batches=(1, 2), test=True):
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{i}" for i in batches] + (["test_batch"] if test else [])
    for name in names:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()  # a list, as in the real files
        with open(root / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"f.png"] * n_per_batch}, fh)
        written[name] = (data, labels)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"], b"num_vis": 3072}, fh)
    return written


def test_cifar_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    written = write_cifar(root, batches=(2, 1, 10))  # numeric, not lexical, order: 1, 2, 10
    d = load_dataset(root)
    assert d.x.shape == (12, 3, 32, 32) and d.name == "cifar10" and d.classes[0] == "airplane"
    order = ["data_batch_1", "data_batch_2", "data_batch_10"]
    np.testing.assert_array_equal(d.labels.numpy(), sum((written[n][1] for n in order), []))
    # real layout: the 3072 bytes are 1024 red, 1024 green, 1024 blue, each row-major 32x32
    data = written["data_batch_2"][0]
    np.testing.assert_allclose(d.x[5, 1, 2, 3].item(), data[1, 1024 + 2 * 32 + 3] / 255.0, atol=1e-7)
    test = load_dataset(root, split="test")
    assert len(test) == 4 and test.name == "cifar10-test"
    np.testing.assert_array_equal(test.labels.numpy(), written["test_batch"][1])
    assert len(load_dataset(root, split="all")) == 16
    # the parent directory is recognised too, and resizing works
    assert load_dataset(tmp_path, image_size=16).x.shape == (12, 3, 16, 16)


def test_cifar_errors(tmp_path):
    write_cifar(tmp_path / "only_test", batches=())
    with pytest.raises(FileNotFoundError, match=r"expected CIFAR-10 'train' batches \(data_batch_1..5\), found only test_batch"):
        load_dataset(tmp_path / "only_test")
    (tmp_path / "broken").mkdir()
    with open(tmp_path / "broken" / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"data_batch_1: expected 'data' uint8 \[N, 3072\], found uint8 \(2, 100\)"):
        load_dataset(tmp_path / "broken")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "data_batch_1").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"garbage[/\\]data_batch_1: expected a data pickle, could not read it"):
        load_dataset(tmp_path / "garbage")


# ------------------------------------------------------------------ array files
def test_npy_images_and_features(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.random((5, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "imgs.npy", imgs)
    d = load_dataset(tmp_path / "imgs.npy")
    assert d.input_shape == (1, 6, 6) and d.labels is None and d.name == "imgs"
    np.testing.assert_array_equal(d.x.numpy(), imgs)
    u8 = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)  # channels last
    np.save(tmp_path / "u8.npy", u8)
    np.testing.assert_allclose(load_dataset(tmp_path / "u8.npy").x.numpy(), u8.transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    np.save(tmp_path / "gray.npy", u8[..., 0])
    assert load_dataset(tmp_path / "gray.npy").input_shape == (1, 8, 8)
    feats = rng.normal(size=(7, 12)) * 10
    np.save(tmp_path / "feats.npy", feats)
    f = load_dataset(tmp_path / "feats.npy")
    assert f.input_shape == (12,) and not f.is_image and f.x.dtype == torch.float32
    np.testing.assert_allclose(f.x.numpy(), feats, rtol=1e-6)
    y = np.arange(7) % 3
    np.save(tmp_path / "y.npy", y)
    assert load_dataset(tmp_path / "feats.npy", labels=tmp_path / "y.npy").labels.tolist() == y.tolist()


def test_npz_and_pt_with_labels(tmp_path):
    imgs = torch.rand(4, 3, 5, 5)
    y = torch.tensor([3, 1, 0, 3])
    np.savez(tmp_path / "d.npz", images=imgs.numpy(), labels=y.numpy())
    torch.save({"x": imgs, "targets": y}, tmp_path / "d.pt")
    torch.save(imgs, tmp_path / "plain.pt")
    for path in ("d.npz", "d.pt"):
        d = load_dataset(tmp_path / path)
        torch.testing.assert_close(d.x, imgs)
        assert d.labels.tolist() == [3, 1, 0, 3] and d.labels.dtype == torch.int64 and d.n_classes == 4
    assert load_dataset(tmp_path / "plain.pt").labels is None
    assert load_dataset(tmp_path / "d.pt", image_size=10).x.shape == (4, 3, 10, 10)


@pytest.mark.parametrize(("setup", "error", "match"), [
    (lambda p: p / "missing.npy", FileNotFoundError, r"no such file or directory .*missing.npy.* \(expected 'digits'"),
    (lambda p: (p / "f.csv").write_text("1,2") and p / "f.csv", ValueError, r"f.csv: expected 'digits', a dataset name \(mnist, cifar10, cifar100, stl10\), .* or a .npy, .npz or .pt file"),
    (lambda p: np.save(p / "cube.npy", np.zeros((2, 2, 2, 2, 2))) or p / "cube.npy", ValueError, r"expected images \[N, C, H, W\] .* found shape \[2, 2, 2, 2, 2\]"),
    (lambda p: np.save(p / "big.npy", np.full((2, 1, 4, 4), 255.0)) or p / "big.npy", ValueError, r"expected float images in \[0, 1\] \(or uint8 0..255\), found values in \[255, 255\]"),
    (lambda p: np.save(p / "i32.npy", np.zeros((2, 1, 4, 4), np.int32)) or p / "i32.npy", ValueError, r"expected uint8 \(0..255\) or float \(\[0, 1\]\) images, found dtype torch.int32"),
    (lambda p: np.savez(p / "k.npz", stuff=np.zeros((2, 3))) or p / "k.npz", ValueError, r"expected a key among \['images', 'x', 'features', 'data', 'embeddings'\], found keys \['stuff'\]"),
    (lambda p: np.savez(p / "l.npz", x=np.zeros((3, 2)), labels=np.zeros(2, np.int64)) or p / "l.npz", ValueError, r"expected integer labels of shape \(3,\), found shape \(2,\)"),
    (lambda p: np.save(p / "nan.npy", np.array([[np.nan, 1.0]])) or p / "nan.npy", ValueError, r"expected finite features"),
])
def test_errors(tmp_path, setup, error, match):
    with pytest.raises(error, match=match):
        load_dataset(setup(tmp_path))


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"image_size: expected a positive int or None, found 0"):
        load_dataset("digits", image_size=0)
    with pytest.raises(ValueError, match=r"split: expected 'train', 'test' or 'all' .*, found 'val'"):
        load_dataset("digits", split="val")
    np.save(tmp_path / "f.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"image_size=8 applies to images, found features of shape \[3, 4\]"):
        load_dataset(tmp_path / "f.npy", image_size=8)


def test_tensor_data_validation():
    with pytest.raises(ValueError, match=r"TensorData.x: expected a float32 tensor \[N, C, H, W\] or \[N, D\], found Tensor torch.float64"):
        TensorData(torch.zeros(2, 3, dtype=torch.float64), None, "t")
    with pytest.raises(ValueError, match=r"TensorData.labels: expected an int64 tensor of shape \(2,\) or None, found torch.int64 shape \[3\]"):
        TensorData(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64), "t")
