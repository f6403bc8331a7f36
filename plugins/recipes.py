"""The built-in training recipes, registered through the ``register_recipes`` hook like any plugin's.

SeLa, DeepCluster, SwAV, CoKe, IIC and AMDIM live in :mod:`assignsolve.train.recipes` (one module
per method); this plugin only registers them, under this package's ``assignsolve`` entry point.
"""

from __future__ import annotations

from assignsolve.plugin import hookimpl


@hookimpl
def register_recipes(register):
    from assignsolve.train.recipes import AMDIMOnly, CoKeRecipe, DeepCluster, IICRecipe, SeLa, SwAV

    for cls in (SeLa, DeepCluster, SwAV, CoKeRecipe, IICRecipe, AMDIMOnly):
        register(cls)
