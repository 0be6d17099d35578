"""Driving torch optimizers: :class:`ScheduleLR` (a real ``LRScheduler``) and :func:`attach`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from bergab._validate import check_int
from bergab.optim._base import Optimizer
from bergab.schedules._base import ScheduleLike, _as_schedule

_BETAS = {"beta1": 0, "beta2": 1}


def _check_key(key: Any, optimizer: torch.optim.Optimizer) -> str:
    groups = optimizer.param_groups
    if not isinstance(key, str):
        raise TypeError(f"key must be a str naming a param-group hyperparameter, got {key!r}")
    for i, group in enumerate(groups):
        if key in _BETAS:
            betas = group.get("betas")
            if not isinstance(betas, (tuple, list)) or len(betas) <= _BETAS[key]:
                raise ValueError(f"key {key!r} addresses 'betas', but param group {i} has no betas")
            continue
        value = group.get(key)
        numeric = isinstance(value, torch.Tensor) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        if not numeric:
            keys = [
                k
                for k, v in group.items()
                if isinstance(v, (int, float, torch.Tensor)) and not isinstance(v, bool)
            ]
            if isinstance(group.get("betas"), (tuple, list)):
                keys += ["beta1", "beta2"]
            raise ValueError(
                f"key must be a numeric hyperparameter of param group {i}, one of "
                f"{', '.join(keys)}; got {key!r}"
            )
        if isinstance(optimizer, Optimizer) and key in optimizer.schedules(i):
            raise ValueError(
                f"param group {i} already has a {key} schedule from the optimizer's "
                f"constructor; pass key={key!r} either there or to attach, not both"
            )
    return key


def _write(group: dict[str, Any], key: str, value: float) -> None:
    if key in _BETAS:
        idx = _BETAS[key]
        betas = list(group["betas"])
        if isinstance(betas[idx], torch.Tensor):
            betas[idx].fill_(value)
        else:
            betas[idx] = value
            group["betas"] = tuple(betas)
    elif isinstance(group[key], torch.Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


class ScheduleLR(LRScheduler):
    """A ``torch.optim.lr_scheduler.LRScheduler`` that drives a param-group key by a schedule.

    Made by :func:`attach`. After ``k`` calls of :meth:`step` every param group's ``key``
    holds ``schedule(k)`` (``schedule(0)`` right after construction), so the usual loop
    ``optimizer.step(); scheduler.step()`` gives the optimizer's step ``k`` the value
    ``schedule(k)``. :meth:`get_last_lr` returns the values last written (of ``key``,
    which need not be the lr).

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: a schedule, or a list with one schedule per param group.
        key: the param-group hyperparameter to drive (``"lr"``, ``"weight_decay"``,
            ``"momentum"``, ...; ``"beta1"``/``"beta2"`` address ``betas``).

    Example:
        >>> from bergab.schedules import linear
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=1.0)
        >>> sched = ScheduleLR(opt, linear(1.0, 0.0, 4))
        >>> for _ in range(2):
        ...     opt.step(); sched.step()
        >>> sched.get_last_lr(), opt.param_groups[0]["lr"]
        ([0.5], 0.5)
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: ScheduleLike | Sequence[ScheduleLike],
        key: str = "lr",
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {optimizer!r}")
        groups = optimizer.param_groups
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != len(groups):
                raise ValueError(
                    f"schedule: got {len(schedule)} schedules for {len(groups)} param groups; "
                    "give one schedule, or one per param group"
                )
            self.schedules = [_as_schedule(s, "schedule") for s in schedule]
        else:
            self.schedules = [_as_schedule(schedule, "schedule")] * len(groups)
        self.key = _check_key(key, optimizer)
        super().__init__(optimizer)

    def _apply(self) -> None:
        values = [s(self.last_epoch) for s in self.schedules]
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            _write(group, self.key, value)
        self._last_lr = [*values]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The values at the current position (``schedule(last_epoch)`` per group)."""
        return [s(self.last_epoch) for s in self.schedules]

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (or jump to ``epoch``, exact since schedules are closed form)."""
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            self.last_epoch = check_int("epoch", epoch, low=0)
        self._apply()

    def update(self, metric: float) -> None:
        """Report a metric to the metric-driven schedules and apply their new value now.

        Example:
            >>> from bergab.schedules import ReduceOnPlateau
            >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            >>> sched = attach(opt, ReduceOnPlateau(1.0, patience=0, factor=0.5))
            >>> sched.update(1.0); sched.update(1.0)
            >>> opt.param_groups[0]["lr"]
            0.5
        """
        seen: set[int] = set()
        for s in self.schedules:
            if s.stateful and id(s) not in seen:
                seen.add(id(s))
                s.update(metric)
        if not seen:
            raise TypeError("none of the attached schedules is metric-driven (ReduceOnPlateau)")
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """The position (plain ints, floats, lists; no schedule objects).

        The schedules themselves come from the constructor; metric-driven ones save
        their state here.
        """
        return {
            "key": self.key,
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
            "schedules": [s.state_dict() for s in self.schedules],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position and write the values it implies into the optimizer."""
        if state_dict.get("key") != self.key:
            raise ValueError(
                f"state_dict drives key {state_dict.get('key')!r}, this scheduler {self.key!r}"
            )
        states = state_dict.get("schedules", [])
        if len(states) != len(self.schedules):
            raise ValueError(
                f"state_dict holds {len(states)} schedules, this scheduler {len(self.schedules)}"
            )
        self.last_epoch = check_int("last_epoch", state_dict["last_epoch"], low=0)
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self.base_lrs = list(state_dict.get("base_lrs", self.base_lrs))
        for s, state in zip(self.schedules, states, strict=True):
            s.load_state_dict(state)
        self._apply()


def attach(
    optimizer: torch.optim.Optimizer,
    schedule: ScheduleLike | Sequence[ScheduleLike],
    key: str = "lr",
) -> ScheduleLR:
    """Drive any torch optimizer's hyperparameter by a schedule.

    Returns a real ``torch.optim.lr_scheduler.LRScheduler`` (:class:`ScheduleLR`): call
    its ``step()`` after each ``optimizer.step()``. Its ``state_dict()`` holds the step
    (and any :class:`ReduceOnPlateau` state), so a resumed run continues with exactly the
    values of an uninterrupted one. Several can drive one optimizer (e.g. lr and momentum).

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: a schedule, or a list of one schedule per param group.
        key: the numeric param-group entry to drive: ``"lr"``, ``"weight_decay"``,
            ``"momentum"``, ...; ``"beta1"`` / ``"beta2"`` address ``betas[0]`` /
            ``betas[1]``.

    Returns:
        The scheduler; the optimizer already holds ``schedule(0)``.

    Example:
        >>> from bergab.schedules import one_cycle, one_cycle_momentum
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.Adam([w], lr=1e-3)
        >>> lr = attach(opt, one_cycle(peak=1e-2, total_steps=100))
        >>> mom = attach(opt, one_cycle_momentum(total_steps=100), key="beta1")
        >>> round(opt.param_groups[0]["lr"], 8), opt.param_groups[0]["betas"]
        (0.0004, (0.95, 0.999))
    """
    return ScheduleLR(optimizer, schedule, key)
