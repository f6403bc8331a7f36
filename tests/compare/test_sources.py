"""What ``compare`` reads (image files as flattened pixels) and that the same command prints the same table."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from assignsolve.compare.sources import load_source
from assignsolve.core.errors import CompareError


def _images(tmp_path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    base = rng.integers(0, 256, size=(3, 1, 4, 4))
    imgs = np.clip(base[y] + rng.integers(-20, 21, size=(n, 1, 4, 4)), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "img.npz", images=imgs, labels=y)
    return imgs, y


def test_image_npz_is_read_as_flattened_pixels_with_labels(tmp_path):
    imgs, y = _images(tmp_path)
    data = load_source(str(tmp_path / "img.npz"))
    assert data.x.shape == (60, 16) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x, imgs.reshape(60, 16) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.labels, y)
    assert data.name == "img pixels"


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(CompareError, match="no such file"):
        load_source(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", other=np.zeros((3, 2)))
    with pytest.raises(Exception, match="expected a key among"):
        load_source(str(tmp_path / "bad.npz"))


def _compare(*args):
    return subprocess.run([sys.executable, "-m", "assignsolve", "compare", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_two_invocations_print_identical_tables_and_images_match_flat_features(tmp_path):
    """iic, sinkhorn-pot and kmeans, in worker processes, twice: byte-identical stdout with --no-times;
    the image file gives the same labels as the same pixels saved as an [N, D] feature file."""
    imgs, y = _images(tmp_path, n=90, seed=2)
    np.savez(tmp_path / "flat.npz", features=imgs.reshape(90, 16).astype(np.float32) / 255.0, labels=y)
    common = ["--solvers", "iic,sinkhorn-pot,kmeans", "--iters", "5", "--threads", "1", "--no-times"]
    first = _compare("--features", str(tmp_path / "img.npz"), *common, "--out", str(tmp_path / "a"))
    second = _compare("--features", str(tmp_path / "img.npz"), *common, "--out", str(tmp_path / "b"))
    assert first.returncode == 0, first.stderr
    table = lambda out: out.split("wrote ")[0]  # noqa: E731 - the output folder differs
    assert table(first.stdout) == table(second.stdout)
    assert "seconds" not in first.stdout.split("best ")[1].splitlines()[0]
    _compare("--features", str(tmp_path / "flat.npz"), *common, "--out", str(tmp_path / "c"))
    a, c = np.load(tmp_path / "a" / "labels.npz"), np.load(tmp_path / "c" / "labels.npz")
    for s in ("iic", "sinkhorn-pot", "kmeans"):
        np.testing.assert_array_equal(a[f"solver:{s}"], c[f"solver:{s}"])
    assert "eps=" in first.stdout and "tau=" in first.stdout


def test_repeat_gives_mean_std_cells_and_repeat_files(tmp_path, capsys):
    from assignsolve.cli import main

    imgs, y = _images(tmp_path, n=60, seed=5)
    capsys.readouterr()
    code = main(["compare", "--features", str(tmp_path / "img.npz"), "--solvers", "sinkhorn-pot,kmeans",
                 "--iters", "3", "--isolation", "inline", "--repeat", "2", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0 and "seed = 0..1 (R = 2)" in out
    import json
    runs = json.loads((tmp_path / "r" / "repeat.json").read_text())
    assert runs["seeds"] == [0, 1]
    accs = [next(r for r in rows if r["solver"] == "kmeans")["acc"] for rows in runs["runs"]]
    line = next(ln for ln in out.splitlines() if "kmeans" in ln.split())
    assert f"{np.mean(accs):.4f}+-{np.std(accs):.2g}" in line
