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
