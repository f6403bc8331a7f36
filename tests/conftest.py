"""Test session set-up.

The example third-party plugin (docs/examples/assignsolve-greedy) is pip-installed for the
session, as a user would install it, into a temporary ``--target`` directory placed on
``sys.path`` and ``PYTHONPATH``; entry points are then discovered by ``importlib.metadata``
exactly as for any installed distribution. If it is already installed, nothing is done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "assignsolve-greedy"


def _install_example() -> str | None:
    try:
        metadata.distribution("assignsolve-greedy")
        return None
    except metadata.PackageNotFoundError:
        pass
    target = tempfile.mkdtemp(prefix="assignsolve-example-plugin-")
    # build from a copy, so that setuptools writes no build/ or egg-info into docs/
    source = Path(tempfile.mkdtemp(prefix="assignsolve-example-src-")) / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", target, str(source)],
        check=True,
    )
    return target


def pytest_configure(config):
    target = _install_example()
    if target is not None:
        sys.path.insert(0, target)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [target, os.environ.get("PYTHONPATH")]))
    os.environ.pop("ASSIGNSOLVE_PLUGINS", None)
    from assignsolve.registry import manager as plugins

    plugins.reset()
