"""The objects of one run (:class:`Context`), evaluation and the metrics log."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from .. import metrics as M
from ..core.errors import optional_import
from .atomic import atomic_write_text
from .rng import _kept_rng
from ..ops.stats import balance
from ..ops.dist import gather_rows


class Context:
    """The objects of one run, shared by the phases below."""

    def __init__(self, cfg, d, device, data, model, ddp_model, optimizer, scaler, recipe, assigner, augment):
        from .feed import feed_for

        self.cfg, self.dist, self.device, self.data = cfg, d, device, data
        #: where the images come from (in memory or streamed from disk; :mod:`.feed`)
        self.feed = feed_for(data, cfg.workers, device)
        self.model, self.ddp_model, self.optimizer, self.scaler = model, ddp_model, optimizer, scaler
        self.recipe, self.assigner, self.augment = recipe, assigner, augment
        self.model_heads = model.heads

    def autocast(self):
        enabled = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=enabled)

    @torch.no_grad()
    def all_outputs(self, chunk: int = 512) -> dict:
        """Eval-mode outputs for every sample, float32, identical on all ranks."""
        n = len(self.feed)
        per = math.ceil(n / self.dist.world)
        lo, hi = min(self.dist.rank * per, n), min((self.dist.rank + 1) * per, n)
        was = self.model.training
        self.model.eval()
        parts: dict[str, list] = {}
        with self.autocast():
            for x in self.feed.chunks(lo, hi, chunk):
                out = self.model(x.to(self.device))
                for key, value in out.items():
                    if key == "amdim":
                        continue
                    parts.setdefault(key, []).append(value)
        if lo == hi:  # an empty shard still has to join the gathers
            out = self.model(self.feed.first().to(self.device))
            parts = {k: [v[:0] if isinstance(v, torch.Tensor) else [t[:0] for t in v]]
                     for k, v in out.items() if k != "amdim"}
        self.model.train(was)
        result = {}
        for key, chunks in parts.items():
            if isinstance(chunks[0], list):  # list of heads
                result[key] = [gather_rows(torch.cat([c[h] for c in chunks]).float(), self.dist)
                               for h in range(len(chunks[0]))]
            else:
                result[key] = gather_rows(torch.cat(chunks).float(), self.dist)
        return result

    def reset_head(self, name: str) -> None:
        head = self.model.heads[name]
        head.reset_parameters()
        for p in head.parameters():  # a fresh layer has no optimiser history either
            self.optimizer.state.pop(p, None)


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
               pl_balance=balance(pseudo, k))
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


class MetricsLog:
    """metrics.csv and metrics.jsonl (rewritten atomically from the history, so resume never duplicates rows)."""

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
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns)
        w.writeheader()
        for r in self.history:
            w.writerow({c: r.get(c, "") for c in columns})
        # temp + os.replace: a crash leaves the previous complete file, never half of one
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def close(self):
        if self.writer is not None:
            self.writer.close()


def _fmt(row: Mapping) -> str:
    keys = ["pl_nmi", "pl_acc", "head_acc", "knn_acc", "probe_acc", "pl_nonempty", "loss", "seconds", "eval_seconds"]
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row.get(k), (int, float)))
