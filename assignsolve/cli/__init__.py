"""Command line: ``assignsolve {solvers,encoders,plugins,recipes,run,compare,embed,eval}``.

One module per command (``assignsolve.cli.<command>``), each with ``HELP``, ``add_arguments(parser)``
and ``main(args)``; only the module of the command being run is imported, so listing commands
stay fast. :mod:`.options` holds the one ``KEY=VALUE`` parser and the one table formatter.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import AssignsolveError

#: command -> one-line help (the module is imported only when the command runs)
COMMANDS = {
    "solvers": "list registered solvers",
    "encoders": "list registered encoders",
    "recipes": "list registered training recipes",
    "plugins": "list loaded plugins with versions and hooks",
    "run": "train an encoder on pseudo-labels from any solver",
    "compare": "compare solvers on fixed features: one table, one plot",
    "embed": "write the features of a trained run's checkpoint to an .npz that compare reads",
    "eval": "held-out linear probe / kNN / cluster metrics of a trained run",
}


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` only that command's module is imported (``None``: every command)."""
    parser = argparse.ArgumentParser(prog="assignsolve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"assignsolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if argv is None else _command_of(argv)
    for name, help_ in COMMANDS.items():
        if argv is not None and name != wanted:
            sub.add_parser(name, help=help_)
            continue
        mod = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=help_, description=getattr(mod, "DESCRIPTION", None) or help_,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AssignsolveError as exc:
        print(f"assignsolve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `run` prints its own line (the checkpoint kept); every command exits 130
        print(f"assignsolve {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
