"""How much compute does each sampler need to match a 13-point grid? And what does the
tuning machinery itself cost per trial?

For three built-in tasks (digits, linreg, charlm), each trained with its optimizer under a
cosine schedule for a fixed number of steps (``fit.seed = 0`` in every run, so one peak
lr always gives the same loss):

1. **Grid.** The 13 peak learning rates log-spaced over 1e-5 .. 1 (as
   ``lr_find_quality.py``): the grid's best validation loss is the target, and 13 runs
   are the grid's compute.
2. **Searches.** ``bergab.tune`` over ``schedule.peak`` (loguniform 1e-5 .. 1) with
   random, qmc, TPE, TPE + ASHA pruning and GP samplers, ``--trials`` trials each, for
   seeds 0, 1, 2. Compute = training steps summed over trials (a pruned trial counts the
   steps it ran) until the best value so far is within 1% of the grid's best.
3. **Overhead.** On charlm (1,500 steps): one trial through ``bergab.tune`` against the
   same run through ``bergab.run.train`` directly: 5 direct runs (median) against a
   5-trial study (its time ÷ 5), after a warm-up of each; the difference, as a fraction
   of the run, is what the tuning machinery costs per trial (the study, storage
   round-trips, the reporting callback).

Reported per task and sampler: the median compute ÷ the grid's (">" when a seed never got
within 1%), and how many seeds got there. Targets (issue 19): TPE + ASHA within 1% at
≤ 1/3 of the grid's compute; overhead ≤ 2% of a trial on charlm.

Run: ``python benchmarks/tune_quality.py [--tasks digits linreg] [--trials 15] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GRID = [float(v) for v in np.logspace(-5, 0, 13)]
SEEDS = (0, 1, 2)
SEARCHES = {
    "random": ("random", "none"),
    "qmc": ("qmc", "none"),
    "tpe": ("tpe", "none"),
    "tpe+asha": ("tpe", "asha"),
    "gp": ("gp", "none"),
}
STEPS = {"digits": 300, "linreg": 300, "charlm": 300}


def base_config(task: str) -> dict[str, Any]:
    """The task's run config with a cosine schedule whose peak is tuned."""
    steps = STEPS[task]
    tasks = {
        "digits": ({"name": "digits"}, 64),
        "linreg": ({"name": "linreg"}, 100),
        "charlm": ({"name": "charlm", "hidden": 64, "max_chars": 50_000}, 128),
    }
    spec, batch = tasks[task]
    return {
        "task": spec,
        "optimizer": {"name": "adamw", "weight_decay": 0.01},
        "schedule": {"type": "cosine", "peak": 1e-3, "total_steps": steps},
        "fit": {
            "max_steps": steps,
            "batch_size": batch,
            "seed": 0,
            "val_every": steps // 10,
            "progress": False,
        },
        "output": {"plots": False, "overwrite": True},
    }


def grid_run(task: str, peak: float, out: str) -> tuple[float, float]:
    """One full run at ``peak``: (final validation loss, seconds)."""
    import torch

    from bergab import config, run

    torch.set_num_threads(1)
    data = base_config(task)
    data["schedule"]["peak"] = peak
    data["output"]["dir"] = out
    t0 = time.perf_counter()
    try:
        result = run.train(config.validate(data))
        loss = float(result.final.get("final_val_loss", float("inf")))
    except Exception:
        loss = float("inf")
    return (loss if np.isfinite(loss) else float("inf")), time.perf_counter() - t0


def search(task: str, name: str, seed: int, trials: int, out: str) -> list[dict[str, Any]]:
    """One search: per trial (in order) its value (None: pruned or failed) and steps."""
    import optuna
    import torch

    from bergab.tuning import tune

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = SEARCHES[name]
    space = {"schedule.peak": {"loguniform": [1e-5, 1.0]}}
    res = tune(base_config(task), space, sampler=sampler, pruner=pruner, trials=trials,
               seed=seed, out=out, study=f"{task}-{name}-{seed}")  # fmt: skip
    rows = []
    for t in sorted(res.trials, key=lambda t: t["number"]):
        summary = Path(t["run_dir"]) / "summary.json"
        steps = json.loads(summary.read_text()).get("steps", 0) if summary.is_file() else 0
        value = t["value"] if t["state"] == "COMPLETE" else None
        rows.append({"value": value, "steps": steps, "state": t["state"]})
    return rows


def _job(spec: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    kind, task, arg, seed, trials, out = spec
    if kind == "grid":
        return spec, grid_run(task, arg, f"{out}/grid-{task}-{arg:.3g}")
    return spec, search(task, arg, seed, trials, out)


def compute_to_target(rows: list[dict[str, Any]], target: float) -> float | None:
    """Steps summed over trials until the best value so far is within 1% of ``target``."""
    total, best = 0, float("inf")
    for r in rows:
        total += r["steps"]
        if r["value"] is not None:
            best = min(best, r["value"])
        if best <= 1.01 * target:
            return float(total)
    return None


def overhead(out: str, repeats: int = 5, steps: int = 1500) -> dict[str, float]:
    """charlm, ``steps`` steps: seconds of a trial through tune against the same run
    directly."""
    import optuna
    import torch

    from bergab import config, run
    from bergab.tuning import tune

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def data(where: str) -> dict[str, Any]:
        d = base_config("charlm")
        d["fit"].update({"max_steps": steps, "val_every": steps // 10})
        d["schedule"]["total_steps"] = steps
        d["output"]["dir"] = where
        return d

    # warm-up of each (imports, the stdlib text), then `repeats` runs each way: directly,
    # and as `repeats` trials of one study (the study's creation spread over its trials)
    run.train(config.validate(data(f"{out}/warm")))
    tune(data(f"{out}/unused"), {"schedule.peak": {"choice": [1e-3]}}, sampler="random",
         pruner="none", trials=1, out=out, study="overhead-warm")  # fmt: skip
    direct = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run.train(config.validate(data(f"{out}/direct-{i}")))
        direct.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    tune(data(f"{out}/unused"), {"schedule.peak": {"choice": [1e-3]}}, sampler="random",
         pruner="none", trials=repeats, out=out, study="overhead")  # fmt: skip
    tuned = [(time.perf_counter() - t0) / repeats]
    d, t = statistics.median(direct), statistics.median(tuned)
    return {"direct_s": d, "tune_s": t, "overhead": (t - d) / d}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", help="write every measurement to this JSON file")
    parser.add_argument("--overhead-only", action="store_true", help="only the overhead")
    args = parser.parse_args(argv)
    if args.overhead_only:
        o = overhead(tempfile.mkdtemp(prefix="tune_quality-"))
        print(f"overhead per trial on charlm: direct run {o['direct_s']:.2f} s, through "
              f"tune {o['tune_s']:.2f} s: {100 * o['overhead']:+.1f}%")  # fmt: skip
        return 0
    out = tempfile.mkdtemp(prefix="tune_quality-")
    jobs = [("grid", t, lr, 0, 0, out) for t in args.tasks for lr in GRID]
    jobs += [("search", t, s, seed, args.trials, out) for t in args.tasks
             for s in args.searches for seed in SEEDS]  # fmt: skip
    t0 = time.perf_counter()
    results: dict[tuple[Any, ...], Any] = {}
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for spec, value in pool.imap_unordered(_job, jobs):
            results[spec[:4]] = value
    print(f"{len(jobs)} jobs in {time.perf_counter() - t0:.0f} s ({args.jobs} processes)\n")
    print(f"{'task':8} {'grid best':>9} {'grid steps':>10}  " +
          " ".join(f"{s:>14}" for s in args.searches))  # fmt: skip
    report: dict[str, Any] = {}
    for task in args.tasks:
        losses = [results[("grid", task, lr, 0)][0] for lr in GRID]
        target = min(losses)
        grid_steps = len(GRID) * STEPS[task]
        cells, report[task] = [], {"grid_best": target, "grid_steps": grid_steps}
        for s in args.searches:
            spent = [compute_to_target(results[("search", task, s, seed)], target)
                     for seed in SEEDS]  # fmt: skip
            reached = [c for c in spent if c is not None]
            if len(reached) == len(SEEDS):
                med = f"{statistics.median(reached) / grid_steps:.2f}"
            else:
                med = f">{args.trials * STEPS[task] / grid_steps:.1f}"
            cells.append(f"{med} ({len(reached)}/{len(SEEDS)})")
            report[task][s] = spent
        print(f"{task:8} {target:9.4g} {grid_steps:10d}  " + " ".join(f"{c:>14}" for c in cells))
    print("\ncompute to within 1% of the grid's best / the grid's compute, median over "
          "seeds (seeds that got there)")  # fmt: skip
    if "charlm" in args.tasks:
        o = overhead(out)
        report["overhead"] = o
        print(f"\noverhead per trial on charlm: direct run {o['direct_s']:.2f} s, through "
              f"tune {o['tune_s']:.2f} s: {100 * o['overhead']:+.1f}%")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
