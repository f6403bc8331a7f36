"""``assignsolve plugins``: the loaded plugins with their versions and hooks."""

from __future__ import annotations

import argparse

from ..registry.manager import plugin_rows
from .options import format_table

HELP = "list loaded plugins with versions and hooks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    rows = [dict(r, hooks=", ".join(r["hooks"])) for r in plugin_rows()]
    print(format_table(rows, ["name", "distribution", "version", "hooks"]))
    return 0
