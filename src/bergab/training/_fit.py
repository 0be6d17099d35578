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
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bergab import optim as _optim
from bergab import schedules
from bergab.scaling import scale_lr
from bergab.training import _checks, _data
from bergab.training import strategy as _strategy
from bergab.training._errors import (
    NonFiniteError,
    NonFiniteStopError,
    PauseError,
    RollbackError,
)
from bergab.training._lr import (
    LRControl,
    Scaled,
    build_optimizer,
    core,
    resolve_lr,
    stateful_schedules,
    sync_zero,
)
from bergab.training._state import CHECKPOINT_FORMAT, RunState
from bergab.training._step import (
    PRECISIONS,
    StepCore,
    check_precision,
    resolve_device,
    seed_everything,
)
from bergab.training.callbacks import HOOKS, Callback
from bergab.training.checkpoint import remove_stale_temporaries, rng_state, set_rng_state
from bergab.training.history import History
from bergab.training.options import NAN_POLICIES, FitOptions, fit_docstring, fit_signature
from bergab.training.world import World, synchronizes_gradients

__all__ = ["CHECKPOINT_FORMAT", "NAN_POLICIES", "PRECISIONS", "NonFiniteError", "Trainer", "fit"]

#: ``nan_policy="rollback"`` gives up (raises) after this many rollbacks in one run.
MAX_ROLLBACKS = 10
#: ``nan_policy="skip"`` gives up (raises) after this many skipped steps in a row.
MAX_CONSECUTIVE_SKIPS = 100

_LAST = "last.pt"
_END = object()
_INF = math.inf


# ----------------------------------------------------------------------------- helpers
def _overrides(cb: Callback, hook: str) -> bool:
    return hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook)


# ----------------------------------------------------------------------------- trainer
class Trainer(StepCore):
    """The running state of :func:`fit`, as callbacks see it (``fit`` creates it).

    ``Trainer(model, train_data, loss_fn, **options)`` takes fit's options (see
    :class:`~bergab.training.FitOptions`), or one ``options=FitOptions(...)``.

    Attributes:
        model: the model being trained (on :attr:`device`).
        options: the :class:`~bergab.training.FitOptions` of this run.
        optimizer: the ``torch.optim.Optimizer``.
        scheduler: the torch LR scheduler stepped every step (fit's schedule adapter
            for a torch optimizer with a schedule, or the one you passed), or ``None``.
        scaler: the ``torch.amp.GradScaler`` under ``precision="fp16"``, else ``None``.
        history: the :class:`~bergab.training.History` being recorded.
        state: the :class:`~bergab.training.RunState` (saved whole in every checkpoint).
        world: the :class:`~bergab.training.World`: this process's rank; rank 0 writes.
        strategy: how the processes train together: ``"none"``, ``"ddp"`` or ``"fsdp"``
            (``"auto"`` resolved; see :mod:`bergab.training.strategy`).
        module: the model you passed; :attr:`model` is it wrapped for the strategy.
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
        options: FitOptions | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (outputs, targets) -> loss, got {loss_fn!r}")
        if options is None:
            options = FitOptions.from_kwargs("Trainer", kwargs)
        elif kwargs:
            raise TypeError("pass fit's options as keyword arguments or as options=, not both")
        elif not isinstance(options, FitOptions):
            raise TypeError(f"options must be a FitOptions, got {type(options).__name__}")
        o = self.options = options
        self.model = model
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.val_data = o.val_data
        self.has_validation = o.val_data is not None
        self.batch_fn = _data.default_batch_fn if o.batch_fn is None else o.batch_fn
        self.clip_norm, self.clip_value = o.clip_norm, o.clip_value
        self.device = resolve_device(o.device, model)
        self.precision = check_precision(o.precision, self.device)
        self.checkpoint_dir: Path | None = o.checkpoint_dir
        self.log_dir: Path | None = o.log_dir
        self.scheduler: Any = o.scheduler
        self.module = model
        self.strategy = _strategy.resolve_strategy(o.strategy, model)
        if self.strategy != "none":
            self.device = _strategy.device_of_rank(self.device, o.device)
            _strategy.ensure_process_group(self.device)
        self.world = World.current()
        if self.world.size > 1 and self.strategy == "none" and not synchronizes_gradients(model):
            raise ValueError(
                f"fit runs in one of {self.world.size} processes and shards the data, but the "
                "model does not average its gradients across them: pass strategy='ddp' (or "
                "'fsdp'), or wrap it in torch.nn.parallel.DistributedDataParallel yourself"
            )
        if self.world.size > 1:
            _strategy.check_same_options(o, model, self.world, train_data)

        self.optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]
        self.scaler: Any = None
        self.history = History()
        self.state = RunState()
        self.steps_per_epoch: int | None = None
        self.total_steps: int | None = None
        self.resumed = False
        self.callbacks: list[Callback] = []

        self._pause = False  # stop(checkpoint=True): save a resume point, then end
        self._tol = (o.tol_loss, o.tol_grad)  # read every step: kept at hand
        self._rollback_events: list[dict[str, Any]] = []
        self._pending_rng: Any = None
        self._t0 = time.perf_counter()
        self._sf_depth = 0
        self._sf_final = False
        self._pending_metrics: list[tuple[list[Any], int]] = []
        if o.train_metrics:
            self._train_metrics = o.metrics

    # ------------------------------------------------------------------ public helpers
    @property
    def epoch(self) -> int:
        """The current epoch, 0-based."""
        return self.state.epoch

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (skipped ones included)."""
        return self.state.step

    @property
    def batch_in_epoch(self) -> int:
        """Batches of the current epoch consumed so far."""
        return self.state.batch_in_epoch

    @property
    def should_stop(self) -> bool:
        """Whether training ends after the current step (see :meth:`stop`)."""
        return self.state.should_stop

    @property
    def stop_reason(self) -> str | None:
        """Why training stopped or will stop, or ``None``."""
        return self.state.stop_reason

    def stop(self, reason: str = "stopped by a callback", *, checkpoint: bool = False) -> None:
        """Ask training to stop after the current step (the first reason given is kept).

        With ``checkpoint=True`` the stop is a pause: at the end of the current step
        ``checkpoint_dir/last.pt`` is written as a point to resume from (``resume=True``
        then continues exactly as if the run had never stopped), and training ends there
        without a final evaluation. This is how ``bergab train`` answers Ctrl-C.

        Example:
            >>> data = (torch.zeros(2, 1), torch.zeros(2, 1))
            >>> t = Trainer(torch.nn.Linear(1, 1), data, torch.nn.functional.mse_loss)
            >>> t.stop("enough"); t.stop("later"); t.should_stop, t.stop_reason
            (True, 'enough')
        """
        if checkpoint:
            if self.checkpoint_dir is None:
                raise ValueError("stop(checkpoint=True) needs checkpoint_dir")
            # a run already stopping for good ends as it would have (its end is saved)
            self._pause = self._pause or not self.state.should_stop
        self.state.should_stop = True
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    def model_state(self) -> dict[str, Any]:
        """The model's whole state, keyed as the model you passed (no DDP ``module.``
        prefix; under FSDP gathered from every process, which must all call it).

        Example:
            >>> t = Trainer(torch.nn.Linear(1, 1), (torch.zeros(2, 1), torch.zeros(2, 1)),
            ...             torch.nn.functional.mse_loss)
            >>> sorted(t.model_state())
            ['bias', 'weight']
        """
        return _strategy.model_state(self.model)

    def load_model_state(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`model_state` into the model (every process)."""
        _strategy.load_model_state(self.model, state)

    @property
    def lr(self) -> list[float]:
        """The learning rate of every param group (``group["lr"]``)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def elapsed(self) -> float:
        """Seconds of training so far (across resumes)."""
        return self.state.elapsed + time.perf_counter() - self._t0

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self, lr: Any) -> Scaled | None:
        o = self.options
        shard = o.shard_optimizer and self.world.size > 1
        opt, scheduler, scaled = build_optimizer(
            o.optimizer, o.optimizer_kwargs, self.model, lr, shard=shard
        )
        if shard or self.strategy == "fsdp":
            inner = core(opt)
            _strategy.check_shardable(inner, self.strategy, shard)
            if shard and callable(getattr(inner, "eval", None)):
                raise ValueError(
                    f"shard_optimizer=True: {type(inner).__name__} keeps two sets of weights "
                    "and swaps them for evaluation (eval()/train()), which each process can "
                    "do only for its share: use shard_optimizer=False"
                )
        self.optimizer = opt
        if scheduler is not None:
            self.scheduler = scheduler
        return scaled

    def _make_callbacks(self) -> list[Callback]:
        from bergab.training import loggers
        from bergab.training.progress import ProgressBar, tqdm_available

        o = self.options
        cbs = list(o.callbacks)
        if o.early_stopping is not None:
            cbs.insert(0, o.early_stopping)
        if not self.world.is_main:  # logs and the progress bar are rank 0's, yours too
            kinds = (loggers.CSVLogger, loggers.JSONLLogger, loggers.TensorBoardLogger)
            return [cb for cb in cbs if not isinstance(cb, (*kinds, ProgressBar))]
        if self.log_dir is not None:
            cbs.append(loggers.CSVLogger(self.log_dir))
            cbs.append(loggers.JSONLLogger(self.log_dir))
            if loggers.tensorboard_available():
                cbs.append(loggers.TensorBoardLogger(self.log_dir))
        if o.progress and tqdm_available() and not any(isinstance(c, ProgressBar) for c in cbs):
            cbs.append(ProgressBar())
        return cbs

    def _plan(self) -> None:
        """The data source, the run's length, and the validation batches."""
        o = self.options
        fdt = _data.float_dtype(self.model)  # what floating numpy arrays become
        self._source = _data.make_source(
            self.train_data, o.batch_size, o.shuffle, self.state.data_seed, self.world.shard, fdt
        )
        nb = self._source.num_batches
        self.steps_per_epoch = None if nb is None else math.ceil(nb / o.accumulation_steps)
        caps = []
        if o.max_steps is not None:
            caps.append(o.max_steps)
        if o.epochs is not None and self.steps_per_epoch is not None:
            caps.append(o.epochs * self.steps_per_epoch)
        self.total_steps = min(caps) if caps else None
        if self.has_validation:
            bs = o.batch_size
            vbs = 2**62 if bs == "full" else max(256, 64 if bs is None else int(bs))
            self._val_batches = _data.val_batches(
                o.val_data, vbs, "val_data", fdt, shard=self.world.shard
            )

    def _setup(self, ckpt: Mapping[str, Any] | None) -> None:
        model = self.model
        if any(t.device != self.device for t in [*model.parameters(), *model.buffers()]):
            model.to(self.device)
        fit_state = None if ckpt is None else ckpt["fit"]
        seed = self.options.seed
        if fit_state is not None:
            self.state.data_seed = int(fit_state["data_seed"])
        elif seed is not None:
            seed_everything(seed)
            self.state.data_seed = seed
        else:  # drawn by rank 0, so every process cuts the same order into its shards
            self.state.data_seed = self.world.broadcast_int(
                int(torch.randint(0, 2**62, (1,)).item())
            )
        self.state.world_size = self.world.size
        if self.strategy != "none":
            self.model = _strategy.wrap(model, self.strategy, self.device)
        if self.world.size > 1:  # fit's wrapper or yours
            # validation needs no gradient averaging: DDP's own module evaluates (FSDP must
            # gather each layer's weights, so its processes evaluate in step, and each
            # holds a shard of every gradient)
            self._eval_model = _strategy.unwrap(self.model)
            self._lockstep = _strategy.shards_parameters(self.model)
        self._plan()
        self.state.rank_batch = getattr(self._source, "batch_size", None)

        lr = resolve_lr(self, fit_state)
        scaled = self._build_optimizer(lr)
        opt = self.optimizer
        self._set_optimizer(opt)
        self._arm_first_batch_checks()
        if self._train_metrics:  # keep the metrics of the steps that are taken
            self._optimizer_step = self._optimizer_step_keeping_metrics  # type: ignore[method-assign]
        self._move = not (
            isinstance(self._source, _data.TensorSource)
            and all(t.device == self.device for t in self._source.tensors)
        )
        inner = core(opt)  # a ZeRO-wrapped optimizer is read through its stepping one
        self._sf = callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))
        self._set_precision(self.precision)
        self._lr = LRControl(opt, self.scheduler, scaled)
        self._group_schedules = stateful_schedules(self.optimizer)
        self._step_scheduler = self.scheduler is not None and not isinstance(
            self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        )
        self._scheduler_stateful = isinstance(self.scheduler, schedules.ScheduleLR) and any(
            s.stateful for s in self.scheduler.schedules
        )
        # the optimizer reporting its effective lr (prodigy, DoG, ...), read at every step
        self._effective_lr_of = inner if hasattr(type(inner), "effective_lr") else None
        self._lr_keys = (
            ["lr"]
            if len(opt.param_groups) == 1
            else [f"lr_{i}" for i in range(len(opt.param_groups))]
        )
        self._eff_keys = ["effective" + "_" + k for k in self._lr_keys]
        if self.state.auto is not None:
            self.history.info["auto_lr"] = dict(self.state.auto)
            auto = self.state.auto
            self.history.add_event({"event": "auto_lr", "step": self.state.step,
                                    "peak": auto["peak"], "fallback": auto.get("fallback", False),
                                    "describe": auto.get("describe", "")})  # fmt: skip

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

    def _resize_world(self) -> None:
        """A resume with another number of processes: the global batch changed. The lr is
        rescaled by ``lr_scaling`` (rising over ``lr_scaling_warmup`` steps when it grows),
        and a resume inside an epoch continues after the examples already seen."""
        st, o = self.state, self.options
        old, new = int(st.world_size or 1), self.world.size
        if o.lr_scaling is not None:
            ratio = scale_lr(1.0, old, new, o.lr_scaling)  # the global batch grew new/old
            before = st.world_lr_factor
            st.world_lr_factor = before * ratio
            if ratio > 1 and o.lr_scaling_warmup > 0:
                st.world_ramp = [st.step, o.lr_scaling_warmup, before, st.world_lr_factor]
        if st.batch_in_epoch:
            src = self._source
            if not isinstance(src, _data._IndexedSource):
                raise ValueError(
                    f"resume inside an epoch with {new} processes instead of {old} needs "
                    "train_data as tensors or a Dataset (fit shards those itself); resume with "
                    f"{old} processes, or from an epoch's end"
                )
            # the epoch order's first examples were taken; go on after them, at a step's start
            seen = st.batch_in_epoch * (st.rank_batch or src.batch_size) * old
            k = o.accumulation_steps
            batches = min(seen // (src.batch_size * new), src.num_batches or 0)
            st.batch_in_epoch = batches - batches % k
        self.history.add_event({"event": "world_size", "step": st.step, "from": old, "to": new,
                                "lr_factor": st.world_lr_factor})  # fmt: skip

    def _world_factor(self) -> float:
        """The lr factor of ``lr_scaling`` at this step (on its warmup ramp, if any)."""
        st = self.state
        ramp = st.world_ramp
        if ramp is None:
            return st.world_lr_factor
        start, steps, before, after = ramp
        done = (st.step - start) / steps
        if done >= 1:
            st.world_ramp = None
            return after
        return before + (after - before) * max(done, 0.0)

    def _apply_lr_factor(self) -> None:
        factor = 0.5**self.state.rollbacks * self._world_factor()
        for cb in self._factor_cbs:
            factor *= float(cb.lr_factor())
        self._lr.apply(factor)

    # ------------------------------------------------------------------ checkpoints
    @property
    def _last_path(self) -> Path:
        assert self.checkpoint_dir is not None
        return self.checkpoint_dir / _LAST

    def _checkpoint(
        self, full: tuple[Any, Any, str] | None = None, rngs: list[Any] | None = None
    ) -> dict[str, Any]:
        """Everything a resume needs: model, optimizer, schedules, callbacks, run state.

        ``full``: the model's and optimizer's state gathered from every process
        (:func:`~bergab.training.strategy.gather_full_state`), else this process's.
        """
        if full is None:
            full = (_strategy.unwrap(self.model).state_dict(), self.optimizer.state_dict(), "index")
        counts: dict[str, int] = {}
        cb_states = []
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            cb_states.append({"key": f"{name}#{counts[name]}", "state": cb.state_dict()})
        state = dataclasses.replace(
            self.state, elapsed=self.elapsed, lr_control=self._lr.state_dict()
        )
        # a run paused, or stopped by its length limits, may go on; any other stop holds
        if self._pause or state.stop_reason in ("epochs", "max_steps"):
            state.should_stop, state.stop_reason = False, None
        return {
            "format": CHECKPOINT_FORMAT,
            "model": full[0],
            "optimizer": full[1],
            "optimizer_layout": full[2],
            "optimizer_class": _checks.optimizer_class(self.optimizer),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "schedules": [s.state_dict() for s in self._group_schedules],
            "callbacks": cb_states,
            "history": self.history.state_dict(),
            "fit": state.to_dict(),
            # restored but not yet in use (a resume inside an epoch): save it as it was
            "rng": self._rng_now(),
            # several processes: each one's own (their dropout draws differ without a seed)
            "rng_ranks": rngs,
        }

    def _rng_now(self) -> Any:
        return self._pending_rng if self._pending_rng is not None else rng_state()

    def _save_checkpoint(self) -> None:
        with self._eval_mode():
            if self.world.size > 1:  # gathering a sharded state takes every process
                full = _strategy.gather_full_state(self.model, self.optimizer)
                rngs = self.world.gather_objects(self._rng_now())
                state: Any = lambda: self._checkpoint(full, rngs)  # noqa: E731 (rank 0 builds)
            else:
                state = self._checkpoint
            self.world.save_checkpoint(state, self._last_path, keep_last=self.options.keep_last)

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        _checks.check_resume_optimizer(ckpt, self.optimizer)
        if self._sf:
            self.optimizer.eval()  # type: ignore[attr-defined]
        layout = ckpt.get("optimizer_layout", "index")
        if layout == "name" or _strategy.is_fsdp(self.model):
            _strategy.load_full_state(
                self.model, self.optimizer, ckpt["model"], ckpt["optimizer"], layout
            )
        else:
            model_state = dict(ckpt["model"])
            # a checkpoint of a model you wrapped in DDP yourself (keys "module.", as before)
            torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(model_state, "module.")
            for what, obj, saved in (
                ("model", _strategy.unwrap(self.model), model_state),
                ("optimizer", self.optimizer, ckpt["optimizer"]),
            ):
                try:  # a checkpoint of another model/optimizer: say so, not torch's KeyError
                    obj.load_state_dict(saved)
                except (RuntimeError, ValueError, KeyError) as exc:
                    raise ValueError(
                        f"resume: the checkpoint's {what} state does not fit this run's {what} "
                        f"(was it written by another model or optimizer?): {exc}"
                    ) from exc
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
        rank_batch = self.state.rank_batch
        self.state = RunState.from_dict(ckpt["fit"])
        if self.state.world_size not in (None, self.world.size):
            self._resize_world()
        self.state.world_size, self.state.rank_batch = self.world.size, rank_batch
        self._t0 = time.perf_counter()
        self._lr.load_state_dict(self.state.lr_control)
        if self._sf:
            self.optimizer.train()  # type: ignore[attr-defined]
        self.optimizer.zero_grad(set_to_none=True)
        rng = ckpt["rng"]
        ranks = ckpt.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world.size:
            rng = ranks[self.world.rank]  # this process's own random state
        if self.state.batch_in_epoch == 0:
            set_rng_state(rng)
            self._pending_rng = None
        else:
            self._pending_rng = rng  # set once the epoch's iterator is rebuilt

    def _load_resume(self) -> dict[str, Any] | None:
        resume = self.options.resume
        if resume is False:
            return None
        path = self._last_path if resume is True else resume
        if self.world.is_main:
            remove_stale_temporaries(path)
        if resume is True and not path.exists():
            return None  # resume=True and nothing saved yet: start fresh
        _checks.check_resume_file(path)
        ckpt = self.world.load_checkpoint(path)
        _checks.check_fit_checkpoint(ckpt, path, CHECKPOINT_FORMAT)
        return ckpt

    # ------------------------------------------------------------------ the loop
    def run(self) -> History:
        """Train, and return the :class:`History` (what :func:`fit` calls)."""
        error: ValueError | None = None
        if self.world.is_main:  # rank 0 writes: its folders must take files before any work
            try:
                for name, path in (
                    ("checkpoint_dir", self.checkpoint_dir),
                    ("log_dir", self.log_dir),
                ):
                    if path is not None:
                        _checks.check_writable_dir(name, path)
            except ValueError as exc:
                error = exc
        if self.world.size > 1 and self.world.broadcast_int(int(error is not None)):
            raise error or ValueError(  # every process stops, none waits for another
                "rank 0 cannot write checkpoint_dir or log_dir (its message says which)"
            )
        if error is not None:
            raise error
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
            except NonFiniteStopError as exc:
                ended = True
                self._finish(f"nan: {exc}", clean=False)
                raise NonFiniteError(str(exc), self.history) from None
            except PauseError:
                ended = True
                self._finish(self.state.stop_reason or "paused", clean=False)
            else:
                ended = True
                self._finish(self.state.stop_reason or "epochs", clean=True)
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

    def _stop_now(self) -> bool:
        """At a step boundary: whether to end the loop (a pause is saved and raised here)."""
        st = self.state
        if not st.should_stop:
            o = self.options
            if o.max_steps is not None and st.step >= o.max_steps:
                self.stop("max_steps")
            elif o.epochs is not None and st.epoch >= o.epochs:
                self.stop("epochs")
            else:
                return False
        if self._pause:
            self._save_checkpoint()
            raise PauseError
        return True

    def _loop(self) -> None:
        while not self._stop_now():
            try:
                self._run_epoch()
            except RollbackError as rb:
                self._rollback(str(rb))

    def _run_epoch(self) -> None:
        st = self.state
        start = st.batch_in_epoch
        src = self._source
        if self._pending_rng is None:
            self._dispatch("on_epoch_start")
            st.epoch_state = src.begin_epoch()
            batches = src.batches(st.epoch, 0, None)
        else:
            batches = src.batches(st.epoch, start, st.epoch_state)
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        k = self.options.accumulation_steps
        max_steps = self.options.max_steps
        nb = src.num_batches
        empty = start == 0
        while True:
            micro = list(islice(batches, k)) if k > 1 else [next(batches, _END)]
            if not micro or micro[0] is _END:
                break
            empty = False
            self._train_step(micro)
            if st.should_stop or (max_steps is not None and st.step >= max_steps):
                if nb is not None and st.batch_in_epoch >= nb:
                    break  # the epoch's data is done as well: end it properly
                return
        if empty:
            raise ValueError("train_data yielded no batches")
        self._end_epoch()

    def _train_step(self, micro: list[Any]) -> None:
        opt = self.optimizer
        scaler = self.scaler
        st = self.state
        o = self.options
        k = len(micro)
        if st.world_ramp is not None:
            self._apply_lr_factor()  # the lr rises step by step after a world resize
        loss_v, gn_v = self._loss_and_grad_norm(self._accumulate(micro))

        groups = opt.param_groups
        lrs = [g["lr"] for g in groups]
        for v in lrs:  # a negative lr would ascend, a NaN one poison the weights: refuse
            if not 0.0 <= v < _INF:
                self._bad_lr(lrs)
        eff = None if self._effective_lr_of is None else self._effective_lr_of.effective_lr  # type: ignore[attr-defined]
        skipped = False
        if not math.isfinite(loss_v) or (scaler is None and not math.isfinite(gn_v)):
            skipped = self._non_finite(loss_v, gn_v, micro)
        else:
            skipped = self._optimizer_step()
        if self._step_scheduler and not skipped:
            self.scheduler.step()
        opt.zero_grad(set_to_none=True)

        st.step += 1
        st.batch_in_epoch += k
        rec: dict[str, Any] = {
            "step": st.step,
            "epoch": st.epoch,
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
            st.loss_sum += loss_v
            st.loss_n += 1
        for cb in self._hooks["on_batch_end"]:
            cb.on_batch_end(self, rec)

        if not skipped:
            tol_loss, tol_grad = self._tol
            if tol_loss is not None:
                prev = st.prev_loss
                if prev is not None and abs(loss_v - prev) <= tol_loss * max(1.0, abs(prev)):
                    self.stop(f"tol: the loss changed by {abs(loss_v - prev):.3g} <= tol")
                st.prev_loss = loss_v
            if tol_grad is not None and gn_v <= tol_grad:
                self.stop(f"tol: the gradient norm {gn_v:.3g} <= tol")
        if o.val_every is not None and st.step % o.val_every == 0:
            self._evaluate(validate=True, epoch_end=False)
        if o.checkpoint_every is not None and st.step % o.checkpoint_every == 0:
            self._save_checkpoint()
        if self._pause:
            self._stop_now()

    def _bad_lr(self, lrs: list[Any]) -> None:
        o = self.options
        source = "scheduler" if o.scheduler is not None else "optimizer" if o.lr is None else "lr"
        error = _checks.lr_error(lrs, self.state.step + 1, source)
        if error is not None:
            raise error

    def _non_finite(self, loss_v: float, gn_v: float, micro: list[Any]) -> bool:
        """A NaN/inf loss or gradient norm: apply ``nan_policy``; whether the step is skipped.

        Before the advice to lower the learning rate, the step's data (and, at the first
        step, the model's weights) are searched for NaN/inf: then they are to blame, and
        rolling back would only meet them again.
        """
        st = self.state
        policy = self.options.nan_policy
        what = f"loss is {loss_v}" if not math.isfinite(loss_v) else f"gradient norm is {gn_v}"
        where = f"{what} at step {st.step + 1} (epoch {st.epoch}, batch {st.batch_in_epoch + 1})"
        self.optimizer.zero_grad(set_to_none=True)
        self._pending_metrics.clear()  # the step's training metrics are not kept
        blame = _checks.non_finite_cause(
            self.batch_fn, micro, st.batch_in_epoch + 1, st.step + 1, self.model
        )
        if self.world.size > 1:  # each process searched its shard: all decide on all
            blames = self.world.gather_objects(blame)
            found = [(r, b) for r, b in enumerate(blames) if b is not None]
            blame = None if not found else f"{found[0][1]} (on rank {found[0][0]})"
        if blame is not None:
            where = f"{where}: {blame}"
            if policy != "skip":
                raise NonFiniteStopError(
                    f"{where}; this is no learning-rate problem: fix the data or the model "
                    "(nan_policy='skip' would skip such steps)"
                )
        elif policy == "stop":
            raise NonFiniteStopError(
                f"{where}; lower the learning rate, clip gradients (clip_norm=...), or pass "
                "nan_policy='skip' or 'rollback'"
            )
        if policy == "rollback":
            raise RollbackError(where)
        st.skips_in_a_row += 1
        self.history.add_event({"event": "skip", "step": st.step + 1, "reason": where})
        if st.skips_in_a_row >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteStopError(
                f"{where}: {MAX_CONSECUTIVE_SKIPS} steps in a row were skipped"
            )
        return True

    def _rollback(self, reason: str) -> None:
        n = self.state.rollbacks + 1
        if n > MAX_ROLLBACKS:
            raise NonFiniteStopError(
                f"{reason}: rolled back {MAX_ROLLBACKS} times already, giving up"
            )
        failed = self.state.step + 1
        self._restore(self.world.load_checkpoint(self._last_path))
        self.state.rollbacks = n
        self.state.skips_in_a_row = 0
        self._rollback_events.append(
            {
                "event": "rollback",
                "step": failed,
                "to_step": self.state.step,
                "lr_factor": 0.5**n,
                "reason": reason,
            }
        )
        for event in self._rollback_events:
            if event not in self.history.events:
                self.history.add_event(event)
        self._apply_lr_factor()

    # ------------------------------------------------------------------ evaluation
    def _optimizer_step_keeping_metrics(self) -> bool:
        """The optimizer step; the step's training metrics join the record's sums unless
        the step was skipped (as its loss does)."""
        skipped = StepCore._optimizer_step(self)
        if not skipped:
            st = self.state
            sums = st.train_metric_sums
            for values, n in self._pending_metrics:
                for name, value in zip(self._train_metrics, values, strict=True):
                    sums[name] = sums.get(name, 0.0) + _checks.metric_number(name, value) * n
                st.train_metric_n += n
        self._pending_metrics.clear()
        return skipped

    def _train_metrics_record(self) -> dict[str, float | None]:
        """``train_<metric>`` since the previous record (and the sums start again)."""
        st = self.state
        n = st.train_metric_n
        if self.world.size > 1:  # every process's steps: sums and counts over all of them
            names = list(self._train_metrics)
            *sums, n_all = self.world.all_reduce_sum(
                [st.train_metric_sums.get(k, 0.0) for k in names] + [float(n)]
            )
            st.train_metric_sums, n = dict(zip(names, sums, strict=True)), int(n_all)
        rec = {f"train_{k}": st.train_metric_sums.get(k, 0.0) / n if n else None
               for k in self._train_metrics}  # fmt: skip
        st.train_metric_sums, st.train_metric_n = {}, 0
        return rec

    def _validate(self) -> dict[str, float]:
        return self._validate_on(self._val_batches, self.options.metrics)

    def _evaluate(self, *, validate: bool, epoch_end: bool, final: bool = False) -> None:
        st = self.state
        with self._eval_mode():
            rec: dict[str, Any] = {"step": st.step, "epoch": st.epoch}
            rec["loss"] = st.loss_sum / st.loss_n if st.loss_n else None
            st.loss_sum, st.loss_n = 0.0, 0
            if self._train_metrics:
                rec.update(self._train_metrics_record())
            if validate:
                val = self._validate()
                rec.update(val)
                st.last_val_step = st.step
                self._dispatch("on_validation_end", {"step": st.step, "epoch": st.epoch, **val})
            rec.update(zip(self._lr_keys, self.lr, strict=True))
            rec["time"] = self.elapsed
            self.history.add_record(rec)
            st.last_record_step = st.step
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
            opt = core(self.optimizer)
            if isinstance(opt, _optim.Optimizer):
                for i, g in enumerate(opt.param_groups):
                    sched = opt.schedules(i).get("lr")
                    if sched is not None:
                        g["lr"] = float(sched(int(g["step"])))
                sync_zero(self.optimizer)
        if self._scheduler_stateful:
            self.scheduler.update(metric)
        elif isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metric)

    def _end_epoch(self) -> None:
        st = self.state
        o = self.options
        if st.step > 0 and st.last_record_step == st.step and self.history.records:
            # val_every recorded this very step: the epoch ends on that record rather than
            # on a second one with no loss (its sums were just reset) and no validation
            with self._eval_mode():
                self._dispatch("on_epoch_end", dict(self.history.records[-1]))
            self._apply_lr_factor()  # a cut decided at the epoch's end applies now
        else:
            self._evaluate(validate=self.has_validation and o.val_every is None, epoch_end=True)
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_state = None
        if self.checkpoint_dir is not None and o.checkpoint_every is None:
            self._save_checkpoint()

    def _finish(self, reason: str, *, clean: bool) -> None:
        st = self.state
        st.stop_reason = st.stop_reason or reason
        if not clean:
            st.stop_reason = reason
        self.history.stop_reason = st.stop_reason
        stale_val = self.has_validation and st.last_val_step != st.step
        if clean and (st.step > st.last_record_step or stale_val):
            self._evaluate(validate=self.has_validation, epoch_end=False, final=True)
        if self._sf:
            self.optimizer.eval()  # type: ignore[attr-defined]
            self._sf_final = True
        if clean and self.checkpoint_dir is not None:
            self._save_checkpoint()
        self.history.add_event({"event": "stop", "step": st.step, "reason": st.stop_reason})
        self._dispatch("on_fit_end")


# ----------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    **options: Any,
) -> History:
    return Trainer(model, train_data, loss_fn, FitOptions.from_kwargs("fit", options)).run()


fit.__doc__ = fit_docstring()
fit.__signature__ = fit_signature(  # type: ignore[attr-defined]
    list(inspect.signature(fit).parameters.values())[:3], History
)
