"""Standard datasets by name, read from tiny files written here in the official formats.

No test touches the network: the ``no_network`` fixture makes any socket connection or urlopen
call fail the test, and records that none happened.
"""

from __future__ import annotations

import gzip
import pickle
import socket
import struct
import urllib.request

import numpy as np
import pytest
import torch

from assignsolve.data import load_dataset, load_splits
from assignsolve.datasets import mnist
from assignsolve.core.errors import AssignsolveError, DataError


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network touched: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield calls
    assert calls == []


# ------------------------------------------------------------------ MNIST idx
def write_idx(path, array: np.ndarray, code: int, gz: bool) -> None:
    """IDX by hand: 00 00 <type> <ndim>, big-endian uint32 sizes, big-endian values."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + body)


def write_mnist(folder, n_train=7, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, 0x08, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, 0x08, gz)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_by_name(tmp_path, no_network, gz):
    written = write_mnist(tmp_path / "mnist", gz=gz)
    splits = load_splits("mnist", data_dir=tmp_path)
    assert splits.train.x.shape == (7, 1, 28, 28) and splits.test.x.shape == (3, 1, 28, 28)
    assert splits.train.name == "mnist" and splits.test.name == "mnist-test" and splits.train.classes[9] == "9"
    np.testing.assert_array_equal((splits.train.x[:, 0] * 255).round().numpy().astype(np.uint8), written["train"][0])
    np.testing.assert_array_equal(splits.test.labels.numpy(), written["t10k"][1])
    assert splits.train.labels.dtype == torch.int64
    # load_dataset gives one split of the same
    torch.testing.assert_close(load_dataset("mnist", data_dir=tmp_path, split="test").x, splits.test.x)
    assert len(load_dataset("mnist", data_dir=tmp_path, split="all")) == 10


def test_mnist_data_dir_from_environment(tmp_path, no_network, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("ASSIGNSOLVE_DATA_DIR", str(tmp_path))
    assert len(load_dataset("mnist")) == 7  # what `assignsolve run --data mnist` calls


def test_idx_other_dtypes_and_errors(tmp_path):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 1000
    write_idx(tmp_path / "i32", a, 0x0C, gz=False)
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "i32"), a)
    f = np.linspace(0, 1, 5).astype(np.float64)
    write_idx(tmp_path / "f64.gz", f, 0x0E, gz=True)
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "f64.gz"), f)
    raw = (tmp_path / "i32").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DataError, match=r"short: truncated IDX file: expected 48 bytes of data for shape \[3, 4\], found 43"):
        mnist.read_idx(tmp_path / "short")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(DataError, match=r"text: expected an IDX file \(magic 00 00 <type> <ndim>\), found b'hell'"):
        mnist.read_idx(tmp_path / "text")


def test_mnist_label_count_mismatch(tmp_path, no_network):
    write_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(6, np.uint8), 0x08, gz=True)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz \(labels for train-images-idx3-ubyte.gz\): "
                                        r"expected integer labels of shape \(7,\), found shape \(6,\)"):
        load_dataset("mnist", data_dir=tmp_path)


# ------------------------------------------------------------------ CIFAR-10 / CIFAR-100 pickles
def write_cifar10(folder, n=4, batches=5, protocol=2):
    """As the real files: pickled dicts with bytes keys, data uint8 [N, 3072], labels a list."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                                  b"filenames": [b"x.png"] * n}, protocol=protocol))
        written[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [s.encode() for s in names], b"num_vis": 3072},
                                                       protocol=protocol))
    return written


def test_cifar10_by_name(tmp_path, no_network):
    written = write_cifar10(tmp_path / "cifar-10-batches-py")
    splits = load_splits("cifar10", data_dir=tmp_path)
    assert splits.train.x.shape == (20, 3, 32, 32) and splits.test.x.shape == (4, 3, 32, 32)
    assert splits.train.classes[-1] == "truck" and splits.test.name == "cifar10-test"
    data, labels = written["data_batch_3"]
    # image 9 = batch 3, row 1; channel 2 (blue) starts at byte 2048; pixel (row 5, col 7)
    assert splits.train.x[9, 2, 5, 7].item() == pytest.approx(data[1, 2048 + 5 * 32 + 7] / 255.0, abs=1e-7)
    assert splits.train.labels[8:12].tolist() == labels
    np.testing.assert_array_equal(splits.test.labels.numpy(), written["test_batch"][1])


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar_pickle_protocols(tmp_path, protocol):
    written = write_cifar10(tmp_path / "c", batches=1, protocol=protocol)
    d = load_dataset(tmp_path / "c")
    np.testing.assert_array_equal((d.x.reshape(4, -1) * 255).round().numpy().astype(np.uint8), written["data_batch_1"][0])


def write_cifar100(folder, n=5):
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    written = {}
    for name in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n).tolist(), rng.integers(0, 20, n).tolist()
        (folder / name).write_bytes(pickle.dumps({b"filenames": [b"a"] * n, b"batch_label": b"x", b"fine_labels": fine,
                                                  b"coarse_labels": coarse, b"data": data}, protocol=2))
        written[name] = (data, fine, coarse)
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, protocol=2))
    return written


def test_cifar100_by_name_fine_and_coarse(tmp_path, no_network):
    written = write_cifar100(tmp_path / "cifar-100-python")
    splits = load_splits("cifar100", data_dir=tmp_path)
    assert splits.train.x.shape == (5, 3, 32, 32) and len(splits.train.classes) == 100 and splits.train.name == "cifar100"
    assert splits.train.labels.tolist() == written["train"][1] and splits.test.labels.tolist() == written["test"][1]
    assert splits.test.x[3, 0, 31, 31].item() == pytest.approx(written["test"][0][3, 1023] / 255.0, abs=1e-7)
    from assignsolve.datasets.cifar import load_cifar100

    coarse = load_cifar100(tmp_path / "cifar-100-python", ("train",), labels="coarse")["train"]
    assert coarse.labels.tolist() == written["train"][2] and coarse.classes[19] == "c19"
    # the directory itself is recognised as a source too
    assert len(load_dataset(tmp_path / "cifar-100-python", split="test")) == 5


# ------------------------------------------------------------------ STL-10 binaries
def write_stl10(folder, n_train=3, n_test=2, n_unlabeled=4):
    """Each image as 3 channel planes, each plane column-major (Fortran order), as MATLAB wrote them."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    written = {}
    for prefix, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # [N, C, row, col]
        blob = b"".join(images[i, c].tobytes(order="F") for i in range(n) for c in range(3))
        (folder / f"{prefix}_X.bin").write_bytes(blob)
        if prefix != "unlabeled":
            labels = rng.integers(1, 11, n).astype(np.uint8)  # 1..10 on disk
            (folder / f"{prefix}_y.bin").write_bytes(labels.tobytes())
            written[prefix] = (images, labels)
        else:
            written[prefix] = (images, None)
    (folder / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                        "monkey", "ship", "truck"]) + "\n")
    return written


def test_stl10_by_name(tmp_path, no_network):
    written = write_stl10(tmp_path / "stl10_binary")
    splits = load_splits("stl10", data_dir=tmp_path)
    assert splits.train.x.shape == (3, 3, 96, 96) and splits.test.x.shape == (2, 3, 96, 96)
    images, labels = written["train"]
    # pixel (channel 1, row 10, column 70) of image 2: the layout is right, not transposed
    assert splits.train.x[2, 1, 10, 70].item() == pytest.approx(images[2, 1, 10, 70] / 255.0, abs=1e-7)
    np.testing.assert_array_equal((splits.train.x * 255).round().numpy().astype(np.uint8), images)
    assert splits.train.labels.tolist() == (labels.astype(int) - 1).tolist() and splits.train.classes[7] == "monkey"
    both = load_dataset("stl10", data_dir=tmp_path, split="train+unlabeled")
    assert both.x.shape == (7, 3, 96, 96) and both.labels is None
    np.testing.assert_array_equal((both.x[3:] * 255).round().numpy().astype(np.uint8), written["unlabeled"][0])
    assert load_dataset(tmp_path / "stl10_binary", split="unlabeled").x.shape == (4, 3, 96, 96)


def test_stl10_errors(tmp_path):
    write_stl10(tmp_path / "s")
    (tmp_path / "s" / "test_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DataError, match=r"test_X.bin: expected a multiple of 27648 bytes \(96x96x3 per image\), found 1000"):
        load_splits(tmp_path / "s")
    (tmp_path / "s" / "test_X.bin").write_bytes(b"\0" * 27648)
    with pytest.raises(DataError, match=r"test_y.bin: expected 1 labels \(one byte per image\), found 2"):
        load_splits(tmp_path / "s")
    with pytest.raises(DataError, match=r"split: 'unlabeled' exists only for STL-10"):
        load_dataset("digits", split="unlabeled")


# ------------------------------------------------------------------ registry errors
def test_unknown_split_and_name(tmp_path, no_network):
    write_mnist(tmp_path / "mnist")
    with pytest.raises(AssignsolveError, match=r"split: 'unlabeled' exists only for STL-10"):
        load_dataset("mnist", data_dir=tmp_path, split="unlabeled")
    from assignsolve.datasets import load_named

    with pytest.raises(AssignsolveError, match=r"unknown dataset 'mnsit'; did you mean 'mnist'"):
        load_named("mnsit", tmp_path)


def test_download_off_names_url_and_folder(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match=r"cifar10: cifar-10-batches-py/ \(or cifar-10-python.tar.gz\) not found in "
                                                r".* and download is off; download https://www.cs.toronto.edu/~kriz/"
                                                r"cifar-10-python.tar.gz and put it into "):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
