"""The position of a run: one type, saved whole in every checkpoint and restored whole.

:class:`RunState` holds what the loop needs to continue exactly where it was (epoch,
step, position in the epoch, the running loss sums, counters of the NaN policies, the
chosen ``lr="auto"`` schedule, whether the run was stopped). A checkpoint's ``"fit"``
entry is ``RunState.to_dict()`` and a resume is ``RunState.from_dict(...)``: a new field
is saved and restored without further code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CHECKPOINT_FORMAT", "RunState"]

#: The ``format`` entry of the checkpoints fit writes.
CHECKPOINT_FORMAT = "bergab.fit/1"

#: Fields added since the format was first written: an older checkpoint lacks them, and
#: loading it gives them their defaults (the run had nothing to record in them).
_ADDED = frozenset(
    {
        "train_metric_sums",
        "train_metric_n",
        "world_size",
        "world_lr_factor",
        "world_ramp",
        "rank_batch",
    }
)


@dataclass
class RunState:
    """Where a :func:`~bergab.fit` run stands (see the module docstring).

    Example:
        >>> s = RunState(step=7, epoch=1)
        >>> RunState.from_dict(s.to_dict()) == s
        True
    """

    #: the current epoch, 0-based
    epoch: int = 0
    #: optimizer steps taken so far (skipped ones included)
    step: int = 0
    #: batches of the current epoch consumed so far
    batch_in_epoch: int = 0
    #: what the data source needs to resume inside the epoch
    epoch_state: Any = None
    #: the seed of the data order
    data_seed: int = 0
    #: the sum and count of the training losses since the last record
    loss_sum: float = 0.0
    loss_n: int = 0
    #: the sums (weighted by examples) and example count of the training metrics since
    #: the last record (``train_metrics``)
    train_metric_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    train_metric_n: int = 0
    #: the previous step's loss (``tol``)
    prev_loss: float | None = None
    #: the step of the last evaluation record and of the last validation
    last_record_step: int = 0
    last_val_step: int = -1
    #: NaN rollbacks so far, skipped steps in a row now
    rollbacks: int = 0
    skips_in_a_row: int = 0
    #: seconds of training before this process took over
    elapsed: float = 0.0
    #: the learning-rate factor's state (see ``_lr.LRControl``)
    lr_control: Any = None
    #: what ``lr="auto"`` chose: peak, policy, total_steps, describe
    auto: dict[str, Any] | None = None
    #: the number of processes that trained (a resume with another one rescales the lr
    #: by ``lr_scaling``), the factor that rescaling applies, and its warmup ramp
    #: ``[first step, steps, factor before, factor after]`` or ``None`` (``world_size`` is
    #: ``None`` in a checkpoint from before it was recorded: no rescaling then), and the
    #: batch size of one process (where a resume with another number continues)
    world_size: int | None = None
    world_lr_factor: float = 1.0
    world_ramp: list[float] | None = None
    rank_batch: int | None = None
    #: a stop that holds on resume (early stopping, tol, a callback), and its reason
    should_stop: bool = False
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The state as a plain dict (the checkpoint's ``"fit"`` entry)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        """The state saved by :meth:`to_dict`.

        Example:
            >>> RunState.from_dict({"step": 1})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: the checkpoint's run state lacks 'epoch' ...
        """
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in _ADDED and f.name not in data:
                continue  # a checkpoint from before the field existed: its default
            if f.name not in data:
                raise ValueError(
                    f"the checkpoint's run state lacks {f.name!r} "
                    "(a checkpoint of another bergab version?)"
                )
            values[f.name] = data[f.name]
        return cls(**values)
