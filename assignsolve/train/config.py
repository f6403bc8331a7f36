"""The run's configuration: :class:`TrainConfig` (every flag of ``assignsolve run``), config files."""

from __future__ import annotations

import argparse
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..core.errors import TrainError
from ..cli.options import parse_kv, parse_value  # noqa: F401  (parse_value: re-exported)
from ..core.validators import at_least, at_most, choice, is_int
from ..registry.manager import solver_entry


#: the built-in recipes (``assignsolve recipes`` lists every registered one, plugins' too)
METHODS = ("sela", "deepcluster", "swav", "coke", "iic", "amdim")
LR_SCHEDULES = ("constant", "cosine")
#: ``--head-bn``: standardise the cluster heads' input always, only on globally pooled features, or never
HEAD_BN = ("on", "pooled", "off")


_at_least = functools.partial(at_least, error=TrainError)
_at_most = functools.partial(at_most, error=TrainError)
_choice = functools.partial(choice, error=TrainError)


def _registered_recipe(instance, attribute, value):
    if value is None:
        return
    from ..registry.manager import list_recipes

    known = list_recipes()
    if value not in known:
        raise TrainError(f"{attribute.name}: expected one of {known}, found {value!r}")


def _below_one(value) -> None:
    if not value < 1:
        raise TrainError(f"holdout: expected a fraction in [0, 1), found {value!r}")


def head_bn_for(head_bn: str | None, recipe: str) -> str:
    """The heads' normalisation as used: ``head_bn`` when given, else ``recipe``'s ``default_head_bn``
    (:class:`KeyError` for a recipe that is not registered)."""
    from ..registry.manager import recipe_entry

    return head_bn or recipe_entry(recipe).cls.default_head_bn


def _yaml_switch(value):
    """YAML reads an unquoted on / off as true / false: back to the words."""
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


def _opts(value) -> dict:
    return dict(value or {})


@attrs.frozen
class TrainConfig:
    """Everything a run depends on (saved in every checkpoint). Field = flag with ``-`` for ``_``."""

    data: str = "digits"
    image_size: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    limit: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    data_dir: str | None = None
    test_data: str | None = None
    test_labels: str | None = None
    download: bool = True
    holdout: float = attrs.field(default=0.0, validator=[_at_least(0), lambda i, a, v: _below_one(v)])
    data_mode: str = attrs.field(default="auto", validator=_choice(("auto", "memory", "stream")))
    workers: int = attrs.field(default=0, validator=is_int(0, error=TrainError))
    encoder: str = "auto"
    encoder_opt: dict = attrs.field(factory=dict, converter=_opts)
    solver: str = "sinkhorn-gpu"
    solver_opt: dict = attrs.field(factory=dict, converter=_opts)
    method: str | None = attrs.field(default=None, validator=_registered_recipe)
    n_clusters: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    n_heads: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    overcluster: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    head_bn: str | None = attrs.field(default=None, converter=_yaml_switch,
                                      validator=attrs.validators.optional(_choice(HEAD_BN)))
    epochs: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    batch_size: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    optimizer: str | None = attrs.field(default=None, validator=attrs.validators.optional(_choice(("adam", "sgd"))))
    lr: float | None = attrs.field(default=None, validator=_at_least(0, optional=True))
    lr_schedule: str | None = attrs.field(default=None,
                                          validator=attrs.validators.optional(_choice(LR_SCHEDULES)))
    warmup: float | None = attrs.field(default=None, validator=[_at_least(0, optional=True),
                                                                _at_most(1, optional=True)])
    momentum: float = attrs.field(default=0.9, validator=_at_least(0))
    weight_decay: float = attrs.field(default=1e-5, validator=_at_least(0))
    relabel_every: float | None = attrs.field(default=None, validator=_at_least(0.001, optional=True))
    temperature: float | None = attrs.field(default=None, validator=_at_least(1e-6, optional=True))
    queue_size: int = attrs.field(default=0, validator=_at_least(0))
    proj_dim: int = attrs.field(default=128, validator=_at_least(1))
    hidden_dim: int = attrs.field(default=512, validator=_at_least(0))
    pca_dim: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    iic_lamb: float = attrs.field(default=1.1, validator=_at_least(1e-6))
    coke_alpha: float = attrs.field(default=0.2, validator=[_at_least(0), _at_most(1)])
    amdim_weight: float = attrs.field(default=0.0, validator=_at_least(0))
    amdim_clip: float = attrs.field(default=20.0, validator=_at_least(1e-6))
    amdim_reg: float = attrs.field(default=0.05, validator=_at_least(0))
    augment: str = attrs.field(default="auto")
    repeats: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    stroke_jitter: float | None = attrs.field(default=None, validator=[_at_least(0, optional=True),
                                                                       _at_most(1, optional=True)])
    freeze_prototypes: int | None = attrs.field(default=None, validator=_at_least(0, optional=True))
    small_crops: int = attrs.field(default=0, validator=_at_least(0))
    seed: int = attrs.field(default=0, validator=_at_least(0))
    device: str = "auto"
    amp: bool = False
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    eval_every: int = attrs.field(default=1, validator=_at_least(1))
    knn_k: int = attrs.field(default=20, validator=_at_least(1))
    tensorboard: bool = False
    probe_every: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    wandb: bool = False
    progress: bool = True

    @property
    def recipe(self) -> str:
        return self.method or default_method(self.solver)

    @property
    def optimizer_lr(self) -> tuple[str, float]:
        """(optimizer, lr): the flags when given, else the recipe's optimiser and its learning rate."""
        from ..registry.manager import recipe_entry

        name = self.optimizer or recipe_entry(self.recipe).cls.default_optimizer
        return name, self.lr if self.lr is not None else DEFAULT_LR[name]

    @property
    def temperature_used(self) -> float:
        """``--temperature`` when given, else the recipe's ``default_temperature``."""
        from ..registry.manager import recipe_entry

        if self.temperature is not None:
            return self.temperature
        return recipe_entry(self.recipe).cls.default_temperature

    @property
    def n_heads_used(self) -> int:
        """``--n-heads`` when given, else the recipe's ``default_heads``."""
        from ..registry.manager import recipe_entry

        if self.n_heads is not None:
            return self.n_heads
        return recipe_entry(self.recipe).cls.default_heads

    @property
    def head_bn_used(self) -> str:
        """``--head-bn`` when given, else the recipe's ``default_head_bn``."""
        return head_bn_for(self.head_bn, self.recipe)

    @property
    def relabel_every_used(self) -> float:
        """``--relabel-every`` when given, else the recipe's ``default_relabel_every``."""
        from ..registry.manager import recipe_entry

        if self.relabel_every is not None:
            return self.relabel_every
        return recipe_entry(self.recipe).cls.default_relabel_every

    @property
    def lr_schedule_used(self) -> str:
        """``--lr-schedule`` when given, else the recipe's ``default_lr_schedule``."""
        from ..registry.manager import recipe_entry

        return self.lr_schedule or recipe_entry(self.recipe).cls.default_lr_schedule


def scheduled_lr(base: float, schedule: str, progress: float) -> float:
    """The learning rate at ``progress`` in [0, 1] of the run: ``base``, or SwAV's cosine decay
    ``base * (1 + cos(pi * progress)) / 2`` (``main_swav.py``, without its warm-up; it ends at 0
    where SwAV ends at 0.0006 / 4.8 of the base)."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise TrainError(f"lr_schedule: expected one of {list(LR_SCHEDULES)}, found {schedule!r}")


def warmup_epochs(fraction: float, epochs: int) -> int:
    """Whole epochs of warm-up, as SwAV counts them (``--warmup_epochs``): the fraction
    ``--warmup`` of ``--epochs``, rounded up (0.2 of 28 epochs: 6; of 10: 2; 0: none). The product
    is rounded to 6 decimals first, so 0.55 x 100 = 55.00000000000001 is 55 epochs, not 56."""
    return math.ceil(round(fraction * epochs, 6))


def warmup_factor(done_epochs: float, warmup: int) -> float:
    """The share of the scheduled learning rate under a linear warm-up over ``warmup`` epochs:
    ``min(1, done / warmup)``, ``done`` the epochs completed at the end of the step, so the first
    step takes 1/steps of the rate where SwAV's ``main_swav.py`` (``np.linspace(start_warmup,
    base_lr, ...)``) starts at ``start_warmup`` = 0; 1 without warm-up."""
    return min(1.0, done_epochs / warmup) if warmup > 0 else 1.0


#: Optimiser and learning rate when --optimizer/--lr are not given. DeepCluster (Caron et al.
#: 2018, Sec. 4): SGD, lr 0.05, momentum 0.9; with Adam, every epoch's fresh top layer sends
#: near-zero but Adam-normalised (so full-size) updates into the encoder, which drifts
#: (measured on digits: pseudo-label NMI 0.78 -> 0.77 with Adam, -> 0.83 with SGD; docs/training.md).
#: SeLa (Asano et al. 2020, yukimasano/self-label): SGD, lr 0.05, momentum 0.9 (measured: the
#: comment on ``SeLa.default_optimizer``, docs/training.md).
#: (declared on each recipe as ``default_optimizer``; this table shows the built-ins')
RECIPE_OPTIMIZER = {"deepcluster": "sgd", "sela": "sgd"}


DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}


def deepcluster_pca_dim(feat_dim: int, n_clusters: int, n_samples: int) -> int:
    """DeepCluster's PCA-whitening dimension for features of width ``feat_dim``.

    DeepCluster keeps 256 of AlexNet's 4096 dimensions (K = 10,000). Whitening many more
    dimensions than the clusters need blows near-constant directions up to unit variance and
    buries the cluster structure the training concentrates in a few (digits, ``cnn``, 30 epochs:
    NMI 0.79 -> 0.48 at 256 of 256, 0.83-0.88 at 32; 5,000 MNIST digits, ``convnet`` (1152-d),
    10 epochs: accuracy 0.51 at 144, 0.76 at 32, 0.80-0.81 at 16-20, 0.69 at 10; tables in
    docs/training.md). So: 256, at most ``feat_dim // 8`` and ``2 K``, but never fewer than K
    (K class means span K - 1 dimensions), and at most ``feat_dim`` and ``N - 1``.
    """
    return max(1, min(256, max(n_clusters, min(feat_dim // 8, 2 * n_clusters)), feat_dim, n_samples - 1))


def default_method(solver: str) -> str:
    """Recipe used when ``--method`` is not given: the solver's ``default_recipe`` (its own paper),
    else DeepCluster for a feature solver and SeLa for a score solver."""
    entry = solver_entry(solver)
    if entry.default_recipe is not None:
        return entry.default_recipe
    return "deepcluster" if entry.needs == "features" else "sela"


_FLAGS: list[tuple[str, Any, str | None, str]] = [
    ("data", str, "SOURCE", "'digits' (bundled 8x8 digits), an ImageFolder directory, a CIFAR-10 "
     "python batch directory, or a .npy/.npz/.pt file of images [N,C,H,W] or features [N,D]"),
    ("image_size", int, "PX", "resize ImageFolder images to PX x PX (default: the first image's size)"),
    ("limit", int, "N", "train on a random subset of N samples (seeded; for quick checks; default: all)"),
    ("data_dir", str, "DIR", "folder of the named datasets (mnist, cifar10, cifar100, stl10; default: "
     "$ASSIGNSOLVE_DATA_DIR or ~/.cache/assignsolve/datasets)"),
    ("test_data", str, "PATH", "held-out source for --probe-every and 'assignsolve eval' (overrides a test split in --data)"),
    ("test_labels", str, "PATH", ".npy/.pt file of integer labels of the test split"),
    ("download", bool, None, "fetch a named dataset missing from --data-dir (--no-download: fail instead)"),
    ("holdout", float, "F", "with a source that has no test split: hold out a seeded stratified fraction F "
     "(e.g. 0.2) that training never sees, for --probe-every and 'assignsolve eval' (0: train on all)"),
    ("data_mode", str, "MODE", "where an ImageFolder's images live: 'memory' (read into one tensor), "
     "'stream' (decoded from disk batch by batch through a torch DataLoader, for ImageNet-size folders), "
     "'auto' (stream when the folder's float32 tensor would exceed 1 GiB; the run log says which); "
     "other sources are always read into memory"),
    ("workers", int, "N", "DataLoader worker processes decoding streamed images (0: in the training process)"),
    ("encoder", str, "NAME", "registered encoder (see 'assignsolve encoders'): cnn, convnet, mlp, resnet18, "
     "resnet50, timm:... ('auto': convnet for greyscale images of 16+ px, cnn for other images, mlp for "
     "feature vectors)"),
    ("encoder_opt", "kv", "KEY=VALUE", "encoder option, repeatable (e.g. width=32, cifar_stem=true)"),
    ("solver", str, "NAME", "registered solver, by name (see 'assignsolve solvers'); third-party plugins work too"),
    ("solver_opt", "kv", "KEY=VALUE", "solver configuration, repeatable (e.g. epsilon=0.05, max_iter=100)"),
    ("method", str, "RECIPE", f"training recipe: {', '.join(METHODS)} or a plugin's (see 'assignsolve "
     "recipes'; default: the solver's default_recipe: sinkhorn-gpu->swav, sinkhorn-pot/lp->sela, "
     "kmeans->deepcluster, coke->coke, iic->iic; other score solvers->sela, feature solvers->deepcluster)"),
    ("n_clusters", int, "K", "number of clusters K (default: number of classes when labels are known, else 10)"),
    ("n_heads", int, "H", "cluster sub-heads (SeLa/IIC: H heads of K clusters, the one of the lowest "
     "training loss over the last epoch read out, for IIC among those using the most clusters; CoKe: H "
     "clusterings of K, 2K, ..., HK clusters, as the paper's three) (default: the recipe's: sela 5, iic 5, "
     "coke 3; a solver may ask its recipe for another)"),
    ("overcluster", int, "K2", "clusters of IIC's over-clustering head (default 5K; iic only)"),
    ("head_bn", str, "WHEN", "SeLa, DeepCluster, IIC: standardise the cluster heads' input features with a "
     "non-affine BatchNorm: on, pooled (only when the encoder pools globally, as the 'cnn' on 8x8 digits), "
     "off (default: the recipe's: iic pooled, others off; a solver may ask its recipe for another)"),
    ("epochs", int, "E", "number of epochs (default: 50,000 images' worth, between 10 and 30: "
     "10 for 5,000+ images, 28 for the 1,797 digits)"),
    ("batch_size", int, "B", "mini-batch size per process (default: per recipe: iic 128 (x4 augmented "
     "repeats), others 256; sela halves it, not below 32, until an epoch (of one process) has 16 "
     "steps: 64 on the 1,797 digits; a solver may ask its recipe for another)"),
    ("optimizer", str, "NAME", "adam or sgd (default: per recipe: sgd for deepcluster and sela, as the "
     "papers; adam otherwise; a solver may ask its recipe for another)"),
    ("lr", float, "LR", "learning rate (default: 0.05 with sgd, 1e-3 with adam; a solver may ask its recipe "
     "for another: lp sgd at 0.2 under sela, where --optimizer adam gets adam's 1e-3)"),
    ("lr_schedule", str, "NAME", "learning rate over the run, set every step: constant, or cosine (SwAV's "
     "decay from --lr to 0 over --epochs; on 5,000 MNIST digits it cost SwAV 0.03-0.09 accuracy in 10 epochs, "
     "docs/training.md) (default: the recipe's; constant for every built-in recipe)"),
    ("warmup", float, "F", "linear warm-up of the learning rate from 0 over the first fraction F of the run's "
     "epochs, rounded up to whole epochs as SwAV's warm-up (0: none) (default: the recipe's, 0 for every "
     "built-in recipe; a solver may ask its recipe for another: lp 0.1 under sela, 3 of the digits' 28 "
     "epochs, 1 of MNIST's 10)"),
    ("momentum", float, "M", "SGD momentum"),
    ("weight_decay", float, "WD", "weight decay"),
    ("relabel_every", float, "E", "SeLa, DeepCluster: solve for new pseudo-labels every E epochs, evenly "
     "spaced over the run's steps as SeLa's --nopts (E may be a fraction for SeLa: 0.25 = four times an "
     "epoch; DeepCluster's --reassign, with a fresh top layer each time, relabels at epoch starts only) "
     "(default: the recipe's: sela 0.5, deepcluster 1)"),
    ("temperature", float, "T", "softmax temperature of SwAV's swapped prediction and CoKe's classifier "
     "(default: the recipe's: swav 0.25, coke 0.2)"),
    ("queue_size", int, "Q", "SwAV: queue of the last Q embeddings added to the solver's problem (0: none)"),
    ("proj_dim", int, "D", "projection / prototype dimension (SwAV, CoKe, AMDIM)"),
    ("hidden_dim", int, "D", "hidden width of the projection MLP (0: linear)"),
    ("pca_dim", int, "D", "DeepCluster: PCA-whitening dimension before the solver (default: min(256, max(K, "
     "min(feature width / 8, 2K))), at most the width and N - 1)"),
    ("iic_lamb", float, "L", "IIC: entropy weight lambda of the MI loss (1 = plain MI, the paper's at "
     "batch 700 x 5 views; default 1.1 at 128 x 4: docs/training.md)"),
    ("coke_alpha", float, "A", "CoKe: weight of the cross-entropy against the hard previous-epoch labels; "
     "1 - A goes to the soft labels of the other view (the paper's --coke-alpha 0.2)"),
    ("amdim_weight", float, "W", "weight of the AMDIM multiscale NCE term added to the recipe's loss "
     "(with --method amdim: 1 when not given)"),
    ("amdim_clip", float, "C", "AMDIM: soft clipping c*tanh(s/c) of the NCE scores"),
    ("amdim_reg", float, "W", "AMDIM: weight of the penalty on squared NCE scores"),
    ("augment", str, "STRENGTH", "'auto' (greyscale images of 16+ px: 'grey', a clean image paired with "
     "strongly augmented copies, assignsolve.greyviews; images under 16 px: 'weak' for iic and coke, "
     "'default' for the others; anything else: 'default'), 'grey', or a strength of "
     "assignsolve.augment.TwoViews (weak, default, strong)"),
    ("repeats", int, "R", "'grey' views: augmented copies per clean image (IIC's --num_dataloaders; "
     "default: iic 4, others 1)"),
    ("stroke_jitter", float, "W", "'grey' views: each augmented copy's strokes thickened or thinned by "
     "t ~ U(-W, W) of a cross dilation / erosion, assignsolve.greyviews.random_stroke (default: the "
     "recipe's: iic 0.3, coke, swav 0.5, sela, deepcluster 0; 0: off, the 'grey' views before this option)"),
    ("freeze_prototypes", int, "STEPS", "SwAV: keep the prototypes fixed for the first STEPS optimiser "
     "steps (SwAV's freeze_prototypes_niters; default: one epoch)"),
    ("small_crops", int, "M", "SwAV multi-crop: M extra small crops per image (codes from the 2 large "
     "views only; 0: off)"),
    ("seed", int, "S", "random seed (data order, augmentations, initialisation, solver seeds)"),
    ("device", str, "DEV", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ..."),
    ("amp", bool, None, "mixed precision (torch.autocast) on CUDA; the solver always runs in float32"),
    ("out", str, "DIR", "output directory for checkpoint.pt, metrics.csv, metrics.jsonl, config.json "
     "(default: runs/<method>-<solver>-<encoder>)"),
    ("resume", bool, None, "continue the run saved in --out (same config; --epochs may be raised)"),
    ("overwrite", bool, None, "replace the run already in --out (without it, a new run into a run's folder is refused)"),
    ("eval_every", int, "E", "evaluate every E epochs (and always after the last)"),
    ("knn_k", int, "K", "neighbours of the kNN accuracy"),
    ("tensorboard", bool, None, "also log to TensorBoard under OUT/tensorboard (needs the tensorboard package)"),
    ("probe_every", int, "E", "linear probe + weighted kNN (k=20, 200) on the held-out split every E epochs, at "
     "epoch 0 and after the last (probe_acc, knn20_acc, knn200_acc in the metrics; default: off)"),
    ("wandb", bool, None, "also log to Weights & Biases (needs the wandb extra; WANDB_MODE=offline works offline)"),
    ("progress", bool, None, "show a tqdm progress bar (use --no-progress to hide)"),
]


#: the same names as ``assignsolve compare`` (whose --features/--k are aliases there too)
ALIASES = {"data": ("--features",), "n_clusters": ("--k",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``assignsolve run`` flags; every default lives in :class:`TrainConfig`."""
    defaults = {f.name: f.default for f in attrs.fields(TrainConfig)}
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML, JSON (or YAML, with pyyaml) file of options named like the flags "
                             "(dashes or underscores); flags given on the command line override it")
    for name, typ, metavar, help_ in _FLAGS:
        flag = ["--" + name.replace("_", "-"), *ALIASES.get(name, ())]
        default = defaults[name]
        shown = default.factory() if isinstance(default, attrs.Factory) else default
        help_suffix = "" if shown is None else f" (default: {shown})"  # None: help_ says how it resolves
        if typ is bool:
            parser.add_argument(*flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_ + help_suffix)
        elif typ == "kv":
            parser.add_argument(*flag, dest=name, action="append", metavar=metavar,
                                default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(*flag, dest=name, type=typ, metavar=metavar,
                                default=argparse.SUPPRESS, help=help_ + help_suffix)


def _parse_kv(items, flag: str) -> dict:
    return parse_kv(items, flag, error=TrainError)


def load_config_file(path: str | os.PathLike) -> dict:
    """Options from a ``.toml`` (tomllib), ``.json`` or ``.yaml``/``.yml`` (pyyaml) file, keys normalised."""
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"--config: no such file {str(p)!r} (expected a .toml or .yaml file)")
    from .configfile import read_table  # TOML/YAML/JSON; a syntax error names file, line, column

    raw = read_table(p)
    if not isinstance(raw, Mapping):
        raise TrainError(f"--config {p}: expected a table of options, found {type(raw).__name__}")
    known = {f.name for f in attrs.fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            import difflib
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TrainError(f"--config {p}: unknown option {key!r}{hint}")
        out[name] = value
    from .preflight import check_option_types  # e.g. epochs = 1.5 is refused, naming it

    check_option_types(out, TrainConfig, f"--config {str(p)!r}")
    return out


def config_from_args(args: argparse.Namespace | Mapping) -> TrainConfig:
    """Defaults <- ``--config`` file <- flags given on the command line."""
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    given.pop("func", None)
    given.pop("command", None)
    path = given.pop("config", None)
    values = load_config_file(path) if path else {}
    for key in ("encoder_opt", "solver_opt"):
        file_opts = _parse_kv(values.get(key), "--" + key.replace("_", "-"))
        flag_opts = _parse_kv(given.pop(key, None), "--" + key.replace("_", "-"))
        values[key] = {**file_opts, **flag_opts}
    values.update(given)
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise TrainError(f"bad option: {exc}") from exc
