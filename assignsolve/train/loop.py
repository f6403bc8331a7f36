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
it runs in about 1.5 minutes on two CPU cores. Metrics (NMI/ARI/Hungarian accuracy of the
pseudo-labels and of the head's argmax, kNN accuracy of the features; the random encoder at
epoch 0 as the baseline) go to ``OUT/metrics.csv`` and ``OUT/metrics.jsonl``; a checkpoint to
``OUT/checkpoint.pt`` every epoch; ``--resume`` continues the same run. Under ``torchrun`` the
loop runs data-parallel (DDP). An ImageFolder larger than 1 GiB as float32 is streamed from disk
through a torch DataLoader (``--data-mode auto``; ``memory``/``stream`` force either, ``--workers``
decoding processes; the run log says which; docs/datasets.md). See docs/training.md.
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
from .config import TrainConfig, config_from_args, scheduled_lr, warmup_epochs, warmup_factor
from .context import Context, MetricsLog, _fmt, evaluate
from .atomic import atomic_write_text
from .checkpoint import check_resume, load_checkpoint, restore, save_checkpoint, saved_config, saved_with_solver
from .preflight import check_run_options
from .rng import _kept_rng, _seed_everything
from .rundir import (RunLock, check_existing_run, check_out_path, clear_run, default_out, interrupted_message,
                     make_out, remove_if_empty)

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


def out_dir(cfg: TrainConfig) -> Path:
    """``--out``, or ``runs/<method>-<solver>-<encoder>`` (sanitised: always inside ``runs/``)."""
    return Path(cfg.out) if cfg.out else default_out(cfg.recipe, cfg.solver, cfg.encoder)


def run(cfg: TrainConfig) -> dict:
    """Train as configured; returns the last evaluation row (plus ``history``). See the module doc."""
    # ---------------------------------------------------------------- phase 1: processes, data
    check_run_options(cfg)  # --device, --augment: a message, not a traceback
    d, device = init_distributed(cfg.device)
    try:
        if not d.main:
            return _run(cfg, d, device)
        out = out_dir(cfg)
        check_out_path(out, cfg.resume, cfg.overwrite)  # never a silent overwrite (docs/reliability.md)
        created = make_out(out)
        try:
            with RunLock(out):  # a second run into this folder is refused, naming the lock
                check_existing_run(out, cfg.resume, cfg.overwrite)
                return _run(cfg, d, device)
        except BaseException:
            remove_if_empty(created)  # a refused run leaves no empty folder behind
            raise
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
    if cfg.limit is not None and cfg.limit < len(data):
        keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.limit]
        data = data.take(keep.sort().values)
    n = len(data)
    if d.main:
        from ..data import is_image_folder
        from ..datasets.streamed import mode_note

        print(f"assignsolve run: {mode_note(data, cfg.data_mode, cfg.workers, is_image_folder(cfg.data))}",
              file=sys.stderr)
    from .autoconfig import resolve_config
    given, cfg = cfg, resolve_config(cfg, n, tuple(int(s) for s in data.input_shape), d.world)
    optimizer_name, lr = cfg.optimizer_lr
    if d.main:
        print(f"assignsolve run: {recipe_name} recipe, encoder {cfg.encoder}, {cfg.epochs} epochs, batch "
              f"{cfg.batch_size}, {optimizer_name} lr {lr:g}"
              f"{f' (warm-up: {warmup_epochs(cfg.warmup, cfg.epochs)} of the epochs)' if cfg.warmup else ''}"
              f", augment {cfg.augment!r} x{cfg.repeats}"
              f"{f', stroke jitter {cfg.stroke_jitter:g}' if cfg.stroke_jitter else ''}", file=sys.stderr)
    if cfg.n_clusters is not None:
        k = cfg.n_clusters
    elif data.labels is not None:
        k = int(torch.unique(data.labels).numel())
    else:
        k = 10
    if k > n:
        raise TrainError(f"n_clusters: expected at most the {n} samples, found K = {k}")
    out = out_dir(cfg)

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
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    if cfg.augment == "grey":
        from ..greyviews import CleanAndAugmented, GreyParams
        augment = CleanAndAugmented(cfg.repeats, GreyParams(stroke=cfg.stroke_jitter))
    else:
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
    resolved = {"recipe": recipe_name, "n_clusters_used": k, "optimizer_used": optimizer_name, "lr_used": lr,
                "relabel_every_used": cfg.relabel_every_used, "temperature_used": cfg.temperature_used,
                "n_heads_used": cfg.n_heads_used, "head_bn_used": cfg.head_bn_used, "n_samples_used": n,
                "solver_options_used": json.loads(json.dumps(assigner.options, default=str))}
    if cfg.resume:  # format 2, weights_only=True; every experiment option as saved (checkpoint.py)
        ckpt = load_checkpoint(ckpt_path, device)
        filled = {f.name for f in attrs.fields(TrainConfig) if getattr(given, f.name) != getattr(cfg, f.name)}
        check_resume(saved_with_solver(ckpt), cfg, resolved, int(ckpt["epoch"]), filled)
        start, log.history = restore(ctx, ckpt, ckpt_path)
        if d.main:
            print(f"assignsolve run: resumed {ckpt_path} at epoch {start}", file=sys.stderr)
    else:
        if cfg.overwrite and d.main:  # only now that every option has been checked
            clear_run(out)
        base = evaluate(ctx)
        if probing:
            base.update(probe_row(model, heldout, device, cfg.workers))
        log.add({"epoch": 0, **base})
        if wandb is not None:
            wandb.log({"epoch": 0, **base})
        if d.main:
            print(f"epoch 0 (random encoder): {_fmt(base)}", file=sys.stderr)
            atomic_write_text(out / "config.json", json.dumps(saved_config(cfg, resolved), indent=2))

    # ---------------------------------------------------------------- phase 4: epochs
    from tqdm.auto import tqdm

    last = log.history[-1] if log.history else {}
    for epoch in range(start, cfg.epochs):
        # 4a + 4b. whole-dataset assignment, then the mini-batches
        row = train_one_epoch(ctx, epoch, amdim_weight)
        # 4c. evaluation
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            t_eval = time.perf_counter()
            row.update(evaluate(ctx))
            row["eval_seconds"] = time.perf_counter() - t_eval
        if probing and ((epoch + 1) % cfg.probe_every == 0 or epoch + 1 == cfg.epochs):
            row.update(probe_row(model, heldout, device, cfg.workers))
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if d.main:
                tqdm.write(f"epoch {epoch + 1}: {_fmt(row)}", file=sys.stderr)
        log.add(row)
        if wandb is not None:
            wandb.log(row)
        last = row
        # 4d. checkpoint (every epoch)
        if d.main:
            save_checkpoint(ckpt_path, ctx, epoch + 1, log.history, resolved)
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
        return load_dataset(cfg.data, image_size=cfg.image_size, data_dir=cfg.data_dir, download=cfg.download,
                            mode=cfg.data_mode), None
    splits = load_splits(cfg.data, image_size=cfg.image_size, test_data=cfg.test_data, test_labels=cfg.test_labels,
                         data_dir=cfg.data_dir, download=cfg.download, mode=cfg.data_mode)
    parts = eval_splits(splits, str(cfg.data), holdout=cfg.holdout if splits.test is None else 0.0, seed=cfg.seed)
    return (parts.train if parts.split_here and cfg.holdout else splits.train), parts


def probe_row(model, heldout, device, workers: int = 0) -> dict:
    """Linear probe + weighted kNN of ``model``'s features on the held-out parts (random state kept)."""
    from .heldout import outputs_of, protocol_rows

    t0 = time.perf_counter()
    with _kept_rng(device):
        row = protocol_rows(("linear", "knn"), outputs_of(model, heldout.train, device, workers=workers),
                            outputs_of(model, heldout.test, device, workers=workers), heldout.train, heldout.test,
                            device=device)
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
    # images in memory or decoded from disk (feed.py), in the recipe's order
    bar = tqdm(ctx.feed.batches(batches), total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and d.main), leave=False, dynamic_ncols=True)
    loss_sum, bal_sum, steps = 0.0, 0.0, 0
    base_lr, schedule = cfg.optimizer_lr[1], cfg.lr_schedule_used
    warmup = warmup_epochs(cfg.warmup, cfg.epochs)
    for idx, x in bar:
        recipe.before_batch(ctx, epoch, steps, len(batches))
        lr = scheduled_lr(base_lr, schedule, (epoch + steps / len(batches)) / cfg.epochs)
        lr = lr * warmup_factor(epoch + (steps + 1) / len(batches), warmup)
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        loss, shown = train_step(ctx, idx, epoch, amdim_weight, x)
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


def train_step(ctx: Context, idx: torch.Tensor, epoch: int, amdim_weight: float, x: torch.Tensor):
    """One optimiser step on the samples ``idx`` (their images ``x``, from the feed): views,
    forward, the recipe's loss (+ AMDIM), backward."""
    cfg, recipe = ctx.cfg, ctx.recipe
    x = x.to(ctx.device, non_blocking=True)
    with torch.no_grad():
        v1, v2 = ctx.augment(x)  # 'grey' views: v1 = x itself, v2 = the repeats' augmented copies
    clean = getattr(ctx.augment, "pairs_clean", False)
    with ctx.autocast():
        if recipe.two_views or amdim_weight > 0:
            extra = recipe.extra_views(v2)
            both = ctx.ddp_model(torch.cat([v1, v2]), with_amdim=amdim_weight > 0)
            out1, out2 = _split(both, v1.shape[0])
            if v2.shape[0] != v1.shape[0]:  # the clean outputs paired with every repeat
                out1 = _repeat(out1, v2.shape[0] // v1.shape[0])
            if extra:
                out2["extra"] = [ctx.ddp_model(e) for e in extra]
        elif clean:  # one view, 'grey' views: every augmented repeat, each row's index repeated with it
            out1, out2 = ctx.ddp_model(v2), None
            idx = idx.repeat(v2.shape[0] // v1.shape[0])
        else:  # one view: the (augmented) first view
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
    recipe.before_step(ctx)
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    recipe.after_step(ctx)
    return loss, shown


def _split(both: dict, b: int) -> tuple[dict, dict]:
    def cut(value, sl):
        if isinstance(value, torch.Tensor):
            return value[sl]
        if isinstance(value, tuple):
            return tuple(cut(v, sl) for v in value)
        return [cut(v, sl) for v in value]
    return ({k: cut(v, slice(0, b)) for k, v in both.items()}, {k: cut(v, slice(b, None)) for k, v in both.items()})


def _repeat(out: dict, r: int) -> dict:
    """Each tensor of a model output stacked ``r`` times along the batch (clean view per repeat)."""
    def rep(value):
        if isinstance(value, torch.Tensor):
            return value.repeat(r, *([1] * (value.dim() - 1)))
        if isinstance(value, tuple):
            return tuple(rep(v) for v in value)
        return [rep(v) for v in value]
    return {k: rep(v) for k, v in out.items()}



def main(args: argparse.Namespace) -> int:
    """``assignsolve run``: parse, train, print the final metrics."""
    cfg = config_from_args(args)
    try:
        result = run(cfg)
    except KeyboardInterrupt:  # Ctrl-C: the last complete epoch's checkpoint is kept, the lock released
        print(interrupted_message(out_dir(cfg)), file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0
