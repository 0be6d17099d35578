"""Argument checks shared by every public entry point.

Each check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value
out of range, and the message always names the argument and the allowed range, e.g.
``ValueError: gamma must be in (0, 1], got 1.5``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "FlagError",
    "MissingDependencyError",
    "check_betas",
    "check_bool",
    "check_choice",
    "check_float_dtype",
    "check_int",
    "check_output_path",
    "check_path",
    "check_real",
    "is_schedule",
    "require",
]


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message names the pip extra that provides it."""


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or raise a one-line hint naming the extra to install.

    Example:
        >>> require("math", "plot").sqrt(4.0)
        2.0
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", maxsplit=1)[0]
        raise MissingDependencyError(
            f"{top} is not installed; install it with: pip install 'bergab[{extra}]'"
        ) from exc


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number inside the interval; return it as float.

    ``low_open``/``high_open`` exclude the bound itself. ``None`` means unbounded.

    Example:
        >>> check_real("lr", 0.1, low=0.0, low_open=True)
        0.1
        >>> check_real("lr", -1.0, low=0.0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: lr must be in (0, inf), got -1.0
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        # 0-d tensors and numpy scalars are accepted through float()
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(
            f"{name} must be in {_interval(low, high, low_open, high_open)}, got {value!r}"
        )
    return v


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an integer in ``[low, high]``; return it as int.

    Example:
        >>> check_int("steps", 10, low=1)
        10
        >>> check_int("steps", 0, low=1)
        Traceback (most recent call last):
        ...
        ValueError: steps must be an integer in [1, inf), got 0
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf)" if high is None else f"{high}]"
        left = "(" if low is None else "["
        raise ValueError(f"{name} must be an integer in {left}{lo}, {hi}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Check that ``value`` is one of ``choices``; choices that are all bools make it a flag,
    checked by :func:`check_bool` (``TypeError`` for anything but ``True``/``False``).

    Example:
        >>> check_choice("mode", "exp", ("exp", "linear"))
        'exp'
        >>> check_choice("mode", "log", ("exp", "linear"))
        Traceback (most recent call last):
        ...
        ValueError: mode must be one of 'exp', 'linear'; got 'log'
        >>> check_choice("nesterov", 1, (False, True))  # choices of bools: a flag
        Traceback (most recent call last):
        ...
        bergab._validate.FlagError: nesterov must be True or False, got int 1
    """
    if choices and all(isinstance(c, bool) for c in choices):
        # a flag: 1 == True and 0 == False, so membership alone would let 1, 0 and 1.0 in
        return check_bool(name, value)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


class FlagError(TypeError, ValueError):
    """A flag given something other than ``True`` or ``False``.

    A ``TypeError`` (the wrong kind of value), and a ``ValueError`` too: the optimizers
    checked their flags as a choice among ``(False, True)`` and raised ``ValueError``, so
    code that catches that keeps working (numpy's ``AxisError`` is a ``ValueError`` and an
    ``IndexError`` for the same reason).
    """


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is ``True`` or ``False`` (not merely truthy); return it.

    Raises :class:`FlagError`, a ``TypeError`` (and ``ValueError``), otherwise.

    Example:
        >>> check_bool("log", True)
        True
        >>> check_bool("log", "yes")
        Traceback (most recent call last):
        ...
        bergab._validate.FlagError: log must be True or False, got str 'yes'
    """
    if not isinstance(value, bool):
        raise FlagError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_betas(
    value: Any, *, name: str = "betas", beta1_low_open: bool = False
) -> tuple[float, float]:
    """Check that ``value`` is a pair ``(beta1, beta2)`` of reals in [0, 1); return floats.

    ``beta1_low_open=True`` excludes ``beta1 = 0`` (for algorithms that divide by it).
    Each element is reported by its index, e.g. ``betas[1]``.

    Example:
        >>> check_betas((0.9, 0.999))
        (0.9, 0.999)
        >>> check_betas((0.9, 1.0))
        Traceback (most recent call last):
        ...
        ValueError: betas[1] must be in [0, 1), got 1.0
        >>> check_betas(0.9)
        Traceback (most recent call last):
        ...
        ValueError: betas must be a pair (beta1, beta2) with each in [0, 1), got 0.9
    """
    first = _interval(0.0, 1.0, beta1_low_open, True)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        ranges = f"beta1 in {first} and beta2 in [0, 1)" if beta1_low_open else "each in [0, 1)"
        raise ValueError(f"{name} must be a pair (beta1, beta2) with {ranges}, got {value!r}")
    b1 = check_real(
        f"{name}[0]", value[0], low=0.0, high=1.0, low_open=beta1_low_open, high_open=True
    )
    b2 = check_real(f"{name}[1]", value[1], low=0.0, high=1.0, high_open=True)
    return b1, b2


def is_schedule(value: Any) -> TypeGuard[Callable[..., Any]]:
    """Whether ``value`` is used as a schedule (a callable ``step -> value``) by bergab.

    True for bergab schedules and for any other ``step -> value`` callable (a function,
    a lambda); False for numbers, tensors, ``None`` and classes. The one definition used
    by the optimizers, :func:`bergab.schedules.attach` and the training loop (re-exported
    as :func:`bergab.schedules.is_schedule`).

    Example:
        >>> is_schedule(lambda t: 0.1 / (t + 1)), is_schedule(0.1), is_schedule(None)
        (True, False, False)
        >>> is_schedule(float)  # a class is a type, not a schedule
        False
    """
    # (tensors and numbers are not callable; a class is, but builds objects, not values)
    return callable(value) and not isinstance(value, type)


def _figure_suffixes() -> list[str]:
    """The file extensions matplotlib's ``savefig`` writes (``.png``, ``.svg``, ``.pdf``...)."""
    backend_bases = require("matplotlib.backend_bases", "plot")
    return sorted(f".{ext}" for ext in backend_bases.FigureCanvasBase.get_supported_filetypes())


def check_path(name: str, value: Any) -> Path:
    """``value`` as a ``Path``; anything but a str or ``os.PathLike`` is a TypeError naming
    ``name``.

    Example:
        >>> check_path("log_dir", None)
        Traceback (most recent call last):
        ...
        TypeError: log_dir must be a path (str or os.PathLike), got NoneType
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


def check_output_path(name: str, path: Any, *, suffixes: Collection[str] | None = None) -> Path:
    """Check that a file can be written at ``path``, before the work that produces it.

    The checks: ``path`` is a str or ``os.PathLike`` (``TypeError``); it is not an existing
    folder; it ends in one of ``suffixes`` (lowercase, with the dot; ``None``: every format
    matplotlib's ``savefig`` writes, which is what the plotting functions pass it to); an
    existing file there is writable; and the nearest existing folder above it is a
    writable folder, so that the missing ones can be created (the writers create them).
    Each failure is a ``ValueError`` naming the argument, raised before a sweep or a run
    spends its time rather than by pathlib or PIL afterwards.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> check_output_path("path", "runs/lr_find.png")
        PosixPath('runs/lr_find.png')
        >>> check_output_path("path", "runs/lr_find.xyz")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: path must end in a file extension matplotlib writes ..., .png, ...; got '...xyz'
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a file path (str or os.PathLike), got {type(path).__name__}"
        )
    out = Path(path)
    if str(path) == "" or out.is_dir():
        raise ValueError(f"{name} must be a file path, got the folder {str(path)!r}")
    allowed = _figure_suffixes() if suffixes is None else sorted(suffixes)
    if out.suffix.lower() not in allowed:
        kind = "a file extension matplotlib writes" if suffixes is None else "one of"
        raise ValueError(f"{name} must end in {kind} {', '.join(allowed)}; got {str(path)!r}")
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"{name}: the file {str(path)!r} exists and is not writable")
    # the nearest existing folder above must be a writable folder (the rest is created)
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{name}: cannot create a folder inside the file {str(folder)!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: the folder {str(folder)!r} is not writable")
    return out


#: Floating-point dtypes by the names configs and users write (``torch.float32`` etc.).
_FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "half", "float", "double")


def check_float_dtype(name: str, value: Any) -> Any:
    """A floating-point ``torch.dtype``, given as one or by name (``"float64"``,
    ``"torch.bfloat16"``, ``"double"``...); anything else raises naming the argument.

    Example:
        >>> check_float_dtype("dtype", "float64")
        torch.float64
        >>> check_float_dtype("dtype", "int64")
        Traceback (most recent call last):
        ...
        ValueError: dtype must be a floating-point dtype (float16, bfloat16, float32, float64, half, float, double), got 'int64'
    """  # noqa: E501 - a doctest's output is one line
    import torch

    allowed = ", ".join(_FLOAT_DTYPE_NAMES)
    dtype = value
    if isinstance(value, str):
        key = value.strip().removeprefix("torch.")
        dtype = getattr(torch, key) if key in _FLOAT_DTYPE_NAMES else None
    elif not isinstance(value, torch.dtype):
        raise TypeError(
            f"{name} must be a torch.dtype or its name ({allowed}), got {type(value).__name__}"
        )
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"{name} must be a floating-point dtype ({allowed}), got {value!r}")
    return dtype
