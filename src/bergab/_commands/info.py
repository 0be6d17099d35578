"""``bergab info``: versions, threads, and which CPU kernels this process uses and why.

Paste its output into a bug report: it says what a result may depend on.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["info"])
    >>> args.func(args)  # doctest: +ELLIPSIS
    bergab ...
    0
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from typing import Any

__all__ = ["cpu_model", "info_lines", "register"]

# optional dependencies worth naming in a report (extras of pyproject.toml)
_OPTIONAL = ("numpy", "matplotlib", "optuna", "scikit-learn", "tensorboard", "tqdm")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (Linux: from ``/proc/cpuinfo``), else what ``platform`` knows.

    Example:
        >>> isinstance(cpu_model(), str)
        True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info_lines() -> list[str]:
    """The lines ``bergab info`` prints: versions, the CPU, threads, kernel status.

    Example:
        >>> lines = info_lines()
        >>> lines[0].startswith("bergab "), any(ln.startswith("kernels:") for ln in lines)
        (True, True)
    """
    import torch

    from bergab._version import __version__
    from bergab.optim import native_status

    status = native_status()
    openmp = "OpenMP" if torch.backends.openmp.is_available() else "no OpenMP"
    lines = [
        f"bergab {__version__}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"torch: {torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'no'})",
        f"platform: {platform.platform()}",
        f"cpu: {cpu_model()} ({platform.machine()})",
        f"threads: torch {torch.get_num_threads()} ({openmp}), interop "
        f"{torch.get_num_interop_threads()}",
        f"kernels: {status}",
    ]
    if status.library:
        lines.append(f"kernel library: {status.library}")
    if status.built or status.cpu:
        lines.append(
            f"kernel levels: built {', '.join(status.built) or 'none'}; "
            f"this CPU runs {', '.join(status.cpu) or 'unknown'}"
        )
    lines.append("optional: " + ", ".join(f"{d} {_version(d)}" for d in _OPTIONAL))
    return lines


def _run(args: argparse.Namespace) -> int:
    del args
    print("\n".join(info_lines()))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``info`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "info",
        help="print versions, threads and which CPU kernels are in use (for bug reports)",
        description="Print bergab's, Python's and torch's versions, the CPU, torch's thread\n"
        "counts, and which of bergab's fused CPU kernels this process uses, and why.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_run)
