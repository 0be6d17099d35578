"""``bergab demo``: the whole workflow on built-in data, for a first-time user.

Trains the ``digits`` task (scikit-learn's 8×8 handwritten digits, an MLP) with AdamW and
``lr = "auto"``: a range test picks the peak learning rate, a cosine schedule decays from
it, training validates every epoch; then it prints a summary and writes the plots.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["demo", "--quick", "--out", "runs/d"])
    >>> args.quick, args.out
    (True, 'runs/d')
    >>> demo_config(quick=True, out="runs/d")["fit"]["epochs"]
    2
"""

from __future__ import annotations

import argparse
from typing import Any

from bergab._commands.train import add_threads_argument, report, set_threads

__all__ = ["demo_config", "register"]

_EPILOG = """\
examples:
  bergab demo                    # about 10-20 seconds on 2 CPU cores
  bergab demo --out /tmp/demo    # write the plots somewhere else
  bergab demo --quick            # a 2-epoch smoke run
  bergab demo --threads 2        # torch on 2 threads (default 1: the MLP is tiny, and
                                 # extra threads only add overhead on a busy machine)

The same run as a config file: examples/digits.toml (bergab train examples/digits.toml).
Writes into the output directory (default runs/demo, replaced on each run):
lr_find.png (the range test), history.png (loss and lr curves), config.toml (the
resolved config, with the chosen schedule), logs/, checkpoints/, model.pt, summary.json.
"""


def demo_config(
    quick: bool = False, out: str = "runs/demo", progress: bool = True
) -> dict[str, Any]:
    """The demo's run config as a dict (what ``examples/digits.toml`` holds, plus output).

    Args:
        quick: 2 epochs and a 30-step range test instead of 20 epochs and 100 steps.
        out: the run directory.
        progress: show the progress bar.

    Returns:
        A raw config for :func:`bergab.config.validate`.
    """
    return {
        "task": {"name": "digits", "hidden": 64},
        "optimizer": {"name": "adamw", "weight_decay": 0.01},
        "schedule": {"lr": "auto", "policy": "cosine"},
        "lr_find": {"steps": 30 if quick else 100},
        "fit": {"epochs": 2 if quick else 20, "batch_size": 64, "seed": 0, "progress": progress},
        "output": {"dir": out, "overwrite": True},
    }


def register(subparsers: Any) -> None:
    """Add the ``demo`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "demo",
        help='train the digits task with lr="auto" end to end (start here)',
        description="Train an MLP on handwritten digits with the learning rate chosen\n"
        "automatically (range test + cosine schedule), validate every epoch, print a\n"
        "summary and write the lr-find, loss and lr plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="output directory")
    p.add_argument("--quick", action="store_true", help="a short smoke run (2 epochs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_threads_argument(p, default=1)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bergab import config, run

    cfg = config.validate(demo_config(args.quick, args.out, progress=not args.no_progress))
    set_threads(args)
    return report(run.train(cfg, say=print))
