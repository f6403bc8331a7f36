"""``assignsolve run``: train an encoder on pseudo-labels from any solver (see :mod:`assignsolve.train`)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from ..train.config import add_arguments

HELP = "train an encoder on pseudo-labels from any solver"
#: ``run --help`` shows the training loop's module docstring, read without importing the loop.
DESCRIPTION = ast.get_docstring(ast.parse((Path(__file__).parents[1] / "train" / "loop.py").read_text()))

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace) -> int:
    from ..train.loop import main as run_main

    return run_main(args)
