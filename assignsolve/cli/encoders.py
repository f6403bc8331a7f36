"""``assignsolve encoders [PATTERN]``: the registered encoders."""

from __future__ import annotations

import argparse

from ..registry.manager import get_registry, list_encoders
from .options import format_table

HELP = "list registered encoders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="glob on names (default: all)")


def main(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = [{"name": n, "plugin": reg.encoders[n].plugin, "description": reg.encoders[n].description}
            for n in list_encoders(args.pattern)]
    print(format_table(rows, ["name", "plugin", "description"]))
    return 0
