"""How :mod:`bergab.config` words a mistake: ``(key path, message)`` for one line.

:func:`explain` reads a pydantic ``ValidationError`` (its first problem, with a count of
the others), :func:`keyed` a library error such as ``"hidden must be >= 1, got 0"``
raised by a task, optimizer or schedule built from one table; both return the key path
(``fit.epochs``, ``task.hidden``) and the message that follows it, for
:class:`bergab.config.ConfigError`. Kept apart from the schema so that ``config.py``
holds the schema and the builders only.

Example:
    >>> keyed("task", ValueError("hidden must be >= 1, got 0"), ["hidden"])
    ('task.hidden', 'must be >= 1, got 0')
    >>> show("digits"), show(float("inf"))
    ('"digits"', 'inf')
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bergab._toml import toml_value

__all__ = ["explain", "keyed", "nested_keys", "schedule_error", "show"]


def show(value: Any) -> str:
    """A value as the user wrote it in TOML (strings quoted, true/false)."""
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)


def _unwrap_model(annotation: Any) -> Any:
    """The pydantic model inside an annotation (``Model | None`` -> ``Model``), else None."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _model_at(root: Any, loc: Sequence[Any]) -> Any:
    model = root
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = _unwrap_model(model.model_fields[part].annotation)
    return model


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
_TYPES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "a list",
    "finite_number": "a finite number",
}
#: What the message says for a kind of error that needs no more than the value shown.
_SIMPLE = {kind: f"must be {what}" for kind, what in _TYPES.items()}
_SIMPLE["string_too_short"] = "must not be empty"


def _explain_one(root: Any, err: Mapping[str, Any]) -> tuple[str, str]:
    """(key path, message) for one pydantic error."""
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = f"got {show(err.get('input'))}"
    path = ".".join(loc)
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else "see docs/cli.md"
        what = "key" if loc[:-1] else "table"
        return path, f"unknown {what} (allowed: {allowed})"
    if kind == "missing":
        return path, "required table is missing" if len(loc) == 1 else "required key is missing"
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, (int, float)) else show(bound)
        return path, f"must be {op} {shown}, {got}"
    if kind in _SIMPLE:
        return path, f"{_SIMPLE[kind]}, {got}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')
        return path, f"must be one of {expected}, {got}"
    msg = str(err.get("msg", ""))
    return path, msg.removeprefix("Value error, ")


def explain(exc: Any, root: Any) -> tuple[str, str]:
    """(key path, message) for a pydantic ``ValidationError`` of the model ``root``: its
    first problem, and how many more there are."""
    errors = exc.errors()
    path, message = _explain_one(root, errors[0])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return path, message


def keyed(
    section: str, exc: Exception, keys: Iterable[str], allowed: Sequence[str] = ()
) -> tuple[str, str]:
    """Turn a library error ("hidden must be ...") into ``("section.hidden", "must be ...")``."""
    msg = str(exc)
    for key in sorted(keys, key=len, reverse=True):
        if msg.startswith((f"{key} ", f"{key}: ")):
            return f"{section}.{key}", msg[len(key) + 1 :].lstrip(": ")
        if msg.startswith(f"{key}["):
            return f"{section}.{key}", msg
    match = re.search(r"unexpected keyword argument '(\w+)'", msg)
    if match:
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{section}.{match.group(1)}", f"unknown key{hint}"
    match = re.search(r"(unknown|missing) argument '(\w+)'", msg)
    if match:
        return f"{section}.{match.group(2)}", msg
    return section, msg


def nested_keys(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every ``(dotted key path, value)`` of a table and its sub-tables, depth first."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(nested_keys(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):  # join's list of schedules
                out.extend(nested_keys(item, f"{path}[{i}]."))
        else:
            out.append((path, value))
    return out


def schedule_error(table: Mapping[str, Any], exc: Exception) -> tuple[str, str]:
    """The key path of a schedule's error, found in sub-tables too: ``"lr must be ...,
    got inf"`` from a nested ``[schedule.schedule]`` names ``schedule.schedule.lr``."""
    path, message = keyed("schedule", exc, list(table))
    if path != "schedule":
        return path, message
    text = str(exc)
    named = [(p, v) for p, v in nested_keys(table) if text.startswith(p.rsplit(".", 1)[-1] + " ")]
    if not named:
        return path, message
    # the same name in two sub-tables (join of two cosines): the one whose value is quoted
    quoted = [(p, v) for p, v in named if f"got {v!r}" in text]
    key, _ = (quoted or named)[0]
    return f"schedule.{key}", text.split(" ", 1)[1]
