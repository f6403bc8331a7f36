"""Plugin discovery: pluggy + the ``assignsolve`` entry-point group.

Built-in solvers are ordinary plugins listed in this package's own ``pyproject.toml``.
Set ``ASSIGNSOLVE_PLUGINS`` to a comma-separated list of entry-point names to load only
those (empty string: load none).
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata

import attrs
import pluggy

from . import hookspecs
from ..core.errors import (
    AssignsolveError,
    DuplicateNameError,
    UnknownEncoderError,
    UnknownPluginError,
    UnknownRecipeError,
    UnknownSolverError,
)

ENTRY_POINT_GROUP = "assignsolve"
ENV_VAR = "ASSIGNSOLVE_PLUGINS"


@attrs.frozen
class SolverEntry:
    name: str
    cls: type
    plugin: str
    description: str
    needs: str
    gpu: bool
    requires_n_ge_k: bool
    default_recipe: str | None = None
    recipe_options: Mapping[str, Mapping] = attrs.field(factory=dict)
    recipe_training: Mapping[str, Mapping] = attrs.field(factory=dict)


@attrs.frozen
class EncoderEntry:
    name: str
    factory: Callable
    plugin: str
    description: str


@attrs.frozen
class RecipeEntry:
    name: str
    cls: type
    plugin: str
    description: str


@attrs.frozen
class Registry:
    """Everything the loaded plugins registered, by name."""

    solvers: Mapping[str, SolverEntry]
    encoders: Mapping[str, EncoderEntry]
    recipes: Mapping[str, RecipeEntry] = attrs.field(factory=dict)


class PluginMetadataError(AssignsolveError, TypeError):
    """A registered class whose metadata has the wrong type (e.g. ``name`` not a ``ClassVar[str]``)."""


#: The distribution whose entry points are the built-in plugins (always loaded, see below).
BUILTIN_DISTRIBUTION = "assignsolve"


def _metadata(cls: type, attr: str, kinds: type | tuple, plugin: str, what: str, default=None, required=False):
    """Class attribute ``attr`` of ``cls``, checked: a plain attrs field (``name: str = "x"``) is an
    instance field whose class attribute is a slot descriptor, not the value."""
    value = getattr(cls, attr, default)
    if required and value in (None, ""):
        raise PluginMetadataError(f"plugin {plugin!r}: {what} {cls!r} needs a non-empty class attribute "
                                  f"{attr!r} (declare it as `{attr}: ClassVar[...] = ...`)")
    if value is not None and not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise PluginMetadataError(
            f"plugin {plugin!r}: {what} {getattr(cls, '__qualname__', cls)!r}: expected {attr!r} to be a "
            f"{names} class attribute, found {type(value).__name__} {value!r} (declare it as "
            f"`{attr}: ClassVar[{names}] = ...`; a plain attrs field is an instance field)")
    return value


def _is_builtin(ep) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.metadata["name"] == BUILTIN_DISTRIBUTION


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["name"] if dist is not None else "(unknown distribution)"


def check_entry_point_names(eps, names: Iterable[str] | None = None) -> None:
    """Two distributions with an entry point of the same name: pluggy would load the first and
    silently skip the other (a third-party ``lp`` could shadow the built-in ``lp``, or be ignored).
    Refused as a :class:`DuplicateNameError` naming both distributions."""
    wanted = None if names is None else set(names)
    seen: dict[str, tuple[str, str, str]] = {}
    for ep in eps:
        if wanted is not None and ep.name not in wanted:
            continue
        dist = _dist_name(ep)
        key = dist.lower().replace("_", "-").replace(".", "-")
        if ep.name in seen and seen[ep.name][0] != key:
            raise DuplicateNameError(
                f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} is declared by two distributions: "
                f"{seen[ep.name][1]!r} ({seen[ep.name][2]}) and {dist!r} ({ep.value}); uninstall or rename one")
        seen.setdefault(ep.name, (key, dist, ep.value))


def build_plugin_manager(only: Iterable[str] | None = None, builtins: bool = False) -> pluggy.PluginManager:
    """A fresh plugin manager with the entry-point plugins loaded.

    ``only=None``: every plugin. ``only=[names]``: only those plugins, plus, with ``builtins=True``,
    every built-in one (this package's own entry points). ``only=[]`` with ``builtins=False``
    loads nothing (for tests).
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    if only is None:
        check_entry_point_names(eps)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    else:
        available = {ep.name for ep in eps}
        for name in only:
            if name not in available:
                raise UnknownPluginError(name, available)
        wanted = set(only) | ({ep.name for ep in eps if _is_builtin(ep)} if builtins else set())
        check_entry_point_names(eps, wanted)
        for name in sorted(wanted):
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    pm.check_pending()
    return pm


def _only_from_env() -> tuple[str, ...] | None:
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    return tuple(n.strip() for n in value.split(",") if n.strip())


@functools.cache
def _cached(only: tuple[str, ...] | None) -> tuple[pluggy.PluginManager, Registry]:
    # ASSIGNSOLVE_PLUGINS restricts third-party plugins only: the built-in solvers, encoders and
    # recipes always load, so `run` keeps its default encoder and recipes.
    pm = build_plugin_manager(only, builtins=True)
    return pm, build_registry(pm)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use.

    ``ASSIGNSOLVE_PLUGINS=a,b`` loads only the third-party plugins ``a`` and ``b`` (empty: none);
    the built-in plugins of this package always load.
    """
    return _cached(_only_from_env())[0]


def get_registry() -> Registry:
    return _cached(_only_from_env())[1]


def reset() -> None:
    """Forget the cached plugin manager (after installing a plugin in-process, or in tests)."""
    _cached.cache_clear()


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every plugin's hooks, recording which plugin registered which name."""
    solvers: dict[str, SolverEntry] = {}
    encoders: dict[str, EncoderEntry] = {}
    recipes: dict[str, RecipeEntry] = {}

    def add(table: dict, entry) -> None:
        if entry.name in table:
            raise DuplicateNameError(
                f"{entry.name!r} registered twice: by plugin {table[entry.name].plugin!r} "
                f"and by plugin {entry.plugin!r}"
            )
        table[entry.name] = entry

    for impl in pm.hook.register_solvers.get_hookimpls():
        def register(cls: type, _plugin=impl.plugin_name) -> None:
            if not callable(cls):
                raise PluginMetadataError(f"plugin {_plugin!r}: expected a solver class, found {cls!r}")
            meta = functools.partial(_metadata, cls, plugin=_plugin, what="solver")
            name = meta("name", str, required=True)
            needs = meta("needs", str, default="scores")
            if needs not in ("scores", "features", "scores_or_features"):
                raise PluginMetadataError(f"plugin {_plugin!r}: solver {name!r}: expected needs in "
                                          f"('scores', 'features', 'scores_or_features'), found {needs!r}")
            options = meta("recipe_options", Mapping, default={}) or {}
            training = meta("recipe_training", Mapping, default={}) or {}
            add(solvers, SolverEntry(
                name=name, cls=cls, plugin=_plugin, description=_first_line(cls.__doc__),
                needs=needs, gpu=meta("gpu", bool, default=False),
                requires_n_ge_k=meta("requires_n_ge_k", bool, default=False),
                default_recipe=meta("default_recipe", str), recipe_options={k: dict(v) for k, v in options.items()},
                recipe_training={k: dict(v) for k, v in training.items()},
            ))
        impl.function(register=register)

    for impl in pm.hook.register_recipes.get_hookimpls():
        def register_recipe(cls: type, _plugin=impl.plugin_name) -> None:
            name = _metadata(cls, "name", str, _plugin, "recipe", required=True)
            add(recipes, RecipeEntry(name, cls, _plugin, _first_line(cls.__doc__)))
        impl.function(register=register_recipe)

    for impl in pm.hook.register_encoders.get_hookimpls():
        def register_encoder(name: str, factory: Callable, description: str = "", _plugin=impl.plugin_name) -> None:
            add(encoders, EncoderEntry(name, factory, _plugin, description or _first_line(factory.__doc__)))
        impl.function(register=register_encoder)

    return Registry(solvers=dict(sorted(solvers.items())), encoders=dict(sorted(encoders.items())),
                    recipes=dict(sorted(recipes.items())))


# ----------------------------------------------------------------- lookups
def list_solvers(pattern: str = "*", registry: Registry | None = None) -> list[str]:
    """Registered solver names matching a glob ``pattern`` (``"sinkhorn*"``)."""
    reg = registry or get_registry()
    return [n for n in reg.solvers if fnmatch.fnmatchcase(n, pattern)]


def solver_entry(name: str, registry: Registry | None = None) -> SolverEntry:
    reg = registry or get_registry()
    try:
        return reg.solvers[name]
    except KeyError:
        raise UnknownSolverError(name, reg.solvers) from None


def get_solver(name: str, registry: Registry | None = None, **config):
    """Instantiate the solver registered as ``name`` with configuration ``config``."""
    cls = solver_entry(name, registry).cls
    try:
        return cls(**config)
    except TypeError as exc:
        fields = [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []
        raise TypeError(f"solver {name!r}: bad configuration {config} ({exc}); accepted options: {fields}") from exc


def list_encoders(pattern: str = "*", registry: Registry | None = None) -> list[str]:
    reg = registry or get_registry()
    return [n for n in reg.encoders if fnmatch.fnmatchcase(n, pattern)]


def get_encoder(name: str, input_shape: tuple[int, ...], registry: Registry | None = None, **options):
    """Build encoder ``name`` for inputs of ``input_shape`` (without the batch dimension)."""
    reg = registry or get_registry()
    if name in reg.encoders:
        return reg.encoders[name].factory(input_shape, **options)
    prefix, sep, variant = name.partition(":")
    if sep and prefix + ":" in reg.encoders:
        return reg.encoders[prefix + ":"].factory(input_shape, variant=variant, **options)
    raise UnknownEncoderError(name, reg.encoders)


def list_recipes(pattern: str = "*", registry: Registry | None = None) -> list[str]:
    """Registered recipe names (``--method`` values) matching a glob ``pattern``."""
    reg = registry or get_registry()
    return [n for n in reg.recipes if fnmatch.fnmatchcase(n, pattern)]


def recipe_entry(name: str, registry: Registry | None = None) -> RecipeEntry:
    reg = registry or get_registry()
    try:
        return reg.recipes[name]
    except KeyError:
        raise UnknownRecipeError(name, reg.recipes) from None


def plugin_rows(pm: pluggy.PluginManager | None = None) -> list[dict]:
    """One row per loaded plugin: name, distribution and version, hooks implemented."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        dist = dists.get(id(plugin))
        rows.append({
            "name": name,
            "distribution": dist.metadata["name"] if dist else "",
            "version": dist.version if dist else "",
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or ()),
        })
    return rows
