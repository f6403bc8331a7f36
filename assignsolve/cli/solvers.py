"""``assignsolve solvers [PATTERN]``: the registered solvers."""

from __future__ import annotations

import argparse

from ..registry.manager import get_registry, list_solvers
from .options import format_table

HELP = "list registered solvers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="glob on names (default: all)")


def main(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = [
        {"name": e.name, "needs": e.needs, "gpu": "yes" if e.gpu else "no", "plugin": e.plugin,
         "description": e.description}
        for e in (reg.solvers[n] for n in list_solvers(args.pattern))
    ]
    print(format_table(rows, ["name", "needs", "gpu", "plugin", "description"]))
    return 0
