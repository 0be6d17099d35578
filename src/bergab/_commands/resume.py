"""``bergab resume RUN_DIR``: continue a run from its last checkpoint, exactly.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> p.parse_args(["resume", "runs/digits"]).run_dir
    'runs/digits'
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bergab._commands.train import add_threads_argument, report, set_threads

__all__ = ["register"]

_EPILOG = """\
examples:
  bergab resume runs/digits
  bergab resume runs/digits --set fit.max_steps=2000   # train a finished run on

Reads RUN_DIR/config.toml (the resolved config: with lr = "auto" the chosen schedule,
so no new range test) and RUN_DIR/checkpoints/last.pt, and continues where the run
stopped (Ctrl-C, a crash, a killed job), on as many torch threads as the run used
(unless --threads says otherwise). The final weights are bitwise those of a run never
interrupted (on the CPU). When last.pt cannot be read, the previous checkpoint
(last.prev.pt) is used, with a warning. A finished run is continued only when --set
raises fit.max_steps (or fit.epochs), and is otherwise left as it is.

--set may change fit.max_steps, fit.epochs, fit.progress, fit.device, fit.precision,
clipping, fit.val_every, fit.checkpoint_every, fit.nan_policy, fit.tol,
fit.early_stopping, fit.train_metrics, [schedule], output.plots and output.keep_best
(any but fit.progress and fit.device make the rest of the run differ from an
uninterrupted one); the changed values are written to RUN_DIR/config.toml. The
optimizer, the task, the batch size, the seed and the data order cannot change: the
checkpoint holds state made with them (train a new run with --out instead).
"""


def register(subparsers: Any) -> None:
    """Add the ``resume`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "resume",
        help="continue a run from its last checkpoint",
        description="Continue the run in RUN_DIR from its last checkpoint, with the same\n"
        "model, optimizer state, schedule position, data order and random state.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory bergab train wrote")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a value of the run's config (e.g. fit.max_steps=2000); repeatable",
    )
    add_threads_argument(p, default=None)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import contextlib
    import json
    from pathlib import Path

    from bergab import run

    if args.threads is None:  # the thread count the run used: same sums, same weights
        summary = Path(args.run_dir) / "summary.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            args.threads = int(json.loads(summary.read_text(encoding="utf-8"))["threads"])
    set_threads(args)
    # under torchrun every process resumes; rank 0 reports
    quiet = os.environ.get("RANK", "0") != "0"
    return report(run.resume(args.run_dir, args.set, say=print), quiet=quiet)
