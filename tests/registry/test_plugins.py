"""Plugin discovery through entry points, the registry, and the plugin-facing CLI commands."""

import os
import subprocess
import sys
import types

import attrs
import numpy as np
import pluggy
import pytest

import assignsolve
from assignsolve import hookimpl
from assignsolve.registry import hookspecs
from assignsolve.registry import manager as plugins
from assignsolve.core.errors import (
    DuplicateNameError, MissingDependencyError, UnknownEncoderError, UnknownPluginError,
    UnknownSolverError, optional_import,
)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "assignsolve", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_example_plugin_is_discovered_and_solves():
    entry = plugins.solver_entry("greedy-balanced")
    assert entry.plugin == "greedy" and entry.needs == "scores" and not entry.gpu
    # greedy on a case where the answer is known: each sample's best cluster has room
    scores = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 4.0]])
    result = assignsolve.solve(assignsolve.Problem(scores=scores), "greedy-balanced")
    assert result.labels.tolist() == [0, 1, 0, 1] and result.objective == 18.0
    # capacity 2 forces the third sample (prefers 0) into cluster 1
    scores = np.array([[5.0, 0.0], [4.0, 0.0], [3.0, 2.0], [0.0, 1.0]])
    result = assignsolve.solve(assignsolve.Problem(scores=scores), "greedy-balanced")
    assert result.labels.tolist() == [0, 0, 1, 1] and result.solver == "greedy-balanced"


def test_list_solvers_glob():
    assert assignsolve.list_solvers("greedy*") == ["greedy-balanced"]
    assert assignsolve.list_solvers("no-such-*") == []


def test_unknown_solver_suggests_close_matches():
    with pytest.raises(UnknownSolverError) as info:
        assignsolve.get_solver("greedy-balance")
    message = str(info.value)
    assert "unknown solver 'greedy-balance'; did you mean 'greedy-balanced'?" in message
    assert "Available:" in message


def test_bad_solver_configuration_lists_options():
    with pytest.raises(TypeError, match=r"accepted options: \['slack'\]"):
        assignsolve.get_solver("greedy-balanced", epsilon=0.1)


def test_restricting_plugins_by_name():
    pm = plugins.build_plugin_manager(only=["greedy"])
    assert [name for name, _ in pm.list_name_plugin()] == ["greedy"]
    assert list(plugins.build_registry(pm).solvers) == ["greedy-balanced"]
    assert plugins.build_plugin_manager(only=[]).get_plugins() == set()
    with pytest.raises(UnknownPluginError, match="did you mean 'greedy'"):
        plugins.build_plugin_manager(only=["greedyy"])


BUILTIN_SOLVERS = ["coke", "iic", "kmeans", "lp", "sinkhorn-gpu", "sinkhorn-pot"]


def test_builtins_are_kept_when_restricting_by_name():
    pm = plugins.build_plugin_manager(only=["greedy"], builtins=True)
    registry = plugins.build_registry(pm)
    assert list(registry.solvers) == sorted(BUILTIN_SOLVERS + ["greedy-balanced"])
    assert "cnn" in registry.encoders and "swav" in registry.recipes


@pytest.mark.parametrize("selected,command,expected", [
    ("greedy", ["solvers"], sorted(BUILTIN_SOLVERS + ["greedy-balanced"])),
    ("", ["solvers"], BUILTIN_SOLVERS),
    ("greedy", ["encoders", "cnn"], ["cnn"]),
])
def test_environment_variable_restricts_third_party_plugins_in_the_cli(selected, command, expected):
    # ASSIGNSOLVE_PLUGINS selects third-party plugins; the built-ins always load (run needs cnn, swav)
    out = cli(*command, env={"ASSIGNSOLVE_PLUGINS": selected})
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()[2:]] == expected


def test_cli_plugins_lists_name_version_hooks():
    out = cli("plugins")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("greedy "))
    assert row.split() == ["greedy", "assignsolve-greedy", "0.1.0", "register_recipes,", "register_solvers"]


def test_cli_solvers_shows_needs_and_gpu():
    out = cli("solvers", "greedy*")
    assert out.returncode == 0, out.stderr
    header, _, row = out.stdout.splitlines()
    assert header.split() == ["name", "needs", "gpu", "plugin", "description"]
    assert row.split()[:4] == ["greedy-balanced", "scores", "no", "greedy"]


def test_cli_unknown_plugin_is_a_clean_error():
    out = cli("solvers", env={"ASSIGNSOLVE_PLUGINS": "greddy"})
    assert out.returncode == 2
    assert "unknown plugin 'greddy'; did you mean 'greedy'?" in out.stderr


def _manager(*modules):
    pm = pluggy.PluginManager("assignsolve")
    pm.add_hookspecs(hookspecs)
    for i, module in enumerate(modules):
        pm.register(module, name=f"plugin{i}")
    return pm


def _solver_module(solver_name):
    @attrs.frozen
    class Dummy(assignsolve.BaseSolver):
        """A dummy."""
        name = solver_name

    module = types.ModuleType(f"mod_{solver_name}")
    module.register_solvers = hookimpl(lambda register: register(Dummy))
    return module


def test_duplicate_names_name_both_plugins():
    pm = _manager(_solver_module("same"), _solver_module("same"))
    with pytest.raises(DuplicateNameError, match="'same' registered twice: by plugin 'plugin0' and by plugin 'plugin1'"):
        plugins.build_registry(pm)


def test_check_pending_rejects_unknown_hooks():
    module = types.ModuleType("typo")
    module.register_solver = hookimpl(lambda register: None)  # misspelt hook name
    pm = _manager(module)
    with pytest.raises(pluggy.PluginValidationError, match="register_solver"):
        pm.check_pending()


def test_encoder_families_and_unknown_encoders():
    calls = []
    module = types.ModuleType("enc")
    module.register_encoders = hookimpl(
        lambda register: register("fam:", lambda shape, variant, **kw: calls.append((shape, variant, kw)), "family"))
    registry = plugins.build_registry(_manager(module))
    plugins.get_encoder("fam:tiny", (3, 8, 8), registry=registry, width=2)
    assert calls == [((3, 8, 8), "tiny", {"width": 2})]
    with pytest.raises(UnknownEncoderError, match="unknown encoder 'fan:tiny'"):
        plugins.get_encoder("fan:tiny", (3, 8, 8), registry=registry)


def test_missing_optional_dependency_message():
    with pytest.raises(MissingDependencyError, match="TensorBoard logging needs the optional package 'no_such_module_xyz'"):
        optional_import("no_such_module_xyz", "TensorBoard logging")


def test_plain_attrs_metadata_field_fails_clearly():
    @attrs.frozen
    class Mine(assignsolve.BaseSolver):
        """Metadata written as an attrs field: an instance field, the class sees a slot descriptor."""
        name: str = "mine"

    module = types.ModuleType("mine")
    module.register_solvers = hookimpl(lambda register: register(Mine))
    with pytest.raises(plugins.PluginMetadataError,
                       match=r"plugin 'plugin0': solver .*Mine.*expected 'name' to be a str class attribute, "
                             r"found member_descriptor .*ClassVar\[str\]"):
        plugins.build_registry(_manager(module))
    assert issubclass(plugins.PluginMetadataError, assignsolve.AssignsolveError)


def test_bad_needs_and_missing_recipe_name_fail_clearly():
    class Odd(assignsolve.BaseSolver):
        name = "odd"
        needs = "pixels"

    class NoName:
        """A recipe without a name."""

    module = types.ModuleType("odd")
    module.register_solvers = hookimpl(lambda register: register(Odd))
    with pytest.raises(plugins.PluginMetadataError, match="expected needs in .* found 'pixels'"):
        plugins.build_registry(_manager(module))
    module = types.ModuleType("noname")
    module.register_recipes = hookimpl(lambda register: register(NoName))
    with pytest.raises(plugins.PluginMetadataError, match="needs a non-empty class attribute 'name'"):
        plugins.build_registry(_manager(module))


def test_example_plugin_registered_in_process():
    """The example module itself, registered with pluggy in this process (no entry points)."""
    import assignsolve_greedy

    registry = plugins.build_registry(_manager(assignsolve_greedy))
    assert list(registry.solvers) == ["greedy-balanced"] and list(registry.recipes) == ["greedy-relabel"]
    entry = registry.solvers["greedy-balanced"]
    assert (entry.default_recipe, entry.recipe_options, entry.needs) == ("greedy-relabel", {}, "scores")
    assert entry.recipe_training == {}
    recipe = registry.recipes["greedy-relabel"].cls
    from assignsolve.train.recipes import Recipe

    assert issubclass(recipe, Recipe) and recipe.name == "greedy-relabel" and not recipe.two_views


def test_builtin_solvers_declare_their_recipes():
    reg = plugins.get_registry()
    assert {n: reg.solvers[n].default_recipe for n in ["coke", "iic", "kmeans", "lp", "sinkhorn-gpu", "sinkhorn-pot"]} == {
        "coke": "coke", "iic": "iic", "kmeans": "deepcluster", "lp": "sela", "sinkhorn-gpu": "swav",
        "sinkhorn-pot": "sela"}
    assert reg.solvers["sinkhorn-gpu"].recipe_options == {"sela": {"epsilon": 0.1}, "swav": {"mode": "swav", "epsilon": 0.05, "max_iter": 10}}
    assert reg.solvers["kmeans"].recipe_options == {"deepcluster": {"n_init": "auto"}}
    assert reg.solvers["coke"].recipe_options == {"coke": {"gamma": 0.8}}
    assert {n: e.recipe_training for n, e in reg.solvers.items() if e.recipe_training} == {"lp": {"sela": {"optimizer": "sgd", "lr": 0.2, "warmup": 0.1}}}
    builtin = {n for n, e in reg.recipes.items() if e.plugin == "recipes"}
    assert builtin == {"amdim", "coke", "deepcluster", "iic", "sela", "swav"}
