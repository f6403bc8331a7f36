"""``assignsolve recipes [PATTERN]``: the registered training recipes."""

from __future__ import annotations

import argparse

from ..registry.manager import get_registry, list_recipes
from .options import format_table

HELP = "list registered training recipes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="glob on names (default: all)")


def main(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = [{"name": n, "plugin": reg.recipes[n].plugin, "description": reg.recipes[n].description}
            for n in list_recipes(args.pattern)]
    print(format_table(rows, ["name", "plugin", "description"]))
    return 0
