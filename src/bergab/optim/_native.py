"""bergab's own CPU kernels: one C file per optimizer family, built with the package.

torch has fused CPU kernels for SGD, Adagrad, Adam and AdamW only. For the other
algorithms an eager step is several passes over memory (one per op), and the norm-first
methods (LARS, LAMB, DoG, Prodigy, hypergradient descent) need their statistic before any
element can move. The files in ``csrc/`` do each update in one loop per tensor (plus, for
the norm-first methods, one reduction pass whose data the update then finds in cache).

``pip install`` compiles them (``setup.py``, recipe in :mod:`bergab.optim._kernel_build`)
into libraries inside the package, one per instruction-set level (on x86-64: AVX-512,
AVX2 and the SSE2 baseline) and threading flavor. The first fused step of a process loads
the widest level this CPU runs; stepping never starts a compiler nor writes a file. Every
level gives the same results (see :mod:`bergab.optim._kernel_build`).

Where the package was built without them (no compiler), or with ``BERGAB_NATIVE=0`` in
the environment, the kernels are unavailable: ``impl="auto"`` then uses the foreach path
and ``impl="fused"`` raises with the reason; :func:`native_status` says which kernels are
in use and why. ``BERGAB_NATIVE_ISA=x86-64-v3`` (a level name) picks a narrower level.
``BERGAB_NATIVE_DEV=1`` is the developer's rebuild: the sources are compiled in the
process, ``-march=native``, into ``$BERGAB_CACHE_DIR`` (default ``~/.cache/bergab``),
keyed by their hash, so an edited kernel is used without reinstalling.

Kernels exist for float32 and float64 contiguous CPU tensors; they use as many threads as
torch does (``torch.get_num_threads()``) when the work is large enough: torch's own
OpenMP threads where torch has GNU OpenMP's ``libgomp.so.1`` loaded (the ``omp`` flavor
binds to that copy), else POSIX threads (also in a child made by ``fork()``, where GNU
OpenMP's thread pool cannot be used).
"""

from __future__ import annotations

import array
import ctypes
import functools
import hashlib
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bergab.optim import _abi, _kernel_build

__all__ = [
    "KeptValues",
    "NativeStatus",
    "NativeUnavailableError",
    "call",
    "check_available",
    "doubles",
    "library",
    "native_status",
    "reload",
    "supports",
    "threads_for",
    "unavailable_reason",
    "zeros",
]

_HERE = Path(__file__).parent

#: What ``setup.py`` wrote beside the libraries: which were built, why any was not.
_RECORD = _HERE / "_kernels_build.json"

#: The developer's rebuild: this CPU's own instruction set.
DEV_FLAGS = ("-march=native",)

#: Below this many elements per thread a kernel runs on fewer threads.
MIN_NUMEL_PER_THREAD = 1 << 16

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class NativeUnavailableError(RuntimeError):
    """``impl="fused"`` was asked for but bergab's CPU kernels cannot be used here."""


@dataclass(frozen=True)
class NativeStatus:
    """Which of bergab's CPU kernels a process uses, and why (see :func:`native_status`).

    ``level``: the instruction-set level of the loaded library (``"x86-64-v4"``,
    ``"x86-64-v3"``, ``"x86-64"``, ``"generic"``, or ``"native"`` for the developer's
    rebuild); ``flavor``: ``"omp"`` or ``"pthread"``; ``built``: the levels the package
    holds; ``cpu``: those this CPU runs; ``reason``: why the kernels are unavailable, or
    why a narrower level than the widest was chosen.
    """

    available: bool
    level: str | None
    flavor: str | None
    library: str | None
    built: tuple[str, ...]
    cpu: tuple[str, ...]
    threads: int
    reason: str | None

    def __str__(self) -> str:
        if not self.available:
            return f"unavailable ({self.reason}); fused optimizers use foreach"
        text = f"{self.level} ({self.flavor}, {self.threads} threads)"
        return text + (f"; {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class _Loaded:
    lib: ctypes.CDLL | None
    status: NativeStatus


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
    return platform.machine() + "\n" + "\n".join(keep)


def _torch_libgomp() -> bool:
    """Whether the process has GNU OpenMP's ``libgomp.so.1`` loaded (torch's, on Linux),
    so a library built with ``-fopenmp`` resolves to it rather than to a second runtime."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any(line.rstrip().endswith("/libgomp.so.1") for line in f)
    except OSError:
        return False


def _cache_dir() -> Path:
    root = os.environ.get("BERGAB_CACHE_DIR")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bergab" / "native"


#: Set in a child made by fork(): GNU OpenMP's thread pool does not survive a fork (a
#: parallel region in the child waits forever for the parent's threads; torch's own ops
#: hang there too, which is why DataLoader workers run on one thread), so a forked child
#: loads the kernels again in their POSIX-threads flavor.
_FORKED: dict[str, bool] = {"child": False}


def _after_fork_in_child() -> None:
    _FORKED["child"] = True
    _load.cache_clear()


def _flavors() -> list[str]:
    """Threading flavors to try in turn: ``omp`` first where torch's libgomp is loaded
    (not in a forked child, not with ``BERGAB_NATIVE_OPENMP=0``)."""
    openmp = not _kernel_build.switched_off("BERGAB_NATIVE_OPENMP")
    if openmp and not _FORKED["child"] and _torch_libgomp():
        return ["omp", "pthread"]
    return ["pthread"]


def _unavailable(reason: str, built: tuple[str, ...] = (), cpu: tuple[str, ...] = ()) -> _Loaded:
    status = NativeStatus(False, None, None, None, built, cpu, torch.get_num_threads(), reason)
    return _Loaded(None, status)


def _cpu_levels(baseline: ctypes.CDLL) -> tuple[str, ...]:
    """The levels this CPU runs, asked of a library every CPU of the architecture runs."""
    supported = baseline.bergab_cpu_supports
    supported.argtypes = [ctypes.c_char_p]
    supported.restype = ctypes.c_int
    return tuple(v.level for v in _kernel_build.variants() if supported(v.level.encode()))


def _load_dev() -> _Loaded:
    """``BERGAB_NATIVE_DEV=1``: compile the sources for this CPU into the cache."""
    errors = []
    for flavor in _flavors():
        flags = (*DEV_FLAGS, *_kernel_build.flavor_flags(flavor))
        key = hashlib.sha256()
        key.update(_kernel_build.sources_digest().encode())
        key.update(" ".join((*_kernel_build.compiler_command(), *flags, _cpu_id())).encode())
        target = _cache_dir() / f"kernels-{flavor}-{key.hexdigest()[:16]}.so"
        try:
            if not target.exists():
                _kernel_build.build_library(target, flags)
            lib = ctypes.CDLL(str(target))
        except (OSError, _kernel_build.BuildError) as e:
            errors.append(f"{flavor}: {e}")
            continue
        status = NativeStatus(
            True, "native", flavor, str(target), ("native",), ("native",),
            torch.get_num_threads(), "developer build (BERGAB_NATIVE_DEV=1)",
        )  # fmt: skip
        return _Loaded(lib, status)
    return _unavailable(f"BERGAB_NATIVE_DEV=1 but the kernels did not build ({errors[0]})")


def _load_packaged() -> _Loaded:  # noqa: PLR0911 - each way to fail returns its reason
    """The widest level of the package's libraries that this CPU runs."""
    try:
        record = json.loads(_RECORD.read_text())
    except (OSError, ValueError):
        return _unavailable(
            f"the package holds no CPU kernels (no build record in {_HERE}): install it "
            "with pip, with a working C compiler"
        )
    failed = record.get("failed") or {}
    if record.get("digest") != _kernel_build.sources_digest():
        return _unavailable(
            "the package's kernels were built from other sources than csrc/ holds now "
            "(edited after install?): reinstall (pip install -e .), or set "
            "BERGAB_NATIVE_DEV=1 to compile them in the process"
        )
    if not record.get("built"):
        first = next(iter(failed.values()), "no compiler?")
        return _unavailable(f"the package was built without its CPU kernels ({first})")
    levels = [v.level for v in _kernel_build.variants()]
    forced = os.environ.get("BERGAB_NATIVE_ISA", "").strip() or None
    if forced is not None and forced not in levels:
        return _unavailable(f"BERGAB_NATIVE_ISA={forced} is not a level here ({levels})")
    reason = None
    for flavor in _flavors():
        files = {lv: _HERE / _kernel_build.library_filename(flavor, lv) for lv in levels}
        built = tuple(lv for lv in levels if files[lv].exists())
        if levels[-1] not in built:
            why = failed.get(f"{flavor}/{levels[-1]}", "not built")
            reason = reason or f"no {flavor} library of the baseline level ({why})"
            continue
        try:
            baseline = ctypes.CDLL(str(files[levels[-1]]))
            cpu = _cpu_levels(baseline)
        except (OSError, AttributeError) as e:
            reason = reason or f"{files[levels[-1]].name} does not load ({e})"
            continue
        usable = [lv for lv in built if lv in cpu]
        if not usable:  # e.g. a 32-bit build on a 64-bit machine: not one level it knows
            reason = reason or f"this CPU runs none of the levels built ({', '.join(built)})"
            continue
        note = None
        if forced is not None:
            if forced not in usable:
                where = "this CPU cannot run it" if forced not in cpu else "it was not built"
                return _unavailable(f"BERGAB_NATIVE_ISA={forced}, but {where}", built, cpu)
            usable = [forced]
            note = f"level forced by BERGAB_NATIVE_ISA={forced}"
        elif usable[0] != cpu[0]:
            why = failed.get(f"{flavor}/{cpu[0]}", "not built")
            note = f"{cpu[0]} not in the package ({why})"
        try:
            lib = baseline if usable[0] == levels[-1] else ctypes.CDLL(str(files[usable[0]]))
        except OSError as e:
            reason = reason or f"{files[usable[0]].name} does not load ({e})"
            continue
        status = NativeStatus(
            True, usable[0], flavor, str(files[usable[0]]), built, cpu,
            torch.get_num_threads(), note,
        )  # fmt: skip
        return _Loaded(lib, status)
    return _unavailable(reason or "no library loads")


@functools.cache
def _load() -> _Loaded:
    """The loaded library (one for every family) and how it was chosen."""
    if _kernel_build.switched_off("BERGAB_NATIVE"):
        return _unavailable("disabled by BERGAB_NATIVE=0")
    if _kernel_build.switched_on("BERGAB_NATIVE_DEV"):
        return _load_dev()
    return _load_packaged()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reload() -> NativeStatus:
    """Choose the library again, after a change of ``BERGAB_NATIVE*`` in ``os.environ``
    (optimizers made before keep the one they have). Returns the new status.

    Example:
        >>> reload().available in (True, False)
        True
    """
    _load.cache_clear()
    return native_status()


def native_status() -> NativeStatus:
    """Which of bergab's CPU kernels this process uses, and why (loads them if needed).

    Example:
        >>> status = native_status()
        >>> status.available == (status.level is not None)
        True
        >>> print(status)  # doctest: +SKIP
        x86-64-v4 (omp, 2 threads)
    """
    s = _load().status
    threads = torch.get_num_threads()
    if s.threads != threads:  # the count follows torch.set_num_threads
        s = NativeStatus(s.available, s.level, s.flavor, s.library, s.built, s.cpu, threads,
                         s.reason)  # fmt: skip
    return s


def library(family: str) -> ctypes.CDLL | None:
    """The library holding the kernels of ``csrc/<family>.c`` (every family lives in one
    library), or ``None`` where the kernels are unavailable.

    Example:
        >>> lib = library("layerwise")
        >>> lib is None or hasattr(lib, "lars_f32")
        True
    """
    del family  # one library holds every family
    return _load().lib


def unavailable_reason(family: str) -> str | None:
    """Why :func:`library` returns ``None`` for ``family`` (``None`` when it does not).

    Example:
        >>> unavailable_reason("layerwise") is None or isinstance(
        ...     unavailable_reason("layerwise"), str)
        True
    """
    del family
    loaded = _load()
    return None if loaded.lib is not None else loaded.status.reason


def supports(*lists: Sequence[torch.Tensor]) -> bool:
    """Whether the kernels can run on these parallel tensor lists: CPU, contiguous, all
    float32 or all float64, no autograd history needed (parameters are updated in place).

    Example:
        >>> supports([torch.zeros(3)], [torch.ones(3)])
        True
        >>> supports([torch.zeros(3, dtype=torch.float16)])
        False
    """
    first = lists[0]
    if not first:
        return False
    dtype = first[0].dtype
    if dtype not in _SUFFIX:
        return False
    # is_cpu / `is` are several times cheaper than device.type == "cpu" / ==; this runs
    # every step
    return all(t.is_cpu and t.dtype is dtype and t.is_contiguous() for ts in lists for t in ts)


def threads_for(numel: int) -> int:
    """Threads for a kernel over ``numel`` elements: torch's count, fewer for small work.

    Example:
        >>> threads_for(10)
        1
    """
    return max(1, min(torch.get_num_threads(), numel // MIN_NUMEL_PER_THREAD))


def check_available(family: str, lists: Sequence[Sequence[torch.Tensor]]) -> ctypes.CDLL:
    """The library for an explicit ``impl="fused"``, or :class:`NativeUnavailableError`.

    Example:
        >>> try:
        ...     check_available("layerwise", [[torch.zeros(2, dtype=torch.float16)]])
        ... except NativeUnavailableError as e:
        ...     print(str(e).split(":")[0])
        impl='fused' needs contiguous float32 or float64 CPU tensors
    """
    if not supports(*lists):
        tensors = [t for ts in lists for t in ts]
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors})
        if len(dtypes) > 1 and all(t.dtype in _SUFFIX for t in tensors):
            raise NativeUnavailableError(
                f"impl='fused' needs one dtype per param group for this optimizer (found "
                f"{' and '.join(dtypes)}): put each dtype in its own group, or use "
                "impl='foreach'"
            )
        raise NativeUnavailableError(
            "impl='fused' needs contiguous float32 or float64 CPU tensors: bergab's own "
            "kernels are CPU-only (use impl='foreach' or 'compiled' elsewhere)"
        )
    lib = library(family)
    if lib is None:
        raise NativeUnavailableError(
            f"impl='fused' is unavailable: {unavailable_reason(family)}; "
            "use impl='foreach' or 'compiled'"
        )
    return lib


class KeptValues:
    """Per-parameter floats a fused kernel carries from one step to the next (LARS: the
    new ‖w‖²; DoG: ‖x − x0‖²), trusted only while nothing else changed the parameter.

    A value is stamped with the parameter's ``_version`` and the storage addresses of the
    parameter and of the other tensors it depends on; an in-place change (which bumps
    ``_version``, bergab's kernels do not) or new storage makes it unknown again. Writes
    through ``p.data`` bypass the version counter and go unseen. Not part of the state
    dict: clear it when the state is loaded.

    Example:
        >>> kept, w = KeptValues(), torch.ones(3)
        >>> kept.keep([w], [3.0])
        >>> kept.known([w])
        [3.0]
        >>> _ = w.mul_(2)  # changed by someone else: recompute
        >>> kept.known([w])
        [-1.0]
    """

    def __init__(self) -> None:
        self._values: dict[int, tuple[tuple[int, ...], float]] = {}

    @staticmethod
    def _stamps(
        params: Sequence[torch.Tensor], others: tuple[Sequence[torch.Tensor], ...]
    ) -> list[tuple[int, ...]]:
        # runs every step for every parameter: the common shapes without generic zips
        if not others:
            return [(p._version, p.data_ptr()) for p in params]
        if len(others) == 1:
            return [
                (p._version, p.data_ptr(), o.data_ptr())
                for p, o in zip(params, others[0], strict=True)
            ]
        return [
            (p._version, p.data_ptr(), *(t.data_ptr() for t in deps))
            for p, *deps in zip(params, *others, strict=True)
        ]

    def stamps(
        self, params: Sequence[torch.Tensor], *others: Sequence[torch.Tensor]
    ) -> list[tuple[int, ...]]:
        """What each value is valid for, now. A step computes them once, before its
        kernel, and passes them to :meth:`known` and to :meth:`keep`: bergab's kernels
        change neither ``_version`` nor the storage, so the stamps still hold after the
        update (and reading them again then, with the caches just flushed, costs more)."""
        return self._stamps(params, others)

    def known(
        self,
        params: Sequence[torch.Tensor],
        *others: Sequence[torch.Tensor],
        stamps: Sequence[tuple[int, ...]] | None = None,
    ) -> list[float]:
        """The kept value of each parameter, or -1.0 where it must be recomputed.
        ``others``: parallel lists of the tensors each value also depends on."""
        values = self._values
        missing = ((), -1.0)
        out = []
        if stamps is None:
            stamps = self._stamps(params, others)
        for p, stamp in zip(params, stamps, strict=True):
            kept = values.get(id(p), missing)
            out.append(kept[1] if kept[0] == stamp else -1.0)
        return out

    def keep(
        self,
        params: Sequence[torch.Tensor],
        values: Sequence[float],
        *others: Sequence[torch.Tensor],
        stamps: Sequence[tuple[int, ...]] | None = None,
    ) -> None:
        """Keep ``values`` for ``params`` as they are now (after the kernel's update;
        ``stamps``: from :meth:`stamps` before a kernel that changed nothing else)."""
        if stamps is None:
            stamps = self._stamps(params, others)
        self._values.update(
            (id(p), (stamp, float(v))) for p, stamp, v in zip(params, stamps, values, strict=True)
        )

    def clear(self) -> None:
        """Forget every kept value (after ``load_state_dict``)."""
        self._values.clear()


def doubles(values: Sequence[float]) -> ctypes.Array[ctypes.c_double]:
    """A C array of doubles (a kernel's per-tensor inputs or outputs).

    Example:
        >>> list(doubles([1.0, 2.5]))
        [1.0, 2.5]
    """
    # through array.array: ctypes' own constructor takes the values as arguments, one
    # Python call per element (see benchmarks/RESULTS.md, "Kernel design notes")
    buf = array.array("d", values)
    return (ctypes.c_double * len(buf)).from_buffer(buf)


def zeros(n: int) -> ctypes.Array[ctypes.c_double]:
    """A C array of ``n`` zero doubles (a kernel's outputs).

    Example:
        >>> list(zeros(2))
        [0.0, 0.0]
    """
    return (ctypes.c_double * n)()


#: (library, kernel, dtype) -> (the entry point with its argtypes set, its argument count
#: between ptrs and nthreads). Set up on first use, so a step pays one dict lookup.
_ENTRY_POINTS: dict[tuple[ctypes.CDLL, str, torch.dtype], tuple[Any, int]] = {}


def _entry_point(lib: ctypes.CDLL, kernel: str, dtype: torch.dtype) -> tuple[Any, int]:
    """``kernel``'s function for ``dtype`` in ``lib``, typed from :data:`_abi.PROTOTYPES`."""
    try:
        proto = _abi.PROTOTYPES[kernel]
    except KeyError:
        raise ValueError(f"no prototype for kernel {kernel!r} in bergab.optim._abi") from None
    fn = lib[f"{kernel}_{_SUFFIX[dtype]}"]  # a new function object: its argtypes are ours
    fn.argtypes = _abi.argtypes(kernel)
    fn.restype = None
    entry = _ENTRY_POINTS[lib, kernel, dtype] = (fn, len(proto.args))
    return entry


def call(
    lib: ctypes.CDLL,
    kernel: str,
    lists: Sequence[Sequence[torch.Tensor]],
    *args: object,
    nthreads: int | None = None,
) -> None:
    """Run ``kernel`` (its dtype suffix added) on the parallel ``lists``.

    Passes ``n, numel[], ptrs[]`` (``ptrs[k * n + i]`` = list k, tensor i), then ``args``,
    then the thread count. ``args`` are the kernel's own arguments as
    :data:`bergab.optim._abi.PROTOTYPES` lists them: its hyperparameter struct (an
    instance of the ctypes mirror, passed by reference), per-tensor double arrays
    (:func:`doubles`, :func:`zeros`)... ctypes checks each against the prototype.

    Example:
        >>> from bergab.optim._abi import LarsHp
        >>> lib = library("layerwise")
        >>> if lib is not None:
        ...     w, g, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0]), torch.zeros(2)
        ...     out = zeros(2)  # LARS: (trust ratio, new ||w||^2) per tensor
        ...     hp = LarsHp(lr=1.0, momentum=0.9, trust_coefficient=0.1)
        ...     call(lib, "lars", [[w], [g], [b]], hp, doubles([1.0, -1.0]), out)
        ...     print(w.tolist(), out[0])
        ... else:
        ...     print([3.0, 3.5], 0.5)
        [3.0, 3.5] 0.5
    """
    first = lists[0]
    n = len(first)
    numels = [t.numel() for t in first]
    numel_arr = (ctypes.c_int64 * n).from_buffer(array.array("q", numels))
    addresses = array.array("Q", [t.data_ptr() for ts in lists for t in ts])
    ptrs = (ctypes.c_void_p * len(addresses)).from_buffer(addresses)
    dtype = first[0].dtype
    fn, nargs = _ENTRY_POINTS.get((lib, kernel, dtype)) or _entry_point(lib, kernel, dtype)
    if len(args) != nargs:  # ctypes would pass extra arguments on unchecked
        raise TypeError(f"kernel {kernel!r} takes {nargs} arguments after ptrs, got {len(args)}")
    threads = threads_for(sum(numels)) if nthreads is None else nthreads
    fn(n, numel_arr, ptrs, *args, threads)
