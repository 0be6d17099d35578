"""fit's options, declared once: :class:`FitOptions`.

Every keyword argument of :func:`bergab.fit` and :class:`~bergab.training.Trainer` is a
field of the frozen dataclass :class:`FitOptions`, and nowhere else: its default, the
check of its value, its documentation, and (for the options a config file can hold) its
``[fit]`` key in a run config. ``fit``'s signature and the "Options" part of its
docstring are made from these fields, and :mod:`bergab.config` builds its ``[fit]``
table from the fields that carry a :class:`Toml` spec. Adding an option is one field
here, plus the code that uses it.

Example:
    >>> opts = FitOptions(epochs=3, batch_size="full", lr=0.1)
    >>> opts.epochs, opts.batch_size, opts.shuffle
    (3, 'full', True)
    >>> FitOptions(epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: epochs must be an integer in [1, inf), got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bergab._validate import (
    check_bool,
    check_choice,
    check_int,
    check_path,
    check_real,
    is_schedule,
)
from bergab.scaling import RULES
from bergab.training._checks import check_resume_file
from bergab.training._step import PRECISIONS, check_clip
from bergab.training.callbacks import Callback, EarlyStopping
from bergab.training.strategy import STRATEGIES

__all__ = [
    "NAN_POLICIES",
    "FitOptions",
    "Toml",
    "callable_or_none",
    "check_batch_size",
    "check_metrics",
    "fit_docstring",
    "fit_signature",
    "option_docs",
    "toml_fields",
]

#: The ``nan_policy`` values fit accepts.
NAN_POLICIES = ("stop", "skip", "rollback")
#: The ``lr_scaling`` values fit accepts (besides ``None``): :mod:`bergab.scaling`'s rules.
LR_SCALINGS = RULES


_FIT_DEFAULT: Any = object()  # a Toml spec without a default of its own: fit's default


@dataclass(frozen=True)
class Toml:
    """How an option is written in the ``[fit]`` table of a run config.

    ``kind`` is the TOML value type (``int``, ``float``, ``str``, ``bool``, or ``dict``
    for a sub-table); ``optional`` allows leaving it out (``None``); ``ge``/``gt``/``lt``
    bound a number; ``choices`` lists the allowed strings; ``default`` replaces fit's own
    default in a config (``seed`` is 0 there so every run is reproducible); ``check``,
    when given, validates the value instead of ``kind``, raising ``ValueError`` with the
    message to show after the key path.
    """

    kind: type = int
    optional: bool = False
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    default: Any = _FIT_DEFAULT
    check: Callable[[Any], Any] | None = None


def _option(
    default: Any,
    doc: str,
    check: Callable[[str, Any], Any] | None = None,
    toml: Toml | None = None,
) -> Any:
    """A :class:`FitOptions` field: its default, documentation, value check and TOML spec."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "toml": toml})


# ----------------------------------------------------------------------------- value checks
def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _int_ge(low: int) -> Callable[[str, Any], int]:
    return lambda name, value: check_int(name, value, low=low)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], Any]:
    return lambda name, value: check_choice(name, value, choices)


def _positive(name: str, value: Any) -> float:
    return check_real(name, value, low=0.0, low_open=True)


def _path(name: str, value: Any) -> Path | None:
    return None if value is None else check_path(name, value)


def check_batch_size(name: str, value: Any) -> int | str | None:
    if value is None or value == "full":
        return value
    if isinstance(value, str):
        raise ValueError(f'batch_size must be an integer >= 1 or "full"; got {value!r}')
    return check_int(name, value, low=1)


def _toml_batch_size(value: Any) -> Any:
    if value is None or value == "full":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
    raise ValueError(f'must be an integer >= 1 or "full", got {shown}')


def callable_or_none(what: str) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable {what}, got {value!r}")
        return value

    return check


def _optimizer(name: str, value: Any) -> Any:
    is_instance = isinstance(value, torch.optim.Optimizer)
    is_class = isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
    if not (isinstance(value, str) or is_instance or is_class or callable(value)):
        raise TypeError(
            "optimizer must be a name (see bergab.optim.names()), a torch.optim.Optimizer, "
            f"an Optimizer class or a factory params -> Optimizer; got {value!r}"
        )
    return value


def _lr(name: str, value: Any) -> Any:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'lr must be a number > 0, a schedule or "auto"; got {value!r}')
        return value
    if value is None or is_schedule(value):
        return value
    return check_real(name, value, low=0.0, low_open=True)


def _optimizer_kwargs(name: str, value: Any) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"optimizer_kwargs must be a dict, got {type(value).__name__}")
    kwargs = dict(value or {})
    if "lr" in kwargs:
        raise ValueError("pass the learning rate as fit(lr=...), not in optimizer_kwargs")
    return kwargs


def _scheduler(name: str, value: Any) -> Any:
    kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if value is not None and not isinstance(value, kinds):
        raise TypeError(f"scheduler must be a torch LR scheduler, got {type(value).__name__}")
    return value


def check_metrics(name: str, value: Any) -> dict[str, Callable[[Any, Any], float]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"metrics must be a dict name -> fn(outputs, targets), got {value!r}")
    for key, fn in value.items():
        if not isinstance(key, str) or not callable(fn):
            raise TypeError(
                f"metrics must map names (str) to functions fn(outputs, targets) -> float; "
                f"got {key!r}: {fn!r}"
            )
        if key == "loss" or not key:
            raise ValueError(
                f"metrics: the name {key!r} is not allowed ('loss' is loss_fn's value, "
                "recorded as loss and val_loss); name the metric otherwise"
            )
    return dict(value)


def _callbacks(name: str, value: Any) -> tuple[Callback, ...]:
    if isinstance(value, Callback):
        value = (value,)
    elif not isinstance(value, Iterable) or isinstance(value, (str, bytes, Mapping)):
        raise TypeError(
            "callbacks must be a list of Callback instances (or one Callback), "
            f"got {type(value).__name__}"
        )
    cbs = tuple(value)
    for cb in cbs:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
    return cbs


def _early_stopping(name: str, value: Any) -> EarlyStopping | None:
    if isinstance(value, Mapping):
        value = EarlyStopping(**value)
    if value is not None and not isinstance(value, EarlyStopping):
        raise TypeError(
            "early_stopping must be an EarlyStopping, a dict of its arguments or None; "
            f"got {type(value).__name__}"
        )
    return value


def _resume(name: str, value: Any) -> bool | Path:
    if isinstance(value, bool):
        return value
    path = _path("resume", value)
    assert path is not None
    check_resume_file(path)
    return path


def _tol(name: str, value: Any) -> tuple[float | None, float | None] | None:
    """``tol`` as ``(loss tolerance, gradient-norm tolerance)``; ``None`` when unset."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"loss", "grad_norm"})
        if unknown:
            raise ValueError(f"tol keys must be 'loss' and/or 'grad_norm'; got {unknown[0]!r}")
        loss, grad = value.get("loss"), value.get("grad_norm")
        return (
            None if loss is None else check_real("tol['loss']", loss, low=0.0, low_open=True),
            None if grad is None else check_real("tol['grad_norm']", grad, low=0.0, low_open=True),
        )
    tol = _positive(name, value)
    return tol, tol


# ----------------------------------------------------------------------------- the options
@dataclass(frozen=True, kw_only=True, eq=False)
class FitOptions:
    """The options of :func:`bergab.fit`, checked and normalized (see the module docstring).

    Fields hold the normalized values: ``tol`` becomes a pair ``(loss, grad_norm)``,
    ``metrics`` and ``optimizer_kwargs`` dicts, ``callbacks`` a tuple, ``early_stopping``
    an :class:`~bergab.training.EarlyStopping`, paths :class:`~pathlib.Path` objects, and
    ``epochs`` is 1 when neither ``epochs`` nor ``max_steps`` is given.

    Example:
        >>> FitOptions(tol={"loss": 1e-6}, max_steps=10).tol
        (1e-06, None)
        >>> FitOptions(checkpoint_every=5)
        Traceback (most recent call last):
        ...
        ValueError: checkpoint_every needs checkpoint_dir
    """

    val_data: Any = _option(
        None,
        "validation data in the same forms; evaluated every epoch (or every ``val_every`` "
        "steps) in eval mode without gradients: ``val_loss`` and ``val_<metric>``, "
        "weighted by batch size.",
    )
    optimizer: Any = _option(
        "adamw",
        'a name for :func:`bergab.optim.create` (``"adamw"``, ``"sgd"``, ...), an optimizer '
        "class, a factory ``params -> Optimizer`` or an instance.",
        _optimizer,
    )
    lr: Any = _option(
        None,
        'a float > 0, a schedule (``step -> lr``; any callable), ``"auto"`` (a range test '
        "picks the peak of a cosine schedule, see :mod:`bergab.auto_lr`) or ``None`` (the "
        "optimizer's own lr).",
        _lr,
    )
    optimizer_kwargs: Any = _option(
        None,
        "arguments for an optimizer name or class (``weight_decay``...).",
        _optimizer_kwargs,
    )
    scheduler: Any = _option(
        None,
        "a torch LR scheduler built on the ``optimizer`` instance, stepped after every "
        "optimizer step (a torch ``ReduceLROnPlateau`` after every evaluation).",
        _scheduler,
    )
    epochs: int | None = _option(
        None,
        "passes over ``train_data``, an int >= 1.",
        _optional(_int_ge(1)),
        Toml(int, optional=True, ge=1),
    )
    max_steps: int | None = _option(
        None,
        "optimizer steps, an int >= 1. Training stops at whichever of ``epochs``/"
        "``max_steps`` comes first; with neither, one epoch.",
        _optional(_int_ge(1)),
        Toml(int, optional=True, ge=1),
    )
    batch_size: int | str | None = _option(
        None,
        '``"full"``, an int >= 1 or ``None`` (64) for tensors and Datasets; must be '
        "``None`` for a DataLoader.",
        check_batch_size,
        Toml(int, optional=True, check=_toml_batch_size),
    )
    shuffle: bool = _option(
        True, "reshuffle tensors/Datasets every epoch (seeded, resumable).", check_bool, Toml(bool)
    )
    batch_fn: Any = _option(
        None,
        "maps a batch to ``(inputs, targets)`` (default: pairs and dicts).",
        callable_or_none("batch -> (inputs, targets)"),
    )
    clip_norm: float | None = _option(
        None,
        "clip the global gradient norm to this value (> 0).",
        _optional(_positive),
        Toml(float, optional=True, gt=0),
    )
    clip_value: float | None = _option(
        None,
        "clip every gradient entry to ``[-clip_value, clip_value]`` (> 0).",
        _optional(_positive),
        Toml(float, optional=True, gt=0),
    )
    accumulation_steps: int = _option(
        1,
        "micro-batches per optimizer step, an int >= 1; each micro-loss is weighted by its "
        "share of the examples, so k batches of b equal one of k·b.",
        _int_ge(1),
        Toml(int, ge=1),
    )
    precision: str = _option(
        "32",
        '``"32"``, ``"bf16"`` (autocast, CPU and GPU) or ``"fp16"`` (autocast and a '
        "GradScaler; meant for CUDA, also runs, slowly, on the CPU).",
        _one_of(PRECISIONS),
        Toml(str, choices=PRECISIONS),
    )
    device: Any = _option(
        "auto",
        '``"auto"`` (the model\'s device, else CUDA when available, else CPU) or a device.',
        None,
        Toml(str),
    )
    metrics: Any = _option(
        None,
        "``{name: fn(outputs, targets) -> number}`` computed on ``val_data`` (``val_<name>``"
        " in the records), and on the training batches with ``train_metrics``.",
        check_metrics,
    )
    train_metrics: bool = _option(
        False,
        "also compute ``metrics`` on the training batches, from the outputs of the training "
        "steps themselves (no second pass; in train mode, while the weights move): "
        "``train_<name>`` in every record, the mean since the previous record weighted by "
        "batch size (skipped steps left out), like ``loss``.",
        check_bool,
        Toml(bool),
    )
    val_every: int | None = _option(
        None,
        "validate every this many steps instead of at epoch ends.",
        _optional(_int_ge(1)),
        Toml(int, optional=True, ge=1),
    )
    callbacks: Any = _option(
        (), ":class:`~bergab.training.Callback` instances (hooks in the docs).", _callbacks
    )
    early_stopping: Any = _option(
        None,
        "an :class:`~bergab.training.EarlyStopping` or a dict of its arguments.",
        _early_stopping,
        Toml(dict, optional=True),
    )
    checkpoint_dir: Any = _option(
        None,
        "where ``last.pt`` (the resumable checkpoint) is written: at the start, every epoch "
        "end (or every ``checkpoint_every`` steps) and at the end.",
        _path,
    )
    checkpoint_every: int | None = _option(
        None,
        "checkpoint every this many steps.",
        _optional(_int_ge(1)),
        Toml(int, optional=True, ge=1),
    )
    keep_last: int = _option(
        1,
        "replaced checkpoints kept beside ``last.pt`` (``last.prev.pt``, ...), an int >= 0: "
        "a resume falls back to the newest one that loads, with a warning.",
        _int_ge(0),
        Toml(int, ge=0),
    )
    resume: Any = _option(
        False,
        "``True``: continue from ``checkpoint_dir/last.pt`` when it exists (else start); "
        "a path: continue from that checkpoint.",
        _resume,
    )
    seed: int | None = _option(
        None,
        "seeds torch, numpy and ``random`` and the data order (an int >= 0).",
        _optional(_int_ge(0)),
        Toml(int, ge=0, default=0),
    )
    log_dir: Any = _option(
        None,
        "write CSV and JSONL logs (and TensorBoard events when installed) there.",
        _path,
    )
    progress: bool = _option(
        True, "show a tqdm progress bar (when tqdm is installed).", check_bool, Toml(bool)
    )
    nan_policy: str = _option(
        "stop",
        'on a NaN/inf loss or gradient norm: ``"stop"`` (raise :class:`NonFiniteError` '
        'naming the step), ``"skip"`` the step, or ``"rollback"`` to the last checkpoint '
        "and halve the learning rate.",
        _one_of(NAN_POLICIES),
        Toml(str, choices=NAN_POLICIES),
    )
    tol: Any = _option(
        None,
        "stop when ``|loss_t - loss_{t-1}| <= tol·max(1, |loss_{t-1}|)`` or the gradient "
        'norm is ``<= tol``; a dict ``{"loss": a, "grad_norm": b}`` sets either alone. '
        "Meant for full-batch problems; needs ``max_steps`` or ``epochs``.",
        _tol,
        Toml(float, optional=True, gt=0),
    )

    strategy: str = _option(
        "auto",
        'how several processes train together: ``"ddp"`` (DistributedDataParallel), '
        '``"fsdp"`` (FSDP2\'s ``fully_shard``), ``"none"`` (one process, or a model you '
        'wrapped yourself) or ``"auto"``: ``"ddp"`` under torchrun with ``WORLD_SIZE`` > 1, '
        'else ``"none"`` (``docs/distributed.md``). ``batch_size`` is per process: the '
        "global batch is ``batch_size`` x processes x ``accumulation_steps``.",
        _one_of(STRATEGIES),
        Toml(str, choices=STRATEGIES),
    )
    shard_optimizer: bool = _option(
        False,
        "shard the optimizer's state across the processes with torch's "
        "``ZeroRedundancyOptimizer`` (ZeRO-1); the optimizer is given by name or class.",
        check_bool,
        Toml(bool),
    )
    lr_scaling: str | None = _option(
        None,
        "when a run resumes with another number of processes (a new global batch): "
        '``"linear"`` multiplies the learning rate by new/old processes, ``"sqrt"`` by its '
        "square root, ``None`` keeps it.",
        _optional(_one_of(LR_SCALINGS)),
        Toml(str, optional=True, choices=LR_SCALINGS),
    )
    lr_scaling_warmup: int = _option(
        0,
        "steps over which a learning rate scaled up by ``lr_scaling`` rises linearly from "
        "the old to the new value (gradual warmup after the global batch grew), an int >= 0.",
        _int_ge(0),
        Toml(int, ge=0),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata["check"]
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self._check_together()

    def _check_together(self) -> None:
        """The rules that tie options to each other."""
        if self.epochs is None and self.max_steps is None:
            if self.tol is not None:
                raise ValueError("tol needs a cap on the run: set max_steps (or epochs) with tol")
            object.__setattr__(self, "epochs", 1)
        check_clip(self.clip_norm, self.clip_value)
        if self.metrics and self.val_data is None and not self.train_metrics:
            raise ValueError(
                "metrics are computed on val_data: pass val_data too (or train_metrics=True "
                "for the training batches)"
            )
        if self.train_metrics and not self.metrics:
            raise ValueError("train_metrics=True needs metrics to compute")
        if self.val_every is not None and self.val_data is None:
            raise ValueError("val_every needs val_data")
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if self.resume is True and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (it resumes from its last.pt)")
        if self.nan_policy == "rollback" and self.checkpoint_dir is None:
            raise ValueError(
                "nan_policy='rollback' needs checkpoint_dir (it rolls back to the last checkpoint)"
            )
        by_name = isinstance(self.optimizer, (str, type))
        if self.shard_optimizer and self.strategy == "fsdp":
            raise ValueError(
                "shard_optimizer=True goes with strategy='ddp': strategy='fsdp' shards the "
                "optimizer's state already"
            )
        if self.shard_optimizer and isinstance(self.optimizer, torch.optim.Optimizer):
            raise TypeError(
                "shard_optimizer=True builds one optimizer a process over its share of the "
                "parameters: give optimizer by name, class or factory, not an instance"
            )
        if self.optimizer_kwargs and not by_name:
            raise TypeError(
                "optimizer_kwargs go with an optimizer name or class, not an instance or factory"
            )
        if self.scheduler is not None:
            if self.scheduler.optimizer is not self.optimizer:
                raise ValueError(
                    "scheduler must drive the optimizer instance passed as optimizer= "
                    "(pass both, built together)"
                )
            if self.lr is not None:
                raise ValueError(
                    "pass either lr or scheduler, not both (the scheduler sets the lr)"
                )

    @classmethod
    def from_kwargs(cls, caller: str, kwargs: Mapping[str, Any]) -> FitOptions:
        """Build from keyword arguments; an unknown one is a ``TypeError`` with a hint.

        Example:
            >>> FitOptions.from_kwargs("fit", {"epoch": 3})
            Traceback (most recent call last):
            ...
            TypeError: fit() got an unexpected keyword argument 'epoch' (did you mean 'epochs'?)
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}{hint}")
        return cls(**kwargs)

    @property
    def tol_loss(self) -> float | None:
        """The loss-change tolerance of ``tol``, or ``None``."""
        return None if self.tol is None else self.tol[0]

    @property
    def tol_grad(self) -> float | None:
        """The gradient-norm tolerance of ``tol``, or ``None``."""
        return None if self.tol is None else self.tol[1]


def toml_fields() -> list[tuple[str, Toml, Any]]:
    """``(name, TOML spec, default)`` of every option a config's ``[fit]`` table holds.

    Example:
        >>> [name for name, _, _ in toml_fields()][:3]
        ['epochs', 'max_steps', 'batch_size']
    """
    out = []
    for f in dataclasses.fields(FitOptions):
        spec = f.metadata["toml"]
        if spec is not None:
            default = f.default if spec.default is _FIT_DEFAULT else spec.default
            out.append((f.name, spec, default))
    return out


def option_docs(indent: str = "        ") -> str:
    """The ``Args`` lines of every option, for the docstrings of ``fit`` and ``Trainer``."""
    import textwrap

    lines = []
    for f in dataclasses.fields(FitOptions):
        text = f"{f.name}: {f.metadata['doc']}"
        lines.extend(
            textwrap.wrap(text, width=88, initial_indent=indent, subsequent_indent=indent + "    ")
        )
    return "\n".join(lines)


def fit_signature(leading: Iterable[inspect.Parameter], returns: Any) -> inspect.Signature:
    """A signature of ``leading`` positional parameters followed by every option.

    This is what ``help(fit)``, IDEs that read ``__signature__`` and
    ``inspect.signature`` show, although ``fit`` takes the options as ``**options``.
    """
    params = list(leading)
    params.extend(
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
        )
        for f in dataclasses.fields(FitOptions)
    )
    return inspect.Signature(params, return_annotation=returns)


_FIT_DOC = """Train ``model`` on ``train_data`` by gradient descent; return the :class:`History`.

    Args:
        model: the ``torch.nn.Module`` to train (moved to ``device``, trained in place).
        train_data: a ``DataLoader`` (or any re-iterable of batches), a map-style
            ``Dataset``, or tensors ``(x, y)`` / a ``TensorDataset``. With tensors or a
            Dataset, fit batches: ``batch_size="full"`` is batch gradient descent, ``1``
            stochastic gradient descent, ``k`` mini-batch.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor`` (a mean over the batch).
        **options: fit's options, each declared once in
            :class:`~bergab.training.FitOptions`:
{options}

    Returns:
        The :class:`~bergab.training.History`: step and evaluation records, ``best``,
        ``plot()``, ``stop_reason``.

    Raises:
        NonFiniteError: a NaN/inf with ``nan_policy="stop"`` (or too many skips/rollbacks).
        TypeError: an option fit does not have (the message suggests the closest name).

    Example:
        >>> import torch, bergab
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 3, generator=g)
        >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        >>> model = torch.nn.Linear(3, 1)
        >>> h = bergab.fit(model, (x, y), torch.nn.functional.mse_loss, val_data=(x, y),
        ...                optimizer="sgd", lr=0.1, epochs=5, batch_size=32, seed=0,
        ...                progress=False)
        >>> len(h), len(h.records), h.best["val_loss"] < 1e-3
        (40, 5, True)
    """


def fit_docstring() -> str:
    """The docstring of :func:`bergab.fit`, with every option's documentation in it."""
    return _FIT_DOC.format(options=option_docs(indent=" " * 12))
