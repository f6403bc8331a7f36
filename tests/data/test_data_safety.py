"""Issue 11, loading: bad inputs give one line naming the file (exit 2 through the CLI), nothing
from a file runs code, and an ``.npz`` is read only as far as needed."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from assignsolve import cli
from assignsolve.data import load_dataset, load_features
from assignsolve.core.errors import DataError


class Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_cli(path, tmp_path, capsys) -> str:
    """``assignsolve run --data PATH`` in-process: asserts exit 2 and a one-line message."""
    code = cli.main(["run", "--data", str(path), "--out", str(tmp_path / "run-out")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("assignsolve run: error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run-out").exists()  # refused before anything was written
    return err.removeprefix("assignsolve run: error: ")


# ------------------------------------------------------------------ the cases, each as a file
def _write(p, name, data):
    (p / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return p / name


def _npy(p, a, name="x.npy"):
    np.save(p / name, a)
    return p / name


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _corrupt_npz_member(p):
    np.savez_compressed(p / "crc.npz", x=np.random.default_rng(0).random((50, 20)))
    raw = bytearray((p / "crc.npz").read_bytes())
    raw[200:260] = bytes(60)  # inside the compressed member, zip directory intact
    (p / "crc.npz").write_bytes(bytes(raw))
    return p / "crc.npz"


def _png_header(p, name, width, height):
    """A PNG whose IHDR claims width x height (the pixels are never decoded)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    (p / "cls").mkdir(exist_ok=True)
    (p / "cls" / name).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                                   + chunk(b"IEND", b""))
    return p


def _mixed(p):
    (p / "a").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p / "a" / "0.png")
    Image.fromarray(np.zeros((5, 4, 3), np.uint8)).save(p / "a" / "1.png")
    return p


def _evil_cifar(p, marker, file):
    d = p / "cifar-10-batches-py"
    d.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (d / "data_batch_1").write_bytes(pickle.dumps(Evil(marker) if file == "batch" else good, protocol=2))
    meta = {b"label_names": [b"a"] * 10}
    (d / "batches.meta").write_bytes(pickle.dumps(Evil(marker), protocol=2) if file == "meta"
                                     else b"\x80\x02garbage" if file == "corrupt-meta" else pickle.dumps(meta))
    return d


CASES = {
    # name: (build(tmp_path) -> path, regex the message must match)
    "missing .npy": (lambda p: p / "none.npy", r"none.npy"),
    "missing .npz": (lambda p: p / "none.npz", r"none.npz"),
    "missing .pt": (lambda p: p / "none.pt", r"none.pt"),
    "empty .npy": (lambda p: _write(p, "e.npy", b""), r"e.npy: expected a NumPy .npy file, found an empty file"),
    "empty .npz": (lambda p: _write(p, "e.npz", b""), r"e.npz: expected a NumPy .npz file .*, found an empty file"),
    "empty .pt": (lambda p: _write(p, "e.pt", b""), r"e.pt: expected a tensor .*, found an empty file"),
    "corrupt .npy": (lambda p: _write(p, "c.npy", b"\x93NUMPY\x01\x00\xff\xffgarbage"),
                     r"c.npy: could not read the .npy array"),
    "corrupt .npz": (lambda p: _write(p, "c.npz", b"PK\x03\x04" + os.urandom(300)),
                     r"c.npz: could not open the .npz archive"),
    "corrupt .npz member": (_corrupt_npz_member, r"crc.npz: could not read the array 'x' .* truncated or corrupt"),
    "corrupt .pt": (lambda p: _write(p, "c.pt", os.urandom(500)),
                    r"c.pt: expected a tensor or a dict of tensors .* could not load it with weights_only=True"),
    "truncated .npy": (lambda p: _truncate(_npy(p, np.zeros((10, 1, 8, 8), np.float32), "t.npy")),
                       r"t.npy: could not read the .npy array .* truncated"),
    "truncated .npz": (lambda p: np.savez(p / "t.npz", x=np.zeros((10, 8))) or _truncate(p / "t.npz"),
                       r"t.npz: could not open the .npz archive .* truncated"),
    "truncated .pt": (lambda p: torch.save({"x": torch.zeros(10, 8)}, p / "t.pt") or _truncate(p / "t.pt"),
                      r"t.pt: expected a tensor or a dict of tensors .* weights_only=True"),
    "text file named .npy": (lambda p: _write(p, "notes.npy", "1,2,3\n4,5,6\n"),
                             r"notes.npy: expected a NumPy .npy file, found a file starting with b'1,2,3"),
    "images above 1": (lambda p: _npy(p, np.full((3, 1, 4, 4), 2.0, np.float32)),
                       r"x.npy: expected float images in \[0, 1\] \(or uint8 0..255\), found values in \[2, 2\]"),
    "negative images": (lambda p: _npy(p, np.full((3, 1, 4, 4), -0.5)), r"x.npy: expected float images in \[0, 1\].*\[-0.5, -0.5\]"),
    "NaN images": (lambda p: _npy(p, np.where(np.eye(4)[None, None] > 0, np.nan, 0.5).repeat(3, 0)),
                   r"x.npy: expected float images in \[0, 1\], found 12 NaN or inf values"),
    "uint16 images": (lambda p: _npy(p, np.zeros((3, 1, 4, 4), np.uint16)),
                      r"x.npy: expected uint8 \(0..255\) or float \(\[0, 1\]\) images, found dtype torch.uint16; convert"),
    "string array": (lambda p: _npy(p, np.array([["a", "b"]])), r"x.npy: expected a numeric array, found dtype <U1"),
    "wrong-length labels": (lambda p: np.savez(p / "l.npz", images=np.zeros((4, 1, 3, 3), np.uint8), labels=np.arange(3)) or p / "l.npz",
                            r"l.npz\['labels'\]: expected integer labels of shape \(4,\), found shape \(3,\)"),
    "float labels": (lambda p: torch.save({"x": torch.rand(4, 6), "y": torch.rand(4)}, p / "f.pt") or p / "f.pt",
                     r"f.pt\['y'\]: expected integer labels of shape \(4,\), found shape \(4,\) dtype float32"),
    "empty ImageFolder": (lambda p: (p / "imgs" / "cls").mkdir(parents=True) or p / "imgs", r"imgs: expected an ImageFolder directory"),
    "non-image .png": (lambda p: (p / "cls").mkdir() or _write(p / "cls", "fake.png", b"GIF? no, text") and p,
                       r"fake.png: expected an image file Pillow can read"),
    "mixed image sizes": (_mixed, r"1.png: expected 4x4 pixels like .*0.png, found 4x5; pass image_size"),
    "decompression bomb (error)": (lambda p: _png_header(p, "bomb.png", 20_000, 20_000),
                                   r"bomb.png: refused as a possible decompression bomb \(Image size \(400000000 pixels\)"),
    "decompression bomb (warning)": (lambda p: _png_header(p, "big.png", 10_000, 10_000),
                                     r"big.png: refused as a possible decompression bomb \(Image size \(100000000 pixels\)"),
    "pickled .npy": (lambda p: np.save(p / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True) or p / "o.npy",
                     r"o.npy: could not read the .npy array .* holds Python objects"),
    "unknown dataset suffix": (lambda p: _write(p, "d.csv", "1,2"), r"d.csv: expected 'digits'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    build, regex = CASES[case]
    (tmp_path / "in").mkdir()
    path = build(tmp_path / "in")
    msg = run_cli(path, tmp_path, capsys)
    assert __import__("re").search(regex, msg), msg
    with pytest.raises(DataError):  # the library raises the same, as a DataError
        load_dataset(path)


def test_bad_input_through_a_subprocess(tmp_path):
    (tmp_path / "notes.npy").write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "assignsolve", "run", "--data", str(tmp_path / "notes.npy"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "notes.npy: expected a NumPy .npy file" in proc.stderr


# ------------------------------------------------------------------ nothing runs code
@pytest.mark.parametrize("file", ["batch", "meta"])
def test_crafted_cifar_pickle_cannot_run_code(tmp_path, capsys, file):
    marker = tmp_path / "PWNED"
    d = _evil_cifar(tmp_path, marker, file)
    # the crafted pickle does run code with plain pickle (so this test can fail)
    evil_file = d / ("data_batch_1" if file == "batch" else "batches.meta")
    msg = run_cli(d, tmp_path, capsys)
    assert not marker.exists()
    assert msg == (f"{evil_file}: refused to load the global posix.system (a data pickle may hold only dicts, lists, "
                   f"strings, bytes, numbers and numpy arrays)")
    pickle.loads(evil_file.read_bytes())
    assert marker.exists()


def test_corrupt_cifar_meta_is_an_error_not_skipped(tmp_path, capsys):
    d = _evil_cifar(tmp_path, tmp_path / "m", "corrupt-meta")
    assert run_cli(d, tmp_path, capsys).startswith(f"{d / 'batches.meta'}: expected a data pickle, could not read it")


def test_crafted_pt_cannot_run_code(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    torch.save({"x": torch.zeros(3, 4), "hook": Evil(marker)}, tmp_path / "evil.pt")
    msg = run_cli(tmp_path / "evil.pt", tmp_path, capsys)
    assert not marker.exists() and "evil.pt" in msg and "weights_only=True" in msg
    with pytest.raises(DataError, match=r"evil.pt: .*weights_only=True"):
        load_features(tmp_path / "evil.pt")
    assert not marker.exists()


# ------------------------------------------------------------------ .npz read lazily
def test_npz_reads_only_the_needed_members(tmp_path, monkeypatch):
    n_unused = 16 * 2**20  # 128 MiB of float64 zeros, compressed to well under 1 MB
    images = np.random.default_rng(0).integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    np.savez_compressed(tmp_path / "d.npz", images=images, labels=np.arange(6) % 2, unused=np.zeros(n_unused))
    assert (tmp_path / "d.npz").stat().st_size < 1_000_000
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    tracemalloc.start()
    try:
        d = load_dataset(tmp_path / "d.npz")
        peak_lazy = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with np.load(tmp_path / "d.npz") as z:  # the control: reading every key as before
            dict(z)
        peak_all = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal((d.x * 255).round().numpy().astype(np.uint8), images)
    assert d.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert "unused.npy" not in opened[: opened.index("labels.npy") + 1] and opened.count("unused.npy") == 1  # control only
    assert peak_lazy < 16 * 2**20 < 8 * n_unused <= peak_all, (peak_lazy, peak_all)


@pytest.mark.parametrize(("obj", "refused"), [
    (np.array([1, "a"], dtype=object), r"refused numpy.dtype with the object dtype object"),
    ({1, 2}, r"refused (to load the global __builtin__.set|an object of type builtins.set)"),
    (np.int64(3), r"refused to load the global numpy._core.multiarray.scalar"),
    (eval, r"refused to load the global (__builtin__|builtins).eval"),
    (np.ma.masked_array([1, 2]), r"refused to load the global numpy.ma.core"),
])
@pytest.mark.parametrize("protocol", [2, 5])
def test_safe_unpickler_refuses_everything_but_plain_data(obj, refused, protocol):
    from assignsolve.datasets.safepickle import safe_loads

    with pytest.raises(DataError, match=r"^f: " + refused):
        safe_loads(pickle.dumps(obj, protocol=protocol), "f")
    plain = {"a": [1, 2.5, None, True, b"x", ("t",)], b"arr": np.arange(6, dtype=">i4").reshape(2, 3)}
    back = safe_loads(pickle.dumps(plain, protocol=protocol), "f")
    assert back["a"] == plain["a"] and np.array_equal(back[b"arr"], plain[b"arr"])
