"""How much does ``bergab.fit`` cost per step over a hand-written torch loop?

Both loops train the same model (same initial weights), on the same data in the same
order (a fresh random permutation each epoch, mini-batches by indexing the tensors), with
the same ``torch.optim.AdamW`` and the same number of steps. ``fit`` runs as a user would
run it: progress bar on (tqdm, to stderr) and logging on (``log_dir``: CSV + JSONL, and
TensorBoard when installed), so it also computes the gradient norm and reads the loss
and the gradient norm back every step. The hand loop does only the forward, backward and
optimizer step (and ``.item()`` of nothing).

Time per step runs from the end of the first step to the return of the loop (for fit:
its last epoch record, and writing the log lines it still holds in memory and closing its
files), divided by the steps after the first; the one-off setup before the first step
(building the optimizer, opening log files) is left out and reported separately as
``setup``. Repeats alternate the two loops; the table shows medians. Target (issue 4):
``fit`` at most 3% slower per step.

Run: ``python benchmarks/fit_overhead.py [--tasks digits charlm] [--repeats 7]
[--threads 1]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from typing import Any

import torch

import bergab
from bergab import tasks
from bergab.training import LambdaCallback

CONFIGS: dict[str, dict[str, Any]] = {
    # task kwargs, batch size, epochs. linreg's steps are tiny (a 10x1 linear model): its
    # row shows the fixed cost of fit per step in microseconds rather than a fair ratio.
    "linreg": {"kwargs": {}, "batch_size": 32, "epochs": 4},
    "digits": {"kwargs": {}, "batch_size": 64, "epochs": 8},
    "digits-wide": {"kwargs": {"hidden": 512}, "batch_size": 128, "epochs": 10},
    "charlm": {"kwargs": {"hidden": 256, "max_chars": 30_000}, "batch_size": 128, "epochs": 1},
    # a step of about 10 ms on one CPU thread: where the fixed cost stops mattering
    "charlm-large": {
        "kwargs": {"hidden": 512, "embed": 32, "max_chars": 20_000},
        "batch_size": 128,
        "epochs": 1,
    },
}


def hand_loop(
    task: Any, model: torch.nn.Module, batch_size: int, epochs: int, seed: int
) -> list[tuple[float, float]]:
    """The plain loop; returns (wall, CPU) time after every step, and at its end."""
    x, y = task.train.tensors
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    stamps: list[tuple[float, float]] = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = task.loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            stamps.append((time.perf_counter(), time.process_time()))
    stamps.append((time.perf_counter(), time.process_time()))  # the loop's end
    return stamps


def fit_loop(
    task: Any, model: torch.nn.Module, batch_size: int, epochs: int, seed: int
) -> tuple[list[tuple[float, float]], float]:
    """``bergab.fit`` with progress and logging on: (wall, CPU) times after every step and
    at its return, and the setup time (before the first step, less one step)."""
    stamps: list[tuple[float, float]] = []
    clock = LambdaCallback(
        on_batch_end=lambda t, logs: stamps.append((time.perf_counter(), time.process_time()))
    )
    with tempfile.TemporaryDirectory() as log_dir:
        t0 = time.perf_counter()
        bergab.fit(
            model,
            task.train,
            task.loss_fn,
            optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            log_dir=log_dir,
            progress=True,
            callbacks=[clock],
        )
        stamps.append((time.perf_counter(), time.process_time()))  # fit returned
        setup = stamps[0][0] - t0 - (stamps[-1][0] - stamps[0][0]) / (len(stamps) - 2)
    return stamps, setup


def per_step(stamps: list[tuple[float, float]]) -> tuple[float, float]:
    """(wall, CPU) seconds per step from the end of the first step to the loop's end.

    ``stamps`` holds one entry per step and a last one at the end of the loop.
    """
    n = len(stamps) - 2  # the steps after the first
    return (stamps[-1][0] - stamps[0][0]) / n, (stamps[-1][1] - stamps[0][1]) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} repeats (medians)")
    print(
        f"{'task':<12} {'steps':>5} | {'wall ms/step: hand':>18} {'fit':>7} {'overhead':>8} | "
        f"{'CPU ms/step: hand':>17} {'fit':>7} {'overhead':>8} | {'fit setup s':>11}"
    )
    for name in args.tasks:
        cfg = CONFIGS[name]
        base = tasks.get(name.split("-")[0], seed=0, **cfg["kwargs"])
        hand_t: list[tuple[float, float]] = []
        fit_t: list[tuple[float, float]] = []
        setups = []
        steps = 0
        for r in range(args.repeats + 1):  # round 0 warms up (imports, allocator, caches)
            for kind in ("hand", "fit") if r % 2 else ("fit", "hand"):
                model = copy.deepcopy(base.model)
                if kind == "hand":
                    stamps = hand_loop(base, model, cfg["batch_size"], cfg["epochs"], seed=r)
                    if r:
                        hand_t.append(per_step(stamps))
                else:
                    stamps, setup = fit_loop(base, model, cfg["batch_size"], cfg["epochs"], seed=r)
                    steps = len(stamps) - 1
                    if r:
                        fit_t.append(per_step(stamps))
                        setups.append(setup)
        cols = []
        for i in (0, 1):  # wall, CPU
            hand = statistics.median(t[i] for t in hand_t)
            fitted = statistics.median(t[i] for t in fit_t)
            cols.append(
                f"{1e3 * hand:>18.3f} {1e3 * fitted:>7.3f} {100 * (fitted / hand - 1):>+7.1f}%"
            )
        ratios = sorted(f[1] / h[1] for f, h in zip(fit_t, hand_t, strict=True))
        extra_us = 1e6 * (
            statistics.median(t[1] for t in fit_t) - statistics.median(t[1] for t in hand_t)
        )
        print(
            f"{name:<12} {steps:>5} | {cols[0]} | {cols[1][1:]} | "
            f"{statistics.median(setups):>11.2f}   CPU ratio per pair "
            f"{ratios[0]:.3f}..{ratios[-1]:.3f}, extra {extra_us:.0f} us/step"
        )


if __name__ == "__main__":
    main()
