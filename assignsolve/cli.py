"""Command line: ``assignsolve {solvers,encoders,plugins,run,compare}``.

``run`` and ``compare`` live in their own modules (:mod:`assignsolve.train`,
:mod:`assignsolve.compare`), each exposing ``add_arguments(parser)`` and ``main(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import AssignsolveError
from .plugins import get_registry, list_encoders, list_solvers, plugin_rows


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cmd_solvers(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = [
        {"name": e.name, "needs": e.needs, "gpu": "yes" if e.gpu else "no", "plugin": e.plugin,
         "description": e.description}
        for e in (reg.solvers[n] for n in list_solvers(args.pattern))
    ]
    print(format_table(rows, ["name", "needs", "gpu", "plugin", "description"]))
    return 0


def _cmd_encoders(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = [{"name": n, "plugin": reg.encoders[n].plugin, "description": reg.encoders[n].description}
            for n in list_encoders(args.pattern)]
    print(format_table(rows, ["name", "plugin", "description"]))
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    rows = [dict(r, hooks=", ".join(r["hooks"])) for r in plugin_rows()]
    print(format_table(rows, ["name", "distribution", "version", "hooks"]))
    return 0


_DELEGATED = {
    "run": ("assignsolve.train", "train an encoder on pseudo-labels from any solver"),
    "compare": ("assignsolve.compare", "compare solvers on fixed features: one table, one plot"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assignsolve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"assignsolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, help_ in [
        ("solvers", _cmd_solvers, "list registered solvers"),
        ("encoders", _cmd_encoders, "list registered encoders"),
    ]:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("pattern", nargs="?", default="*", help="glob on names (default: all)")
        p.set_defaults(func=func)
    p = sub.add_parser("plugins", help="list loaded plugins with versions and hooks")
    p.set_defaults(func=_cmd_plugins)
    for name, (module, help_) in _DELEGATED.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AssignsolveError as exc:
        print(f"assignsolve {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
