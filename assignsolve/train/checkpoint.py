"""``OUT/checkpoint.pt``: what it stores, writing it atomically, loading it safely, resume checks.

Format 2 holds only tensors and plain values, so it is read with
``torch.load(weights_only=True)``: a crafted file cannot run code while it is loaded. The run's
configuration and history are JSON strings, the random states tensors (numpy's and Python's
Mersenne-Twister keys as int64). A format-1 checkpoint (numpy arrays inside, read only with
``weights_only=False``) is refused with a clear message rather than unpickled.

On ``--resume`` every option that changes the experiment must be the one saved
(:func:`check_resume`); only :data:`MAY_CHANGE` may differ, and ``--epochs`` only upwards.
"""

from __future__ import annotations

import json
import pickle
import random
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path

import attrs
import numpy as np
import torch

from ..core.errors import TrainError
from .atomic import atomic_write
from .config import TrainConfig, head_bn_for, warmup_epochs

__all__ = ["FORMAT", "MAY_CHANGE", "check_resume", "load_checkpoint", "restore", "save_checkpoint",
           "saved_with_solver"]

FORMAT = 2
REQUIRED = ("format", "epoch", "config", "encoder", "heads", "optimizer", "scaler", "recipe", "rng",
            "history", "counters")
#: options that may differ on --resume (they do not change what is trained); --epochs only upwards
MAY_CHANGE = ("epochs", "eval_every", "progress", "device", "resume", "overwrite", "out", "tensorboard",
              "data_mode", "workers")  # streamed images are the in-memory ones (datasets/streamed.py)


# ----------------------------------------------------------------- random states as tensors
def rng_tensors(device: torch.device) -> dict:
    """Every generator's state as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_tensors(state: Mapping, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# ----------------------------------------------------------------- write
def saved_config(cfg: TrainConfig, resolved: Mapping) -> dict:
    """The config as saved (JSON): every field plus the resolved recipe, K, optimiser and lr."""
    return {**attrs.asdict(cfg), **resolved}


def save_checkpoint(path: Path, ctx, epoch: int, history: list, resolved: Mapping) -> None:
    """Everything ``--resume`` needs, written atomically (temporary file unique to this process)."""
    cfg, model = ctx.cfg, ctx.model
    obj = {
        "format": FORMAT, "epoch": int(epoch),
        "config": json.dumps(saved_config(cfg, resolved)),
        "encoder": model.encoder.state_dict(), "heads": model.heads.state_dict(),
        "optimizer": ctx.optimizer.state_dict(), "scaler": ctx.scaler.state_dict(),
        "recipe": ctx.recipe.state_dict(),
        "solver": json.dumps({"name": cfg.solver, "options": resolved["solver_options_used"]}),
        "rng": rng_tensors(ctx.device), "history": json.dumps(history),
        "counters": {"solver_calls": int(ctx.assigner.calls), "solver_not_converged": int(ctx.assigner.not_converged)},
    }
    atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------- read
def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint at ``path``, loaded with ``weights_only=True``; :class:`TrainError` when it
    is not a complete format-2 checkpoint (corrupt, truncated, old format, crafted)."""
    where = str(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # no forbidden class or function: garbage bytes
            raise TrainError(f"checkpoint {where!r}: cannot be read ({str(exc).splitlines()[0]}): "
                             "corrupt or truncated") from exc
        raise TrainError(f"checkpoint {where!r}: refused to load objects other than tensors and plain values "
                         "(weights_only=True): written by an older assignsolve (format 1) or crafted; "
                         "start again with --overwrite") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"checkpoint {where!r}: cannot be read ({first}): corrupt or truncated") from exc
    if not isinstance(ckpt, Mapping):
        raise TrainError(f"checkpoint {where!r}: expected a dict of states, found {type(ckpt).__name__}")
    if ckpt.get("format") != FORMAT:
        raise TrainError(f"checkpoint {where!r}: expected format {FORMAT}, found {ckpt.get('format')!r} "
                         "(written by an older assignsolve; start again with --overwrite)")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise TrainError(f"checkpoint {where!r}: incomplete, missing {', '.join(missing)}")
    try:
        config, history = json.loads(ckpt["config"]), json.loads(ckpt["history"])
    except (TypeError, ValueError) as exc:
        raise TrainError(f"checkpoint {where!r}: config/history are not valid JSON ({exc})") from exc
    return {**ckpt, "config": config, "history": history}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def saved_with_solver(ckpt: Mapping) -> dict:
    """The checkpoint's saved config; one written before ``solver_options_used`` was saved gets it
    from the checkpoint's solver record (so a changed solver default is refused, not taken)."""
    saved = dict(ckpt["config"])
    if "head_bn_used" not in saved:  # written before --head-bn: the heads were the recipe's default
        try:
            saved["head_bn_used"] = head_bn_for(saved.get("head_bn"), saved["recipe"])
        except KeyError:  # no recipe saved, or one no longer registered: compared as today's
            pass
    # written before the stroke jitter: the 'grey' views had none (resumes with --stroke-jitter 0)
    saved.setdefault("stroke_jitter", 0.0)
    # written before --warmup (2026-12-08): no warm-up (resumes with --warmup 0)
    saved.setdefault("warmup", 0.0)
    if "solver_options_used" not in saved:
        try:
            saved["solver_options_used"] = json.loads(ckpt["solver"])["options"]
        except (TypeError, ValueError, KeyError):
            pass
    return saved


def check_resume(saved: Mapping, cfg: TrainConfig, resolved: Mapping, done: int, filled: Collection[str] = ()) -> None:
    """Refuse (:class:`TrainError`) a resume whose options differ from the saved run's; ``filled``:
    the options this run's defaults filled in (not given), whose refusal names the flag and saved
    value that resume the run as it was."""
    now = json.loads(json.dumps(saved_config(cfg, resolved)))
    defaults = {f.name: f.default for f in attrs.fields(TrainConfig)}
    allowed = ", ".join(_flag(k) for k in MAY_CHANGE if k not in ("resume", "overwrite"))
    # options compared as used (the recipe's or solver's default filled in), not as given
    compare = [k for k in now if k not in MAY_CHANGE and k not in ("method", "n_clusters", "optimizer", "lr",
                                                                 "relabel_every", "temperature", "solver_opt",
                                                                 "n_heads", "head_bn", "n_samples_used")]
    for key in compare:
        old = saved.get(key, now[key] if key in resolved else defaults.get(key))
        if isinstance(old, attrs.Factory):
            old = old.factory()
        if old != now[key]:
            name = {"recipe": "method", "n_clusters_used": "n_clusters", "optimizer_used": "optimizer",
                    "lr_used": "lr", "relabel_every_used": "relabel_every", "temperature_used": "temperature",
                    "solver_options_used": "solver_opt", "n_heads_used": "n_heads",
                    "head_bn_used": "head_bn"}.get(key, key)
            hint = ""
            # filled in by a default (the data's, the recipe's or the solver's recipe_training)
            defaulted = key in filled or name in filled or (key.endswith("_used") and getattr(cfg, name, None) is None)
            if defaulted and old is not None and not isinstance(old, Mapping):
                hint = f"; {_flag(name)} {old} resumes it as it was (a default that changed since the run)"
            raise TrainError(f"--resume: {_flag(name)} was {old!r} in the checkpoint, found {now[key]!r}: it changes "
                             f"the experiment (may change: {allowed}; --epochs only upwards); "
                             f"use another --out for a new run{hint}")
    trained, found = saved.get("n_samples_used"), now.get("n_samples_used")
    if trained is not None and trained != found:  # not recorded before 2026-12-07: not compared
        limit = f" (--limit {cfg.limit})" if cfg.limit is not None else ""
        raise TrainError(f"--resume: the run trained on {trained} samples, --data {cfg.data!r}{limit} now gives "
                         f"{found}: the data changed since the run; use another --out for a new run")
    saved_epochs = saved.get("epochs", cfg.epochs)
    was = warmup_epochs(saved.get("warmup", 0.0), saved_epochs)  # saved_with_solver: 0.0 for older runs
    now_w = warmup_epochs(cfg.warmup, cfg.epochs)
    if done < was and now_w != was:  # --warmup is a fraction of --epochs: a raised --epochs would stretch it
        raise TrainError(f"--resume: the run is inside its warm-up ({done} of {was} epochs, --warmup {cfg.warmup} "
                         f"of --epochs {saved_epochs}); --epochs {cfg.epochs} would make it {now_w} "
                         f"epoch{'s' * (now_w != 1)}: resume with --epochs {saved_epochs} until the warm-up is over")
    if cfg.epochs < done:
        raise TrainError(f"--resume: --epochs {cfg.epochs} is below the {done} epochs already in the checkpoint")


def restore(ctx, ckpt: Mapping, path: Path) -> tuple[int, list]:
    """Load every state of ``ckpt`` into the run; returns (completed epochs, history)."""
    try:
        ctx.model.encoder.load_state_dict(ckpt["encoder"])
        ctx.model.heads.load_state_dict(ckpt["heads"])
        ctx.optimizer.load_state_dict(ckpt["optimizer"])
        ctx.scaler.load_state_dict(ckpt["scaler"])
        ctx.recipe.load_state_dict(ckpt["recipe"])
        set_rng_tensors(ckpt["rng"], ctx.device)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"checkpoint {str(path)!r}: does not fit this run ({type(exc).__name__}: {first})") from exc
    ctx.assigner.calls = int(ckpt["counters"]["solver_calls"])
    ctx.assigner.not_converged = int(ckpt["counters"]["solver_not_converged"])
    return int(ckpt["epoch"]), list(ckpt["history"])
