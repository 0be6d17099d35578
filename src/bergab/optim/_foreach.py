"""Helpers shared by the foreach paths of every optimizer family, for the CPU above all.

On CPU each ``torch._foreach_*`` op is a loop over tensors, so an update of several ops
over a whole parameter list streams it through main memory once per op, and every fresh
megabyte-sized temporary costs page faults. :func:`pieces` / :func:`batches` cut the lists
into cache-sized batches (planned once per layout); :func:`kept_buffers` / :func:`scratch`
give each batch temporaries that the optimizer keeps between steps;
:func:`foreach_direction` forms the update direction ±g + λθ without touching the
gradients. Off CPU the lists stay whole (one launch per op) and nothing is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "CPU_BATCH_NUMEL",
    "batches",
    "foreach_direction",
    "kept_buffers",
    "pieces",
    "scratch",
]

TensorList = list[torch.Tensor] | tuple[torch.Tensor, ...]

#: On CPU the foreach paths run over batches of about this many elements, so that the
#: several passes of one update find their operands in cache instead of main memory.
CPU_BATCH_NUMEL = 1 << 18

#: 16-bit dtypes, whose temporaries are computed in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=256)
def _piece_plan(
    numels: tuple[int, ...], splittable: tuple[bool, ...], numel: int
) -> tuple[tuple[tuple[int, ...], tuple[tuple[int, int, int], ...], bool], ...]:
    """How :func:`pieces` cuts tensors of these sizes: per batch ``(owners, entries,
    whole)``, each entry ``(i, start, stop)`` (``start < 0``: tensor i whole), ``whole``
    when no entry is a slice. Cached: a model's layout is the same every step."""
    plan: list[tuple[tuple[int, ...], tuple[tuple[int, int, int], ...], bool]] = []
    run: list[tuple[int, int, int]] = []
    size = 0

    def close() -> None:
        owners = tuple(i for i, _, _ in run)
        plan.append((owners, tuple(run), all(a < 0 for _, a, _ in run)))

    for i, (n, split) in enumerate(zip(numels, splittable, strict=True)):
        cuts = [(a, min(a + numel, n)) for a in range(0, n, numel)] if split else [(-1, n)]
        for a, b in cuts:
            m = b - max(a, 0)
            if run and size + m > numel:
                close()
                run, size = [], 0
            run.append((i, a, b))
            size += m
    if run:
        close()
    return tuple(plan)


def pieces(
    lists: Sequence[Sequence[torch.Tensor]], numel: int | None = None
) -> Iterator[tuple[list[int], list[list[torch.Tensor]]]]:
    """Cache-sized batches of parallel tensor lists, for the foreach paths on CPU.

    ``lists`` are parallel lists (params, grads, state, ...) of one device and dtype. On
    CPU each foreach op is a loop over tensors, so running every op of an update over the
    whole list streams it through main memory once per op. Here each contiguous tensor
    larger than ``numel`` (default :data:`CPU_BATCH_NUMEL`) is cut into flat views of at
    most ``numel`` elements, and the pieces are batched at most ``numel`` elements at a
    time (a larger non-contiguous tensor is a batch of its own): the several passes of one
    update then find their operands in cache. Off CPU the whole lists are one batch (one
    launch per op). The cut is planned once per layout (:func:`_piece_plan`), so a step
    pays only for picking the tensors. Yields ``(owners, batch)``: ``owners[j]`` is the
    index in ``lists[0]`` of the tensor that piece j belongs to.

    Example:
        >>> a, b = [torch.zeros(5), torch.zeros(2)], [torch.ones(5), torch.ones(2)]
        >>> [(o, [len(t) for t in ts[0]]) for o, ts in pieces([a, b], numel=3)]
        [([0], [3]), ([0], [2]), ([1], [2])]
    """
    numel = CPU_BATCH_NUMEL if numel is None else numel
    first = lists[0]
    if not first:
        return
    if first[0].device.type != "cpu":
        yield list(range(len(first))), [list(ts) for ts in lists]
        return
    numels = tuple(t.numel() for t in first)
    splittable = tuple(
        n > numel and all(ts[i].is_contiguous() for ts in lists) for i, n in enumerate(numels)
    )
    for owners, entries, whole in _piece_plan(numels, splittable, numel):
        if whole:
            yield list(owners), [[ts[i] for i in owners] for ts in lists]
        else:
            yield (
                list(owners),
                [[ts[i] if a < 0 else ts[i].view(-1)[a:b] for i, a, b in entries] for ts in lists],
            )


def batches(
    lists: Sequence[Sequence[torch.Tensor]], indices: list[int]
) -> Iterator[list[list[torch.Tensor]]]:
    """The entries ``indices`` of the parallel ``lists`` (params, grads, states) in the
    cache-sized batches of :func:`pieces`.

    Example:
        >>> big, small = torch.zeros(CPU_BATCH_NUMEL + 5), torch.zeros(10)
        >>> [[t.numel() for t in ps] for (ps,) in batches([[big, small, small]], [0, 1, 2])]
        [[262144], [5, 10, 10]]
    """
    if indices:
        sub = [[seq[i] for i in indices] for seq in lists]
        for _, batch in pieces(sub):
            yield batch


def kept_buffers(
    owner: Any,
    like: Sequence[torch.Tensor],
    slot: int = 0,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Temporaries for a foreach batch: views shaped like ``like`` into one buffer that
    ``owner`` (the optimizer) keeps per (device, dtype, slot) and reuses every batch and step.

    A freshly allocated temporary of a megabyte or more costs page faults on every step on
    CPU (glibc hands such blocks back to the system when freed): a sizable share of a
    foreach step (see ``benchmarks/RESULTS.md``). With kept buffers a fast path allocates
    nothing in the steady state. Each view starts 64-byte aligned like a fresh allocation,
    so vectorized reductions sum in the same order as on a new tensor. ``dtype`` defaults
    to ``like``'s.

    Example:
        >>> class Owner: pass
        >>> [t.shape for t in kept_buffers(Owner(), [torch.zeros(2, 3), torch.zeros(4)])]
        [torch.Size([2, 3]), torch.Size([4])]
    """
    first = like[0]
    dtype = first.dtype if dtype is None else dtype
    cache: dict[Any, Any] = owner.__dict__.setdefault("_scratch_buffers", {})
    key = (first.device, dtype, slot)
    shapes = tuple(t.shape for t in like)
    views: list[torch.Tensor] | None = cache.get((*key, shapes))
    if views is not None:
        return views
    align = max(1, 64 // torch.empty((), dtype=dtype).element_size())
    sizes = [-(-t.numel() // align) * align for t in like]
    buf = cache.get(key)
    if buf is None or buf.numel() < sum(sizes):
        # on CPU at least one batch: later batches of other layouts then reuse it
        numel = max(sum(sizes), CPU_BATCH_NUMEL) if first.device.type == "cpu" else sum(sizes)
        buf = cache[key] = torch.empty(numel, dtype=dtype, device=first.device)
        for old in [k for k in cache if len(k) == 4 and k[:3] == key]:
            del cache[old]  # views into the previous buffer
    views, offset = [], 0
    for t, size in zip(like, sizes, strict=True):
        views.append(buf[offset : offset + t.numel()].view(t.shape))
        offset += size
    cache[(*key, shapes)] = views
    return views


def scratch(owner: Any, like: Sequence[torch.Tensor], slot: int = 0) -> list[torch.Tensor] | None:
    """:func:`kept_buffers` where they pay, for the Adam family's CPU foreach batches; else None.

    Off CPU (caching allocator), for 16-bit tensors (whose temporaries are float32, see
    :func:`_root`) and for batches of many small tensors (which malloc serves without page
    faults, and which ``out=`` loops would slow down) this returns None and the caller
    allocates as usual; accelerator memory then holds no extra buffer between steps.

    Example:
        >>> class Owner: pass
        >>> [t.shape for t in scratch(Owner(), [torch.zeros(2, 3), torch.zeros(4)])]
        [torch.Size([2, 3]), torch.Size([4])]
    """
    first = like[0]
    if first.device.type != "cpu" or first.dtype in LOW_PRECISION or len(like) > 16:
        return None  # (many small tensors: a per-tensor loop would cost more than it saves)
    return kept_buffers(owner, like, slot)


def foreach_direction(
    grads: list[torch.Tensor],
    params: list[torch.Tensor],
    *,
    maximize: bool,
    weight_decay: float,
    out: list[torch.Tensor] | None = None,
) -> TensorList:
    """The update direction ±g + λθ of a foreach batch (L2 decay, ascent when maximizing).

    ``grads`` itself when neither applies (gradients are never modified), else new tensors
    or the kept ``out`` (:func:`scratch`).

    Example:
        >>> g, p = [torch.tensor([1.0, 2.0])], [torch.tensor([4.0, 4.0])]
        >>> foreach_direction(g, p, maximize=True, weight_decay=0.5)[0].tolist()
        [1.0, 0.0]
    """
    if not maximize and weight_decay == 0:
        return grads
    if out is None:
        if not maximize:
            return torch._foreach_add(grads, params, alpha=weight_decay)
        d: TensorList = torch._foreach_neg(grads)
    elif not maximize:
        for o, g, p in zip(out, grads, params, strict=True):
            torch.add(g, p, alpha=weight_decay, out=o)
        return out
    else:
        for o, g in zip(out, grads, strict=True):
            torch.neg(g, out=o)
        d = out
    if weight_decay != 0:
        torch._foreach_add_(d, params, alpha=weight_decay)
    return d
