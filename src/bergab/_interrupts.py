"""SIGTERM handled like Ctrl-C: what cluster schedulers send before they stop a job.

Python turns SIGINT into ``KeyboardInterrupt``, so ``finally`` blocks run, ``lr_find``
restores the model and the run layer writes a checkpoint. SIGTERM's default action
ends the process at once, with none of that. Inside :func:`sigterm_raises` SIGTERM
raises :class:`Terminated` instead, a ``KeyboardInterrupt``, so every place that
handles Ctrl-C handles it too; the command line then exits with 143 (128 + 15, what a
shell reports for a process ended by SIGTERM), as it exits with 130 for SIGINT.

Example:
    >>> import os, signal
    >>> with sigterm_raises():
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ...     except Terminated as exc:
    ...         print(type(exc).__name__, isinstance(exc, KeyboardInterrupt))
    Terminated True
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["EXIT_CODES", "Terminated", "exit_code", "handling", "sigterm_raises"]

#: The exit code of a command stopped by each signal (128 + the signal's number).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was (see the module docstring)."""


def exit_code(exc: BaseException | None = None, name: str | None = None) -> int:
    """The exit code for an interruption: 143 for SIGTERM, 130 for SIGINT.

    Example:
        >>> exit_code(Terminated()), exit_code(KeyboardInterrupt()), exit_code(name="SIGTERM")
        (143, 130, 143)
    """
    if isinstance(exc, Terminated) or name == "SIGTERM":
        return EXIT_CODES["SIGTERM"]
    return EXIT_CODES["SIGINT"]


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def handling(handlers: Mapping[int, Callable[[int, Any], Any]]) -> Iterator[None]:
    """Inside the block, ``handlers`` (signal number -> handler) are installed, in the
    main thread only (the one where Python lets handlers be set); the previous handlers
    are put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def sigterm_raises() -> contextlib.AbstractContextManager[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (see :func:`handling`)."""
    return handling({signal.SIGTERM: _raise_terminated})
