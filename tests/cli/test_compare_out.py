"""compare --out pointing at a file is refused before any solver runs."""

from __future__ import annotations

from assignsolve import cli


def test_compare_out_file_refused_before_solvers(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("assignsolve.cli.compare.compare", lambda *a, **k: calls.append(a))
    f = tmp_path / "results"
    f.write_text("keep")
    assert cli.main(["compare", "--out", str(f), "--solvers", "kmeans", "--isolation", "inline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and "expected a folder" in err[0]
    assert cli.main(["compare", "--out", str(f / "sub"), "--solvers", "kmeans", "--isolation", "inline"]) == 2
    assert calls == [] and f.read_text() == "keep"


def test_earlier_results_are_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--features", "digits", "--solvers", "kmeans", "--iters", "2", "--isolation", "inline",
            "--out", str(out)]
    assert cli.main(args) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"results.csv", "results.json", "labels.npz", "compare.png"} <= set(before)
    # a second compare into the same folder is refused before any solver runs, nothing changes
    assert cli.main(args[:-4] + ["--solvers", "sinkhorn-pot", "--isolation", "inline", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0] and "results.csv" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # --overwrite replaces them on purpose
    assert cli.main(args[:-4] + ["--solvers", "sinkhorn-pot", "--isolation", "inline", "--out", str(out),
                                 "--overwrite"]) == 0
    assert "sinkhorn-pot" in (out / "results.csv").read_text()
    assert "kmeans" not in (out / "results.csv").read_text()


def test_bad_config_values_are_one_line_exit_2_before_loading_data(tmp_path, monkeypatch, capsys):
    """CompareConfig's validators run before the data are read or any solver runs."""
    loads = []
    monkeypatch.setattr("assignsolve.compare.sources.load_source", lambda *a, **k: loads.append(a))
    for flags, message in ((["--iters", "0"], "iters: expected an int >= 1, found 0"),
                           (["--tol", "-1"], "tol: expected a number >= 0, found -1.0"),
                           (["--epsilon-rel", "0"], "epsilon_rel: expected a number > 0, found 0.0"),
                           (["--threads", "0"], "threads: expected an int >= 1, found 0"),
                           (["--n-clusters", "0"], "k: expected an int >= 1, found 0")):
        assert cli.main(["compare", *flags, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (flags, err)
    assert loads == [] and not (tmp_path / "o").exists()
