r"""Train an encoder on pseudo-labels from any registered solver.

One loop, five recipes (``--method``), any solver (``--solver``, by name only), any encoder
(``--encoder``). The solver is called where each paper calls it, always under
``torch.no_grad()`` and in float32:

sela         whole-dataset re-labelling every ``--relabel-every`` epochs from the heads'
             logits (``Problem.from_logits``; SeLa's lambda is ``epsilon = 1/lambda``), one
             solver call per head, cross-entropy on the labels.
deepcluster  every epoch: features of all samples -> PCA-whitening + L2 -> solver -> labels;
             fresh top layer; samples drawn uniformly over pseudo-labels; cross-entropy.
swav         per batch: prototype scores of two views (+ optional ``--queue-size`` queue) ->
             solver codes q -> swapped prediction ``-sum q_s log softmax(p_t / T)``.
coke         per batch: online constrained k-means (the ``coke`` solver's online object, or
             any solver called per batch against running centres); cross-entropy of the
             previous-epoch centres' classifier against previous-epoch labels.
iic          mutual information between two views' cluster heads (main + over-clustering,
             several sub-heads); the solver reads pseudo-labels off the head for evaluation.
amdim        only AMDIM's multiscale NCE (``--amdim-weight`` adds it to any recipe).

Defaults: digits data, the small ``cnn`` encoder, the ``sinkhorn-gpu`` solver (SwAV recipe);
it runs in a few minutes on two CPU cores. Metrics (NMI/ARI/Hungarian accuracy of the
pseudo-labels and of the head's argmax, kNN accuracy of the features; the random encoder at
epoch 0 as the baseline) go to ``OUT/metrics.csv`` and ``OUT/metrics.jsonl``; a checkpoint to
``OUT/checkpoint.pt`` every epoch; ``--resume`` continues the same run. Under ``torchrun`` the
loop runs data-parallel (DDP). See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import random
import sys
import time
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as M
from .errors import AssignsolveError, NotConvergedWarning, optional_import
from .heads import ClusterHeads, ProjectionHead, Prototypes
from .mi import iic_multihead_loss
from .objectives import amdim_loss, pseudo_label_loss, swav_loss
from .plugins import get_encoder, get_solver, solver_entry
from .problem import Problem

__all__ = ["TrainConfig", "add_arguments", "main", "run", "METHODS", "default_method"]

METHODS = ("sela", "deepcluster", "swav", "coke", "iic", "amdim")


class TrainError(AssignsolveError, ValueError):
    """A training configuration or input that cannot work (message says what was expected)."""


# =============================================================================== configuration
def _choice(options):
    def check(instance, attribute, value):
        if value not in options:
            raise TrainError(f"{attribute.name}: expected one of {list(options)}, found {value!r}")
    return check


def _at_least(minimum, optional: bool = False):
    def check(instance, attribute, value):
        if optional and value is None:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
        if not ok:
            raise TrainError(f"{attribute.name}: expected a number >= {minimum}, found {value!r}")
    return check


def _opts(value) -> dict:
    return dict(value or {})


@attrs.frozen
class TrainConfig:
    """Everything a run depends on (saved in every checkpoint). Field = flag with ``-`` for ``_``."""

    data: str = "digits"
    image_size: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    limit: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    encoder: str = "cnn"
    encoder_opt: dict = attrs.field(factory=dict, converter=_opts)
    solver: str = "sinkhorn-gpu"
    solver_opt: dict = attrs.field(factory=dict, converter=_opts)
    method: str | None = attrs.field(default=None, validator=attrs.validators.optional(_choice(METHODS)))
    n_clusters: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    n_heads: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    overcluster: int | None = attrs.field(default=None, validator=_at_least(2, optional=True))
    epochs: int = attrs.field(default=30, validator=_at_least(1))
    batch_size: int = attrs.field(default=256, validator=_at_least(2))
    optimizer: str | None = attrs.field(default=None, validator=attrs.validators.optional(_choice(("adam", "sgd"))))
    lr: float | None = attrs.field(default=None, validator=_at_least(0, optional=True))
    momentum: float = attrs.field(default=0.9, validator=_at_least(0))
    weight_decay: float = attrs.field(default=1e-5, validator=_at_least(0))
    relabel_every: int = attrs.field(default=1, validator=_at_least(1))
    temperature: float = attrs.field(default=0.1, validator=_at_least(1e-6))
    queue_size: int = attrs.field(default=0, validator=_at_least(0))
    proj_dim: int = attrs.field(default=128, validator=_at_least(1))
    hidden_dim: int = attrs.field(default=512, validator=_at_least(0))
    pca_dim: int | None = attrs.field(default=None, validator=_at_least(1, optional=True))
    iic_lamb: float = attrs.field(default=1.0, validator=_at_least(1e-6))
    amdim_weight: float = attrs.field(default=0.0, validator=_at_least(0))
    amdim_clip: float = attrs.field(default=20.0, validator=_at_least(1e-6))
    amdim_reg: float = attrs.field(default=0.05, validator=_at_least(0))
    augment: str = attrs.field(default="default")
    seed: int = attrs.field(default=0, validator=_at_least(0))
    device: str = "auto"
    amp: bool = False
    out: str | None = None
    resume: bool = False
    eval_every: int = attrs.field(default=1, validator=_at_least(1))
    knn_k: int = attrs.field(default=20, validator=_at_least(1))
    tensorboard: bool = False
    progress: bool = True

    @property
    def recipe(self) -> str:
        return self.method or default_method(self.solver)

    @property
    def optimizer_lr(self) -> tuple[str, float]:
        """(optimizer, lr): the flags when given, else the recipe's optimiser and its learning rate."""
        name = self.optimizer or RECIPE_OPTIMIZER.get(self.recipe, "adam")
        return name, self.lr if self.lr is not None else DEFAULT_LR[name]


#: Optimiser and learning rate when --optimizer/--lr are not given. DeepCluster (Caron et al.
#: 2018, Sec. 4): SGD, lr 0.05, momentum 0.9; with Adam, every epoch's fresh top layer sends
#: near-zero but Adam-normalised (so full-size) updates into the encoder, which drifts
#: (measured on digits: pseudo-label NMI 0.78 -> 0.77 with Adam, -> 0.83 with SGD; docs/training.md).
RECIPE_OPTIMIZER = {"deepcluster": "sgd"}
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}


def deepcluster_pca_dim(feat_dim: int, n_clusters: int, n_samples: int) -> int:
    """DeepCluster's PCA-whitening dimension for features of width ``feat_dim``.

    DeepCluster keeps 256 of AlexNet's 4096 dimensions. Whitening *every* dimension of a narrow
    encoder (the 256-d ``cnn``) blows its near-constant directions up to unit variance and buries
    the cluster structure the training concentrates in a few (measured on digits, 30 epochs:
    NMI 0.79 -> 0.48 at 256 of 256, 0.76-0.78 -> 0.83-0.88 at 32 over three seeds; table in
    docs/training.md). So: 256, at most ``feat_dim // 8``, but never fewer than K (K class means
    span K - 1 dimensions), and at most ``feat_dim`` and ``N - 1``.
    """
    return max(1, min(256, max(n_clusters, feat_dim // 8), feat_dim, n_samples - 1))


def default_method(solver: str) -> str:
    """Recipe used when ``--method`` is not given: the solver's own paper, else SeLa/DeepCluster."""
    known = {"sinkhorn-gpu": "swav", "sinkhorn-pot": "sela", "lp": "sela", "kmeans": "deepcluster",
             "coke": "coke", "iic": "iic"}
    if solver in known:
        return known[solver]
    return "deepcluster" if solver_entry(solver).needs == "features" else "sela"


# flag table: (field, type, metavar, help). Every flag has help text; defaults come from TrainConfig.
_FLAGS: list[tuple[str, Any, str | None, str]] = [
    ("data", str, "SOURCE", "'digits' (bundled 8x8 digits), an ImageFolder directory, a CIFAR-10 "
     "python batch directory, or a .npy/.npz/.pt file of images [N,C,H,W] or features [N,D]"),
    ("image_size", int, "PX", "resize ImageFolder images to PX x PX (default: the first image's size)"),
    ("limit", int, "N", "train on a random subset of N samples (seeded; for quick checks; default: all)"),
    ("encoder", str, "NAME", "registered encoder (see 'assignsolve encoders'): cnn, mlp, resnet18, resnet50, timm:..."),
    ("encoder_opt", "kv", "KEY=VALUE", "encoder option, repeatable (e.g. width=32, cifar_stem=true)"),
    ("solver", str, "NAME", "registered solver, by name (see 'assignsolve solvers'); third-party plugins work too"),
    ("solver_opt", "kv", "KEY=VALUE", "solver configuration, repeatable (e.g. epsilon=0.05, max_iter=100)"),
    ("method", str, "RECIPE", f"training recipe, one of {', '.join(METHODS)} (default: per solver: "
     "sinkhorn-gpu->swav, sinkhorn-pot/lp->sela, kmeans->deepcluster, coke->coke, iic->iic, "
     "other score solvers->sela, feature solvers->deepcluster)"),
    ("n_clusters", int, "K", "number of clusters K (default: number of classes when labels are known, else 10)"),
    ("n_heads", int, "H", "cluster sub-heads (SeLa/IIC; default 1, IIC 5)"),
    ("overcluster", int, "K2", "clusters of IIC's over-clustering head (default 5K; iic only)"),
    ("epochs", int, "E", "number of epochs"),
    ("batch_size", int, "B", "mini-batch size per process"),
    ("optimizer", str, "NAME", "adam or sgd (default: per recipe: sgd for deepcluster, as the paper; adam otherwise)"),
    ("lr", float, "LR", "learning rate (default: 0.05 with sgd, 1e-3 with adam)"),
    ("momentum", float, "M", "SGD momentum"),
    ("weight_decay", float, "WD", "weight decay"),
    ("relabel_every", int, "E", "SeLa, DeepCluster: solve for new pseudo-labels every E epochs (DeepCluster's "
     "--reassign; a fresh top layer with each)"),
    ("temperature", float, "T", "softmax temperature of SwAV's swapped prediction and CoKe's classifier"),
    ("queue_size", int, "Q", "SwAV: queue of the last Q embeddings added to the solver's problem (0: none)"),
    ("proj_dim", int, "D", "projection / prototype dimension (SwAV, CoKe, AMDIM)"),
    ("hidden_dim", int, "D", "hidden width of the projection MLP (0: linear)"),
    ("pca_dim", int, "D", "DeepCluster: PCA-whitening dimension before the solver (default: 256, at most "
     "feature width / 8, at least K)"),
    ("iic_lamb", float, "L", "IIC: entropy weight lambda of the MI loss (1 = plain MI)"),
    ("amdim_weight", float, "W", "weight of the AMDIM multiscale NCE term added to the recipe's loss "
     "(with --method amdim: 1 when not given)"),
    ("amdim_clip", float, "C", "AMDIM: soft clipping c*tanh(s/c) of the NCE scores"),
    ("amdim_reg", float, "W", "AMDIM: weight of the penalty on squared NCE scores"),
    ("augment", str, "STRENGTH", "augmentation strength passed to assignsolve.augment.TwoViews"),
    ("seed", int, "S", "random seed (data order, augmentations, initialisation, solver seeds)"),
    ("device", str, "DEV", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ..."),
    ("amp", bool, None, "mixed precision (torch.autocast) on CUDA; the solver always runs in float32"),
    ("out", str, "DIR", "output directory for checkpoint.pt, metrics.csv, metrics.jsonl, config.json "
     "(default: runs/<method>-<solver>-<encoder>)"),
    ("resume", bool, None, "continue the run saved in --out (same config; --epochs may be raised)"),
    ("eval_every", int, "E", "evaluate every E epochs (and always after the last)"),
    ("knn_k", int, "K", "neighbours of the kNN accuracy"),
    ("tensorboard", bool, None, "also log to TensorBoard under OUT/tensorboard (needs the tensorboard package)"),
    ("progress", bool, None, "show a tqdm progress bar (use --no-progress to hide)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``assignsolve run`` flags; every default lives in :class:`TrainConfig`."""
    defaults = {f.name: f.default for f in attrs.fields(TrainConfig)}
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML (or YAML, with pyyaml) file of options named like the flags "
                             "(dashes or underscores); flags given on the command line override it")
    for name, typ, metavar, help_ in _FLAGS:
        flag = "--" + name.replace("_", "-")
        default = defaults[name]
        shown = default.factory() if isinstance(default, attrs.Factory) else default
        help_suffix = "" if shown is None else f" (default: {shown})"  # None: help_ says how it resolves
        if typ is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_ + help_suffix)
        elif typ == "kv":
            parser.add_argument(flag, dest=name, action="append", metavar=metavar,
                                default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(flag, dest=name, type=typ, metavar=metavar,
                                default=argparse.SUPPRESS, help=help_ + help_suffix)


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_kv(items, flag: str) -> dict:
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise TrainError(f"{flag}: expected KEY=VALUE, found {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def load_config_file(path: str | os.PathLike) -> dict:
    """Options from a ``.toml`` (tomllib) or ``.yaml``/``.yml`` (pyyaml) file, keys normalised."""
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"--config: no such file {str(p)!r} (expected a .toml or .yaml file)")
    if p.suffix.lower() == ".toml":
        with open(p, "rb") as fh:
            raw = tomllib.load(fh)
    elif p.suffix.lower() in (".yaml", ".yml"):
        yaml = optional_import("yaml", "--config with a YAML file", "pyyaml")
        raw = yaml.safe_load(p.read_text()) or {}
    else:
        raise TrainError(f"--config: expected a .toml, .yaml or .yml file, found {str(p)!r}")
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


# =============================================================================== distributed
@attrs.frozen
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_flag == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_flag)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"--device: expected an available device, found {device_flag!r} but CUDA is not available")
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


@torch.no_grad()
def _gather_rows(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] over ranks (sizes may differ); identity when not distributed."""
    if not d.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - x.shape[0]
    xp = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    bufs = [torch.empty_like(xp) for _ in range(d.world)]
    dist.all_gather(bufs, xp)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)])


def _row_offset(n_local: int, d: Dist, device) -> int:
    if not d.enabled:
        return 0
    sizes = _gather_rows(torch.tensor([n_local], device=device), d)
    return int(sizes[: d.rank].sum())


# =============================================================================== model
class LocalMaps:
    """Forward hooks that keep the encoder's intermediate feature maps (for AMDIM).

    A dry run records every sub-module that outputs a [B, C, H, W] map; the last module at
    the coarsest spatial size > 1 and the last module at the next larger size are kept
    (for a ResNet: the outputs of layer4 and layer3; for the small CNN: its last two stages).
    """

    def __init__(self, encoder: nn.Module, input_shape: tuple[int, ...], device):
        self.maps: list[torch.Tensor] = []
        seen: list[tuple[str, int, int]] = []
        hooks = []
        for name, mod in encoder.named_modules():
            if name:
                hooks.append(mod.register_forward_hook(
                    lambda m, i, o, _n=name: seen.append((_n, int(o.shape[1]), int(o.shape[2] * o.shape[3])))
                    if isinstance(o, torch.Tensor) and o.ndim == 4 else None))
        was = encoder.training
        encoder.eval()
        with torch.no_grad():
            encoder(torch.zeros((2, *input_shape), device=device))
        encoder.train(was)
        for h in hooks:
            h.remove()
        spatial = [s for s in seen if s[2] > 1]
        if not spatial:
            raise TrainError(
                "AMDIM: expected an encoder with convolutional feature maps [B, C, H, W], found none "
                f"(input shape {tuple(input_shape)}); use a convolutional encoder or --amdim-weight 0")
        sizes = sorted({s[2] for s in spatial})
        chosen = []
        for size in sizes[:2]:  # coarsest first
            chosen.append([s for s in spatial if s[2] == size][-1])
        self.names = [c[0] for c in chosen]
        self.channels = [c[1] for c in chosen]
        modules = dict(encoder.named_modules())
        self._handles = [modules[n].register_forward_hook(self._keep) for n in self.names]
        self._order = {id(modules[n]): i for i, n in enumerate(self.names)}
        self._slots: list[torch.Tensor | None] = [None] * len(self.names)

    def _keep(self, module, inputs, output):
        self._slots[self._order[id(module)]] = output

    def pop(self) -> list[torch.Tensor]:
        out, self._slots = list(self._slots), [None] * len(self.names)
        return out


class Model(nn.Module):
    """Encoder plus the recipe's heads; ``forward`` returns a dict so DDP sees one module call.

    Keys: ``feat`` [B, F] always; ``logits`` (list of [B, K]) and ``over`` (IIC) from
    :class:`ClusterHeads`; ``z`` [B, d] (unit rows) from :class:`ProjectionHead`; ``proto``
    [B, K] from :class:`Prototypes`; ``pred`` [B, d] (CoKe's predictor on ``z``); ``amdim``
    (global [B, d], locals [B, d, H, W] coarsest first) when the AMDIM term is on.
    """

    def __init__(self, encoder: nn.Module, heads: nn.ModuleDict, local_maps: LocalMaps | None):
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        self._local = local_maps

    def forward(self, x: torch.Tensor, with_amdim: bool = False) -> dict:
        feat = self.encoder(x)
        out = {"feat": feat}
        h = self.heads
        if "cluster" in h:
            out["logits"], over = h["cluster"].all_logits(feat)
            if h["cluster"].overcluster is not None:
                out["over"] = over
        if "proj" in h:
            out["z"] = h["proj"](feat)
            if "proto" in h:
                out["proto"] = h["proto"](out["z"])
            if "pred" in h:
                out["pred"] = h["pred"](out["z"])
        if self._local is not None:
            maps = self._local.pop()
            if with_amdim:
                g = h["amdim_global"](feat)
                locs = [proj(m) for proj, m in zip(h["amdim_local"], maps)]
                out["amdim"] = (g, locs)
        return out


class LocalProjection(nn.Module):
    """AMDIM-style 1x1 convolutional embedding of a feature map: ``W2 relu(W1 f) + W0 f``."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(cin, dim, 1), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1))
        self.shortcut = nn.Conv2d(cin, dim, 1, bias=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.mlp(f) + self.shortcut(f)


# =============================================================================== helpers
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _kept_rng(device: torch.device):
    """Evaluation must not change what training draws next (so resume == uninterrupted)."""
    state = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(state, device)


def _epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7919 + salt)


def _solver_fields(name: str) -> set[str]:
    cls = solver_entry(name).cls
    return {f.name for f in attrs.fields(cls)} if attrs.has(cls) else set()


def _balance(labels: torch.Tensor, k: int) -> float:
    """Normalised entropy of the label histogram: 1 = perfectly balanced, 0 = one cluster."""
    if k < 2 or labels.numel() == 0:
        return 1.0
    p = torch.bincount(labels.detach().flatten().cpu(), minlength=k).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum() / math.log(k))


class Assigner:
    """Calls the configured solver (by name) under ``no_grad`` in float32 and counts non-convergence."""

    def __init__(self, cfg: TrainConfig, recipe: str):
        fields = _solver_fields(cfg.solver)
        opts = dict(cfg.solver_opt)
        # paper defaults, only where the solver has the option and the user did not set it
        recipe_defaults = {"sela": {"epsilon": 0.1}, "swav": {"epsilon": 0.05}}.get(recipe, {})
        for key, value in {**recipe_defaults, "seed": cfg.seed}.items():
            if key in fields and key not in opts:
                opts[key] = value
        self.name = cfg.solver
        self.options = opts
        self.solver = get_solver(cfg.solver, **opts)
        self.needs = solver_entry(cfg.solver).needs
        self.not_converged = 0
        self.calls = 0

    @torch.no_grad()
    def __call__(self, problem: Problem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            result = self.solver(problem)
        self.calls += 1
        self.not_converged += int(not result.converged)
        return result

    def soft_codes(self, result, k: int) -> torch.Tensor:
        if result.soft is not None:
            return torch.as_tensor(result.soft).float()
        return F.one_hot(torch.as_tensor(result.labels), k).float()


# =============================================================================== recipes
class Recipe:
    """What differs between the papers: heads, when the solver is called, and the loss."""

    two_views = False

    def __init__(self, cfg: TrainConfig, k: int, n: int, feat_dim: int, assigner: Assigner, d: Dist, device):
        self.cfg, self.k, self.n, self.feat_dim = cfg, k, n, feat_dim
        self.assign, self.dist, self.device = assigner, d, device

    def build_heads(self) -> dict[str, nn.Module]:
        return {}

    def start_epoch(self, ctx: "Context", epoch: int) -> None:
        """Whole-dataset work before an epoch (SeLa, DeepCluster)."""

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order (all ranks identical; each takes its share)."""
        return torch.randperm(self.n, generator=_epoch_generator(self.cfg.seed, epoch))

    def loss(self, ctx: "Context", out1: dict, out2: dict | None, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, the batch's labels for the balance display)."""
        raise NotImplementedError

    def end_epoch(self, ctx: "Context", epoch: int) -> None:
        pass

    def eval_problem(self, outputs: dict) -> Problem:
        """The problem the solver solves on the whole dataset at evaluation."""
        raise NotImplementedError

    def head_labels(self, outputs: dict) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        pass


class SeLa(Recipe):
    """Asano et al., ICLR 2020: heads' logits -> solver on the whole dataset -> CE per head."""

    def build_heads(self):
        return {"cluster": ClusterHeads(self.feat_dim, self.k, self.cfg.n_heads or 1)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.labels: torch.Tensor | None = None  # [H, N]

    def start_epoch(self, ctx, epoch):
        if self.labels is not None and epoch % self.cfg.relabel_every != 0:
            return
        outs = ctx.all_outputs()
        self.labels = torch.stack([
            self._solve(Problem.from_logits(z.float())) for z in outs["logits"]
        ]).to(self.device)

    def _solve(self, problem):
        return torch.as_tensor(self.assign(problem).labels)

    def loss(self, ctx, out1, out2, idx):
        y = self.labels[:, idx.to(self.device)]
        return pseudo_label_loss(out1["logits"], list(y)), y[0]

    def eval_problem(self, outputs):
        return Problem.from_logits(outputs["logits"][0].float())

    def head_labels(self, outputs):
        return outputs["logits"][0].argmax(1)

    def state_dict(self):
        return {"labels": self.labels}

    def load_state_dict(self, state):
        self.labels = None if state.get("labels") is None else state["labels"].to(self.device)


class DeepCluster(Recipe):
    """Caron et al., ECCV 2018: features -> PCA-whitening + L2 -> solver -> fresh top layer, CE.

    Feature solvers (k-means, CoKe, ...) get the preprocessed features; score solvers get cosine
    scores to centroids = the means of the previous epoch's clusters in the current space (K
    seeded random samples at the first epoch).
    """

    def build_heads(self):
        return {"cluster": ClusterHeads(self.feat_dim, self.k, 1)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.labels: torch.Tensor | None = None  # [N]
        self._order: torch.Tensor | None = None

    def _problem(self, feats: torch.Tensor, epoch: int) -> Problem:
        from assignsolve_plugins.kmeans import preprocess_features

        n, width = feats.shape
        if self.cfg.pca_dim is not None:
            dim = min(self.cfg.pca_dim, width, n - 1)
        else:
            dim = deepcluster_pca_dim(width, self.k, n)
        x = preprocess_features(feats.float(), pca_dim=dim)
        if self.assign.needs in ("features", "scores_or_features"):
            return Problem(features=x, n_clusters=self.k)
        if self.labels is not None:
            y = self.labels.to(x.device)
            sums = torch.zeros(self.k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, y, x)
            counts = torch.bincount(y, minlength=self.k)
            g = _epoch_generator(self.cfg.seed, epoch, salt=1)
            fallback = x[torch.randint(x.shape[0], (self.k,), generator=g).to(x.device)]
            cent = torch.where((counts > 0)[:, None], sums / counts.clamp(min=1)[:, None].to(x.dtype), fallback)
        else:
            g = _epoch_generator(self.cfg.seed, epoch, salt=1)
            cent = x[torch.randperm(x.shape[0], generator=g)[: self.k].to(x.device)]
        return Problem.from_features(x, cent, metric="cosine")

    def start_epoch(self, ctx, epoch):
        from .sampling import uniform_label_indices

        if self.labels is None or epoch % self.cfg.relabel_every == 0:  # DeepCluster's --reassign
            outs = ctx.all_outputs()
            self.labels = torch.as_tensor(self.assign(self._problem(outs["feat"], epoch)).labels).to(self.device)
            ctx.reset_head("cluster")  # fresh top layer with every new clustering, as DeepCluster
        self._order = uniform_label_indices(self.labels.cpu(), self.n, _epoch_generator(self.cfg.seed, epoch, 2))

    def order(self, epoch):
        return self._order

    def loss(self, ctx, out1, out2, idx):
        y = self.labels[idx.to(self.device)]
        return pseudo_label_loss(out1["logits"], y), y

    def eval_problem(self, outputs):
        return self._problem(outputs["feat"], -1)

    def head_labels(self, outputs):
        return outputs["logits"][0].argmax(1)

    def state_dict(self):
        return {"labels": self.labels}

    def load_state_dict(self, state):
        self.labels = None if state.get("labels") is None else state["labels"].to(self.device)


class SwAV(Recipe):
    """Caron et al., NeurIPS 2020: per-batch codes of both views (solver), swapped prediction."""

    two_views = True

    def build_heads(self):
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, self.cfg.proj_dim),
                "proto": Prototypes(self.cfg.proj_dim, self.k)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        q = self.cfg.queue_size
        self.queue = torch.zeros(2, q, self.cfg.proj_dim, device=self.device) if q else None
        self.queue_fill = 0

    @torch.no_grad()
    def _codes(self, ctx, scores: torch.Tensor, view: int) -> torch.Tensor:
        local = scores.detach().float()
        full = _gather_rows(local, self.dist)  # SwAV solves over the global batch
        offset = _row_offset(local.shape[0], self.dist, local.device)
        if self.queue is not None and self.queue_fill >= self.queue.shape[1]:
            proto = ctx.model_heads["proto"].weight.detach().float()
            full = torch.cat([full, self.queue[view] @ proto.T])
        result = self.assign(Problem(scores=full))
        q = self.assign.soft_codes(result, self.k).to(local.device)
        return q[offset: offset + local.shape[0]]

    def loss(self, ctx, out1, out2, idx):
        q1 = self._codes(ctx, out1["proto"], 0)
        q2 = self._codes(ctx, out2["proto"], 1)
        if self.queue is not None:  # newest first; the oldest rows drop off the end
            with torch.no_grad():
                fresh = torch.stack([out1["z"].detach().float(), out2["z"].detach().float()])
                self.queue = torch.cat([fresh, self.queue], dim=1)[:, : self.cfg.queue_size]
                self.queue_fill = min(self.queue_fill + fresh.shape[1], self.cfg.queue_size)
        loss = swav_loss(out1["proto"], out2["proto"], q1, q2, self.cfg.temperature)
        return loss, q1.argmax(1)

    def after_step(self, ctx):
        ctx.model_heads["proto"].normalize_()

    def eval_problem(self, outputs):
        return Problem(scores=outputs["proto"].float())

    def head_labels(self, outputs):
        return outputs["proto"].argmax(1)

    def state_dict(self):
        return {"queue": self.queue, "queue_fill": self.queue_fill}

    def load_state_dict(self, state):
        if state.get("queue") is not None:
            self.queue = state["queue"].to(self.device)
        self.queue_fill = int(state.get("queue_fill", 0))


class _BatchBank:
    """CoKe's online bookkeeping for any solver: per-batch labels against running centres.

    Mirrors :class:`assignsolve_plugins.coke.OnlineCoke` (``partial_fit``/``end_epoch``/
    ``targets``/``logits``) but each batch is assigned by calling the configured solver on
    ``Problem.from_features(batch, centres)``; centres are running means (renormalised).
    """

    def __init__(self, assign: Assigner, n: int, dim: int, k: int, device, seed: int):
        self.assign, self.k = assign, k
        g = torch.Generator().manual_seed(seed)
        self.centres = F.normalize(torch.randn(k, dim, generator=g), dim=1).to(device)
        self.previous_centres = self.centres.clone()
        self.counts = torch.zeros(k, dtype=torch.int64, device=device)
        self.labels = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.previous_labels = self.labels.clone()

    @torch.no_grad()
    def partial_fit(self, features, indices):
        from assignsolve_plugins.coke import coke_centre_step

        x = F.normalize(features.detach().float(), dim=1)
        y = torch.as_tensor(self.assign(Problem.from_features(x, self.centres, metric="dot")).labels).to(x.device)
        self.centres, self.counts = coke_centre_step(self.centres, self.counts, x, y)
        self.labels[indices] = y
        return y

    @torch.no_grad()
    def end_epoch(self):
        self.previous_labels = self.labels.clone()
        self.previous_centres = self.centres.clone()
        self.counts.zero_()

    @torch.no_grad()
    def targets(self, indices):
        prev = self.previous_labels[indices]
        return torch.where(prev >= 0, prev, self.labels[indices])

    def logits(self, features, temperature=0.1):
        return F.normalize(features.float(), dim=1) @ self.previous_centres.T / temperature

    def state_dict(self):
        return {k: getattr(self, k) for k in ("centres", "previous_centres", "counts", "labels", "previous_labels")}

    def load_state_dict(self, state):
        for k, v in state.items():
            setattr(self, k, v.to(self.labels.device))


class CoKeRecipe(Recipe):
    """Qian et al., CVPR 2022: online assignment per batch, CE against previous-epoch targets."""

    def build_heads(self):
        # as idstcv/CoKe: the projection ends in BatchNorm (unit rows spread over the sphere, so
        # the dual variables compete with real score differences); a predictor MLP on top
        d = self.cfg.proj_dim
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, d, out_bn=True),
                "pred": ProjectionHead(d, self.cfg.hidden_dim, d)}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        solver = self.assign.solver
        if hasattr(solver, "online"):
            self.bank = solver.online(self.n, self.cfg.proj_dim, self.k, device=self.device)
        else:
            self.bank = _BatchBank(self.assign, self.n, self.cfg.proj_dim, self.k, self.device, self.cfg.seed)

    def loss(self, ctx, out1, out2, idx):
        z = out1["z"]
        idx_all = _gather_rows(idx.to(self.device), self.dist)
        with torch.no_grad():
            z_all = _gather_rows(z.detach().float(), self.dist)
            if hasattr(self.assign.solver, "online"):
                self.assign.calls += 1
            self.bank.partial_fit(z_all, idx_all)
            y = self.bank.targets(idx.to(self.device))
        # the predictor's view is trained (the published run: --coke-beta 1)
        logits = self.bank.logits(out1["pred"].float(), self.cfg.temperature)
        return F.cross_entropy(logits, y), y

    def end_epoch(self, ctx, epoch):
        self.bank.end_epoch()

    def eval_problem(self, outputs):
        z = outputs["z"].float()
        if self.assign.needs in ("features", "scores_or_features"):
            return Problem(features=z, n_clusters=self.k)
        return Problem.from_features(z, self.bank.centres.float(), metric="cosine")

    def head_labels(self, outputs):
        return self.bank.logits(outputs["pred"]).argmax(1)

    def state_dict(self):
        return {"bank": self.bank.state_dict()}

    def load_state_dict(self, state):
        self.bank.load_state_dict(state["bank"])


class IICRecipe(Recipe):
    """Ji et al., ICCV 2019: maximise I(z, z') of two views; main + over-clustering sub-heads."""

    two_views = True

    def build_heads(self):
        heads = ClusterHeads(self.feat_dim, self.k, self.cfg.n_heads or 5,
                             overcluster=self.cfg.overcluster or 5 * self.k, input_bn=True)
        # PyTorch's default Linear init, as IIC's heads: with DeepCluster's N(0, 0.01^2) init every
        # softmax starts uniform, where the MI and its gradient vanish (the run stalls collapsed).
        for layer in [*heads.heads, *heads.overcluster_heads]:
            layer.reset_parameters()
        return {"cluster": heads}

    def loss(self, ctx, out1, out2, idx):
        p = lambda zs: [torch.softmax(z.float(), dim=1) for z in zs]  # noqa: E731
        main = iic_multihead_loss(p(out1["logits"]), p(out2["logits"]), lamb=self.cfg.iic_lamb)
        over = iic_multihead_loss(p(out1["over"]), p(out2["over"]), lamb=self.cfg.iic_lamb)
        return main + over, out1["logits"][0].argmax(1)

    def eval_problem(self, outputs):
        return Problem.from_logits(outputs["logits"][0].float())

    def head_labels(self, outputs):
        return outputs["logits"][0].argmax(1)


class AMDIMOnly(Recipe):
    """Bachman et al., NeurIPS 2019: only the multiscale NCE; the solver labels for evaluation."""

    two_views = True

    def build_heads(self):
        return {"proj": ProjectionHead(self.feat_dim, self.cfg.hidden_dim, self.cfg.proj_dim)}

    def loss(self, ctx, out1, out2, idx):
        return out1["feat"].new_zeros(()), None

    def eval_problem(self, outputs):
        z = outputs["z"].float()
        if self.assign.needs in ("features", "scores_or_features"):
            return Problem(features=z, n_clusters=self.k)
        g = _epoch_generator(self.cfg.seed, 0, salt=3)
        cent = z[torch.randperm(z.shape[0], generator=g)[: self.k].to(z.device)]
        return Problem.from_features(z, cent, metric="cosine")


RECIPES = {"sela": SeLa, "deepcluster": DeepCluster, "swav": SwAV, "coke": CoKeRecipe,
           "iic": IICRecipe, "amdim": AMDIMOnly}


# =============================================================================== context
class Context:
    """The objects of one run, shared by the phases below."""

    def __init__(self, cfg, d, device, data, model, ddp_model, optimizer, scaler, recipe, assigner, augment):
        self.cfg, self.dist, self.device, self.data = cfg, d, device, data
        self.model, self.ddp_model, self.optimizer, self.scaler = model, ddp_model, optimizer, scaler
        self.recipe, self.assigner, self.augment = recipe, assigner, augment
        self.model_heads = model.heads

    def autocast(self):
        enabled = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=enabled)

    @torch.no_grad()
    def all_outputs(self, chunk: int = 512) -> dict:
        """Eval-mode outputs for every sample, float32, identical on all ranks."""
        x = self.data.x
        n = x.shape[0]
        per = math.ceil(n / self.dist.world)
        lo, hi = min(self.dist.rank * per, n), min((self.dist.rank + 1) * per, n)
        was = self.model.training
        self.model.eval()
        parts: dict[str, list] = {}
        with self.autocast():
            for s in range(lo, hi, chunk):
                out = self.model(x[s: min(s + chunk, hi)].to(self.device))
                for key, value in out.items():
                    if key == "amdim":
                        continue
                    parts.setdefault(key, []).append(value)
        if lo == hi:  # an empty shard still has to join the gathers
            out = self.model(x[:1].to(self.device))
            parts = {k: [v[:0] if isinstance(v, torch.Tensor) else [t[:0] for t in v]]
                     for k, v in out.items() if k != "amdim"}
        self.model.train(was)
        result = {}
        for key, chunks in parts.items():
            if isinstance(chunks[0], list):  # list of heads
                result[key] = [_gather_rows(torch.cat([c[h] for c in chunks]).float(), self.dist)
                               for h in range(len(chunks[0]))]
            else:
                result[key] = _gather_rows(torch.cat(chunks).float(), self.dist)
        return result

    def reset_head(self, name: str) -> None:
        head = self.model.heads[name]
        head.reset_parameters()
        for p in head.parameters():  # a fresh layer has no optimiser history either
            self.optimizer.state.pop(p, None)


# =============================================================================== evaluation
@torch.no_grad()
def evaluate(ctx: Context) -> dict:
    """Metrics of the current encoder: pseudo-labels (solver on all samples), head argmax, kNN."""
    with _kept_rng(ctx.device):
        outs = ctx.all_outputs()
        result = ctx.assigner(ctx.recipe.eval_problem(outs))
        pseudo = torch.as_tensor(result.labels).cpu()
        head = ctx.recipe.head_labels(outs)
    k = ctx.recipe.k
    row: dict[str, float] = {}
    stats = M.size_stats(pseudo, k)
    row.update(pl_nonempty=k - stats["n_empty"], pl_size_min=stats["size_min"], pl_size_max=stats["size_max"],
               pl_balance=_balance(pseudo, k))
    labels = ctx.data.labels
    if labels is not None:
        y = labels.cpu()
        row.update({f"pl_{key}": v for key, v in M.clustering_scores(pseudo, y).items()})
        if head is not None:
            head = head.cpu()
            row.update({f"head_{key}": v for key, v in M.clustering_scores(head, y).items()})
            row["head_nonempty"] = int((torch.bincount(head, minlength=k) > 0).sum())
        row["knn_acc"] = M.knn_accuracy(outs["feat"], y, k=ctx.cfg.knn_k, device=ctx.device)
    elif head is not None:
        row["head_nonempty"] = int((torch.bincount(head.cpu(), minlength=k) > 0).sum())
    return row


# =============================================================================== logging
class MetricsLog:
    """metrics.csv and metrics.jsonl (rewritten from the history, so resume never duplicates rows)."""

    def __init__(self, out: Path | None, enabled: bool, tensorboard: bool):
        self.out, self.enabled = out, enabled
        self.history: list[dict] = []
        self.writer = None
        if enabled and tensorboard:
            tb = optional_import("torch.utils.tensorboard", "--tensorboard", "tensorboard")
            self.writer = tb.SummaryWriter(str(out / "tensorboard"))

    def add(self, row: dict) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()
        if self.out is None:
            return
        columns: list[str] = []
        for r in self.history:
            columns += [c for c in r if c not in columns]
        with open(self.out / "metrics.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for r in self.history:
                w.writerow({c: r.get(c, "") for c in columns})
        with open(self.out / "metrics.jsonl", "w") as fh:
            for r in self.history:
                fh.write(json.dumps(r) + "\n")

    def close(self):
        if self.writer is not None:
            self.writer.close()


def _fmt(row: Mapping) -> str:
    keys = ["pl_nmi", "pl_acc", "head_acc", "knn_acc", "pl_nonempty", "loss"]
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row.get(k), (int, float)))


# =============================================================================== the loop
def _batches(order: torch.Tensor, batch: int, d: Dist) -> Iterator[torch.Tensor]:
    """This rank's mini-batches of ``order``: DistributedSampler's split (pad by wrapping, then stride)."""
    if d.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(range(len(order)), num_replicas=d.world, rank=d.rank, shuffle=False)
        order = order[torch.tensor(list(iter(sampler)), dtype=torch.int64)]
    n_full = len(order) // batch
    for b in range(n_full):
        yield order[b * batch:(b + 1) * batch]
    if len(order) % batch >= 2 and n_full == 0:  # tiny data: one short batch rather than none
        yield order[n_full * batch:]


def run(cfg: TrainConfig) -> dict:
    """Train as configured; returns the last evaluation row (plus ``history``). See the module doc."""
    # ---------------------------------------------------------------- phase 1: processes, data
    d, device = _init_distributed(cfg.device)
    try:
        return _run(cfg, d, device)
    finally:
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, d: Dist, device: torch.device) -> dict:
    from .augment import TwoViews
    from .data import load_dataset

    recipe_name = cfg.recipe
    amdim_weight = cfg.amdim_weight if (cfg.amdim_weight or recipe_name != "amdim") else 1.0
    if cfg.amp and device.type != "cuda" and d.main:
        print("assignsolve run: --amp ignored on CPU (mixed precision is CUDA-only)", file=sys.stderr)
    _seed_everything(cfg.seed)
    data = load_dataset(cfg.data, image_size=cfg.image_size)
    if cfg.limit is not None and cfg.limit < data.x.shape[0]:
        keep = torch.randperm(data.x.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[: cfg.limit]
        keep = keep.sort().values
        data = attrs.evolve(data, x=data.x[keep], labels=None if data.labels is None else data.labels[keep])
    n = int(data.x.shape[0])
    if cfg.n_clusters is not None:
        k = cfg.n_clusters
    elif data.labels is not None:
        k = int(torch.unique(data.labels).numel())
    else:
        k = 10
    if k > n:
        raise TrainError(f"n_clusters: expected at most the {n} samples, found K = {k}")
    out = Path(cfg.out or f"runs/{recipe_name}-{cfg.solver}-{cfg.encoder}".replace(":", "_"))
    if d.main:
        out.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- phase 2: model, solver, optimiser
    input_shape = tuple(int(s) for s in data.input_shape)
    encoder = get_encoder(cfg.encoder, input_shape, **cfg.encoder_opt).to(device)
    feat_dim = int(encoder.out_dim)
    assigner = Assigner(cfg, recipe_name)
    recipe = RECIPES[recipe_name](cfg, k, n, feat_dim, assigner, d, device)
    heads = nn.ModuleDict(recipe.build_heads())
    local_maps = None
    if amdim_weight > 0:
        local_maps = LocalMaps(encoder, input_shape, device)
        heads["amdim_global"] = ProjectionHead(feat_dim, cfg.hidden_dim, cfg.proj_dim, normalize=False)
        heads["amdim_local"] = nn.ModuleList(LocalProjection(c, cfg.proj_dim) for c in local_maps.channels)
    model = Model(encoder, heads, local_maps).to(device)
    if d.enabled and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = model
    if d.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=recipe_name == "amdim")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_name, lr = cfg.optimizer_lr
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    augment = TwoViews(input_shape, strength=cfg.augment, device=device)
    ctx = Context(cfg, d, device, data, model, ddp_model, optimizer, scaler, recipe, assigner, augment)
    log = MetricsLog(out, d.main, cfg.tensorboard)

    # ---------------------------------------------------------------- phase 3: resume or baseline
    ckpt_path = out / "checkpoint.pt"
    start = 0
    if cfg.resume:
        if not ckpt_path.is_file():
            raise TrainError(f"--resume: expected a checkpoint at {str(ckpt_path)!r}, found none")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = ckpt["config"]
        for key in ("method", "solver", "encoder", "n_clusters", "data", "seed", "batch_size"):
            now = attrs.asdict(cfg)[key]
            if saved.get(key) != now and not (key == "method" and saved.get("recipe") == recipe_name):
                raise TrainError(f"--resume: expected {key} = {saved.get(key)!r} as in the checkpoint, found {now!r}")
        model.encoder.load_state_dict(ckpt["encoder"])
        model.heads.load_state_dict(ckpt["heads"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        recipe.load_state_dict(ckpt["recipe"])
        _set_rng_state(ckpt["rng"], device)
        log.history = list(ckpt["history"])
        start = int(ckpt["epoch"])
        if d.main:
            print(f"assignsolve run: resumed {ckpt_path} at epoch {start}", file=sys.stderr)
    else:
        base = evaluate(ctx)
        log.add({"epoch": 0, **base})
        if d.main:
            print(f"epoch 0 (random encoder): {_fmt(base)}", file=sys.stderr)
            (out / "config.json").write_text(json.dumps({**attrs.asdict(cfg), "recipe": recipe_name,
                                                         "n_clusters_used": k, "optimizer_used": optimizer_name,
                                                         "lr_used": lr}, indent=2))

    # ---------------------------------------------------------------- phase 4: epochs
    from tqdm.auto import tqdm

    last = log.history[-1] if log.history else {}
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        # 4a. whole-dataset assignment (SeLa, DeepCluster): solver under no_grad, eval mode
        recipe.start_epoch(ctx, epoch)
        # 4b. mini-batches
        model.train()
        batches = list(_batches(recipe.order(epoch), cfg.batch_size, d))
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and d.main),
                   leave=False, dynamic_ncols=True)
        loss_sum, bal_sum, steps = 0.0, 0.0, 0
        for idx in bar:
            x = data.x[idx].to(device, non_blocking=True)
            need_two = recipe.two_views or amdim_weight > 0
            with torch.no_grad():
                v1, v2 = augment(x)
            with ctx.autocast():
                if need_two:
                    both = ddp_model(torch.cat([v1, v2]), with_amdim=amdim_weight > 0)
                    out1, out2 = _split(both, v1.shape[0])
                else:
                    out1, out2 = ddp_model(v1), None
                loss, shown = recipe.loss(ctx, out1, out2, idx)
                if amdim_weight > 0:
                    g1, l1 = out1["amdim"]
                    g2, l2 = out2["amdim"]
                    loss = loss + amdim_weight * amdim_loss(g1, l1, g2, l2, cfg.amdim_clip, cfg.amdim_reg)
            if not torch.isfinite(loss):
                raise TrainError(f"epoch {epoch + 1}: expected a finite loss, found {float(loss)} "
                                 "(lower --lr, or check the solver's epsilon)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if hasattr(recipe, "after_step"):
                recipe.after_step(ctx)
            bal = _balance(shown, k) if shown is not None else float("nan")
            loss_sum += float(loss.detach())
            bal_sum += bal if shown is not None else 0.0
            steps += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", balance=f"{bal:.2f}")
        bar.close()
        recipe.end_epoch(ctx, epoch)
        row = {"epoch": epoch + 1, "loss": loss_sum / max(steps, 1), "batch_balance": bal_sum / max(steps, 1),
               "steps": steps, "seconds": time.perf_counter() - t0,
               "solver_calls": assigner.calls, "solver_not_converged": assigner.not_converged}
        # 4c. evaluation
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            row.update(evaluate(ctx))
            if d.main:
                tqdm.write(f"epoch {epoch + 1}: {_fmt(row)}", file=sys.stderr)
        log.add(row)
        last = row
        # 4d. checkpoint (every epoch)
        if d.main:
            _save(ckpt_path, {
                "epoch": epoch + 1, "config": {**attrs.asdict(cfg), "recipe": recipe_name},
                "encoder": model.encoder.state_dict(), "heads": model.heads.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "recipe": recipe.state_dict(), "solver": {"name": cfg.solver, "options": assigner.options},
                "rng": _rng_state(device), "history": log.history,
            })
        if d.enabled:
            dist.barrier()
    if assigner.not_converged and d.main:
        warnings.warn(NotConvergedWarning(
            f"{cfg.solver}: {assigner.not_converged} of {assigner.calls} solver calls did not converge "
            "(see solver_not_converged in metrics.csv; raise max_iter with --solver-opt)"), stacklevel=2)
    log.close()
    return {**last, "history": log.history, "out": str(out), "n_clusters": k, "recipe": recipe_name}


def _split(both: dict, b: int) -> tuple[dict, dict]:
    def cut(value, sl):
        if isinstance(value, torch.Tensor):
            return value[sl]
        if isinstance(value, tuple):
            return tuple(cut(v, sl) for v in value)
        return [cut(v, sl) for v in value]
    return ({k: cut(v, slice(0, b)) for k, v in both.items()}, {k: cut(v, slice(b, None)) for k, v in both.items()})


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    """``assignsolve run``: parse, train, print the final metrics."""
    cfg = config_from_args(args)
    result = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0
