"""The :class:`Schedule` base class, the registry of schedule types and the configs.

A schedule type is one class: ``class _Cosine(Schedule, name="cosine")`` registers it
under ``"cosine"``, its annotated class attributes declare its arguments (in call order,
each with its check and default; the specs are in ``_declare``), and it implements
``_value(t)``. From that one declaration come the constructor (checks in declaration
order, then ``_post_init()``), the public function (:func:`factory`), ``to_config`` /
``from_config``, ``repr`` and ``children()``. See the package docstring ("Adding a
schedule").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, ParamSpec, TypeAlias, dataclass_transform

from bergab._validate import check_int, is_schedule
from bergab.schedules._declare import (
    _MISSING,
    Arg,
    _declared_fields,
    _Field,
    _generate,
    _make_init,
    _parameters,
    arg,
    choice,
    flag,
    integer,
    real,
)

# Periodic schedules (step_decay, cyclic, restarts) list at most this many key steps.
_MAX_KEY_STEPS = 10_000


# ----------------------------------------------------------------------------- helpers
def _check_step(step: Any) -> int:
    """The step as an int >= 0 (0-d tensors and numpy integers are accepted)."""
    if hasattr(step, "item") and getattr(step, "ndim", 1) == 0:
        step = step.item()
    return check_int("step", step, low=0)


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """Half-cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _linear_anneal(start: float, end: float, pct: float) -> float:
    """Straight line from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return (end - start) * pct + start


def _in_range(steps: Iterable[int], until: int) -> list[int]:
    return sorted({s for s in steps if 0 < s < until})


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


# ----------------------------------------------------------------------------- nested schedules
def schedule_arg(*, default: Any = _MISSING) -> Any:
    """A nested schedule (any ``step -> value`` callable is wrapped); it is a child."""
    return Arg(lambda schedule, name, value: _as_schedule(value, name), default, nested=True)


def schedule_list(*, default: Any = _MISSING) -> Any:
    """A non-empty list of nested schedules (stored as a tuple); they are children."""

    def check(schedule: Any, name: str, value: Any) -> tuple[Schedule, ...]:
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a list of schedules, got {value!r}")
        if len(value) == 0:
            raise ValueError(f"{name} must hold at least one schedule, got []")
        return tuple(_as_schedule(s, name) for s in value)

    return Arg(check, default, nested=True)


# ----------------------------------------------------------------------------- registry
#: Every registered schedule type by its config ``"type"``; filled by ``__init_subclass__``.
_REGISTRY: dict[str, type[Schedule]] = {}


def _register(cls: type[Schedule], name: str) -> None:
    known = _REGISTRY.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):  # the same class again (a module reload) just replaces itself
        raise ValueError(
            f"schedule type {name!r} is already registered by "
            f"{known.__module__}.{known.__qualname__}"
        )
    cls.name = name
    _REGISTRY[name] = cls


# ----------------------------------------------------------------------------- base class
@dataclass_transform(
    eq_default=False,
    field_specifiers=(arg, real, integer, choice, flag, schedule_arg, schedule_list),
)
class Schedule:
    """Base class of every bergab schedule: a callable ``step -> value`` in closed form.

    A schedule type declares its arguments as annotated class attributes and implements
    ``_value(t)`` (``t`` already checked to be an int >= 0); the class keyword ``name=``
    registers it for :func:`from_config`. Calling a schedule validates the step, so a
    negative or non-integer step raises instead of extrapolating silently.

    Methods every schedule has: ``to_config()`` (a JSON/TOML-ready dict, inverse of
    :func:`from_config`), ``key_steps(until)`` (the steps where a phase begins, for tables
    and plots), and ``update()`` / ``state_dict()`` / ``load_state_dict()``, which are
    no-ops or errors except for metric-driven schedules (:class:`ReduceOnPlateau`) and
    combinators that hold one.

    Example:
        >>> from bergab.schedules import cosine
        >>> s = cosine(peak=0.1, total_steps=10)
        >>> isinstance(s, Schedule), s(0), s(10)
        (True, 0.1, 0.0)
        >>> s
        cosine(peak=0.1, total_steps=10)
    """

    #: The registry name of the schedule type (the ``"type"`` of its config).
    name: ClassVar[str] = "schedule"
    #: The declared arguments, in call order (bases' first, as in dataclasses).
    _fields: ClassVar[tuple[_Field, ...]] = ()
    #: The declared defaults, by argument name (``repr`` leaves these values out).
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        """Collect the declared arguments, build ``__init__`` and register ``name``."""
        super().__init_subclass__(**kwargs)
        own = _declared_fields(cls)
        if own or name is not None:
            inherited = {
                f.name: f
                for base in reversed(cls.__mro__[1:])
                for f in base.__dict__.get("_fields", ())
            }
            fields = {**inherited, **own}  # a redeclared argument keeps its place
            cls._fields = tuple(fields.values())
            cls._defaults = {f.name: f.default for f in cls._fields if f.default is not _MISSING}
            if "__init__" not in cls.__dict__:
                cls.__init__ = _make_init(cls)  # type: ignore[method-assign]
        if name is not None:
            _register(cls, name)

    def __call__(self, step: int) -> float:
        """The value for the optimizer step that follows ``step`` completed steps."""
        if type(step) is int and step >= 0:  # the common case, checked without a call
            return self._value(step)
        return self._value(_check_step(step))

    def _value(self, t: int) -> float:
        raise NotImplementedError

    def _post_init(self) -> None:
        """Checks across arguments and derived values; runs after the argument checks."""

    def _config(self) -> dict[str, Any]:
        """The constructor arguments by name (schedules with hand-written ``__init__``
        override this)."""
        return {f.name: getattr(self, f.name) for f in self._fields}

    def children(self) -> tuple[Schedule, ...]:
        """The schedules this one is built from (empty for a basic schedule).

        Example:
            >>> from bergab.schedules import constant, warmup
            >>> len(warmup(constant(1.0), steps=3).children())
            1
        """
        out: list[Schedule] = []
        for f in self._fields:
            if f.nested:
                value = getattr(self, f.name)
                out.extend(value if isinstance(value, tuple) else (value,))
        return tuple(out)

    def key_steps(self, until: int) -> list[int]:
        """Steps in ``(0, until)`` where a phase begins or ends (a boundary, a peak).

        Example:
            >>> from bergab.schedules import wsd
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
            >>> from bergab.schedules import constant, scale
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
        defaults = self._defaults
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
            >>> from bergab.schedules import ReduceOnPlateau, constant, warmup
            >>> constant(0.1).stateful, warmup(ReduceOnPlateau(0.1), steps=5).stateful
            (False, True)
        """
        return any(c.stateful for c in self.children())

    def update(self, metric: float) -> None:
        """Report a metric to every metric-driven schedule inside this one.

        Raises:
            TypeError: when no schedule inside is metric-driven.

        Example:
            >>> from bergab.schedules import ReduceOnPlateau, warmup
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
            >>> from bergab.schedules import cosine
            >>> cosine(1.0, 10).state_dict()
            {}
        """
        if not self.stateful:
            return {}
        return {"children": [c.state_dict() for c in self.children()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Example:
            >>> from bergab.schedules import ReduceOnPlateau
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


def _as_schedule(value: Any, name: str) -> Schedule:
    """A bergab schedule as is; any other callable wrapped (it then can't be serialized)."""
    if isinstance(value, Schedule):
        return value
    if is_schedule(value):
        return _Function(value)
    raise TypeError(f"{name} must be a schedule (a callable step -> value), got {value!r}")


# ----------------------------------------------------------------------------- factories
P = ParamSpec("P")


def factory(cls: Callable[P, Schedule]) -> Callable[P, Schedule]:
    """The public function that builds a registered schedule class: ``cosine = factory(_Cosine)``.

    It is named after the registry name, takes the declared arguments (same order,
    defaults and annotations) and carries the class docstring, whose examples are the
    function's doctests.
    """
    if not (isinstance(cls, type) and _REGISTRY.get(getattr(cls, "name", "")) is cls):
        raise TypeError(f"factory() takes a schedule class registered with name=..., got {cls!r}")
    fields = cls._fields
    params, namespace = _parameters(fields, cls.__qualname__)
    names = ", ".join(f.name for f in fields)
    source = f"def {cls.name}({params}):\n    return _cls({names})\n"
    fn = _generate(source, cls.name, {**namespace, "_cls": cls})
    fn.__module__ = cls.__module__
    fn.__doc__ = cls.__doc__
    fn.__annotations__ = {f.name: f.annotation for f in fields} | {"return": "Schedule"}
    return fn


# ----------------------------------------------------------------------------- configs
def to_config(schedule: Schedule) -> dict[str, Any]:
    """A schedule as a plain dict (JSON/TOML-ready); the inverse of :func:`from_config`.

    Args:
        schedule: a bergab schedule (plain functions cannot be serialized).

    Returns:
        ``{"type": name, **arguments}``, nested for combinators.

    Example:
        >>> from bergab.schedules import cosine, warmup
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
    cls = _REGISTRY[kind]
    names = [f.name for f in cls._fields]
    args = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(set(args) - set(names))
    if unknown:
        raise ValueError(
            f"unknown argument {unknown[0]!r} for schedule type {kind!r}; "
            f"allowed: {', '.join(names)}"
        )
    missing = [f.name for f in cls._fields if f.default is _MISSING and f.name not in args]
    if missing:
        raise ValueError(f"missing argument {missing[0]!r} for schedule type {kind!r}")
    return cls(**{k: _decode(v) for k, v in args.items()})
