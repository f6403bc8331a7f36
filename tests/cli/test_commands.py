"""The listing commands import only what they list (speed lives in benchmarks/, this checks the cause)."""

import subprocess
import sys

import pytest

HEAVY = ("sklearn", "assignsolve.compare", "assignsolve.train.loop", "assignsolve.train.context",
         "assignsolve.cli.run", "assignsolve.cli.compare", "matplotlib", "kornia", "cvxpy")


@pytest.mark.parametrize("command", ["solvers", "encoders", "plugins", "recipes"])
def test_listing_commands_do_not_import_training_compare_or_sklearn(command):
    code = ("import io, contextlib, sys\nfrom assignsolve.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    rc = main([{command!r}])\n"
            f"print(rc, sorted(m for m in sys.modules if m.startswith({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 []"


def test_options_parser_types_values():
    from assignsolve.cli.options import format_table, parse_kv, parse_value

    assert [parse_value(v) for v in ["true", "Off", "3", "-2", "0.5", "1e-3", "None", "'x'", "abc"]] == [
        True, False, 3, -2, 0.5, 1e-3, None, "x", "abc"]
    assert parse_kv(["a=1", " b = false "], "--x") == {"a": 1, "b": False}
    with pytest.raises(Exception, match="--x: expected KEY=VALUE, found 'a'"):
        parse_kv(["a"], "--x")
    assert format_table([{"a": 1, "bb": "xyz"}], ["a", "bb"]).splitlines() == ["a  bb", "-  ---", "1  xyz"]
