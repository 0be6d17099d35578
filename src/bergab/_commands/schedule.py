"""``bergab schedule``: print a schedule's value at its key steps, optionally plot it.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["schedule", '{"type": "constant", "lr": 0.1}', "--steps", "3"])
    >>> args.func(args)
    constant(lr=0.1)
    step  value
       0    0.1
       2    0.1
    0
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from bergab import schedules
from bergab._validate import check_int, check_output_path

__all__ = ["format_table", "load_schedule", "register"]

# Above this many key steps the table shows the first and last half of them.
_MAX_ROWS = 24

_EPILOG = """\
examples:
  bergab schedule examples/schedules/warmup_cosine.json --steps 1000 --plot runs/schedule.png
  bergab schedule '{"type": "cosine", "peak": 0.1, "total_steps": 1000}' --steps 1200

A config is the dict bergab.schedules.to_config() writes: a "type" (cosine, warmup,
wsd, ...) and the function's arguments. A run config (bergab train's TOML file) works
too: its [schedule] table is used (lr = 0.01 is a constant; lr = "auto" is chosen by a
range test when training: bergab lr-find CONFIG shows it).
"""


def register(subparsers: Any) -> None:
    """Add the ``schedule`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "schedule",
        help="print a schedule's values at its key steps (and plot it)",
        description="Print a learning-rate schedule's value at step 0, at every boundary\n"
        "and at the last step, and optionally plot it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        metavar="CONFIG_OR_JSON",
        help="a .json or .toml file holding a schedule config, or the config as inline JSON",
    )
    p.add_argument("--steps", type=int, required=True, metavar="N", help="steps 0 .. N-1")
    p.add_argument("--plot", metavar="PATH", default=None, help="write a plot (e.g. out.png)")
    p.set_defaults(func=_run)


def load_schedule(source: str) -> schedules.Schedule:
    """Read a schedule from a ``.json``/``.toml`` file path or an inline JSON string.

    Args:
        source: a path, or a string starting with ``{``.

    Returns:
        The schedule built by :func:`bergab.schedules.from_config`.

    Raises:
        ValueError: invalid JSON/TOML or an invalid schedule config.
        FileNotFoundError: ``source`` is neither inline JSON nor an existing file.

    Example:
        >>> load_schedule('{"type": "linear", "start": 1.0, "end": 0.0, "total_steps": 10}')
        linear(start=1.0, end=0.0, total_steps=10)
    """
    text = source.strip()
    if text.startswith("{"):
        where = "inline JSON"
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON in CONFIG_OR_JSON: {exc}") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"{source!r} is not a file, and not inline JSON (which starts with '{{')"
            )
        where = str(path)
        raw = path.read_text(encoding="utf-8")
        try:
            is_toml = path.suffix.lower() == ".toml"
            config = tomllib.loads(raw) if is_toml else json.loads(raw)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(
                f"invalid {path.suffix.lstrip('.') or 'JSON'} in {path}: {exc}"
            ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{where} must hold a JSON object (a schedule config), got {config!r}")
    if "type" in config:
        return _from_config(config, "")
    if "task" in config or isinstance(config.get("schedule"), dict):
        return _run_config_schedule(config, where)
    return _from_config(config, "")


def _from_config(table: dict[str, Any], prefix: str) -> schedules.Schedule:
    """``schedules.from_config``; inside a run config its errors name ``schedule.<key>``."""
    from bergab._config_errors import schedule_error

    try:
        return schedules.from_config(table)
    except (ValueError, TypeError) as exc:
        if not prefix:
            raise
        path, message = schedule_error(table, exc)
        raise ValueError(f"{path}: {message}") from None


def _run_config_schedule(config: dict[str, Any], where: str) -> schedules.Schedule:
    """The schedule of a run config (what ``bergab train`` reads): its ``[schedule]``
    table, which is ``lr = "auto"`` when missing, a constant ``lr = 0.01``, or a
    ``type = ...`` table."""
    table = config.get("schedule", {"lr": "auto"})
    if not isinstance(table, dict):
        raise ValueError(f"schedule: must be a table in {where}, got {table!r}")
    if "type" in table:
        return _from_config(table, "schedule")
    lr = table.get("lr", "auto")
    if lr == "auto":
        raise ValueError(
            f'schedule.lr: "auto" in {where} is chosen by a range test when training; '
            f"run 'bergab lr-find {where}' to see the learning rate it picks (the peak of a "
            f"{table.get('policy', 'cosine')} schedule over the run)"
        )
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f'schedule.lr: must be a finite number > 0 or "auto", got {lr!r}')
    return _from_config({"type": "constant", "lr": lr}, "schedule")


def format_table(schedule: schedules.Schedule, steps: int) -> str:
    """The value at step 0, at each key step below ``steps`` and at ``steps - 1``.

    Args:
        schedule: the schedule.
        steps: N, an int >= 1.

    Returns:
        A two-column text table (longer lists show their first and last rows).

    Example:
        >>> print(format_table(schedules.step_decay(1.0, 0.5, 4), 10))
        step  value
           0      1
           4    0.5
           8   0.25
           9   0.25
    """
    n = check_int("steps", steps, low=1)
    rows = sorted({0, n - 1, *schedule.key_steps(n)})
    cut = len(rows) > _MAX_ROWS
    if cut:
        half = _MAX_ROWS // 2
        rows = [*rows[:half], -1, *rows[-half:]]
    cells = [("step", "value")]
    cells += [("...", "...") if t < 0 else (str(t), f"{schedule(t):.6g}") for t in rows]
    w0 = max(len(a) for a, _ in cells)
    w1 = max(len(b) for _, b in cells)
    lines = [f"{cells[0][0]:<{w0}}  {cells[0][1]:<{w1}}".rstrip()]
    lines += [f"{a:>{w0}}  {b:>{w1}}" for a, b in cells[1:]]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    n = check_int("--steps", args.steps, low=1)
    if args.plot:
        check_output_path("--plot", args.plot)
    sched = load_schedule(args.config)
    print(repr(sched))
    print(format_table(sched, n))
    if args.plot:
        schedules.plot(sched, n, args.plot)
        print(f"plot written to {args.plot}")
    return 0
