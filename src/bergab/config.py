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

    [tune]                 # bergab tune only (docs/tuning.md); bergab train ignores it
    trials = 30
    [tune.space]
    "schedule.peak" = {loguniform = [1e-4, 1.0]}

The schema is checked by pydantic (``extra="forbid"``, strict types); every mistake is a
:class:`ConfigError` whose message is one line naming the TOML key path and what is
allowed, e.g. ``fit.epochs: must be >= 1, got 0``. Optimizer and schedule arguments are
checked by building them once; a built-in task's arguments by the task's own argument
checks (without loading its data), a custom task's names against its signature. Their
errors are given the same key paths. The few task checks that need the data (``digits``'
split sizes, ``charlm``'s ``context``) run when :func:`build_task` builds it.

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

import importlib
import inspect
import json
import math
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from bergab._validate import require

require("pydantic", "cli")

from pydantic import (  # noqa: E402  (after the one-line install hint above)
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    create_model,
)

from bergab import schedules  # noqa: E402
from bergab._config_errors import explain, keyed, schedule_error, show  # noqa: E402
from bergab._toml import dumps_toml  # noqa: E402
from bergab.auto_lr import POLICIES  # noqa: E402
from bergab.training._step import device_unavailable  # noqa: E402
from bergab.training._step import resolve_device as fit_device  # noqa: E402
from bergab.training.options import Toml, toml_fields  # noqa: E402

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
    "batch_size",
    "build_schedule",
    "build_task",
    "check_optimizer",
    "dumps_toml",
    "load",
    "optimizer_factory",
    "parse_override",
    "planned_steps",
    "read_toml",
    "resolve_device",
    "sweep_batch_size",
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


# =========================================================================== schema

# strict types, no unknown keys, and no inf/nan in a number: "fit.clip_norm = inf" once
# passed the schema and failed inside fit with a message that lost its key path
_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


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
    steps: Annotated[int, Field(ge=3)] = 100  # lr_find needs 3 points
    mode: Literal["exp", "linear"] = "exp"
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.98
    diverge_factor: Annotated[float, Field(gt=1)] = 4.0


class EarlyStoppingSection(BaseModel):
    """``[fit.early_stopping]``: stop when ``monitor`` stops improving (see
    ``bergab.training.EarlyStopping``). ``mode = "auto"`` (the default) takes ``"max"``
    for accuracy-like names and ``"min"`` for loss-like ones.

    Example:
        >>> EarlyStoppingSection(patience=3).monitor
        'val_loss'
    """

    model_config = _STRICT
    monitor: str = "val_loss"
    patience: Annotated[int, Field(ge=0)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best: bool = True


def _fit_field(spec: Toml, default: Any) -> tuple[Any, Any]:
    """The pydantic field of one ``[fit]`` key, made from fit's own option declaration."""
    if spec.check is not None:
        check = spec.check
        kind: Any = Annotated[Any, PlainValidator(check)]
    elif spec.kind is dict:
        kind = EarlyStoppingSection
    elif spec.choices:
        kind = Literal[spec.choices]
    else:
        kind = spec.kind
    if spec.optional:
        kind = kind | None
    bounds: dict[str, Any] = {
        k: v for k, v in (("ge", spec.ge), ("gt", spec.gt), ("lt", spec.lt)) if v is not None
    }
    if bounds:
        kind = Annotated[kind, Field(**bounds)]
    return kind, default


_FIT_FIELDS: dict[str, Any] = {name: _fit_field(spec, d) for name, spec, d in toml_fields()}

#: ``[fit]``: the options of :func:`bergab.fit` that a file can hold, built from the
#: options' declarations (:class:`bergab.training.FitOptions`, the fields with a
#: ``Toml`` spec): a new fit option with a spec is a new key here without an edit.
#: ``batch_size`` defaults to the task's own batch size (an int, or ``"full"`` for batch
#: gradient descent); ``seed`` defaults to 0 so every run is reproducible and resumable.
FitSection: Any = create_model(
    "FitSection",
    __config__=_STRICT,
    __doc__=(
        "``[fit]``: the options of :func:`bergab.fit` that a file can hold (declared in "
        ":class:`bergab.training.FitOptions`)."
    ),
    **_FIT_FIELDS,
)


class OutputSection(BaseModel):
    """``[output]``: where the run's files go (default ``runs/<task name>``), whether an
    existing run there is replaced, plots, and ``keep_best``: keep the weights of the best
    evaluation in ``checkpoints/`` (by ``fit.early_stopping.monitor``, else ``val_loss``).

    Example:
        >>> OutputSection().overwrite
        False
    """

    model_config = _STRICT
    # "" would silently mean the default folder: refused (leave the key out for that)
    dir: Annotated[str, Field(min_length=1)] | None = None
    overwrite: bool = False
    plots: bool = True
    keep_best: bool = False


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
    # [tune] and [tune.space]: a search over this config, read and checked by
    # ``bergab tune`` (bergab.tuning); ``bergab train`` runs the config as it is
    tune: dict[str, Any] | None = None
    # [pbt] and [pbt.hyperparams]: population-based training of this config, read and
    # checked by ``bergab pbt`` (bergab.tuning.pbt)
    pbt: dict[str, Any] | None = None

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
        """``output.dir`` (``~`` expanded, as a shell would), or ``runs/<task name>`` when
        it is not set (``runs/<function>`` for a task ``"package.module:function"``).

        Example:
            >>> validate({"task": {"name": "bergab.tasks:linreg"}}).run_dir().as_posix()
            'runs/linreg'
        """
        if self.output.dir:
            return Path(self.output.dir).expanduser()
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
    if raw.startswith("@"):  # a file's contents: a JSON value or a TOML table
        return parts, _read_value_file(key.strip(), raw[1:])
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def _read_value_file(key: str, path: str) -> Any:
    """The value of ``--set KEY=@PATH``: the JSON value in PATH (``.json``), else its TOML
    table (e.g. ``schedule=@pbt_schedule.json``, the schedule ``bergab pbt`` exported)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "--set", f"{key}=@{path}: cannot read the file ({exc.strerror})"
        ) from None
    try:
        return json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        what = "JSON" if path.endswith(".json") else "TOML"
        raise ConfigError("--set", f"{key}=@{path}: not valid {what} ({exc})") from None


def _override_list(overrides: Any) -> list[str]:
    """``overrides`` as a list, refusing a lone string (which would be read letter by
    letter) and anything that is not an iterable of strings.

    Example:
        >>> _override_list(("fit.max_steps=5",))
        ['fit.max_steps=5']
        >>> _override_list("fit.max_steps=5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: overrides must be a list of "KEY=VALUE" strings, got the str ...
    """
    if isinstance(overrides, str | bytes):
        raise TypeError(
            'overrides must be a list of "KEY=VALUE" strings, got the '
            f"{type(overrides).__name__} {overrides!r} (wrap it in a list)"
        )
    if not isinstance(overrides, Iterable):
        raise TypeError(
            'overrides must be a list of "KEY=VALUE" strings, got '
            f"{type(overrides).__name__} {overrides!r}"
        )
    out = list(overrides)
    bad = next((o for o in out if not isinstance(o, str)), None)
    if bad is not None:
        raise TypeError(
            f'overrides must be a list of "KEY=VALUE" strings, got an item {bad!r} '
            f"({type(bad).__name__})"
        )

    return out


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set KEY.PATH=VALUE`` overrides to a raw config dict (a copy).

    Example:
        >>> apply_overrides({"fit": {"epochs": 3}}, ["fit.max_steps=5", "output.dir=runs/x"])
        {'fit': {'epochs': 3, 'max_steps': 5}, 'output': {'dir': 'runs/x'}}
    """
    overrides = _override_list(overrides)
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
        TypeError: ``data`` is not a mapping.
        ConfigError: one line naming the key path and what is allowed.

    Example:
        >>> validate({"task": {"name": "digits"}, "optimizer": {"name": "adamw", "lr": 0.1}})
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: optimizer.lr: the learning rate is set in [schedule] \
(lr = 0.01, lr = "auto", or a schedule with type = ...)
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            "config must be a mapping of TOML tables (the parsed TOML, a dict), "
            f"got {type(data).__name__} {data!r:.60}; use bergab.config.load for a file"
        )
    try:
        cfg = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(*explain(exc, RunConfig)) from None
    _check_task(cfg)
    check_optimizer(cfg)
    _check_schedule(cfg.schedule)
    if cfg.lr_find.end_lr <= cfg.lr_find.start_lr:
        raise ConfigError(
            "lr_find.end_lr",
            f"must be > lr_find.start_lr = {cfg.lr_find.start_lr:g}, got {cfg.lr_find.end_lr:g}",
        )
    if cfg.fit.clip_norm is not None and cfg.fit.clip_value is not None:
        raise ConfigError("fit.clip_value", "set fit.clip_norm or fit.clip_value, not both")
    resolve_device(cfg, torch.nn.Linear(1, 1))  # checks fit.device
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
        IsADirectoryError: ``path`` is a directory.
        ConfigError: invalid TOML or an invalid config (one line, with the key path).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.toml"
        >>> _ = path.write_text("[task]\\nname = 'linreg'\\n[fit]\\nmax_steps = 100\\n")
        >>> load(path, ["fit.max_steps=5"]).fit.max_steps
        5
    """
    return validate(apply_overrides(read_toml(path), overrides))


def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file's tables, not yet validated (``bergab tune`` takes ``[tune]`` out
    first).

    Raises:
        FileNotFoundError, IsADirectoryError: no such file, or a directory.
        ConfigError: invalid TOML, or not UTF-8 text.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.toml"
        >>> _ = path.write_text("[task]\\nname = 'linreg'\\n")
        >>> read_toml(path)
        {'task': {'name': 'linreg'}}
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(
            f"config {str(p)!r} is a directory, not a config file; name a .toml file"
        )
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{p} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{p} is not a UTF-8 text file") from None


# =========================================================================== build


def _task_function(name: str) -> Callable[..., Any]:
    from bergab import tasks

    if ":" not in name:
        if name.lower() not in tasks.names():
            allowed = ", ".join(f'"{n}"' for n in tasks.names())
            raise ConfigError(
                "task.name",
                f'must be a built-in task ({allowed}) or "package.module:function", '
                f"got {show(name)}",
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
    except Exception as exc:  # the module itself is broken (SyntaxError, NameError, ...)
        raise ConfigError(
            "task.name", f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
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
                f'must name a torch dtype ("float64", ...), got {show(kwargs["dtype"])}',
            )
        kwargs["dtype"] = dtype
    if "seed" not in kwargs and ("seed" in params or open_ended):
        kwargs["seed"] = cfg.fit.seed
    return kwargs


def _check_task(cfg: RunConfig) -> None:
    """The task's keys, and for a built-in task its values (checked without building it:
    digits and charlm load data)."""
    from bergab import tasks

    fn = _task_function(cfg.task.name)
    kwargs = _task_call_kwargs(cfg, fn)
    if ":" in cfg.task.name:
        return
    try:
        tasks._check_arguments(cfg.task.name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(*keyed("task", exc, kwargs)) from None


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
        raise ConfigError(*keyed("task", exc, kwargs)) from None
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
        ...                 optimizer=OptimizerSection(name="sgd", weight_decay=-1.0))
        >>> check_optimizer(cfg)
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: optimizer.weight_decay: must be in [0, inf), got -1.0
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
        raise ConfigError(*keyed("optimizer", exc, kwargs, allowed)) from None


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
            raise ConfigError("schedule.policy", f"must be one of {allowed}, got {show(policy)}")
        warm = table.get("warmup_steps", 0)
        if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0:
            raise ConfigError("schedule.warmup_steps", f"must be an integer >= 0, got {show(warm)}")
        if warm and policy == "one_cycle":
            raise ConfigError(
                "schedule.warmup_steps", 'must be 0 with policy = "one_cycle" (it warms up itself)'
            )
        return
    for key in ("policy", "warmup_steps"):
        if key in table:
            raise ConfigError(f"schedule.{key}", 'is only allowed with lr = "auto"')
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ConfigError("schedule.lr", f'must be a finite number > 0 or "auto", got {show(lr)}')


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
        raise ConfigError(*schedule_error(table, exc)) from None


# =========================================================================== runs


def batch_size(cfg: RunConfig, task: Any) -> int | str:
    """``fit.batch_size``, or the task's own batch size when the config sets none.

    Example:
        >>> cfg = validate({"task": {"name": "linreg"}, "fit": {"batch_size": "full"}})
        >>> batch_size(cfg, build_task(cfg))
        'full'
    """
    return cfg.fit.batch_size if cfg.fit.batch_size is not None else task.batch_size


def sweep_batch_size(cfg: RunConfig, task: Any) -> int:
    """The batch size as a number (``"full"``: the whole training set), for the range test.

    Example:
        >>> cfg = validate({"task": {"name": "linreg"}, "fit": {"batch_size": "full"}})
        >>> task = build_task(cfg); sweep_batch_size(cfg, task) == len(task.train)
        True
    """
    bs = batch_size(cfg, task)
    return len(task.train) if bs == "full" else int(bs)


def resolve_device(cfg: RunConfig, model: torch.nn.Module) -> torch.device:
    """``fit.device`` resolved as ``fit`` resolves it (``"auto"``: the model's device if not
    the CPU, else CUDA when available, else the CPU).

    Example:
        >>> resolve_device(validate({"task": {"name": "linreg"}, "fit": {"device": "cpu"}}),
        ...                torch.nn.Linear(1, 1))
        device(type='cpu')
    """
    if cfg.fit.device != "auto":
        try:
            device = torch.device(cfg.fit.device)
        except RuntimeError:
            raise ConfigError(
                "fit.device",
                f'must be "auto" or a torch device ("cpu", "cuda:1", ...), '
                f"got {show(cfg.fit.device)}",
            ) from None
        # checked with the config, not at the first tensor moved: the range test of
        # lr = "auto" once met a missing GPU as a torch AssertionError traceback
        missing = device_unavailable(device)
        if missing is not None:
            raise ConfigError(
                "fit.device", f'{show(cfg.fit.device)}: {missing}; use "cpu" or "auto"'
            )
        return device
    return fit_device("auto", model)


def planned_steps(cfg: RunConfig, task: Any) -> int:
    """The run's length in optimizer steps, counted as ``fit`` counts it.

    Example:
        >>> cfg = validate({"task": {"name": "linreg"}, "fit": {"epochs": 2, "batch_size": "full"}})
        >>> planned_steps(cfg, build_task(cfg))
        2
    """
    n = len(task.train)
    bs = sweep_batch_size(cfg, task)
    batches = math.ceil(n / min(bs, n))
    per_epoch = math.ceil(batches / cfg.fit.accumulation_steps)
    caps = []
    if cfg.fit.max_steps is not None:
        caps.append(cfg.fit.max_steps)
    if cfg.fit.epochs is not None or cfg.fit.max_steps is None:
        caps.append((cfg.fit.epochs or 1) * per_epoch)
    return min(caps)
