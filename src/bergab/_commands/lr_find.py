"""``bergab lr-find CONFIG.toml``: run the range test on a config's task; print, plot.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["lr-find", "c.toml", "--plot", "lr.png"])
    >>> args.config, args.plot
    ('c.toml', 'lr.png')
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bergab._commands.train import add_common_arguments, overrides, set_threads
from bergab._validate import check_output_path

__all__ = ["format_suggestions", "register"]

_EPILOG = """\
examples:
  bergab lr-find examples/digits.toml
  bergab lr-find examples/charlm.toml --set lr_find.steps=60 --plot runs/charlm_lr.png

Uses the config's [task], [optimizer], [fit] (batch_size, seed, accumulation_steps)
and [lr_find] (start_lr, end_lr, steps, mode, smoothing, diverge_factor) tables. Prints
every suggestion, marks the recommended one, and writes the plot (default
OUTPUT_DIR/lr_find.png) and the curve as JSON beside it. The model is not trained.
"""


def register(subparsers: Any) -> None:
    """Add the ``lr-find`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "lr-find",
        help="run the learning-rate range test on a config's task",
        description="Run the LR range test (bergab.lr_find) on the config's task with its\n"
        "optimizer, print the suggested learning rates and plot the loss curve.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the run config")
    add_common_arguments(p)
    p.add_argument(
        "--plot", metavar="PATH", default=None, help="where to write the plot (.png, .svg, ...)"
    )
    p.set_defaults(func=_run)


def format_suggestions(result: Any) -> str:
    """The suggestions as a small table, the recommended one marked with ``*``.

    Example:
        >>> from bergab.lr_finder import LRFindResult
        >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.8, 0.3, 2.0])
        >>> print(format_suggestions(r).splitlines()[:2])
        ['rule                lr', 'soft_minimum      0.01  *']
    """
    rows = [("rule", "lr", "")]
    for name, lr in sorted(result.suggestions.items(), key=lambda kv: kv[0] != result.rule):
        rows.append((name, f"{lr:.3g}", "*" if name == result.rule else ""))
    w = max(len(r[0]) for r in rows)
    lines = [f"{a:<{w}}  {b:>8}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import json

    from bergab import config, run

    cfg = config.load(args.config, overrides(args))
    set_threads(args)
    plot = Path(args.plot) if args.plot else cfg.run_dir() / "lr_find.png"
    check_output_path("--plot" if args.plot else "output.dir", plot)  # before the sweep
    result = run.find_lr(cfg)
    print(
        f"range test on {cfg.task.name} with {cfg.optimizer.name}: {len(result.lrs)} steps "
        f"({result.stop_reason}), lr {result.lrs[0]:.2g} .. {result.lrs[-1]:.2g}"
    )
    print(format_suggestions(result))
    print(
        f"suggestion: {result.suggestion:.3g} ({result.rule}, confidence {result.confidence:.2f})"
    )
    for reason in result.reasons:
        print(f"  note: {reason}")
    result.plot(plot)
    data = plot.with_suffix(".json")
    data.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {plot} and {data}")
    return 0
