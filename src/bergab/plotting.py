"""Plotting helpers. matplotlib is imported lazily, only here, with a headless backend.

Example:
    >>> plt = pyplot()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bergab._validate import check_bool, check_int, check_output_path, require

if TYPE_CHECKING:
    from bergab.lr_finder import LRFindResult
    from bergab.minimization import MinimizeResult

__all__ = ["pyplot", "range_test", "trajectories"]


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


def _label(result: MinimizeResult) -> str:
    lr = result.lr
    if lr is None:
        return result.optimizer
    if isinstance(lr, float):
        return f"{result.optimizer} (lr={lr:.3g})"
    return f"{result.optimizer} (lr schedule)"


def _named_results(
    results: MinimizeResult | Sequence[MinimizeResult] | Mapping[str, MinimizeResult],
) -> list[tuple[str, MinimizeResult]]:
    from bergab.minimization import MinimizeResult

    pairs: list[tuple[str, Any]]
    if isinstance(results, MinimizeResult):
        pairs = [("", results)]
    elif isinstance(results, Mapping):
        pairs = [(str(k), v) for k, v in results.items()]
    elif isinstance(results, Sequence) and not isinstance(results, str):
        pairs = [("", r) for r in results]
    else:
        raise TypeError(
            "results must be a MinimizeResult, a sequence of them or a {label: result} dict, "
            f"got {type(results).__name__}"
        )
    if not pairs:
        raise ValueError("results must hold at least one MinimizeResult")
    for i, (label, r) in enumerate(pairs):
        if not isinstance(r, MinimizeResult):
            raise TypeError(
                f"results[{label or i!r}] must be a MinimizeResult, got {type(r).__name__}"
            )
        label = label or _label(r)
        pairs[i] = (label, r)
        if r.trajectory is None:
            raise ValueError(f"results[{label!r}] has no trajectory: run minimize with record=True")
        if r.trajectory.ndim != 2 or r.trajectory.shape[1] != 2:
            raise ValueError(
                f"results[{label!r}] is not a 2-D run: trajectory shape {r.trajectory.shape}"
            )
    return pairs


def _grid_values(fn: Any, domain: Any, resolution: int) -> tuple[np.ndarray, ...]:
    import torch

    (x0, x1), (y0, y1) = domain
    xs = np.linspace(x0, x1, resolution)
    ys = np.linspace(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([gx, gy], axis=-1))
    with torch.no_grad():
        z = fn(pts)
    z = np.asarray(z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else z, np.float64)
    if z.shape != gx.shape:
        raise ValueError(
            f"fn must evaluate a (..., 2) grid to shape (...); got {z.shape} for {pts.shape}"
        )
    return gx, gy, z


def _save(fig: Any, path: Path, dpi: int) -> None:
    """Save ``fig``; a PNG goes through a 256-colour palette when pillow is there (line plots
    lose nothing visible, the file shrinks about threefold)."""
    if path.suffix.lower() != ".png":
        fig.savefig(path, dpi=dpi)
        return
    try:
        from PIL import Image
    except ImportError:
        fig.savefig(path, dpi=dpi)
        return
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)


def trajectories(
    fn: Any,
    results: MinimizeResult | Sequence[MinimizeResult] | Mapping[str, MinimizeResult],
    path: str | Path,
    animate: bool = False,
    *,
    domain: tuple[tuple[float, float], tuple[float, float]] | None = None,
    levels: int = 25,
    log_levels: bool | None = None,
    resolution: int = 200,
    losses: bool = True,
    title: str | None = None,
    frames: int = 40,
    fps: int = 12,
    dpi: int = 100,
) -> Path:
    """Draw optimizer paths over the contours of a 2-D function; save a figure or a GIF.

    The left panel shows contour lines of ``fn`` (log-spaced in ``f − f_min`` by default,
    so valleys stay visible), one path per result with a legend, the common start and the
    known minima (stars); a diverged path is drawn until it leaves the window. The right
    panel (``losses=True``) shows ``f − f*`` per step on a log axis (``f`` itself when the
    minimum is unknown or ``−∞``).

    Args:
        fn: a function of a ``(..., 2)`` tensor returning ``(...)``, usually a landscape
            (its ``domain``, ``minima`` and ``min_value`` are used when present).
        results: one :class:`~bergab.minimization.MinimizeResult`, a sequence (labels from
            optimizer and lr) or a ``{label: result}`` dict; each recorded (``record=True``).
        path: output file, any format matplotlib writes by its extension (parent folders
            are created); with ``animate=True`` it must end in ``.gif``. Checked before
            any work.
        animate: write an animated GIF (matplotlib's ``PillowWriter``; needs pillow).
        domain: ``((xmin, xmax), (ymin, ymax))``; default ``fn.domain``.
        levels: number of contour levels, ``>= 2``.
        log_levels: log-spaced levels; default: yes unless ``fn.min_value`` is ``−∞``.
        resolution: grid points per axis for the contours.
        losses: add the loss-per-step panel.
        title: figure title (default ``fn.name``).
        frames: GIF frames (iterates are subsampled evenly to this many).
        fps: GIF frames per second.
        dpi: resolution of the saved figure (the GIF uses at most 72).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> from bergab import landscapes, minimize
        >>> runs = [minimize(landscapes.booth, optimizer=o, lr=0.01, max_steps=100)
        ...         for o in ("sgd", "momentum")]
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "booth.png"
        >>> trajectories(landscapes.booth, runs, out).read_bytes()[:4]
        b'\\x89PNG'
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of a (..., 2) tensor, got {type(fn).__name__}")
    pairs = _named_results(results)
    check_bool("animate", animate)
    # checked before the contours are computed: a GIF, or any format matplotlib writes
    path = check_output_path("path", path, suffixes=[".gif"] if animate else None)
    levels = check_int("levels", levels, low=2)
    resolution = check_int("resolution", resolution, low=10)
    frames = check_int("frames", frames, low=2)
    fps = check_int("fps", fps, low=1)
    dpi = check_int("dpi", dpi, low=10)
    domain = _checked_domain(fn, domain)
    check_bool("losses", losses)
    if log_levels is not None:
        check_bool("log_levels", log_levels)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    if animate:
        require("PIL", "plot")
    plt = pyplot()
    colors_mod = require("matplotlib.colors", "plot")

    gx, gy, z = _grid_values(fn, domain, resolution)
    f_star = float(getattr(fn, "min_value", math.nan))
    if log_levels is None:
        log_levels = f_star != -math.inf
    lv, field, norm = _contour_levels(z, f_star, levels, log_levels, colors_mod)

    if losses:
        fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11.0, 4.6), width_ratios=(1.1, 1.0))
    else:
        fig, ax = plt.subplots(figsize=(6.0, 5.0))
        ax_loss = None
    try:
        (x0, x1), (y0, y1) = domain
        ax.contour(gx, gy, field, levels=lv, norm=norm, cmap="viridis", linewidths=0.7)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        minima = list(getattr(fn, "minima", []) or [])
        if minima:
            mx, my = np.asarray(minima, dtype=np.float64).T
            ax.plot(mx, my, "*", color="crimson", ms=13, mec="white", zorder=5, label="minimum")
        lines, loss_lines, data = _draw_paths(
            ax, ax_loss, pairs, domain, f_star, plt.get_cmap("tab10")
        )
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
        if ax_loss is not None:
            _label_loss_axis(ax_loss, math.isfinite(f_star))
        name = getattr(fn, "name", None)
        fig.suptitle(title if title is not None else (name or ""), fontsize=12)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not animate:
            _save(fig, path, dpi)
            return path
        _save_animation(fig, path, lines, loss_lines, data, frames=frames, fps=fps, dpi=dpi)
        return path
    finally:
        plt.close(fig)


def _checked_domain(fn: Any, domain: Any) -> Any:
    """``domain``, or ``fn.domain`` when it is ``None``, checked to be
    ``((xmin, xmax), (ymin, ymax))`` with min < max."""
    if domain is None:
        domain = getattr(fn, "domain", None)
        if domain is None:
            raise ValueError("domain is required unless fn is a landscape with a domain")
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in domain)
        ok = all(map(math.isfinite, (x0, x1, y0, y1))) and x0 < x1 and y0 < y1
    except (TypeError, ValueError):  # not two pairs of numbers
        ok = False
    if not ok:
        raise ValueError(
            f"domain must be ((xmin, xmax), (ymin, ymax)), finite with min < max, got {domain!r}"
        )
    return (x0, x1), (y0, y1)


def _contour_levels(
    z: np.ndarray, f_star: float, levels: int, log_levels: bool, colors_mod: Any
) -> tuple[np.ndarray, np.ndarray, Any]:
    """The contour levels, the values to contour and the colour norm (``None`` when linear).

    Log levels are log-spaced in ``z − base`` (``base`` the smaller of f* and the grid's
    minimum), so valleys stay visible."""
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        raise ValueError("fn is not finite anywhere on the domain")
    if not log_levels:
        return np.linspace(float(finite.min()), float(finite.max()), levels), z, None
    base = min(f_star, float(finite.min())) if math.isfinite(f_star) else float(finite.min())
    shifted = z - base
    top = float(np.nanmax(shifted[np.isfinite(shifted)]))
    positive = shifted[(shifted > 0) & np.isfinite(shifted)]
    low = max(float(positive.min()) if positive.size else top * 1e-6, top * 1e-7)
    lv = np.geomspace(low, top, levels) if top > low else np.linspace(0, top or 1, levels)
    # below the lowest level nothing is drawn; clipping keeps exact zeros off a log scale
    field = np.where(np.isfinite(shifted), np.maximum(shifted, lv[0] / 10), shifted)
    return lv, field, colors_mod.LogNorm(vmin=lv[0], vmax=lv[-1])


def _draw_paths(
    ax: Any,
    ax_loss: Any,
    pairs: list[tuple[str, MinimizeResult]],
    domain: Any,
    f_star: float,
    cmap: Any,
) -> tuple[list[Any], list[Any], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """One path per result on ``ax`` (and its loss curve on ``ax_loss``, if any): the lines
    drawn on each and, per result, the iterates, steps and plotted losses (for a GIF)."""
    (x0, x1), (y0, y1) = domain
    known_min = math.isfinite(f_star)
    lines, loss_lines, data = [], [], []
    for i, (label, r) in enumerate(pairs):
        traj = np.asarray(r.trajectory, dtype=np.float64)
        if r.diverged:  # draw a runaway path only until it leaves the window
            out = ~((traj[:, 0] >= x0) & (traj[:, 0] <= x1))
            out |= ~((traj[:, 1] >= y0) & (traj[:, 1] <= y1))
            if out.any():
                traj = traj[: int(np.argmax(out)) + 1]
        color = cmap(i % 10)
        (line,) = ax.plot(
            traj[:, 0], traj[:, 1], "-o", color=color, lw=1.3, ms=2.0, label=label, zorder=3
        )
        lines.append(line)
        if i == 0:
            ax.plot(traj[0, 0], traj[0, 1], "o", color="black", ms=6, zorder=6)
        steps = np.arange(len(r.losses))
        y = r.losses - f_star if known_min else r.losses
        if known_min:
            y = np.maximum(y, 1e-16)
        data.append((traj, steps, y))
        if ax_loss is not None:
            (ll,) = ax_loss.plot(steps, y, color=color, lw=1.3, label=label)
            loss_lines.append(ll)
    return lines, loss_lines, data


def _label_loss_axis(ax_loss: Any, known_min: bool) -> None:
    """Axes of the loss panel: ``f − f*`` on a log scale, or ``f`` (symlog) without f*."""
    ax_loss.set_xlabel("step")
    if known_min:
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("f(x) − f*")
    else:
        ax_loss.set_yscale("symlog", linthresh=1.0)
        ax_loss.set_ylabel("f(x)")
    ax_loss.grid(True, which="major", alpha=0.3)


def _save_animation(
    fig: Any,
    path: Path,
    lines: list[Any],
    loss_lines: list[Any],
    data: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    frames: int,
    fps: int,
    dpi: int,
) -> None:
    """Save a GIF whose frames grow every path (and loss curve) to the same step; the
    iterates are subsampled evenly to ``frames`` frames."""
    animation = require("matplotlib.animation", "plot")
    longest = max(len(d[0]) for d in data)
    idx = np.unique(np.linspace(0, longest - 1, frames).round().astype(int))

    def draw(k: int) -> list[Any]:
        for line, ll, (traj, steps, y) in zip(
            lines, loss_lines or [None] * len(lines), data, strict=True
        ):
            n = min(k + 1, len(traj))
            line.set_data(traj[:n, 0], traj[:n, 1])
            if ll is not None:
                ll.set_data(steps[:n], y[:n])
        return lines + loss_lines

    anim = animation.FuncAnimation(fig, draw, frames=list(idx), blit=False)
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=min(dpi, 72))


# ----------------------------------------------------------------------------- range test
_MARKERS = {"minimum": "v", "soft_minimum": "^", "steep": "o", "valley": "s", "slide": "D"}


def _trials(ax: Any, result: LRFindResult, handles: list[Any], labels: list[str]) -> None:
    """``lr="auto"``'s trials on a right-hand axis: score against candidate lr, diverged
    ones at the top, and the chosen lr (its legend entries join ``handles``/``labels``)."""
    right = ax.twinx()
    cands = sorted(result.candidates, key=lambda c: c["lr"])
    lrs = [c["lr"] for c in cands]
    scores = [float(c["score"]) for c in cands]
    finite = [v for v in scores if math.isfinite(v)]
    top = max(finite) * 1.1 if finite else 1.0
    shown = [v if math.isfinite(v) else top for v in scores]
    (line,) = right.plot(lrs, shown, "s--", color="C5", ms=6, lw=1)
    handles.append(line)
    labels.append(f"trials: score after {cands[0].get('steps', '?')} steps")
    bad = [(lr, top) for lr, v in zip(lrs, scores, strict=True) if not math.isfinite(v)]
    if bad:
        right.plot(*zip(*bad, strict=True), "x", color="C3", ms=9)
    kind = "fallback" if result.fallback else "chosen"
    handles.append(ax.axvline(result.suggestion, color="k", lw=2))
    labels.append(f"{kind} {result.suggestion:.2g}")
    on_train = "training data" in result.choice
    right.set_ylabel(f"trial score ({'training-sample' if on_train else 'validation'} loss)")


def range_test(result: LRFindResult, path: str | Path | None = None, *, ax: Any = None) -> Any:
    """The range test's figure, which :meth:`bergab.lr_finder.LRFindResult.plot` draws.

    Loss against lr (log x): the raw and the smoothed loss, a marker and a vertical line
    per suggestion (solid: the one used), and the raw minimum. The y axis spans the
    lowest loss recorded (raw or smoothed) up to a quarter above where the smoothed curve
    starts. A result of ``lr="auto"`` (:func:`bergab.auto_lr.choose_lr`) also shows its
    trials, each candidate lr at its score (right axis; a diverged one at the top), and
    the chosen lr as a solid black line.

    Example:
        >>> from bergab.lr_finder import LRFindResult
        >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
        >>> range_test(r).axes[0].get_ylabel()
        'loss'
    """
    out = None if path is None else check_output_path("path", path)
    if ax is not None and not callable(getattr(ax, "plot", None)):
        raise TypeError(f"ax must be matplotlib Axes or None, got {type(ax).__name__}")
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    lrs, losses, smoothed = result.lrs, result.losses, result.smoothed
    ax.plot(lrs, losses, color="0.75", lw=1, label="loss")
    ax.plot(lrs, smoothed, color="C0", lw=2, label="smoothed")
    ax.set_xscale("log")
    for i, (name, lr) in enumerate(sorted(result.suggestions.items())):
        y = float(np.interp(np.log10(lr), np.log10(lrs), smoothed))
        chosen = name == result.rule
        ax.axvline(lr, color=f"C{i + 1}", ls="-" if chosen else ":", lw=1.5 if chosen else 1)
        label = f"{name} {lr:.2g}" + (" (suggestion)" if chosen else "")
        ax.plot([lr], [y], marker=_MARKERS.get(name, "o"), ms=9 if chosen else 7,
                color=f"C{i + 1}", ls="none", label=label)  # fmt: skip
    if len(losses):
        # the raw minimum, marked and inside the y range (the smoothed curve lags and sits
        # above it: a range from the smoothed curve alone cut it off)
        i_raw = int(np.argmin(losses))
        raw_min = float(losses[i_raw])
        label = f"raw minimum {raw_min:.3g} at lr {lrs[i_raw]:.2g}"
        ax.plot([lrs[i_raw]], [raw_min], marker="x", color="0.35", ls="none", label=label)
        lo, start = min(raw_min, float(smoothed.min())), float(smoothed[0])
        hi = max(start, lo) + 0.25 * abs(max(start, lo) - lo) + 1e-12
        ax.set_ylim(lo - 0.1 * (hi - lo), hi)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(
        f"LR range test: suggestion {result.suggestion:.2g} ({result.rule}), "
        f"confidence {result.confidence:.2f}"
    )
    handles, labels = ax.get_legend_handles_labels()
    if result.candidates:
        _trials(ax, result, handles, labels)
    ax.legend(handles, labels, fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120, bbox_inches="tight")
    return fig
