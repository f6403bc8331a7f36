"""Checks of ``assignsolve run``'s options before any work starts, each a :class:`TrainError`
(exit 2) naming the option and value instead of a traceback from deep inside torch or a plugin."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping

import attrs
import torch

from ..core.errors import AssignsolveError, TrainError

__all__ = ["build_encoder", "check_device", "check_augment", "check_option_types", "check_run_options"]


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` (available), ``mps`` (available)."""
    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise TrainError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {name!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"--device: expected an available device, found {name!r} but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TrainError(f"--device: expected cuda:0..cuda:{torch.cuda.device_count() - 1}, found {name!r}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise TrainError(f"--device: expected an available device, found {name!r} but MPS is not available")
    elif dev.type != "cpu":
        raise TrainError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {name!r}")


def check_augment(strength: str) -> None:
    from ..augment import STRENGTHS

    # "auto" is resolved from the data (train/autoconfig.py); "grey" is the clean + augmented digit views
    allowed = sorted(set(STRENGTHS) | {"auto", "grey"})
    if strength not in allowed:
        raise TrainError(f"--augment: expected one of {allowed}, found {strength!r}")


def check_run_options(cfg) -> None:
    """Everything checkable without data: device, augmentation strength."""
    check_device(cfg.device)
    check_augment(cfg.augment)


def build_encoder(get_encoder, name: str, input_shape: tuple, options: Mapping):
    """``get_encoder(...)`` with an unknown or bad ``--encoder-opt`` as a :class:`TrainError`."""
    try:
        return get_encoder(name, input_shape, **options)
    except AssignsolveError:
        raise
    except (TypeError, ValueError) as exc:
        raise TrainError(f"--encoder-opt for encoder {name!r} {dict(options)}: {exc}") from exc


# ----------------------------------------------------------------- types of config-file values
def _accepts(tp, value) -> bool:
    origin = typing.get_origin(tp)
    options = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else (tp,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is bool and isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is str and isinstance(value, str):
            return True
        if t is dict and isinstance(value, (Mapping, list, str)):  # KEY=VALUE list or a table
            return True
    return False


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    options = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else (tp,)
    return " or ".join("none" if t is type(None) else getattr(t, "__name__", str(t)) for t in options)


def check_option_types(values: Mapping, config_cls, source: str) -> None:
    """Each value's type is its field's (an integer option given 1.5 is refused, naming it)."""
    fields = attrs.fields_dict(attrs.resolve_types(config_cls))
    for key, value in values.items():
        field = fields.get(key)
        if field is None or field.type is None:
            continue
        if not _accepts(field.type, value):
            raise TrainError(f"{source}: option {key!r}: expected {_type_name(field.type)}, "
                             f"found {type(value).__name__} {value!r}")
