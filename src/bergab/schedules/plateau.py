"""The one metric-driven schedule: :class:`ReduceOnPlateau` (torch's ``ReduceLROnPlateau``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from bergab._validate import check_int, check_real
from bergab.schedules._base import Schedule
from bergab.schedules._declare import choice, integer, real


class ReduceOnPlateau(Schedule, name="reduce_on_plateau"):
    """Cut the value by ``factor`` when a metric stops improving (``ReduceLROnPlateau``).

    The one stateful schedule: calling it returns the *current* value whatever the step;
    :meth:`update` reports a metric (e.g. the validation loss after an epoch) and may
    lower the value. The rules are torch's ``ReduceLROnPlateau``, update for update:

    - the metric improves on ``best`` when (``min``/``rel``) ``m < best·(1 - threshold)``,
      (``min``/``abs``) ``m < best - threshold``, (``max``/``rel``)
      ``m > best·(1 + threshold)``, (``max``/``abs``) ``m > best + threshold``;
      an improvement resets the count of bad updates, anything else (NaN included) adds one;
    - during ``cooldown`` updates after a cut, bad updates are not counted;
    - when the count exceeds ``patience``: ``lr ← max(lr·factor, min_lr)``, applied only
      if it changes the lr by more than ``eps``; then the cooldown starts.

    It composes with the combinators: ``warmup(ReduceOnPlateau(...), steps=w)`` ramps
    toward the current value; ``update()`` on the combinator forwards to it. Its position
    lives in :meth:`state_dict`, its hyperparameters in :meth:`to_config`.

    Args:
        initial: the starting value, > 0.
        mode: ``"min"`` (lower metric is better) or ``"max"``.
        factor: the multiplier at each cut, in (0, 1).
        patience: bad updates tolerated before a cut, an int >= 0.
        threshold: the margin a metric must beat ``best`` by, >= 0.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: updates to wait after a cut before counting again, an int >= 0.
        min_lr: the floor, in [0, initial].
        eps: the smallest change applied, >= 0.

    Example:
        >>> s = ReduceOnPlateau(0.1, factor=0.5, patience=1)
        >>> for loss in [1.0, 0.9, 0.95, 0.93]:
        ...     s.update(loss)
        >>> s(0), s(123)
        (0.05, 0.05)
    """

    initial: float = real(low=0.0, low_open=True)
    mode: str = choice("min", "max", default="min")
    factor: float = real(low=0.0, high=1.0, low_open=True, high_open=True, default=0.1)
    patience: int = integer(low=0, default=10)
    threshold: float = real(low=0.0, default=1e-4)
    threshold_mode: str = choice("rel", "abs", default="rel")
    cooldown: int = integer(low=0, default=0)
    min_lr: float = real(low=0.0, high="initial", default=0.0)
    eps: float = real(low=0.0, default=1e-8)

    def _post_init(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every metric: back to ``initial``, no best, no bad updates.

        Example:
            >>> s = ReduceOnPlateau(1.0, patience=0); s.update(1.0); s.update(2.0)
            >>> s.reset(); s(0)
            1.0
        """
        self.lr = self.initial
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0
        self.num_updates = 0

    @property
    def stateful(self) -> bool:
        """Always True: this schedule changes with :meth:`update`."""
        return True

    def _is_better(self, metric: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return metric < self.best * (1.0 - self.threshold)
            return metric < self.best - self.threshold
        if self.threshold_mode == "rel":
            return metric > self.best * (self.threshold + 1.0)
        return metric > self.best + self.threshold

    def update(self, metric: float) -> None:
        """Report a metric; cut the value if it has not improved for ``patience`` updates.

        Args:
            metric: the monitored quantity (a float or a 0-d tensor).

        Example:
            >>> s = ReduceOnPlateau(1.0, patience=0, factor=0.5)
            >>> s.update(3.0); s.update(3.0); s(0)
            0.5
        """
        if isinstance(metric, torch.Tensor):
            metric = metric.item()
        current = float(metric)
        self.num_updates += 1
        if self._is_better(current):
            self.best = current
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0  # bad updates during cooldown are not counted
        if self.num_bad > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:
                self.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad = 0

    def _value(self, t: int) -> float:
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        """The position: current value, best metric, counters (plain floats and ints).

        Example:
            >>> sorted(ReduceOnPlateau(0.1).state_dict())
            ['best', 'cooldown_counter', 'lr', 'num_bad', 'num_updates']
        """
        return {
            "lr": self.lr,
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the position saved by :meth:`state_dict`.

        Example:
            >>> s = ReduceOnPlateau(0.1); s.load_state_dict({**s.state_dict(), "lr": 0.01})
            >>> s(0)
            0.01
        """
        missing = {"lr", "best", "num_bad", "cooldown_counter", "num_updates"} - set(state)
        if missing:
            raise ValueError(f"state is missing the keys {sorted(missing)}")
        self.lr = check_real("lr", state["lr"], low=0.0)
        self.best = float(state["best"])
        self.num_bad = check_int("num_bad", state["num_bad"], low=0)
        self.cooldown_counter = check_int("cooldown_counter", state["cooldown_counter"], low=0)
        self.num_updates = check_int("num_updates", state["num_updates"], low=0)
