"""The ``bergab`` command line: a thin layer over the library.

Each command lives in ``bergab._commands.<name>`` and exposes ``register(subparsers)``;
the handler it sets returns the exit code. Errors a user can fix (bad arguments, a bad
config, a missing optional dependency, a file that cannot be read or written) print one
line to stderr and exit 2, never a traceback; ``bergab`` without a command prints its
usage and exits 2. Ctrl-C exits 130 and SIGTERM 143; a run stopped by either writes a
checkpoint first.

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
from typing import NoReturn

from bergab._interrupts import Terminated, exit_code, sigterm_raises
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
    "tune",
    "pbt",
    "info",
)


class UsageError(Exception):
    """A problem the user can fix from the command line; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one line for a mistake: ``bergab train: error: argument --threads:
    invalid int value: 'two' (see bergab train --help)``, not the usage block before it
    (every bad input gets one line; ``--help`` shows the usage). Subcommands' parsers are
    made by ``add_subparsers`` with the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered command.

    Example:
        >>> p = build_parser()
        >>> p.prog
        'bergab'
    """
    parser = _Parser(
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
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     main([])
        2
        >>> err.getvalue().splitlines()[0]  # doctest: +ELLIPSIS
        'usage: bergab ...'
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help/--version exit 0, bad usage exits 2
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:  # no command: a mistake, as argparse treats a missing argument
        parser.print_usage(sys.stderr)
        print("bergab: error: a command is required (see bergab --help)", file=sys.stderr)
        return 2
    try:
        with sigterm_raises():
            return int(func(args) or 0)
    except (UsageError, MissingDependencyError, ValueError, TypeError) as exc:
        print(f"bergab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be read or written
        print(f"bergab {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated) outside a run
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"bergab {args.command}: {what}", file=sys.stderr)
        return exit_code(exc)


def _os_error(exc: OSError) -> str:
    """One line for an ``OSError``: what failed and on which path.

    Example:
        >>> _os_error(PermissionError(13, "Permission denied", "/x"))
        "Permission denied: '/x'"
    """
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {str(exc.filename)!r}"
    return str(exc) or type(exc).__name__


def entrypoint() -> None:
    """Console-script entry point: ``sys.exit(main())``."""
    sys.exit(main())
