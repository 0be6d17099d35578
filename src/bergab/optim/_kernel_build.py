"""How bergab's CPU kernels are compiled: the one recipe the package build and the opt-in
developer rebuild share.

This module imports nothing but the standard library: ``setup.py`` loads it by path while
the package is being built (before torch or bergab are importable).

The package build (``pip install``, editable included) compiles every ``csrc/*.c`` file
into one shared library per (threading flavor, instruction-set level) pair, written next
to this file:

- **levels**: on x86-64, ``x86-64-v4`` (AVX-512), ``x86-64-v3`` (AVX2 + FMA) and the
  baseline ``x86-64`` (SSE2, runs on every x86-64 CPU); :mod:`bergab.optim._native`
  loads the widest one the CPU supports. Other architectures get one ``generic`` build
  (``-O3`` with the compiler's default target).
- **flavors**: ``omp`` (``-fopenmp``: the kernels run on the OpenMP threads of the
  ``libgomp.so.1`` torch has loaded) and ``pthread`` (POSIX threads, for processes where
  torch's OpenMP runtime is absent or cannot be used, such as a child made by ``fork()``).

Results do not depend on the level: the flags keep every operation IEEE-rounded as
written (no ``-ffast-math``, ``-ffp-contract=off`` so no level fuses a multiply and an
add that another level rounds twice), and the reductions sum in a fixed order whatever
the vector width (see ``csrc/common.h``).

Example:
    >>> [v.level for v in variants("x86_64")]
    ['x86-64-v4', 'x86-64-v3', 'x86-64']
    >>> library_filename("omp", "x86-64-v3")
    '_kernels_omp_x86_64_v3.so'
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_FLAGS",
    "CSRC",
    "FLAVORS",
    "BuildError",
    "Variant",
    "build_library",
    "build_variant",
    "compiler_command",
    "flavor_flags",
    "library_filename",
    "sources",
    "sources_digest",
    "switched_off",
    "switched_on",
    "variants",
]

CSRC = Path(__file__).with_name("csrc")

#: Flags of every build. No ``-ffast-math``: NaN and infinity behave as in torch;
#: ``-ffp-contract=off``: a*b+c rounds twice on every level, so AVX2/AVX-512 builds give
#: the same bits as the baseline; ``-fopenmp-simd``: the ``omp simd`` loops vectorize
#: with or without the OpenMP runtime.
BASE_FLAGS: tuple[str, ...] = (
    "-O3",
    "-std=gnu11",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=off",
    "-fopenmp-simd",
    "-fPIC",
    "-pthread",
)

#: Threading flavors and their extra flags (compile and link).
FLAVORS: dict[str, tuple[str, ...]] = {"omp": ("-fopenmp",), "pthread": ()}

_V3_FEATURES = ("-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe")
_V4_FEATURES = ("-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl")
_V2_FEATURES = ("-msse4.2", "-mssse3", "-mpopcnt")

#: (level, its flags, the same level spelled feature by feature for compilers that do not
#: know the level names: GCC before 11, clang before 12)
_X86_LEVELS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "x86-64-v4",
        ("-march=x86-64-v4", "-mtune=generic"),
        ("-march=x86-64", *_V2_FEATURES, *_V3_FEATURES, *_V4_FEATURES, "-mtune=generic"),
    ),
    (
        "x86-64-v3",
        ("-march=x86-64-v3", "-mtune=generic"),
        ("-march=x86-64", *_V2_FEATURES, *_V3_FEATURES, "-mtune=generic"),
    ),
    ("x86-64", ("-march=x86-64", "-mtune=generic"), ()),
)


class BuildError(RuntimeError):
    """The compiler failed (or is missing); the message holds its first line of output."""


@dataclass(frozen=True)
class Variant:
    """One instruction-set level: its name, the flags that select it, and the same level
    feature by feature (``()``: none) for a compiler that rejects ``flags``."""

    level: str
    flags: tuple[str, ...]
    fallback: tuple[str, ...] = ()


def variants(machine: str | None = None) -> list[Variant]:
    """The levels built for ``machine`` (default: this one), widest first; the last one
    is the baseline every CPU of the architecture runs."""
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        return [Variant(*level) for level in _X86_LEVELS]
    return [Variant("generic", ())]


def library_filename(flavor: str, level: str) -> str:
    """The file name of one built library (the same on every Python version)."""
    return f"_kernels_{flavor}_{level.replace('-', '_')}.so"


def sources() -> list[Path]:
    """The C files of the kernels, in a stable order."""
    return sorted(CSRC.glob("*.c"))


def sources_digest() -> str:
    """A hash of every C source and header and of the flags: what a build is checked
    against (a library built from other sources or flags is stale)."""
    key = hashlib.sha256()
    for path in sorted([*CSRC.glob("*.c"), *CSRC.glob("*.h")]):
        key.update(path.name.encode())
        key.update(path.read_bytes())
    key.update(repr((BASE_FLAGS, FLAVORS, _X86_LEVELS)).encode())
    return key.hexdigest()


def switched_off(variable: str) -> bool:
    """Whether the environment sets ``variable`` to 0/false/no/off (unset: on)."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")


def switched_on(variable: str) -> bool:
    """Whether the environment sets ``variable`` to 1/true/yes/on (unset: off)."""
    return os.environ.get(variable, "0").strip().lower() in ("1", "true", "yes", "on")


def compiler_command() -> list[str]:
    """The C compiler: ``$CC`` where set (and nothing else), else the first found of the
    one Python was built with, ``cc``, ``gcc`` and ``clang`` (a Python from conda or a
    standalone build often names a compiler that is not installed)."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    candidates = [sysconfig.get_config_var("CC") or "", "cc", "gcc", "clang"]
    for cc in candidates:
        cmd = shlex.split(cc)
        if cmd and shutil.which(cmd[0]):
            return cmd
    return ["cc"]


@functools.cache
def _is_clang(compiler: tuple[str, ...]) -> bool:
    try:
        done = subprocess.run(
            [*compiler, "--version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "clang" in done.stdout.lower()


def flavor_flags(flavor: str, compiler: Sequence[str] | None = None) -> tuple[str, ...]:
    """The flags of a threading flavor for ``compiler``: clang's ``-fopenmp`` would link
    LLVM's OpenMP runtime, a second thread pool beside the GNU one torch runs on, so the
    ``omp`` flavor asks clang for GNU's runtime by name."""
    flags = FLAVORS[flavor]
    if flags and _is_clang(tuple(compiler or compiler_command())):
        return tuple("-fopenmp=libgomp" if f == "-fopenmp" else f for f in flags)
    return flags


def _run(cmd: Sequence[str]) -> None:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    except OSError as e:  # no such compiler
        raise BuildError(f"{cmd[0]}: {e.strerror or e}") from e
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "")
        raise BuildError(f"{shlex.join(cmd[:1])} exited {done.returncode}: {first}".strip())


def build_library(
    target: Path,
    flags: Sequence[str],
    *,
    compiler: Sequence[str] | None = None,
    jobs: int | None = None,
) -> Path:
    """Compile every source with ``BASE_FLAGS + flags`` and link them into ``target``.

    The sources are compiled in parallel (``jobs`` processes, default the CPU count),
    each by its absolute path (the family files include themselves through
    ``__FILE__``). ``target`` is replaced atomically, so a process loading it never sees
    a partial file. Raises :class:`BuildError` with the compiler's first error line.
    """
    cc = list(compiler or compiler_command())
    all_flags = [*BASE_FLAGS, *flags]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bergab-build-") as tmp:
        objects = [Path(tmp) / f"{src.stem}.o" for src in sources()]
        cmds = [
            [*cc, *all_flags, "-I", str(CSRC), "-c", str(src.resolve()), "-o", str(obj)]
            for src, obj in zip(sources(), objects, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for result in [pool.submit(_run, cmd) for cmd in cmds]:
                result.result()
        fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            _run([*cc, *all_flags, "-shared", "-o", partial, *map(str, objects), "-lm"])
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def build_variant(
    target: Path, variant: Variant, flavor: str, *, compiler: Sequence[str] | None = None
) -> Path:
    """:func:`build_library` for one level and threading flavor; where the compiler does
    not know the level's name, the same level again, spelled feature by feature."""
    cc = list(compiler or compiler_command())
    extra = flavor_flags(flavor, cc)
    try:
        return build_library(target, (*variant.flags, *extra), compiler=cc)
    except BuildError:
        if not variant.fallback:
            raise
        return build_library(target, (*variant.fallback, *extra), compiler=cc)
