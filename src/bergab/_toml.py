"""A TOML writer for the plain tables of run configs (the stdlib reads TOML, not writes).

:func:`dumps_toml` writes nested dicts of strings, numbers, booleans, lists and tables,
with a ``#`` comment header; ``inf``/``nan`` floats are written as TOML's ``inf``/``nan``
and ``None`` values are left out. ``tomllib.loads(dumps_toml(d)) == d`` for such data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps_toml", "toml_string", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML also forbids a raw DEL character
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any, key: str = "") -> str:  # noqa: PLR0911 (one return per TOML type)
    """``value`` as TOML; ``key`` is its key path, named when ``value`` cannot be written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        items = [toml_value(v, f"{key}[{i}]") for i, v in enumerate(value) if v is not None]
        return "[" + ", ".join(items) + "]"
    if isinstance(value, Mapping):
        pairs = [
            f"{_toml_key(str(k))} = {toml_value(v, f'{key}.{k}' if key else str(k))}"
            for k, v in value.items()
        ]
        return "{" + ", ".join(pairs) + "}"
    where = f"{key}: " if key else ""
    raise TypeError(
        f"{where}cannot write a {type(value).__name__} to TOML ({value!r:.60}); allowed: "
        "str, int, float, bool, list, tuple, dict"
    )


def _toml_table(prefix: str, table: Mapping[str, Any], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if prefix and (scalars or not tables):
        if lines:
            lines.append("")
        lines.append(f"[{prefix}]")
    lines.extend(
        f"{_toml_key(str(k))} = {toml_value(v, f'{prefix}.{k}' if prefix else str(k))}"
        for k, v in scalars
    )
    for key, sub in tables:
        name = _toml_key(str(key))
        _toml_table(f"{prefix}.{name}" if prefix else name, sub, lines)


def dumps_toml(data: Mapping[str, Any], header: str = "") -> str:
    """Write a dict of tables, numbers, strings, booleans and lists as TOML.

    ``None`` values are left out (TOML has no null); nested dicts become sub-tables
    ``[a.b]`` (inline tables inside lists). ``tomllib.loads`` reads the result back equal.

    Args:
        data: the document.
        header: text put before it as ``#`` comment lines.

    Returns:
        The TOML text.

    Example:
        >>> text = dumps_toml({"fit": {"epochs": 3, "seed": None},
        ...                    "schedule": {"type": "warmup", "steps": 10,
        ...                                 "schedule": {"type": "cosine", "peak": 1e-3}}})
        >>> print(text)
        [fit]
        epochs = 3
        <BLANKLINE>
        [schedule]
        type = "warmup"
        steps = 10
        <BLANKLINE>
        [schedule.schedule]
        type = "cosine"
        peak = 0.001
        <BLANKLINE>
        >>> import tomllib; tomllib.loads(text)["schedule"]["schedule"]["peak"]
        0.001
    """
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    body: list[str] = []
    _toml_table("", data, body)
    return "\n".join(lines + body) + "\n"
