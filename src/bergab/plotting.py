"""Plotting helpers. matplotlib is imported lazily, only here, with a headless backend.

Example:
    >>> plt = pyplot()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from bergab._validate import require

__all__ = ["pyplot"]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises a one-line ``MissingDependencyError`` naming ``pip install 'bergab[plot]'``
    when matplotlib is not installed.

    Example:
        >>> plt = pyplot()
        >>> fig, ax = plt.subplots()
        >>> plt.close(fig)
    """
    mpl = require("matplotlib", "plot")
    mpl.use("Agg", force=False)
    return require("matplotlib.pyplot", "plot")
