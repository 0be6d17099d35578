"""bergab's own CPU kernels: one C file per optimizer family, built on first use.

torch has fused CPU kernels for SGD, Adagrad, Adam and AdamW only. For the other
algorithms an eager step is several passes over memory (one per op), and the norm-first
methods (LARS, LAMB, DoG, Prodigy, hypergradient descent) need their statistic before any
element can move. The files in ``csrc/`` do each update in one loop per tensor (plus, for
the norm-first methods, one reduction pass whose data the update then finds in cache).

They are compiled with the system C compiler (``$CC``, else ``cc``) the first time a
family is used in a process, ``-O3 -march=native``, and the shared library is cached
under ``$BERGAB_CACHE_DIR`` (default ``~/.cache/bergab``), keyed by the source, the
flags and the CPU, so a later process loads it in milliseconds. A build takes about a
second. Without a compiler, or with ``BERGAB_NATIVE=0`` in the environment, the kernels
are unavailable: ``impl="auto"`` then uses the foreach path and ``impl="fused"`` raises
with the reason. Kernels exist for float32 and float64 contiguous CPU tensors; they use
as many threads as torch does (``torch.get_num_threads()``) when the work is large enough:
torch's own OpenMP threads where torch has GNU OpenMP's ``libgomp.so.1`` loaded (the
library is then built with ``-fopenmp`` and binds to that copy), else POSIX threads (also
in a child made by ``fork()``, where GNU OpenMP's thread pool cannot be used).
"""

from __future__ import annotations

import array
import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "FLAGS",
    "OPENMP_FLAGS",
    "KeptValues",
    "NativeUnavailableError",
    "call",
    "check_available",
    "doubles",
    "library",
    "supports",
    "threads_for",
    "unavailable_reason",
    "zeros",
]

_CSRC = Path(__file__).with_name("csrc")

#: Compiler flags. No ``-ffast-math``: NaN and infinity behave as in torch; only the
#: reductions are reassociated (``omp simd reduction``), as torch's own are.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
    "-fPIC",
    "-shared",
    "-pthread",
)

#: Added where torch runs on GNU OpenMP and its ``libgomp.so.1`` is loaded: the kernels
#: then bind to that same runtime and share torch's threads (see ``csrc/common.h``).
OPENMP_FLAGS = ("-fopenmp",)

#: Below this many elements per thread a kernel runs on fewer threads.
MIN_NUMEL_PER_THREAD = 1 << 16

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class NativeUnavailableError(RuntimeError):
    """``impl="fused"`` was asked for but bergab's CPU kernels cannot be used here."""


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


def _build(family: str, flags: Sequence[str]) -> Path:
    """The shared library of ``csrc/<family>.c``, compiled if not cached (atomic write)."""
    source = _CSRC / f"{family}.c"
    compiler = os.environ.get("CC", "cc")
    key = hashlib.sha256()
    for part in (source.read_bytes(), (_CSRC / "common.h").read_bytes()):
        key.update(part)
    key.update(" ".join((compiler, *flags, _cpu_id())).encode())
    target = _cache_dir() / f"{family}-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out_dir = target.parent
    except OSError:  # an unwritable home: build in the temporary directory instead
        out_dir = Path(tempfile.gettempdir()) / "bergab-native"
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / target.name
        if target.exists():
            return target
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        cmd = [compiler, *flags, "-o", tmp, str(source), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise OSError(f"{' '.join(cmd)} failed: {detail[0] if detail else done.returncode}")
        os.replace(tmp, target)  # another process may have raced us: same bytes either way
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


#: Set in a child made by fork(): GNU OpenMP's thread pool does not survive a fork (a
#: parallel region in the child waits forever for the parent's threads; torch's own ops
#: hang there too, which is why DataLoader workers run on one thread), so a forked child
#: loads the kernels again in their POSIX-threads flavor.
_FORKED: dict[str, bool] = {"child": False}


def _after_fork_in_child() -> None:
    _FORKED["child"] = True
    _load.cache_clear()


def _switched_off(variable: str) -> bool:
    """Whether the environment sets ``variable`` to 0/false/no/off."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")


def _flavors() -> list[tuple[str, ...]]:
    """Flag sets to try in turn: with OpenMP first where torch's libgomp is loaded (not
    in a forked child)."""
    plain = tuple(FLAGS)
    openmp = not _switched_off("BERGAB_NATIVE_OPENMP")
    if openmp and not _FORKED["child"] and _torch_libgomp():
        return [plain + OPENMP_FLAGS, plain]
    return [plain]


@functools.cache
def _load(family: str) -> ctypes.CDLL | str:
    """The loaded library, or the reason it is unavailable."""
    if _switched_off("BERGAB_NATIVE"):
        return "disabled by BERGAB_NATIVE=0"
    error: Exception | None = None
    for flags in _flavors():  # a compiler without OpenMP: build the pthread flavor
        try:
            return ctypes.CDLL(str(_build(family, flags)))
        except (OSError, subprocess.SubprocessError) as e:
            error = error or e
    return f"could not build bergab's CPU kernels ({error})"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def library(family: str) -> ctypes.CDLL | None:
    """The compiled kernels of ``csrc/<family>.c``, or ``None`` where they cannot be built.

    Example:
        >>> lib = library("layerwise")
        >>> lib is None or hasattr(lib, "lars_f32")
        True
    """
    lib = _load(family)
    return lib if isinstance(lib, ctypes.CDLL) else None


def unavailable_reason(family: str) -> str | None:
    """Why :func:`library` returns ``None`` for ``family`` (``None`` when it does not).

    Example:
        >>> unavailable_reason("layerwise") is None or isinstance(
        ...     unavailable_reason("layerwise"), str)
        True
    """
    lib = _load(family)
    return None if isinstance(lib, ctypes.CDLL) else lib


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
    """A C array of doubles (hyperparameters, per-tensor inputs or outputs).

    Example:
        >>> list(doubles([1.0, 2.5]))
        [1.0, 2.5]
    """
    # through array.array: ctypes' own constructor takes the values as arguments, one
    # Python call per element (50 us for 256 values; this path: a few)
    buf = array.array("d", values)
    return (ctypes.c_double * len(buf)).from_buffer(buf)


def zeros(n: int) -> ctypes.Array[ctypes.c_double]:
    """A C array of ``n`` zero doubles (a kernel's outputs).

    Example:
        >>> list(zeros(2))
        [0.0, 0.0]
    """
    return (ctypes.c_double * n)()


def call(
    lib: ctypes.CDLL,
    kernel: str,
    lists: Sequence[Sequence[torch.Tensor]],
    *args: object,
    nthreads: int | None = None,
) -> None:
    """Run ``kernel`` (its dtype suffix added) on the parallel ``lists``.

    Passes ``n, numel[], ptrs[]`` (``ptrs[k * n + i]`` = list k, tensor i), then ``args``
    (ctypes values or arrays), then the thread count.

    Example:
        >>> lib = library("layerwise")
        >>> if lib is not None:
        ...     w, g, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0]), torch.zeros(2)
        ...     out = doubles([0.0, 0.0])  # LARS: (trust ratio, new ||w||^2) per tensor
        ...     call(lib, "lars", [[w], [g], [b]], doubles([1.0, 0.9, 0.0, 0.1, 0.0, 0.0]),
        ...          doubles([1.0, -1.0]), out)
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
    fn = getattr(lib, f"{kernel}_{_SUFFIX[first[0].dtype]}")
    fn.restype = None
    threads = threads_for(sum(numels)) if nthreads is None else nthreads
    fn(ctypes.c_int64(n), numel_arr, ptrs, *args, ctypes.c_int(threads))
