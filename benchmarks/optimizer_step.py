"""Time per ``step()`` of every bergab optimizer beside torch's implementations, as a ratio
to the memory-traffic floor.

For each size N (default 1M, 16M and 64M float32 parameters in 64 equal tensors, with
fixed random gradients) and each algorithm, in one run:

- every bergab implementation of it (``reference``, ``foreach``, ``fused``, ``compiled``:
  whatever the class lists), plus which one ``impl="auto"`` picks;
- torch's ``default``, ``foreach=True`` and ``fused=True`` versions of the same algorithm
  where torch has it (those that raise for the device are left out), and the authors'
  package where one is installed (prodigyopt, schedulefree, dog).

**Time.** All implementations of one algorithm are built on the same parameters and
stepped in turn, one step each per round, so that a change in the machine's load hits
them alike; each time is the median over ``--repeats`` rounds, after the first step
(state allocation; compilation for ``compiled``, reported as its warm-up) and 3 warm-up
rounds. ``torch._dynamo`` is reset before each algorithm, so every compiled case compiles
from scratch (inductor's on-disk cache may still help).

**Floor.** ``bytes_per_param × N / peak bandwidth``. ``bytes_per_param`` is what one step
must read and write per parameter (float32: parameter, gradient and each state tensor read
once, parameter and state written once), from :data:`BYTES_PER_PARAM`, or for an
optimizer not in that table from its state after a step: ``(3 + 2k) × 4`` bytes with ``k``
parameter-sized state tensors (marked ``*``). The peak bandwidth is the best of
``torch.add(a, b, out=c)`` and ``copy_`` on 64M floats and torch's fused AdamW on 64M
parameters (bytes over time), measured at the start of the run and after each size (the
best is kept). At 1M parameters the working set fits in a large last-level cache, so
ratios below 1 are possible there. For DoG, Prodigy and hypergradient descent, whose step
size is a sum over the whole group, the summary also gives the fastest path against a
two-pass floor (:data:`TWO_PASS_BYTES`: the bytes their math forces beyond the cache).

**Read-aware floor.** Memory may read more slowly than it reads and writes at once (on
the development machine reads alone reach about 32 GB/s, ``torch.sum``; fused AdamW, 57%
reads, 53 GB/s). A kernel that mostly reads (DoG and LDoG: 75%) then cannot reach the
floor above. The column "read-aware floor" gives the fastest path against ``max(bytes /
peak, read bytes / read peak)``, with :data:`READ_BYTES` (two-pass bytes where the method has them)
and the read peak the best of ``a.sum()`` and ``torch.dot(a, b)`` on 64M floats, probed
with the peak. "× floor" stays the stricter measure.

**Beside fused AdamW.** The peak is the best of probes taken at quiet moments, while a
step is timed whenever its algorithm's turn comes; on a shared machine the load drifts in
between. So each algorithm's rounds also step torch's fused AdamW on its own copy of the
parameters (the "yardstick" case, 28 B/param), and the last column gives the fastest
path's time per byte (two-pass bytes where the method has them) over the yardstick's,
measured in the same rounds: 1.00 means as close to the memory limit as torch's fused
AdamW, under the same load. Beside it, the same per byte read (fused AdamW reads 16 of
its 28 bytes): where reads are the limit, a kernel that mostly reads is at 1.00 there.

**Memory.** The peak extra memory one steady-state ``step()`` holds above what was
resident before it. On CPU: in a fresh subprocess per size (with glibc told to return
every allocation of 64 KiB or more to the system on free, so a temporary cannot hide in
cached memory), the kernel's resident-set high-water mark is reset just before the step
and read right after (``/proc/self/clear_refs``, ``VmHWM``). Compiled cases are measured
only with ``--memory-compiled`` (they would compile again there). On CUDA:
``torch.cuda.max_memory_allocated`` over the step.

Examples::

    python benchmarks/optimizer_step.py --sizes 1M,16M --markdown
    python benchmarks/optimizer_step.py --optimizers adamw,lamb --sizes 16M --repeats 7
    python benchmarks/optimizer_step.py --device cuda --sizes 64M --markdown
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    MALLOC_ENV,
    format_machine_info,
    machine_info,
    markdown_table,
    parse_size,
    peak_bandwidth,
    read_bandwidth,
    rss_peak_during,
    sync,
    text_table,
)

from bergab import optim

# Bytes one float32 step must read and write per parameter (extend it as algorithms land):
# parameter r+w (8), gradient r (4), each state tensor r+w (8).
BYTES_PER_PARAM: dict[str, int] = {
    "sgd": 12,
    "momentum": 20,
    "nesterov": 20,
    "adagrad": 20,  # state: sum of squares
    "rmsprop": 20,  # state: square average (no momentum, not centered by default)
    "adam": 28,  # exp_avg, exp_avg_sq
    "adamw": 28,
    "nadam": 28,  # + a scalar mu product
    "radam": 28,
    "amsgrad": 36,  # + max_exp_avg_sq
    "lars": 20,  # momentum buffer; the per-tensor norms read w and g a second time
    "lamb": 28,  # exp_avg, exp_avg_sq; the norm of the update needs a second pass
    # self-tuning: x0 is only read; the global step size (d, η, α) needs a second pass
    "schedulefree_sgd": 20,  # z
    "schedulefree_adamw": 28,  # z, exp_avg_sq
    "prodigy": 40,  # exp_avg, exp_avg_sq, s; x0 read
    "dog": 16,  # x0 read
    "ldog": 16,  # x0 read
    "hypergradient_sgd": 20,  # previous direction
    "hypergradient_adam": 28,  # exp_avg, exp_avg_sq
}

# The methods whose step size is a sum over the whole param group (DoG's η, Prodigy's d,
# hypergradient descent's α): no element may move before every gradient has been read,
# so beyond the cache ANY implementation reads some streams twice. The bytes the math then
# forces (what bergab's kernels move; see the header of each csrc/*.c file):
#   dog: g read for ‖g‖², then x, x0, g read and x written (20 = 16 + 4)
#   prodigy: x, g, x0, s read and s written; then x, g, m, v read, m, v, x written (48)
#   hypergradient_sgd: g, u read and u written; then θ, u read and θ written (24)
#   hypergradient_adam: g, m, v read and m, v written; then θ, m, v read, θ written (36)
# The tables report the single-pass floor above as "× floor" (the stricter measure) and
# this one beside it. (LARS, LAMB and LDoG reduce per tensor: their second read comes from
# the cache, so their floor stays single-pass.)
TWO_PASS_BYTES: dict[str, int] = {
    "dog": 20,
    "prodigy": 48,
    "hypergradient_sgd": 24,
    "hypergradient_adam": 36,
}

# Of the bytes above, those read (parameter, gradient and every state tensor once; x0 of
# DoG/LDoG/Prodigy), single-pass; the two-pass methods' reads from the derivations above.
READ_BYTES: dict[str, int] = {
    "sgd": 8,
    "momentum": 12,
    "nesterov": 12,
    "adagrad": 12,
    "rmsprop": 12,
    "adam": 16,
    "adamw": 16,
    "nadam": 16,
    "radam": 16,
    "amsgrad": 20,
    "lars": 12,
    "lamb": 16,
    "schedulefree_sgd": 12,
    "schedulefree_adamw": 16,
    "prodigy": 24,
    "dog": 12,
    "ldog": 12,
    "hypergradient_sgd": 12,
    "hypergradient_adam": 16,
}
TWO_PASS_READ_BYTES: dict[str, int] = {
    "dog": 16,
    "prodigy": 32,
    "hypergradient_sgd": 16,
    "hypergradient_adam": 24,
}

# The yardstick stepped in every algorithm's rounds: torch's fused AdamW, its bytes and
# the bytes of those it reads.
YARDSTICK_BYTES = 28
YARDSTICK_READ_BYTES = 16


def yardstick_case(algo: str) -> Case:
    """torch's fused AdamW, timed in ``algo``'s rounds (see "Beside fused AdamW")."""
    return Case(
        algo,
        "yardstick",
        "torch fused AdamW",
        lambda ps: torch.optim.AdamW(ps, lr=1e-6, fused=True),
    )


# torch.optim class and keyword arguments with the same defaults as the bergab name.
TORCH_EQUIVALENT: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {"lr": 1e-3}),
    "momentum": ("SGD", {"lr": 1e-3, "momentum": 0.9}),
    "nesterov": ("SGD", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    "adagrad": ("Adagrad", {}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
    "amsgrad": ("Adam", {"amsgrad": True}),
    "adamw": ("AdamW", {}),
    "nadam": ("NAdam", {}),
    "radam": ("RAdam", {}),
}
TORCH_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}

# The authors' packages, where installed: (module, class, keyword arguments).
EXTERNAL_EQUIVALENT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "prodigy": ("prodigyopt", "Prodigy", {}),
    "schedulefree_sgd": ("schedulefree", "SGDScheduleFree", {}),
    "schedulefree_adamw": ("schedulefree", "AdamWScheduleFree", {}),
    "dog": ("dog", "DoG", {}),
    "ldog": ("dog", "LDoG", {}),
}

# Keyword arguments for the bergab optimizer when its defaults do not suit a benchmark.
BERGAB_KWARGS: dict[str, dict[str, Any]] = {}

Builder = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Case:
    algo: str  # the bergab registry name
    family: str  # "bergab", "torch" or the package name
    impl: str  # bergab impl; torch "default"/"foreach"/"fused"; "package"
    build: Builder

    @property
    def key(self) -> str:
        return f"{self.algo}/{self.family}/{self.impl}"


# ---------------------------------------------------------------------------- cases
def algorithms(selected: Sequence[str] | None) -> list[str]:
    """The registry names to run: one per (class, preset), preferring table names."""
    chosen: dict[tuple[Any, ...], str] = {}
    for name in optim.names():
        cls, preset = optim._registry._REGISTRY[name]
        ident = (cls, tuple(sorted((k, repr(v)) for k, v in preset.items())))
        best = chosen.get(ident)
        rank = (name not in BYTES_PER_PARAM, name not in EXTERNAL_EQUIVALENT, len(name), name)
        if best is None or rank < (
            best not in BYTES_PER_PARAM,
            best not in EXTERNAL_EQUIVALENT,
            len(best),
            best,
        ):
            chosen[ident] = name
    names = sorted(chosen.values())
    if selected:
        unknown = [s for s in selected if s not in optim.names()]
        if unknown:
            raise SystemExit(f"unknown optimizer(s) {unknown}; known: {', '.join(optim.names())}")
        names = list(selected)
    return names


def cases_for(algo: str, *, compiled: bool) -> list[Case]:
    cls, _ = optim._registry._REGISTRY[algo]
    kw = BERGAB_KWARGS.get(algo, {})
    out = []
    for impl in cls.impls:
        if impl == "compiled" and not compiled:
            continue
        out.append(
            Case(
                algo, "bergab", impl, lambda ps, impl=impl: optim.create(algo, ps, impl=impl, **kw)
            )
        )
    if algo in TORCH_EQUIVALENT:
        name, tkw = TORCH_EQUIVALENT[algo]
        tcls = getattr(torch.optim, name)
        for variant, flags in TORCH_VARIANTS.items():
            out.append(
                Case(algo, "torch", variant, lambda ps, flags=flags: tcls(ps, **tkw, **flags))
            )
    if algo in EXTERNAL_EQUIVALENT:
        module, clsname, ekw = EXTERNAL_EQUIVALENT[algo]
        try:
            ecls = getattr(importlib.import_module(module), clsname)
        except ImportError:
            pass
        else:
            out.append(Case(algo, module, "package", lambda ps: ecls(ps, **ekw)))
    return out


def auto_impl(algo: str, params: list[torch.nn.Parameter]) -> str:
    opt = optim.create(algo, params, **BERGAB_KWARGS.get(algo, {}))
    if not isinstance(opt, optim.Optimizer):
        return "?"
    return opt._select_impl(params)


def make_params(
    numel: int, tensors: int, device: str
) -> tuple[list[torch.nn.Parameter], torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(numel, generator=gen).to(device)
    params = [torch.nn.Parameter(x.clone()) for x in init.chunk(tensors)]
    for p in params:
        p.grad = 1e-2 * torch.randn(p.shape, generator=gen).to(device)
    return params, init


def reset(params: list[torch.nn.Parameter], init: torch.Tensor) -> None:
    with torch.no_grad():
        for p, x in zip(params, init.chunk(len(params)), strict=True):
            p.copy_(x)


def start(opt: torch.optim.Optimizer) -> None:
    if callable(getattr(opt, "train", None)):  # schedule-free optimizers step in train mode
        opt.train()


def state_bytes_per_param(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> int:
    """``(3 + 2k) × itemsize`` with k parameter-sized state tensors (the default rule)."""
    k = sum(
        1
        for v in opt.state[params[0]].values()
        if isinstance(v, torch.Tensor) and v.numel() == params[0].numel()
    )
    return (3 + 2 * k) * params[0].element_size()


# ---------------------------------------------------------------------------- measuring
def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def time_interleaved(
    cases: list[Case],
    params: list[torch.nn.Parameter],
    init: torch.Tensor,
    repeats: int,
    device: str,
) -> list[dict[str, Any]]:
    """Time every case of one algorithm side by side, in rounds.

    The optimizers are stepped in turn, one step each per round, so a change in the
    machine's load hits every implementation alike; each case's time is the median over
    the rounds. Each case steps its own copy of the parameters and gradients (the same
    values), as in training, where nothing else touches them between steps: an
    implementation may carry a quantity from one step to the next (the fused LARS kernel
    keeps ‖w‖², the fused DoG kernel ‖x − x0‖) and recomputes it when another one has
    changed the parameters. The first step (state allocation, compilation) is timed
    separately and warm-up rounds precede the timed ones.
    """
    reset(params, init)
    torch._dynamo.reset()  # compiled cases compile from scratch
    live: list[tuple[dict[str, Any], torch.optim.Optimizer]] = []
    results = []
    copies: list[list[torch.nn.Parameter]] = []
    for case in cases:
        res: dict[str, Any] = {"key": case.key, "algo": case.algo, "family": case.family}
        res["impl"] = case.impl
        results.append(res)
        own = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for q, p in zip(own, params, strict=True):
            assert p.grad is not None
            q.grad = p.grad.clone()
        copies.append(own)
        try:
            opt = case.build(own)
            start(opt)
            sync(device)
            t0 = time.perf_counter()
            opt.step()
            sync(device)
            res["first_step_s"] = time.perf_counter() - t0
            res["state_bytes_per_param"] = state_bytes_per_param(opt, own)
            live.append((res, opt))
        except Exception as exc:  # report it and go on with the other cases
            res["error"] = _error(exc)
    for round_ in range(3 + repeats):  # 3 warm-up rounds (compiled code may specialize)
        for res, opt in live:
            if "error" in res:
                continue
            try:
                sync(device)
                t0 = time.perf_counter()
                opt.step()
                sync(device)
                if round_ >= 3:
                    res.setdefault("times", []).append(time.perf_counter() - t0)
            except Exception as exc:
                res["error"] = _error(exc)
    for res, _ in live:
        if "error" not in res:
            res["seconds"] = statistics.median(res["times"])
    for res, own in zip(results, copies, strict=True):
        if not all(bool(torch.isfinite(p).all()) for p in own[:2]):
            res["note"] = "parameters became non-finite"
    del live, copies
    gc.collect()
    return results


def memory_worker(args: argparse.Namespace) -> int:
    """Subprocess entry: peak extra memory of one step for each requested case."""
    numel = args.worker_size
    wanted = set(args.worker_cases.split(","))
    for algo in sorted({k.split("/")[0] for k in wanted}):
        for case in cases_for(algo, compiled=True):
            if case.key not in wanted:
                continue
            params, _ = make_params(numel, args.tensors, "cpu")
            out: dict[str, Any] = {"key": case.key}
            try:
                opt = case.build(params)
                start(opt)
                for _ in range(3):
                    opt.step()
                gc.collect()
                out["bytes"] = rss_peak_during(opt.step)
                del opt
            except Exception as exc:
                out["error"] = _error(exc)
            del params
            gc.collect()
            print(json.dumps(out), flush=True)
    return 0


def measure_memory_cpu(numel: int, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-worker",
        "--worker-size",
        str(numel),
        "--worker-cases",
        ",".join(keys),
        "--tensors",
        str(args.tensors),
    ]
    env = {**os.environ, **MALLOC_ENV}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    out: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            out[item["key"]] = item.get("bytes", item.get("error"))
    if proc.returncode != 0:
        print(f"memory worker failed: {proc.stderr[-400:]}", file=sys.stderr)
    return out


def measure_memory_cuda(
    case: Case, params: list[torch.nn.Parameter], init: torch.Tensor, device: str
) -> int | str:
    reset(params, init)
    try:
        opt = case.build(params)
        start(opt)
        for _ in range(3):
            opt.step()
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        opt.step()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del opt
        return int(peak)
    except Exception as exc:
        return f"{type(exc).__name__}"


# ---------------------------------------------------------------------------- report
def fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.2f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}"


def fmt_mb(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return "error"
    return f"{value / 2**20:.1f}"


def summarize(
    results: list[dict[str, Any]],
    algo: str,
    numel: int,
    bw: float,
    read_bw: float | None = None,
) -> dict[str, Any]:
    rows = [r for r in results if r["algo"] == algo and "seconds" in r]
    ours = {r["impl"]: r for r in rows if r["family"] == "bergab"}
    theirs = [r for r in rows if r["family"] not in ("bergab", "yardstick")]
    yardstick = next((r for r in rows if r["family"] == "yardstick"), None)
    nbytes = BYTES_PER_PARAM.get(algo)
    derived = nbytes is None
    if derived:
        nbytes = next((r["state_bytes_per_param"] for r in ours.values()), None)
    floor = None if nbytes is None else nbytes * numel / bw
    two_pass = TWO_PASS_BYTES.get(algo)
    # the bytes (and read bytes) the method's math forces: two-pass where it has them
    forced = nbytes if two_pass is None else two_pass
    forced_read = TWO_PASS_READ_BYTES.get(algo, READ_BYTES.get(algo))
    fastest = min(ours.values(), key=lambda r: r["seconds"], default=None)
    auto = ours.get(results_auto(results, algo))
    best_theirs = min(theirs, key=lambda r: r["seconds"], default=None)
    return {
        "algo": algo,
        "bytes": None if nbytes is None else f"{nbytes}{'*' if derived else ''}",
        "floor": floor,
        "two_pass_floor": None if two_pass is None else two_pass * numel / bw,
        # memory with reads alone slower than reads and writes together
        "read_aware_floor": None
        if not read_bw or forced is None or forced_read is None
        else max(forced * numel / bw, forced_read * numel / read_bw),
        # time per byte (and per byte read) of the fastest path over the yardstick's
        "per_byte_vs_yardstick": None
        if fastest is None or yardstick is None or forced is None
        else (fastest["seconds"] / forced) / (yardstick["seconds"] / YARDSTICK_BYTES),
        "per_read_byte_vs_yardstick": None
        if fastest is None or yardstick is None or forced_read is None
        else (fastest["seconds"] / forced_read) / (yardstick["seconds"] / YARDSTICK_READ_BYTES),
        "auto": auto,
        "fastest": fastest,
        "theirs": best_theirs,
    }


def results_auto(results: list[dict[str, Any]], algo: str) -> str:
    return next((r["auto"] for r in results if r.get("auto_of") == algo), "?")


def ratio(r: dict[str, Any] | None, floor: float | None) -> float | None:
    if r is None or floor is None:
        return None
    return r["seconds"] / floor


def report(
    numel: int,
    results: list[dict[str, Any]],
    memory: dict[str, Any],
    bw: float,
    algos: list[str],
    *,
    read_bw: float | None = None,
    tensors: int,
    markdown: bool,
) -> str:
    table = markdown_table if markdown else text_table
    lines = [f"### {numel / 2**20:g}M parameters in {tensors} tensors (float32)", ""]
    summary_rows = []
    for algo in algos:
        s = summarize(results, algo, numel, bw, read_bw)
        auto, fast, th = s["auto"], s["fastest"], s["theirs"]
        vs = None if auto is None or th is None else auto["seconds"] / th["seconds"]
        mem_auto = memory.get(auto["key"]) if auto else None
        mem_th = memory.get(th["key"]) if th else None
        summary_rows.append(
            [
                algo,
                s["bytes"] or "—",
                fmt_ms(s["floor"]),
                f"{auto['impl']}: {fmt_ms(auto['seconds'])} ({fmt_ratio(ratio(auto, s['floor']))}×)"
                if auto
                else "—",
                f"{fast['impl']}: {fmt_ms(fast['seconds'])} ({fmt_ratio(ratio(fast, s['floor']))}×)"
                if fast
                else "—",
                f"{th['family']} {th['impl']}: {fmt_ms(th['seconds'])} "
                f"({fmt_ratio(ratio(th, s['floor']))}×)"
                if th
                else "—",
                fmt_ratio(vs),
                f"{fmt_mb(mem_auto)} / {fmt_mb(mem_th)}" if th else fmt_mb(mem_auto),
                f"{fmt_ratio(ratio(fast, s['two_pass_floor']))}× ({TWO_PASS_BYTES[algo]} B)"
                if fast and s["two_pass_floor"]
                else "",
                fmt_ratio(ratio(fast, s["read_aware_floor"])),
                f"{fmt_ratio(s['per_byte_vs_yardstick'])} / "
                f"{fmt_ratio(s['per_read_byte_vs_yardstick'])}",
            ]
        )
    lines.append(
        table(
            [
                "algorithm",
                "B/param",
                "floor ms",
                "bergab auto: ms (× floor)",
                "bergab fastest",
                "other fastest",
                "auto ÷ other fastest",
                "extra MB: auto / other",
                "fastest × two-pass floor",
                "fastest × read-aware floor",
                "fastest ÷ fused AdamW, same rounds: per byte / per byte read",
            ],
            summary_rows,
        )
    )
    lines += ["", "All cases:", ""]
    rows = []
    for algo in algos:
        s = summarize(results, algo, numel, bw)
        for r in results:
            if r["algo"] != algo or "auto_of" in r:
                continue
            label = f"{r['family']} {r['impl']}"
            if r["family"] == "bergab" and r["impl"] == results_auto(results, algo):
                label += " (auto)"
            if "error" in r:
                missing = r["family"] == "torch" and "unexpected keyword" in r["error"]
                note = f"torch has no {r['impl']} {algo}" if missing else r["error"]
                rows.append([algo, label, "—", "—", "—", "—", note])
                continue
            rows.append(
                [
                    algo,
                    label,
                    fmt_ms(r["seconds"]),
                    fmt_ratio(
                        ratio(r, YARDSTICK_BYTES * numel / bw)
                        if r["family"] == "yardstick"  # its own floor
                        else ratio(r, s["floor"])
                    ),
                    f"{r['first_step_s']:.2f}",
                    fmt_mb(memory.get(r["key"])),
                    r.get("note", ""),
                ]
            )
    lines.append(
        table(
            ["algorithm", "implementation", "ms/step", "× floor", "first step s", "extra MB", ""],
            rows,
        )
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python benchmarks/optimizer_step.py --sizes 1M,16M --markdown",
    )
    p.add_argument("--sizes", default="1M,16M,64M", help="comma list, e.g. 1M,16M,64M")
    p.add_argument("--optimizers", default="", help="comma list of bergab names (default all)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per case (median)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--tensors", type=int, default=64, help="tensors the parameters split into")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-compiled", action="store_true", help="skip the compiled paths")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument(
        "--no-yardstick", action="store_true", help="no fused AdamW in each algorithm's rounds"
    )
    p.add_argument("--memory-compiled", action="store_true", help="measure compiled memory too")
    p.add_argument("--json", default="", help="also write every measurement to this file")
    p.add_argument("--from-json", default="", help="print the report of a saved --json run")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-cases", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.memory_worker:
        return memory_worker(args)
    device = args.device
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    algos = algorithms([s for s in args.optimizers.split(",") if s] or None)

    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            print(render(json.load(f), markdown=args.markdown))
        return 0
    info = machine_info(device)
    print(f"(started {format_machine_info(info)})", file=sys.stderr, flush=True)
    probes = [bandwidth_probe(device, args.tensors)]
    everything: dict[str, Any] = {
        "machine": info,
        "bandwidth": probes,
        "tensors": args.tensors,
        "algos": algos,
        "sizes": {},
    }
    for numel in sizes:
        params, init = make_params(numel, args.tensors, device)
        results: list[dict[str, Any]] = []
        memory: dict[str, Any] = {}
        for algo in algos:
            results.append({"algo": algo, "auto_of": algo, "auto": auto_impl(algo, params)})
            cases = cases_for(algo, compiled=not args.no_compiled)
            if not args.no_yardstick:
                cases.append(yardstick_case(algo))
            for r in time_interleaved(cases, params, init, args.repeats, device):
                results.append(r)
                status = r.get("error") or f"{fmt_ms(r.get('seconds'))} ms"
                print(f"  {numel / 2**20:g}M {r['key']}: {status}", file=sys.stderr, flush=True)
            if not args.no_memory and device.startswith("cuda"):
                for case in cases:
                    memory[case.key] = measure_memory_cuda(case, params, init, device)
        del params, init
        gc.collect()
        if not args.no_memory and not device.startswith("cuda"):
            keys = [
                r["key"]
                for r in results
                if "seconds" in r and (r["impl"] != "compiled" or args.memory_compiled)
            ]
            memory = measure_memory_cpu(numel, keys, args)
        everything["sizes"][str(numel)] = {"results": results, "memory": memory}
        # the machine's load changes: probe again after each size, keep the best
        probes.append(bandwidth_probe(device, args.tensors))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(everything, f, indent=1, default=str)
    print(render(everything, markdown=args.markdown), flush=True)
    return 0


def bandwidth_probe(device: str, tensors: int) -> dict[str, float]:
    """One probe of the peak (reads and writes) and of the read-only bandwidth."""
    return {
        **peak_bandwidth(device, numel=1 << 26, tensors=tensors),
        **read_bandwidth(device, numel=1 << 26),
    }


def render(everything: dict[str, Any], *, markdown: bool) -> str:
    """The report of a run (also from a saved ``--json`` file, via ``--from-json``)."""
    probes = everything["bandwidth"]
    best = {k: max(p.get(k, 0.0) for p in probes) for k in probes[0]}
    read_bw = best.get("read")  # None in runs saved before the read probe existed
    sizes = everything["sizes"]
    algos = everything.get("algos") or list(
        dict.fromkeys(r["algo"] for d in sizes.values() for r in d["results"])
    )
    out = [
        "# optimizer step benchmark",
        "",
        format_machine_info(everything["machine"]),
        "",
        "peak bandwidth (best of probes at the start and after each size): "
        + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in best.items()),
        "floor = bytes per parameter × N / best; × floor = time / floor; "
        "* = bytes derived from the optimizer's state; read-aware floor = "
        "max(bytes / best, read bytes / read), two-pass bytes where the method has them",
        "",
    ]
    for numel, data in sizes.items():
        warm = [
            r["first_step_s"]
            for r in data["results"]
            if r.get("impl") == "compiled" and "first_step_s" in r
        ]
        if warm:
            out.append(
                f"compiled warm-up at {int(numel) / 2**20:g}M (first step, compilation "
                f"included): {min(warm):.0f}–{max(warm):.0f} s, median "
                f"{sorted(warm)[len(warm) // 2]:.0f} s over {len(warm)} optimizers"
            )
            out.append("")
        out.append(
            report(
                int(numel),
                data["results"],
                data["memory"],
                best["best"],
                algos,
                read_bw=read_bw,
                tensors=everything.get("tensors", 64),
                markdown=markdown,
            )
        )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
