"""Helpers shared by the benchmarks: machine info, median timing, the bandwidth probe,
peak-memory measurement and markdown tables.

Benchmarks are scripts, not tests: they print ratios measured side by side in one run,
and name the machine, the load on it and the date, because shared machines are noisy.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bergab._commands.info import cpu_model

__all__ = [
    "MALLOC_ENV",
    "format_machine_info",
    "machine_info",
    "markdown_table",
    "median_time",
    "parse_size",
    "peak_bandwidth",
    "read_bandwidth",
    "rss_bytes",
    "rss_peak_during",
    "sync",
    "text_table",
]

#: Environment for a subprocess that measures peak memory through the resident set size:
#: glibc then serves every allocation of 64 KiB or more with its own mmap and returns it
#: to the system on free, so freed temporaries leave the RSS at once and a later
#: temporary cannot hide in memory that an earlier one left cached.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


# ---------------------------------------------------------------------------- machine
def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: date, CPU, cores, threads, memory, load, GPU.

    Args:
        device: the device the benchmark runs on (its name is added for CUDA).

    Returns:
        A dict of strings and numbers.
    """
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "memory_gb": round((_memory_total() or 0) / 2**30, 1),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def format_machine_info(info: dict[str, Any]) -> str:
    """One line describing the machine, for a report header."""
    parts = [
        info["date"],
        f"{info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}",
        f"{info['memory_gb']} GB",
        f"torch {info['torch']}, Python {info['python']}",
    ]
    if "gpu" in info:
        parts.insert(1, f"GPU {info['gpu']}")
    if "load_avg_1m" in info:
        parts.append(f"load average {info['load_avg_1m']} at start")
    return " · ".join(parts)


# ---------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def median_time(
    fn: Callable[[], Any], *, repeats: int, device: str = "cpu", warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup``.

    Returns:
        (median, every time), each call timed on its own and synchronised with the device.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def parse_size(text: str) -> int:
    """``"16M"`` → 16·2²⁰, ``"512K"`` → 512·2¹⁰, ``"1000"`` → 1000."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    value = float(number) * scale
    if value < 1 or value != int(value):
        raise ValueError(f"size must be a positive whole number like 1M or 65536, got {text!r}")
    return int(value)


# ---------------------------------------------------------------------------- bandwidth
def _streaming_bandwidth(device: str, numel: int, repeats: int) -> dict[str, float]:
    a = torch.rand(numel, device=device)
    b = torch.rand(numel, device=device)
    c = torch.empty(numel, device=device)
    t_add, _ = median_time(lambda: torch.add(a, b, out=c), repeats=repeats, device=device)
    t_copy, _ = median_time(lambda: c.copy_(a), repeats=repeats, device=device)
    return {"add": 12 * numel / t_add, "copy": 8 * numel / t_copy}


def read_bandwidth(device: str = "cpu", numel: int = 1 << 26, repeats: int = 5) -> dict[str, float]:
    """Bandwidth in bytes/s of kernels that only read: ``a.sum()`` (4 bytes an element)
    and ``torch.dot(a, b)`` (8), over ``numel`` float32 elements.

    Memory often reads slower than it reads and writes together (on the development
    machine: about 32 GB/s for reads alone, 53 GB/s for torch's fused AdamW, whose writes
    run beside its reads), so a kernel that mostly reads has a second floor: its read bytes
    over this bandwidth.

    Returns:
        ``{"sum": ..., "dot": ..., "read": best of the two}`` in bytes per second.
    """
    a = torch.rand(numel, device=device)
    b = torch.rand(numel, device=device)
    t_sum, _ = median_time(a.sum, repeats=repeats, device=device)
    t_dot, _ = median_time(lambda: torch.dot(a, b), repeats=repeats, device=device)
    out = {"sum": 4 * numel / t_sum, "dot": 8 * numel / t_dot}
    out["read"] = max(out.values())
    return out


def peak_bandwidth(
    device: str = "cpu", numel: int = 1 << 26, repeats: int = 5, tensors: int = 64
) -> dict[str, float]:
    """Memory bandwidth in bytes/s from large streaming kernels, best of several.

    Three probes over ``numel`` float32 elements: ``torch.add(a, b, out=c)`` (12 bytes an
    element), ``c.copy_(a)`` (8 bytes) and torch's fused AdamW step on ``numel``
    parameters in ``tensors`` tensors (28 bytes a parameter: reads parameter, gradient and
    both moments, writes parameter and moments), when torch has it for the device.

    Returns:
        ``{"add": ..., "copy": ..., "fused_adamw": ..., "best": ...}`` in bytes per second.
    """
    out = _streaming_bandwidth(device, numel, repeats)
    try:
        params = [torch.nn.Parameter(x) for x in torch.rand(numel, device=device).chunk(tensors)]
        for p in params:
            p.grad = torch.rand_like(p)
        opt = torch.optim.AdamW(params, lr=1e-6, fused=True)
        t, _ = median_time(opt.step, repeats=repeats, device=device, warmup=2)
        out["fused_adamw"] = 28 * numel / t
        del opt, params
    except (RuntimeError, ValueError):  # no fused AdamW for this device
        pass
    out["best"] = max(out.values())
    return out


# ---------------------------------------------------------------------------- memory
def _proc_status(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    return _proc_status("VmRSS")


def rss_peak_during(fn: Callable[[], Any]) -> int:
    """Peak growth of the resident set size while ``fn()`` runs, in bytes (Linux).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) just before the call
    and reads it back after, so the result is the largest amount of memory the call held
    on top of what was resident before it. Run it in a process started with
    :data:`MALLOC_ENV` so freed temporaries really leave the resident set.
    """
    before = rss_bytes()
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")
    fn()
    return max(0, _proc_status("VmHWM") - before)


# ---------------------------------------------------------------------------- output
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain table with aligned columns, for the terminal."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
