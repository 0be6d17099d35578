"""How good is an automatic learning-rate choice? Score it against the grid-best lr.

Every method is scored on the learning-rate suite (:mod:`bergab.tasks.suite`: 24 tasks in
a tuning half, a held-out half and a fresh part, each fixed before anything ran on it,
and 8 more kept aside, ``fresh-2``, run only with ``--half fresh-2`` once a design is
frozen), the same way, and reported per part:

1. **Grid.** Train each task with its optimizer (AdamW with weight decay 0.01, or SGD with
   momentum 0.9) under cosine decay for its fixed budget at 13 log-spaced peak learning
   rates from 1e-5 to 1, for seeds 0 and 1. The grid-best lr has the lowest mean final
   validation loss; a run whose loss becomes non-finite scores infinity.
2. **Methods**, each for seeds 0 and 1 (the seed sets the model's initialization, the
   data order and the method's own randomness), same budget and final evaluation:

   - ``bergab``: ``bergab.fit(..., lr="auto", val_data=...)``;
   - ``steepest``: torch-lr-finder's rule: a range test 1e-7..10 over 100 steps,
     loss smoothed as torch-lr-finder does (``s_i = 0.05 L_i + 0.95 s_{i-1}``, no bias
     correction, stop above 5× the best), and the lr of the most negative
     ``np.gradient`` of the smoothed loss after skipping the first 10 and last 5 points;
     then cosine from there;
   - ``valley``: fastai's ``valley`` rule: fastai's range test (1e-7..10, 100 steps,
     debiased EMA with β = 0.98, stop above 4× the best), points 10..n-5, the longest
     run of a decreasing subsequence, and the lr halfway along it; then cosine;
   - ``prodigy``: Prodigy (lr 1, weight decay 0.01) under cosine decay;
   - ``schedulefree``: schedule-free AdamW with its defaults (lr 0.0025), constant;
   - ``adam-1e-3``: AdamW at 1e-3, constant (doing nothing).

Reported per method and half: final validation loss ÷ the grid-best's (geometric mean over
the tasks and the worst task), the chosen lr ÷ the grid-best lr (worst, as a factor either
way), the spread of the chosen lr over the two seeds (max ÷ min), and the cost in runs:
every training step the choice itself takes (range tests, trial runs), divided by the
steps of one training run.

Every measurement is written to a cache (``--cache``, JSON) and reused by later runs, so a
method can be rescored without recomputing the grid. ``--fresh bergab`` drops a method's
cached results first. Runs go to ``--jobs`` worker processes, one thread each.

Design data: ``--trials 0.1 0.2`` also runs the grid with runs of that fraction of the
budget and records their validation and training-sample loss (how far a short run's best
lr is from the full run's); ``--short-horizon 0.2`` reports that shift directly.

Run: ``python benchmarks/lr_find_quality.py [--half fresh] [--tasks ...] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bergab
from bergab import schedules
from bergab.lr_finder import lr_find
from bergab.tasks import suite
from bergab.training import NonFiniteError

GRID = [float(v) for v in np.logspace(-5, 0, 13)]
SEEDS = (0, 1)
METHODS = (
    "bergab",
    "bergab-noval",
    "soft-minimum",
    "steepest",
    "valley",
    "prodigy",
    "schedulefree",
    "adam-1e-3",
)
DEFAULT_CACHE = Path(__file__).with_name(".lr_find_quality.json")
#: Fractions of the budget for the design grids of short runs (``--trials``); set by main.
TRIALS: list[float] = []


# =========================================================================== training


def _fit(
    st: suite.SuiteTask, seed: int, lr: Any, optimizer: str, kwargs: dict[str, Any],
    steps: int | None = None, task: Any = None, with_val: bool = True,
) -> Any:  # fmt: skip
    task = task or st.build(seed)
    steps = steps or st.steps
    return bergab.fit(
        task.model,
        task.train,
        task.loss_fn,
        val_data=task.val if with_val else None,
        optimizer=optimizer,
        optimizer_kwargs=kwargs,
        lr=lr,
        max_steps=steps,
        batch_size=st.batch_size,
        val_every=steps if with_val else None,
        seed=seed,
        progress=False,
    )


def _final(history: Any) -> float:
    loss = float(history.records[-1]["val_loss"])
    return loss if math.isfinite(loss) else math.inf


def train(st: suite.SuiteTask, seed: int, peak: float, steps: int | None = None) -> float:
    """The task's optimizer under cosine decay from ``peak`` over ``steps`` (default: the
    task's budget): the final validation loss."""
    steps = steps or st.steps
    try:
        h = _fit(st, seed, schedules.cosine(peak=peak, total_steps=steps), st.optimizer,
                 st.optimizer_kwargs(), steps)  # fmt: skip
    except NonFiniteError:
        return math.inf
    return _final(h)


def trial_run(st: suite.SuiteTask, seed: int, peak: float, steps: int) -> dict[str, float]:
    """A short run (cosine compressed to ``steps``): its final validation loss and its loss
    on the first 2,048 training examples (what ``lr="auto"``'s trials measure)."""
    task = st.build(seed)
    try:
        h = _fit(st, seed, schedules.cosine(peak=peak, total_steps=steps), st.optimizer,
                 st.optimizer_kwargs(), steps, task)  # fmt: skip
    except NonFiniteError:
        return {"val": math.inf, "train": math.inf}
    x, y = task.train.tensors[0][:2048], task.train.tensors[1][:2048]
    train = bergab.evaluate(task.model, (x, y), task.loss_fn, device="cpu")["loss"]
    return {"val": _final(h), "train": train if math.isfinite(train) else math.inf}


# =========================================================================== peers' rules


def torch_lr_finder_steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """torch-lr-finder's suggestion: its smoothing (``smooth_f=0.05``, no bias correction),
    then the lr at the most negative ``np.gradient`` after skipping 10 points at the start
    and 5 at the end (fewer points than that: the middle of the curve)."""
    smoothed = [float(losses[0])]
    for v in losses[1:]:
        smoothed.append(0.05 * float(v) + 0.95 * smoothed[-1])
    s = np.array(smoothed)[10:-5]
    if len(s) < 2:
        return float(lrs[len(lrs) // 2])
    return float(lrs[10 + int(np.argmin(np.gradient(s)))])


def fastai_valley(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """fastai's ``valley``: over points ``n//10 .. n-5`` of the smoothed curve, the longest
    decreasing subsequence (by length, found by dynamic programming); the suggestion is
    the point halfway from where it starts to where it ends."""
    n_all = len(smoothed)
    lr, loss = lrs[n_all // 10 : n_all - 5], smoothed[n_all // 10 : n_all - 5]
    n = len(loss)
    if n < 2:
        return float(lrs[n_all // 2])
    longest = [1] * n
    best_end, best_start = 0, 0
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[best_end] < longest[i]:
                best_end, best_start = i, i - longest[i]
    third = (best_end - best_start) / 3
    return float(lr[best_start + int(third) + int(third / 2)])


def _range_test(st: suite.SuiteTask, seed: int, **sweep: Any) -> Any:
    task = st.build(seed)
    return lr_find(task.model, task.train, task.loss_fn, optimizer=st.optimizer,
                   batch_size=st.batch_size, seed=seed, warn=False, **sweep,
                   **st.optimizer_kwargs())  # fmt: skip


def run_method(st: suite.SuiteTask, method: str, seed: int) -> dict[str, Any]:
    """Train with ``method``'s choice: ``{"loss", "lr" (None: no single lr), "cost"}``."""
    lr: float | None = None
    cost = 0.0
    if method in ("bergab", "bergab-noval"):
        task = st.build(seed)
        try:
            h = _fit(st, seed, "auto", st.optimizer, st.optimizer_kwargs(), task=task,
                     with_val=method == "bergab")  # fmt: skip
        except NonFiniteError:
            return {"loss": math.inf, "lr": None, "cost": math.nan}
        auto = h.info["auto_lr"]
        loss = bergab.evaluate(task.model, task.val, task.loss_fn, device="cpu")["loss"]
        return {"loss": loss if math.isfinite(loss) else math.inf, "lr": auto["peak"],
                "cost": auto["cost_steps"] / st.steps, "why": auto.get("describe", "")}  # fmt: skip
    if method in ("soft-minimum", "steepest", "valley"):
        if method == "soft-minimum":
            res = _range_test(st, seed)
            lr = float(res.suggestions["soft_minimum"])
        elif method == "steepest":
            res = _range_test(st, seed, smoothing=0.95, diverge_factor=5.0)
            lr = torch_lr_finder_steepest(res.lrs, res.losses)
        else:
            res = _range_test(st, seed)
            lr = fastai_valley(res.lrs, res.smoothed)
        return {"loss": train(st, seed, lr), "lr": lr, "cost": len(res.lrs) / st.steps}
    if method == "prodigy":
        spec: tuple[Any, str, dict[str, Any]] = (
            schedules.cosine(peak=1.0, total_steps=st.steps),
            "prodigy",
            {"weight_decay": 0.01},
        )
    elif method == "schedulefree":
        spec = (None, "schedulefree_adamw", {})
    elif method == "adam-1e-3":
        spec = (1e-3, "adamw", {"weight_decay": 0.01})
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    try:
        loss = _final(_fit(st, seed, *spec))
    except NonFiniteError:
        loss = math.inf
    return {"loss": loss, "lr": lr, "cost": cost}


# =========================================================================== jobs, cache


def _job(key: tuple[str, str, str, int]) -> tuple[tuple[str, str, str, int], Any]:
    torch.set_num_threads(1)
    name, kind, arg, seed = key
    st = suite.get(name)
    if kind == "grid":
        return key, train(st, seed, float(arg))
    if kind.startswith("trial"):  # trial:<fraction>|<lr>: val and train-sample loss
        fraction, lr = kind.split(":")[1], float(arg)
        return key, trial_run(st, seed, lr, max(1, round(float(fraction) * st.steps)))
    if kind.startswith("short"):  # short:<fraction>|<lr>
        fraction, lr = kind.split(":")[1], float(arg)
        return key, train(st, seed, lr, max(1, round(float(fraction) * st.steps)))
    return key, run_method(st, arg, seed)


def _keys(
    names: list[str], methods: list[str], short: list[float]
) -> list[tuple[str, str, str, int]]:
    keys = [(n, "grid", repr(lr), s) for n in names for lr in GRID for s in SEEDS]
    keys += [(n, f"short:{f}", repr(lr), s) for f in short for n in names for lr in GRID
             for s in SEEDS]  # fmt: skip
    keys += [(n, f"trial:{f}", repr(lr), s) for f in TRIALS for n in names for lr in GRID
             for s in SEEDS]  # fmt: skip
    keys += [(n, "method", m, s) for n in names for m in methods for s in SEEDS]
    return keys


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, cache: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=0))
    os.replace(tmp, path)


def measure(
    names: list[str], methods: list[str], short: list[float], cache_path: Path, jobs: int
) -> dict[str, Any]:
    cache = _load(cache_path)
    todo = [k for k in _keys(names, methods, short) if "|".join(map(str, k)) not in cache]
    # the slowest tasks first, so the workers finish together
    todo.sort(key=lambda k: -suite.get(k[0]).steps * suite.get(k[0]).batch_size)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for i, (key, value) in enumerate(pool.imap_unordered(_job, todo)):
            cache["|".join(map(str, key))] = value
            if i % 20 == 19 or i == len(todo) - 1:
                _save(cache_path, cache)
                print(f"  {i + 1}/{len(todo)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    return cache


# =========================================================================== report


def _geo(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values else math.nan


def summarize(name: str, methods: list[str], cache: dict[str, Any]) -> dict[str, Any]:
    grid = {lr: [cache[f"{name}|grid|{lr!r}|{s}"] for s in SEEDS] for lr in GRID}
    mean = {lr: float(np.mean(v)) for lr, v in grid.items()}
    best_lr = min(mean, key=lambda lr: mean[lr])
    out: dict[str, Any] = {"grid_best_lr": best_lr, "grid_best_loss": mean[best_lr],
                           "grid": mean, "methods": {}}  # fmt: skip
    for m in methods:
        runs = [cache[f"{name}|method|{m}|{s}"] for s in SEEDS]
        lrs = [r["lr"] for r in runs if r["lr"] is not None]
        out["methods"][m] = {
            "ratio": float(np.mean([r["loss"] for r in runs])) / mean[best_lr],
            "lr_ratio": _geo(lrs) / best_lr if lrs else math.nan,
            "spread": max(lrs) / min(lrs) if lrs else math.nan,
            "cost": float(np.mean([r["cost"] for r in runs])),
            "why": [r.get("why", "") for r in runs],
        }
    return out


def _far(x: float) -> float:
    """How far a ratio is from 1, as a factor >= 1 either way."""
    if math.isnan(x):
        return math.nan
    return max(x, 1 / x) if x > 0 else math.inf


def report(names: list[str], methods: list[str], cache: dict[str, Any], verbose: bool) -> str:
    lines = []
    rows = {n: summarize(n, methods, cache) for n in names}
    lines.append(f"{'task':20} {'best lr':>8} {'best loss':>9}  " + " ".join(
        f"{m:>12}" for m in methods))  # fmt: skip
    for n, r in rows.items():
        cells = []
        for m in methods:
            s = r["methods"][m]
            lr = "" if math.isnan(s["lr_ratio"]) else f"{s['lr_ratio']:.2g}x"
            cells.append(f"{s['ratio']:6.3f} {lr:>5}")
        lines.append(f"{n:20} {r['grid_best_lr']:8.2g} {r['grid_best_loss']:9.4g}  " +
                     " ".join(f"{c:>12}" for c in cells))  # fmt: skip
        if verbose and "bergab" in r["methods"]:
            lines.extend(f"    {why}" for why in r["methods"]["bergab"]["why"])
    for half in suite.HALVES:
        part = [n for n in names if suite.get(n).half == half]
        if not part:
            continue
        lines.append(f"\n{half} ({len(part)} tasks):")
        lines.append(f"  {'method':13} {'loss geo':>8} {'worst':>7} {'lr worst':>9} "
                     f"{'spread':>7} {'cost':>6}")  # fmt: skip
        for m in methods:
            ratios = [rows[n]["methods"][m]["ratio"] for n in part]
            lr_r = [_far(rows[n]["methods"][m]["lr_ratio"]) for n in part]
            lr_r = [v for v in lr_r if not math.isnan(v)]
            spread = [rows[n]["methods"][m]["spread"] for n in part]
            spread = [v for v in spread if not math.isnan(v)]
            cost = float(np.mean([rows[n]["methods"][m]["cost"] for n in part]))
            lines.append(
                f"  {m:13} {_geo(ratios):8.3f} {max(ratios):7.2f} "
                f"{(max(lr_r) if lr_r else math.nan):8.3g}x "
                f"{(max(spread) if spread else math.nan):7.2f} {cost:6.2f}"
            )
    return "\n".join(lines)


def short_horizon_report(names: list[str], fractions: list[float], cache: dict[str, Any]) -> str:
    """Where short runs put the best lr, against the full runs' grid-best."""
    lines = ["\nshort-horizon bias: best lr of short runs / grid-best lr (full runs), and the "
             "full-run loss at the short runs' best lr / grid-best loss"]  # fmt: skip
    for f in fractions:
        cells, shifts = [], []
        for n in names:
            full = {lr: float(np.mean([cache[f"{n}|grid|{lr!r}|{s}"] for s in SEEDS]))
                    for lr in GRID}  # fmt: skip
            short = {lr: float(np.mean([cache[f"{n}|short:{f}|{lr!r}|{s}"] for s in SEEDS]))
                     for lr in GRID}  # fmt: skip
            best_full = min(full, key=lambda lr: full[lr])
            best_short = min(short, key=lambda lr: short[lr])
            shifts.append(best_short / best_full)
            cells.append(
                f"{n} {best_short / best_full:.2g}x ({full[best_short] / full[best_full]:.3f})"
            )
        lines.append(f"  fraction {f}: geometric mean {_geo(shifts):.2f}x; " + ", ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=suite.HALVES, help="only this part of the suite")
    parser.add_argument("--tasks", nargs="+", choices=suite.names(), help="only these tasks")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--fresh", nargs="*", default=[], choices=METHODS,
                        help="drop these methods' cached results first")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--short-horizon",
        nargs="*",
        type=float,
        default=[],
        help="also run the grid with runs this fraction of the budget "
        "(cosine compressed) and compare the best lr with the full grid's",
    )
    parser.add_argument(
        "--trials",
        nargs="*",
        type=float,
        default=[],
        help="design data: the grid with runs this fraction of the budget, "
        "recording validation and training-sample loss",
    )
    parser.add_argument("--verbose", action="store_true", help="say why bergab chose its lr")
    args = parser.parse_args(argv)
    names = args.tasks or [
        t.name
        for t in suite.tasks(args.half)
        if args.half is not None or t.half not in suite.KEPT_ASIDE  # run once, when asked
    ]
    cache = _load(args.cache)
    for key in [k for k in cache if k.split("|")[2] in args.fresh]:
        del cache[key]
    _save(args.cache, cache)
    TRIALS[:] = args.trials
    cache = measure(names, args.methods, args.short_horizon, args.cache, args.jobs)
    print(report(names, args.methods, cache, args.verbose))
    if args.short_horizon:
        print(short_horizon_report(names, args.short_horizon, cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
