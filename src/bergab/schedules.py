"""Learning-rate schedules: closed-form ``step -> value`` functions and combinators.

A schedule is a small object you call with ``t``, the number of optimizer steps already
taken (0 for the first step), and that returns the value to use for the next step::

    sched = warmup(cosine(peak=3e-3, total_steps=9_500, final=3e-5), steps=500)
    sched(0), sched(500), sched(10_000)

Every schedule is written in closed form in ``t`` (no recursion over past steps, unlike
torch's "chainable" schedulers), validates its arguments, round-trips through
:func:`to_config` / :func:`from_config` and prints as the call that builds it. The one
stateful kind is :class:`ReduceOnPlateau`, driven by a metric through ``update()``.

Conventions shared by every schedule here:

- A schedule over ``total_steps`` reaches its end value *at* ``t = total_steps`` and
  keeps it afterwards ("past the end" is well defined, never an error).
- Warmup ramps never give 0 at step 0: a ramp of ``w`` steps to a target ``v`` gives
  ``v * (t + 1) / (w + 1)`` (with ``start_factor = 0``) and hands over to the target at
  ``t = w``, so no step is wasted at lr 0 and the peak is not repeated.
- Combinators give the wrapped schedule its *own local* step: in
  ``warmup(s, steps=w)``, ``s`` sees ``t - w``; in ``join``, each piece sees the steps
  since its boundary.

bergab optimizers accept a schedule wherever they accept ``lr`` (they call
``float(schedule(step))``); any torch optimizer can be driven through :func:`attach`.

Example:
    >>> sched = warmup(cosine(peak=1.0, total_steps=100), steps=9)
    >>> [round(sched(t), 3) for t in (0, 4, 9, 59, 109, 500)]
    [0.1, 0.5, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import torch
from torch.optim.lr_scheduler import LRScheduler

from bergab._validate import check_bool, check_choice, check_int, check_real, is_schedule
from bergab.optim._base import Optimizer

__all__ = [
    "ReduceOnPlateau",
    "Schedule",
    "ScheduleLR",
    "ScheduleLike",
    "attach",
    "clamp",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "from_config",
    "inverse_sqrt",
    "is_schedule",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "one_cycle_momentum",
    "plot",
    "polynomial",
    "scale",
    "step_decay",
    "to_config",
    "warmup",
    "wsd",
]

# Periodic schedules (step_decay, cyclic, restarts) list at most this many key steps.
_MAX_KEY_STEPS = 10_000


# ----------------------------------------------------------------------------- helpers
def _check_step(step: Any) -> int:
    """The step as an int >= 0 (0-d tensors and numpy integers are accepted)."""
    if hasattr(step, "item") and getattr(step, "ndim", 1) == 0:
        step = step.item()
    return check_int("step", step, low=0)


def _nonneg(name: str, value: Any) -> float:
    return check_real(name, value, low=0.0)


def _positive(name: str, value: Any) -> float:
    return check_real(name, value, low=0.0, low_open=True)


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """Half-cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _linear_anneal(start: float, end: float, pct: float) -> float:
    """Straight line from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return (end - start) * pct + start


def _ramp_factor(t: int, steps: int, start_factor: float, shape: str) -> float:
    """Warmup factor at step ``t < steps``: from ``start_factor`` (at the virtual step -1)
    to 1 (at ``t = steps``), linearly or geometrically."""
    frac = (t + 1) / (steps + 1)
    if shape == "linear":
        return start_factor + (1.0 - start_factor) * frac
    return float(start_factor ** (1.0 - frac))


def _as_schedule(value: Any, name: str) -> Schedule:
    """A bergab schedule as is; any other callable wrapped (it then can't be serialized)."""
    if isinstance(value, Schedule):
        return value
    if is_schedule(value):
        return _Function(value)
    raise TypeError(f"{name} must be a schedule (a callable step -> value), got {value!r}")


def _in_range(steps: Iterable[int], until: int) -> list[int]:
    return sorted({s for s in steps if 0 < s < until})


def _format_value(value: Any) -> str:
    if isinstance(value, Schedule):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


# ----------------------------------------------------------------------------- base class
class Schedule:
    """Base class of every bergab schedule: a callable ``step -> value`` in closed form.

    Subclasses implement ``_value(t)`` (``t`` already checked to be an int >= 0) and
    ``_config()`` (the constructor arguments). Calling a schedule validates the step, so a
    negative or non-integer step raises instead of extrapolating silently.

    Methods every schedule has: ``to_config()`` (a JSON/TOML-ready dict, inverse of
    :func:`from_config`), ``key_steps(until)`` (the steps where a phase begins, for tables
    and plots), and ``update()`` / ``state_dict()`` / ``load_state_dict()``, which are
    no-ops or errors except for metric-driven schedules (:class:`ReduceOnPlateau`) and
    combinators that hold one.

    Example:
        >>> s = cosine(peak=0.1, total_steps=10)
        >>> isinstance(s, Schedule), s(0), s(10)
        (True, 0.1, 0.0)
        >>> s
        cosine(peak=0.1, total_steps=10)
    """

    #: The registry name of the schedule type (the ``"type"`` of its config).
    name: ClassVar[str] = "schedule"

    def __call__(self, step: int) -> float:
        """The value for the optimizer step that follows ``step`` completed steps."""
        return self._value(_check_step(step))

    def _value(self, t: int) -> float:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def children(self) -> tuple[Schedule, ...]:
        """The schedules this one is built from (empty for a basic schedule).

        Example:
            >>> len(warmup(constant(1.0), steps=3).children())
            1
        """
        return ()

    def key_steps(self, until: int) -> list[int]:
        """Steps in ``(0, until)`` where a phase begins or ends (a boundary, a peak).

        Example:
            >>> wsd(1.0, total_steps=100, warmup_steps=10, decay_steps=20).key_steps(1000)
            [10, 80, 100]
        """
        return []

    def to_config(self) -> dict[str, Any]:
        """This schedule as a plain dict: ``{"type": name, **arguments}``.

        Nested schedules become nested dicts; ``None`` arguments are left out (TOML has
        no null), so the dict can be written as JSON or TOML and read by
        :func:`from_config`.

        Example:
            >>> scale(constant(2.0), 0.5).to_config()
            {'type': 'scale', 'schedule': {'type': 'constant', 'lr': 2.0}, 'factor': 0.5}
        """

        def encode(value: Any) -> Any:
            if isinstance(value, Schedule):
                return value.to_config()
            if isinstance(value, (list, tuple)):
                return [encode(v) for v in value]
            return value

        out: dict[str, Any] = {"type": self.name}
        for key, value in self._config().items():
            if value is not None:
                out[key] = encode(value)
        return out

    def __repr__(self) -> str:
        defaults = _defaults(self.name)
        parts = []
        for key, value in self._config().items():
            if key in defaults and defaults[key] == value and type(defaults[key]) is type(value):
                continue
            parts.append(f"{key}={_format_value(value)}")
        return f"{self.name}({', '.join(parts)})"

    # -- metric-driven state (only ReduceOnPlateau and the combinators holding one)
    @property
    def stateful(self) -> bool:
        """Whether this schedule (or one inside it) is metric-driven and has state.

        Example:
            >>> constant(0.1).stateful, warmup(ReduceOnPlateau(0.1), steps=5).stateful
            (False, True)
        """
        return any(c.stateful for c in self.children())

    def update(self, metric: float) -> None:
        """Report a metric to every metric-driven schedule inside this one.

        Raises:
            TypeError: when no schedule inside is metric-driven.

        Example:
            >>> s = warmup(ReduceOnPlateau(0.1, patience=0), steps=2)
            >>> s.update(1.0); s.update(2.0)
            >>> round(s(10), 6)
            0.01
        """
        stateful = [c for c in self.children() if c.stateful]
        if not stateful:
            raise TypeError(
                f"{self!r} is not metric-driven: only ReduceOnPlateau (or a combinator "
                "holding one) takes update(metric)"
            )
        for child in stateful:
            child.update(metric)

    def state_dict(self) -> dict[str, Any]:
        """The mutable state (empty for a pure schedule), for checkpoints.

        Example:
            >>> cosine(1.0, 10).state_dict()
            {}
        """
        if not self.stateful:
            return {}
        return {"children": [c.state_dict() for c in self.children()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Example:
            >>> s = ReduceOnPlateau(0.1, patience=0)
            >>> s.update(1.0); s.update(2.0)
            >>> t = ReduceOnPlateau(0.1, patience=0); t.load_state_dict(s.state_dict())
            >>> round(t(0), 6)
            0.01
        """
        if not self.stateful:
            if state:
                raise ValueError(f"state must be empty for the pure schedule {self!r}")
            return
        children = state.get("children")
        if not isinstance(children, list) or len(children) != len(self.children()):
            raise ValueError(f"state does not match the structure of {self!r}")
        for child, child_state in zip(self.children(), children, strict=True):
            child.load_state_dict(child_state)


#: What optimizers and combinators accept: a bergab schedule or any ``step -> value`` callable.
ScheduleLike: TypeAlias = Schedule | Callable[[int], float]


class _Function(Schedule):
    """A plain ``step -> value`` callable, so combinators accept functions too."""

    name = "function"

    def __init__(self, fn: Callable[[int], float]) -> None:
        self.fn = fn

    def _value(self, t: int) -> float:
        return float(self.fn(t))

    def _config(self) -> dict[str, Any]:
        return {"fn": self.fn}

    def to_config(self) -> dict[str, Any]:
        raise TypeError(
            f"{self.fn!r} is a plain function and cannot be serialized; build the schedule "
            "from bergab.schedules instead"
        )

    def __repr__(self) -> str:
        return f"function({getattr(self.fn, '__name__', repr(self.fn))})"


# ----------------------------------------------------------------------------- basic schedules
class _Constant(Schedule):
    name = "constant"

    def __init__(self, lr: float) -> None:
        self.lr = _nonneg("lr", lr)

    def _value(self, t: int) -> float:
        return self.lr

    def _config(self) -> dict[str, Any]:
        return {"lr": self.lr}


def constant(lr: float) -> Schedule:
    """A constant value: ``η_t = lr``.

    Args:
        lr: the value, >= 0.

    Returns:
        The schedule.

    Example:
        >>> constant(0.1)(0), constant(0.1)(10**9)
        (0.1, 0.1)
    """
    return _Constant(lr)


class _StepDecay(Schedule):
    name = "step_decay"

    def __init__(self, initial: float, gamma: float, step_size: int) -> None:
        self.initial = _nonneg("initial", initial)
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)
        self.step_size = check_int("step_size", step_size, low=1)

    def _value(self, t: int) -> float:
        return self.initial * self.gamma ** (t // self.step_size)

    def _config(self) -> dict[str, Any]:
        return {"initial": self.initial, "gamma": self.gamma, "step_size": self.step_size}

    def key_steps(self, until: int) -> list[int]:
        stop = min(until, self.step_size * (_MAX_KEY_STEPS + 1))
        return _in_range(range(self.step_size, stop, self.step_size), until)


def step_decay(initial: float, gamma: float, step_size: int) -> Schedule:
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
    return _StepDecay(initial, gamma, step_size)


class _MultiStep(Schedule):
    name = "multistep"

    def __init__(self, initial: float, milestones: Sequence[int], gamma: float) -> None:
        self.initial = _nonneg("initial", initial)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(f"milestones must be a list of ints, got {milestones!r}")
        ms = [check_int("milestones", m, low=1) for m in milestones]
        if any(b <= a for a, b in itertools.pairwise(ms)):
            raise ValueError(f"milestones must be strictly increasing ints >= 1, got {ms}")
        self.milestones = tuple(ms)
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)

    def _value(self, t: int) -> float:
        return self.initial * self.gamma ** bisect.bisect_right(self.milestones, t)

    def _config(self) -> dict[str, Any]:
        return {"initial": self.initial, "milestones": list(self.milestones), "gamma": self.gamma}

    def key_steps(self, until: int) -> list[int]:
        return _in_range(self.milestones, until)


def multistep(initial: float, milestones: Sequence[int], gamma: float) -> Schedule:
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
    return _MultiStep(initial, milestones, gamma)


class _Exponential(Schedule):
    name = "exponential"

    def __init__(self, initial: float, rate: float) -> None:
        self.initial = _nonneg("initial", initial)
        self.rate = _nonneg("rate", rate)

    def _value(self, t: int) -> float:
        return self.initial * math.exp(-self.rate * t)

    def _config(self) -> dict[str, Any]:
        return {"initial": self.initial, "rate": self.rate}


def exponential(initial: float, rate: float) -> Schedule:
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
    return _Exponential(initial, rate)


class _Polynomial(Schedule):
    name = "polynomial"

    def __init__(
        self, initial: float, total_steps: int, final: float = 0.0, power: float = 1.0
    ) -> None:
        self.initial = _nonneg("initial", initial)
        self.total_steps = check_int("total_steps", total_steps, low=1)
        self.final = _nonneg("final", final)
        self.power = _positive("power", power)

    def _value(self, t: int) -> float:
        remaining = 1.0 - min(t, self.total_steps) / self.total_steps
        return self.final + (self.initial - self.final) * remaining**self.power

    def _config(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "total_steps": self.total_steps,
            "final": self.final,
            "power": self.power,
        }

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


def polynomial(
    initial: float, total_steps: int, final: float = 0.0, power: float = 1.0
) -> Schedule:
    """Polynomial decay from ``initial`` to ``final`` over ``total_steps`` (``PolynomialLR``).

    .. math:: η_t = \\text{final} + (\\text{initial} - \\text{final})
              (1 - \\min(t, T) / T)^{\\text{power}}

    Args:
        initial: the value at step 0, >= 0.
        total_steps: T, an int >= 1; the value is ``final`` from step T on.
        final: the end value, >= 0.
        power: the exponent, > 0 (1 is linear decay).

    Returns:
        The schedule (monotone from ``initial`` to ``final``).

    Example:
        >>> s = polynomial(1.0, total_steps=10, power=2.0)
        >>> s(0), round(s(5), 6), s(10), s(99)
        (1.0, 0.25, 0.0, 0.0)
    """
    return _Polynomial(initial, total_steps, final, power)


class _Linear(Schedule):
    name = "linear"

    def __init__(self, start: float, end: float, total_steps: int) -> None:
        self.start = _nonneg("start", start)
        self.end = _nonneg("end", end)
        self.total_steps = check_int("total_steps", total_steps, low=1)

    def _value(self, t: int) -> float:
        return self.start + (self.end - self.start) * (min(t, self.total_steps) / self.total_steps)

    def _config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "total_steps": self.total_steps}

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


def linear(start: float, end: float, total_steps: int) -> Schedule:
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
    return _Linear(start, end, total_steps)


class _Cosine(Schedule):
    name = "cosine"

    def __init__(self, peak: float, total_steps: int, final: float = 0.0) -> None:
        self.peak = _nonneg("peak", peak)
        self.total_steps = check_int("total_steps", total_steps, low=1)
        self.final = _nonneg("final", final)

    def _value(self, t: int) -> float:
        if t >= self.total_steps:
            return self.final
        return _cos_anneal(self.peak, self.final, t / self.total_steps)

    def _config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "final": self.final}

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.total_steps], until)


def cosine(peak: float, total_steps: int, final: float = 0.0) -> Schedule:
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
        final: the value from step T on, >= 0.

    Returns:
        The schedule (monotone from ``peak`` to ``final``).

    Example:
        >>> s = cosine(peak=1.0, total_steps=100, final=0.1)
        >>> s(0), round(s(50), 6), s(100), s(1000)
        (1.0, 0.55, 0.1, 0.1)
    """
    return _Cosine(peak, total_steps, final)


class _CosineRestarts(Schedule):
    name = "cosine_restarts"

    def __init__(
        self,
        peak: float,
        period: int,
        final: float = 0.0,
        period_mult: float = 1.0,
        peak_mult: float = 1.0,
    ) -> None:
        self.peak = _nonneg("peak", peak)
        self.period = check_int("period", period, low=1)
        self.final = check_real("final", final, low=0.0, high=self.peak)
        self.period_mult = check_real("period_mult", period_mult, low=1.0)
        self.peak_mult = check_real("peak_mult", peak_mult, low=0.0, high=1.0, low_open=True)

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

    def _config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "period": self.period,
            "final": self.final,
            "period_mult": self.period_mult,
            "peak_mult": self.peak_mult,
        }

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


def cosine_restarts(
    peak: float,
    period: int,
    final: float = 0.0,
    period_mult: float = 1.0,
    peak_mult: float = 1.0,
) -> Schedule:
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
    return _CosineRestarts(peak, period, final, period_mult, peak_mult)


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range", "square")


class _Cyclic(Schedule):
    name = "cyclic"

    def __init__(
        self,
        low: float,
        high: float,
        step_size_up: int,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
    ) -> None:
        self.low = _nonneg("low", low)
        self.high = check_real("high", high, low=self.low)
        self.step_size_up = check_int("step_size_up", step_size_up, low=1)
        down = self.step_size_up if step_size_down is None else step_size_down
        self.step_size_down = check_int("step_size_down", down, low=1)
        self.mode = check_choice("mode", mode, _CYCLIC_MODES)
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)
        if self.mode != "exp_range" and self.gamma != 1.0:
            raise ValueError(f"gamma is only used with mode='exp_range'; got gamma={gamma!r}")

    def _value(self, t: int) -> float:
        up, total = self.step_size_up, self.step_size_up + self.step_size_down
        cycle, pos = divmod(t, total)
        if self.mode == "square":
            return self.high if pos < up else self.low
        frac = pos / up if pos <= up else (total - pos) / self.step_size_down
        if self.mode == "triangular2":
            amp = 0.5**cycle
        elif self.mode == "exp_range":
            amp = self.gamma**t
        else:
            amp = 1.0
        return self.low + (self.high - self.low) * frac * amp

    def _config(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "step_size_up": self.step_size_up,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }

    def key_steps(self, until: int) -> list[int]:
        total = self.step_size_up + self.step_size_down
        stop = min(until, total * (_MAX_KEY_STEPS // 2 + 1))
        out = [c + self.step_size_up for c in range(0, stop, total)]
        out += list(range(total, stop, total))
        return _in_range(out, until)


def cyclic(
    low: float,
    high: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
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
    return _Cyclic(low, high, step_size_up, step_size_down, mode, gamma)


_ANNEALS = ("cos", "linear")


def _one_cycle_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """torch's OneCycleLR phase end steps (float, as in its implementation)."""
    if three_phase:
        return [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1.0]
    return [pct_start * total_steps - 1, total_steps - 1.0]


def _one_cycle_value(
    t: int, ends: list[float], values: list[tuple[float, float]], anneal: str
) -> float:
    if t >= ends[-1]:
        return values[-1][1]
    start = 0.0
    for end, (a, b) in zip(ends, values, strict=True):
        if t <= end:
            pct = (t - start) / (end - start)
            return _cos_anneal(a, b, pct) if anneal == "cos" else _linear_anneal(a, b, pct)
        start = end
    raise AssertionError("unreachable: t < ends[-1]")  # pragma: no cover


def _check_one_cycle_shape(
    total_steps: Any, pct_start: Any, anneal: Any, three_phase: Any
) -> tuple[int, float, str, bool]:
    T = check_int("total_steps", total_steps, low=2)
    p = check_real("pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
    check_choice("anneal", anneal, _ANNEALS)
    check_bool("three_phase", three_phase)
    if p * T <= 1:
        raise ValueError(
            f"pct_start must be > 1/total_steps = {1 / T:g} so that the warmup phase has at "
            f"least one step; got {pct_start!r}"
        )
    if three_phase and p > 0.5:
        raise ValueError(f"pct_start must be in (0, 0.5] when three_phase=True; got {pct_start!r}")
    return T, p, anneal, three_phase


class _OneCycle(Schedule):
    name = "one_cycle"

    def __init__(
        self,
        peak: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
    ) -> None:
        self.peak = _positive("peak", peak)
        shape = _check_one_cycle_shape(total_steps, pct_start, anneal, three_phase)
        self.total_steps, self.pct_start, self.anneal, self.three_phase = shape
        self.div_factor = check_real("div_factor", div_factor, low=1.0)
        self.final_div_factor = check_real("final_div_factor", final_div_factor, low=1.0)
        initial = self.peak / self.div_factor
        final = initial / self.final_div_factor
        self._ends = _one_cycle_ends(self.total_steps, self.pct_start, self.three_phase)
        if self.three_phase:
            self._values = [(initial, self.peak), (self.peak, initial), (initial, final)]
        else:
            self._values = [(initial, self.peak), (self.peak, final)]

    def _value(self, t: int) -> float:
        return _one_cycle_value(t, self._ends, self._values, self.anneal)

    def _config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }

    def key_steps(self, until: int) -> list[int]:
        return _in_range([math.ceil(e) for e in self._ends], until)


def one_cycle(
    peak: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> Schedule:
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
    return _OneCycle(
        peak, total_steps, pct_start, div_factor, final_div_factor, anneal, three_phase
    )


class _OneCycleMomentum(Schedule):
    name = "one_cycle_momentum"

    def __init__(
        self,
        total_steps: int,
        pct_start: float = 0.3,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        anneal: str = "cos",
        three_phase: bool = False,
    ) -> None:
        shape = _check_one_cycle_shape(total_steps, pct_start, anneal, three_phase)
        self.total_steps, self.pct_start, self.anneal, self.three_phase = shape
        self.base_momentum = check_real("base_momentum", base_momentum, low=0.0, high=1.0)
        self.max_momentum = check_real(
            "max_momentum", max_momentum, low=self.base_momentum, high=1.0
        )
        lo, hi = self.base_momentum, self.max_momentum
        self._ends = _one_cycle_ends(self.total_steps, self.pct_start, self.three_phase)
        if self.three_phase:
            self._values = [(hi, lo), (lo, hi), (hi, hi)]
        else:
            self._values = [(hi, lo), (lo, hi)]

    def _value(self, t: int) -> float:
        return _one_cycle_value(t, self._ends, self._values, self.anneal)

    def _config(self) -> dict[str, Any]:
        return {
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }

    def key_steps(self, until: int) -> list[int]:
        return _in_range([math.ceil(e) for e in self._ends], until)


def one_cycle_momentum(
    total_steps: int,
    pct_start: float = 0.3,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    anneal: str = "cos",
    three_phase: bool = False,
) -> Schedule:
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
    return _OneCycleMomentum(
        total_steps, pct_start, base_momentum, max_momentum, anneal, three_phase
    )


class _InverseSqrt(Schedule):
    name = "inverse_sqrt"

    def __init__(self, peak: float, warmup_steps: int) -> None:
        self.peak = _nonneg("peak", peak)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=1)

    def _value(self, t: int) -> float:
        n, w = t + 1, self.warmup_steps
        if n <= w:
            return self.peak * n / w
        return self.peak * math.sqrt(w / n)

    def _config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}

    def key_steps(self, until: int) -> list[int]:
        return _in_range([self.warmup_steps - 1], until)


def inverse_sqrt(peak: float, warmup_steps: int) -> Schedule:
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
    return _InverseSqrt(peak, warmup_steps)


_DECAY_SHAPES = ("linear", "cosine", "1-sqrt", "exponential")


class _WSD(Schedule):
    name = "wsd"

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int,
        decay_steps: int,
        final: float = 0.0,
        decay_shape: str = "linear",
    ) -> None:
        self.peak = _positive("peak", peak)
        self.total_steps = check_int("total_steps", total_steps, low=1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
        self.decay_steps = check_int("decay_steps", decay_steps, low=0)
        if self.warmup_steps + self.decay_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps + decay_steps must be <= total_steps = {self.total_steps}; "
                f"got {self.warmup_steps} + {self.decay_steps}"
            )
        self.final = check_real("final", final, low=0.0, high=self.peak)
        self.decay_shape = check_choice("decay_shape", decay_shape, _DECAY_SHAPES)
        if self.decay_shape == "exponential" and self.final <= 0.0:
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

    def _config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "final": self.final,
            "decay_shape": self.decay_shape,
        }

    def key_steps(self, until: int) -> list[int]:
        T = self.total_steps
        return _in_range([self.warmup_steps, T - self.decay_steps, T], until)


def wsd(
    peak: float,
    total_steps: int,
    warmup_steps: int,
    decay_steps: int,
    final: float = 0.0,
    decay_shape: str = "linear",
) -> Schedule:
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
    return _WSD(peak, total_steps, warmup_steps, decay_steps, final, decay_shape)


# ----------------------------------------------------------------------------- combinators
_WARMUP_SHAPES = ("linear", "exponential")


class _Warmup(Schedule):
    name = "warmup"

    def __init__(
        self,
        schedule: ScheduleLike,
        steps: int,
        start_factor: float = 0.0,
        shape: str = "linear",
    ) -> None:
        self.schedule = _as_schedule(schedule, "schedule")
        self.steps = check_int("steps", steps, low=0)
        self.shape = check_choice("shape", shape, _WARMUP_SHAPES)
        if self.shape == "exponential":
            self.start_factor = check_real(
                "start_factor", start_factor, low=0.0, high=1.0, low_open=True
            )
        else:
            self.start_factor = check_real("start_factor", start_factor, low=0.0, high=1.0)

    def _value(self, t: int) -> float:
        if t >= self.steps:
            return self.schedule._value(t - self.steps)
        # ramp toward the wrapped schedule's first value (ReduceOnPlateau: its current lr)
        return _ramp_factor(t, self.steps, self.start_factor, self.shape) * self.schedule._value(0)

    def children(self) -> tuple[Schedule, ...]:
        return (self.schedule,)

    def _config(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "steps": self.steps,
            "start_factor": self.start_factor,
            "shape": self.shape,
        }

    def key_steps(self, until: int) -> list[int]:
        w = self.steps
        inner = self.schedule.key_steps(until - w) if until > w else []
        return _in_range([w, *(w + k for k in inner)], until)


def warmup(
    schedule: ScheduleLike, steps: int, start_factor: float = 0.0, shape: str = "linear"
) -> Schedule:
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
        >>> s = warmup(constant(1.0), steps=4)
        >>> [s(t) for t in range(6)]
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
        >>> s = warmup(constant(1.0), steps=1, start_factor=0.01, shape="exponential")
        >>> [round(s(t), 6) for t in range(3)]
        [0.1, 1.0, 1.0]
    """
    return _Warmup(schedule, steps, start_factor, shape)


class _Join(Schedule):
    name = "join"

    def __init__(self, schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> None:
        if not isinstance(schedules, Sequence) or isinstance(schedules, (str, bytes)):
            raise TypeError(f"schedules must be a list of schedules, got {schedules!r}")
        if len(schedules) == 0:
            raise ValueError("schedules must hold at least one schedule, got []")
        self.schedules = tuple(_as_schedule(s, "schedules") for s in schedules)
        if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Iterable):
            raise TypeError(f"boundaries must be a list of ints, got {boundaries!r}")
        bs = [check_int("boundaries", b, low=1) for b in boundaries]
        if len(bs) != len(self.schedules) - 1:
            raise ValueError(
                f"boundaries must hold len(schedules) - 1 = {len(self.schedules) - 1} steps, "
                f"got {len(bs)}"
            )
        if any(b <= a for a, b in itertools.pairwise(bs)):
            raise ValueError(f"boundaries must be strictly increasing ints >= 1, got {bs}")
        self.boundaries = tuple(bs)

    def _value(self, t: int) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        start = self.boundaries[i - 1] if i > 0 else 0
        return self.schedules[i]._value(t - start)

    def children(self) -> tuple[Schedule, ...]:
        return self.schedules

    def _config(self) -> dict[str, Any]:
        return {"schedules": list(self.schedules), "boundaries": list(self.boundaries)}

    def key_steps(self, until: int) -> list[int]:
        starts = [0, *self.boundaries]
        ends = [*self.boundaries, until]
        out: list[int] = []
        for s, a, b in zip(self.schedules, starts, ends, strict=True):
            if a >= until:
                break
            out += [a, *(a + k for k in s.key_steps(min(b, until) - a))]
        return _in_range(out, until)


def join(schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules`` one after another, switching at ``boundaries``.

    Piece ``i`` is active on ``[b_{i-1}, b_i)`` (with ``b_{-1} = 0``) and sees its own
    local step ``t - b_{i-1}``; the last piece runs forever.

    Args:
        schedules: k >= 1 schedules.
        boundaries: k - 1 strictly increasing steps >= 1.

    Returns:
        The schedule.

    Example:
        >>> s = join([linear(0.0, 1.0, 2), cosine(1.0, 4)], boundaries=[2])
        >>> [round(s(t), 3) for t in range(7)]
        [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    return _Join(schedules, boundaries)


class _Scale(Schedule):
    name = "scale"

    def __init__(self, schedule: ScheduleLike, factor: float) -> None:
        self.schedule = _as_schedule(schedule, "schedule")
        self.factor = _nonneg("factor", factor)

    def _value(self, t: int) -> float:
        return self.factor * self.schedule._value(t)

    def children(self) -> tuple[Schedule, ...]:
        return (self.schedule,)

    def _config(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "factor": self.factor}

    def key_steps(self, until: int) -> list[int]:
        return self.schedule.key_steps(until)


def scale(schedule: ScheduleLike, factor: float) -> Schedule:
    """Multiply a schedule by a constant: ``η_t = factor · s(t)``.

    Useful to reuse one shape at several peaks (per-layer lrs, a weight-decay schedule
    that follows the lr).

    Args:
        schedule: the schedule to scale.
        factor: the multiplier, >= 0.

    Returns:
        The schedule.

    Example:
        >>> scale(linear(1.0, 0.0, 10), 0.1)(5)
        0.05
    """
    return _Scale(schedule, factor)


class _Clamp(Schedule):
    name = "clamp"

    def __init__(self, schedule: ScheduleLike, low: float = 0.0, high: float | None = None) -> None:
        self.schedule = _as_schedule(schedule, "schedule")
        self.low = _nonneg("low", low)
        self.high = None if high is None else check_real("high", high, low=self.low)

    def _value(self, t: int) -> float:
        v = max(self.schedule._value(t), self.low)
        return v if self.high is None else min(v, self.high)

    def children(self) -> tuple[Schedule, ...]:
        return (self.schedule,)

    def _config(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "low": self.low, "high": self.high}

    def key_steps(self, until: int) -> list[int]:
        return self.schedule.key_steps(until)


def clamp(schedule: ScheduleLike, low: float = 0.0, high: float | None = None) -> Schedule:
    """Keep a schedule inside ``[low, high]``: ``η_t = min(max(s(t), low), high)``.

    Args:
        schedule: the schedule to clamp.
        low: the floor, >= 0.
        high: the ceiling, >= low, or ``None`` for none.

    Returns:
        The schedule.

    Example:
        >>> s = clamp(exponential(1.0, rate=1.0), low=0.1)
        >>> s(0), s(10)
        (1.0, 0.1)
    """
    return _Clamp(schedule, low, high)


# ----------------------------------------------------------------------------- plateau
class ReduceOnPlateau(Schedule):
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

    name = "reduce_on_plateau"

    def __init__(
        self,
        initial: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.initial = _positive("initial", initial)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.factor = check_real("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, low=0)
        self.threshold = _nonneg("threshold", threshold)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int("cooldown", cooldown, low=0)
        self.min_lr = check_real("min_lr", min_lr, low=0.0, high=self.initial)
        self.eps = _nonneg("eps", eps)
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

    def _config(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "eps": self.eps,
        }

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
        self.lr = _nonneg("lr", state["lr"])
        self.best = float(state["best"])
        self.num_bad = check_int("num_bad", state["num_bad"], low=0)
        self.cooldown_counter = check_int("cooldown_counter", state["cooldown_counter"], low=0)
        self.num_updates = check_int("num_updates", state["num_updates"], low=0)


# ----------------------------------------------------------------------------- serialization
_REGISTRY: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step_decay": step_decay,
    "multistep": multistep,
    "exponential": exponential,
    "polynomial": polynomial,
    "linear": linear,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
    "cyclic": cyclic,
    "one_cycle": one_cycle,
    "one_cycle_momentum": one_cycle_momentum,
    "inverse_sqrt": inverse_sqrt,
    "wsd": wsd,
    "warmup": warmup,
    "join": join,
    "scale": scale,
    "clamp": clamp,
    "reduce_on_plateau": ReduceOnPlateau,
}

_DEFAULTS: dict[str, dict[str, Any]] = {}


def _defaults(name: str) -> dict[str, Any]:
    if name not in _DEFAULTS:
        factory = _REGISTRY.get(name)
        params = inspect.signature(factory).parameters.values() if factory else ()
        _DEFAULTS[name] = {p.name: p.default for p in params if p.default is not p.empty}
    return _DEFAULTS[name]


def to_config(schedule: Schedule) -> dict[str, Any]:
    """A schedule as a plain dict (JSON/TOML-ready); the inverse of :func:`from_config`.

    Args:
        schedule: a bergab schedule (plain functions cannot be serialized).

    Returns:
        ``{"type": name, **arguments}``, nested for combinators.

    Example:
        >>> to_config(warmup(cosine(1.0, 100), steps=10))["schedule"]
        {'type': 'cosine', 'peak': 1.0, 'total_steps': 100, 'final': 0.0}
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a bergab schedule, got {schedule!r}")
    return schedule.to_config()


def _decode(value: Any) -> Any:
    if isinstance(value, Mapping) and "type" in value:
        return from_config(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def from_config(config: Mapping[str, Any]) -> Schedule:
    """Build a schedule from the dict :func:`to_config` writes (or a JSON/TOML table).

    The ``"type"`` key names the schedule (``"cosine"``, ``"warmup"``, ...; the names of
    the functions of this module, ``"reduce_on_plateau"`` for :class:`ReduceOnPlateau`);
    the other keys are its arguments. Nested dicts with a ``"type"`` are schedules. No
    code is evaluated: types are looked up in a fixed registry.

    Args:
        config: the mapping.

    Returns:
        The schedule; its arguments are validated as in the function call.

    Raises:
        ValueError: unknown type, unknown or missing argument, or an invalid value.

    Example:
        >>> s = from_config({"type": "warmup", "steps": 10,
        ...                  "schedule": {"type": "cosine", "peak": 1.0, "total_steps": 100}})
        >>> s
        warmup(schedule=cosine(peak=1.0, total_steps=100), steps=10)
        >>> from_config(s.to_config())(50) == s(50)
        True
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (a dict), got {type(config).__name__}")
    kind = config.get("type")
    if kind is None:
        raise ValueError(
            "config must have a 'type' key naming the schedule, one of "
            + ", ".join(sorted(_REGISTRY))
        )
    if kind not in _REGISTRY:
        raise ValueError(f"type must be one of {', '.join(sorted(_REGISTRY))}; got {kind!r}")
    factory = _REGISTRY[kind]
    params = inspect.signature(factory).parameters
    args = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ValueError(
            f"unknown argument {unknown[0]!r} for schedule type {kind!r}; "
            f"allowed: {', '.join(params)}"
        )
    missing = [n for n, p in params.items() if p.default is p.empty and n not in args]
    if missing:
        raise ValueError(f"missing argument {missing[0]!r} for schedule type {kind!r}")
    return factory(**{k: _decode(v) for k, v in args.items()})


# ----------------------------------------------------------------------------- torch adapter
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
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.Adam([w], lr=1e-3)
        >>> lr = attach(opt, one_cycle(peak=1e-2, total_steps=100))
        >>> mom = attach(opt, one_cycle_momentum(total_steps=100), key="beta1")
        >>> round(opt.param_groups[0]["lr"], 8), opt.param_groups[0]["betas"]
        (0.0004, (0.95, 0.999))
    """
    return ScheduleLR(optimizer, schedule, key)


# ----------------------------------------------------------------------------- plotting
def plot(
    schedule: ScheduleLike,
    steps: int,
    path: str | Path | None = None,
    *,
    ax: Any = None,
    log: bool = False,
    label: str | None = None,
) -> Any:
    """Plot ``schedule(t)`` for ``t = 0 .. steps - 1`` (needs matplotlib: ``bergab[plot]``).

    Args:
        schedule: the schedule.
        steps: the number of steps to plot, an int >= 1.
        path: save the figure there (PNG, SVG, PDF by extension; parent folders are
            created) and close it. ``None``: leave it open.
        ax: draw into these matplotlib axes instead of a new figure.
        log: logarithmic y axis.
        label: the legend label (default: none, the schedule is the title).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> fig = plot(cosine(1.0, 100), steps=120)
        >>> len(fig.axes[0].lines[0].get_xdata())
        120
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    from bergab.plotting import pyplot

    sched = _as_schedule(schedule, "schedule")
    n = check_int("steps", steps, low=1)
    check_bool("log", log)
    plt = pyplot()
    values = [sched(t) for t in range(n)]
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    else:
        fig = ax.figure
    ax.plot(range(n), values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if log:
        ax.set_yscale("log")
    if label is not None:
        ax.legend()
    elif own:
        title = repr(sched)
        ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=8)
    ax.grid(alpha=0.3)
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        if own:
            plt.close(fig)
    return fig
