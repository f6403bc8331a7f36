"""The example plugin installed for real with pip, as a user would (slow: builds a wheel)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "assignsolve-greedy"


@pytest.mark.slow
def test_pip_install_then_entry_points_find_solver_and_recipe(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=600)
    assert list(target.glob("assignsolve_greedy-*.dist-info"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    env.pop("ASSIGNSOLVE_PLUGINS", None)
    code = ("from assignsolve.registry import manager as m; r = m.build_registry(m.build_plugin_manager(['greedy']));"
            "print(sorted(r.solvers), sorted(r.recipes), r.solvers['greedy-balanced'].default_recipe)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['greedy-balanced'] ['greedy-relabel'] greedy-relabel"
