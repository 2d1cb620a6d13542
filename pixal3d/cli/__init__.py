"""The ``pixal3d`` command. Each module of this package that defines ``register(subparsers)``
adds one sub-command; its handler receives the parsed arguments and returns an exit code.

Every failure ends in one shared path (:func:`pixal3d.errors.run_guarded`): one line on stderr and
exit code 2 for bad input or a fixable environment problem (:class:`~pixal3d.errors.UserError`, disk
full, permission denied, out of memory), 130 when interrupted, 1 for a bug; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from pixal3d.errors import run_guarded


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``prog: error: …``) with exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def add_command_group(subparsers, name: str, help: str, description: str):
    """A sub-command ``name`` that only holds sub-commands (``pixal3d data …``); run alone it prints its help and
    exits 2. Returns the group's sub-parsers, to add its sub-commands to."""
    parser = subparsers.add_parser(name, help=help, description=description)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")

    def show_help(args) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=show_help)
    return sub


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command found in this package."""
    parser = OneLineErrorParser(prog="pixal3d", description="Pixel-aligned image-to-3D (Pixal3D) in pure PyTorch.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def run_handler(handler, args) -> int:
    """Run a command handler; every failure becomes one line on stderr and its exit code (see module docstring)."""
    return run_guarded(handler, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pixal3d`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return run_handler(args.handler, args)
