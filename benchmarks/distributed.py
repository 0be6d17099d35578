"""Training throughput of ``bergab.fit`` in one process against two (torch.distributed).

Every configuration trains a built-in task with ``bergab.fit`` (AdamW, lr 1e-3, no
validation, no logging, no progress bar) for a fixed number of optimizer steps, and
measures the steady state: from the end of step ``SKIP`` to the end of the last step,
timed with a callback on every process; a step of several processes is as slow as its
slowest process (their times are gathered and the longest kept), and the examples are
those every process actually trained on (counted by the loss function, summed over the
processes: a last short batch counts as short). Each launch (a fresh process, or
processes) runs a short warm-up run of every variant, then ``--repeats`` timed rounds
with the variants interleaved (a new copy of the same initial model each time); each
configuration is launched ``--launches`` times, the 1- and 2-process launches
alternated, so drifting load hits them alike. The table shows medians over all the
timed runs, and ``setup ms``: the time fit takes before its first step.

On the CPU (gloo):

- **1 process** (``strategy="none"``): the baseline, at **2 torch threads** (the whole
  machine, as two processes use it), and for reference at 1 thread.
- **2 processes × 1 thread** (``torch.distributed.run --nproc-per-node 2``), with
  ``strategy="ddp"``, ``strategy="ddp"`` + ``shard_optimizer=True`` (ZeRO-1) and
  ``strategy="fsdp"`` (FSDP2), each at
  - **weak scaling**: the same batch per process as the baseline (the global batch
    doubles; ideal: the baseline's steps/s, twice its examples/s);
  - **strong scaling**: half the batch per process (the same global batch as the
    baseline; ideal: twice its steps/s and examples/s).

Ratios are against the 1-process, 2-thread baseline of the same task. The number of
threads is set with ``torch.set_num_threads`` (and ``OMP_NUM_THREADS`` for the launched
processes), so 1 process × 2 threads and 2 processes × 1 thread use the same cores.

On CUDA, when available: the same tasks in 1 process on one GPU, and with two or more GPUs
2-process DDP over nccl (weak and strong); otherwise the GPU part is skipped.

Run: ``python benchmarks/distributed.py [--tasks digits charlm] [--repeats 3]
[--launches 2] [--markdown] [--no-cuda]`` (about 3 minutes on 2 cores); ``--quick`` for
a smoke run of a few seconds (digits only, 30 steps, one launch and round).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import format_machine_info, machine_info, markdown_table, text_table

import bergab
from bergab import tasks
from bergab.training import LambdaCallback
from bergab.training.strategy import usable_cores

#: task kwargs, batch size per process of the baseline, steps per timed run.
CONFIGS: dict[str, dict[str, Any]] = {
    # a small MLP (64 → 256 → 256 → 10, 85k parameters): steps of about a millisecond
    "digits": {"kwargs": {"hidden": 256, "depth": 2}, "batch_size": 128, "steps": 200},
    # embedding + MLP over 32 characters (158k parameters): steps of a few milliseconds
    "charlm": {"kwargs": {"hidden": 256, "max_chars": 60_000}, "batch_size": 256, "steps": 100},
}
SKIP = 10  # steps of each run left out of the timing (the first steps warm caches up)
WARMUP_STEPS = 2 * SKIP  # the warm-up run of each variant in each launch (not timed)
THREADS_1P = 2  # the baseline: one process on both cores
THREADS_2P = 1  # two processes: one thread each
CPU_STRATEGIES = (("ddp", False), ("ddp", True), ("fsdp", False))


def strategy_label(strategy: str, shard_optimizer: bool) -> str:
    return "ddp + ZeRO-1" if shard_optimizer else strategy


# ------------------------------------------------------------------------ the worker
def run_once(task: Any, variant: dict[str, Any], steps: int, seed: int) -> dict[str, float]:
    """One ``fit`` of ``variant``; its steady-state time and examples over every process."""
    torch.set_num_threads(variant["threads"])
    device = variant["device"]
    cuda = device.startswith("cuda")
    seen = [0]
    stamps: list[tuple[float, int]] = []

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen[0] += len(targets)
        return task.loss_fn(outputs, targets)

    def on_batch_end(trainer: Any, logs: Any) -> None:
        if cuda and len(stamps) in (0, SKIP - 1, steps - 1):
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), seen[0]))

    model = copy.deepcopy(task.model)
    t0 = time.perf_counter()
    bergab.fit(
        model,
        task.train,
        loss_fn,
        optimizer="adamw",
        lr=1e-3,
        max_steps=steps,
        batch_size=variant["batch_size"],
        strategy=variant["strategy"],
        shard_optimizer=variant["shard_optimizer"],
        device=device,
        seed=seed,
        progress=False,
        callbacks=[LambdaCallback(on_batch_end=on_batch_end)],
    )
    n = len(stamps) - SKIP  # the timed steps
    wall = stamps[-1][0] - stamps[SKIP - 1][0]
    setup = stamps[0][0] - t0 - wall / n  # before the first step, less one step
    mine = {"wall": wall, "examples": stamps[-1][1] - stamps[SKIP - 1][1], "setup": setup}
    dist = torch.distributed
    if dist.is_initialized() and dist.get_world_size() > 1:
        every: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(every, mine)
        mine = {
            "wall": max(e["wall"] for e in every),
            "examples": sum(e["examples"] for e in every),
            "setup": max(e["setup"] for e in every),
        }
    return {
        "steps_per_s": n / mine["wall"],
        "examples_per_s": mine["examples"] / mine["wall"],
        "setup_s": mine["setup"],
    }


def worker(spec: dict[str, Any], out: str) -> None:
    """Run every variant of ``spec`` (warm-up, then timed rounds); rank 0 writes ``out``."""
    name = spec["task"]
    task = tasks.get(name, seed=0, **CONFIGS[name]["kwargs"])
    variants = spec["variants"]
    results: list[list[dict[str, float]]] = [[] for _ in variants]
    for v in variants:  # warm-up: imports, the process group, allocator, caches
        run_once(task, v, WARMUP_STEPS, seed=0)
    for r in range(spec["repeats"]):
        shift = r % len(variants)  # a different variant first in each round
        for i in [*range(shift, len(variants)), *range(shift)]:
            results[i].append(run_once(task, variants[i], spec["steps"], seed=r + 1))
    if int(os.environ.get("RANK", "0")) == 0:  # whole or not at all: a rename
        Path(out + ".tmp").write_text(json.dumps(results), encoding="utf-8")
        os.replace(out + ".tmp", out)
    dist = torch.distributed
    if dist.is_initialized():  # no process exits before the results are written
        dist.barrier()
    # free the runs' DDP/ZeRO models and optimizers (left in reference cycles) while the
    # interpreter is whole: freed at its finalization, after the process group is gone,
    # they can abort gloo ("terminate called without an active exception")
    gc.collect()


# ------------------------------------------------------------------------ the launcher
def launch(
    spec: dict[str, Any], nproc: int, threads: int | None, timeout: float
) -> list[list[dict[str, float]]]:
    """Run ``spec`` in ``nproc`` processes (torch's launcher when more than one)."""
    env = dict(os.environ)
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        script = [os.path.abspath(__file__), "--worker", json.dumps(spec), "--out", out]
        if nproc == 1:
            cmd = [sys.executable, *script]
        else:
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", str(nproc), *script,
            ]  # fmt: skip
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if not os.path.exists(out):
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
            raise RuntimeError(f"the worker failed (exit {proc.returncode}): {' '.join(cmd)}")
        if proc.returncode != 0:  # after every process had finished its work
            died = [ln for ln in proc.stderr.splitlines() if "terminate called" in ln]
            print(
                f"  note: the {nproc}-process worker exited with {proc.returncode} after "
                f"writing its results ({died[0] if died else 'see its stderr'}); results kept",
                flush=True,
            )
        return json.loads(Path(out).read_text(encoding="utf-8"))


def variant(
    label: str,
    scaling: str,
    nproc: int,
    threads: int,
    batch_size: int,
    strategy: str = "none",
    shard_optimizer: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    return {
        "label": label,
        "scaling": scaling,
        "nproc": nproc,
        "threads": threads,
        "batch_size": batch_size,
        "strategy": strategy,
        "shard_optimizer": shard_optimizer,
        "device": device,
    }


def plans(
    name: str, cuda_devices: int, cpu_cores: int
) -> list[tuple[int, int | None, list[dict[str, Any]]]]:
    """The launches for task ``name``: (processes, threads, variants)."""
    b = CONFIGS[name]["batch_size"]
    one = [
        variant("1 proc × 2 threads", "baseline", 1, THREADS_1P, b),
        variant("1 proc × 1 thread", "reference", 1, 1, b),
    ]
    two = [
        variant(f"2 proc × 1 thread, {strategy_label(s, z)}", scaling, 2, THREADS_2P, bs, s, z)
        for scaling, bs in (("weak", b), ("strong", b // 2))
        for s, z in CPU_STRATEGIES
    ]
    out: list[tuple[int, int | None, list[dict[str, Any]]]] = [(1, THREADS_1P, one)]
    if cpu_cores >= 2:  # fit refuses more processes than cores
        out.append((2, THREADS_2P, two))
    if cuda_devices >= 1:
        gpu = [variant("1 GPU", "baseline", 1, torch.get_num_threads(), b, device="cuda")]
        out.append((1, None, gpu))
    if cuda_devices >= 2:
        gpus = [
            variant("2 GPUs, ddp (nccl)", scaling, 2, 1, bs, "ddp", device="cuda")
            for scaling, bs in (("weak", b), ("strong", b // 2))
        ]
        out.append((2, None, gpus))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per launch")
    parser.add_argument(
        "--launches", type=int, default=2, help="launches of each configuration, alternated"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table too")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU part")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(json.loads(args.worker), args.out)
        return

    names = ["digits"] if args.quick else args.tasks
    repeats, launches = (1, 1) if args.quick else (args.repeats, args.launches)
    cuda_devices = 0 if args.no_cuda or not torch.cuda.is_available() else torch.cuda.device_count()
    print(format_machine_info(machine_info("cuda" if cuda_devices else "cpu")))
    print(
        f"CPU: 1 process × {THREADS_1P} torch threads (the baseline; × 1 for reference) "
        f"against 2 processes × {THREADS_2P} thread (gloo); AdamW, lr 1e-3. "
        f"{'--quick: ' if args.quick else ''}{launches} launch(es) of each configuration, "
        f"alternated, each a warm-up run then {repeats} timed round(s): medians of "
        f"{launches * repeats} runs; steps {SKIP}..end of each run timed"
    )
    cpu_cores = usable_cores()
    if cpu_cores < 2:
        print(f"2-process CPU part skipped: {cpu_cores} usable CPU core(s)")
    if not cuda_devices:
        why = "--no-cuda" if args.no_cuda else "CUDA is not available"
        print(f"GPU part skipped: {why}")
    elif cuda_devices < 2:
        print("GPU: 1 GPU only; the 2-process nccl run is skipped")

    headers = [
        "task", "scaling", "configuration", "batch/proc", "global batch", "steps/s",
        "examples/s", "steps/s ÷ base", "examples/s ÷ base", "setup ms",
    ]  # fmt: skip
    rows, spreads = [], []
    started = time.perf_counter()
    for name in names:
        steps = 30 if args.quick else CONFIGS[name]["steps"]
        runs = plans(name, cuda_devices, cpu_cores)
        results: list[list[list[dict[str, float]]]] = [[[] for _ in v] for _, _, v in runs]
        for _ in range(launches):
            for (nproc, threads, variants), into in zip(runs, results, strict=True):
                spec = {"task": name, "variants": variants, "steps": steps, "repeats": repeats}
                for acc, res in zip(into, launch(spec, nproc, threads, 600), strict=True):
                    acc.extend(res)
        print(f"  {name} done ({time.perf_counter() - started:.0f} s)")
        base: dict[str, dict[str, float]] = {}
        for (_, _, variants), got in zip(runs, results, strict=True):
            for v, res in zip(variants, got, strict=True):
                med = {k: statistics.median(x[k] for x in res) for k in res[0]}
                if v["scaling"] == "baseline":
                    base[v["device"]] = med
                ref = base[v["device"]]
                rows.append(
                    [
                        name,
                        v["scaling"],
                        v["label"],
                        v["batch_size"],
                        v["batch_size"] * v["nproc"],
                        f"{med['steps_per_s']:.1f}",
                        f"{med['examples_per_s']:.0f}",
                        f"{med['steps_per_s'] / ref['steps_per_s']:.2f}",
                        f"{med['examples_per_s'] / ref['examples_per_s']:.2f}",
                        f"{1e3 * med['setup_s']:.0f}",
                    ]
                )
                sps = [x["steps_per_s"] for x in res]
                spreads.append(f"{min(sps):.1f}..{max(sps):.1f}")
    print()
    print(
        text_table(
            [*headers, "steps/s min..max"], [[*r, s] for r, s in zip(rows, spreads, strict=True)]
        )
    )
    if args.markdown:
        print()
        print(markdown_table(headers, rows))
    load = (
        f", load average {os.getloadavg()[0]:.2f} at the end" if hasattr(os, "getloadavg") else ""
    )
    print(
        f"\nideal: weak scaling keeps the baseline's steps/s (examples/s ÷ base 2.00), strong "
        f"scaling doubles both (2.00); {time.perf_counter() - started:.0f} s{load}"
    )


if __name__ == "__main__":
    main()
