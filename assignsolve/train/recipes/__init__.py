"""Training recipes, one module per method (SeLa, DeepCluster, SwAV, CoKe, IIC, AMDIM)."""

from .amdim import AMDIMOnly
from .base import RelabelRecipe, Recipe
from .coke import CoKeRecipe
from .deepcluster import DeepCluster
from .iic import IICRecipe
from .sela import SeLa
from .swav import SwAV

RECIPES = {"sela": SeLa, "deepcluster": DeepCluster, "swav": SwAV, "coke": CoKeRecipe,
           "iic": IICRecipe, "amdim": AMDIMOnly}

__all__ = ["AMDIMOnly", "CoKeRecipe", "DeepCluster", "IICRecipe", "RECIPES", "Recipe", "RelabelRecipe", "SeLa", "SwAV"]
