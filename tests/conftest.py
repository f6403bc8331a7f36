"""Test session set-up.

The example third-party plugin (docs/examples/assignsolve-greedy) is registered in-process,
without pip or a build: its source folder goes on ``sys.path``/``PYTHONPATH`` and a temporary
folder gets a ``.dist-info`` whose ``entry_points.txt`` is read from the example's own
``pyproject.toml``, so ``importlib.metadata`` (and subprocesses started by the tests) find its
entry points exactly as for an installed distribution. Nothing is written into docs/. The real
``pip install`` is the slow test ``tests/registry/test_example_install.py``. If the example is
already installed, nothing is done.

Torch runs on one thread (here and, through ``OMP_NUM_THREADS``, in the subprocesses the tests
start) unless ``OMP_NUM_THREADS`` is set: on a small shared machine two intra-op threads per
test made tiny training runs up to ten times slower (``tests/train/test_train.py``'s resume
tests: 43 s against 11 s at load average 4.5 on 2 cores). Tests of threaded code paths set their
thread count themselves (the ``torch_threads`` fixture, or explicit ``workers``/``n_workers``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import torch

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
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    from assignsolve.registry import manager as plugins

    plugins.reset()



@pytest.fixture
def torch_threads() -> Iterator[int]:
    """Two torch intra-op threads for the test (restored after), so that the threaded code paths
    whose default worker count is ``torch.get_num_threads()`` run although the suite uses one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield 2
    finally:
        torch.set_num_threads(before)


@pytest.fixture()
def benchmark_script():
    """A loader of ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture()
def lp_asking(monkeypatch):
    """Makes the ``lp`` solver's entry declare ``recipe_training = {"sela": training}`` for the
    test, in place of its own (the built-in lp asks SeLa for SGD at 0.2 since 2026-12-07, with
    --warmup 0.1 since 2026-12-08);
    every other solver's entry is left as it is."""
    import attrs

    from assignsolve.registry import manager

    def ask(training: dict):
        original = manager.solver_entry
        entry = attrs.evolve(original("lp"), recipe_training={"sela": training})
        monkeypatch.setattr(manager, "solver_entry", lambda name, *a, **kw: entry if name == "lp" else original(name, *a, **kw))
        return entry
    return ask
