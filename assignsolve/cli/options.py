"""The one options language of the command line, and the one table formatter.

``KEY=VALUE`` (``run --solver-opt``, ``--encoder-opt``) and ``NAME.KEY=VALUE``
(``compare --solver-opt``) are parsed by the same :func:`parse_value`: ``true/yes/on`` and
``false/no/off`` are booleans, ``none/null`` is None, then int, then float; a quoted value
(``'kmeans++'``) is the string inside the quotes; anything else is the string itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..core.errors import ConfigError

__all__ = ["format_table", "parse_kv", "parse_named_kv", "parse_value"]


def parse_value(text: str):
    """``"false"`` -> False, ``"3"`` -> 3, ``"0.05"`` -> 0.05, ``"none"`` -> None, ``"'a'"`` -> ``"a"``."""
    raw = str(text).strip()
    low = raw.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def parse_kv(items, flag: str, error: type[Exception] = ConfigError) -> dict:
    """``["epsilon=0.05", "preprocess=false"]`` -> ``{"epsilon": 0.05, "preprocess": False}``.

    A mapping (from a config file) is returned as a dict unchanged.
    """
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise error(f"{flag}: expected KEY=VALUE, found {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def parse_named_kv(items: Sequence[str] | None, flag: str, error: type[Exception] = ConfigError) -> dict[str, dict]:
    """``["kmeans.preprocess=false"]`` -> ``{"kmeans": {"preprocess": False}}`` (values as :func:`parse_value`)."""
    opts: dict[str, dict] = {}
    for item in items or ():
        lhs, eq, raw = str(item).partition("=")
        name, dot, key = lhs.strip().rpartition(".")
        if not eq or not dot or not name or not key.isidentifier():
            raise error(f"{flag}: expected NAME.key=value, found {item!r}")
        opts.setdefault(name, {})[key] = parse_value(raw)
    return opts


def format_table(rows: Sequence[Mapping], columns: Sequence[str], cell=None, left=None) -> str:
    """A plain aligned text table: a header, a rule, one line per row.

    ``cell(row, column) -> str`` renders a value (default: ``str``, empty for missing); columns in
    ``left`` are left-aligned, the others right-aligned (default: every column left-aligned).
    """
    columns = list(columns)
    render = cell or (lambda r, c: "" if r.get(c) is None else str(r.get(c)))
    cells = [[render(r, c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    left = set(columns) if left is None else set(left)

    def line(values):
        return "  ".join(v.ljust(w) if c in left else v.rjust(w)
                         for v, w, c in zip(values, widths, columns)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
