"""``assignsolve compare``: the shared protocol, the metrics it reports, its files and its robustness.

Small synthetic feature files only (a few hundred points); solvers come from the example
third-party plugin (greedy-balanced, installed by conftest), the built-in ``kmeans`` plugin and
two plugins written here as installed distributions (a temporary ``.dist-info`` on ``sys.path``):
``testplug`` (well-behaved reference solvers) and ``testbad`` (a solver that raises, one that
hangs, one whose process dies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from assignsolve.registry import manager as plugins
from assignsolve.compare import CompareConfig, CompareError, compare, init_centroids, write_outputs
from assignsolve.core.errors import UnknownSolverError

GOOD = '''
import math, os, time
import attrs, torch
import assignsolve
from assignsolve import Assignment, BaseSolver


@attrs.frozen
class Argmax(BaseSolver):
    """Hard argmax of the scores (with l2 scores the protocol is then Lloyd's k-means)."""
    name = "test-argmax"
    needs = "scores"
    seed: int = 0

    def solve(self, problem):
        s = problem.scores
        labels = s.argmax(1)
        return Assignment.for_problem(problem, labels=labels, objective=float(s.gather(1, labels[:, None]).sum()))


@attrs.frozen
class Softmax(BaseSolver):
    """Soft assignment softmax(scores / temperature)."""
    name = "test-softmax"
    needs = "scores"
    temperature: float = 0.1

    def solve(self, problem):
        q = torch.softmax(problem.scores / self.temperature, dim=1)
        return Assignment.for_problem(problem, soft=q, objective=float((q * problem.scores).sum()))


@attrs.frozen
class NeedsNgeK(Argmax):
    """Argmax that declares it needs N >= K."""
    name = "test-needs-n-ge-k"
    requires_n_ge_k = True


@assignsolve.hookimpl
def register_solvers(register):
    register(Argmax)
    register(Softmax)
    register(NeedsNgeK)
'''

BAD = '''
import os, time
import attrs
import assignsolve
from assignsolve import BaseSolver


@attrs.frozen
class Crash(BaseSolver):
    """Raises."""
    name = "test-crash"

    def solve(self, problem):
        raise RuntimeError("boom at N=%d" % problem.n_samples)


@attrs.frozen
class Sleep(BaseSolver):
    """Hangs."""
    name = "test-sleep"

    def solve(self, problem):
        time.sleep(120)


@attrs.frozen
class Die(BaseSolver):
    """Kills its own process (stands for a segfault)."""
    name = "test-die"

    def solve(self, problem):
        os._exit(7)


@assignsolve.hookimpl
def register_solvers(register):
    register(Crash)
    register(Sleep)
    register(Die)
'''


def _make_dist(root, dist, module, source):
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[assignsolve]\n{module.split('_')[-1]} = {module}\n")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-plugins")
    _make_dist(root, "assignsolve-testplug", "cmp_testplug", GOOD)
    _make_dist(root, "assignsolve-testbad", "cmp_testbad", BAD)
    sys.path.insert(0, str(root))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), old]))
    plugins.reset()
    yield root
    sys.path.remove(str(root))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old
    plugins.reset()


@pytest.fixture
def only(plugin_dir, monkeypatch):
    """Restrict loaded plugins (so unrelated, in-progress plugins cannot disturb these tests)."""
    def set_(names):
        monkeypatch.setenv("ASSIGNSOLVE_PLUGINS", names)
        plugins.reset()
    yield set_
    monkeypatch.delenv("ASSIGNSOLVE_PLUGINS", raising=False)
    plugins.reset()


def blobs(n_per=40, k=3, d=4, seed=0, scale=0.4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + scale * rng.normal(size=(len(y), d))
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm].astype(np.int64)


def hungarian(pred, true):
    table = np.zeros((pred.max() + 1, true.max() + 1))
    np.add.at(table, (pred, true), 1)
    r, c = linear_sum_assignment(-table)
    return table[r, c].sum() / len(true)


def cli(capsys, *args):
    """``assignsolve compare ARGS`` through the real CLI entry point, in this process."""
    from assignsolve.cli import main

    capsys.readouterr()
    code = main(["compare", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


INLINE = dict(isolation="inline", timeout=None)




# --------------------------------------------------------------------------- protocol
def test_hard_argmax_protocol_is_lloyd_kmeans_like_sklearn_and_kmeans_plugin(only):
    """With l2 scores and an argmax solver the protocol is Lloyd's algorithm from the shared init;
    sklearn's KMeans from the same init, and the kmeans plugin (a features solver fed the same
    init), must land on the same labels."""
    only("testplug,kmeans")
    x, y = blobs(n_per=50, k=4, d=5, seed=2, scale=1.5)
    cfg = CompareConfig(iters=50, metric="l2", normalize="none", seed=4,
                        solver_opts={"kmeans": {"tol": 0.0}}, **INLINE)
    res = compare(x, y, ["test-argmax", "kmeans"], cfg, log=lambda *_: None)
    c0 = init_centroids(torch.from_numpy(x), 4, "kmeans++", torch.Generator().manual_seed(4)).numpy()
    ref = SkKMeans(4, init=c0.astype(np.float64), n_init=1, max_iter=50, tol=0, algorithm="lloyd")
    ref_labels = ref.fit_predict(x.astype(np.float64))
    argmax = res.row("test-argmax")
    assert argmax["status"] == "ok" and argmax["rounds"] < 50  # stopped at the fixed point
    np.testing.assert_array_equal(res.labels["test-argmax"], ref_labels)
    np.testing.assert_array_equal(res.labels["kmeans"], ref_labels)
    km = res.row("kmeans")
    assert km["rounds"] == 1 and km["config"]["max_iter"] == 50 and km["config"]["seed"] == 4
    assert km["objective"] == pytest.approx(ref.inertia_ / len(x), rel=1e-4)


def test_soft_solver_uses_weighted_centroids(only):
    only("testplug")
    x, y = blobs(n_per=30, k=3, d=3, seed=5, scale=1.0)
    tau, iters = 0.5, 4
    cfg = CompareConfig(iters=iters, metric="dot", normalize="none", seed=1,
                        solver_opts={"test-softmax": {"temperature": tau}}, **INLINE)
    res = compare(x, y, ["test-softmax"], cfg, log=lambda *_: None)
    # the same protocol by hand, in float64 numpy
    xd = x.astype(np.float64)
    c = init_centroids(torch.from_numpy(x), 3, "kmeans++", torch.Generator().manual_seed(1)).numpy().astype(np.float64)
    for _ in range(iters):
        s = xd @ c.T
        q = np.exp((s - s.max(1, keepdims=True)) / tau)
        q /= q.sum(1, keepdims=True)
        labels, objective = q.argmax(1), float((q * s).sum())
        c = (q.T @ xd) / q.sum(0)[:, None]
    row = res.row("test-softmax")
    np.testing.assert_array_equal(res.labels["test-softmax"], labels)
    assert row["objective"] == pytest.approx(objective, rel=1e-4)
    assert row["rounds"] == iters and row["converged"] is True
    assert row["marginal_error"] == pytest.approx(np.abs(q.mean(0) - 1 / 3).sum(), abs=1e-5)


def test_hard_update_uses_labels_even_for_soft_solvers(only):
    only("testplug")
    x, y = blobs(n_per=30, k=3, d=3, seed=5, scale=1.0)
    # cosine scores lie in [-1, 1]: at temperature 5 the soft assignment is nearly uniform, so a
    # soft update would pull every centroid to the mean; the hard update is spherical Lloyd
    cfg = CompareConfig(iters=3, seed=1, update="hard", solver_opts={"test-softmax": {"temperature": 5.0}},
                        **INLINE)
    res = compare(x, y, ["test-softmax"], cfg, log=lambda *_: None)
    xn = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    c = init_centroids(torch.from_numpy(xn.astype(np.float32)), 3, "kmeans++", torch.Generator().manual_seed(1)).numpy().astype(np.float64)
    for _ in range(3):
        labels = (xn @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T).argmax(1)
        c = np.stack([xn[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(3)])
    np.testing.assert_array_equal(res.labels["test-softmax"], labels)


def test_same_seed_same_result_duplicates_fine(only, torch_threads):  # 2 threads: threads=1 is a change
    only("greedy,testplug")
    x, y = blobs(n_per=20, k=3, seed=7)
    x = np.concatenate([x, x[:15]])  # duplicate points
    y = np.concatenate([y, y[:15]])
    cfg = CompareConfig(iters=5, seed=3, **INLINE)
    a = compare(x, y, ["greedy-balanced", "test-argmax"], cfg, log=lambda *_: None)
    b = compare(x, y, ["greedy-balanced", "test-argmax"], cfg, log=lambda *_: None)
    for s in ("greedy-balanced", "test-argmax"):
        assert a.row(s)["status"] == "ok"
        np.testing.assert_array_equal(a.labels[s], b.labels[s])
    before = torch.get_num_threads()
    assert before == torch_threads
    c = compare(x, y, ["test-argmax"], CompareConfig(iters=5, seed=3, threads=1, **INLINE), log=lambda *_: None)
    assert c.row("test-argmax")["threads"] == 1 and torch.get_num_threads() == before
    np.testing.assert_array_equal(c.labels["test-argmax"], a.labels["test-argmax"])


def test_k_larger_than_n(only):
    only("greedy,testplug")
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    res = compare(x, None, ["greedy-balanced", "test-needs-n-ge-k"], CompareConfig(k=9, iters=3, **INLINE),
                  log=lambda *_: None)
    bad = res.row("test-needs-n-ge-k")
    assert bad["status"] == "failed" and "N >= K, found N = 6 samples for K = 9 clusters" in bad["reason"]
    ok = res.row("greedy-balanced")
    assert ok["status"] == "ok" and ok["size_max"] == 1 and ok["n_empty"] == 3  # capacity ceil(6/9) = 1


def test_bad_arguments_are_clear(only):
    only("greedy,testplug")
    x, y = blobs(n_per=10)
    with pytest.raises(CompareError, match="expected --k when the features have no labels"):
        compare(x, None, ["test-argmax"], CompareConfig(**INLINE))
    with pytest.raises(UnknownSolverError, match="did you mean 'test-argmax'"):
        compare(x, y, ["test-argmx"], CompareConfig(**INLINE))
    with pytest.raises(CompareError, match=r"accepted options: \['slack'\]"):
        compare(x, y, ["greedy-balanced"], CompareConfig(solver_opts={"greedy-balanced": {"eps": 1}}, **INLINE))
    with pytest.raises(CompareError, match=r"found \['kmeans'\]"):
        compare(x, y, ["greedy-balanced"], CompareConfig(solver_opts={"kmeans": {"tol": 0}}, **INLINE))
    x[:] = np.nan
    with pytest.raises(CompareError, match="found all 30 rows NaN/inf"):
        compare(x, y, ["test-argmax"], CompareConfig(**INLINE))


@pytest.mark.parametrize("field, value, message", [
    ("iters", 0, "iters: expected an int >= 1, found 0"),
    ("iters", 2.5, "iters: expected an int >= 1, found 2.5"),
    ("k", True, "k: expected an int >= 1, found True"),
    ("seed", "0", "seed: expected an int, found '0'"),
    ("timeout", 0, "timeout: expected a number > 0, found 0"),
    ("normalize", "l1", "normalize: expected one of ['l2', 'none'], found 'l1'"),
    ("init", "kmeans", "init: expected one of ['kmeans++', 'random'], found 'kmeans'"),
    ("tol", -1e-3, "tol: expected a number >= 0, found -0.001"),
    ("threads", 0, "threads: expected an int >= 1, found 0"),
    ("warmup", "false", "warmup: expected true or false, found 'false'"),
    ("epsilon_rel", 0.0, "epsilon_rel: expected a number > 0, found 0.0"),
    ("pair_k", 0, "pair_k: expected an int >= 1, found 0"),
    ("solver_opts", {"kmeans": 1}, "solver_opts: expected a mapping {solver name: {option: value}}, found"),
])
def test_config_values_are_checked_in_the_shared_validator_style(field, value, message):
    with pytest.raises(CompareError) as info:
        CompareConfig(**{field: value})
    assert str(info.value).startswith(message)
    # numpy integers are ints; None is accepted where the field is optional
    cfg = CompareConfig(k=np.int64(3), iters=np.int64(2), seed=np.int64(-1), timeout=None, threads=None)
    assert (cfg.k, cfg.iters, cfg.seed) == (3, 2, -1)


# --------------------------------------------------------------------------- isolation
def _check_crash(row):
    assert row["status"] == "failed" and row["reason"] == "RuntimeError: boom at N=30"
    assert "Traceback" in row["traceback"]


def _check_sleep(row):
    assert row["status"] == "timeout" and row["reason"] == "timed out after 1.5 s (--timeout)"


def _check_die(row):
    assert row["status"] == "failed" and "exit code 7" in row["reason"]


# one bad solver per case (two workers each, not four in one test: a worker start costs ~1.5 s on
# 2 loaded cores); the solver after it in the same run still gives its result
@pytest.mark.parametrize("bad,check", [("test-crash", _check_crash), ("test-sleep", _check_sleep),
                                       ("test-die", _check_die)])
def test_failing_hanging_and_dying_solvers_do_not_stop_the_others(only, bad, check):
    only("greedy,testbad")
    x, y = blobs(n_per=10)
    start = time.perf_counter()
    res = compare(x, y, [bad, "greedy-balanced"],
                  CompareConfig(iters=2, timeout=1.5), log=lambda *_: None)  # from worker ready: solves take ms
    elapsed = time.perf_counter() - start
    check(res.row(bad))
    ok = res.row("greedy-balanced")
    assert ok["status"] == "ok" and ok["acc"] == pytest.approx(hungarian(res.labels["greedy-balanced"], y))
    assert elapsed < 100  # a hanging solver (120 s) is cut off


# --------------------------------------------------------------------------- the command
def test_cli_npy_files_table_csv_json_labels_png(only, tmp_path, capsys):
    """End to end in worker processes; every reported number is recomputed from labels.npz."""
    only("greedy,testplug")
    x, y = blobs(n_per=40, k=3, d=4, seed=11, scale=2.0)
    x[5, 1], x[17, 0] = np.nan, np.inf
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out"
    proc = cli(capsys, "--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy"),
               "--solvers", "greedy-balanced,test-argmax,test-softmax", "--iters", "5", "--seed", "2",
               "--solver-opt", "test-softmax.temperature=0.05", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "dropped 2 of 120 rows with NaN/inf values (indices 5, 17)" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("best "))
    assert header.split() == ["best", "solver", "status", "acc", "seconds", "nmi", "ari", "scale", "objective",
                              "size_min", "size_max", "size_entropy", "marginal_error", "rounds", "n_iters",
                              "converged", "mem_mb"]
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["dropped_rows"] == [5, 17] and report["info"]["n"] == 118
    saved = np.load(out / "labels.npz")
    keep = np.setdiff1d(np.arange(120), [5, 17])
    np.testing.assert_array_equal(saved["index"], keep)
    np.testing.assert_array_equal(saved["true"], y[keep])
    rows = {r["solver"]: r for r in report["rows"]}
    assert set(rows) == {"greedy-balanced", "test-argmax", "test-softmax"}
    assert rows["test-softmax"]["config"] == {"temperature": 0.05}
    import csv
    with open(out / "results.csv") as fh:
        csv_rows = {r["solver"]: r for r in csv.DictReader(fh)}
    for name, row in rows.items():
        pred = saved[f"solver:{name}"]
        assert pred.shape == (118,) and row["status"] == "ok"
        assert row["nmi"] == pytest.approx(normalized_mutual_info_score(y[keep], pred), abs=1e-12)
        assert row["ari"] == pytest.approx(adjusted_rand_score(y[keep], pred), abs=1e-12)
        assert row["acc"] == pytest.approx(hungarian(pred, y[keep]), abs=1e-12)
        sizes = np.bincount(pred, minlength=3)
        p = sizes / sizes.sum()
        assert (row["size_min"], row["size_max"]) == (sizes.min(), sizes.max())
        assert row["size_entropy"] == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum(), abs=1e-12)
        assert row["seconds"] > 0 and row["mem_mb"] >= 0
        assert float(csv_rows[name]["nmi"]) == pytest.approx(row["nmi"], abs=1e-12)
        assert f"{row['acc']:.4f}" in next(line for line in proc.stdout.splitlines()
                                           if line.split()[:2] in ([name, "ok"], ["*", name]))
    for name in ("greedy-balanced", "test-argmax"):  # hard solvers: marginal error from the sizes
        sizes = np.bincount(saved[f"solver:{name}"], minlength=3)
        assert rows[name]["marginal_error"] == pytest.approx(np.abs(sizes / 118 - 1 / 3).sum(), abs=1e-9)
    assert rows["greedy-balanced"]["size_max"] == 40  # capacity ceil(118 / 3)
    img = Image.open(out / "compare.png")
    img.load()
    assert img.size[0] > 400 and len(img.convert("RGB").getcolors(maxcolors=1 << 20)) > 1


def test_cli_pt_with_labels_default_k_and_every_registered_solver(only, tmp_path, capsys):
    """No --solvers: every registered solver runs, the built-ins (which always load) and the
    third-party greedy-balanced included; no --k: K is the number of label classes."""
    only("greedy,testplug")
    x, y = blobs(n_per=25, k=4, d=3, seed=3)
    torch.save({"features": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp_path / "f.pt")
    proc = cli(capsys, "--features", str(tmp_path / "f.pt"), "--iters", "3", "--isolation", "inline",
               "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["info"]["k"] == 4
    assert sorted(r["solver"] for r in report["rows"]) == sorted([
        "coke", "iic", "kmeans", "lp", "sinkhorn-gpu", "sinkhorn-pot",
        "greedy-balanced", "test-argmax", "test-needs-n-ge-k", "test-softmax"])
    assert any(line.split()[:2] in (["greedy-balanced", "ok"], ["*", "greedy-balanced"])
               for line in proc.stdout.splitlines() if line)


def test_cli_no_labels_needs_k(only, tmp_path, capsys):
    only("greedy")
    np.save(tmp_path / "f.npy", blobs(n_per=5)[0])
    proc = cli(capsys, "--features", str(tmp_path / "f.npy"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "expected --k when the features have no labels" in proc.stderr
    proc = cli(capsys, "--features", str(tmp_path / "f.npy"), "--k", "3", "--solvers", "greedy-balanced",
               "--isolation", "inline", "--timeout", "0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert "nmi" not in report["rows"][0] and "nmi" not in proc.stdout
    assert Image.open(tmp_path / "o" / "compare.png").size[0] > 400


def test_write_outputs_with_failed_row(only, tmp_path):
    only("greedy,testplug")
    x, y = blobs(n_per=3)
    res = compare(x, y, ["greedy-balanced", "test-needs-n-ge-k"], CompareConfig(k=12, **INLINE),
                  log=lambda *_: None)
    paths = write_outputs(res, tmp_path)
    report = json.loads(paths["json"].read_text())
    failed = next(r for r in report["rows"] if r["solver"] == "test-needs-n-ge-k")
    assert failed["status"] == "failed" and "N >= K" in failed["reason"]
    assert list(np.load(paths["labels"]).keys()) == ["solver:greedy-balanced", "index", "true"]


def test_compare_accepts_run_flag_names(only, tmp_path, capsys):
    only("greedy")
    np.save(tmp_path / "f.npy", blobs(n_per=5)[0])
    proc = cli(capsys, "--data", str(tmp_path / "f.npy"), "--n-clusters", "3", "--solvers", "greedy-balanced",
               "--iters", "2", "--isolation", "inline", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "o" / "results.json").read_text())["info"]["k"] == 3
