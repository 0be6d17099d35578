"""Run configs: the TOML files ``bergab train``, ``resume`` and ``lr-find`` read.

A config has six tables (only ``[task]`` is required)::

    [task]                 # a built-in task, or "package.module:function" returning a Task
    name = "digits"
    hidden = 64            # other keys: the task function's arguments

    [optimizer]            # a name for bergab.optim.create, other keys its arguments
    name = "adamw"
    weight_decay = 0.01

    [schedule]             # lr = "auto" (the default), lr = 0.01, or any schedule:
    lr = "auto"            # type = "cosine", peak = 3e-3, total_steps = 1000, ...
    policy = "cosine"      # with lr = "auto": "cosine" or "one_cycle"

    [lr_find]              # the range test's sweep (lr = "auto" and bergab lr-find)
    steps = 100

    [fit]                  # bergab.fit options
    max_steps = 1000
    seed = 0

    [output]
    dir = "runs/digits"    # the run directory

The schema is checked by pydantic (``extra="forbid"``, strict types); every mistake is a
:class:`ConfigError` whose message is one line naming the TOML key path and what is
allowed, e.g. ``fit.epochs: must be >= 1, got 0``. Task, optimizer and schedule arguments
are checked by building them once, and their errors are given the same key paths.

pydantic is an optional dependency (``pip install 'bergab[cli]'``); ``import bergab``
does not import this module.

Example:
    >>> cfg = validate({"task": {"name": "linreg", "standardize": True},
    ...                 "schedule": {"lr": 0.1}, "fit": {"max_steps": 10}})
    >>> cfg.task.name, cfg.task_kwargs(), cfg.fit.max_steps
    ('linreg', {'standardize': True}, 10)
    >>> validate({"task": {"name": "linreg"}, "fit": {"epochs": 0}})
    Traceback (most recent call last):
    ...
    bergab.config.ConfigError: fit.epochs: must be >= 1, got 0
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import re
import shutil
import signal
import sys
import threading
import time
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from bergab._validate import require

require("pydantic", "cli")

from pydantic import (  # noqa: E402  (after the one-line install hint above)
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from bergab import schedules  # noqa: E402
from bergab.auto_lr import POLICIES  # noqa: E402

__all__ = [
    "CONFIG_NAME",
    "ConfigError",
    "FitSection",
    "LRFindSection",
    "OptimizerSection",
    "OutputSection",
    "RunConfig",
    "TaskSection",
    "apply_overrides",
    "build_schedule",
    "build_task",
    "check_optimizer",
    "dumps_toml",
    "load",
    "optimizer_factory",
    "parse_override",
    "validate",
]

#: The resolved config's file name inside a run directory.
CONFIG_NAME = "config.toml"


class ConfigError(ValueError):
    """A config mistake; ``str()`` is one line: ``"<key path>: <what is wrong/allowed>"``.

    Attributes:
        path: the TOML key path, e.g. ``"fit.epochs"`` (``""`` for the whole file).
        message: what is wrong and what is allowed.

    Example:
        >>> str(ConfigError("fit.epochs", "must be >= 1, got 0"))
        'fit.epochs: must be >= 1, got 0'
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


# =========================================================================== TOML


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML also forbids a raw DEL character
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any) -> str:  # noqa: PLR0911 (one return per TOML type)
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
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        items = [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write a {type(value).__name__} to TOML: {value!r}")


def _toml_table(prefix: str, table: Mapping[str, Any], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if prefix and (scalars or not tables):
        if lines:
            lines.append("")
        lines.append(f"[{prefix}]")
    lines.extend(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in scalars)
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
        >>> tomllib.loads(text)["schedule"]["schedule"]["peak"]
        0.001
    """
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    body: list[str] = []
    _toml_table("", data, body)
    return "\n".join(lines + body) + "\n"


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML (strings quoted, true/false)."""
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


# =========================================================================== schema

_STRICT = ConfigDict(strict=True, extra="forbid")


class TaskSection(BaseModel):
    """``[task]``: a built-in task name or ``"package.module:function"``; other keys are
    the task function's keyword arguments (``seed``, ``hidden``, ``standardize``, ...).

    The function must return a :class:`bergab.tasks.Task`. When the task function takes
    a ``seed`` and the config gives none, ``fit.seed`` is used.

    Example:
        >>> TaskSection(name="digits", hidden=32).model_extra
        {'hidden': 32}
    """

    model_config = ConfigDict(strict=True, extra="allow")
    name: str


class OptimizerSection(BaseModel):
    """``[optimizer]``: ``name`` for :func:`bergab.optim.create` (default ``"adamw"``);
    other keys are its arguments (``weight_decay``, ``betas``, ``momentum``, ...). The
    learning rate is set in ``[schedule]``, not here.

    Example:
        >>> OptimizerSection().name
        'adamw'
    """

    model_config = ConfigDict(strict=True, extra="allow")
    name: str = "adamw"


class LRFindSection(BaseModel):
    """``[lr_find]``: the range test's sweep, for ``lr = "auto"`` and ``bergab lr-find``
    (see :func:`bergab.lr_find`).

    Example:
        >>> LRFindSection().steps, LRFindSection().end_lr
        (100, 10.0)
    """

    model_config = _STRICT
    start_lr: Annotated[float, Field(gt=0)] = 1e-7
    end_lr: Annotated[float, Field(gt=0)] = 10.0
    steps: Annotated[int, Field(ge=2)] = 100
    mode: Literal["exp", "linear"] = "exp"
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.98
    diverge_factor: Annotated[float, Field(gt=1)] = 4.0


class EarlyStoppingSection(BaseModel):
    """``[fit.early_stopping]``: stop when ``monitor`` stops improving (see
    ``bergab.training.EarlyStopping``).

    Example:
        >>> EarlyStoppingSection(patience=3).monitor
        'val_loss'
    """

    model_config = _STRICT
    monitor: str = "val_loss"
    patience: Annotated[int, Field(ge=0)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    mode: Literal["min", "max"] = "min"
    restore_best: bool = True


class FitSection(BaseModel):
    """``[fit]``: the options of :func:`bergab.fit` that a file can hold.

    ``batch_size`` defaults to the task's own batch size (an int, or ``"full"`` for batch
    gradient descent); ``seed`` defaults to 0 so every run is reproducible and resumable.
    """

    model_config = _STRICT
    epochs: Annotated[int | None, Field(ge=1)] = None
    max_steps: Annotated[int | None, Field(ge=1)] = None
    batch_size: int | str | None = None
    shuffle: bool = True
    clip_norm: Annotated[float | None, Field(gt=0)] = None
    clip_value: Annotated[float | None, Field(gt=0)] = None
    accumulation_steps: Annotated[int, Field(ge=1)] = 1
    precision: Literal["32", "bf16", "fp16"] = "32"
    device: str = "auto"
    val_every: Annotated[int | None, Field(ge=1)] = None
    early_stopping: EarlyStoppingSection | None = None
    checkpoint_every: Annotated[int | None, Field(ge=1)] = None
    seed: Annotated[int, Field(ge=0)] = 0
    progress: bool = True
    nan_policy: Literal["stop", "skip", "rollback"] = "stop"
    tol: Annotated[float | None, Field(gt=0)] = None

    @field_validator("batch_size", mode="plain")
    @classmethod
    def _batch_size(cls, value: Any) -> int | str | None:
        if value is None or value == "full":
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(f'must be an integer >= 1 or "full", got {_show(value)}')


class OutputSection(BaseModel):
    """``[output]``: where the run's files go (default ``runs/<task name>``).

    Example:
        >>> OutputSection().overwrite
        False
    """

    model_config = _STRICT
    dir: str | None = None
    overwrite: bool = False
    plots: bool = True


class RunConfig(BaseModel):
    """A whole run config (see the module docstring); build one with :func:`validate`.

    ``schedule`` stays a plain table: it is checked by :func:`build_schedule`, which
    understands ``lr = "auto"``, ``lr = <number>`` and every ``bergab.schedules`` type.
    """

    model_config = _STRICT
    task: TaskSection
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: dict[str, Any] = Field(default_factory=lambda: {"lr": "auto"})
    lr_find: LRFindSection = Field(default_factory=LRFindSection)
    fit: FitSection = Field(default_factory=FitSection)
    output: OutputSection = Field(default_factory=OutputSection)

    def task_kwargs(self) -> dict[str, Any]:
        """The ``[task]`` keys other than ``name``: the task function's arguments."""
        return dict(self.task.model_extra or {})

    def optimizer_kwargs(self) -> dict[str, Any]:
        """The ``[optimizer]`` keys other than ``name``: the optimizer's arguments."""
        return dict(self.optimizer.model_extra or {})

    @property
    def auto(self) -> bool:
        """Whether the learning rate is ``"auto"`` (chosen by a range test)."""
        return "type" not in self.schedule and self.schedule.get("lr", "auto") == "auto"

    def run_dir(self) -> Path:
        """``output.dir``, or ``runs/<task name>`` when it is not set."""
        if self.output.dir:
            return Path(self.output.dir)
        return Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.task.name.split(":")[-1])

    def to_dict(self) -> dict[str, Any]:
        """The config as plain TOML-ready tables (``None`` values left out).

        Example:
            >>> validate({"task": {"name": "digits"}}).to_dict()["schedule"]
            {'lr': 'auto'}
        """
        data = self.model_dump(exclude_none=True)
        data["task"] = {"name": self.task.name, **self.task_kwargs()}
        data["optimizer"] = {"name": self.optimizer.name, **self.optimizer_kwargs()}
        return data


# =========================================================================== errors


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = _unwrap_model(model.model_fields[part].annotation)
    return model


def _explain(err: Mapping[str, Any]) -> tuple[str, str]:
    """(key path, message) for one pydantic error."""
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = f"got {_show(err.get('input'))}"
    path = ".".join(loc)
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else "see docs/cli.md"
        what = "key" if loc[:-1] else "table"
        return path, f"unknown {what} (allowed: {allowed})"
    if kind == "missing":
        return path, "required table is missing" if len(loc) == 1 else "required key is missing"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, (int, float)) else _show(bound)
        return path, f"must be {op} {shown}, {got}"
    types_ = {
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
    if kind in types_:
        return path, f"must be {types_[kind]}, {got}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')
        return path, f"must be one of {expected}, {got}"
    msg = str(err.get("msg", ""))
    return path, msg.removeprefix("Value error, ")


def _from_validation_error(exc: ValidationError) -> ConfigError:
    errors = exc.errors()
    path, message = _explain(errors[0])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ConfigError(path, message)


def _keyed(
    section: str, exc: Exception, keys: Iterable[str], allowed: Sequence[str] = ()
) -> ConfigError:
    """Turn a library error ("hidden must be ...") into ``section.hidden: must be ...``."""
    msg = str(exc)
    for key in sorted(keys, key=len, reverse=True):
        if msg.startswith(f"{key} "):
            return ConfigError(f"{section}.{key}", msg[len(key) + 1 :])
        if msg.startswith(f"{key}["):
            return ConfigError(f"{section}.{key}", msg)
    match = re.search(r"unexpected keyword argument '(\w+)'", msg)
    if match:
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return ConfigError(f"{section}.{match.group(1)}", f"unknown key{hint}")
    match = re.search(r"(unknown|missing) argument '(\w+)'", msg)
    if match:
        return ConfigError(f"{section}.{match.group(2)}", msg)
    return ConfigError(section, msg)


# =========================================================================== load


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"fit.max_steps=5"`` into its key path and TOML value.

    The value is read as a TOML value (``5``, ``0.1``, ``true``, ``"adamw"``,
    ``[0.9, 0.99]``); anything that is not valid TOML is taken as a plain string, so
    ``task.name=digits`` works without quotes.

    Args:
        text: ``KEY.PATH=VALUE``.

    Returns:
        ``(["fit", "max_steps"], 5)``.

    Example:
        >>> parse_override("fit.max_steps=5"), parse_override("optimizer.name=sgd")
        ((['fit', 'max_steps'], 5), (['optimizer', 'name'], 'sgd'))
    """
    key, sep, raw = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not sep or not all(parts):
        raise ConfigError("--set", f"expected KEY.PATH=VALUE (e.g. fit.max_steps=5), got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set KEY.PATH=VALUE`` overrides to a raw config dict (a copy).

    Example:
        >>> apply_overrides({"fit": {"epochs": 3}}, ["fit.max_steps=5", "output.dir=runs/x"])
        {'fit': {'epochs': 3, 'max_steps': 5}, 'output': {'dir': 'runs/x'}}
    """
    out = json.loads(json.dumps(data))  # a deep copy of plain TOML data
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {'.'.join(parts)}", f"{where} is not a table")
            node = child
        node[parts[-1]] = value
    return out


def validate(data: Mapping[str, Any]) -> RunConfig:
    """Check a raw config dict against the schema, the task, the optimizer and schedule.

    Args:
        data: the parsed TOML.

    Returns:
        The :class:`RunConfig`.

    Raises:
        ConfigError: one line naming the key path and what is allowed.

    Example:
        >>> validate({"task": {"name": "digits"}, "optimizer": {"name": "adamw", "lr": 0.1}})
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: optimizer.lr: the learning rate is set in [schedule] \
(lr = 0.01, lr = "auto", or a schedule with type = ...)
    """
    try:
        cfg = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _from_validation_error(exc) from None
    _check_task(cfg)
    check_optimizer(cfg)
    _check_schedule(cfg.schedule)
    if cfg.fit.clip_norm is not None and cfg.fit.clip_value is not None:
        raise ConfigError("fit.clip_value", "set fit.clip_norm or fit.clip_value, not both")
    _device(cfg, torch.nn.Linear(1, 1))  # checks fit.device
    return cfg


def load(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read and validate a TOML config, after applying ``--set`` overrides.

    Args:
        path: the ``.toml`` file.
        overrides: ``KEY.PATH=VALUE`` strings (see :func:`parse_override`).

    Returns:
        The :class:`RunConfig`.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: invalid TOML or an invalid config (one line, with the key path).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.toml"
        >>> _ = path.write_text("[task]\\nname = 'linreg'\\n[fit]\\nmax_steps = 100\\n")
        >>> load(path, ["fit.max_steps=5"]).fit.max_steps
        5
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{p} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{p} is not a UTF-8 text file") from None
    return validate(apply_overrides(data, overrides))


# =========================================================================== build


def _task_function(name: str) -> Callable[..., Any]:
    from bergab import tasks

    if ":" not in name:
        if name.lower() not in tasks.names():
            allowed = ", ".join(f'"{n}"' for n in tasks.names())
            raise ConfigError(
                "task.name",
                f'must be a built-in task ({allowed}) or "package.module:function", '
                f"got {_show(name)}",
            )
        return getattr(tasks, name.lower())
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError("task.name", f'must look like "package.module:function", got {name!r}')
    added = [p for p in (str(Path.cwd()),) if p not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("task.name", f"cannot import {module_name!r}: {exc}") from None
    finally:
        for p in added:
            sys.path.remove(p)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError("task.name", f"{module_name!r} has no function {attr!r}")
    return fn


def _task_call_kwargs(cfg: RunConfig, fn: Callable[..., Any]) -> dict[str, Any]:
    kwargs = cfg.task_kwargs()
    params = inspect.signature(fn).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in kwargs:
        if not open_ended and key not in params:
            raise ConfigError(
                f"task.{key}",
                f"unknown key for task {cfg.task.name!r} (allowed: name, {', '.join(allowed)})",
            )
    if isinstance(kwargs.get("dtype"), str):
        dtype = getattr(torch, kwargs["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise ConfigError(
                "task.dtype",
                f'must name a torch dtype ("float64", ...), got {_show(kwargs["dtype"])}',
            )
        kwargs["dtype"] = dtype
    if "seed" not in kwargs and ("seed" in params or open_ended):
        kwargs["seed"] = cfg.fit.seed
    return kwargs


def _check_task(cfg: RunConfig) -> None:
    fn = _task_function(cfg.task.name)
    _task_call_kwargs(cfg, fn)


def build_task(cfg: RunConfig) -> Any:
    """Build the config's task (a :class:`bergab.tasks.Task`).

    Raises:
        ConfigError: the task rejected an argument (``task.<key>: ...``) or returned
            something that is not a Task.

    Example:
        >>> task = build_task(validate({"task": {"name": "linreg", "n_train": 40}}))
        >>> task.name, len(task.train)
        ('linreg', 40)
    """
    from bergab.tasks import Task

    fn = _task_function(cfg.task.name)
    kwargs = _task_call_kwargs(cfg, fn)
    try:
        task = fn(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _keyed("task", exc, kwargs) from None
    if not isinstance(task, Task):
        raise ConfigError(
            "task.name",
            f"{cfg.task.name!r} must return a bergab.tasks.Task, got {type(task).__name__}",
        )
    return task


def _optimizer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    kwargs = cfg.optimizer_kwargs()
    if "lr" in kwargs:
        raise ConfigError(
            "optimizer.lr",
            'the learning rate is set in [schedule] (lr = 0.01, lr = "auto", or a schedule '
            "with type = ...)",
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def check_optimizer(cfg: RunConfig) -> None:
    """Build the optimizer once on a dummy parameter to check its name and arguments.

    Raises:
        ConfigError: ``optimizer.name`` unknown, or ``optimizer.<key>`` rejected.

    Example:
        >>> cfg = RunConfig(task=TaskSection(name="linreg"),
        ...                 optimizer=OptimizerSection(name="sgd", momentum=-1.0))
        >>> check_optimizer(cfg)
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: optimizer.momentum: must be in [0, inf), got -1.0
    """
    from bergab import optim

    kwargs = _optimizer_kwargs(cfg)
    if cfg.optimizer.name.lower().replace("-", "_") not in optim.names():
        raise ConfigError(
            "optimizer.name",
            f"unknown optimizer {cfg.optimizer.name!r} (allowed: {', '.join(optim.names())})",
        )
    try:
        optim.create(cfg.optimizer.name, [torch.nn.Parameter(torch.zeros(1))], lr=1e-3, **kwargs)
    except (ValueError, TypeError) as exc:
        plain = optim.create(cfg.optimizer.name, [torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        params = inspect.signature(type(plain).__init__).parameters
        allowed = ["name", *(n for n in params if n not in ("self", "params", "lr"))]
        raise _keyed("optimizer", exc, kwargs, allowed) from None


def optimizer_factory(cfg: RunConfig) -> Callable[..., torch.optim.Optimizer]:
    """A factory ``params -> Optimizer`` building the config's optimizer.

    The learning rate it is created with is a placeholder; ``fit`` (or the range test)
    drives it from the schedule.

    Example:
        >>> cfg = validate({"task": {"name": "linreg"},
        ...                 "optimizer": {"name": "momentum", "momentum": 0.5}})
        >>> opt = optimizer_factory(cfg)([torch.nn.Parameter(torch.zeros(1))])
        >>> opt.defaults["momentum"]
        0.5
    """
    from bergab import optim

    name = cfg.optimizer.name
    kwargs = _optimizer_kwargs(cfg)

    def factory(params: Any, lr: Any = 1e-3) -> torch.optim.Optimizer:
        return optim.create(name, params, lr=lr, **kwargs)

    factory.__name__ = f"create_{name}"
    return factory


_AUTO_KEYS = ("lr", "policy", "warmup_steps")


def _check_schedule(table: Mapping[str, Any]) -> None:
    if "type" in table:
        build_schedule(table)
        return
    for key in table:
        if key not in _AUTO_KEYS:
            raise ConfigError(
                f"schedule.{key}",
                'unknown key (without type = ... [schedule] takes lr = <number> or "auto", '
                'and with lr = "auto": policy, warmup_steps; with type = "cosine" etc. it '
                "takes that schedule's arguments)",
            )
    lr = table.get("lr", "auto")
    if lr == "auto":
        policy = table.get("policy", "cosine")
        if policy not in POLICIES:
            allowed = ", ".join(f'"{p}"' for p in POLICIES)
            raise ConfigError("schedule.policy", f"must be one of {allowed}, got {_show(policy)}")
        warm = table.get("warmup_steps", 0)
        if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0:
            raise ConfigError(
                "schedule.warmup_steps", f"must be an integer >= 0, got {_show(warm)}"
            )
        if warm and policy == "one_cycle":
            raise ConfigError(
                "schedule.warmup_steps", 'must be 0 with policy = "one_cycle" (it warms up itself)'
            )
        return
    for key in ("policy", "warmup_steps"):
        if key in table:
            raise ConfigError(f"schedule.{key}", 'is only allowed with lr = "auto"')
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError("schedule.lr", f'must be a number > 0 or "auto", got {_show(lr)}')


def build_schedule(table: Mapping[str, Any]) -> schedules.Schedule:
    """The schedule of a ``[schedule]`` table that is not ``lr = "auto"``.

    ``lr = 0.01`` is a constant; a table with ``type`` goes to
    :func:`bergab.schedules.from_config`.

    Example:
        >>> build_schedule({"type": "cosine", "peak": 0.1, "total_steps": 100})
        cosine(peak=0.1, total_steps=100)
        >>> build_schedule({"lr": 0.01})
        constant(lr=0.01)
        >>> build_schedule({"type": "cosine", "peak": -1.0, "total_steps": 100})
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: schedule.peak: must be in [0, inf), got -1.0
    """
    if "type" not in table:
        _check_schedule(table)
        if table.get("lr", "auto") == "auto":
            raise ConfigError("schedule.lr", '"auto" is resolved by a range test, not here')
        return schedules.constant(float(table["lr"]))
    try:
        return schedules.from_config(table)
    except (ValueError, TypeError) as exc:
        raise _keyed("schedule", exc, list(table)) from None


# =========================================================================== runs


def _batch_size(cfg: RunConfig, task: Any) -> int | str:
    return cfg.fit.batch_size if cfg.fit.batch_size is not None else task.batch_size


def _sweep_batch_size(cfg: RunConfig, task: Any) -> int:
    bs = _batch_size(cfg, task)
    return len(task.train) if bs == "full" else int(bs)


def _device(cfg: RunConfig, model: torch.nn.Module) -> torch.device:
    """``fit.device`` resolved as ``fit`` resolves it (``"auto"``: the model's device if not
    the CPU, else CUDA when available, else the CPU)."""
    if cfg.fit.device != "auto":
        try:
            return torch.device(cfg.fit.device)
        except RuntimeError:
            raise ConfigError(
                "fit.device",
                f'must be "auto" or a torch device ("cpu", "cuda:1", ...), '
                f"got {_show(cfg.fit.device)}",
            ) from None
    p = next(model.parameters(), None)
    if p is not None and p.device.type != "cpu":
        return p.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def find_lr(cfg: RunConfig) -> Any:
    """Run the range test of ``bergab lr-find`` on the config's task and optimizer.

    Uses ``[lr_find]`` for the sweep and ``fit.batch_size``, ``fit.seed``,
    ``fit.accumulation_steps`` and ``fit.device`` for the data; the model is restored.

    Returns:
        The :class:`bergab.lr_finder.LRFindResult`.

    Example:
        >>> cfg = validate({"task": {"name": "linreg", "standardize": True},
        ...                 "lr_find": {"steps": 30}, "fit": {"batch_size": 100}})
        >>> res = find_lr(cfg)
        >>> len(res.lrs) <= 30, res.suggestion > 0
        (True, True)
    """
    from bergab.lr_finder import lr_find

    task = build_task(cfg)
    device = _device(cfg, task.model)
    return lr_find(
        task.model,
        task.train,
        task.loss_fn,
        optimizer=optimizer_factory(cfg),
        batch_size=_sweep_batch_size(cfg, task),
        accumulation_steps=cfg.fit.accumulation_steps,
        device=device,
        seed=cfg.fit.seed,
        warn=False,
        **cfg.lr_find.model_dump(),
    )


@dataclass
class RunResult:
    """What :func:`train` (``bergab train``/``resume``/``demo``) did.

    Attributes:
        run_dir: the run directory.
        config: the resolved config (with ``lr = "auto"`` replaced by the schedule used).
        history: the :class:`bergab.training.History` of ``fit``.
        auto: what ``lr = "auto"`` chose (``None`` otherwise).
        steps: optimizer steps done in all (including before a resume).
        seconds: wall time of this call; ``lr_find_seconds`` of it was the range test.
        interrupted: stopped by Ctrl-C (a checkpoint was written).
        final: the last values of each logged quantity (``loss``, ``val_loss``, metrics).
        files: the files written, relative to ``run_dir``.
        error: why training stopped early on a NaN/inf (``nan_policy = "stop"``), else
            ``None``; the history up to that step is kept and plotted.

    Example:
        >>> cfg = validate({"task": {"name": "linreg"}, "schedule": {"lr": 0.1}})
        >>> r = RunResult(Path("runs/x"), cfg, None, None, steps=10, seconds=1.5,
        ...               lr_find_seconds=0.0, interrupted=False, final={"final_val_loss": 0.25})
        >>> print(r.summary_table())
        task            linreg
        optimizer       adamw
        schedule        constant(lr=0.1)
        steps           10
        final val loss  0.25
        time            1.5 s
        run directory   runs/x
    """

    @property
    def resumable(self) -> bool:
        """Whether ``bergab resume run_dir`` can continue this run."""
        return (self.run_dir / CONFIG_NAME).is_file() and (
            self.run_dir / "checkpoints" / "last.pt"
        ).is_file()

    run_dir: Path
    config: RunConfig
    history: Any
    auto: Any
    steps: int
    seconds: float
    lr_find_seconds: float
    interrupted: bool
    final: dict[str, float]
    files: list[str] = field(default_factory=list)
    error: str | None = None

    def summary_table(self) -> str:
        """A short two-column summary: chosen lr, steps, final losses and metrics, time."""
        rows: list[tuple[str, str]] = [("task", self.config.task.name)]
        rows.append(("optimizer", self.config.optimizer.name))
        if self.auto is not None:
            rows.append(
                (
                    "chosen lr (peak)",
                    f"{self.auto.peak:.3g}  (range test: rule {self.auto.result.rule}, "
                    f"confidence {self.auto.result.confidence:.2f}; {self.auto.policy} schedule)",
                )
            )
        elif self.config.auto:
            rows.append(("lr", '"auto" (interrupted before the range test finished)'))
        else:
            rows.append(("schedule", repr(build_schedule(self.config.schedule))))
        rows.append(("steps", str(self.steps)))
        for key, value in self.final.items():
            rows.append((key.replace("_", " "), f"{value:.4g}"))
        took = f"{self.seconds:.1f} s"
        if self.auto is not None and self.lr_find_seconds > 0:
            took += f" (range test {self.lr_find_seconds:.1f} s)"
        rows.append(("time", took))
        rows.append(("run directory", str(self.run_dir)))
        if self.interrupted:
            rows.append(("status", "interrupted"))
        if self.error is not None:
            rows.append(("status", "stopped: non-finite loss or gradient"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


# files a run directory holds (relative names); `output.overwrite` removes exactly these
_RUN_FILES = (
    "config.toml",
    "lr_find.json",
    "lr_find.png",
    "history.png",
    "model.pt",
    "summary.json",
)
_RUN_DIRS = ("checkpoints", "logs")


def _planned_steps(cfg: RunConfig, task: Any) -> int:
    """The run's length in optimizer steps, counted as ``fit`` counts it."""
    n = len(task.train)
    bs = _sweep_batch_size(cfg, task)
    batches = math.ceil(n / min(bs, n))
    per_epoch = math.ceil(batches / cfg.fit.accumulation_steps)
    caps = []
    if cfg.fit.max_steps is not None:
        caps.append(cfg.fit.max_steps)
    if cfg.fit.epochs is not None or cfg.fit.max_steps is None:
        caps.append((cfg.fit.epochs or 1) * per_epoch)
    return min(caps)


class _Interrupt:
    """Ctrl-C during ``fit``: finish the step, checkpoint, then stop (see :func:`train`).

    The first SIGINT only sets a flag. At the next step end the callback asks ``fit`` for
    a checkpoint at that step (by checkpointing every step from then on, which ``fit``
    does at the end of the step, after its validation and bookkeeping: a consistent
    resume point), and at the following hook raises ``KeyboardInterrupt``. A second
    SIGINT interrupts at once (the last regular checkpoint stays the resume point).
    """

    def __init__(self) -> None:
        from bergab.training import Callback

        self.requested = False
        self.checkpoint_step: int | None = None
        self._armed = False
        self._before: tuple[int, int] | None = None
        self.trainer: Any = None
        outer = self

        class _Hook(Callback):
            def on_fit_start(self, trainer: Any) -> None:
                outer.trainer = trainer

            def on_epoch_start(self, trainer: Any) -> None:
                outer.poll(trainer)

            def on_batch_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
                outer.poll(trainer, in_step=True)

            def on_validation_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
                outer.poll(trainer)

            def on_epoch_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
                outer.poll(trainer)

        self.callback = _Hook()

    def poll(self, trainer: Any, in_step: bool = False) -> None:
        if not self.requested:
            return
        if not self._armed:
            self._armed = True
            self._before = self._stamp(trainer)
            trainer.checkpoint_every = 1  # fit writes last.pt at the end of the step
            return
        if self._stamp(trainer) != self._before:  # the checkpoint has been written
            # inside a step's on_batch_end the checkpoint is the previous step's
            self.checkpoint_step = trainer.step - 1 if in_step else trainer.step
            raise KeyboardInterrupt

    @staticmethod
    def _stamp(trainer: Any) -> tuple[int, int] | None:
        try:
            st = (Path(trainer.checkpoint_dir) / "last.pt").stat()
        except (OSError, TypeError):
            return None
        return (st.st_ino, st.st_mtime_ns)

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nCtrl-C: finishing this step and writing a checkpoint "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _prepare_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    if resume:
        if not (run_dir / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_NAME})")
        return
    if (run_dir / CONFIG_NAME).exists() or (run_dir / "checkpoints").exists():
        if not cfg.output.overwrite:
            raise ConfigError(
                "output.dir",
                f"{run_dir} already holds a run: continue it with 'bergab resume {run_dir}', "
                "or pass --out DIR or --set output.overwrite=true",
            )
        for name in _RUN_DIRS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
        for name in _RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def _load_last(run_dir: Path) -> dict[str, Any]:
    from bergab.training import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def _finished_run(run_dir: Path, total: int) -> Any:
    """The History of a run that has nothing left to do, else ``None``.

    A run is finished when its checkpoint reached the planned number of steps or was
    stopped for good (early stopping, ``tol``). ``fit(resume=True)`` on such a run would
    return at once but still rewrite ``last.pt`` with the process's current random state,
    which would break an exact continuation with a larger ``max_steps`` later.
    """
    from bergab.training import History

    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return None
    ckpt = _load_last(run_dir)
    state = ckpt["fit"]
    if int(state["step"]) < total and not state.get("should_stop"):
        return None
    history = History()
    history.load_state_dict(ckpt["history"])
    return history


def _final_values(history: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    last = history.last or {}
    if isinstance(last.get("loss"), float):
        out["final_train_loss"] = last["loss"]
    elif history.steps.get("loss"):
        out["final_train_loss"] = float(history.steps["loss"][-1])
    for key, value in last.items():
        if key.startswith("val_") and isinstance(value, (int, float)):
            out[f"final_{key}"] = float(value)
    return out


def _write_plots(run_dir: Path, history: Any, auto: Any, say: Callable[[str], None]) -> list[str]:
    from bergab._validate import MissingDependencyError

    written: list[str] = []
    try:
        from bergab.plotting import pyplot

        plt = pyplot()
        if auto is not None:
            plt.close(auto.result.plot(run_dir / "lr_find.png"))
            written.append("lr_find.png")
        if len(history) or history.records:
            history.plot(run_dir / "history.png")
            written.append("history.png")
    except MissingDependencyError as exc:
        say(f"plots skipped: {exc}")
    return written


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a config: the library call behind ``bergab train``, ``resume`` and ``demo``.

    1. Build the task, the optimizer factory and the schedule. With ``lr = "auto"``,
       :func:`bergab.auto_lr.auto_schedule` runs the range test (``[lr_find]``) and
       builds the schedule; the curve goes to ``lr_find.json``.
    2. Write the resolved config (the schedule actually used) to ``RUN_DIR/config.toml``.
    3. :func:`bergab.fit` with checkpoints in ``RUN_DIR/checkpoints`` and CSV/JSONL logs
       in ``RUN_DIR/logs`` (``resume=True`` continues from ``checkpoints/last.pt``).
    4. Write ``model.pt`` (the final ``state_dict``), ``summary.json`` and the plots
       ``lr_find.png`` and ``history.png``.

    Ctrl-C (SIGINT, when called from the main thread) finishes the current step, writes
    a checkpoint there and returns with ``interrupted=True``; ``bergab resume RUN_DIR``
    then continues exactly.

    Args:
        cfg: a validated config.
        resume: continue the run in ``cfg.run_dir()`` instead of starting one.
        callbacks: extra :class:`bergab.training.Callback` objects for ``fit``.
        say: where progress messages go (e.g. ``print``); ``None``: nowhere.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the run directory already holds a run (and ``output.overwrite`` is
            false), or the config is invalid.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> cfg = validate({"task": {"name": "linreg", "standardize": True},
        ...                 "schedule": {"lr": 0.1}, "fit": {"max_steps": 20, "progress": False},
        ...                 "output": {"dir": str(out), "plots": False}})
        >>> result = train(cfg)
        >>> result.steps, result.interrupted, (out / "model.pt").is_file()
        (20, False, True)
        >>> resume(out).steps  # a finished run stays finished
        20
    """
    from bergab.auto_lr import auto_schedule
    from bergab.training import NonFiniteError, fit

    t0 = time.perf_counter()
    tell = say or (lambda _msg: None)
    run_dir = cfg.run_dir()
    _prepare_run_dir(run_dir, cfg, resume)
    task = build_task(cfg)
    factory = optimizer_factory(cfg)
    total = _planned_steps(cfg, task)
    tell(
        f"task {task.name}: {len(task.train)} train / {len(task.val)} val examples; "
        f"optimizer {cfg.optimizer.name}; {total} steps; run directory {run_dir}"
    )
    auto = None
    find_seconds = 0.0
    interrupt = _Interrupt()
    if cfg.auto:
        tell(
            f"range test: {cfg.lr_find.steps} steps, lr {cfg.lr_find.start_lr:g} .. "
            f"{cfg.lr_find.end_lr:g}"
        )
        t1 = time.perf_counter()
        try:
            auto = auto_schedule(
                task.model,
                task.train,
                task.loss_fn,
                total_steps=total,
                optimizer=factory,
                policy=cfg.schedule.get("policy", "cosine"),
                warmup_steps=cfg.schedule.get("warmup_steps", 0),
                batch_size=_sweep_batch_size(cfg, task),
                accumulation_steps=cfg.fit.accumulation_steps,
                device=_device(cfg, task.model),
                seed=cfg.fit.seed,
                lr_find_kwargs=cfg.lr_find.model_dump(),
                warn=False,
            )
        except KeyboardInterrupt:  # nothing trained, nothing to resume
            from bergab.training import History

            return RunResult(
                run_dir=run_dir,
                config=cfg,
                history=History(),
                auto=None,
                steps=0,
                seconds=time.perf_counter() - t0,
                lr_find_seconds=time.perf_counter() - t1,
                interrupted=True,
                final={},
            )
        find_seconds = time.perf_counter() - t1
        tell(auto.describe())
        for reason in auto.result.reasons:
            tell(f"  note: {reason}")
        (run_dir / "lr_find.json").write_text(
            json.dumps(auto.result.to_dict(), indent=1) + "\n", encoding="utf-8"
        )
        schedule = auto.schedule
        resolved = cfg.model_copy(update={"schedule": schedules.to_config(schedule)})
    else:
        schedule = build_schedule(cfg.schedule)
        resolved = cfg
    resolved = resolved.model_copy(
        update={"output": cfg.output.model_copy(update={"dir": str(run_dir)})}
    )
    if not resume:
        header = (
            f"bergab run config, resolved (bergab {_version()}); continue with: "
            f"bergab resume {run_dir}"
        )
        if auto is not None:
            header += f"\n{auto.describe()} (range test curve: lr_find.json)"
        (run_dir / CONFIG_NAME).write_text(dumps_toml(resolved.to_dict(), header), "utf-8")
        # written again at the end; the thread count is needed by a resume after a crash
        started = {"task": task.name, "status": "running", "threads": torch.get_num_threads()}
        (run_dir / "summary.json").write_text(json.dumps(started) + "\n", "utf-8")

    fit_kwargs = cfg.fit.model_dump(exclude={"early_stopping"})
    es = cfg.fit.early_stopping
    history: Any = None
    interrupted = False
    error: str | None = None
    finished = _finished_run(run_dir, total) if resume else None
    if finished is not None:  # nothing left to train: don't let fit rewrite the checkpoint
        history = finished
        hint = (
            "; to train on, pass e.g. --set fit.max_steps=N with a larger N"
            if history.stop_reason in ("max_steps", "epochs")
            else ""
        )
        tell(f"the run already finished at step {len(history)} ({history.stop_reason}){hint}")
        task.model.load_state_dict(_load_last(run_dir)["model"])
    else:
        with interrupt.installed():
            try:
                history = fit(
                    task.model,
                    task.train,
                    task.loss_fn,
                    val_data=task.val,
                    optimizer=factory,
                    lr=schedule,
                    metrics=task.metrics,
                    callbacks=[*callbacks, interrupt.callback],
                    early_stopping=None if es is None else es.model_dump(),
                    checkpoint_dir=run_dir / "checkpoints",
                    log_dir=run_dir / "logs",
                    resume=resume,
                    **{**fit_kwargs, "batch_size": _batch_size(cfg, task)},
                )
            except KeyboardInterrupt:
                interrupted = True
                if interrupt.trainer is not None:
                    history = interrupt.trainer.history
            except NonFiniteError as exc:  # nan_policy = "stop": a result with its history
                error = str(exc)
                history = exc.history
    if history is None:  # interrupted before training started (e.g. in the range test)
        from bergab.training import History

        history = History()
    elif not interrupted and error is None:
        torch.save(task.model.state_dict(), run_dir / "model.pt")
    files = []
    if cfg.output.plots:
        files += _write_plots(run_dir, history, auto, tell)
    steps = int(history.steps["step"][-1]) if history.steps.get("step") else 0
    if interrupted and interrupt.checkpoint_step is not None:
        steps = interrupt.checkpoint_step
    result = RunResult(
        run_dir=run_dir,
        config=resolved,
        history=history,
        auto=auto,
        steps=steps,
        seconds=time.perf_counter() - t0,
        lr_find_seconds=find_seconds,
        interrupted=interrupted,
        final=_final_values(history),
        error=error,
    )
    summary = {
        "task": task.name,
        "optimizer": cfg.optimizer.name,
        "schedule": resolved.schedule,
        "auto_lr": None
        if auto is None
        else {
            "peak": auto.peak,
            "policy": auto.policy,
            "total_steps": auto.total_steps,
            "rule": auto.result.rule,
            "confidence": auto.result.confidence,
            "suggestions": auto.result.suggestions,
        },
        "status": "interrupted" if interrupted else "failed" if error else "finished",
        "steps": steps,
        "stop_reason": history.stop_reason,
        "interrupted": interrupted,
        "error": error,
        "final": result.final,
        "best": history.best,
        "seconds": result.seconds,
        "lr_find_seconds": find_seconds,
        "threads": torch.get_num_threads(),  # bergab resume uses the same by default
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    result.files = sorted(p.name for p in run_dir.iterdir())
    return result


def resume(
    run_dir: str | Path,
    overrides: Iterable[str] = (),
    *,
    callbacks: Sequence[Any] = (),
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint (``bergab resume``).

    Reads ``run_dir/config.toml`` (with ``lr = "auto"`` already resolved to the schedule
    used, so no new range test), applies ``overrides`` (e.g. ``fit.max_steps=5000`` to
    train on), and calls :func:`train` with ``resume=True``. Without overrides the final
    weights equal, bit for bit on the CPU, those of a run that was never interrupted.

    Args:
        run_dir: a directory written by :func:`train`.
        overrides: ``KEY.PATH=VALUE`` strings.
        callbacks: extra callbacks for ``fit``.
        say: where progress messages go.

    Returns:
        The :class:`RunResult` (see :func:`train` for an example).
    """
    path = Path(run_dir)
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a run directory: it has no {CONFIG_NAME} "
            "(bergab train writes one)"
        )
    cfg = load(path / CONFIG_NAME, [*overrides, f"output.dir={_toml_string(str(path))}"])
    return train(cfg, resume=True, callbacks=callbacks, say=say)


def _version() -> str:
    from bergab._version import __version__

    return __version__
