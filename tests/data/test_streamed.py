"""Streamed ImageFolder splits (assignsolve/datasets/streamed.py) against the in-memory loader,
on folders written here with Pillow, and against the pixels written."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from assignsolve.core.errors import DataError
from assignsolve.data import load_dataset, load_splits
from assignsolve.datasets import streamed
from assignsolve.datasets.streamed import StreamedImages, choose_mode, memory_bytes
from assignsolve.train.feed import StreamFeed


def write_folder(root, classes=("cat", "dog", "emu"), per=4, size=(7, 9), mode="RGB", seed=0):
    """class folders of random images; returns {(class, j): uint8 array as written (RGB)}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for j in range(per):
            a = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            img = Image.fromarray(a, "RGB").convert(mode)
            arrays[(cls, j)] = np.asarray(img.convert("RGB"))
            img.save(root / cls / f"{j:03d}.png")
    (root / classes[0] / "readme.txt").write_text("not an image")
    return arrays


@pytest.mark.parametrize("image_size,mode", [(None, "RGB"), (5, "RGB"), (6, "L")])
def test_streamed_items_equal_in_memory_tensors(tmp_path, image_size, mode):
    arrays = write_folder(tmp_path / "pets", mode=mode)
    mem = load_dataset(tmp_path / "pets", image_size=image_size)
    s = load_dataset(tmp_path / "pets", image_size=image_size, mode="stream")
    assert isinstance(s, StreamedImages) and len(s) == 12 and s.input_shape == mem.input_shape
    assert torch.equal(torch.stack([s[i] for i in range(len(s))]), mem.x)  # bitwise
    assert torch.equal(s.labels, mem.labels) and s.classes == mem.classes == ("cat", "dog", "emu")
    assert s.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and s.name == "pets" and s.n_classes == 3
    if image_size is None:  # independent of both loaders: the pixels written, / 255, CHW
        np.testing.assert_array_equal(s[5].permute(1, 2, 0).numpy(), (arrays[("dog", 1)] / np.float32(255)))


def test_streamed_through_dataloader_workers_and_take(tmp_path):
    write_folder(tmp_path / "pets")
    mem = load_dataset(tmp_path / "pets", image_size=4)
    s = load_dataset(tmp_path / "pets", image_size=4, mode="stream")
    idx = torch.tensor([11, 0, 5, 5, 3])
    feed = StreamFeed(s, workers=2)
    got = list(feed.batches([idx[:2], idx[2:]]))
    assert [i.tolist() for i, _ in got] == [[11, 0], [5, 5, 3]]
    assert torch.equal(torch.cat([x for _, x in got]), mem.x[idx])
    assert torch.equal(torch.cat(list(feed.chunks(2, 9, 3))), mem.x[2:9])
    sub = s.take(torch.tensor([7, 1]), name="two")
    assert len(sub) == 2 and sub.name == "two" and sub.labels.tolist() == [1, 0]
    assert torch.equal(sub[0], mem.x[7])
    assert torch.equal(pickle.loads(pickle.dumps(s))[3], mem.x[3])  # what a spawned worker receives


def test_split_folder_streams_both_splits(tmp_path):
    write_folder(tmp_path / "net" / "train", per=3)
    write_folder(tmp_path / "net" / "val", classes=("dog", "emu"), per=2, seed=1)
    mem = load_splits(tmp_path / "net", image_size=4)
    s = load_splits(tmp_path / "net", image_size=4, mode="stream")
    assert isinstance(s.train, StreamedImages) and isinstance(s.test, StreamedImages)
    assert torch.equal(s.test.labels, mem.test.labels) and s.test.labels.tolist() == [1, 1, 2, 2]
    assert torch.equal(torch.stack([s.test[i] for i in range(4)]), mem.test.x)
    assert s.test.name == mem.test.name == "net-val"


def test_auto_streams_only_above_the_threshold(tmp_path, monkeypatch):
    write_folder(tmp_path / "pets")
    s = load_dataset(tmp_path / "pets", image_size=4, mode="stream")
    assert memory_bytes(s) == 12 * 3 * 4 * 4 * 4
    assert not isinstance(load_dataset(tmp_path / "pets", image_size=4, mode="auto"), StreamedImages)
    monkeypatch.setattr(streamed, "STREAM_THRESHOLD", memory_bytes(s) - 1)
    assert isinstance(load_dataset(tmp_path / "pets", image_size=4, mode="auto"), StreamedImages)
    assert choose_mode("auto", None) == "memory"


def test_stream_errors_name_the_file_or_value(tmp_path):
    with pytest.raises(DataError, match="'stream' reads ImageFolder directories only"):
        load_dataset("digits", mode="stream")
    write_folder(tmp_path / "p")
    with pytest.raises(DataError, match=r"data_mode: expected one of \['auto', 'memory', 'stream'\], found 'disk'"):
        load_dataset(tmp_path / "p", mode="disk")
    # a differently sized image without image_size: found when it is read, named like the in-memory error
    write_folder(tmp_path / "mixed", per=2)
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "mixed" / "emu" / "009.png")
    s = load_dataset(tmp_path / "mixed", mode="stream")
    with pytest.raises(DataError, match=r"009\.png: expected 9x7 pixels like .*000\.png, found 3x3"):
        s[len(s) - 1]
    with pytest.raises(DataError, match=r"^[^\n]*009\.png: expected 9x7 pixels[^\n]*$"):  # one line, from a worker
        list(StreamFeed(s, workers=1).chunks(0, len(s), 2))
    (tmp_path / "mixed" / "emu" / "009.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"009\.png: expected an image file Pillow can read"):
        load_dataset(tmp_path / "mixed", mode="stream")[len(s) - 1]
