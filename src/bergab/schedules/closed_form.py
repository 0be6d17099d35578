"""Basic schedules with one closed-form formula: constant, decays, warmup-decay shapes.

Each schedule is one class (its arguments, ``_value``, ``key_steps``) followed by its
public function, ``name = factory(_Class)``; the class docstring is the function's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from bergab._validate import check_int
from bergab.schedules._base import _MAX_KEY_STEPS, Schedule, _cos_anneal, _in_range, factory
from bergab.schedules._declare import _check_increasing, _int_list, arg, choice, integer, real


class _Constant(Schedule, name="constant"):
    """A constant value: ``η_t = lr``.

    Args:
        lr: the value, >= 0.

    Returns:
        The schedule.

    Example:
        >>> constant(0.1)(0), constant(0.1)(10**9)
        (0.1, 0.1)
    """

    lr: float = real(low=0.0)

    def _value(self, t: int) -> float:
        return self.lr


constant = factory(_Constant)


class _StepDecay(Schedule, name="step_decay"):
    """Multiply by ``gamma`` every ``step_size`` steps (torch's ``StepLR``).

    .. math:: η_t = \\text{initial} · γ^{⌊t / \\text{step\\_size}⌋}

    Args:
        initial: the value at step 0, >= 0.
        gamma: the decay factor, in (0, 1].
        step_size: steps between decays, an int >= 1.

    Returns:
        The schedule (non-increasing).

    Example:
        >>> s = step_decay(1.0, gamma=0.5, step_size=10)
        >>> s(9), s(10), s(25)
        (1.0, 0.5, 0.25)
    """

    initial: float = real(low=0.0)
    gamma: float = real(low=0.0, high=1.0, low_open=True)
    step_size: int = integer(low=1)

    def _value(self, t: int) -> float:
        return self.initial * self.gamma ** (t // self.step_size)

    def key_steps(self, until: int) -> list[int]:
        stop = min(until, self.step_size * (_MAX_KEY_STEPS + 1))
        return _in_range(range(self.step_size, stop, self.step_size), until)


step_decay = factory(_StepDecay)


def _check_milestones(schedule: Any, name: str, value: Any) -> tuple[int, ...]:
    ms = _int_list(name, value)
    _check_increasing(name, ms)
    return tuple(ms)


class _MultiStep(Schedule, name="multistep"):
    """Multiply by ``gamma`` at each milestone (torch's ``MultiStepLR``).

    .. math:: η_t = \\text{initial} · γ^{\\#\\{m ∈ \\text{milestones} : m ≤ t\\}}

    Args:
        initial: the value at step 0, >= 0.
        milestones: strictly increasing steps >= 1 at which the value drops.
        gamma: the decay factor, in (0, 1].

    Returns:
        The schedule (non-increasing).

    Example:
        >>> s = multistep(1.0, milestones=[10, 30], gamma=0.1)
        >>> s(9), s(10), round(s(30), 6)
        (1.0, 0.1, 0.01)
    """

    initial: float = real(low=0.0)
    milestones: Sequence[int] = arg(_check_milestones)
    gamma: float = real(low=0.0, high=1.0, low_open=True)

    def _value(self, t: int) -> float:
        return self.initial * self.gamma ** bisect.bisect_right(self.milestones, t)

    def key_steps(self, until: int) -> list[int]:
        return _in_range(self.milestones, until)


multistep = factory(_MultiStep)


class _Exponential(Schedule, name="exponential"):
    """Exponential decay: ``η_t = initial · exp(-rate · t)``.

    torch's ``ExponentialLR(gamma)`` is the same schedule with ``rate = -ln(gamma)``.

    Args:
        initial: the value at step 0, >= 0.
        rate: the decay rate per step, >= 0.

    Returns:
        The schedule (non-increasing).

    Example:
        >>> s = exponential(1.0, rate=math.log(2))
        >>> round(s(1), 6), round(s(3), 6)
        (0.5, 0.125)
    """

    initial: float = real(low=0.0)
    rate: float = real(low=0.0)

    def _value(self, t: int) -> float:
        return self.initial * math.exp(-self.rate * t)


exponential = factory(_Exponential)


class _Polynomial(Schedule, name="polynomial"):
    """Polynomial decay from ``initial`` to ``final`` over ``total_steps`` (``PolynomialLR``).

    .. math:: η_t = \\text{final} + (\\text{initial} - \\text{final})
              (1 - \\min(t, T) / T)^{\\text{power}}

    Args:
        initial: the value at step 0, >= 0.
        total_steps: T, an int >= 1; the value is ``final`` from step T on.
        final: the end value, in [0, initial]: a decay ends below where it starts (for a
            rise, use :func:`linear` or :func:`warmup`).
        power: the exponent, > 0 (1 is linear decay).

    Returns:
        The schedule (non-increasing from ``initial`` to ``final``).

    Example:
        >>> s = polynomial(1.0, total_steps=10, power=2.0)
        >>> s(0), round(s(5), 6), s(10), s(99)
        (1.0, 0.25, 0.0, 0.0)
    """

    initial: float = real(low=0.0)
    total_steps: int = integer(low=1)
    final: float = real(low=0.0, high="initial", default=0.0)  # a decay: final <= initial
    power: float = real(low=0.0, low_open=True, default=1.0)

    def _value(self, t: int) -> float:
        remaining = 1.0 - min(t, self.total_steps) / self.total_steps
        return self.final + (self.initial - self.final) * remaining**self.power

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


polynomial = factory(_Polynomial)


class _Linear(Schedule, name="linear"):
    """A straight line from ``start`` to ``end`` over ``total_steps``, then ``end``.

    .. math:: η_t = \\text{start} + (\\text{end} - \\text{start}) · \\min(t, T) / T

    torch's ``LinearLR(start_factor, end_factor, total_iters)`` on a base lr ``b`` is
    ``linear(b * start_factor, b * end_factor, total_iters)``.

    Args:
        start: the value at step 0, >= 0.
        end: the value from step T on, >= 0.
        total_steps: T, an int >= 1.

    Returns:
        The schedule (monotone).

    Example:
        >>> s = linear(0.0, 1.0, total_steps=4)
        >>> [s(t) for t in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    start: float = real(low=0.0)
    end: float = real(low=0.0)
    total_steps: int = integer(low=1)

    def _value(self, t: int) -> float:
        return self.start + (self.end - self.start) * (min(t, self.total_steps) / self.total_steps)

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


linear = factory(_Linear)


class _Cosine(Schedule, name="cosine"):
    """Half-cosine annealing from ``peak`` to ``final`` (torch's ``CosineAnnealingLR``).

    .. math:: η_t = \\text{final} + (\\text{peak} - \\text{final})
              \\frac{1 + \\cos(π t / T)}{2} \\quad (t < T), \\qquad η_t = \\text{final}
              \\quad (t ≥ T)

    .. warning:: Past ``T`` torch's ``CosineAnnealingLR`` keeps following the cosine (the
       lr climbs back up); this one stays at ``final``. Use :func:`cosine_restarts` for
       a periodic schedule.

    Args:
        peak: the value at step 0, >= 0.
        total_steps: T, an int >= 1.
        final: the value from step T on, in [0, peak]: an annealing ends below its peak
            (for a rise, use :func:`linear` or :func:`warmup`).

    Returns:
        The schedule (non-increasing from ``peak`` to ``final``).

    Example:
        >>> s = cosine(peak=1.0, total_steps=100, final=0.1)
        >>> s(0), round(s(50), 6), s(100), s(1000)
        (1.0, 0.55, 0.1, 0.1)
    """

    peak: float = real(low=0.0)
    total_steps: int = integer(low=1)
    final: float = real(low=0.0, high="peak", default=0.0)  # annealing: final <= peak

    def _value(self, t: int) -> float:
        if t >= self.total_steps:
            return self.final
        return _cos_anneal(self.peak, self.final, t / self.total_steps)

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


cosine = factory(_Cosine)


class _InverseSqrt(Schedule, name="inverse_sqrt"):
    """Linear warmup then ``1/√t`` decay (the Transformer's "Noam" schedule).

    With the 1-based step ``n = t + 1`` and ``w = warmup_steps``:

    .. math:: η_t = \\text{peak} · \\min\\left(\\frac{n}{w}, \\sqrt{\\frac{w}{n}}\\right)

    so the value rises to ``peak`` at step ``t = w - 1`` and decays as ``1/√t`` after.

    Args:
        peak: the maximum value, >= 0.
        warmup_steps: w, an int >= 1 (1 means no warmup: ``peak / √(t+1)``).

    Returns:
        The schedule.

    Example:
        >>> s = inverse_sqrt(peak=1.0, warmup_steps=4)
        >>> [s(t) for t in (0, 3, 15)]
        [0.25, 1.0, 0.5]
    """

    peak: float = real(low=0.0)
    warmup_steps: int = integer(low=1)

    def _value(self, t: int) -> float:
        n, w = t + 1, self.warmup_steps
        if n <= w:
            return self.peak * n / w
        return self.peak * math.sqrt(w / n)

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.warmup_steps - 1], until)


inverse_sqrt = factory(_InverseSqrt)


def _check_decay_steps(schedule: Any, name: str, value: Any) -> int:
    d = check_int(name, value, low=0)
    if schedule.warmup_steps + d > schedule.total_steps:
        raise ValueError(
            f"warmup_steps + decay_steps must be <= total_steps = {schedule.total_steps}; "
            f"got {schedule.warmup_steps} + {d}"
        )
    return d


class _WSD(Schedule, name="wsd"):
    """Warmup-stable-decay (trapezoidal) schedule (Zhai et al. 2022; Hägele et al. 2024).

    With ``w = warmup_steps``, ``d = decay_steps``, ``T = total_steps`` and the decay
    progress ``p = (t - (T - d)) / d``:

    - ``t < w``: linear warmup ``peak · (t + 1)/(w + 1)``;
    - ``w ≤ t < T - d``: ``peak``;
    - ``T - d ≤ t < T``: decay to ``final``: ``linear`` ``final + (peak-final)(1-p)``,
      ``cosine`` ``final + (peak-final)(1+cos πp)/2``, ``1-sqrt``
      ``final + (peak-final)(1-√p)``, ``exponential`` ``peak·(final/peak)^p``;
    - ``t ≥ T``: ``final``.

    Args:
        peak: the stable value, > 0.
        total_steps: T, an int >= 1.
        warmup_steps: w, an int >= 0.
        decay_steps: d, an int >= 0 with ``w + d <= T``.
        final: the end value, in [0, peak] ((0, peak] for ``exponential``).
        decay_shape: ``"linear"``, ``"cosine"``, ``"1-sqrt"`` or ``"exponential"``.

    Returns:
        The schedule (non-decreasing up to ``w``, non-increasing after).

    Example:
        >>> s = wsd(1.0, total_steps=10, warmup_steps=1, decay_steps=4)
        >>> [s(t) for t in range(11)]
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """

    peak: float = real(low=0.0, low_open=True)
    total_steps: int = integer(low=1)
    warmup_steps: int = integer(low=0)
    decay_steps: int = arg(_check_decay_steps)  # w + d <= T
    final: float = real(low=0.0, high="peak", default=0.0)
    decay_shape: str = choice("linear", "cosine", "1-sqrt", "exponential", default="linear")

    def _post_init(self) -> None:
        if self.decay_shape == "exponential" and self.final <= 0.0:  # peak·(final/peak)^p
            raise ValueError(f"final must be in (0, {self.peak:g}] for decay_shape='exponential'")

    def _value(self, t: int) -> float:
        w, T, d = self.warmup_steps, self.total_steps, self.decay_steps
        if t < w:  # 1) warmup, never 0
            return self.peak * (t + 1) / (w + 1)
        if t < T - d:  # 2) stable
            return self.peak
        if t >= T:  # 4) after the end
            return self.final
        return self._decay((t - (T - d)) / d)  # 3) decay, progress in [0, 1)

    def _decay(self, p: float) -> float:
        if self.decay_shape == "linear":
            v = self.final + (self.peak - self.final) * (1.0 - p)
        elif self.decay_shape == "cosine":
            v = _cos_anneal(self.peak, self.final, p)
        elif self.decay_shape == "1-sqrt":
            v = self.final + (self.peak - self.final) * (1.0 - math.sqrt(p))
        else:
            v = self.peak * (self.final / self.peak) ** p
        return min(max(v, self.final), self.peak)  # no rounding step outside [final, peak]

    def key_steps(self, until: int) -> list[int]:
        T = self.total_steps
        return _in_range([self.warmup_steps, T - self.decay_steps, T], until)


wsd = factory(_WSD)
