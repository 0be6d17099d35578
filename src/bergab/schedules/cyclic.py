"""Schedules that go up and down: warm restarts, cyclical lrs and the 1cycle policy."""

from __future__ import annotations

import math
from typing import Any

from bergab._validate import check_real
from bergab.schedules._base import (
    _MAX_KEY_STEPS,
    Schedule,
    _cos_anneal,
    _in_range,
    _linear_anneal,
    factory,
)
from bergab.schedules._declare import arg, choice, flag, integer, real


class _CosineRestarts(Schedule, name="cosine_restarts"):
    """Cosine annealing with warm restarts (SGDR; torch's ``CosineAnnealingWarmRestarts``).

    Cycle ``n`` (from 0) starts at :math:`s_n = T_0 (m^n - 1)/(m - 1)` (``n T_0`` when
    ``m = 1``), lasts :math:`T_n = T_0 m^n` and anneals from its peak
    :math:`P_n = \\max(\\text{peak} · p^n, \\text{final})` down toward ``final``:

    .. math:: η_t = \\text{final} + (P_n - \\text{final})
              \\frac{1 + \\cos(π (t - s_n) / T_n)}{2}

    Args:
        peak: the value at step 0 (the first restart peak), >= 0.
        period: T_0, the length of the first cycle, an int >= 1.
        final: the value each cycle anneals toward, in [0, peak].
        period_mult: m >= 1, each cycle is m times longer than the previous one (torch's
            ``T_mult``; non-integer values are allowed here).
        peak_mult: p in (0, 1], each restart peak is p times the previous one (never
            below ``final``: once there, the schedule stays at ``final``).

    Returns:
        The schedule.

    Example:
        >>> s = cosine_restarts(peak=1.0, period=10, period_mult=2.0, peak_mult=0.5)
        >>> s(0), round(s(5), 6), s(10), s(30), s.key_steps(100)
        (1.0, 0.5, 0.5, 0.25, [10, 30, 70])
    """

    peak: float = real(low=0.0)
    period: int = integer(low=1)
    final: float = real(low=0.0, high="peak", default=0.0)
    period_mult: float = real(low=1.0, default=1.0)
    peak_mult: float = real(low=0.0, high=1.0, low_open=True, default=1.0)

    def _cycle(self, t: int) -> tuple[int, float, float]:
        """(cycle index n, steps since the n-th restart, length of cycle n)."""
        T0, m = self.period, self.period_mult
        if m == 1.0:
            n, since = divmod(t, T0)
            return n, float(since), float(T0)
        if m.is_integer():  # exact integer arithmetic, as torch's integer T_mult
            mi = int(m)
            n = int(math.log(t * (mi - 1) / T0 + 1, mi)) if t > 0 else 0
            while T0 * (mi ** (n + 1) - 1) // (mi - 1) <= t:
                n += 1
            while n > 0 and T0 * (mi**n - 1) // (mi - 1) > t:
                n -= 1
            start = T0 * (mi**n - 1) // (mi - 1)
            return n, float(t - start), float(T0 * mi**n)

        def begin(k: int) -> float:
            return T0 * (m**k - 1.0) / (m - 1.0)

        n = int(math.log(t * (m - 1.0) / T0 + 1.0) / math.log(m)) if t > 0 else 0
        while begin(n + 1) <= t:
            n += 1
        while n > 0 and begin(n) > t:
            n -= 1
        length = T0 * m**n
        return n, min(max(t - begin(n), 0.0), length), length

    def _value(self, t: int) -> float:
        n, since, length = self._cycle(t)
        peak_n = max(self.peak * self.peak_mult**n, self.final)
        return _cos_anneal(peak_n, self.final, since / length)

    def key_steps(self, until: int) -> list[int]:
        out: list[int] = []
        start, length = 0.0, float(self.period)
        while len(out) < _MAX_KEY_STEPS:
            start += length
            length *= self.period_mult
            if start >= until:
                break
            out.append(math.ceil(start))
        return _in_range(out, until)


cosine_restarts = factory(_CosineRestarts)


class _Cyclic(Schedule, name="cyclic"):
    """Cyclical learning rate between ``low`` and ``high`` (Smith 2017; torch's ``CyclicLR``).

    With ``U = step_size_up``, ``D = step_size_down``, cycle ``c = ⌊t/(U+D)⌋`` and
    position ``x = t - c(U+D)``, the triangle is ``f = x/U`` going up (``x ≤ U``) and
    ``f = (U+D-x)/D`` going down, and

    .. math:: η_t = \\text{low} + (\\text{high} - \\text{low}) · f · a

    with amplitude ``a = 1`` (``triangular``), ``a = 2^{-c}`` (``triangular2``, halved
    every cycle) or ``a = γ^t`` (``exp_range``). ``square`` is a rectangular wave:
    ``high`` for the first ``U`` steps of each cycle, then ``low`` for ``D`` steps.

    Args:
        low: the bottom of the cycle (the value at step 0 except in ``square``), >= 0.
        high: the top of the cycle, >= low.
        step_size_up: U, steps from low to high, an int >= 1.
        step_size_down: D, steps from high back to low, an int >= 1 (default: U).
        mode: ``"triangular"``, ``"triangular2"``, ``"exp_range"`` or ``"square"``.
        gamma: the per-step amplitude decay of ``exp_range``, in (0, 1]; must be 1 in
            the other modes.

    Returns:
        The schedule.

    Example:
        >>> s = cyclic(0.1, 1.0, step_size_up=2, step_size_down=4)
        >>> [round(s(t), 3) for t in range(8)]
        [0.1, 0.55, 1.0, 0.775, 0.55, 0.325, 0.1, 0.55]
        >>> [cyclic(0.0, 1.0, 2, mode="square")(t) for t in range(5)]
        [1.0, 1.0, 0.0, 0.0, 1.0]
    """

    low: float = real(low=0.0)
    high: float = real(low="low")
    step_size_up: int = integer(low=1)
    step_size_down: int | None = integer(low=1, default=None)
    mode: str = choice("triangular", "triangular2", "exp_range", "square", default="triangular")
    gamma: float = real(low=0.0, high=1.0, low_open=True, default=1.0)

    def _post_init(self) -> None:
        down = self.step_size_up if self.step_size_down is None else self.step_size_down
        self.step_size_down = down  # the config holds the resolved value, as before
        self._cycle_len = self.step_size_up + down
        if self.mode != "exp_range" and self.gamma != 1.0:
            raise ValueError(f"gamma is only used with mode='exp_range'; got gamma={self.gamma!r}")

    def _value(self, t: int) -> float:
        up, total = self.step_size_up, self._cycle_len
        cycle, pos = divmod(t, total)
        if self.mode == "square":
            return self.high if pos < up else self.low
        frac = pos / up if pos <= up else (total - pos) / (total - up)  # total - up = D
        if self.mode == "triangular2":
            amp = 0.5**cycle
        elif self.mode == "exp_range":
            amp = self.gamma**t
        else:
            amp = 1.0
        return self.low + (self.high - self.low) * frac * amp

    def key_steps(self, until: int) -> list[int]:
        total = self._cycle_len
        stop = min(until, total * (_MAX_KEY_STEPS // 2 + 1))
        out = [c + self.step_size_up for c in range(0, stop, total)]
        out += list(range(total, stop, total))
        return _in_range(out, until)


cyclic = factory(_Cyclic)


# ----------------------------------------------------------------------------- 1cycle
def _check_pct_start(schedule: Any, name: str, value: Any) -> float:
    """In (0, 1), and above 1/total_steps so that the rising phase has a step."""
    p = check_real(name, value, low=0.0, high=1.0, low_open=True, high_open=True)
    if p * schedule.total_steps <= 1:
        raise ValueError(
            f"pct_start must be > 1/total_steps = {1 / schedule.total_steps:g} so that the "
            f"warmup phase has at least one step; got {value!r}"
        )
    return p


class _OneCyclePhases:
    """torch's ``OneCycleLR`` phases, shared by the lr and the momentum cycle.

    A mixin of the two schedules: each declares its own arguments in its own call order
    (among them the four annotated here) and says in :meth:`_phase_values` which values
    each phase anneals between; the check across arguments, the phase ends and the
    interpolation are here, written once. (A mixin rather than a Schedule base: a base's
    annotations would be declared arguments, placed before the subclass's.)
    """

    total_steps: int
    pct_start: float
    anneal: str
    three_phase: bool

    def _phase_values(self) -> list[tuple[float, float]]:
        """(start, end) value of each phase: two pairs, or three with ``three_phase``."""
        raise NotImplementedError

    def _post_init(self) -> None:
        T, p = self.total_steps, self.pct_start
        if self.three_phase and p > 0.5:
            raise ValueError(f"pct_start must be in (0, 0.5] when three_phase=True; got {p!r}")
        # the phase end steps, floats as in torch's implementation
        if self.three_phase:
            self._ends = [p * T - 1, 2 * p * T - 2, T - 1.0]
        else:
            self._ends = [p * T - 1, T - 1.0]
        self._values = self._phase_values()

    def _value(self, t: int) -> float:
        ends, values = self._ends, self._values
        if t >= ends[-1]:
            return values[-1][1]
        start = 0.0
        for end, (a, b) in zip(ends, values, strict=True):
            if t <= end:
                pct = (t - start) / (end - start)
                if self.anneal == "cos":
                    return _cos_anneal(a, b, pct)
                return _linear_anneal(a, b, pct)
            start = end
        raise AssertionError("unreachable: t < ends[-1]")  # pragma: no cover

    def key_steps(self, until: int) -> list[int]:
        return _in_range([math.ceil(e) for e in self._ends], until)


class _OneCycle(_OneCyclePhases, Schedule, name="one_cycle"):
    """The 1cycle policy (Smith & Topin 2018), step for step equal to torch's ``OneCycleLR``.

    With ``initial = peak / div_factor`` and ``final = initial / final_div_factor``, and
    phase ends ``e_1 = pct_start·T - 1``, ``e_last = T - 1`` (three phases add
    ``e_2 = 2·pct_start·T - 2``), the value anneals (half-cosine or linearly):

    - two phases: ``initial → peak`` on ``[0, e_1]``, ``peak → final`` on ``[e_1, T-1]``;
    - three phases: ``initial → peak``, ``peak → initial``, ``initial → final``.

    Within a phase from ``a`` to ``b`` over ``[s, e]``, with ``p = (t - s)/(e - s)``:
    ``cos``: :math:`b + (a - b)(1 + \\cos πp)/2`; ``linear``: :math:`a + (b - a)p`.
    The value is ``final`` from step ``T - 1`` on (torch raises past ``T``).

    Args:
        peak: the maximum value, > 0.
        total_steps: T, an int >= 2.
        pct_start: the fraction of T spent rising, in (1/T, 1) (in (1/T, 0.5] with
            three phases).
        div_factor: ``peak / initial``, >= 1.
        final_div_factor: ``initial / final``, >= 1.
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: come back down to ``initial`` symmetrically before the final
            annihilation phase (fast.ai's variant).

    Returns:
        The schedule.

    Example:
        >>> s = one_cycle(peak=1.0, total_steps=100, pct_start=0.3)
        >>> [round(s(t), 6) for t in (0, 29, 64, 99, 1000)]
        [0.04, 1.0, 0.500002, 4e-06, 4e-06]
    """

    peak: float = real(low=0.0, low_open=True)
    total_steps: int = integer(low=2)
    pct_start: float = arg(_check_pct_start, default=0.3)
    div_factor: float = real(low=1.0, default=25.0)
    final_div_factor: float = real(low=1.0, default=1e4)
    anneal: str = choice("cos", "linear", default="cos")
    three_phase: bool = flag(default=False)

    def _phase_values(self) -> list[tuple[float, float]]:
        initial = self.peak / self.div_factor
        final = initial / self.final_div_factor
        if self.three_phase:
            return [(initial, self.peak), (self.peak, initial), (initial, final)]
        return [(initial, self.peak), (self.peak, final)]


one_cycle = factory(_OneCycle)


class _OneCycleMomentum(_OneCyclePhases, Schedule, name="one_cycle_momentum"):
    """The momentum cycle that goes with :func:`one_cycle` (torch's ``cycle_momentum``).

    Momentum moves opposite to the learning rate over the same phases: ``max → base``
    while the lr rises, ``base → max`` while it falls (three phases: ``max → base``,
    ``base → max``, then ``max`` constant). Drive SGD's ``momentum`` or Adam's ``β1``
    with :func:`attach` (``key="momentum"`` or ``key="beta1"``).

    Args:
        total_steps: T, an int >= 2 (the same as the lr schedule's).
        pct_start: as in :func:`one_cycle`.
        base_momentum: the lowest momentum, reached at the lr peak, in [0, 1].
        max_momentum: the highest momentum, at the start and the end, in
            [base_momentum, 1].
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: as in :func:`one_cycle`.

    Returns:
        The schedule.

    Example:
        >>> m = one_cycle_momentum(total_steps=101, pct_start=0.5)
        >>> m(0), m(100)
        (0.95, 0.95)
    """

    total_steps: int = integer(low=2)
    pct_start: float = arg(_check_pct_start, default=0.3)
    base_momentum: float = real(low=0.0, high=1.0, default=0.85)
    max_momentum: float = real(low="base_momentum", high=1.0, default=0.95)
    anneal: str = choice("cos", "linear", default="cos")
    three_phase: bool = flag(default=False)

    def _phase_values(self) -> list[tuple[float, float]]:
        lo, hi = self.base_momentum, self.max_momentum
        if self.three_phase:
            return [(hi, lo), (lo, hi), (hi, hi)]
        return [(hi, lo), (lo, hi)]


one_cycle_momentum = factory(_OneCycleMomentum)
