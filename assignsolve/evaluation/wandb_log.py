"""Optional Weights & Biases logging of a run's metric rows (``run --wandb``).

wandb is an extra (``pip install 'assignsolve[wandb]'``), never required. The W&B run id is
kept in ``OUT/wandb-id.txt``, so ``--resume`` continues the same W&B run instead of starting
a second one. ``WANDB_MODE=offline`` (W&B's own variable) logs to ``OUT/wandb`` without a
network; ``wandb sync`` uploads it later.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from .. import AssignsolveError

__all__ = ["WandbLogger", "numeric_items"]


def numeric_items(row: Mapping) -> dict[str, float]:
    """The finite int/float entries of a metrics row except ``epoch`` (W&B's step)."""
    return {k: v for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class WandbLogger:
    """One W&B run per ``OUT`` directory; ``log(row)`` uses ``row["epoch"]`` as the step."""

    def __init__(self, out: str | os.PathLike, config: Mapping, project: str = "assignsolve",
                 name: str | None = None):
        from ..core.errors import optional_import

        wandb = optional_import("wandb", "--wandb", "'assignsolve[wandb]'")
        out = Path(out)
        id_file = out / "wandb-id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        try:
            self.run = wandb.init(project=project, name=name or out.name, dir=str(out), id=run_id,
                                  resume="allow", config=dict(config))
        except Exception as exc:  # wandb raises its own types for login/network problems
            raise AssignsolveError(f"--wandb: could not start a W&B run in {out} ({exc}); "
                                   "set WANDB_MODE=offline to log without a network") from exc
        id_file.write_text(run_id + "\n")

    def log(self, row: Mapping) -> None:
        self.run.log(numeric_items(row), step=int(row["epoch"]), commit=True)

    def close(self) -> None:
        self.run.finish()
