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
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import attrs
import torch
import torch.distributed as dist
import torch.nn as nn

from ..core.errors import NotConvergedWarning, TrainError
from ..objectives import amdim_loss
from ..ops.dist import Dist, init_distributed
from ..ops.stats import balance
from ..registry.manager import recipe_entry
from .build import build_model
from .config import TrainConfig, config_from_args
from .context import Context, MetricsLog, _fmt, evaluate
from .rng import _kept_rng, _rng_state, _seed_everything, _set_rng_state

__all__ = ["main", "run", "save_checkpoint", "train_one_epoch", "train_step"]


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
    d, device = init_distributed(cfg.device)
    try:
        return _run(cfg, d, device)
    finally:
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, d: Dist, device: torch.device) -> dict:
    from ..augment import TwoViews

    recipe_name = cfg.recipe
    recipe_cls = recipe_entry(recipe_name).cls
    amdim_weight = cfg.amdim_weight or recipe_cls.default_amdim_weight  # AMDIM: an added objective
    if cfg.amp and device.type != "cuda" and d.main:
        print("assignsolve run: --amp ignored on CPU (mixed precision is CUDA-only)", file=sys.stderr)
    _seed_everything(cfg.seed)
    data, heldout = _load_data(cfg)
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
    built = build_model(cfg, input_shape, k, n, d, device)
    model, recipe, assigner = built.model, built.recipe, built.assigner
    if d.enabled and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = model
    if d.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=recipe_cls.find_unused_parameters)
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
    wandb = None
    if cfg.wandb and d.main:
        from ..evaluation.wandb_log import WandbLogger

        wandb = WandbLogger(out, {**attrs.asdict(cfg), "recipe": recipe_name})
    probing = cfg.probe_every is not None and d.main
    if probing:
        print(f"assignsolve run: --probe-every: {heldout.note}", file=sys.stderr)

    # ---------------------------------------------------------------- phase 3: resume or baseline
    ckpt_path = out / "checkpoint.pt"
    start = 0
    if cfg.resume:
        if not ckpt_path.is_file():
            raise TrainError(f"--resume: expected a checkpoint at {str(ckpt_path)!r}, found none")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
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
        if probing:
            base.update(probe_row(model, heldout, device))
        log.add({"epoch": 0, **base})
        if wandb is not None:
            wandb.log({"epoch": 0, **base})
        if d.main:
            print(f"epoch 0 (random encoder): {_fmt(base)}", file=sys.stderr)
            (out / "config.json").write_text(json.dumps({**attrs.asdict(cfg), "recipe": recipe_name,
                                                         "n_clusters_used": k, "optimizer_used": optimizer_name,
                                                         "lr_used": lr}, indent=2))

    # ---------------------------------------------------------------- phase 4: epochs
    from tqdm.auto import tqdm

    last = log.history[-1] if log.history else {}
    for epoch in range(start, cfg.epochs):
        # 4a + 4b. whole-dataset assignment, then the mini-batches
        row = train_one_epoch(ctx, epoch, amdim_weight)
        # 4c. evaluation
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            row.update(evaluate(ctx))
        if probing and ((epoch + 1) % cfg.probe_every == 0 or epoch + 1 == cfg.epochs):
            row.update(probe_row(model, heldout, device))
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if d.main:
                tqdm.write(f"epoch {epoch + 1}: {_fmt(row)}", file=sys.stderr)
        log.add(row)
        if wandb is not None:
            wandb.log(row)
        last = row
        # 4d. checkpoint (every epoch)
        if d.main:
            save_checkpoint(ckpt_path, ctx, epoch + 1, log.history, recipe_name)
        if d.enabled:
            dist.barrier()
    if assigner.not_converged and d.main:
        warnings.warn(NotConvergedWarning(
            f"{cfg.solver}: {assigner.not_converged} of {assigner.calls} solver calls did not converge "
            "(see solver_not_converged in metrics.csv; raise max_iter with --solver-opt)"), stacklevel=2)
    log.close()
    if wandb is not None:
        wandb.close()
    if d.main:
        from ..evaluation.summary import write_summary_png

        write_summary_png(log.history, out / "summary.png", title=f"{recipe_name} / {cfg.solver} / {cfg.encoder} on {cfg.data}")
    return {**last, "history": log.history, "out": str(out), "n_clusters": k, "recipe": recipe_name}


def _load_data(cfg: TrainConfig):
    """``(training data, held-out parts or None)``: the test split of the source (or ``--test-data``),
    else with ``--holdout F`` a seeded stratified fraction kept out of training (``heldout``)."""
    from ..data import load_dataset, load_splits
    from .heldout import eval_splits

    if cfg.probe_every is None and not cfg.holdout and cfg.test_data is None:
        return load_dataset(cfg.data, image_size=cfg.image_size, data_dir=cfg.data_dir, download=cfg.download), None
    splits = load_splits(cfg.data, image_size=cfg.image_size, test_data=cfg.test_data, test_labels=cfg.test_labels,
                         data_dir=cfg.data_dir, download=cfg.download)
    parts = eval_splits(splits, str(cfg.data), holdout=cfg.holdout if splits.test is None else 0.0, seed=cfg.seed)
    return (parts.train if parts.split_here and cfg.holdout else splits.train), parts


def probe_row(model, heldout, device) -> dict:
    """Linear probe + weighted kNN of ``model``'s features on the held-out parts (random state kept)."""
    from .heldout import outputs_of, protocol_rows

    t0 = time.perf_counter()
    with _kept_rng(device):
        row = protocol_rows(("linear", "knn"), outputs_of(model, heldout.train.x, device),
                            outputs_of(model, heldout.test.x, device), heldout.train, heldout.test, device=device)
    return {**{k: row[k] for k in ("probe_acc", "knn20_acc", "knn200_acc")}, "probe_seconds": time.perf_counter() - t0}


def train_one_epoch(ctx: Context, epoch: int, amdim_weight: float = 0.0) -> dict:
    """One epoch: the recipe's whole-dataset work, then every mini-batch; returns the epoch's row."""
    cfg, d, recipe, model = ctx.cfg, ctx.dist, ctx.recipe, ctx.model
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    # whole-dataset assignment (SeLa, DeepCluster): solver under no_grad, eval mode
    recipe.start_epoch(ctx, epoch)
    model.train()
    batches = list(_batches(recipe.order(epoch), cfg.batch_size, d))
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and d.main),
               leave=False, dynamic_ncols=True)
    loss_sum, bal_sum, steps = 0.0, 0.0, 0
    for idx in bar:
        loss, shown = train_step(ctx, idx, epoch, amdim_weight)
        bal = balance(shown, recipe.k) if shown is not None else float("nan")
        loss_sum += float(loss.detach())
        bal_sum += bal if shown is not None else 0.0
        steps += 1
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", balance=f"{bal:.2f}")
    bar.close()
    recipe.end_epoch(ctx, epoch)
    return {"epoch": epoch + 1, "loss": loss_sum / max(steps, 1), "batch_balance": bal_sum / max(steps, 1),
            "steps": steps, "seconds": time.perf_counter() - t0,
            "solver_calls": ctx.assigner.calls, "solver_not_converged": ctx.assigner.not_converged}


def train_step(ctx: Context, idx: torch.Tensor, epoch: int, amdim_weight: float = 0.0):
    """One optimiser step on the samples ``idx``: views, forward, the recipe's loss (+ AMDIM), backward."""
    cfg, recipe = ctx.cfg, ctx.recipe
    x = ctx.data.x[idx].to(ctx.device, non_blocking=True)
    with torch.no_grad():
        v1, v2 = ctx.augment(x)
    with ctx.autocast():
        if recipe.two_views or amdim_weight > 0:
            both = ctx.ddp_model(torch.cat([v1, v2]), with_amdim=amdim_weight > 0)
            out1, out2 = _split(both, v1.shape[0])
        else:
            out1, out2 = ctx.ddp_model(v1), None
        loss, shown = recipe.loss(ctx, out1, out2, idx)
        if amdim_weight > 0:  # AMDIM as an added objective, on any recipe
            (g1, l1), (g2, l2) = out1["amdim"], out2["amdim"]
            loss = loss + amdim_weight * amdim_loss(g1, l1, g2, l2, cfg.amdim_clip, cfg.amdim_reg)
    if not torch.isfinite(loss):
        raise TrainError(f"epoch {epoch + 1}: expected a finite loss, found {float(loss)} "
                         "(lower --lr, or check the solver's epsilon)")
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    recipe.after_step(ctx)
    return loss, shown


def save_checkpoint(path: Path, ctx: Context, epoch: int, history: list, recipe_name: str) -> None:
    """Everything ``--resume`` needs, written atomically."""
    cfg, model = ctx.cfg, ctx.model
    _save(path, {
        "epoch": epoch, "config": {**attrs.asdict(cfg), "recipe": recipe_name},
        "encoder": model.encoder.state_dict(), "heads": model.heads.state_dict(),
        "optimizer": ctx.optimizer.state_dict(), "scaler": ctx.scaler.state_dict(),
        "recipe": ctx.recipe.state_dict(), "solver": {"name": cfg.solver, "options": ctx.assigner.options},
        "rng": _rng_state(ctx.device), "history": history,
    })


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
