"""A third-party distribution with an entry point named like a built-in one (``lp``): pluggy would
load one and silently skip the other; assignsolve refuses it naming both distributions."""

from __future__ import annotations

import importlib

import pytest

from assignsolve import cli
from assignsolve.core.errors import DuplicateNameError
from assignsolve.registry import manager


@pytest.fixture
def shadowing_dist(tmp_path, monkeypatch):
    info = tmp_path / "shadow_lp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow-lp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[assignsolve]\nlp = shadow_lp_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    manager.reset()
    yield
    manager.reset()


def test_entry_point_named_like_a_builtin_is_a_duplicate_name_error(shadowing_dist):
    with pytest.raises(DuplicateNameError) as info:
        manager.build_plugin_manager()
    msg = str(info.value)
    assert "'lp'" in msg and "'shadow-lp'" in msg and "'assignsolve'" in msg


def test_also_when_only_builtins_load_and_through_the_cli(shadowing_dist, monkeypatch, capsys):
    with pytest.raises(DuplicateNameError):
        manager.build_plugin_manager(only=[], builtins=True)
    monkeypatch.delenv(manager.ENV_VAR, raising=False)
    assert cli.main(["solvers"]) == 2
    assert "shadow-lp" in capsys.readouterr().err


def test_distinct_names_are_not_refused():
    import importlib.metadata as md

    eps = list(md.entry_points(group=manager.ENTRY_POINT_GROUP))
    manager.check_entry_point_names(eps)  # the installed set has no duplicates
    assert len({ep.name for ep in eps}) >= 1
