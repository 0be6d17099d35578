"""``bergab landscape``: race optimizers down a classic test function, draw their paths.

A thin layer over :func:`bergab.minimization.compare` (the runs, with ``--lr tune`` a small
log-grid search per optimizer), :func:`bergab.minimization.format_table` (the table) and
:func:`bergab.plotting.trajectories` (the figure and the GIF).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from bergab import landscapes
from bergab._validate import check_int, check_output_path, check_real

__all__ = ["register"]

DEFAULT_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam"

EPILOG = """\
examples:
  bergab landscape rosenbrock --optimizers sgd,momentum,adam --steps 2000 --lr tune --out rosen.png
  bergab landscape saddle --optimizers sgd,momentum --lr 0.01 --steps 300 --out saddle.png --gif
  bergab landscape quadratic --condition-number 50 --lr sgd=0.02,momentum=0.005 --steps 200
  bergab landscape quadratic --optimizers sgd --lr 0.01,0.1,0.19,0.25 --steps 100 --out lr.png
  bergab landscape himmelblau --start=-0.27,-0.9 --noise 2 --seed 1 --lr tune --out noisy.png

landscapes: {names}
--lr takes one value for every optimizer, several (each optimizer runs at each: the effect of
the lr), NAME=VALUE pairs, or 'tune' (each optimizer's best lr on a log grid: a fair race).
Write negative start points as --start=-1.2,1.
"""


def register(subparsers: Any) -> None:
    """Add the ``landscape`` command to the ``bergab`` parser."""
    p = subparsers.add_parser(
        "landscape",
        help="race optimizers down a test function and plot their paths",
        description="Run several optimizers from the same start on a 2-D test function; print "
        "final f, steps to tolerance and the lr used; draw the paths over the contours.",
        epilog=EPILOG.format(names=", ".join(landscapes.names())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="the landscape (see the list below)")
    p.add_argument(
        "--optimizers",
        default=DEFAULT_OPTIMIZERS,
        help=f"comma-separated optimizer names (default: {DEFAULT_OPTIMIZERS})",
    )
    p.add_argument("--steps", default="500", help="the most steps per optimizer (default: 500)")
    p.add_argument(
        "--lr",
        default="tune",
        help="a learning rate, several (A,B,...), NAME=VALUE pairs, or 'tune' (default: tune)",
    )
    p.add_argument(
        "--grid",
        default=None,
        metavar="LOW,HIGH,NUM",
        help="the log grid for --lr tune (default: 1e-5,3.16,12: half decades)",
    )
    p.add_argument(
        "--tol", default="1e-8", help="tolerance on f - f* and for convergence (default: 1e-8)"
    )
    p.add_argument("--start", default=None, metavar="X,Y", help="start point (default: classic)")
    p.add_argument(
        "--condition-number", default="10", help="κ for the quadratic landscape (default: 10)"
    )
    p.add_argument("--noise", default="0", help="gradient noise sigma (default: 0)")
    p.add_argument("--seed", default="0", help="seed of the gradient noise (default: 0)")
    p.add_argument("--out", default=None, help="write the figure here (.png, .svg, .pdf)")
    p.add_argument("--gif", action="store_true", help="also write an animation next to --out")
    p.add_argument("--frames", default="40", help="GIF frames (default: 40)")
    p.add_argument("--title", default=None, help="figure title (default: the landscape name)")
    p.set_defaults(func=run)


def _float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


def parse_lr(text: str, optimizers: list[str]) -> float | list[float] | dict[str, float] | str:
    """``'tune'``, one float, several floats (each optimizer runs at each), or ``NAME=VALUE``
    pairs covering every optimizer.

    Example:
        >>> parse_lr("sgd=0.1,adam=1e-3", ["sgd", "adam"])
        {'sgd': 0.1, 'adam': 0.001}
        >>> parse_lr("0.01", ["sgd"]), parse_lr("0.01,0.1", ["sgd"])
        (0.01, [0.01, 0.1])
    """
    text = text.strip()
    if text.lower() == "tune":
        return "tune"
    if "=" not in text:
        values = [
            check_real("--lr", _float("--lr", v), low=0.0, low_open=True) for v in text.split(",")
        ]
        return values[0] if len(values) == 1 else values
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--lr pairs must look like NAME=VALUE, got {item!r}")
        key = name.strip()
        out[key] = check_real(f"--lr {key}", _float(f"--lr {key}", value), low=0.0, low_open=True)
    missing = [o for o in optimizers if o not in out]
    if missing:
        raise ValueError(f"--lr has no value for {', '.join(missing)}")
    extra = [k for k in out if k not in optimizers]
    if extra:
        raise ValueError(f"--lr names optimizers not in --optimizers: {', '.join(extra)}")
    return out


def _grid(text: str | None) -> list[float] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"--grid must be LOW,HIGH,NUM, got {text!r}")
    low = check_real("--grid LOW", _float("--grid LOW", parts[0]), low=0.0, low_open=True)
    high = check_real("--grid HIGH", _float("--grid HIGH", parts[1]), low=low)
    num = check_int("--grid NUM", _float("--grid NUM", parts[2]), low=1)
    return [float(v) for v in np.geomspace(low, high, num)]


def run(args: argparse.Namespace) -> int:
    """Handle ``bergab landscape``; returns the exit code."""
    from bergab.minimization import compare, format_table

    # each option checked under its own name before landscapes.get sees it
    condition_number = check_real(
        "--condition-number", _float("--condition-number", args.condition_number), low=1.0
    )
    noise = check_real("--noise", _float("--noise", args.noise), low=0.0)
    fn = landscapes.get(
        args.name,
        condition_number=condition_number,
        noise=noise,
        seed=check_int("--seed", _float("--seed", args.seed), low=0),
    )
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if not optimizers:
        raise ValueError("--optimizers must name at least one optimizer")
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"--optimizers lists a name twice: {args.optimizers!r}")
    steps = check_int("--steps", _float("--steps", args.steps), low=1)
    tol = check_real("--tol", _float("--tol", args.tol), low=0.0)
    lr = parse_lr(args.lr, optimizers)
    grid = _grid(args.grid)
    x0 = None
    if args.start is not None:
        x0 = [_float("--start", v) for v in args.start.split(",")]
        if len(x0) != fn.dim or not all(math.isfinite(v) for v in x0):
            raise ValueError(f"--start must be {fn.dim} finite numbers X,Y; got {args.start!r}")
    if args.gif and args.out is None:
        raise ValueError("--gif needs --out (the GIF is written next to the figure)")
    frames = check_int("--frames", _float("--frames", args.frames), low=2)
    out = None
    if args.out is not None:  # the figure (and the GIF) must be writable before the runs
        out = check_output_path("--out", args.out)
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out: directory {str(out.parent)!r} does not exist")
        if args.gif:
            check_output_path("--out", out.with_suffix(".gif"), suffixes=[".gif"])

    results = compare(fn, optimizers, steps=steps, lr=lr, x0=x0, tol=tol, grid=grid)
    if lr == "tune":
        for r in results:
            print(f"tuned lr for {r.optimizer}: {r.lr:.3g}")
    print(format_table(results, fn, tol=tol))
    if out is not None:
        from bergab.plotting import trajectories

        trajectories(fn, results, out, title=args.title)
        print(f"wrote {out}")
        if args.gif:
            gif = out.with_suffix(".gif")
            trajectories(fn, results, gif, animate=True, title=args.title, frames=frames)
            print(f"wrote {gif}")
    return 0
