"""Search spaces for :func:`bergab.tune`: the ``[tune.space]`` table of a run config.

Each key is a key path of the run config (dotted, so quoted in TOML), or any name for a
function objective; each value is one distribution::

    [tune.space]
    "schedule.lr" = {loguniform = [1e-5, 1.0]}          # float, log scale: 0 < low < high
    "optimizer.weight_decay" = {uniform = [0.0, 0.1]}   # float: low < high; optional step
    "schedule.warmup_steps" = {int = [0, 500], step = 50}   # int; optional step or log = true
    "optimizer.name" = {choice = ["adamw", "sgd"]}      # listed values
    "optimizer.momentum" = {uniform = [0.0, 0.99], when = {"optimizer.name" = "sgd"}}

``step`` must divide ``high - low`` (Optuna would otherwise move ``high``, with a
warning). ``log = true`` on an ``int`` needs ``low >= 1`` and takes no step. ``choice``
lists distinct values of one kind: ``true``/``false``, numbers, or strings.

``when`` makes a parameter conditional: it is suggested only when every condition holds.
A condition names another parameter of the space (a ``choice`` or an ``int``: a float
never equals a listed value reliably) or a key of the run config itself, and gives a
value or a list of values (``"one of"``). The value read is the one the trial's run will
have: the parameter's suggested value, else the run config's (see
:meth:`SearchSpace.suggest`). Conditions are suggested before the parameters that depend
on them, so a cycle is refused.

Every mistake raises ``ValueError`` (``TypeError`` for a value of the wrong type) naming
the key as ``tune.space."schedule.lr"`` and what is allowed. This module does not
import Optuna: :meth:`SearchSpace.suggest` calls the methods of the trial it is given.

Example:
    >>> space = SearchSpace.from_mapping({
    ...     "schedule.lr": {"loguniform": [1e-5, 1.0]},
    ...     "optimizer.name": {"choice": ["adamw", "sgd"]},
    ...     "optimizer.momentum": {"uniform": [0.0, 0.9], "when": {"optimizer.name": "sgd"}},
    ... })
    >>> len(space), space.paths
    (3, ('schedule.lr', 'optimizer.name', 'optimizer.momentum'))
    >>> SearchSpace.from_mapping({"schedule.lr": {"loguniform": [0.0, 1.0]}})
    Traceback (most recent call last):
    ...
    ValueError: tune.space."schedule.lr": loguniform needs 0 < low < high, got [0.0, 1.0]
"""

from __future__ import annotations

import copy
import decimal
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bergab._config_errors import show
from bergab._toml import toml_string

__all__ = ["DISTRIBUTIONS", "Param", "SearchSpace", "apply"]

#: The distribution keywords of a ``[tune.space]`` entry.
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")

#: The keys each distribution takes besides its own keyword.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "loguniform": ("when",),
    "uniform": ("step", "when"),
    "int": ("step", "log", "when"),
    "choice": ("when",),
}
_ALL_OPTIONS = ("step", "log", "when")
_ALLOWED = f"one of {', '.join(DISTRIBUTIONS)}"
_EXAMPLE = '"schedule.lr" = {loguniform = [1e-5, 1.0]}'

Kind = Literal["loguniform", "uniform", "int", "choice"]
Scalar = bool | int | float | str


class _Missing:
    """A key path that a config does not set."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


# =========================================================================== helpers


def _where(path: str) -> str:
    """How a message names a space entry: ``tune.space."schedule.lr"``."""
    return f"tune.space.{toml_string(path)}"


def _check_path(what: str, path: str) -> None:
    """A dotted key path: non-empty parts without surrounding spaces."""
    parts = path.split(".")
    if any(not part or part != part.strip() for part in parts):
        raise ValueError(
            f'{what} must be a dotted key path such as "schedule.lr" (or a plain name for a '
            f"function objective), with no empty part; got {toml_string(path)}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def _scalar_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if _is_number(value) else "str"


def _same(a: Any, b: Any) -> bool:
    """Equal and of one kind: ``True`` is not ``1``, ``1`` is ``1.0``, ``"1"`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return isinstance(a, str) and isinstance(b, str) and a == b


def _shown(values: Iterable[Any]) -> str:
    return show(list(values))


def _lookup(config: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted path of a nested config, or ``_MISSING``."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _divides(low: float, high: float, step: float) -> bool:
    """Whether ``step`` divides ``high - low``, decided in decimal as Optuna decides it."""
    d_low, d_high, d_step = (decimal.Decimal(str(v)) for v in (low, high, step))
    return (d_high - d_low) % d_step == 0


# =========================================================================== one parameter


@dataclass(frozen=True)
class Param:
    """One parameter of a :class:`SearchSpace` (build them with
    :meth:`SearchSpace.from_mapping`, which checks them).

    Attributes:
        path: the key path (``"schedule.lr"``), also the Optuna parameter name.
        kind: ``"loguniform"``, ``"uniform"``, ``"int"`` or ``"choice"``.
        low: the range's low end (``None`` for a choice).
        high: the range's high end (``None`` for a choice).
        step: the spacing of a ``uniform`` or ``int`` (``None``: not given).
        log: whether the range is sampled on a log scale (``True`` for loguniform).
        choices: the listed values of a ``choice`` (``None`` otherwise).
        when: the conditions, ``((path, (value, ...)), ...)`` sorted by path: each holds
            when the value at ``path`` is one of its values.

    Example:
        >>> p = SearchSpace.from_mapping({"fit.batch_size": {"choice": [32, 64]}})["fit.batch_size"]
        >>> p.kind, p.choices
        ('choice', (32, 64))
    """

    path: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Scalar, ...] | None = None
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()

    def to_entry(self) -> dict[str, Any]:
        """The parameter's ``[tune.space]`` entry (TOML-ready: lists, not tuples).

        Example:
            >>> p = SearchSpace.from_mapping({"a": {"int": [0, 10], "step": 2}})["a"]
            >>> p.to_entry()
            {'int': [0, 10], 'step': 2}
        """
        entry: dict[str, Any] = {}
        if self.kind == "choice":
            entry["choice"] = list(self.choices or ())
        else:
            entry[self.kind] = [self.low, self.high]
        if self.step is not None:
            entry["step"] = self.step
        if self.kind == "int" and self.log:
            entry["log"] = True
        if self.when:
            entry["when"] = {
                path: values[0] if len(values) == 1 else list(values) for path, values in self.when
            }
        return entry

    @property
    def representative(self) -> Any:
        """A value the parameter can take: ``low``, or the first choice.

        Example:
            >>> SearchSpace.from_mapping({"a": {"choice": ["x", "y"]}})["a"].representative
            'x'
        """
        if self.kind == "choice":
            return (self.choices or ())[0]
        return self.low

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this parameter's value (``suggest_float``,
        ``suggest_int`` or ``suggest_categorical``, named by :attr:`path`).

        Example:
            >>> import optuna
            >>> p = SearchSpace.from_mapping({"a": {"int": [1, 64], "log": True}})["a"]
            >>> p.suggest(optuna.trial.FixedTrial({"a": 8}))
            8
        """
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices or ()))
        if self.kind == "int":
            step = 1 if self.step is None else self.step
            return trial.suggest_int(self.path, self.low, self.high, step=step, log=self.log)
        if self.kind == "loguniform":
            return trial.suggest_float(self.path, self.low, self.high, log=True)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step)

    def grid_values(self) -> list[Any]:
        """Every value the parameter takes, for a grid search.

        Raises:
            ValueError: the parameter has no listed values (a ``loguniform``, or an
                ``int``/``uniform`` without ``step``).

        Example:
            >>> SearchSpace.from_mapping({"a": {"uniform": [0.0, 0.3], "step": 0.1}})[
            ...     "a"].grid_values()
            [0.0, 0.1, 0.2, 0.3]
        """
        if self.kind == "choice":
            return list(self.choices or ())
        if self.kind in ("int", "uniform") and self.step is not None:
            assert self.low is not None
            assert self.high is not None
            if self.kind == "int":
                return list(range(int(self.low), int(self.high) + 1, int(self.step)))
            d_low, d_high, d_step = (
                decimal.Decimal(str(v)) for v in (self.low, self.high, self.step)
            )
            count = int((d_high - d_low) / d_step) + 1
            return [float(d_low + i * d_step) for i in range(count)]
        what = "loguniform" if self.kind == "loguniform" else f"{self.kind} without step"
        raise ValueError(
            f"{_where(self.path)}: grid search needs listed values: give choice, or "
            f"int/uniform with step (got {what})"
        )


def _range(where: str, kind: str, value: Any) -> tuple[Any, Any]:
    """The ``[low, high]`` of a ranged distribution, type-checked."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{where}: {kind} must be a list [low, high], got {show(value)}")
    if len(value) != 2:
        raise ValueError(f"{where}: {kind} must be a list [low, high], got {_shown(value)}")
    for v in value:
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{where}: int bounds must be integers, got {_shown(value)}")
        elif not _is_number(v):
            raise TypeError(f"{where}: {kind} bounds must be numbers, got {_shown(value)}")
        elif not math.isfinite(v):
            raise ValueError(f"{where}: {kind} bounds must be finite numbers, got {_shown(value)}")
    return value[0], value[1]


def _parse_step(where: str, kind: str, low: Any, high: Any, step: Any) -> Any:
    if kind == "int":
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"{where}: step must be an integer >= 1, got {show(step)}")
        if step < 1:
            raise ValueError(f"{where}: step must be an integer >= 1, got {show(step)}")
        if (high - low) % step:
            raise ValueError(
                f"{where}: step must divide high - low = {high - low}, got step = {step} "
                f"(the values are low, low + step, ..., high)"
            )
        return step
    if not _is_number(step):
        raise TypeError(f"{where}: step must be a number > 0, got {show(step)}")
    if not 0 < step < math.inf:
        raise ValueError(f"{where}: step must be a finite number > 0, got {show(step)}")
    if not _divides(low, high, step):
        raise ValueError(
            f"{where}: step must divide high - low = {show(float(high - low))}, got step = "
            f"{show(step)} (the values are low, low + step, ..., high)"
        )
    return float(step)


def _parse_choices(where: str, value: Any) -> tuple[Scalar, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{where}: choice must be a list of values, got {show(value)}")
    if not value:
        raise ValueError(f"{where}: choice must list at least one value, got []")
    for v in value:
        if not _is_scalar(v):
            raise TypeError(
                f"{where}: choice values must be true/false, numbers or strings, got {show(v)}"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}: choice values must be finite, got {show(v)}")
    if len({_scalar_kind(v) for v in value}) > 1:
        raise ValueError(
            f"{where}: choice values must all be of one kind (true/false, numbers, or "
            f"strings), got {_shown(value)}"
        )
    for i, v in enumerate(value):
        if any(_same(v, w) for w in value[:i]):
            raise ValueError(f"{where}: choice values must be distinct, got {_shown(value)}")
    return tuple(value)


def _parse_when(where: str, path: str, value: Any) -> tuple[tuple[str, tuple[Scalar, ...]], ...]:
    example = '{"optimizer.name" = "sgd"}'
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: when must be a table of conditions such as {example}")
    if not value:
        raise ValueError(f"{where}: when is empty; give conditions such as {example}")
    out = []
    for key, wanted in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: when keys must be key paths (strings), got {show(key)}")
        _check_path(f"{where}: when key", key)
        if key == path:
            raise ValueError(f"{where}: when refers to the parameter itself ({toml_string(key)})")
        values = list(wanted) if isinstance(wanted, list | tuple) else [wanted]
        if not values:
            raise ValueError(
                f"{where}: when {toml_string(key)} needs a value or a non-empty list of values"
            )
        for v in values:
            if not _is_scalar(v):
                raise TypeError(
                    f"{where}: when {toml_string(key)} must be a value (true/false, a number, "
                    f"a string) or a list of them, got {show(wanted)}"
                )
        out.append((key, tuple(values)))
    return tuple(sorted(out))


def _parse_param(path: str, entry: Any) -> Param:
    """One ``[tune.space]`` entry, fully checked."""
    where = _where(path)
    if not isinstance(entry, Mapping):
        raise TypeError(
            f"{where}: must be a table such as {{loguniform = [1e-5, 1.0]}}, got {show(entry)}"
        )
    for key in entry:
        if not isinstance(key, str):
            raise TypeError(f"{where}: keys must be strings, got {show(key)}")
    kinds = [k for k in entry if k in DISTRIBUTIONS]
    unknown = [k for k in entry if k not in DISTRIBUTIONS and k not in _ALL_OPTIONS]
    if unknown:
        raise ValueError(
            f"{where}: unknown key {toml_string(unknown[0])} (allowed: a distribution, "
            f"{_ALLOWED}; with step, log, when)"
        )
    if not kinds:
        got = f"only {', '.join(entry)}" if entry else "an empty table"
        raise ValueError(f"{where}: needs a distribution, {_ALLOWED}; got {got}")
    if len(kinds) > 1:
        raise ValueError(
            f"{where}: give one distribution, got {' and '.join(kinds)} (allowed: {_ALLOWED})"
        )
    kind: Kind = kinds[0]
    for key in entry:
        if key != kind and key not in _OPTIONS[kind]:
            raise ValueError(
                f"{where}: {key} is not allowed with {kind} (allowed with {kind}: "
                f"{', '.join(_OPTIONS[kind])})"
            )
    when = _parse_when(where, path, entry["when"]) if "when" in entry else ()
    if kind == "choice":
        return Param(path, kind, choices=_parse_choices(where, entry["choice"]), when=when)
    low, high = _range(where, kind, entry[kind])
    shown = _shown(entry[kind])
    if kind == "loguniform":
        if not 0 < low < high:
            raise ValueError(f"{where}: loguniform needs 0 < low < high, got {shown}")
        return Param(path, kind, float(low), float(high), log=True, when=when)
    if not low < high:
        raise ValueError(f"{where}: {kind} needs low < high, got {shown}")
    step = _parse_step(where, kind, low, high, entry["step"]) if "step" in entry else None
    if kind == "uniform":
        return Param(path, kind, float(low), float(high), step, when=when)
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise TypeError(f"{where}: log must be true or false, got {show(log)}")
    if log and low < 1:
        raise ValueError(f"{where}: int with log = true needs 1 <= low < high, got {shown}")
    if log and step not in (None, 1):
        raise ValueError(
            f"{where}: int with log = true takes no step (the log scale sets the spacing), "
            f"got step = {step}"
        )
    return Param(path, kind, low, high, step, log, when=when)


# =========================================================================== the space


class SearchSpace:
    """The parameters of a search, in ``[tune.space]``'s order.

    Build one with :meth:`from_mapping` (the TOML form), or from :class:`Param` objects
    (checked the same way). Two spaces are equal when they hold the same parameters,
    whatever their order.

    Args:
        params: the parameters.

    Raises:
        TypeError: an item is not a :class:`Param`.
        ValueError: a path twice, an inconsistent parameter, a ``when`` that never holds
            or that makes a cycle.

    Example:
        >>> space = SearchSpace([Param("a", "choice", choices=(1, 2))])
        >>> space == SearchSpace.from_mapping({"a": {"choice": [1, 2]}})
        True
    """

    def __init__(self, params: Iterable[Param]) -> None:
        items = tuple(params)
        if not items:
            raise ValueError(f"tune.space: is empty; give at least one parameter, e.g. {_EXAMPLE}")
        by_path: dict[str, Param] = {}
        for p in items:
            if not isinstance(p, Param):
                raise TypeError(f"tune.space: parameters must be Param objects, got {show(p)}")
            if not isinstance(p.path, str):
                raise TypeError(f"tune.space: paths must be strings, got {show(p.path)}")
            if p.path in by_path:
                raise ValueError(f"{_where(p.path)}: given twice")
            _check_path(f"{_where(p.path)}: the key", p.path)
            if _parse_param(p.path, p.to_entry()) != p:
                raise ValueError(
                    f"{_where(p.path)}: inconsistent fields in {p!r} (the entry "
                    f"{p.to_entry()} reads differently); build it with SearchSpace.from_mapping"
                )
            by_path[p.path] = p
        self._params = items
        self._by_path = by_path
        for p in items:
            self._check_conditions(p)
        self._order = self._topological_order()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SearchSpace:
        """Parse and check a ``[tune.space]`` table.

        Args:
            mapping: ``{key path: {distribution = ..., step = ..., log = ..., when = ...}}``.

        Raises:
            TypeError: ``mapping``, a key, an entry or a value of the wrong type.
            ValueError: an empty space, an empty or inverted range, a log range touching
                0, an unknown or a second distribution keyword, an extra key, an empty
                choice, a ``when`` on itself, on a bad path, or in a cycle. The message
                names the key: ``tune.space."schedule.lr": ...``.

        Example:
            >>> SearchSpace.from_mapping({"schedule.lr": {"normal": [0.0, 1.0]}})
            Traceback (most recent call last):
            ...
            ValueError: tune.space."schedule.lr": unknown key "normal" (allowed: a distribution, \
one of loguniform, uniform, int, choice; with step, log, when)
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"tune.space must be a table of parameters such as {_EXAMPLE}, "
                f"got {type(mapping).__name__}"
            )
        params = []
        for path, entry in mapping.items():
            if not isinstance(path, str):
                raise TypeError(
                    f'tune.space: keys must be key paths (strings such as "schedule.lr"), '
                    f"got {type(path).__name__} {path!r}"
                )
            _check_path(f"{_where(path)}: the key", path)
            params.append(_parse_param(path, entry))
        return cls(params)

    # ------------------------------------------------------------------ checks

    def _check_conditions(self, p: Param) -> None:
        """Each condition on a parameter of the space names values that parameter takes."""
        where = _where(p.path)
        for cond, wanted in p.when:
            target = self._by_path.get(cond)
            if target is None:
                continue
            if target.kind in ("loguniform", "uniform"):
                raise ValueError(
                    f"{where}: when {toml_string(cond)} names a {target.kind} parameter; a "
                    f"condition needs a choice or an int parameter (a float never equals a "
                    f"listed value reliably)"
                )
            if target.when:
                continue  # a target that may be left out leaves the base's value to read
            for v in wanted:
                if target.kind == "choice":
                    choices = target.choices or ()
                    if not any(_same(v, c) for c in choices):
                        raise ValueError(
                            f"{where}: when {toml_string(cond)} = {show(v)} never holds: "
                            f"{toml_string(cond)} is one of {_shown(choices)}"
                        )
                    continue
                step = target.step or 1
                ok = _int_condition_holds(target, v)
                if not ok:
                    spacing = f" in steps of {step}" if step != 1 else ""
                    raise ValueError(
                        f"{where}: when {toml_string(cond)} = {show(v)} never holds: "
                        f"{toml_string(cond)} is an integer in [{target.low}, {target.high}]"
                        f"{spacing}"
                    )

    def _topological_order(self) -> tuple[Param, ...]:
        """The parameters with each one's conditions first (declared order otherwise)."""
        order: list[Param] = []
        state: dict[str, int] = {}  # 1: being visited, 2: placed

        def visit(path: str, stack: list[str]) -> None:
            if state.get(path) == 2:
                return
            if state.get(path) == 1:
                cycle = [*stack[stack.index(path) :], path]
                raise ValueError(
                    f"{_where(path)}: when makes a cycle: "
                    f"{' -> '.join(toml_string(c) for c in cycle)} (a parameter's conditions "
                    f"cannot depend on it)"
                )
            state[path] = 1
            for cond, _ in self._by_path[path].when:
                if cond in self._by_path:
                    visit(cond, [*stack, path])
            state[path] = 2
            order.append(self._by_path[path])

        for p in self._params:
            visit(p.path, [])
        return tuple(order)

    # ------------------------------------------------------------------ access

    @property
    def params(self) -> tuple[Param, ...]:
        """The parameters, in the given order.

        Example:
            >>> [p.kind for p in SearchSpace.from_mapping({"a": {"int": [1, 3]}}).params]
            ['int']
        """
        return self._params

    @property
    def paths(self) -> tuple[str, ...]:
        """The parameters' key paths, in the given order.

        Example:
            >>> SearchSpace.from_mapping({"b": {"int": [1, 3]}, "a": {"int": [1, 3]}}).paths
            ('b', 'a')
        """
        return tuple(p.path for p in self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params)

    def __contains__(self, path: object) -> bool:
        return path in self._by_path

    def __getitem__(self, path: str) -> Param:
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"{path!r} is not in the space ({', '.join(self.paths)})") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return self._by_path == other._by_path

    def __hash__(self) -> int:
        return hash(frozenset(self._by_path.items()))

    def __repr__(self) -> str:
        return f"SearchSpace.from_mapping({self.to_dict()!r})"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The space in ``[tune.space]``'s form (TOML-ready), in the given order:
        ``SearchSpace.from_mapping(space.to_dict()) == space``.

        Example:
            >>> SearchSpace.from_mapping({"schedule.lr": {"loguniform": [1e-4, 1]}}).to_dict()
            {'schedule.lr': {'loguniform': [0.0001, 1.0]}}
        """
        return {p.path: p.to_entry() for p in self._params}

    # ------------------------------------------------------------------ use

    def active(self, param: Param, values: Mapping[str, Any], base: Any = None) -> bool:
        """Whether every condition of ``param`` holds, reading a condition's path in
        ``values`` (the parameters suggested so far), else in the nested config ``base``
        (a path neither sets never holds).

        Example:
            >>> space = SearchSpace.from_mapping(
            ...     {"m": {"uniform": [0.0, 0.9], "when": {"optimizer.name": ["sgd", "nesterov"]}}})
            >>> space.active(space["m"], {}, {"optimizer": {"name": "sgd"}})
            True
            >>> space.active(space["m"], {}, {"optimizer": {"name": "adamw"}})
            False
        """
        for cond, wanted in param.when:
            value = values[cond] if cond in values else _lookup(base, cond)
            if not any(_same(value, w) for w in wanted):
                return False
        return True

    def suggest(self, trial: Any, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The trial's parameters, define-by-run: each one is asked of the Optuna
        ``trial`` (named by its key path) after the parameters its ``when`` reads, and
        only if its conditions hold. A condition reads the value the run will have: the
        suggested value of a parameter of the space, else the value at that path in
        ``base`` (the run config as a nested dict: pass the config with the values you
        rely on written out, a default it leaves out is not seen).

        Args:
            trial: an ``optuna.Trial`` (or ``optuna.trial.FixedTrial``).
            base: the run config, or ``None`` (a function objective).

        Returns:
            ``{key path: value}`` of the suggested parameters, in the space's order.

        Example:
            >>> import optuna
            >>> space = SearchSpace.from_mapping({
            ...     "optimizer.name": {"choice": ["adamw", "sgd"]},
            ...     "optimizer.momentum": {"uniform": [0.0, 0.9],
            ...                            "when": {"optimizer.name": "sgd"}}})
            >>> space.suggest(optuna.trial.FixedTrial({"optimizer.name": "adamw"}))
            {'optimizer.name': 'adamw'}
            >>> space.suggest(optuna.trial.FixedTrial(
            ...     {"optimizer.name": "sgd", "optimizer.momentum": 0.5}))
            {'optimizer.name': 'sgd', 'optimizer.momentum': 0.5}
        """
        if base is not None and not isinstance(base, Mapping):
            raise TypeError(f"base must be a run config (a nested dict), got {type(base).__name__}")
        values: dict[str, Any] = {}
        for p in self._order:
            if self.active(p, values, base):
                values[p.path] = p.suggest(trial)
        return {path: values[path] for path in self.paths if path in values}

    def grid(self) -> dict[str, list[Any]]:
        """The search space of ``optuna.samplers.GridSampler``: every value of each
        parameter (a choice's list, an ``int``/``uniform`` with ``step`` expanded).

        Raises:
            ValueError: a parameter without listed values, or a conditional one (a grid
                is a product: it cannot leave a parameter out), naming its key.

        Example:
            >>> SearchSpace.from_mapping({"fit.batch_size": {"choice": [32, 64]},
            ...                           "schedule.warmup_steps": {"int": [0, 100], "step": 50}}
            ...                          ).grid()
            {'fit.batch_size': [32, 64], 'schedule.warmup_steps': [0, 50, 100]}
        """
        out: dict[str, list[Any]] = {}
        for p in self._params:
            if p.when:
                raise ValueError(
                    f"{_where(p.path)}: grid search cannot take a conditional parameter "
                    f"(when = ...); drop when, or use another sampler"
                )
            out[p.path] = p.grid_values()
        return out

    def check_paths(
        self, base: Mapping[str, Any], validate: Callable[[dict[str, Any]], Any]
    ) -> None:
        """Check that every parameter (and every path a ``when`` reads from the run
        config) is a key of the run config, before any trial runs.

        For each parameter, its representative value (``low``, or the first choice) is put
        into a copy of ``base``, with its conditions made to hold, and the copy is given
        to ``validate`` (:func:`bergab.config.validate`). An error there that says the key
        is unknown (``unknown key``, ``unknown table``, ``must be a table``, ...) for that
        path or a table above it is raised with the parameter's key; an error about a
        value is left for the trials. A ``when`` path outside the space must be set in
        ``base``, or the condition would never hold.

        Args:
            base: the run config (nested dict).
            validate: a function that raises ``ValueError`` naming a bad key path as
                ``"<path>: <message>"`` (or with a ``path`` attribute, as
                :class:`bergab.config.ConfigError` has).

        Raises:
            ValueError: ``tune.space."<path>": not a key of the run config: <message>``.

        Example:
            >>> from bergab.config import validate
            >>> space = SearchSpace.from_mapping({"fit.epoch": {"int": [1, 5]}})
            >>> space.check_paths({"task": {"name": "linreg"}}, validate)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: tune.space."fit.epoch": not a key of the run config: fit.epoch: unknown \
key (allowed: epochs, ...)
        """
        if not isinstance(base, Mapping):
            raise TypeError(f"base must be a run config (a nested dict), got {type(base).__name__}")
        for p in self._params:
            where = _where(p.path)
            values: dict[str, Any] = {}
            self._make_hold(p, values)
            values[p.path] = p.representative
            data = _copy_tables(base)
            for path, value in values.items():
                try:
                    data = apply(data, {path: value})
                except ValueError as exc:
                    raise ValueError(_not_a_key(where, p.path, path, str(exc))) from None
            try:
                validate(data)
            except ValueError as exc:
                blamed = _blamed(exc, [p.path, *values])
                if blamed is not None:
                    raise ValueError(_not_a_key(where, p.path, blamed, str(exc))) from None
            for cond, _ in p.when:
                if cond not in self._by_path and _lookup(base, cond) is _MISSING:
                    raise ValueError(
                        f"{where}: when {toml_string(cond)} reads the run config, which does "
                        f"not set it, so the condition never holds (set it in the config, or "
                        f"add it to [tune.space])"
                    )

    def _make_hold(self, p: Param, values: dict[str, Any]) -> None:
        """Put into ``values`` a value for each path ``p``'s conditions read (the first
        wanted value), and the same for the conditions of those parameters."""
        for cond, wanted in p.when:
            if cond in values:
                continue
            values[cond] = wanted[0]
            if cond in self._by_path:
                self._make_hold(self._by_path[cond], values)


def _int_condition_holds(target: Param, value: Any) -> bool:
    """Whether an ``int`` parameter can take ``value`` (an integer in range, on its step)."""
    if isinstance(value, bool) or not _is_number(value) or not float(value).is_integer():
        return False
    low, high, step = int(target.low or 0), int(target.high or 0), int(target.step or 1)
    return low <= value <= high and (int(value) - low) % step == 0


def _not_a_key(where: str, own: str, path: str, message: str) -> str:
    if path == own:
        return f"{where}: not a key of the run config: {message}"
    return f"{where}: when {toml_string(path)} is not a key of the run config: {message}"


#: How a validation message begins when the key itself (not its value) is wrong.
_KEY_PROBLEMS = (
    "unknown key",
    "unknown table",
    "unknown argument",
    "must be a table",
    "is not a table",
    "is only allowed with",
)


def _blamed(exc: ValueError, paths: Iterable[str]) -> str | None:
    """Which of ``paths`` a validation error says is not a key (``None``: none of them,
    or the error is about a value)."""
    where = getattr(exc, "path", None)
    message = getattr(exc, "message", None)
    if not isinstance(where, str) or not isinstance(message, str):
        where, _, message = str(exc).partition(": ")
    if not message.startswith(_KEY_PROBLEMS) and "unknown argument" not in message:
        return None
    for path in paths:
        if where and (path == where or path.startswith(f"{where}.")):
            return path
    return None


# =========================================================================== apply


def _copy_tables(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a nested config, with every table a plain dict."""
    return {
        key: _copy_tables(value) if isinstance(value, Mapping) else copy.deepcopy(value)
        for key, value in config.items()
    }


def apply(config: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the nested ``config`` with each ``params`` value set at its dotted key
    path, creating the tables on the way.

    Args:
        config: the run config (nested tables); it is not changed.
        params: ``{key path: value}``, e.g. :meth:`SearchSpace.suggest`'s result.

    Returns:
        The new config (plain dicts, deep-copied).

    Raises:
        TypeError: ``config`` or ``params`` is not a mapping, or a path is not a string.
        ValueError: a bad path, or one that crosses a value that is not a table.

    Example:
        >>> apply({"schedule": {"lr": "auto"}},
        ...       {"schedule.lr": 0.1, "fit.early_stopping.patience": 3})
        {'schedule': {'lr': 0.1}, 'fit': {'early_stopping': {'patience': 3}}}
        >>> apply({"schedule": {"lr": 0.1}}, {"schedule.lr.peak": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: cannot set "schedule.lr.peak": "schedule.lr" is 0.1, not a table
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of tables, got {type(config).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping {{key path: value}}, got {type(params).__name__}"
        )
    out = _copy_tables(config)
    for path, value in params.items():
        if not isinstance(path, str):
            raise TypeError(f"params: keys must be key paths (strings), got {show(path)}")
        _check_path("params key", path)
        parts = path.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part, _MISSING)
            if child is _MISSING:
                child = node[part] = {}
            elif not isinstance(child, dict):
                crossed = ".".join(parts[: i + 1])
                raise ValueError(
                    f"cannot set {toml_string(path)}: {toml_string(crossed)} is {show(child)}, "
                    f"not a table"
                )
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out
