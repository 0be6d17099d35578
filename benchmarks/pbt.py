"""Population-based training against a grid and TPE at the same compute.

For two built-in tasks (charlm, digits), each trained with AdamW (weight decay 0.01) for a
fixed number of steps, and for seeds 0, 1, 2 (``task.seed = fit.seed = seed`` in every
run: one data split and one initialization per seed):

1. **Grid.** 13 cosine schedules (``{type = "cosine", peak, total_steps = max_steps}``)
   with peaks log-spaced over 1e-4 .. 1e-1: the best final validation loss. 13 runs.
2. **TPE.** ``bergab.tune`` over the cosine's peak (loguniform 1e-4 .. 1e-1, TPE, no
   pruning), 8 trials: the best final validation loss. 8 runs.
3. **PBT.** ``bergab.tune.pbt``, population 8, ``interval = max_steps / 10``,
   ``budget_steps = 8 x max_steps`` (the compute of 8 runs; the steps it really trained
   are reported), in two forms: of a constant ``schedule.lr`` (loguniform 1e-4 .. 1e-1),
   and of the ``peak`` of the grid's cosine (same range; a member's lr is its current
   peak times the cosine at the step): the best member's final validation loss.
4. **Replay.** The winner's lr schedule (``PBTResult.best_config()``: a join of constants,
   or of shifted cosines) trained as one ordinary run from a fresh start, with
   ``fit.seed`` = seed (the value reported; every PBT member has the run's seed, so this
   retraces the winner's lineage) and seed + 1, seed + 2 (their spread is the replay's
   seed noise: ``fit.seed`` alone changes the order of the batches, the data and the
   initialization stay).

``--design`` runs the design set instead: four tasks of ``bergab.tasks.suite`` (none is
charlm or digits) on which PBT's settings were chosen (``--pbt cosine cosine-random-init
cosine-interval-20`` compares the choices), so that charlm and digits judge them unseen.

Reported per task and method: the validation loss per seed and its median, the compute in
runs (training steps ÷ ``max_steps``) and the seconds of one seed's search on one core.
Targets: PBT's best member at or below the grid's best cosine at <= 8 runs' compute, and the
replay within seed noise of the best member.

The jobs run on ``--jobs`` processes of one torch thread each; each PBT search runs with
``workers=1`` inside one of them (deterministic given the seed).

Run: ``python benchmarks/pbt.py [--quick] [--tasks charlm digits | --design] [--seeds 0 1 2]
[--pbt constant cosine] [--jobs 2] [--markdown] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import format_machine_info, machine_info, markdown_table, text_table

LR_RANGE = (1e-4, 1e-1)
#: the lr range of SGD with momentum
SGD_RANGE = (1e-3, 1.0)
#: per task: its config table, batch size and run length (AdamW, LR_RANGE, unless said)
TASKS: dict[str, dict[str, Any]] = {
    "charlm": {"task": {"name": "charlm", "hidden": 128}, "batch": 128, "steps": 2000},
    "digits": {"task": {"name": "digits"}, "batch": 64, "steps": 800},
}


def _suite(name: str) -> dict[str, Any]:
    """A task of ``bergab.tasks.suite`` (its model, optimizer, batch and length)."""
    from bergab.tasks import suite

    t = suite.get(name)
    return {"task": {"name": "_suite_task:make", "suite_name": name}, "batch": t.batch_size,
            "steps": t.steps, "optimizer": t.optimizer,
            "lr_range": LR_RANGE if t.optimizer == "adamw" else SGD_RANGE}  # fmt: skip


#: the design set: PBT's settings were chosen on these (none is charlm or digits, the
#: tasks PBT is judged on), with ``--design``
DESIGN = ["charlm-gru", "friedman-sgd", "diabetes-mlp", "digits-cnn-bn"]
QUICK: dict[str, dict[str, Any]] = {
    "charlm": {"task": {"name": "charlm", "hidden": 32, "max_chars": 20_000}, "batch": 32,
               "steps": 40},
    "digits": {"task": {"name": "digits"}, "batch": 32, "steps": 40},
}  # fmt: skip


def _label(spec: dict[str, Any]) -> str:
    """The task's name, for study names."""
    return str(spec["task"].get("suite_name", spec["task"]["name"]))


def peaks(spec: dict[str, Any], n: int) -> list[float]:
    """The grid: ``n`` cosine peaks log-spaced over the task's lr range."""
    lo, hi = spec.get("lr_range", LR_RANGE)
    return [float(v) for v in np.logspace(np.log10(lo), np.log10(hi), n)]


def base_config(spec: dict[str, Any], seed: int, schedule: Any) -> dict[str, Any]:
    """The task's run config with ``schedule``; data, initialization and batches by seed."""
    steps = spec["steps"]
    name = spec.get("optimizer", "adamw")
    return {
        "task": {**spec["task"], "seed": seed},
        "optimizer": {"name": name, **({"weight_decay": 0.01} if name == "adamw" else {})},
        "schedule": schedule,
        "fit": {
            "max_steps": steps,
            "batch_size": spec["batch"],
            "seed": seed,
            "val_every": max(1, steps // 10),
            "progress": False,
        },
        "output": {"plots": False, "overwrite": True},
    }


def _setup() -> None:
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _train(data: dict[str, Any], out: str) -> float:
    """One ordinary run; its final validation loss (inf when it fails or diverges)."""
    from bergab import config, run

    data = {**data, "output": {**data.get("output", {}), "dir": out, "plots": False}}
    try:
        result = run.train(config.validate(data))
        loss = float(result.final.get("final_val_loss", float("inf")))
    except Exception:
        loss = float("inf")
    return loss if np.isfinite(loss) else float("inf")


def grid_run(spec: dict[str, Any], seed: int, peak: float, out: str) -> dict[str, Any]:
    """One cosine run at ``peak``."""
    _setup()
    t0 = time.perf_counter()
    sched = {"type": "cosine", "peak": peak, "total_steps": spec["steps"]}
    loss = _train(base_config(spec, seed, sched), out)
    return {"value": loss, "seconds": time.perf_counter() - t0}


def tpe_search(spec: dict[str, Any], seed: int, trials: int, out: str) -> dict[str, Any]:
    """TPE over the cosine's peak, ``trials`` full runs."""
    from bergab.tuning import tune

    _setup()
    t0 = time.perf_counter()
    sched = {"type": "cosine", "peak": 1e-3, "total_steps": spec["steps"]}
    lrs = list(spec.get("lr_range", LR_RANGE))
    res = tune(base_config(spec, seed, sched), {"schedule.peak": {"loguniform": lrs}},
               sampler="tpe", pruner="none", trials=trials, seed=seed, out=out,
               study=f"tpe-{_label(spec)}-{seed}")  # fmt: skip
    values = [t["value"] for t in res.trials if t["state"] == "COMPLETE"]
    return {
        "value": min(values) if values else float("inf"),
        "peak": res.best_params.get("schedule.peak") if values else None,
        "runs": float(len(res.trials)),
        "seconds": time.perf_counter() - t0,
    }


#: PBT's forms: what it searches, over which schedule; the last two are the design
#: round's alternatives to "cosine" (its first population drawn at random, as before the
#: Latin hypercube; a report every twentieth of the run instead of every tenth)
PBT_KINDS: dict[str, dict[str, Any]] = {
    "constant": {"key": "schedule.lr", "label": "constant lr"},
    "cosine": {"key": "schedule.peak", "label": "cosine peak"},
    "cosine-random-init": {"key": "schedule.peak", "label": "cosine peak, random first draws"},
    "cosine-interval-20": {
        "key": "schedule.peak",
        "label": "cosine peak, 20 reports",
        "reports": 20,
    },
}


def _random_first_draws(space: Any, population: int, rng: Any) -> list[dict[str, Any]]:
    """The first population as pbt drew it before the Latin hypercube: independent draws."""
    from bergab.tuning import _pbt

    return [{p.path: _pbt._sample(p, rng) for p in space} for _ in range(population)]


def pbt_search(
    spec: dict[str, Any], seed: int, population: int, workers: int, out: str, kind: str
) -> dict[str, Any]:
    """PBT at ``population`` runs' compute, of a constant lr (``kind = "constant"``) or of
    the peak of a cosine over the whole run (``"cosine"``: a member's lr is its current
    peak times the cosine's shape at the step, so PBT changes the level of a decay)."""
    from bergab.tuning import _pbt, pbt

    _setup()
    steps = spec["steps"]
    key = PBT_KINDS[kind]["key"]
    lrs = list(spec.get("lr_range", LR_RANGE))
    reports = PBT_KINDS[kind].get("reports", 10)
    sched = ({"lr": 1e-3} if kind == "constant"
             else {"type": "cosine", "peak": 1e-3, "total_steps": steps})  # fmt: skip
    t0 = time.perf_counter()
    latin = _pbt.initial_population
    if kind == "cosine-random-init":  # put back below: the job processes are reused
        _pbt.initial_population = _random_first_draws
    try:
        res = pbt(base_config(spec, seed, sched), {key: {"loguniform": lrs}},
                  population=population, interval=max(1, steps // reports),
                  budget_steps=population * steps, workers=workers, seed=seed, out=out,
                  study=f"pbt-{kind}-{_label(spec)}-{seed}")  # fmt: skip
    finally:
        _pbt.initial_population = latin
    seconds = time.perf_counter() - t0
    chain = res.lineage()
    trained = sum(int(s["end"]) - int(s["start"]) for s in res.segments)
    return {
        "value": res.best_value,
        "member": res.best_member,
        "end": int(chain[-1]["end"]) if chain else 0,
        "runs": trained / steps,
        "segments": len(res.segments),
        "exploits": sum(s["event"] == "exploit" for s in res.segments),
        "lineage_lrs": [float(s["hparams"][key]) for s in chain],
        "best_config": res.best_config(),
        "seconds": seconds,
    }


def replay_run(config: dict[str, Any], fit_seed: int, out: str) -> dict[str, Any]:
    """The PBT winner's schedule as one run from a fresh start, batches by ``fit_seed``."""
    _setup()
    data = json.loads(json.dumps(config))
    data.setdefault("fit", {})["seed"] = fit_seed
    t0 = time.perf_counter()
    loss = _train(data, out)
    return {"value": loss, "seconds": time.perf_counter() - t0}


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    return "inf" if not np.isfinite(x) else f"{x:.{digits}g}"


def _lrs(lrs: list[float]) -> str:
    """The lineage's lrs, consecutive repeats merged: ``3e-3 x4 -> 2.4e-3 x6``."""
    parts: list[list[Any]] = []
    for lr in lrs:
        if parts and parts[-1][0] == lr:
            parts[-1][1] += 1
        else:
            parts.append([lr, 1])
    return " → ".join(f"{lr:.2g}" + (f" ×{n}" if n > 1 else "") for lr, n in parts)


def report(
    tasks: list[str],
    seeds: list[int],
    res: dict[tuple[Any, ...], Any],
    grids: dict[str, list[float]],
    markdown: bool,
    kinds: list[str],
) -> dict[str, Any]:
    """Print the table and the reading of the targets; the numbers as a dict."""
    headers = ["task", "method", *(f"seed {s}" for s in seeds), "median", "compute (runs)",
               "seconds (median)"]  # fmt: skip
    rows: list[list[str]] = []
    notes: list[str] = []
    out: dict[str, Any] = {}
    for task in tasks:
        per: dict[str, dict[int, dict[str, Any]]] = {"grid": {}, "tpe": {}}
        for s in seeds:
            grid = grids[task]
            runs = [res[("grid", task, s, lr)] for lr in grid]
            i = int(np.argmin([r["value"] for r in runs]))
            per["grid"][s] = {"value": runs[i]["value"], "peak": grid[i], "runs": float(len(grid)),
                              "seconds": sum(r["seconds"] for r in runs)}  # fmt: skip
            per["tpe"][s] = res[("tpe", task, s)]
            for kind in kinds:
                per.setdefault(f"pbt-{kind}", {})[s] = {
                    k: v for k, v in res[("pbt", kind, task, s)].items() if k != "best_config"
                }
                reps = [res[("replay", kind, task, s, s + k)] for k in range(3)]
                per.setdefault(f"replay-{kind}", {})[s] = {
                    "value": reps[0]["value"], "runs": 1.0, "seconds": reps[0]["seconds"],
                    "noise": [r["value"] for r in reps]}  # fmt: skip
        names = {"grid": f"grid ({len(grids[task])} cosine peaks)", "tpe": "TPE (cosine peak)"}
        for kind in kinds:
            label = PBT_KINDS[kind]["label"]
            names[f"pbt-{kind}"] = f"PBT best member ({label})"
            names[f"replay-{kind}"] = f"PBT schedule replayed ({label})"
        for method, label in names.items():
            vals = [per[method][s]["value"] for s in seeds]
            runs = statistics.median(per[method][s]["runs"] for s in seeds)
            secs = statistics.median(per[method][s]["seconds"] for s in seeds)
            rows.append([task, label, *(_fmt(v) for v in vals), _fmt(statistics.median(vals)),
                         f"{runs:.2f}", f"{secs:.1f}"])  # fmt: skip
        out[task] = per
        g = [per["grid"][s]["value"] for s in seeds]
        for kind in kinds:
            pk = per[f"pbt-{kind}"]
            p = [pk[s]["value"] for s in seeds]
            r = [per[f"replay-{kind}"][s]["value"] for s in seeds]
            below = sum(pv <= gv for pv, gv in zip(p, g, strict=True))
            notes.append(f"{task}, PBT of the {PBT_KINDS[kind]['label']}: <= grid best in "
                         f"{below}/{len(seeds)} seeds (median {_fmt(statistics.median(p))} vs "
                         f"{_fmt(statistics.median(g))}); compute "
                         f"{statistics.median(pk[s]['runs'] for s in seeds):.2f} runs")  # fmt: skip
            for s in seeds:
                noise = per[f"replay-{kind}"][s]["noise"]
                pb = pk[s]
                inside = min(noise) <= pb["value"] <= max(noise)
                notes.append(
                    f"  seed {s}: grid best peak {per['grid'][s]['peak']:.2g} "
                    f"({_fmt(per['grid'][s]['value'])}), TPE peak "
                    f"{_fmt(per['tpe'][s]['peak'], 2)} ({_fmt(per['tpe'][s]['value'])}); PBT "
                    f"member {pb['member']} at step {pb['end']} ({_fmt(pb['value'])}), "
                    f"{pb['segments']} segments, {pb['exploits']} exploits; replay "
                    f"{_fmt(r[seeds.index(s)])}, over fit seeds {s}..{s + 2}: "
                    f"{', '.join(_fmt(v) for v in noise)} (spread "
                    f"{_fmt(max(noise) - min(noise), 2)}; PBT's value "
                    f"{'inside' if inside else 'outside'} it)\n"
                    f"    winner's {PBT_KINDS[kind]['key']}: {_lrs(pb['lineage_lrs'])}"
                )
    print(text_table(headers, rows))
    print("\nval loss: final validation loss (PBT: the best member's last report); compute: "
          "training steps / max_steps; seconds: one seed's search on one core\n")  # fmt: skip
    print("\n".join(notes))
    if markdown:
        print("\n" + markdown_table(headers, rows))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--population", type=int, default=8,
                        help="PBT's members, its budget in runs and TPE's trials")  # fmt: skip
    parser.add_argument("--pbt-workers", type=int, default=1)
    parser.add_argument("--design", action="store_true", help="the design set's tasks "
                        f"({', '.join(DESIGN)}) instead of --tasks")  # fmt: skip
    parser.add_argument("--pbt", nargs="+", default=["constant", "cosine"], choices=list(PBT_KINDS),
                        help="PBT's forms: of a constant lr, of a cosine's peak")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: tiny "
                        "runs, seed 0, 5 grid points, population 4")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    parser.add_argument("--json", help="write every measurement to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folder (~0.5 GB)")
    args = parser.parse_args(argv)
    specs = QUICK if args.quick else TASKS
    seeds = [0] if args.quick else args.seeds
    population = 4 if args.quick else args.population
    if args.design:
        specs = {**specs, **{name: _suite(name) for name in DESIGN}}
    tasks = DESIGN if args.design else args.tasks
    grids = {t: peaks(specs[t], 5 if args.quick else 13) for t in tasks}
    import torch

    torch.set_num_threads(1)  # as in every job
    print(format_machine_info(machine_info()))
    for t in tasks:
        sp = specs[t]
        print(f"{t}: {sp['task']}, {sp.get('optimizer', 'adamw')}, batch {sp['batch']}, "
              f"{sp['steps']} steps, lr range {sp.get('lr_range', LR_RANGE)}, PBT population "
              f"{population}")  # fmt: skip
    out = tempfile.mkdtemp(prefix="pbt_bench-")
    results: dict[tuple[Any, ...], Any] = {}
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        pending: dict[Future[Any], tuple[Any, ...]] = {}
        # the longest jobs first: PBT and TPE searches, then the grid's runs
        for t in tasks:
            for s in seeds:
                for kind in args.pbt:
                    f = pool.submit(pbt_search, specs[t], s, population, args.pbt_workers,
                                    f"{out}/pbt", kind)  # fmt: skip
                    pending[f] = ("pbt", kind, t, s)
                f = pool.submit(tpe_search, specs[t], s, population, f"{out}/tpe")
                pending[f] = ("tpe", t, s)
        for t in tasks:
            for s in seeds:
                for lr in grids[t]:
                    f = pool.submit(grid_run, specs[t], s, lr, f"{out}/grid-{t}-{s}-{lr:.3g}")
                    pending[f] = ("grid", t, s, lr)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                key = pending.pop(f)
                results[key] = f.result()
                if key[0] == "pbt":  # its schedule replayed, batches by three fit seeds
                    _, kind, t, s = key
                    for k in range(3):
                        g = pool.submit(replay_run, results[key]["best_config"], s + k,
                                        f"{out}/replay-{kind}-{t}-{s}-{s + k}")  # fmt: skip
                        pending[g] = ("replay", kind, t, s, s + k)
    n = len(results)
    print(f"\n{n} jobs in {time.perf_counter() - t0:.0f} s ({args.jobs} processes)\n")
    if args.keep:
        print(f"runs kept in {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)
    numbers = report(tasks, seeds, results, grids, args.markdown, args.pbt)
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
