"""``bergab pbt CONFIG.toml``: population-based training of a run config.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["pbt", "c.toml", "--population", "4", "--interval", "50"])
    >>> args.population, args.interval, args.workers
    (4, 50, None)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bergab._commands.train import add_threads_argument, set_threads

__all__ = ["lineage_lines", "register"]

_EPILOG = """\
examples:
  bergab pbt examples/linreg_pbt.toml
  bergab pbt examples/linreg_pbt.toml --population 8 --interval 20 --workers 2
  bergab pbt my.toml --storage postgresql://user@db/bergab --study p1   # on every machine
  bergab train runs/linreg_pbt/pbt_best.toml --out runs/linreg_pbt/replay

The config's [pbt] table holds the settings (population, interval, quantile, perturb,
resample_probability, budget_steps, metric, direction, workers, storage, study, seed,
grace_period) and [pbt.hyperparams] the hyperparameters, keyed by the run config's own
key paths (the forms of [tune.space]); fit.max_steps is the run's length:

  [pbt]
  population = 4
  interval = 25          # steps between a member's reports
  [pbt.hyperparams]
  "schedule.lr" = {loguniform = [1e-4, 0.3]}

Every `interval` steps a member in the bottom quantile copies a better member (weights,
optimizer state, step) and perturbs its hyperparameters. The study folder <out>/<study>/
gets member-<m>/ (checkpoints, logs), pbt.json (every segment), pbt_schedule.json (the
winner's lr over the steps), pbt.png and pbt_best.toml (the winner as one run config).
Re-running the command continues the study.
"""


def register(subparsers: Any) -> None:
    """Add the ``pbt`` command to the ``bergab`` parser."""
    p = subparsers.add_parser(
        "pbt",
        help="population-based training of a config's hyperparameters (a schedule)",
        description=(
            "Train a population of runs of the config; every few steps the worst copy\n"
            "the best and perturb their hyperparameters ([pbt] and [pbt.hyperparams])."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the run config with [pbt.hyperparams]")
    p.add_argument("--population", type=int, default=None, metavar="N",
                   help="members (>= 2; default: [pbt]'s, else 8)")  # fmt: skip
    p.add_argument("--interval", type=int, default=None, metavar="STEPS",
                   help="steps between reports (default: [pbt]'s, else max_steps/10)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes training members at once (default 1)")  # fmt: skip
    p.add_argument("--storage", default=None, help="a database URL (default: a journal file)")
    p.add_argument("--study", default=None, help="the study's name (default: the file's)")
    p.add_argument("--seed", type=int, default=None, help="the seed of every random choice")
    p.add_argument("--out", default="runs", metavar="DIR", help="where study folders go")
    add_threads_argument(p, default=None)
    p.set_defaults(func=_pbt)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def lineage_lines(lineage: Sequence[Mapping[str, Any]]) -> list[str]:
    """The winner's lineage, one line per stretch of steps with the same member and
    hyperparameters (consecutive ``continue`` segments merged).

    Example:
        >>> segs = [{"member": 0, "start": 0, "end": 4, "event": "start",
        ...          "hparams": {"schedule.lr": 0.1}},
        ...         {"member": 0, "start": 4, "end": 8, "event": "continue",
        ...          "hparams": {"schedule.lr": 0.1}},
        ...         {"member": 1, "start": 8, "end": 12, "event": "exploit",
        ...          "hparams": {"schedule.lr": 0.12}}]
        >>> for line in lineage_lines(segs): print(line)
        steps 0-8   member 0  schedule.lr=0.1
        steps 8-12  member 1  schedule.lr=0.12  (copied from member 0)
    """
    stretches: list[dict[str, Any]] = []
    for s in lineage:
        last = stretches[-1] if stretches else None
        if (
            last is not None
            and s.get("event") == "continue"
            and s["member"] == last["member"]
            and s["hparams"] == last["hparams"]
        ):
            last["end"] = s["end"]
            continue
        from_member = last["member"] if last is not None else None
        stretches.append({**s, "from": from_member})
    steps = [f"{s['start']}-{s['end']}" for s in stretches]
    width = max((len(t) for t in steps), default=0)
    lines = []
    for s, t in zip(stretches, steps, strict=True):
        params = "  ".join(f"{k}={_fmt(v)}" for k, v in s["hparams"].items())
        note = f"  (copied from member {s['from']})" if s.get("event") == "exploit" else ""
        lines.append(f"steps {t:<{width}}  member {s['member']}  {params}{note}")
    return lines


def _pbt(args: argparse.Namespace) -> int:
    from bergab import config
    from bergab._toml import dumps_toml
    from bergab._validate import MissingDependencyError, require
    from bergab.tuning import pbt

    optuna = require("optuna", "tune")
    set_threads(args)
    given = {k: getattr(args, k) for k in ("population", "interval", "workers", "storage",
                                           "study", "seed")}  # fmt: skip
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created/loaded" lines
    try:
        result = pbt(args.config, out=args.out, **given)
    finally:
        optuna.logging.set_verbosity(level)

    best_cfg = result.best_config()
    run_cfg = config.validate(best_cfg)  # the winner must be a valid run config
    directory = Path(result.directory)
    exploits = sum(1 for s in result.segments if s.get("event") == "exploit")
    members = len({s["member"] for s in result.segments})
    direction = "maximized" if result.maximize else "minimized"
    print(
        f"study {result.study}: {members} members, {len(result.segments)} segments "
        f"({exploits} exploit{'' if exploits == 1 else 's'}), {result.metric} {direction}; "
        f"folder {directory}"
    )
    print(f"best member {result.best_member}: {result.metric} {result.best_value:.6g}")
    print("winner's lineage:")
    for line in lineage_lines(result.lineage()):
        print(f"  {line}")

    written = [directory / "pbt.json"]
    if (directory / "pbt_schedule.json").is_file():
        written.append(directory / "pbt_schedule.json")
    if run_cfg.output.plots:
        try:
            from bergab.plotting import pyplot

            plt = pyplot()
            plt.close(result.plot(directory / "pbt.png"))
            written.append(directory / "pbt.png")
        except MissingDependencyError as exc:
            print(f"plot skipped: {exc}")
    best = directory / "pbt_best.toml"
    header = (
        f"the best lineage of PBT study {result.study}: member {result.best_member}, "
        f"{result.metric} {result.best_value:.6g}\nreplay it as one run: bergab train {best}"
    )
    best.write_text(dumps_toml(best_cfg, header), encoding="utf-8")
    written.append(best)
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"replay the winner as one run: bergab train {best} --out {directory / 'replay'}")
    return 0
