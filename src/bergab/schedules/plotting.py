"""Drawing a schedule: :func:`plot` (matplotlib, the ``bergab[plot]`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bergab._validate import check_bool, check_int, check_output_path
from bergab.schedules._base import ScheduleLike, _as_schedule


def plot(
    schedule: ScheduleLike,
    steps: int,
    path: str | Path | None = None,
    *,
    ax: Any = None,
    log: bool = False,
    label: str | None = None,
) -> Any:
    """Plot ``schedule(t)`` for ``t = 0 .. steps - 1`` (needs matplotlib: ``bergab[plot]``).

    Args:
        schedule: the schedule.
        steps: the number of steps to plot, an int >= 1.
        path: save the figure there (PNG, SVG, PDF... by extension; parent folders are
            created; checked before anything is computed) and close it. ``None``: leave
            it open.
        ax: draw into these matplotlib axes instead of a new figure.
        log: logarithmic y axis.
        label: the legend label (default: none, the schedule is the title).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> from bergab.schedules import cosine
        >>> fig = plot(cosine(1.0, 100), steps=120)
        >>> len(fig.axes[0].lines[0].get_xdata())
        120
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    from bergab.plotting import pyplot

    sched = _as_schedule(schedule, "schedule")
    n = check_int("steps", steps, low=1)
    check_bool("log", log)
    out = None if path is None else check_output_path("path", path)
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str or None, got {type(label).__name__}")
    if ax is not None and not callable(getattr(ax, "plot", None)):
        raise TypeError(f"ax must be matplotlib Axes or None, got {type(ax).__name__}")
    plt = pyplot()
    values = [sched(t) for t in range(n)]
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    else:
        fig = ax.figure
    ax.plot(range(n), values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if log:
        ax.set_yscale("log")
    if label is not None:
        ax.legend()
    elif own:
        title = repr(sched)
        ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=8)
    ax.grid(alpha=0.3)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        if own:
            plt.close(fig)
    return fig
