"""Where fit() gets its batches: tensors, Datasets and DataLoaders, with a resumable order.

Tensors and map-style Datasets are batched by bergab itself: the order of epoch ``e`` is
a permutation drawn from a generator seeded with ``(data_seed, e)``, so any position
``(epoch, batch)`` is reached directly on resume. A DataLoader (or any re-iterable of
batches) is passed through as it is; to resume inside an epoch, the random number
generators are put back as they were when the epoch's iterator was created, the epoch's
first batches are drawn again and discarded, and then the generators are set to their
state at the checkpoint.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from torch.utils.data import default_collate as _collate

from bergab.training.checkpoint import rng_state, set_rng_state

__all__ = [
    "DatasetSource",
    "LoaderSource",
    "Source",
    "TensorSource",
    "batch_len",
    "default_batch_fn",
    "endless_batches",
    "forward",
    "is_indexed",
    "loader_generators",
    "make_source",
    "to_device",
    "val_batch_list",
    "val_batches",
]

_INPUT_KEYS = ("inputs", "input", "x", "features")
_TARGET_KEYS = ("targets", "target", "y", "labels", "label")


def default_batch_fn(batch: Any) -> tuple[Any, Any]:
    """Split a batch into ``(inputs, targets)``.

    A pair gives itself; a longer tuple gives ``(all but the last, last)`` (the model is
    called with several inputs); a dict is read by its ``inputs``/``x``/... and
    ``targets``/``y``/``labels``/... keys.

    Example:
        >>> default_batch_fn((1, 2)), default_batch_fn((1, 2, 3))
        ((1, 2), ((1, 2), 3))
        >>> default_batch_fn({"x": 1, "y": 2})
        (1, 2)
    """
    if type(batch) is tuple and len(batch) == 2:  # the common case, checked first
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        xk = next((k for k in _INPUT_KEYS if k in batch), None)
        yk = next((k for k in _TARGET_KEYS if k in batch), None)
        if xk is None or yk is None:
            raise TypeError(
                f"cannot tell inputs from targets in a dict batch with keys {sorted(batch)}; "
                "pass batch_fn=lambda b: (inputs, targets)"
            )
        return batch[xk], batch[yk]
    if isinstance(batch, (list, tuple)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) > 2:
            return tuple(batch[:-1]), batch[-1]
    raise TypeError(
        f"a batch must be an (inputs, targets) pair, got {type(batch).__name__}; "
        "pass batch_fn=lambda b: (inputs, targets)"
    )


def forward(model: torch.nn.Module, inputs: Any) -> Any:
    """Call the model: ``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move the tensors inside ``obj`` (nested tuples, lists, dicts) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def batch_len(targets: Any) -> int:
    """The number of examples in a batch, read off its targets (1 for a scalar)."""
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0]) if targets.ndim > 0 else 1
    if isinstance(targets, (list, tuple)) and targets:
        return batch_len(targets[0])
    if isinstance(targets, Mapping) and targets:
        return batch_len(next(iter(targets.values())))
    return 1


def _from_numpy(
    array: np.ndarray, what: str, float_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A numpy array as a tensor of the same dtype (sharing its memory where torch can);
    a floating array becomes ``float_dtype`` when given (a copy if that differs)."""
    try:
        if array.flags.writeable and all(s >= 0 for s in array.strides):
            tensor = torch.from_numpy(array)
        else:
            tensor = torch.tensor(array)  # read-only or reversed: a copy, torch cannot share
        if float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(float_dtype)
        return tensor
    except TypeError as exc:
        raise TypeError(
            f"{what}: a numpy array of dtype {array.dtype} cannot become a tensor ({exc}); "
            "convert it to a numeric dtype first"
        ) from None


def float_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (``None`` if it has none):
    what floating numpy arrays given as data become.

    Example:
        >>> float_dtype(torch.nn.Linear(2, 1).double())
        torch.float64
    """
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _as_tensors(
    data: Any, what: str = "train_data", float_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, ...] | None:
    """``data`` as a tuple of tensors when it is tensors (or numpy arrays), else ``None``.

    Floating numpy arrays become tensors of ``float_dtype`` when given (the model's; numpy
    computes in float64, torch models in float32); tensors keep their dtype.
    """
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"{what} must hold inputs and targets: pass a tuple (x, y) of tensors or numpy "
            f"arrays, not a single {'tensor' if isinstance(data, torch.Tensor) else 'array'}"
        )
    if (
        isinstance(data, (tuple, list))
        and data
        and all(isinstance(t, (torch.Tensor, np.ndarray)) for t in data)
    ):
        if len(data) < 2:
            raise TypeError(f"{what}: a tuple of tensors must hold inputs and targets: (x, y)")
        tensors = tuple(
            t if isinstance(t, torch.Tensor) else _from_numpy(t, what, float_dtype) for t in data
        )
        if any(t.ndim == 0 for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(
                f"{what}: every tensor needs a first dimension indexing the examples; got "
                f"shapes {shapes}"
            )
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            lengths = ", ".join(str(len(t)) for t in tensors)
            raise ValueError(
                f"{what}: the tensors of the data must have the same length, got {lengths}"
            )
        return tensors
    return None


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return gen


class Source:
    """A source of training batches, epoch by epoch."""

    #: batches per epoch, or None when unknown (an IterableDataset)
    num_batches: int | None = None
    #: whether iterating consumes the global random number generators
    uses_global_rng = False

    def begin_epoch(self) -> dict[str, Any] | None:
        """Capture what resuming inside the epoch will need (before :meth:`batches`)."""
        return None

    def batches(
        self, epoch: int, start: int, epoch_state: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        """The epoch's batches from index ``start``."""
        raise NotImplementedError


def _check_shard(shard: Any) -> tuple[int, int] | None:
    if shard is None:
        return None
    rank, size = shard
    if not 0 <= rank < size:
        raise ValueError(f"shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
    return None if size == 1 else (int(rank), int(size))


class _IndexedSource(Source):
    """Examples ``0 .. n-1`` in a seeded order, cut into batches.

    With ``shard=(rank, size)`` every process draws the same order of the epoch (the same
    seed), pads it by wrapping around to a multiple of ``size`` (as torch's
    ``DistributedSampler`` does, so every process takes the same number of steps), and
    keeps every ``size``-th example starting at ``rank``: the shards are disjoint
    (but for the padding) and together cover the epoch.
    """

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int, shard: Any = None
    ) -> None:
        if n == 0:
            raise ValueError("train_data is empty")
        self.shard = _check_shard(shard)
        self.total = n
        if self.shard is not None:
            n = math.ceil(n / self.shard[1])  # this process's share
        self.n = n
        self.batch_size = min(batch_size, n)
        self.shuffle = shuffle and (self.batch_size < n or self.shard is not None)
        self.seed = seed
        self.num_batches = math.ceil(n / self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor | None:
        if self.shard is None:
            if not self.shuffle:
                return None
            return torch.randperm(self.n, generator=_epoch_generator(self.seed, epoch))
        rank, size = self.shard
        order = (
            torch.randperm(self.total, generator=_epoch_generator(self.seed, epoch))
            if self.shuffle
            else torch.arange(self.total)
        )
        padded = torch.cat([order, order[: self.n * size - self.total]])
        return padded[rank::size]

    def _take(self, idx: torch.Tensor | slice) -> Any:
        raise NotImplementedError

    def batches(
        self, epoch: int, start: int, epoch_state: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        order = self._order(epoch)
        bs = self.batch_size
        for i in range(start * bs, self.n, bs):
            yield self._take(slice(i, i + bs) if order is None else order[i : i + bs])


class TensorSource(_IndexedSource):
    """Tensors ``(x, y, ...)`` cut into batches (full batch: the tensors themselves)."""

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool,
        seed: int,
        shard: Any = None,
    ) -> None:
        self.tensors = tensors
        super().__init__(len(tensors[0]), batch_size, shuffle, seed, shard)

    def batches(
        self, epoch: int, start: int, epoch_state: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        tensors = self.tensors
        if self.batch_size >= self.n and self.shard is None:  # one batch: the tensors
            if start == 0:
                yield tensors
            return
        order = self._order(epoch)
        if order is not None and order.device != tensors[0].device:
            order = order.to(tensors[0].device)  # once an epoch, not once a batch
        bs = self.batch_size
        for i in range(start * bs, self.n, bs):
            idx = slice(i, i + bs) if order is None else order[i : i + bs]
            yield tuple([t[idx] for t in tensors])


class DatasetSource(_IndexedSource):
    """A map-style Dataset batched with ``default_collate``."""

    def __init__(
        self, dataset: Dataset[Any], batch_size: int, shuffle: bool, seed: int, shard: Any = None
    ) -> None:
        self.dataset = dataset
        super().__init__(len(dataset), batch_size, shuffle, seed, shard)  # type: ignore[arg-type]

    def _take(self, idx: torch.Tensor | slice) -> Any:
        indices = range(self.n)[idx] if isinstance(idx, slice) else idx.tolist()
        return _collate([self.dataset[i] for i in indices])


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The torch.Generators a DataLoader draws its order from (its own and its sampler's)."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(
            getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None
        ),
    ]
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


class LoaderSource(Source):
    """A DataLoader or any re-iterable of batches, passed through."""

    uses_global_rng = True

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        try:
            self.num_batches = len(loader)  # type: ignore[arg-type]
        except TypeError:
            self.num_batches = None

    def begin_epoch(self) -> dict[str, Any] | None:
        return {
            "rng": rng_state(),
            "generators": [g.get_state() for g in loader_generators(self.loader)],
        }

    def batches(
        self, epoch: int, start: int, epoch_state: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        if start and epoch_state is None:
            raise ValueError("cannot resume inside an epoch of a DataLoader without its state")
        if start and epoch_state is not None:
            set_rng_state(epoch_state["rng"])
            gens = loader_generators(self.loader)
            if len(gens) != len(epoch_state["generators"]):
                raise ValueError("the DataLoader's generators differ from the checkpoint's")
            for g, st in zip(gens, epoch_state["generators"], strict=True):
                g.set_state(st)
        set_epoch = getattr(getattr(self.loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):  # a DistributedSampler: each epoch its own order
            set_epoch(epoch)
        it = iter(self.loader)
        for i in range(start):
            try:
                next(it)
            except StopIteration:
                raise ValueError(
                    f"train_data has fewer batches ({i}) than the checkpoint's position in "
                    f"the epoch ({start}): is it the same data?"
                ) from None
        return it


def is_indexed(data: Any) -> bool:
    """Whether bergab batches ``data`` itself (tensors or a map-style Dataset)."""
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        return True
    try:
        return _as_tensors(data) is not None
    except (TypeError, ValueError):
        return True  # malformed tensors: make_source says why


def make_source(
    data: Any,
    batch_size: int | str | None,
    shuffle: bool,
    seed: int,
    shard: tuple[int, int] | None = None,
    float_dtype: torch.dtype | None = None,
) -> Source:
    """The source of ``data``: tensors, a Dataset, or a DataLoader/re-iterable.

    ``batch_size``: ``"full"`` (all examples in one batch), an int, or ``None`` (64, or all
    examples when fewer); per process when sharded. ``shard=(rank, size)``: this process's
    share of every epoch (see :class:`_IndexedSource`). A DataLoader is not cut by bergab:
    under several processes it must shard itself (a ``DistributedSampler``).
    ``float_dtype``: what floating numpy arrays become (tensors keep their dtype).
    """
    tensors = _as_tensors(data, float_dtype=float_dtype)
    if tensors is not None or (isinstance(data, Dataset) and not isinstance(data, IterableDataset)):
        n = len(tensors[0]) if tensors is not None else len(data)
        # "full": all examples (a shard's batch is clamped to the shard by the source)
        bs = max(n, 1) if batch_size == "full" else (64 if batch_size is None else int(batch_size))
        if tensors is not None:
            return TensorSource(tensors, bs, shuffle, seed, shard)
        return DatasetSource(data, bs, shuffle, seed, shard)
    if shard is not None and shard[1] > 1:
        sampler = getattr(data, "sampler", None)
        if not isinstance(sampler, torch.utils.data.DistributedSampler):
            raise ValueError(
                f"train_data is a {type(data).__name__} and this is one of {shard[1]} "
                "processes: give the DataLoader a torch.utils.data.DistributedSampler, or "
                "pass tensors or a Dataset and fit shards them"
            )
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None when train_data is a {type(data).__name__} (it makes "
            f"its own batches); got {batch_size!r}"
        )
    if isinstance(data, Iterator):
        raise TypeError(
            "train_data is a one-shot iterator; pass something that can be iterated once per "
            "epoch: a DataLoader, a Dataset, a tuple of tensors or a list of batches"
        )
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        return LoaderSource(data)
    raise TypeError(
        "train_data must be a DataLoader, a Dataset, a tuple (x, y) of tensors or numpy "
        "arrays, or a "
        f"re-iterable of batches, got {type(data).__name__}"
    )


def val_batches(
    data: Any,
    batch_size: int,
    what: str = "val_data",
    float_dtype: torch.dtype | None = None,
    shard: tuple[int, int] | None = None,
) -> Callable[[], Iterable[Any]]:
    """A function giving the validation batches in order (no shuffling).

    ``what`` names the data in errors (``val_data``, or ``data`` for ``evaluate``);
    ``float_dtype``: what floating numpy arrays become (tensors keep their dtype).
    ``shard=(rank, size)``: tensors and Datasets give this process every ``size``-th
    example from ``rank``, without padding, so the processes' sums over their shares are
    the sums over the whole set, each example once (a process may get one example less,
    or none). A DataLoader or iterable is given whole: every process evaluates all of it.
    """
    tensors = _as_tensors(data, what, float_dtype)
    if tensors is not None:
        n = len(tensors[0])
        if n == 0:
            raise ValueError(f"{what} is empty")
        if shard is not None and shard[1] > 1:
            tensors = tuple(t[shard[0] :: shard[1]] for t in tensors)
            n = len(tensors[0])
            if n == 0:
                return list

        def tensor_batches() -> Iterable[Any]:
            if batch_size >= n:
                return [tensors]
            return (tuple(t[i : i + batch_size] for t in tensors) for i in range(0, n, batch_size))

        return tensor_batches
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        if len(data) == 0:  # type: ignore[arg-type]
            raise ValueError(f"{what} is empty")
        if shard is not None and shard[1] > 1:
            data = torch.utils.data.Subset(data, range(shard[0], len(data), shard[1]))  # type: ignore[arg-type]
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return lambda: loader
    if isinstance(data, Iterator):
        raise TypeError(f"{what} is a one-shot iterator; pass a DataLoader, Dataset or tensors")
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        return lambda: data
    raise TypeError(
        f"{what} must be a DataLoader, a Dataset, a tuple (x, y) of tensors or numpy "
        "arrays, or a "
        f"re-iterable of batches, got {type(data).__name__}"
    )


def endless_batches(
    data: Any, batch_size: int | None, seed: int, shard: tuple[int, int] | None = None
) -> Iterator[Any]:
    """Training batches without end, epoch after epoch (what :func:`bergab.lr_find` draws).

    Tensors and Datasets are cut as :func:`make_source` cuts them for fit (shuffled with
    ``seed``; ``batch_size`` ``None``: 64, or all examples when fewer), a DataLoader or
    re-iterable is iterated again each epoch (``batch_size`` is ignored), and a one-shot
    iterator is replayed: what it gave is kept and cycled.

    Example:
        >>> it = endless_batches([(1, 2), (3, 4)], None, seed=0)
        >>> [next(it) for _ in range(3)]
        [(1, 2), (3, 4), (1, 2)]
    """
    if isinstance(data, Iterator):
        return _replay(data)
    source = make_source(data, batch_size if is_indexed(data) else None, True, seed, shard)
    return _epochs(source)


def _epochs(source: Source) -> Iterator[Any]:
    epoch = 0
    while True:
        empty = True
        for batch in source.batches(epoch, 0, None):
            empty = False
            yield batch
        if empty:
            raise ValueError("train_data yielded no batches")
        epoch += 1


def _replay(iterator: Iterator[Any]) -> Iterator[Any]:
    seen: list[Any] = []
    for batch in iterator:
        seen.append(batch)
        yield batch
    if not seen:
        raise ValueError("train_data yielded no batches")
    yield from itertools.cycle(seen)


def val_batch_list(data: Any, batch_size: int, shard: tuple[int, int] | None = None) -> list[Any]:
    """The validation batches of :func:`val_batches` as a list (a one-shot iterator too);
    ``shard``: this process's share (which may be empty when there are few examples)."""
    if isinstance(data, Iterator):
        batches = list(data)
    else:
        batches = list(val_batches(data, batch_size, shard=shard)())
    if not batches and (shard is None or shard[1] == 1 or not is_indexed(data)):
        raise ValueError("val_data yielded no batches")
    return batches
