"""Which process this is: the one object every side effect of training goes through.

Under ``torchrun`` (or any initialized ``torch.distributed`` process group) several
processes train together. They all read (data, checkpoints to resume from), but only
the main process, rank 0, writes: checkpoints, log files, the progress bar, the run
directory's summary, model and plots. :class:`World` knows the rank and the number of
processes and is where that rule lives; ``fit`` and :mod:`bergab.run` call it instead
of writing files themselves. A single process is rank 0 of a world of one, and
behaves exactly as it did before ``World`` existed.

Example:
    >>> import pathlib, tempfile
    >>> w = World.current()
    >>> w.rank, w.size, w.is_main
    (0, 1, True)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> w.write_text(path, "only rank 0 writes this\\n"); path.read_text()
    'only rank 0 writes this\\n'
    >>> World(rank=1, size=2).write_text(path, "ignored"); path.read_text()
    'only rank 0 writes this\\n'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bergab.training.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["World", "synchronizes_gradients"]


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes (see the module docstring).

    Args:
        rank: this process's index, ``0 <= rank < size``.
        size: the number of processes training together.
    """

    rank: int = 0
    size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.size:
            raise ValueError(f"rank must be in [0, size), got rank={self.rank}, size={self.size}")

    @classmethod
    def current(cls) -> World:
        """The world of the initialized ``torch.distributed`` process group, else one process.

        Example:
            >>> World.current().size
            1
        """
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), size=dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, size)`` for a data source to take its share by, ``None`` for one process.

        Example:
            >>> World().shard, World(rank=1, size=4).shard
            (None, (1, 4))
        """
        return None if self.size == 1 else (self.rank, self.size)

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a world of one)."""
        if self.size > 1:
            torch.distributed.barrier()

    # ---------------------------------------------------------------- collectives
    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """The sums of ``values`` over every process, in float64 (one collective).

        Example:
            >>> World().all_reduce_sum([1.5, 2.0])
            [1.5, 2.0]
        """
        if self.size == 1:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64)
        return [float(v) for v in self.all_reduce_sum_tensor(t).tolist()]

    def all_reduce_sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over every process (on the collective's device; one collective).

        Example:
            >>> World().all_reduce_sum_tensor(torch.tensor([1.0, 2.0])).tolist()
            [1.0, 2.0]
        """
        if self.size == 1:
            return t
        dev = _collective_device()
        out = t.to(dev) if t.device != dev else t.clone()
        torch.distributed.all_reduce(out)
        return out

    def all_reduce_max(self, value: int) -> int:
        """The largest ``value`` of every process."""
        if self.size == 1:
            return int(value)
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value``, on every process."""
        if self.size == 1:
            return int(value)
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        torch.distributed.broadcast(t, src=0)
        return int(t.item())

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    # ---------------------------------------------------------------- side effects
    def save_checkpoint(
        self,
        state: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        path: Path,
        keep_last: int = 1,
    ) -> None:
        """Rank 0 writes the checkpoint atomically; every rank returns once it is on disk.

        ``state`` may be a function building the state, so ranks that do not write do not
        build it. ``keep_last`` replaced files are kept beside it (``last.prev.pt``, ...).
        """
        if self.is_main:
            save_checkpoint(state() if callable(state) else state, path, keep_last=keep_last)
        self.barrier()

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Every rank reads the checkpoint (after rank 0 finished writing it); when it is
        unreadable, the newest kept one that loads, with a warning."""
        return load_checkpoint(path, fallback=True)

    def write_text(self, path: Path, text: str) -> None:
        """Rank 0 writes ``text`` to ``path`` (replacing it whole: a reader never sees half)."""
        if self.is_main:
            _replace(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def save(self, obj: Any, path: Path) -> None:
        """Rank 0 saves ``obj`` with ``torch.save`` (replacing the file whole)."""
        if self.is_main:
            _replace(Path(path), lambda tmp: torch.save(obj, tmp))

    def mkdir(self, path: Path) -> None:
        """Rank 0 creates the folder (with its parents); every rank returns once it exists."""
        if self.is_main:
            Path(path).mkdir(parents=True, exist_ok=True)
        self.barrier()

    def say(self, tell: Callable[[str], None] | None, message: str) -> None:
        """Pass ``message`` to ``tell`` on rank 0 (one line on the console, not one a rank)."""
        if self.is_main and tell is not None:
            tell(message)


def _collective_device() -> torch.device:
    """Where the process group's collectives take tensors: CUDA under nccl, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def synchronizes_gradients(model: torch.nn.Module) -> bool:
    """Whether ``model`` averages gradients across processes (DDP, FSDP or FSDP2).

    Example:
        >>> synchronizes_gradients(torch.nn.Linear(1, 1))
        False
    """
    kinds: list[type] = [torch.nn.parallel.DistributedDataParallel]
    with contextlib.suppress(ImportError):
        from torch.distributed import fsdp

        kinds += [
            k
            for k in (getattr(fsdp, n, None) for n in ("FullyShardedDataParallel", "FSDPModule"))
            if isinstance(k, type)
        ]
    return isinstance(model, tuple(kinds))


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """Write a temporary file beside ``path`` with ``write``, then rename it over ``path``.

    The temporary file is opened like any new file (the umask sets its permissions), and
    its name carries the process id, so two processes never share one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
