"""--config files: a syntax error names file, line and column; a float for an integer option is refused."""

from __future__ import annotations

import pytest

from assignsolve import cli
from assignsolve.core.errors import TrainError
from assignsolve.train.config import load_config_file


@pytest.mark.parametrize("name,text,line,column", [
    ("bad.toml", 'epochs = 2\nsolver = "kmeans\n', 2, 17),       # string open at the end of line 2
    ("bad.json", '{"epochs": 2,\n "solver": }\n', 2, 12),         # value expected at line 2 col 12
    ("bad.yaml", "epochs: 2\nsolver: [kmeans\nlr: 1\n", 3, 3),    # flow sequence never closed
])
def test_syntax_error_names_file_line_column(tmp_path, name, text, line, column):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(TrainError) as info:
        load_config_file(p)
    msg = str(info.value)
    assert str(p) in msg and f"line {line}, column {column}" in msg, msg


def test_json_config_is_read(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"epochs": 3, "solver-opt": ["epsilon=0.1"]}')
    assert load_config_file(p) == {"epochs": 3, "solver_opt": ["epsilon=0.1"]}


@pytest.mark.parametrize("text,key", [("epochs = 1.5", "epochs"), ("epochs = true", "epochs"),
                                      ('lr = "fast"', "lr"), ("solver = 3", "solver"), ("limit = 2.0", "limit")])
def test_wrong_type_in_a_config_file_is_refused(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text + "\n")
    with pytest.raises(TrainError, match=rf"option '{key}': expected "):
        load_config_file(p)


def test_float_epochs_through_the_cli_is_exit_2_one_line(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text("epochs = 1.5\n")
    assert cli.main(["run", "--config", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs" in err[0] and "1.5" in err[0] and str(p) in err[0]
    assert not (tmp_path / "o").exists()
