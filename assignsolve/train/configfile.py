"""Read a ``--config`` file (TOML, YAML, JSON) into a table; a syntax error names file, line, column."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from ..core.errors import TrainError, optional_import

__all__ = ["read_table"]


def _where(p: Path, line, column, what: str) -> TrainError:
    return TrainError(f"--config {str(p)!r}: syntax error at line {line}, column {column}: {what}")


def read_table(p: Path):
    """The parsed file (any value; the caller checks it is a table)."""
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"--config {str(p)!r}: cannot be read ({exc})") from exc
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
            if m:
                raise _where(p, m.group(1), m.group(2), msg[: m.start()].strip()) from None
            raise TrainError(f"--config {str(p)!r}: syntax error: {msg}") from None
    if suffix in (".yaml", ".yml"):
        yaml = optional_import("yaml", "--config with a YAML file", "pyyaml")
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            if mark is not None:
                raise _where(p, mark.line + 1, mark.column + 1, what) from None
            raise TrainError(f"--config {str(p)!r}: syntax error: {what}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _where(p, exc.lineno, exc.colno, exc.msg) from None
    raise TrainError(f"--config: expected a .toml, .yaml, .yml or .json file, found {str(p)!r}")
