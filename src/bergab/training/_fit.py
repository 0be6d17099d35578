"""``fit()``: the training loop, with the learning rate, precision and resume under control.

See ``docs/training.md`` for the whole story; in short, one optimizer step is::

    for each of the k micro-batches (accumulation_steps=k):
        with autocast(precision): loss_i = loss_fn(model(x_i), y_i)
        backward(loss_i * n_i / n)          # n_i examples of n in the k batches
    unscale (fp16), grad norm (clip_norm), clip_value
    one sync: loss and grad norm to the host -> nan_policy
    optimizer.step() (GradScaler.step under fp16); the scheduler steps unless skipped
    log, callbacks, tol, validation every val_every steps, checkpoint every checkpoint_every

and after each epoch: validation, the epoch record, metric-driven schedules, callbacks,
checkpoint.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch
from torch import nn

from bergab import optim as _optim
from bergab import schedules
from bergab._validate import check_bool, check_choice, check_int, check_real
from bergab.training import _data
from bergab.training._step import PRECISIONS, StepCore, check_clip, check_precision
from bergab.training.callbacks import HOOKS, Callback, EarlyStopping
from bergab.training.checkpoint import (
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bergab.training.history import History

__all__ = ["CHECKPOINT_FORMAT", "NAN_POLICIES", "PRECISIONS", "NonFiniteError", "Trainer", "fit"]

#: The ``nan_policy`` values fit accepts.
NAN_POLICIES = ("stop", "skip", "rollback")
#: The ``format`` entry of the checkpoints fit writes.
CHECKPOINT_FORMAT = "bergab.fit/1"
#: ``nan_policy="rollback"`` gives up (raises) after this many rollbacks in one run.
MAX_ROLLBACKS = 10
#: ``nan_policy="skip"`` gives up (raises) after this many skipped steps in a row.
MAX_CONSECUTIVE_SKIPS = 100

_LAST = "last.pt"
_END = object()


class NonFiniteError(FloatingPointError):
    """Training hit a NaN/inf loss (or gradient) and ``nan_policy`` said stop.

    The message names the step, the epoch and the batch. ``history`` holds everything
    recorded up to that step (callbacks' ``on_fit_end`` has run, so ``EarlyStopping``
    has restored the best weights).

    Example:
        >>> err = NonFiniteError("loss is nan at step 3", History())
        >>> str(err), len(err.history)
        ('loss is nan at step 3', 0)
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class _NonFiniteError(Exception):
    pass


class _RollbackError(Exception):
    pass


# ----------------------------------------------------------------------------- learning rate
def _write_lr(group: dict[str, Any], value: float) -> None:
    if isinstance(group.get("lr"), torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


class _Scaled(schedules.Schedule):
    """A schedule times the factor fit controls (NaN rollbacks, plateau cuts)."""

    name = "fit_scaled"

    def __init__(self, schedule: schedules.ScheduleLike) -> None:
        self.schedule = schedule
        self.factor = 1.0

    def _value(self, t: int) -> float:
        return self.factor * float(self.schedule(t))

    def children(self) -> tuple[schedules.Schedule, ...]:
        return (self.schedule,) if isinstance(self.schedule, schedules.Schedule) else ()

    def _config(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "factor": self.factor}


def _is_bergab(opt: torch.optim.Optimizer) -> TypeGuard[_optim.Optimizer]:
    return isinstance(opt, _optim.Optimizer) and "lr" in opt.schedulable


class _LRControl:
    """Multiplies every param group's learning rate by one factor, whatever drives it.

    bergab optimizers: ``lr_scale = base_scale * factor`` (schedules keep running).
    torch optimizers driven by fit's schedule adapter: the schedule is wrapped in
    :class:`_Scaled`. A user's torch LR scheduler: its ``base_lrs`` and the groups' lr are
    rescaled. A constant lr: ``lr = base_lr * factor``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaled: _Scaled | None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaled = scaled
        groups = optimizer.param_groups
        if _is_bergab(optimizer):
            self.kind = "lr_scale"
            self.base = [float(g["lr_scale"]) for g in groups]
        elif scaled is not None:
            self.kind = "schedule"
            self.base = []
        elif scheduler is not None:
            self.kind = "scheduler"
            self.base = []
        else:
            self.kind = "lr"
            self.base = [float(g["lr"]) for g in groups]
        self.applied = 1.0

    def apply(self, factor: float) -> None:
        if factor == self.applied:
            return
        groups = self.optimizer.param_groups
        if self.kind == "lr_scale":
            for g, b in zip(groups, self.base, strict=True):
                g["lr_scale"] = b * factor
        elif self.kind == "lr":
            for g, b in zip(groups, self.base, strict=True):
                _write_lr(g, b * factor)
        elif self.kind == "schedule":
            assert self.scaled is not None
            self.scaled.factor = factor
            t = self.scheduler.last_epoch
            for g, s in zip(groups, self.scheduler.schedules, strict=True):
                _write_lr(g, float(s(t)))
        else:
            ratio = factor / self.applied
            for g in groups:
                _write_lr(g, float(g["lr"]) * ratio)
            if hasattr(self.scheduler, "base_lrs"):
                self.scheduler.base_lrs = [b * ratio for b in self.scheduler.base_lrs]
        self.applied = factor

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": list(self.base), "applied": self.applied}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(
                f"the checkpoint's learning rate is driven by {state['kind']!r}, this run's by "
                f"{self.kind!r}: resume with the same optimizer, lr and scheduler"
            )
        self.base = [float(b) for b in state["base"]]
        self.applied = float(state["applied"])
        if self.scaled is not None:
            self.scaled.factor = self.applied


# ----------------------------------------------------------------------------- helpers
def _check_path(name: str, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


def _check_tol(tol: Any) -> tuple[float | None, float | None]:
    if tol is None:
        return None, None
    if isinstance(tol, Mapping):
        unknown = sorted(set(tol) - {"loss", "grad_norm"})
        if unknown:
            raise ValueError(f"tol keys must be 'loss' and/or 'grad_norm'; got {unknown[0]!r}")
        loss = tol.get("loss")
        grad = tol.get("grad_norm")
        return (
            None if loss is None else check_real("tol['loss']", loss, low=0.0, low_open=True),
            None if grad is None else check_real("tol['grad_norm']", grad, low=0.0, low_open=True),
        )
    value = check_real("tol", tol, low=0.0, low_open=True)
    return value, value


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _resolve_device(device: Any, model: nn.Module) -> torch.device:
    if device == "auto":
        p = next(model.parameters(), None)
        if p is not None and p.device.type != "cpu":
            return p.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be 'auto', a str or a torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1'; "
            f"got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def _accepts_lr(factory: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "lr" or p.kind is p.VAR_KEYWORD for p in params)


#: What ``fit(lr="auto")`` calls: ``auto_schedule`` and ``build_schedule`` of
#: :mod:`bergab.auto_lr`. The range test lives a layer above training, so training does
#: not import it: ``bergab.auto_lr`` hands its functions down with
#: :func:`register_auto_lr` when it is imported (``import bergab`` imports it).
_AUTO_LR: dict[str, Callable[..., Any]] = {}


def register_auto_lr(auto_schedule: Callable[..., Any], build_schedule: Callable[..., Any]) -> None:
    """Set what ``fit(lr="auto")`` resolves the learning rate with (see ``_AUTO_LR``)."""
    _AUTO_LR["auto_schedule"] = auto_schedule
    _AUTO_LR["build_schedule"] = build_schedule


def _overrides(cb: Callback, hook: str) -> bool:
    return hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook)


# ----------------------------------------------------------------------------- trainer
class Trainer(StepCore):
    """The running state of :func:`fit`, as callbacks see it (``fit`` creates it).

    Attributes:
        model: the model being trained (on :attr:`device`).
        optimizer: the ``torch.optim.Optimizer``.
        scheduler: the torch LR scheduler stepped every step (fit's schedule adapter
            for a torch optimizer with a schedule, or the one you passed), or ``None``.
        scaler: the ``torch.amp.GradScaler`` under ``precision="fp16"``, else ``None``.
        history: the :class:`~bergab.training.History` being recorded.
        device: the ``torch.device`` training runs on.
        epoch: the current epoch, 0-based.
        step: optimizer steps taken so far (skipped ones included).
        batch_in_epoch: batches of the current epoch consumed so far.
        steps_per_epoch: optimizer steps per epoch, ``None`` when the data has no length.
        total_steps: the planned number of steps, ``None`` when unknown.
        has_validation: whether ``val_data`` was given.
        checkpoint_dir: the checkpoint folder or ``None``; log_dir likewise.
        resumed: whether this run continued from a checkpoint.
        should_stop: set by :meth:`stop`; stop_reason: why.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        *,
        val_data: Any = None,
        optimizer: Any = "adamw",
        lr: Any = None,
        optimizer_kwargs: Mapping[str, Any] | None = None,
        scheduler: Any = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int | str | None = None,
        shuffle: bool = True,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        accumulation_steps: int = 1,
        precision: str = "32",
        device: Any = "auto",
        metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
        val_every: int | None = None,
        callbacks: Iterable[Callback] = (),
        early_stopping: EarlyStopping | Mapping[str, Any] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike[str] = False,
        seed: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        nan_policy: str = "stop",
        tol: float | Mapping[str, float] | None = None,
    ) -> None:
        # ---------------------------------------------------------------- arguments
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (outputs, targets) -> loss, got {loss_fn!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.val_data = val_data
        self.has_validation = val_data is not None
        self.batch_fn = _data.default_batch_fn if batch_fn is None else batch_fn
        if not callable(self.batch_fn):
            raise TypeError(
                f"batch_fn must be callable batch -> (inputs, targets), got {batch_fn!r}"
            )

        self.epochs = None if epochs is None else check_int("epochs", epochs, low=1)
        self.max_steps = None if max_steps is None else check_int("max_steps", max_steps, low=1)
        self.tol_loss, self.tol_grad = _check_tol(tol)
        if self.epochs is None and self.max_steps is None:
            if tol is not None:
                raise ValueError("tol needs a cap on the run: set max_steps (or epochs) with tol")
            self.epochs = 1
        if batch_size is not None and batch_size != "full":
            if isinstance(batch_size, str):
                raise ValueError(
                    f'batch_size must be an integer >= 1 or "full"; got {batch_size!r}'
                )
            check_int("batch_size", batch_size, low=1)
        self.batch_size = batch_size
        self.shuffle = check_bool("shuffle", shuffle)
        self.clip_norm, self.clip_value = check_clip(clip_norm, clip_value)
        self.accumulation_steps = check_int("accumulation_steps", accumulation_steps, low=1)
        self.device = _resolve_device(device, model)
        self.precision = check_precision(precision, self.device)
        if metrics is not None:
            if not isinstance(metrics, Mapping):
                raise TypeError(
                    f"metrics must be a dict name -> fn(outputs, targets), got {metrics!r}"
                )
            for name, fn in metrics.items():
                if not isinstance(name, str) or not callable(fn):
                    raise TypeError(
                        f"metrics must map names (str) to functions fn(outputs, targets) -> float; "
                        f"got {name!r}: {fn!r}"
                    )
        self.metrics = dict(metrics or {})
        if self.metrics and not self.has_validation:
            raise ValueError("metrics are computed on val_data: pass val_data too")
        self.val_every = None if val_every is None else check_int("val_every", val_every, low=1)
        if self.val_every is not None and not self.has_validation:
            raise ValueError("val_every needs val_data")
        self.checkpoint_dir = _check_path("checkpoint_dir", checkpoint_dir)
        self.log_dir = _check_path("log_dir", log_dir)
        self.checkpoint_every = (
            None
            if checkpoint_every is None
            else check_int("checkpoint_every", checkpoint_every, low=1)
        )
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if isinstance(resume, bool):
            if resume and self.checkpoint_dir is None:
                raise ValueError("resume=True needs checkpoint_dir (it resumes from its last.pt)")
            self._resume_path = (
                self.checkpoint_dir / _LAST if resume and self.checkpoint_dir else None
            )
            self._resume_required = False
        else:
            path = _check_path("resume", resume)
            assert path is not None
            if not path.is_file():
                raise FileNotFoundError(f"resume: checkpoint {str(path)!r} does not exist")
            self._resume_path = path
            self._resume_required = True
        self.seed = None if seed is None else check_int("seed", seed, low=0)
        self.progress = check_bool("progress", progress)
        self.nan_policy = check_choice("nan_policy", nan_policy, NAN_POLICIES)
        if self.nan_policy == "rollback" and self.checkpoint_dir is None:
            raise ValueError(
                "nan_policy='rollback' needs checkpoint_dir (it rolls back to the last checkpoint)"
            )

        # optimizer / lr
        if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, Mapping):
            raise TypeError(
                f"optimizer_kwargs must be a dict, got {type(optimizer_kwargs).__name__}"
            )
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        if "lr" in self.optimizer_kwargs:
            raise ValueError("pass the learning rate as fit(lr=...), not in optimizer_kwargs")
        is_instance = isinstance(optimizer, torch.optim.Optimizer)
        is_class = isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
        if not (isinstance(optimizer, str) or is_instance or is_class or callable(optimizer)):
            raise TypeError(
                "optimizer must be a name (see bergab.optim.names()), a torch.optim.Optimizer, "
                f"an Optimizer class or a factory params -> Optimizer; got {optimizer!r}"
            )
        if self.optimizer_kwargs and not (isinstance(optimizer, str) or is_class):
            raise TypeError(
                "optimizer_kwargs go with an optimizer name or class, not an instance or factory"
            )
        self._optimizer_spec = optimizer
        if isinstance(lr, str):
            if lr != "auto":
                raise ValueError(f'lr must be a number > 0, a schedule or "auto"; got {lr!r}')
        elif lr is not None and not schedules.is_schedule(lr):
            lr = check_real("lr", lr, low=0.0, low_open=True)
        self._lr_spec = lr
        if scheduler is not None:
            if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler) and not isinstance(
                scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
            ):
                raise TypeError(
                    f"scheduler must be a torch LR scheduler, got {type(scheduler).__name__}"
                )
            if scheduler.optimizer is not optimizer:
                raise ValueError(
                    "scheduler must drive the optimizer instance passed as optimizer= "
                    "(pass both, built together)"
                )
            if lr is not None:
                raise ValueError(
                    "pass either lr or scheduler, not both (the scheduler sets the lr)"
                )
        self.scheduler: Any = scheduler

        cbs = list(callbacks)
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        if early_stopping is not None:
            if isinstance(early_stopping, Mapping):
                early_stopping = EarlyStopping(**early_stopping)
            if not isinstance(early_stopping, EarlyStopping):
                raise TypeError(
                    "early_stopping must be an EarlyStopping, a dict of its arguments or None; "
                    f"got {type(early_stopping).__name__}"
                )
            cbs.insert(0, early_stopping)
        self._user_callbacks = cbs

        # ---------------------------------------------------------------- run state
        self.optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]
        self.scaler: Any = None
        self.history = History()
        self.epoch = 0
        self.step = 0
        self.batch_in_epoch = 0
        self.steps_per_epoch: int | None = None
        self.total_steps: int | None = None
        self.resumed = False
        self.should_stop = False
        self.stop_reason: str | None = None
        self.callbacks: list[Callback] = []

        self._loss_sum = 0.0
        self._loss_n = 0
        self._prev_loss: float | None = None
        self._last_record_step = 0
        self._last_val_step = -1
        self._rollbacks = 0
        self._rollback_events: list[dict[str, Any]] = []
        self._skips_in_a_row = 0
        self._epoch_state: Any = None
        self._pending_rng: Any = None
        self._elapsed0 = 0.0
        self._t0 = time.perf_counter()
        self._sf_depth = 0
        self._sf_final = False
        self._auto: dict[str, Any] | None = None
        self._data_seed = 0

    # ------------------------------------------------------------------ public helpers
    def stop(self, reason: str = "stopped by a callback") -> None:
        """Ask training to stop after the current step (the first reason given is kept).

        Example:
            >>> data = (torch.zeros(2, 1), torch.zeros(2, 1))
            >>> t = Trainer(torch.nn.Linear(1, 1), data, torch.nn.functional.mse_loss)
            >>> t.stop("enough"); t.stop("later"); t.should_stop, t.stop_reason
            (True, 'enough')
        """
        self.should_stop = True
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def lr(self) -> list[float]:
        """The learning rate of every param group (``group["lr"]``)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def elapsed(self) -> float:
        """Seconds of training so far (across resumes)."""
        return self._elapsed0 + time.perf_counter() - self._t0

    # ------------------------------------------------------------------ setup
    def _resolve_lr(self, fit_state: Mapping[str, Any] | None) -> Any:
        """The one place ``lr="auto"`` is turned into a schedule (range test + policy)."""
        lr = self._lr_spec
        if lr != "auto":
            return lr
        if not _AUTO_LR:  # pragma: no cover - ``import bergab`` registers it
            raise RuntimeError('lr="auto" needs bergab.auto_lr: import bergab first')
        auto_schedule, build_schedule = _AUTO_LR["auto_schedule"], _AUTO_LR["build_schedule"]
        if fit_state is not None and fit_state.get("auto") is not None:
            auto = fit_state["auto"]  # resume: the same schedule, no new range test
            self._auto = dict(auto)
            return build_schedule(auto["peak"], auto["total_steps"], auto["policy"])
        if self.total_steps is None:
            raise ValueError(
                'lr="auto" needs the length of the run: pass max_steps, or epochs with data '
                "that has a length"
            )
        bs = None if self.batch_size is None else getattr(self._source, "batch_size", None)
        # the range test draws fit's batches and takes fit's steps (precision, clipping,
        # accumulation, device): both run bergab.training's data and step code
        chosen = auto_schedule(
            self.model,
            self.train_data,
            self.loss_fn,
            total_steps=self.total_steps,
            optimizer=self._optimizer_spec,
            batch_size=bs,
            batch_fn=self.batch_fn,
            accumulation_steps=self.accumulation_steps,
            device=self.device,
            precision=self.precision,
            clip_norm=self.clip_norm,
            clip_value=self.clip_value,
            seed=self.seed,
            optimizer_kwargs=self.optimizer_kwargs or None,
        )
        self._auto = {
            "peak": chosen.peak,
            "policy": chosen.policy,
            "total_steps": chosen.total_steps,
            "describe": chosen.describe(),
        }
        return chosen.schedule

    def _build_optimizer(self, lr: Any) -> _Scaled | None:
        spec = self._optimizer_spec
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params and not isinstance(spec, torch.optim.Optimizer):
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        float_lr = None if lr is None else (lr if isinstance(lr, float) else float(lr(0)))
        if isinstance(spec, torch.optim.Optimizer):
            opt = spec
            mine = {id(p) for p in self.model.parameters()}
            theirs = {id(p) for g in opt.param_groups for p in g["params"]}
            if not mine & theirs:
                raise ValueError("the optimizer holds none of the model's parameters")
        elif isinstance(spec, str):
            opt = _optim.create(spec, params, **self.optimizer_kwargs)
        elif isinstance(spec, type):
            opt = spec(params, **self.optimizer_kwargs)
        else:
            opt = (
                spec(params, lr=float_lr)
                if float_lr is not None and _accepts_lr(spec)
                else spec(params)
            )
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    "the optimizer factory must return a torch.optim.Optimizer, got "
                    f"{type(opt).__name__}"
                )
        self.optimizer = opt
        scaled = None
        if lr is not None:
            if schedules.is_schedule(lr):
                if _is_bergab(opt):
                    opt.set_schedule("lr", lr)
                else:
                    scaled = _Scaled(lr)
                    self.scheduler = schedules.attach(opt, scaled)
            else:
                if _is_bergab(opt):
                    opt.set_schedule("lr", None)
                for g in opt.param_groups:
                    _write_lr(g, float(lr))
        return scaled

    def _stateful_schedules(self) -> list[schedules.Schedule]:
        found: list[schedules.Schedule] = []
        opt = self.optimizer
        if isinstance(opt, _optim.Optimizer):
            for i in range(len(opt.param_groups)):
                for s in opt.schedules(i).values():
                    if (
                        isinstance(s, schedules.Schedule)
                        and s.stateful
                        and all(s is not f for f in found)
                    ):
                        found.append(s)
        return found

    def _make_callbacks(self) -> list[Callback]:
        from bergab.training import loggers
        from bergab.training.progress import ProgressBar, tqdm_available

        cbs = list(self._user_callbacks)
        if self.log_dir is not None:
            cbs.append(loggers.CSVLogger(self.log_dir))
            cbs.append(loggers.JSONLLogger(self.log_dir))
            if loggers.tensorboard_available():
                cbs.append(loggers.TensorBoardLogger(self.log_dir))
        if self.progress and tqdm_available() and not any(isinstance(c, ProgressBar) for c in cbs):
            cbs.append(ProgressBar())
        return cbs

    def _setup(self, ckpt: Mapping[str, Any] | None) -> None:
        model = self.model
        if any(t.device != self.device for t in [*model.parameters(), *model.buffers()]):
            model.to(self.device)
        fit_state = None if ckpt is None else ckpt["fit"]
        if fit_state is not None:
            self._data_seed = int(fit_state["data_seed"])
        elif self.seed is not None:
            _seed_everything(self.seed)
            self._data_seed = self.seed
        else:
            self._data_seed = int(torch.randint(0, 2**62, (1,)).item())
        self._source = _data.make_source(
            self.train_data, self.batch_size, self.shuffle, self._data_seed
        )
        nb = self._source.num_batches
        k = self.accumulation_steps
        self.steps_per_epoch = None if nb is None else math.ceil(nb / k)
        caps = []
        if self.max_steps is not None:
            caps.append(self.max_steps)
        if self.epochs is not None and self.steps_per_epoch is not None:
            caps.append(self.epochs * self.steps_per_epoch)
        self.total_steps = min(caps) if caps else None
        if self.has_validation:
            bs = self.batch_size
            vbs = 2**62 if bs == "full" else max(256, 64 if bs is None else int(bs))
            self._val_batches = _data.val_batches(self.val_data, vbs)

        lr = self._resolve_lr(fit_state)
        scaled = self._build_optimizer(lr)
        opt = self.optimizer
        self._set_optimizer(opt)
        self._move = not (
            isinstance(self._source, _data.TensorSource)
            and all(t.device == self.device for t in self._source.tensors)
        )
        self._sf = callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))
        self._set_precision(self.precision)
        self._lr = _LRControl(opt, self.scheduler, scaled)
        self._group_schedules = self._stateful_schedules()
        self._step_scheduler = self.scheduler is not None and not isinstance(
            self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        )
        self._scheduler_stateful = isinstance(self.scheduler, schedules.ScheduleLR) and any(
            s.stateful for s in self.scheduler.schedules
        )
        self._has_effective_lr = hasattr(type(opt), "effective_lr")
        self._lr_keys = (
            ["lr"]
            if len(opt.param_groups) == 1
            else [f"lr_{i}" for i in range(len(opt.param_groups))]
        )
        self._eff_keys = ["effective" + "_" + k for k in self._lr_keys]
        if self._auto is not None:
            self.history.info["auto_lr"] = dict(self._auto)

        self.callbacks = self._make_callbacks()
        self._hooks = {h: [cb for cb in self.callbacks if _overrides(cb, h)] for h in HOOKS}
        self._record_sinks = [cb for cb in self.callbacks if hasattr(cb, "write_record")]
        self._factor_cbs = [cb for cb in self.callbacks if _overrides(cb, "lr_factor")]

    # ------------------------------------------------------------------ modes
    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Schedule-free optimizers hold their averaged weights inside this block."""
        outer = self._sf and self._sf_depth == 0 and not self._sf_final
        if outer:
            self.optimizer.eval()  # type: ignore[attr-defined]
        self._sf_depth += 1
        try:
            yield
        finally:
            self._sf_depth -= 1
            if outer and not self._sf_final:
                self.optimizer.train()  # type: ignore[attr-defined]

    def _dispatch(self, hook: str, *args: Any) -> None:
        for cb in self._hooks[hook]:
            getattr(cb, hook)(self, *args)

    def _apply_lr_factor(self) -> None:
        factor = 0.5**self._rollbacks
        for cb in self._factor_cbs:
            factor *= float(cb.lr_factor())
        self._lr.apply(factor)

    # ------------------------------------------------------------------ checkpoints
    @property
    def _last_path(self) -> Path:
        assert self.checkpoint_dir is not None
        return self.checkpoint_dir / _LAST

    def _state(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        cb_states = []
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            cb_states.append({"key": f"{name}#{counts[name]}", "state": cb.state_dict()})
        limit = self.stop_reason in ("epochs", "max_steps")
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "schedules": [s.state_dict() for s in self._group_schedules],
            "callbacks": cb_states,
            "history": self.history.state_dict(),
            "fit": {
                "epoch": self.epoch,
                "step": self.step,
                "batch_in_epoch": self.batch_in_epoch,
                "epoch_state": self._epoch_state,
                "data_seed": self._data_seed,
                "loss_sum": self._loss_sum,
                "loss_n": self._loss_n,
                "prev_loss": self._prev_loss,
                "last_record_step": self._last_record_step,
                "last_val_step": self._last_val_step,
                "rollbacks": self._rollbacks,
                "skips_in_a_row": self._skips_in_a_row,
                "elapsed": self.elapsed,
                "lr_control": self._lr.state_dict(),
                "auto": self._auto,
                # a run stopped by its length limits may be extended; any other stop holds
                "should_stop": self.should_stop and not limit,
                "stop_reason": None if limit else self.stop_reason,
            },
            # restored but not yet in use (a resume inside an epoch): save it as it was
            "rng": self._pending_rng if self._pending_rng is not None else rng_state(),
        }

    def _save_checkpoint(self) -> None:
        with self._eval_mode():
            save_checkpoint(self._state(), self._last_path)

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"not a bergab fit checkpoint (format {ckpt.get('format')!r}, "
                f"expected {CHECKPOINT_FORMAT!r})"
            )
        if self._sf:
            self.optimizer.eval()  # type: ignore[attr-defined]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.scheduler is not None:
            if ckpt.get("scheduler") is None:
                raise ValueError(
                    "the checkpoint has no LR scheduler state, this run has a scheduler"
                )
            self.scheduler.load_state_dict(ckpt["scheduler"])
        saved = ckpt.get("schedules", [])
        if len(saved) != len(self._group_schedules):
            raise ValueError("the checkpoint's metric-driven schedules differ from this run's")
        for s, st in zip(self._group_schedules, saved, strict=True):
            s.load_state_dict(st)
        states = {c["key"]: c["state"] for c in ckpt["callbacks"]}
        counts: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            key = f"{name}#{counts[name]}"
            if key in states:
                cb.load_state_dict(states[key])
        self.history.load_state_dict(ckpt["history"])
        fit = ckpt["fit"]
        self.epoch = int(fit["epoch"])
        self.step = int(fit["step"])
        self.batch_in_epoch = int(fit["batch_in_epoch"])
        self._epoch_state = fit["epoch_state"]
        self._loss_sum = float(fit["loss_sum"])
        self._loss_n = int(fit["loss_n"])
        self._prev_loss = fit["prev_loss"]
        self._last_record_step = int(fit["last_record_step"])
        self._last_val_step = int(fit["last_val_step"])
        self._rollbacks = int(fit["rollbacks"])
        self._skips_in_a_row = int(fit["skips_in_a_row"])
        self._elapsed0 = float(fit["elapsed"])
        self._t0 = time.perf_counter()
        self.should_stop = bool(fit["should_stop"])
        self.stop_reason = fit["stop_reason"]
        self._lr.load_state_dict(fit["lr_control"])
        if self._sf:
            self.optimizer.train()  # type: ignore[attr-defined]
        self.optimizer.zero_grad(set_to_none=True)
        if self.batch_in_epoch == 0:
            set_rng_state(ckpt["rng"])
            self._pending_rng = None
        else:
            self._pending_rng = ckpt["rng"]  # set once the epoch's iterator is rebuilt

    def _load_resume(self) -> dict[str, Any] | None:
        path = self._resume_path
        if path is None:
            return None
        remove_stale_temporaries(path)
        if not path.is_file():
            if self._resume_required:
                raise FileNotFoundError(f"resume: checkpoint {str(path)!r} does not exist")
            return None  # resume=True and nothing saved yet: start fresh
        return load_checkpoint(path)

    # ------------------------------------------------------------------ the loop
    def run(self) -> History:
        """Train, and return the :class:`History` (what :func:`fit` calls)."""
        ckpt = self._load_resume()
        self._setup(ckpt)
        ended = False
        try:
            if ckpt is not None:
                self._restore(ckpt)
                self.resumed = True
            if not self.model.training:  # else keep submodules the user set to eval mode
                self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            if self._sf:
                self.optimizer.train()  # type: ignore[attr-defined]
            self._dispatch("on_fit_start")
            self._apply_lr_factor()
            if self.checkpoint_dir is not None and not self.resumed:
                self._save_checkpoint()
            self._t0 = time.perf_counter()
            try:
                self._loop()
            except KeyboardInterrupt:
                ended = True
                self._finish("interrupted", clean=False)
                raise
            except _NonFiniteError as exc:
                ended = True
                self._finish(f"nan: {exc}", clean=False)
                raise NonFiniteError(str(exc), self.history) from None
            ended = True
            self._finish(self.stop_reason or "epochs", clean=True)
        finally:
            if not ended:  # an exception from user code: still release files and the bar
                for cb in self.callbacks:
                    close = getattr(cb, "close", None)
                    if callable(close):
                        close()
                    bar = getattr(cb, "bar", None)
                    if bar is not None:
                        bar.close()
        return self.history

    def _loop(self) -> None:
        while True:
            if self.should_stop:
                return
            if self.max_steps is not None and self.step >= self.max_steps:
                self.stop("max_steps")
                return
            if self.epochs is not None and self.epoch >= self.epochs:
                self.stop("epochs")
                return
            try:
                self._run_epoch()
            except _RollbackError as rb:
                self._rollback(str(rb))

    def _run_epoch(self) -> None:
        start = self.batch_in_epoch
        src = self._source
        if self._pending_rng is None:
            self._dispatch("on_epoch_start")
            self._epoch_state = src.begin_epoch()
            batches = src.batches(self.epoch, 0, None)
        else:
            batches = src.batches(self.epoch, start, self._epoch_state)
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        k = self.accumulation_steps
        nb = src.num_batches
        empty = start == 0
        while True:
            micro = list(islice(batches, k)) if k > 1 else [next(batches, _END)]
            if not micro or micro[0] is _END:
                break
            empty = False
            self._train_step(micro)
            if self.should_stop or (self.max_steps is not None and self.step >= self.max_steps):
                if nb is not None and self.batch_in_epoch >= nb:
                    break  # the epoch's data is done as well: end it properly
                return
        if empty:
            raise ValueError("train_data yielded no batches")
        self._end_epoch()

    def _train_step(self, micro: list[Any]) -> None:
        opt = self.optimizer
        scaler = self.scaler
        k = len(micro)
        loss_v, gn_v = self._loss_and_grad_norm(self._accumulate(micro))

        groups = opt.param_groups
        lrs = [g["lr"] for g in groups]
        eff = opt.effective_lr if self._has_effective_lr else None  # type: ignore[attr-defined]
        skipped = False
        if not math.isfinite(loss_v) or (scaler is None and not math.isfinite(gn_v)):
            skipped = self._non_finite(loss_v, gn_v)
        else:
            skipped = self._optimizer_step()
        if self._step_scheduler and not skipped:
            self.scheduler.step()
        opt.zero_grad(set_to_none=True)

        self.step += 1
        self.batch_in_epoch += k
        rec: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": loss_v,
            "grad_norm": gn_v,
        }
        for key, v in zip(self._lr_keys, lrs, strict=True):
            rec[key] = v if type(v) is float else float(v)
        if eff is not None:
            for key, v in zip(self._eff_keys, eff, strict=True):
                rec[key] = float(v)
        if scaler is not None:
            rec["loss_scale"] = scaler.get_scale()
        rec["skipped"] = skipped
        rec["time"] = self.elapsed
        self.history.add_step(rec)
        if not skipped:
            self._loss_sum += loss_v
            self._loss_n += 1
        for cb in self._hooks["on_batch_end"]:
            cb.on_batch_end(self, rec)

        if not skipped:
            if self.tol_loss is not None:
                prev = self._prev_loss
                if prev is not None and abs(loss_v - prev) <= self.tol_loss * max(1.0, abs(prev)):
                    self.stop(f"tol: the loss changed by {abs(loss_v - prev):.3g} <= tol")
                self._prev_loss = loss_v
            if self.tol_grad is not None and gn_v <= self.tol_grad:
                self.stop(f"tol: the gradient norm {gn_v:.3g} <= tol")
        if self.val_every is not None and self.step % self.val_every == 0:
            self._evaluate(validate=True, epoch_end=False)
        if self.checkpoint_every is not None and self.step % self.checkpoint_every == 0:
            self._save_checkpoint()

    def _non_finite(self, loss_v: float, gn_v: float) -> bool:
        what = f"loss is {loss_v}" if not math.isfinite(loss_v) else f"gradient norm is {gn_v}"
        where = (
            f"{what} at step {self.step + 1} (epoch {self.epoch}, batch {self.batch_in_epoch + 1})"
        )
        self.optimizer.zero_grad(set_to_none=True)
        if self.nan_policy == "stop":
            raise _NonFiniteError(
                f"{where}; lower the learning rate, clip gradients (clip_norm=...), or pass "
                "nan_policy='skip' or 'rollback'"
            )
        if self.nan_policy == "rollback":
            raise _RollbackError(where)
        self._skips_in_a_row += 1
        self.history.add_event({"event": "skip", "step": self.step + 1, "reason": where})
        if self._skips_in_a_row >= MAX_CONSECUTIVE_SKIPS:
            raise _NonFiniteError(f"{where}: {MAX_CONSECUTIVE_SKIPS} steps in a row were skipped")
        return True

    def _rollback(self, reason: str) -> None:
        n = self._rollbacks + 1
        if n > MAX_ROLLBACKS:
            raise _NonFiniteError(f"{reason}: rolled back {MAX_ROLLBACKS} times already, giving up")
        failed = self.step + 1
        self._restore(load_checkpoint(self._last_path))
        self._rollbacks = n
        self._skips_in_a_row = 0
        self._rollback_events.append(
            {
                "event": "rollback",
                "step": failed,
                "to_step": self.step,
                "lr_factor": 0.5**n,
                "reason": reason,
            }
        )
        for event in self._rollback_events:
            if event not in self.history.events:
                self.history.add_event(event)
        self._apply_lr_factor()

    # ------------------------------------------------------------------ evaluation
    def _validate(self) -> dict[str, float]:
        return self._validate_on(self._val_batches(), self.metrics)

    def _evaluate(self, *, validate: bool, epoch_end: bool, final: bool = False) -> None:
        with self._eval_mode():
            rec: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
            rec["loss"] = self._loss_sum / self._loss_n if self._loss_n else None
            self._loss_sum, self._loss_n = 0.0, 0
            if validate:
                val = self._validate()
                rec.update(val)
                self._last_val_step = self.step
                self._dispatch("on_validation_end", {"step": self.step, "epoch": self.epoch, **val})
            rec.update(zip(self._lr_keys, self.lr, strict=True))
            rec["time"] = self.elapsed
            self.history.add_record(rec)
            self._last_record_step = self.step
            for sink in self._record_sinks:
                sink.write_record(rec)
            if not final:
                metric = rec.get("val_loss", rec["loss"])
                if metric is not None:
                    self._feed_schedules(float(metric))
            if epoch_end:
                self._dispatch("on_epoch_end", rec)
        if not final:
            self._apply_lr_factor()

    def _feed_schedules(self, metric: float) -> None:
        if self._group_schedules:
            for s in self._group_schedules:
                s.update(metric)
            opt = self.optimizer
            if isinstance(opt, _optim.Optimizer):
                for i, g in enumerate(opt.param_groups):
                    sched = opt.schedules(i).get("lr")
                    if sched is not None:
                        g["lr"] = float(sched(int(g["step"])))
        if self._scheduler_stateful:
            self.scheduler.update(metric)
        elif isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metric)

    def _end_epoch(self) -> None:
        self._evaluate(validate=self.has_validation and self.val_every is None, epoch_end=True)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_state = None
        if self.checkpoint_dir is not None and self.checkpoint_every is None:
            self._save_checkpoint()

    def _finish(self, reason: str, *, clean: bool) -> None:
        self.stop_reason = self.stop_reason or reason
        if not clean:
            self.stop_reason = reason
        self.history.stop_reason = self.stop_reason
        stale_val = self.has_validation and self._last_val_step != self.step
        if clean and (self.step > self._last_record_step or stale_val):
            self._evaluate(validate=self.has_validation, epoch_end=False, final=True)
        if self._sf:
            self.optimizer.eval()  # type: ignore[attr-defined]
            self._sf_final = True
        if clean and self.checkpoint_dir is not None:
            self._save_checkpoint()
        self.history.add_event({"event": "stop", "step": self.step, "reason": self.stop_reason})
        self._dispatch("on_fit_end")


# ----------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    val_data: Any = None,
    optimizer: Any = "adamw",
    lr: Any = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | str | None = None,
    shuffle: bool = True,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    accumulation_steps: int = 1,
    precision: str = "32",
    device: Any = "auto",
    metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    val_every: int | None = None,
    callbacks: Iterable[Callback] = (),
    early_stopping: EarlyStopping | Mapping[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool | str | os.PathLike[str] = False,
    seed: int | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    nan_policy: str = "stop",
    tol: float | Mapping[str, float] | None = None,
) -> History:
    """Train ``model`` on ``train_data`` by gradient descent; return the :class:`History`.

    Args:
        model: the ``torch.nn.Module`` to train (moved to ``device``, trained in place).
        train_data: a ``DataLoader`` (or any re-iterable of batches), a map-style
            ``Dataset``, or tensors ``(x, y)`` / a ``TensorDataset``. With tensors or a
            Dataset, fit batches: ``batch_size="full"`` is batch gradient descent, ``1``
            stochastic gradient descent, ``k`` mini-batch.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor`` (a mean over the batch).
        val_data: validation data in the same forms; evaluated every epoch (or every
            ``val_every`` steps) in eval mode without gradients: ``val_loss`` and
            ``val_<metric>``, weighted by batch size.
        optimizer: a name for :func:`bergab.optim.create` (``"adamw"``, ``"sgd"``, ...),
            an optimizer class, a factory ``params -> Optimizer`` or an instance.
        lr: a float > 0, a schedule (``step -> lr``; any callable), ``"auto"`` (a range
            test picks the peak of a cosine schedule, see :mod:`bergab.auto_lr`) or
            ``None`` (the optimizer's own lr).
        optimizer_kwargs: arguments for an optimizer name or class (``weight_decay``...).
        scheduler: a torch LR scheduler built on the ``optimizer`` instance, stepped after
            every optimizer step (a torch ``ReduceLROnPlateau`` after every evaluation).
        epochs: passes over ``train_data``, an int >= 1.
        max_steps: optimizer steps, an int >= 1. Training stops at whichever of
            ``epochs``/``max_steps`` comes first; with neither, one epoch.
        batch_size: ``"full"``, an int >= 1 or ``None`` (64) for tensors and Datasets;
            must be ``None`` for a DataLoader.
        shuffle: reshuffle tensors/Datasets every epoch (seeded, resumable).
        batch_fn: maps a batch to ``(inputs, targets)`` (default: pairs and dicts).
        clip_norm: clip the global gradient norm to this value (> 0).
        clip_value: clip every gradient entry to ``[-clip_value, clip_value]`` (> 0).
        accumulation_steps: micro-batches per optimizer step, an int >= 1; each micro-loss
            is weighted by its share of the examples, so k batches of b equal one of k·b.
        precision: ``"32"``, ``"bf16"`` (autocast, CPU and GPU) or ``"fp16"`` (autocast and
            a GradScaler; meant for CUDA, also runs, slowly, on the CPU).
        device: ``"auto"`` (the model's device, else CUDA when available, else CPU) or a
            device.
        metrics: ``{name: fn(outputs, targets) -> float}`` computed on ``val_data``.
        val_every: validate every this many steps instead of at epoch ends.
        callbacks: :class:`~bergab.training.Callback` instances (hooks in the docs).
        early_stopping: an :class:`~bergab.training.EarlyStopping` or a dict of its
            arguments.
        checkpoint_dir: where ``last.pt`` (the resumable checkpoint) is written: at the
            start, every epoch end (or every ``checkpoint_every`` steps) and at the end.
        checkpoint_every: checkpoint every this many steps.
        resume: ``True``: continue from ``checkpoint_dir/last.pt`` when it exists (else
            start); a path: continue from that checkpoint.
        seed: seeds torch, numpy and ``random`` and the data order (an int >= 0).
        log_dir: write CSV and JSONL logs (and TensorBoard events when installed) there.
        progress: show a tqdm progress bar (when tqdm is installed).
        nan_policy: on a NaN/inf loss or gradient norm: ``"stop"`` (raise
            :class:`NonFiniteError` naming the step), ``"skip"`` the step, or
            ``"rollback"`` to the last checkpoint and halve the learning rate.
        tol: stop when ``|loss_t - loss_{t-1}| <= tol·max(1, |loss_{t-1}|)`` or the
            gradient norm is ``<= tol``; a dict ``{"loss": a, "grad_norm": b}`` sets
            either alone. Meant for full-batch problems; needs ``max_steps`` or ``epochs``.

    Returns:
        The :class:`~bergab.training.History`: step and evaluation records, ``best``,
        ``plot()``, ``stop_reason``.

    Raises:
        NonFiniteError: a NaN/inf with ``nan_policy="stop"`` (or too many skips/rollbacks).

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
    trainer = Trainer(
        model,
        train_data,
        loss_fn,
        val_data=val_data,
        optimizer=optimizer,
        lr=lr,
        optimizer_kwargs=optimizer_kwargs,
        scheduler=scheduler,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        shuffle=shuffle,
        batch_fn=batch_fn,
        clip_norm=clip_norm,
        clip_value=clip_value,
        accumulation_steps=accumulation_steps,
        precision=precision,
        device=device,
        metrics=metrics,
        val_every=val_every,
        callbacks=callbacks,
        early_stopping=early_stopping,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        seed=seed,
        log_dir=log_dir,
        progress=progress,
        nan_policy=nan_policy,
        tol=tol,
    )
    return trainer.run()
