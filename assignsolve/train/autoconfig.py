"""Defaults that adapt to the data: epochs, batch size, views, augmented repeats (``assignsolve run``).

Every value here is chosen only where the user gave none (``None`` / ``"auto"`` in
:class:`assignsolve.train.TrainConfig`); the resolved configuration is what the run saves
in ``config.json`` and every checkpoint. Measurements behind each choice: docs/training.md.
"""

from __future__ import annotations

import math

import attrs

from ..core.errors import TrainError

__all__ = ["RECIPE_BATCH", "RECIPE_REPEATS", "RECIPE_STRENGTH", "auto_batch_size", "auto_encoder", "auto_epochs",
           "auto_augment", "resolve_config", "with_solver_training", "SOLVER_TRAINING_KEYS"]

#: Mini-batch per recipe. IIC's MNIST runs use 128-700 images, each with several augmented
#: copies; 128 x 4 repeats reached 0.95 on 5,000 MNIST digits in 11 epochs (shared data README).
RECIPE_BATCH = {"iic": 128}
#: Augmented copies per clean image with the 'grey' views (IIC: ``--num_dataloaders 5`` on MNIST).
RECIPE_REPEATS = {"iic": 4}
#: Strength of the two augmented views on images smaller than 16 px (8x8 digits; larger images
#: that are not greyscale, and feature vectors, get 'default': not measured otherwise).
#: IIC's MI between two augmented views of 8x8 digits finds clusters of the augmentation, not the
#: digits, at 'default' (28 epochs: NMI 0.53, kNN 0.975 -> 0.73); at 'weak' NMI 0.864 / 0.848
#: (seeds 0 / 1). CoKe likewise: NMI 0.60 -> 0.78. SwAV is the same at both (0.873 / 0.874); the
#: one-view recipes lose at 'weak' (sela 0.81 -> 0.66, deepcluster 0.90 -> 0.88, lp 0.79 -> 0.68).
RECIPE_STRENGTH = {"iic": "weak", "coke": "weak"}


def auto_epochs(n_samples: int) -> int:
    """About 50,000 images seen, but at least 10 and at most 30 epochs (10 for 5,000+ images)."""
    return int(min(30, max(10, math.ceil(50_000 / max(n_samples, 1)))))


def auto_batch_size(base: int, n_samples: int, min_steps: int, floor: int = 32) -> int:
    """``base`` halved, but not below ``floor``, while an epoch of ``n_samples`` (one process's
    share) would have fewer than ``min_steps`` full mini-batches, the steps the loop takes (a
    recipe's ``min_epoch_steps``; 0: ``base`` as it is)."""
    batch = base
    while batch // 2 >= floor and n_samples // batch < min_steps:
        batch //= 2
    return batch


def auto_encoder(input_shape: tuple[int, ...]) -> str:
    """'convnet' (3x3 feature grid) for greyscale images of 16+ px, 'cnn' for other images, 'mlp' for vectors."""
    if len(input_shape) != 3:
        return "mlp"
    return "convnet" if input_shape[0] == 1 and min(input_shape[1:]) >= 16 else "cnn"


def auto_augment(input_shape: tuple[int, ...], recipe: str | None = None) -> str:
    """'grey' for one-channel images of at least 16 x 16 pixels (MNIST-like); the recipe's
    strength (:data:`RECIPE_STRENGTH`, 'default' for most) for images under 16 px; else 'default'.

    8x8 digits are too small for 25-degree rotations and 12 % shifts of a 1-pixel stroke.
    """
    if len(input_shape) != 3:
        return "default"
    if min(input_shape[1:]) < 16:
        return RECIPE_STRENGTH.get(recipe, "default")
    return "grey" if input_shape[0] == 1 else "default"


#: The training options a solver's ``recipe_training`` may set (hyper-parameters whose flag
#: defaults to "not given"; not the recipe, data, output or seed of the run)
SOLVER_TRAINING_KEYS = ("n_heads", "overcluster", "head_bn", "epochs", "batch_size", "optimizer", "lr",
                        "lr_schedule", "warmup", "relabel_every", "temperature", "pca_dim", "repeats",
                        "freeze_prototypes")


def with_solver_training(cfg):
    """``cfg`` with the solver's ``recipe_training`` for this run's recipe, for the options the
    user left unset (``lr`` only while the optimiser is the one the value is for: the solver's
    ``optimizer`` when it names one, else the recipe's own). A name outside
    :data:`SOLVER_TRAINING_KEYS`, or a value the option's validator refuses, is a
    :class:`TrainError` naming the solver."""
    from ..registry.manager import recipe_entry, solver_entry

    wanted = solver_entry(cfg.solver).recipe_training.get(cfg.recipe, {})
    meant_for = wanted.get("optimizer", recipe_entry(cfg.recipe).cls.default_optimizer)
    own_optimizer = cfg.optimizer in (None, meant_for)
    out = {}
    for key, value in wanted.items():
        if key not in SOLVER_TRAINING_KEYS:
            raise TrainError(f"solver {cfg.solver!r}: recipe_training[{cfg.recipe!r}] names {key!r}, "
                             f"which is not a training option it may set ({', '.join(SOLVER_TRAINING_KEYS)})")
        if getattr(cfg, key) is None and (key != "lr" or own_optimizer):
            out[key] = value
    try:
        return attrs.evolve(cfg, **out)  # the options' own validators
    except (TypeError, ValueError) as exc:
        raise TrainError(f"solver {cfg.solver!r}: recipe_training[{cfg.recipe!r}]: {exc}") from exc


def resolve_config(cfg, n_samples: int, input_shape: tuple[int, ...], world: int = 1):
    """``cfg`` with the solver's training defaults for its recipe (:func:`with_solver_training`),
    then epochs, batch size, warm-up, augmentation, stroke jitter and repeats filled in from the
    data and recipe (the batch per process from each of the ``world`` processes' share of the
    samples)."""
    from ..registry.manager import recipe_entry

    cfg = with_solver_training(cfg)
    recipe = cfg.recipe
    changes = {}
    if cfg.encoder == "auto":
        changes["encoder"] = auto_encoder(tuple(input_shape))
    if cfg.epochs is None:
        changes["epochs"] = auto_epochs(n_samples)
    recipe_cls = recipe_entry(recipe).cls
    if cfg.batch_size is None:
        changes["batch_size"] = auto_batch_size(RECIPE_BATCH.get(recipe, 256), math.ceil(n_samples / world),
                                                recipe_cls.min_epoch_steps)
    if cfg.warmup is None:
        warm = recipe_cls.default_warmup
        if isinstance(warm, bool) or not isinstance(warm, (int, float)) or not 0 <= warm <= 1:
            raise TrainError(f"recipe {recipe!r}: default_warmup must be a number in [0, 1], found {warm!r}")
        changes["warmup"] = float(warm)
    augment = cfg.augment if cfg.augment != "auto" else auto_augment(tuple(input_shape), recipe)
    changes["augment"] = augment
    if cfg.repeats not in (None, 1) and augment != "grey":
        raise TrainError(f"--repeats {cfg.repeats}: augmented copies are made by the 'grey' views only, "
                         f"and the augmentation here is {augment!r} (give --augment grey, or drop --repeats)")
    if cfg.stroke_jitter not in (None, 0) and augment != "grey":
        raise TrainError(f"--stroke-jitter {cfg.stroke_jitter}: stroke widths are varied by the 'grey' views only, "
                         f"and the augmentation here is {augment!r} (give --augment grey, or drop --stroke-jitter)")
    if cfg.stroke_jitter is None:
        changes["stroke_jitter"] = recipe_cls.default_stroke_jitter if augment == "grey" else 0.0
    if cfg.repeats is None:
        two_views = recipe_cls.two_views
        changes["repeats"] = RECIPE_REPEATS.get(recipe, 1) if (augment == "grey" and two_views) else 1
    return attrs.evolve(cfg, **changes)
