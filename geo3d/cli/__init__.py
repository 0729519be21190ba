"""The ``geo3d`` command line.

Each sub-command lives in its own module of this package (``geo3d/cli/train.py`` ...),
which defines ``register(subparsers)``: it adds its parser and sets ``func`` to the function
that runs it. Modules whose names start with ``_`` hold shared helpers. Run
``geo3d --help`` for the list; ``python -m geo3d.cli`` is the same command (use it under
``torchrun``).

Errors from bad input print one clear line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

from geo3d.errors import Geo3dError

__all__ = ["main"]


def _command_modules() -> list:
    """The sub-command modules of this package, in name order."""
    return [importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
            if not info.name.startswith("_")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geo3d", description="geo3d: efficient 3D geometric perception.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except Geo3dError as exc:
        print(f"geo3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geo3d {args.command}: interrupted", file=sys.stderr)
        return 130
