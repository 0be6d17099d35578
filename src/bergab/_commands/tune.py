"""``bergab tune CONFIG.toml`` and ``bergab study show|best|export``: hyperparameter search.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["tune", "c.toml", "--trials", "20", "--workers", "2"])
    >>> args.trials, args.workers, args.sampler
    (20, 2, None)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bergab._commands.train import add_threads_argument, set_threads

__all__ = ["register"]

_EPILOG = """\
examples:
  bergab tune examples/digits_tune.toml --trials 40
  bergab tune examples/digits_tune.toml --workers 2 --study digits-tpe
  bergab tune examples/digits_tune.toml --storage postgresql://user@db/bergab --study d1
  bergab study show runs/digits-tpe
  bergab study best runs/digits-tpe --out best.toml && bergab train best.toml

The config's [tune] table holds the settings (sampler, pruner, trials, timeout, metric,
direction, cv_folds, storage, study, workers, seed) and [tune.space] the search space,
keyed by the run config's own key paths:

  [tune]
  sampler = "tpe"
  trials = 40
  [tune.space]
  "schedule.lr" = {loguniform = [1e-4, 1.0]}
  "optimizer.weight_decay" = {loguniform = [1e-6, 0.1]}
  "fit.batch_size" = {choice = [32, 64, 128]}

Each trial is a normal run in runs/<study>/trial-<n>/. Re-running the command continues
the study; Ctrl-C stops it, keeping every finished trial.
"""


def register(subparsers: Any) -> None:
    """Add the ``tune`` and ``study`` commands to the ``bergab`` parser."""
    p = subparsers.add_parser(
        "tune",
        help="search a config's hyperparameters (Optuna)",
        description="Search the hyperparameters in the config's [tune.space] with Optuna.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the run config with [tune.space]")
    p.add_argument("--trials", type=int, default=None, help="finished trials to reach")
    p.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--storage", default=None, help="a database URL (default: a journal file)")
    p.add_argument("--study", default=None, help="the study's name (default: the file's)")
    p.add_argument("--sampler", default=None, help="grid, random, qmc, tpe, gp or cmaes")
    p.add_argument("--pruner", default=None, help="asha, hyperband, median, wilcoxon or none")
    p.add_argument("--seed", type=int, default=None, help="the sampler's seed")
    p.add_argument("--out", default="runs", metavar="DIR", help="where study folders go")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar over the trials")  # fmt: skip
    add_threads_argument(p, default=None)
    p.set_defaults(func=_tune)

    s = subparsers.add_parser(
        "study",
        help="show a study, write its best config, export its trials",
        description="Read a study made by 'bergab tune'.",
    )
    s.add_argument("action", choices=("show", "best", "export", "dashboard"))
    s.add_argument("directory", metavar="STUDY_DIR", help="the study folder (runs/<study>)")
    s.add_argument("--storage", default=None, help="the study's database URL, if not a file")
    s.add_argument("--study", default=None, help="the study's name (default: the folder's)")
    s.add_argument("--out", default=None, help="best: the TOML to write; export: the CSV")
    s.add_argument("--port", type=int, default=8080, help="dashboard: the port on 127.0.0.1")
    s.set_defaults(func=_study)


def _tune(args: argparse.Namespace) -> int:
    from bergab.tuning import tune
    from bergab.tuning._tune import _read_config

    set_threads(args)
    base, stem = _read_config(args.config)
    table = dict(base.get("tune", {}) or {})
    given = {k: getattr(args, k) for k in ("trials", "timeout", "workers", "storage",
                                           "study", "sampler", "pruner", "seed")}  # fmt: skip
    kwargs = {k: v for k, v in given.items() if v is not None}
    kwargs.setdefault("study", table.get("study") or stem)
    result = tune(args.config, out=args.out, progress=args.progress, **kwargs)
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    if result.interrupted:
        print(f"interrupted: {len(done)} complete trials kept; run the same command again "
              "to continue the study")  # fmt: skip
    print(
        f"study {result.study}: {len(result.trials)} trials ({len(done)} complete), "
        f"{result.metric} {result.direction}d; folder {result.directory}"
    )
    if done:
        print(f"best {result.metric}: {result.best_value:.6g}")
        for key, value in result.best_params.items():
            print(f"  {key} = {value!r}")
        print(f"bergab study best {result.directory} --out best.toml   # the winner's config")
    return 130 if result.interrupted else 0


def _open(args: argparse.Namespace) -> Any:
    from bergab._validate import require
    from bergab.tuning.storage import open_storage

    optuna = require("optuna", "tune")
    directory = Path(args.directory)
    if args.storage is None and not directory.is_dir():
        raise FileNotFoundError(f"study folder {str(directory)!r} not found")
    name = args.study or directory.name
    storage = open_storage(args.storage, directory)
    try:
        return optuna.load_study(study_name=name, storage=storage), directory
    except KeyError:
        raise ValueError(f"--study: no study named {name!r} in that storage") from None


def _study(args: argparse.Namespace) -> int:
    from bergab._toml import dumps_toml
    from bergab._validate import require
    from bergab.tuning._tune import _result

    if args.action == "dashboard":  # optuna-dashboard serves the storage, on this host only
        dashboard = require("optuna_dashboard", "dashboard")
        study, _ = _open(args)
        print(f"serving study {study.study_name} at http://127.0.0.1:{args.port} (Ctrl-C stops)")
        dashboard.run_server(study._storage, host="127.0.0.1", port=args.port)
        return 0
    study, directory = _open(args)
    attrs = study.user_attrs
    result = _result(study, study.study_name, directory, attrs.get("metric", "value"),
                     attrs.get("base_config"))  # fmt: skip
    if args.action == "show":
        print(f"study {result.study}: {result.metric} {result.direction}d")
        print(f"{'trial':>5}  {'state':9} {'value':>12}  params")
        for t in result.trials:
            value = "" if t["value"] is None else f"{t['value']:.6g}"
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}"
                               for k, v in t["params"].items())  # fmt: skip
            print(f"{t['number']:>5}  {t['state']:9} {value:>12}  {params}")
        return 0
    if args.action == "best":
        if not result.best_params:
            raise ValueError("the study has no complete trial yet")
        text = dumps_toml(result.best_config(), f"best trial of study {result.study}: "
                          f"{result.metric} {result.best_value:.6g}")  # fmt: skip
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"wrote {args.out}")
        else:
            print(text, end="")
        return 0
    rows = result.to_dataframe()
    out = Path(args.out or directory / "trials.csv")
    rows.to_csv(out, index=False)
    print(f"wrote {out} ({len(rows)} trials)")
    return 0
