"""``bergab train CONFIG.toml``: train from a config file into a run directory.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["train", "c.toml", "--set", "fit.max_steps=5", "--out", "runs/x"])
    >>> args.config, args.set, args.out
    ('c.toml', ['fit.max_steps=5'], 'runs/x')
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bergab._toml import toml_string

__all__ = [
    "add_common_arguments",
    "add_threads_argument",
    "overrides",
    "register",
    "report",
    "set_threads",
]

_EPILOG = """\
examples:
  bergab train examples/digits.toml
  bergab train examples/charlm.toml --set fit.max_steps=200 --out runs/charlm-short
  bergab train my.toml --set optimizer.weight_decay=0.1 --set 'schedule.lr="auto"'

The config has the tables [task], [optimizer], [schedule], [lr_find], [fit] and
[output] (docs/cli.md lists every key). The run directory gets config.toml (the
resolved config), lr_find.json/.png (with lr = "auto"), logs/, checkpoints/,
history.png, model.pt and summary.json.

Ctrl-C (or SIGTERM, what cluster schedulers send before preempting a job) writes a
checkpoint, prints how to continue (bergab resume RUN_DIR) and exits with code 130
(143 for SIGTERM). A config mistake prints one line naming the key and exits with
code 2; it is found before the run directory is made.
A NaN/inf loss (with fit.nan_policy = "stop") keeps the logs and plots, says at which
step and exits with code 1.
"""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--set KEY.PATH=VALUE`` (repeatable) and ``--out DIR``, shared by config commands."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (a TOML value, e.g. fit.max_steps=5); repeatable",
    )
    p.add_argument("--out", metavar="DIR", default=None, help="the run directory (output.dir)")
    add_threads_argument(p, default=None)


def add_threads_argument(p: argparse.ArgumentParser, default: int | None) -> None:
    """``--threads N``: torch's intra-op CPU threads (``torch.set_num_threads``)."""
    shown = "torch's default" if default is None else str(default)
    p.add_argument(
        "--threads",
        type=int,
        default=default,
        metavar="N",
        help=f"CPU threads for torch (default: {shown}); small models run fastest with 1",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (checked: an int >= 1)."""
    n = getattr(args, "threads", None)
    if n is not None:
        import torch

        from bergab._validate import check_int

        torch.set_num_threads(check_int("--threads", n, low=1))


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, plus ``--out`` as ``output.dir``."""
    out = list(args.set or [])
    if getattr(args, "out", None):
        out.append(f"output.dir={toml_string(args.out)}")
    return out


def register(subparsers: Any) -> None:
    """Add the ``train`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "train",
        help="train from a TOML config into a run directory",
        description='Train the config\'s task with its optimizer and schedule (lr = "auto"\n'
        "runs a range test first), validate, and write logs, checkpoints and plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the run config")
    add_common_arguments(p)
    p.set_defaults(func=_run)


def report(result: Any) -> int:
    """Print a run's summary (or how to resume it) and return the exit code: 0 done,
    1 stopped on a NaN/inf, 130 interrupted by Ctrl-C, 143 by SIGTERM."""
    from bergab._interrupts import exit_code

    print(result.summary_table())
    if result.error is not None:
        print(f"training stopped: {result.error}", file=sys.stderr)
        return 1
    if not result.interrupted:
        return 0
    signal = getattr(result, "signal", None)
    what = "terminated (SIGTERM)" if signal == "SIGTERM" else "interrupted"
    if not result.resumable:
        print(f"{what} before training started: nothing to resume", file=sys.stderr)
    elif getattr(result, "at_once", False):
        print(
            f"{what} at step {result.steps} at once, without a checkpoint there; continue "
            f"from the last checkpoint with:\n  bergab resume {result.run_dir}",
            file=sys.stderr,
        )
    else:
        print(
            f"{what} at step {result.steps}: checkpoint written; continue with:\n"
            f"  bergab resume {result.run_dir}",
            file=sys.stderr,
        )
    return exit_code(name=signal)


def _run(args: argparse.Namespace) -> int:
    from bergab import config, run

    cfg = config.load(args.config, overrides(args))
    set_threads(args)
    return report(run.train(cfg, say=print))
