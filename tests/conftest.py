"""Test session set-up.

The example third-party plugin (docs/examples/assignsolve-greedy) is registered in-process,
without pip or a build: its source folder goes on ``sys.path``/``PYTHONPATH`` and a temporary
folder gets a ``.dist-info`` whose ``entry_points.txt`` is read from the example's own
``pyproject.toml``, so ``importlib.metadata`` (and subprocesses started by the tests) find its
entry points exactly as for an installed distribution. Nothing is written into docs/. The real
``pip install`` is the slow test ``tests/registry/test_example_install.py``. If the example is
already installed, nothing is done.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "assignsolve-greedy"


def _register_example() -> list[str]:
    """Paths to prepend to ``sys.path`` so the example is a discoverable distribution."""
    try:
        metadata.distribution("assignsolve-greedy")
        return []
    except metadata.PackageNotFoundError:
        pass
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = Path(tempfile.mkdtemp(prefix="assignsolve-example-plugin-"))
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()))
    return [str(site), str(EXAMPLE)]


def pytest_configure(config):
    paths = _register_example()
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")  # subprocesses write nothing into docs/
    sys.dont_write_bytecode = True
    os.environ.pop("ASSIGNSOLVE_PLUGINS", None)
    from assignsolve.registry import manager as plugins

    plugins.reset()
