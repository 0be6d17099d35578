"""The ``bergab`` command line: a thin layer over the library.

Each command lives in ``bergab._commands.<name>`` and exposes ``register(subparsers)``;
the handler it sets returns the exit code. Errors a user can fix (bad arguments, a bad
config, a missing optional dependency) print one line to stderr and exit 2, never a
traceback.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    bergab ...
    0
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bergab._validate import MissingDependencyError
from bergab._version import __version__

__all__ = ["build_parser", "entrypoint", "main"]

# One module per command under bergab/_commands/, each with register(subparsers).
_COMMAND_MODULES: tuple[str, ...] = (
    "landscape",
    "schedule",
    "train",
    "resume",
    "demo",
    "lr_find",
    "info",
)


class UsageError(Exception):
    """A problem the user can fix from the command line; printed as one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered command.

    Example:
        >>> p = build_parser()
        >>> p.prog
        'bergab'
    """
    parser = argparse.ArgumentParser(
        prog="bergab",
        description="Gradient descent with the learning rate under control.",
        epilog="Run 'bergab COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"bergab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"bergab._commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Example:
        >>> main([])  # doctest: +ELLIPSIS
        usage: bergab ...
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help/--version exit 0, bad usage exits 2
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stdout)
        return 0
    try:
        return int(func(args) or 0)
    except (UsageError, MissingDependencyError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"bergab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bergab {args.command}: interrupted", file=sys.stderr)
        return 130


def entrypoint() -> None:
    """Console-script entry point: ``sys.exit(main())``."""
    sys.exit(main())
