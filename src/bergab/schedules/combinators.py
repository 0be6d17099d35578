"""Schedules built from schedules: warmup, join, scale, clamp, shift.

A combinator declares its nested schedules with ``schedule_arg()`` / ``schedule_list()``
(any ``step -> value`` callable is accepted and wrapped); they are its ``children()``,
through which ``update()`` and ``state_dict()`` reach a :class:`ReduceOnPlateau` inside.
The arguments are typed as callers give them (``ScheduleLike``, the public signature);
the checks store bergab schedules, which ``_post_init`` keeps typed as such in ``_inner``
(``_pieces`` for join) for ``_value``, the path run at every optimizer step.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, cast

from bergab._validate import check_real
from bergab.schedules._base import (
    Schedule,
    ScheduleLike,
    _in_range,
    factory,
    schedule_arg,
    schedule_list,
)
from bergab.schedules._declare import _check_increasing, _int_list, arg, choice, integer, real


def _ramp_factor(t: int, steps: int, start_factor: float, shape: str) -> float:
    """Warmup factor at step ``t < steps``: from ``start_factor`` (at the virtual step -1)
    to 1 (at ``t = steps``), linearly or geometrically."""
    frac = (t + 1) / (steps + 1)
    if shape == "linear":
        return start_factor + (1.0 - start_factor) * frac
    return float(start_factor ** (1.0 - frac))


class _Warmup(Schedule, name="warmup"):
    """Prepend a warmup ramp of ``steps`` steps to ``schedule``.

    The ramp goes from ``start_factor · v`` toward ``v = schedule(0)`` and the wrapped
    schedule starts after it, seeing its own local step ``t - steps``:

    .. math:: η_t = f_t · s(0) \\quad (t < w), \\qquad η_t = s(t - w) \\quad (t ≥ w)

    with ``w = steps``, ``q = (t + 1)/(w + 1)`` and ``f_t = a + (1 - a) q`` (``linear``)
    or ``f_t = a^{1 - q}`` (``exponential``), ``a = start_factor``. ``f`` would be ``a``
    at the (virtual) step -1 and is 1 at ``t = w``: no step runs at lr 0 and the peak is
    not repeated (nanoGPT's fixed off-by-one).

    .. warning:: torch's ``LinearLR(start_factor=a, total_iters=w)`` gives exactly
       ``a · v`` at step 0; for that convention use
       ``join([linear(a * v, v, w), s], [w])``.

    With a :class:`ReduceOnPlateau` inside, the ramp targets its *current* value, so an
    ``update()`` during warmup that lowers the lr also lowers the rest of the ramp; call
    ``update()`` (on the warmup schedule or on the plateau schedule, it is the same)
    from the end of warmup on if that is not what you want.

    Args:
        schedule: the schedule to warm up (any ``step -> value`` callable).
        steps: w, the number of warmup steps, an int >= 0 (0: no warmup).
        start_factor: a, in [0, 1] (in (0, 1] for ``exponential``).
        shape: ``"linear"`` or ``"exponential"`` (geometric, for lrs spanning decades).

    Returns:
        The schedule, ``steps`` steps longer than ``schedule``.

    Example:
        >>> from bergab.schedules import constant
        >>> s = warmup(constant(1.0), steps=4)
        >>> [s(t) for t in range(6)]
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
        >>> s = warmup(constant(1.0), steps=1, start_factor=0.01, shape="exponential")
        >>> [round(s(t), 6) for t in range(3)]
        [0.1, 1.0, 1.0]
    """

    schedule: ScheduleLike = schedule_arg()
    steps: int = integer(low=0)
    start_factor: float = arg(default=0.0)  # its range depends on shape: see _post_init
    shape: str = choice("linear", "exponential", default="linear")

    def _post_init(self) -> None:
        # the geometric ramp a**(1 - q) needs a > 0
        exponential = self.shape == "exponential"
        self.start_factor = check_real(
            "start_factor", self.start_factor, low=0.0, high=1.0, low_open=exponential
        )
        self._inner = cast(Schedule, self.schedule)

    def _value(self, t: int) -> float:
        if t >= self.steps:
            return self._inner._value(t - self.steps)
        # ramp toward the wrapped schedule's first value (ReduceOnPlateau: its current lr)
        return _ramp_factor(t, self.steps, self.start_factor, self.shape) * self._inner._value(0)

    def key_steps(self, until: int) -> list[int]:
        w = self.steps
        inner = self._inner.key_steps(until - w) if until > w else []
        return _in_range([w, *(w + k for k in inner)], until)


warmup = factory(_Warmup)


def _check_boundaries(schedule: Any, name: str, value: Any) -> tuple[int, ...]:
    bs = _int_list(name, value)
    expected = len(schedule.schedules) - 1
    if len(bs) != expected:
        raise ValueError(
            f"boundaries must hold len(schedules) - 1 = {expected} steps, got {len(bs)}"
        )
    _check_increasing(name, bs)
    return tuple(bs)


class _Join(Schedule, name="join"):
    """Run ``schedules`` one after another, switching at ``boundaries``.

    Piece ``i`` is active on ``[b_{i-1}, b_i)`` (with ``b_{-1} = 0``) and sees its own
    local step ``t - b_{i-1}``; the last piece runs forever.

    Args:
        schedules: k >= 1 schedules.
        boundaries: k - 1 strictly increasing steps >= 1.

    Returns:
        The schedule.

    Example:
        >>> from bergab.schedules import cosine, linear
        >>> s = join([linear(0.0, 1.0, 2), cosine(1.0, 4)], boundaries=[2])
        >>> [round(s(t), 3) for t in range(7)]
        [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """

    schedules: Sequence[ScheduleLike] = schedule_list()
    boundaries: Sequence[int] = arg(_check_boundaries)

    def _post_init(self) -> None:
        self._pieces = cast(tuple[Schedule, ...], self.schedules)

    def _value(self, t: int) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        start = self.boundaries[i - 1] if i > 0 else 0
        return self._pieces[i]._value(t - start)

    def key_steps(self, until: int) -> list[int]:
        starts = [0, *self.boundaries]
        ends = [*self.boundaries, until]
        out: list[int] = []
        for s, a, b in zip(self._pieces, starts, ends, strict=True):
            if a >= until:
                break
            out += [a, *(a + k for k in s.key_steps(min(b, until) - a))]
        return _in_range(out, until)


join = factory(_Join)


class _Scale(Schedule, name="scale"):
    """Multiply a schedule by a constant: ``η_t = factor · s(t)``.

    Useful to reuse one shape at several peaks (per-layer lrs, a weight-decay schedule
    that follows the lr).

    Args:
        schedule: the schedule to scale.
        factor: the multiplier, >= 0.

    Returns:
        The schedule.

    Example:
        >>> from bergab.schedules import linear
        >>> scale(linear(1.0, 0.0, 10), 0.1)(5)
        0.05
    """

    schedule: ScheduleLike = schedule_arg()
    factor: float = real(low=0.0)

    def _post_init(self) -> None:
        self._inner = cast(Schedule, self.schedule)

    def _value(self, t: int) -> float:
        return self.factor * self._inner._value(t)

    def key_steps(self, until: int) -> list[int]:
        return self._inner.key_steps(until)


scale = factory(_Scale)


class _Clamp(Schedule, name="clamp"):
    """Keep a schedule inside ``[low, high]``: ``η_t = min(max(s(t), low), high)``.

    Args:
        schedule: the schedule to clamp.
        low: the floor, >= 0.
        high: the ceiling, >= low, or ``None`` for none.

    Returns:
        The schedule.

    Example:
        >>> from bergab.schedules import exponential
        >>> s = clamp(exponential(1.0, rate=1.0), low=0.1)
        >>> s(0), s(10)
        (1.0, 0.1)
    """

    schedule: ScheduleLike = schedule_arg()
    low: float = real(low=0.0, default=0.0)
    high: float | None = real(low="low", default=None)

    def _post_init(self) -> None:
        self._inner = cast(Schedule, self.schedule)

    def _value(self, t: int) -> float:
        v = max(self._inner._value(t), self.low)
        return v if self.high is None else min(v, self.high)

    def key_steps(self, until: int) -> list[int]:
        return self._inner.key_steps(until)


clamp = factory(_Clamp)


class _Shift(Schedule, name="shift"):
    """Start a schedule ``steps`` steps in: ``η_t = s(t + steps)``.

    Inside a ``join``, where each piece sees its own local step, a shifted piece runs on
    the run's clock instead: ``join([s, shift(u, b)], [b])`` is ``s`` before step ``b`` and
    ``u`` itself from ``b`` on (what PBT's exported schedules are made of).

    Args:
        schedule: the schedule to shift.
        steps: how far into it to start, an int >= 0.

    Returns:
        The schedule.

    Example:
        >>> from bergab.schedules import linear
        >>> s = shift(linear(1.0, 0.0, 10), 4)
        >>> s(0), s(6)
        (0.6, 0.0)
    """

    schedule: ScheduleLike = schedule_arg()
    steps: int = integer(low=0)

    def _post_init(self) -> None:
        self._inner = cast(Schedule, self.schedule)

    def _value(self, t: int) -> float:
        return self._inner._value(t + self.steps)

    def key_steps(self, until: int) -> list[int]:
        inner = self._inner.key_steps(until + self.steps)
        return _in_range([k - self.steps for k in inner if k > self.steps], until)


shift = factory(_Shift)
