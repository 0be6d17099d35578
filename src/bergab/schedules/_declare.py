"""How a schedule declares its arguments: the specs, and the code generated from them.

In a schedule class, ``peak: float = real(low=0.0)`` declares the argument ``peak``: its
annotation (the type callers pass), its check and its default. ``Schedule``'s
``__init_subclass__`` collects the declarations (:func:`_declared_fields`) and compiles
``__init__`` from them (:func:`_make_init`); :func:`~bergab.schedules._base.factory`
compiles the public function the same way.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from bergab._validate import check_bool, check_choice, check_int, check_real

if TYPE_CHECKING:
    from bergab.schedules._base import Schedule

# Marks an argument without a default (None is a real default: "not given").
_MISSING: Any = object()

#: A check: ``check(schedule, name, value) -> stored value``; it raises ``TypeError`` /
#: ``ValueError`` naming the argument. ``schedule`` already holds the arguments declared
#: before this one (checked), so a bound can refer to them.
Check: TypeAlias = Callable[[Any, str, Any], Any]


# ----------------------------------------------------------------------------- arguments
class Arg(NamedTuple):
    """One declared argument: its check (``None``: stored as given) and its default."""

    check: Check | None
    default: Any = _MISSING
    #: Whether the argument holds nested schedules (they are the schedule's children).
    nested: bool = False


def arg(check: Check | None = None, *, default: Any = _MISSING) -> Any:
    """An argument checked by ``check(schedule, name, value)`` (``None``: not checked here,
    e.g. because its range depends on a later argument; check it in ``_post_init``).

    A default of ``None`` means "not given": ``None`` then skips the check and is left
    out of the config.
    """
    return Arg(check, default)


def _bound(schedule: Any, bound: float | str | None) -> float | None:
    """A numeric bound, or the value of the (earlier, checked) argument it names."""
    return getattr(schedule, bound) if isinstance(bound, str) else bound


def real(
    low: float | str | None = None,
    high: float | str | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    default: Any = _MISSING,
) -> Any:
    """A finite real in the interval (stored as float); a str bound names an earlier argument.

    Example: ``final: float = real(low=0.0, high="peak", default=0.0)`` is "in [0, peak]".
    """

    if not isinstance(low, str) and not isinstance(high, str):  # fixed bounds: no lookups
        return Arg(
            lambda schedule, name, value: check_real(
                name, value, low=low, high=high, low_open=low_open, high_open=high_open
            ),
            default,
        )

    def check(schedule: Any, name: str, value: Any) -> float:
        lo, hi = _bound(schedule, low), _bound(schedule, high)
        try:
            return check_real(name, value, low=lo, high=hi, low_open=low_open, high_open=high_open)
        except ValueError as exc:
            # name the argument a bound comes from: "final must be in [0, peak] = [0, 0.1]"
            left = "(" if low_open or low is None else "["
            right = ")" if high_open or high is None else "]"
            lo_s = "-inf" if low is None else low if isinstance(low, str) else f"{low:g}"
            hi_s = "inf" if high is None else high if isinstance(high, str) else f"{high:g}"
            message = str(exc).replace(
                " must be in ", f" must be in {left}{lo_s}, {hi_s}{right} = "
            )
            raise ValueError(message) from None

    return Arg(check, default)


def integer(low: int | None = None, *, default: Any = _MISSING) -> Any:
    """An int ``>= low`` (integral floats are accepted and stored as int)."""
    return Arg(lambda schedule, name, value: check_int(name, value, low=low), default)


def choice(*choices: str, default: Any = _MISSING) -> Any:
    """One of ``choices`` (the error lists them in this order)."""
    return Arg(lambda schedule, name, value: check_choice(name, value, choices), default)


def flag(*, default: Any = _MISSING) -> Any:
    """``True`` or ``False`` (not merely truthy)."""
    return Arg(lambda schedule, name, value: check_bool(name, value), default)


# ----------------------------------------------------------------------------- lists of steps
def _int_list(name: str, value: Any) -> list[int]:
    """A list of ints >= 1 (milestones, boundaries); a str or a non-iterable is a TypeError."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of ints, got {value!r}")
    return [check_int(name, v, low=1) for v in value]


def _check_increasing(name: str, ints: list[int]) -> None:
    if any(b <= a for a, b in itertools.pairwise(ints)):
        raise ValueError(f"{name} must be strictly increasing ints >= 1, got {ints}")


# ----------------------------------------------------------------------------- declarations
class _Field(NamedTuple):
    """A declared argument of one schedule class."""

    name: str
    check: Check | None
    default: Any
    nested: bool
    annotation: str


def _declared_fields(cls: type) -> dict[str, _Field]:
    """The arguments declared in ``cls``'s own body: annotated attributes holding an Arg.

    The Arg objects are removed from the class (instances hold the checked values). Any
    other annotated attribute is an error, since type checkers (``dataclass_transform``)
    would take it for an argument too; instance state is set in ``_post_init``.
    """
    fields: dict[str, _Field] = {}
    for key, annotation in inspect.get_annotations(cls).items():
        spec = cls.__dict__.get(key, _MISSING)
        if isinstance(spec, Arg):
            fields[key] = _Field(key, spec.check, spec.default, spec.nested, str(annotation))
            delattr(cls, key)
        elif not str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            raise TypeError(
                f"{cls.__qualname__}.{key}: a schedule's annotated class attributes are its "
                "arguments and need a spec (real(), integer(), arg(), ...); set other "
                "attributes in _post_init"
            )
    return fields


def _parameters(fields: Sequence[_Field], owner: str) -> tuple[str, dict[str, Any]]:
    """The parameter list ``"a, b=_default_b"`` of the fields, and the defaults it names."""
    params, defaults = [], {}
    seen_default = False
    for f in fields:
        if f.default is _MISSING:
            if seen_default:
                raise TypeError(f"{owner}: argument {f.name!r} without a default follows one with")
            params.append(f.name)
        else:
            seen_default = True
            defaults[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    return ", ".join(params), defaults


def _generate(source: str, name: str, namespace: dict[str, Any]) -> Any:
    """Compile one generated function. Generating the source (as dataclasses does) gives it
    Python's own signature, call speed and error messages (``cosine() missing 1 required
    positional argument: 'total_steps'``)."""
    exec(source, namespace)  # the source is built from declared identifiers only
    return namespace[name]


def _make_init(cls: type[Schedule]) -> Callable[..., None]:
    """``__init__``: check and store each argument in declaration order (a check sees the
    arguments stored before it), then call ``_post_init()``. For ``cosine``::

        def __init__(self, peak, total_steps, final=_default_final):
            self.peak = _check_peak(self, 'peak', peak)
            self.total_steps = _check_total_steps(self, 'total_steps', total_steps)
            self.final = _check_final(self, 'final', final)
            self._post_init()
    """
    fields = cls._fields
    params, namespace = _parameters(fields, cls.__qualname__)
    lines = [f"def __init__(self, {params}):"]
    for f in fields:
        value = f.name
        if f.check is not None:
            namespace[f"_check_{f.name}"] = f.check
            value = f"_check_{f.name}(self, {f.name!r}, {f.name})"
            if f.default is None:  # None means "not given": stored as is, left out of configs
                value = f"None if {f.name} is None else {value}"
        lines.append(f"    self.{f.name} = {value}")
    lines.append("    self._post_init()")
    init = _generate("\n".join(lines) + "\n", "__init__", namespace)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {f.name: f.annotation for f in fields} | {"return": "None"}
    return init
