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
from .errors import DuplicateNameError, UnknownEncoderError, UnknownPluginError, UnknownSolverError

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


@attrs.frozen
class EncoderEntry:
    name: str
    factory: Callable
    plugin: str
    description: str


@attrs.frozen
class Registry:
    """Everything the loaded plugins registered, by name."""

    solvers: Mapping[str, SolverEntry]
    encoders: Mapping[str, EncoderEntry]


def build_plugin_manager(only: Iterable[str] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with the entry-point plugins loaded (all, or only ``only``)."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if only is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    else:
        available = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        for name in only:
            if name not in available:
                raise UnknownPluginError(name, available)
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
    pm = build_plugin_manager(only)
    return pm, build_registry(pm)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use (honours ``ASSIGNSOLVE_PLUGINS``)."""
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

    def add(table: dict, entry) -> None:
        if entry.name in table:
            raise DuplicateNameError(
                f"{entry.name!r} registered twice: by plugin {table[entry.name].plugin!r} "
                f"and by plugin {entry.plugin!r}"
            )
        table[entry.name] = entry

    for impl in pm.hook.register_solvers.get_hookimpls():
        def register(cls: type, _plugin=impl.plugin_name) -> None:
            name = getattr(cls, "name", "")
            if not name or not callable(cls):
                raise TypeError(f"plugin {_plugin!r}: a solver class needs a non-empty 'name', found {cls!r}")
            add(solvers, SolverEntry(
                name=name, cls=cls, plugin=_plugin, description=_first_line(cls.__doc__),
                needs=getattr(cls, "needs", "scores"), gpu=bool(getattr(cls, "gpu", False)),
                requires_n_ge_k=bool(getattr(cls, "requires_n_ge_k", False)),
            ))
        impl.function(register=register)

    for impl in pm.hook.register_encoders.get_hookimpls():
        def register_encoder(name: str, factory: Callable, description: str = "", _plugin=impl.plugin_name) -> None:
            add(encoders, EncoderEntry(name, factory, _plugin, description or _first_line(factory.__doc__)))
        impl.function(register=register_encoder)

    return Registry(solvers=dict(sorted(solvers.items())), encoders=dict(sorted(encoders.items())))


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
