"""Train an encoder on pseudo-labels from any registered solver (``assignsolve run``).

:mod:`.config` (the flags), :mod:`.model`, :mod:`.assigner` (the solver as the loop sees it),
:mod:`.recipes` (one module per method), :mod:`.context` (evaluation, metrics log) and
:mod:`.loop` (``run``: the phases, top to bottom). Names are imported lazily, so that
``import assignsolve.train.config`` (what the CLI needs for ``run --help``) stays cheap.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "TrainConfig": "config", "METHODS": "config", "add_arguments": "config", "config_from_args": "config",
    "default_method": "config", "deepcluster_pca_dim": "config", "load_config_file": "config",
    "DEFAULT_LR": "config", "RECIPE_OPTIMIZER": "config",
    "Assigner": "assigner", "Context": "context", "MetricsLog": "context", "evaluate": "context",
    "LocalMaps": "model", "LocalProjection": "model", "Model": "model",
    "run": "loop", "main": "loop",
    "RECIPES": "recipes", "Recipe": "recipes", "SeLa": "recipes", "DeepCluster": "recipes", "SwAV": "recipes",
    "CoKeRecipe": "recipes", "IICRecipe": "recipes", "AMDIMOnly": "recipes",
}
_ELSEWHERE = {"TrainError": "assignsolve.core.errors", "Dist": "assignsolve.ops.dist"}

__all__ = sorted([*_WHERE, *_ELSEWHERE])


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
