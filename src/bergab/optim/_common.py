"""Helpers shared by the optimizer families: one place, imported by each of them.

- scalars that are Python floats when eager and 0-d tensors under ``torch.compile``
  (:func:`scalar_value`, :func:`hoist`, :func:`add_scaled_`, :func:`add_ratio_`,
  :func:`lr_tensor`), so one reference function serves both paths;
- square roots computed in float32 for 16-bit tensors (:func:`root`, :func:`foreach_root`);
- per-parameter step counters (:func:`new_step`, :func:`group_by_step`, :func:`f32`) and
  grouping by device and dtype (:func:`group_by_device_dtype`);
- the calls of a step on bergab's CPU kernels (:func:`native_runs`,
  :func:`counts_natively`) and whether torch has a fused kernel (:func:`fused_available`).

The foreach batching (cache-sized pieces, kept scratch buffers) is in
:mod:`bergab.optim._foreach`.
"""

from __future__ import annotations

import ctypes
import functools
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from bergab.optim import _native
from bergab.optim._foreach import LOW_PRECISION

__all__ = [
    "LOW_PRECISION",
    "Scalar",
    "TensorList",
    "add_ratio_",
    "add_scaled_",
    "counts_natively",
    "f32",
    "foreach_root",
    "fused_available",
    "group_by_device_dtype",
    "group_by_step",
    "hoist",
    "lr_tensor",
    "native_runs",
    "new_step",
    "root",
    "scalar_value",
]

Scalar = float | torch.Tensor
TensorList = list[torch.Tensor] | tuple[torch.Tensor, ...]


def scalar_value(t: torch.Tensor) -> Scalar:
    """A 0-d state tensor as a number: a Python float when eager (exact bias corrections,
    as torch computes them), the tensor itself under ``torch.compile`` (so a changing step
    count never triggers a recompile)."""
    if torch.compiler.is_compiling():
        return t
    return t.item()


def hoist(*scalars: Scalar) -> tuple[Scalar, ...]:
    """Return ``scalars`` unchanged when eager; under ``torch.compile`` compute them once.

    Inductor inlines a 0-d expression such as ``1 - beta ** step`` into every elementwise
    loop that reads it, evaluating ``pow`` once per element (several times slower than
    the memory traffic on CPU). Stacking the scalars materializes them in a tiny buffer
    first, as torch's own compiled optimizers do (a stack of one is a view that inductor
    would inline again, so a lone scalar is stacked twice).
    """
    if torch.compiler.is_compiling():
        ts = [torch.as_tensor(s) for s in scalars]
        return tuple(torch.stack(ts if len(ts) > 1 else ts * 2).unbind()[: len(ts)])
    return scalars


def add_scaled_(p: torch.Tensor, t: torch.Tensor, scale: Scalar) -> None:
    """``p += scale * t`` for a float scale (eager) or a 0-d tensor scale (compiled)."""
    if isinstance(scale, torch.Tensor):
        p.add_(t * hoist(scale)[0])
    else:
        p.add_(t, alpha=scale)


def add_ratio_(p: torch.Tensor, num: torch.Tensor, den: torch.Tensor, scale: Scalar) -> None:
    """``p += scale * num / den`` for a float scale (eager) or a 0-d tensor scale (compiled)."""
    if isinstance(scale, torch.Tensor):
        p.add_(num / den * hoist(scale)[0])
    else:
        p.addcdiv_(num, den, value=scale)


def root(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``sqrt(x)``, in float32 for 16-bit tensors so that an ε added to it does not vanish
    (1e-8 rounds to 0 in float16); torch's fused kernels compute in float32 likewise.
    ``inplace=True`` overwrites ``x`` (a temporary of ours) where the dtype allows."""
    if x.dtype in LOW_PRECISION:
        return x.float().sqrt_()
    return x.sqrt_() if inplace else x.sqrt()


def foreach_root(
    xs: TensorList, *, inplace: bool = False, out: list[torch.Tensor] | None = None
) -> TensorList:
    """:func:`root` of each tensor in ``xs``; nothing is allocated with ``inplace=True``
    (``xs`` is a temporary of ours) or ``out`` (kept :func:`scratch`)."""
    if out is not None:
        for o, x in zip(out, xs, strict=True):
            torch.sqrt(x, out=o)
        return out
    if xs and xs[0].dtype in LOW_PRECISION:
        up = [x.float() for x in xs]
        torch._foreach_sqrt_(up)
        return up
    if inplace:
        torch._foreach_sqrt_(xs)
        return xs
    return torch._foreach_sqrt(xs)


def new_step() -> torch.Tensor:
    """A fresh per-parameter step counter: a float32 0-d CPU tensor, as torch keeps it.

    Example:
        >>> new_step()
        tensor(0.)
    """
    return torch.zeros((), dtype=torch.float32)


def group_by_step(
    params: Sequence[torch.Tensor], *counters: Sequence[torch.Tensor]
) -> dict[tuple[Any, ...], list[int]]:
    """Indices of ``params`` grouped by device, dtype and the values of per-param counters.

    The foreach paths take one step size per group, so parameters whose step counts differ
    (one skipped a step because its gradient was None) go in different groups.

    Example:
        >>> ps = [torch.zeros(2), torch.zeros(3), torch.zeros(1)]
        >>> steps = [torch.tensor(2.0), torch.tensor(1.0), torch.tensor(2.0)]
        >>> sorted(group_by_step(ps, steps).values())
        [[0, 2], [1]]
    """
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        key = (p.device, p.dtype, *(float(c[i]) for c in counters))
        groups[key].append(i)
    return dict(groups)


def f32(xs: Iterable[float]) -> list[float]:
    """Each of ``xs`` rounded to float32 (as a float32 0-d tensor holds it), as floats."""
    return array("f", xs).tolist()


def counts_natively(*counters: Sequence[torch.Tensor]) -> bool:
    """Whether bergab's CPU kernels can store these per-parameter counters (float32 0-d
    CPU tensors, as :func:`new_step` makes them) instead of a torch op per tensor.

    Example:
        >>> counts_natively([new_step()]), counts_natively([torch.zeros((), dtype=torch.int64)])
        (True, False)
    """
    return all(
        isinstance(c, torch.Tensor) and c.dtype is torch.float32 and c.is_cpu and c.dim() == 0
        for cs in counters
        for c in cs
    )


def native_runs(
    family: str | None,
    params: list[torch.Tensor],
    *lists: list[torch.Tensor],
    checked: bool = False,
) -> list[tuple[ctypes.CDLL, list[int] | None, list[list[torch.Tensor]]]]:
    """The calls of one step on bergab's CPU kernels: per dtype, the library, the indices
    into ``params`` (``None``: all of them) and the parallel lists (empty ones left out).

    Raises :class:`~bergab.optim._native.NativeUnavailableError` (before any state has
    changed) where the kernels cannot run on these tensors. ``checked=True``: the caller
    has already checked every tensor (``impl="auto"`` chose the kernels), so they are not
    checked again.

    Example:
        >>> ps = [torch.zeros(2), torch.zeros(3, dtype=torch.float64)]
        >>> try:
        ...     print([idx for _, idx, _ in native_runs("adam", ps, ps, [])])
        ... except _native.NativeUnavailableError:  # no C compiler here
        ...     print([[0], [1]])
        [[0], [1]]
    """
    assert family is not None
    kept = [params, *(ts for ts in lists if ts)]
    if checked:  # one dtype, suitable tensors, and the library builds
        lib = _native.library(family)
        assert lib is not None
        return [(lib, None, kept)]
    dtype = params[0].dtype
    if all(p.dtype is dtype for p in params):
        return [(_native.check_available(family, kept), None, kept)]
    runs: list[tuple[ctypes.CDLL, list[int] | None, list[list[torch.Tensor]]]] = []
    for idx in group_by_device_dtype(params).values():
        sub = [[ts[i] for i in idx] for ts in kept]
        runs.append((_native.check_available(family, sub), idx, sub))
    return runs


def group_by_device_dtype(
    tensors: Sequence[torch.Tensor],
) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), for foreach and fused kernels.

    Example:
        >>> ts = [torch.zeros(2), torch.zeros(2, dtype=torch.float64), torch.ones(1)]
        >>> sorted(len(v) for v in group_by_device_dtype(ts).values())
        [1, 2]
    """
    if tensors and tensors[0].is_cpu:  # the common case, without a device object each
        dtype = tensors[0].dtype
        if all(t.is_cpu and t.dtype is dtype for t in tensors):
            return {(tensors[0].device, dtype): list(range(len(tensors)))}
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[(t.device, t.dtype)].append(i)
    return dict(groups)


def lr_tensor(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor holding ``value`` (float32 on the parameter's device) for compiled steps.

    Passing hyperparameters that change every step as tensors keeps ``torch.compile`` from
    recompiling when a schedule moves the learning rate.

    Example:
        >>> lr_tensor(0.5, torch.zeros(3)).item()
        0.5
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.tensor(value, dtype=dtype, device=like.device)


@functools.cache
def fused_available(name: str) -> bool:
    """Whether torch provides the private fused kernel ``torch._<name>``.

    Example:
        >>> isinstance(fused_available("_fused_sgd_"), bool)
        True
    """
    return hasattr(torch, name)
