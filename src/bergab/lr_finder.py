"""The learning-rate range test (Smith 2017; fastai's ``lr_find``), done cleanly.

:func:`lr_find` raises the learning rate from ``start_lr`` to ``end_lr`` over ``steps``
optimizer steps, records the loss, and reads suggestions off the curve. Afterwards the
model, the optimizer (if you passed one), every random number generator, the train/eval
modes and the ``requires_grad`` flags are exactly as they were, bit for bit, and no file
has been written: calling ``lr_find`` before training changes nothing but your choice of
learning rate.

Example:
    >>> import torch
    >>> from bergab import lr_find
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(256, 4)
    >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    >>> model = torch.nn.Linear(4, 1)
    >>> res = lr_find(model, (x, y), torch.nn.functional.mse_loss, optimizer="sgd",
    ...               start_lr=1e-4, end_lr=10, steps=60, batch_size=32)
    >>> 1e-3 < res.suggestion < 1.0, sorted(res.suggestions)
    (True, ['minimum', 'slide', 'soft_minimum', 'steep', 'valley'])
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bergab import _snapshot
from bergab import optim as _optim
from bergab._lr_rules import (
    SOFT_MINIMUM_TEMPERATURE,
    ArrayLike,
    _check_curve,
    _confidence,
    _curve_array,
    suggest,
)
from bergab._validate import check_bool, check_choice, check_int, check_real
from bergab.training import _data
from bergab.training._lr import group_ratios, write_lr
from bergab.training._step import Stepper, check_clip, check_precision, resolve_device
from bergab.training.strategy import device_of_rank, ensure_process_group, launched, unwrap
from bergab.training.world import World, synchronizes_gradients

__all__ = [
    "SOFT_MINIMUM_TEMPERATURE",
    "SUGGESTION_RULE",
    "LRFindResult",
    "LRFindWarning",
    "lr_find",
    "suggest",
]

BatchFn = Callable[[Any], tuple[Any, Any]]
OptimizerSpec = str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer]

#: Which suggestion :attr:`LRFindResult.suggestion` is (see :func:`suggest` and
#: ``docs/choosing-the-learning-rate.md`` for the measurements behind the choice).
SUGGESTION_RULE = "soft_minimum"


#: How a sweep can end (:attr:`LRFindResult.stop_reason`).
STOP_REASONS = ("completed", "diverged", "non-finite")


class LRFindWarning(UserWarning):
    """The range test's loss curve has no clear descending region; see the message."""


# =========================================================================== result


@dataclass
class LRFindResult:
    """What a range test measured, and what it suggests.

    Attributes:
        lrs: learning rate of each recorded step (increasing).
        losses: the raw loss after each step (train batch loss, or the validation loss
            when ``val_data`` was given).
        smoothed: bias-corrected exponential moving average of ``losses``.
        suggestions: ``minimum``, ``steep``, ``valley``, ``slide`` -> lr (see
            :func:`suggest`).
        suggestion: the recommended lr: ``suggestions[rule]`` (:data:`SUGGESTION_RULE`);
            NaN when the sweep recorded fewer than 3 steps and no rule applies (then
            ``rule`` is ``"none"`` and ``reasons`` says why).
        rule: the name of the suggestion used as ``suggestion``.
        confidence: in [0, 1]; below 0.5 the curve had no clear descending region and
            :func:`lr_find` warned with :class:`LRFindWarning`.
        reasons: why the confidence is low (empty when it is not).
        stop_reason: ``"completed"``, ``"diverged"`` (smoothed loss above
            ``diverge_factor`` × its best) or ``"non-finite"``.
        config: the arguments of the sweep (for :meth:`to_dict`).
        candidates: the trials of ``lr="auto"`` (:func:`bergab.auto_lr.choose_lr`): one
            dict per candidate lr with its ``score`` (validation loss after a short run;
            ``inf``: diverged), ``steps`` and ``why`` it was tried; empty for a range
            test alone.
        choice: why :attr:`suggestion` was chosen, when trials chose it.
        fallback: ``True`` when no trial learned anything and :attr:`suggestion` is the
            optimizer's default lr instead.
        cost_steps: the training steps the choice took (range test and trials).
        initial_score: the untrained model's score, which a trial must beat.

    Example:
        >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.8, 0.3, 2.0])
        >>> r.suggestions["minimum"]
        0.01
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float]
    suggestion: float
    rule: str
    confidence: float
    reasons: list[str] = field(default_factory=list)
    stop_reason: str = "completed"
    config: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    choice: str = ""
    fallback: bool = False
    cost_steps: int = 0
    initial_score: float = math.nan

    @classmethod
    def from_curve(
        cls,
        lrs: ArrayLike,
        losses: ArrayLike,
        smoothed: ArrayLike | None = None,
        *,
        stop_reason: str = "completed",
        config: Mapping[str, Any] | None = None,
    ) -> LRFindResult:
        """Build a result (suggestions, confidence) from a recorded curve.

        Args:
            lrs: learning rates, increasing.
            losses: the raw loss at each.
            smoothed: the smoothed loss; ``None`` uses ``losses`` as they are.
            stop_reason: how the sweep ended, one of :data:`STOP_REASONS`; a
                ``"completed"`` curve has at least 3 points.
            config: the sweep's arguments, kept for :meth:`to_dict`.

        Returns:
            The result.

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> r.rule
            'soft_minimum'
        """
        lr, raw = _curve_array("lrs", lrs), _curve_array("losses", losses)
        sm = raw.copy() if smoothed is None else _curve_array("smoothed", smoothed)
        _check_curve(lr, losses=raw, smoothed=sm)
        check_choice("stop_reason", stop_reason, STOP_REASONS)
        if stop_reason == "completed" and len(lr) < 3:
            raise ValueError(
                f"lrs must hold at least 3 points for a completed sweep, got {len(lr)} (a "
                "shorter curve comes from a sweep that stopped early: stop_reason "
                "'diverged' or 'non-finite')"
            )
        sugg = suggest(lr, sm) if len(lr) else {}
        start_lr = (config or {}).get("start_lr")
        conf, reasons = _confidence(lr, sm, stop_reason, start_lr)
        if sugg:
            rule, value = SUGGESTION_RULE, sugg[SUGGESTION_RULE]
        else:  # too short a curve: no rule applies, and no lr is made up
            rule, value = "none", math.nan
        return cls(
            lrs=lr,
            losses=raw,
            smoothed=sm,
            suggestions=sugg,
            suggestion=value,
            rule=rule,
            confidence=conf,
            reasons=reasons,
            stop_reason=stop_reason,
            config=dict(config or {}),
        )

    def __repr__(self) -> str:
        sugg = ", ".join(f"{k}={v:.3g}" for k, v in self.suggestions.items())
        return (
            f"LRFindResult(suggestion={self.suggestion:.3g} ({self.rule}), "
            f"confidence={self.confidence:.2f}, steps={len(self.lrs)}, "
            f"stop_reason={self.stop_reason!r}, suggestions: {sugg})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of everything in the result.

        Returns:
            ``lrs``, ``losses``, ``smoothed`` (lists), ``suggestions``, ``suggestion``,
            ``rule``, ``confidence``, ``reasons``, ``stop_reason``, ``config``,
            ``candidates``, ``choice``, ``fallback``, ``cost_steps``, ``initial_score``.

        Example:
            >>> import json
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> LRFindResult.from_dict(json.loads(json.dumps(r.to_dict()))).suggestion == (
            ...     r.suggestion)
            True
        """
        return {
            "lrs": [float(v) for v in self.lrs],
            "losses": [float(v) for v in self.losses],
            "smoothed": [float(v) for v in self.smoothed],
            "suggestions": dict(self.suggestions),
            "suggestion": float(self.suggestion),
            "rule": self.rule,
            "confidence": float(self.confidence),
            "reasons": list(self.reasons),
            "stop_reason": self.stop_reason,
            "config": dict(self.config),
            # a diverged trial's score (inf) is written as None: strict JSON has no inf
            "candidates": [
                {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in c.items()}
                for c in self.candidates
            ],
            "choice": self.choice,
            "fallback": self.fallback,
            "cost_steps": self.cost_steps,
            # NaN (a range test alone) is written as None: strict JSON has no NaN
            "initial_score": None if math.isnan(self.initial_score) else self.initial_score,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LRFindResult:
        """Rebuild a result from :meth:`to_dict`'s output (no recomputation).

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> LRFindResult.from_dict(r.to_dict()).suggestions == r.suggestions
            True
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be the dict to_dict() wrote, got {type(data).__name__}")
        missing = [k for k in ("lrs", "losses", "smoothed", "suggestions", "suggestion",
                               "rule", "confidence") if k not in data]  # fmt: skip
        if missing:
            raise ValueError(f"data is not a to_dict() result: it lacks {', '.join(missing)}")
        return cls(
            lrs=np.asarray(data["lrs"], dtype=np.float64),
            losses=np.asarray(data["losses"], dtype=np.float64),
            smoothed=np.asarray(data["smoothed"], dtype=np.float64),
            suggestions={k: float(v) for k, v in data["suggestions"].items()},
            suggestion=float(data["suggestion"]),
            rule=str(data["rule"]),
            confidence=float(data["confidence"]),
            reasons=list(data.get("reasons", [])),
            stop_reason=str(data.get("stop_reason", "completed")),
            config=dict(data.get("config", {})),
            candidates=[
                {k: (math.inf if v is None and k.endswith("score") else v) for k, v in c.items()}
                for c in data.get("candidates", [])
            ],
            choice=str(data.get("choice", "")),
            fallback=bool(data.get("fallback", False)),
            cost_steps=int(data.get("cost_steps", 0)),
            initial_score=math.nan
            if data.get("initial_score") is None
            else float(data["initial_score"]),
        )

    # ------------------------------------------------------------------ schedules
    def usable_suggestion(self) -> float:
        """:attr:`suggestion`, or a ``ValueError`` saying why the range test found none.

        A sweep cut short (fewer than 3 steps: a loss that was non-finite or diverged at
        once) has no suggestion; the error carries :attr:`reasons` instead of letting a
        NaN reach a schedule.

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> r.usable_suggestion() == r.suggestion
            True
            >>> LRFindResult.from_curve([], [], stop_reason="non-finite").usable_suggestion()
            Traceback (most recent call last):
            ...
            ValueError: the range test found no usable learning rate (0 steps recorded, stop_reason 'non-finite'): the loss was not finite from the first step: at the smallest learning rate the loss itself is NaN or infinite, which is no learning-rate problem (unless start_lr is large): check the data, the model and loss_fn
        """  # noqa: E501 - a doctest's output is one line
        value = self.suggestion
        if self.suggestions and math.isfinite(value) and value > 0:
            return float(value)
        why = "; ".join(self.reasons) or "no rule gave a positive learning rate"
        raise ValueError(
            f"the range test found no usable learning rate ({len(self.lrs)} steps recorded, "
            f"stop_reason {self.stop_reason!r}): {why}"
        )

    def one_cycle(self, total_steps: int, **kwargs: Any) -> Any:
        """A 1cycle schedule (Smith & Topin 2018) peaking at :attr:`suggestion`.

        Args:
            total_steps: length of the training run in optimizer steps.
            **kwargs: passed to :func:`bergab.schedules.one_cycle` (``pct_start``,
                ``div_factor``, ...).

        Returns:
            A :class:`bergab.schedules.Schedule`.

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> s = r.one_cycle(100)
            >>> max(s(t) for t in range(100)) == r.suggestion
            True
        """
        from bergab import schedules

        return schedules.one_cycle(peak=self.usable_suggestion(), total_steps=total_steps, **kwargs)

    def cosine(self, total_steps: int, warmup_steps: int = 0, final: float = 0.0) -> Any:
        """Cosine decay from :attr:`suggestion` to ``final``, after an optional warmup.

        Args:
            total_steps: length of the training run in optimizer steps (warmup included).
            warmup_steps: steps of linear warmup to the suggestion first (0: none).
            final: the lr at the end.

        Returns:
            A :class:`bergab.schedules.Schedule`: ``cosine(peak, total_steps, final)``, or
            ``warmup(cosine(peak, total_steps - warmup_steps, final), warmup_steps)``.

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> s = r.cosine(100, warmup_steps=10)
            >>> s(10) == r.suggestion, s(100)
            (True, 0.0)
        """
        from bergab import schedules

        total_steps = check_int("total_steps", total_steps, low=1)
        warmup_steps = check_int("warmup_steps", warmup_steps, low=0, high=total_steps - 1)
        sched = schedules.cosine(
            peak=self.usable_suggestion(), total_steps=total_steps - warmup_steps, final=final
        )
        if warmup_steps:
            sched = schedules.warmup(sched, steps=warmup_steps)
        return sched

    # ------------------------------------------------------------------ plot
    def plot(self, path: str | Path | None = None, *, ax: Any = None) -> Any:
        """Plot loss against lr (log x), marking every suggestion and the raw minimum.

        The y axis spans the lowest loss recorded (raw or smoothed) up to a quarter above
        where the smoothed curve starts, so the divergence at the end does not squash the
        descent and no recorded minimum is cut off.

        Args:
            path: where to save the figure (any format matplotlib knows, by extension;
                parent folders are created); checked before anything is drawn.
                ``None``: don't save.
            ax: a matplotlib Axes to draw on; ``None`` makes a new figure.

        Returns:
            The matplotlib Figure.

        Example:
            >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
            >>> fig = r.plot()
            >>> fig.axes[0].get_xscale()
            'log'
        """
        from bergab.plotting import range_test

        return range_test(self, path, ax=ax)


# =========================================================================== optimizer


def _make_optimizer(
    optimizer: OptimizerSpec, params: list[nn.Parameter], lr: float, kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    if isinstance(optimizer, str):
        return _optim.create(optimizer, params, lr=lr, **kwargs)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        cls: Any = optimizer
        return cls(params, lr=lr, **kwargs)
    if callable(optimizer):
        if kwargs:
            raise TypeError(
                "optimizer keyword arguments go with an optimizer name or class, not a factory"
            )
        factory: Any = optimizer
        opt = factory(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}"
            )
        return opt
    raise TypeError(
        "optimizer must be a name, a torch.optim.Optimizer, an Optimizer class or a factory "
        f"params -> Optimizer, got {type(optimizer).__name__}"
    )


def _grad_step_loss(stepper: Stepper, batches: Iterator[Any], accumulation_steps: int) -> float:
    """Forward/backward of one step's micro-batches (autocast, loss scaling), then
    unscaling and clipping, as fit does; the loss is their example-weighted mean."""
    micro = [next(batches) for _ in range(accumulation_steps)]
    loss_v, _ = stepper._loss_and_grad_norm(stepper._accumulate(micro))
    return loss_v


def _set_lr(opt: torch.optim.Optimizer, lr: float, ratios: Sequence[float] | None = None) -> None:
    """Every param group's lr to ``lr`` (times the group's ratio when given)."""
    if isinstance(opt, _optim.Optimizer) and "lr" in opt.schedulable:
        opt.set_schedule("lr", None)  # a bergab schedule would overwrite the sweep's lr
    for i, group in enumerate(opt.param_groups):
        write_lr(group, lr if ratios is None else lr * ratios[i])


# =========================================================================== settings, setup


@dataclass(kw_only=True)
class _Steps:
    """How each training step of a sweep or a trial runs (fit's step code), checked on
    construction."""

    accumulation_steps: int
    batch_size: int | None
    seed: int | None
    batch_fn: BatchFn | None
    clip_norm: float | None
    clip_value: float | None
    precision: str = "32"  # checked against the device once that is known

    def __post_init__(self) -> None:
        self.accumulation_steps = check_int("accumulation_steps", self.accumulation_steps, low=1)
        if self.batch_size is not None:
            self.batch_size = check_int("batch_size", self.batch_size, low=1)
        if self.seed is not None:
            self.seed = check_int("seed", self.seed, low=0)
        if self.batch_fn is not None and not callable(self.batch_fn):
            raise TypeError(f"batch_fn must be callable, got {type(self.batch_fn).__name__}")
        self.clip_norm, self.clip_value = check_clip(self.clip_norm, self.clip_value)

    def stepper(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        opt: torch.optim.Optimizer,
        device: torch.device,
    ) -> Stepper:
        """fit's step code (batch_fn, precision and clipping as given); under several
        processes it reduces losses over them, as fit's does."""
        stepper = Stepper(
            model,
            loss_fn,
            opt,
            device=device,
            batch_fn=self.batch_fn,
            precision=self.precision,
            clip_norm=self.clip_norm,
            clip_value=self.clip_value,
        )
        stepper.world = World.current()
        if stepper.world.size > 1:
            stepper._eval_model = unwrap(model)  # validation needs no gradient averaging
        return stepper


@dataclass(kw_only=True)
class _Sweep(_Steps):
    """lr_find's settings of the sweep, checked on construction: the learning rates to try
    and how each step runs."""

    start_lr: float
    end_lr: float
    steps: int
    mode: str
    smoothing: float
    diverge_factor: float

    def __post_init__(self) -> None:
        # lr_find's checks of these arguments, in the order of its signature
        self.start_lr = check_real("start_lr", self.start_lr, low=0.0, low_open=True)
        self.end_lr = check_real("end_lr", self.end_lr, low=self.start_lr, low_open=True)
        self.steps = check_int("steps", self.steps, low=3)  # the rules read 3 points or more
        check_choice("mode", self.mode, ("exp", "linear"))
        self.smoothing = check_real("smoothing", self.smoothing, low=0.0, high=1.0, high_open=True)
        self.diverge_factor = check_real(
            "diverge_factor", self.diverge_factor, low=1.0, low_open=True
        )
        super().__post_init__()

    def lrs(self) -> np.ndarray:
        """The learning rate of each step, log-spaced (``"exp"``) or evenly spaced."""
        start, end, steps = self.start_lr, self.end_lr, self.steps
        if steps == 1:
            return np.array([start])
        if self.mode == "exp":
            return start * (end / start) ** (np.arange(steps) / (steps - 1))
        return start + (end - start) * np.arange(steps) / (steps - 1)

    def config(self, optimizer: OptimizerSpec, val_data: Any) -> dict[str, Any]:
        """The arguments of the sweep, as :attr:`LRFindResult.config` keeps them."""
        return {
            "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "steps": self.steps,
            "mode": self.mode,
            "smoothing": self.smoothing,
            "diverge_factor": self.diverge_factor,
            "accumulation_steps": self.accumulation_steps,
            "precision": self.precision,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
            "val_data": val_data is not None,
            "seed": self.seed,
        }


def _placement(
    model: nn.Module, device: str | torch.device | None, instance: bool
) -> tuple[list[nn.Parameter], set[torch.device], torch.device]:
    """The model's parameters, the devices its tensors are on and the device to run on
    (``instance``: the optimizer was given as an instance, so the model cannot move)."""
    params, buffers = _snapshot.unique_tensors(model)
    if not params:
        raise ValueError("model has no parameters to train")
    here = {t.device for t in (*params, *buffers)}
    # fit's own check: a device torch does not know, or CUDA where there is none, is a
    # ValueError naming device rather than a RuntimeError from torch mid-setup
    target = resolve_device(device, model) if device is not None else next(iter(here))
    if device is not None and here != {target}:
        if len(here) > 1:
            raise ValueError("model spans several devices; leave device=None")
        if instance:
            raise ValueError(
                "cannot move the model to another device with an optimizer instance; "
                "move the model first or pass the optimizer by name"
            )
    return params, here, target


def _seed(seed: int, target: torch.device) -> None:
    """Seed the generators the sweep uses: torch's CPU one (and ``target``'s CUDA one), NumPy
    and Python. (torch.manual_seed would queue a seed for a CUDA that is not initialized
    yet, changing it for later.)"""
    torch.random.default_generator.manual_seed(seed)
    if target.type == "cuda":
        with torch.cuda.device(target):
            torch.cuda.manual_seed(seed)
    np.random.seed(seed % 2**32)  # NumPy takes 32 bits; fit's data seeds have 62
    random.seed(seed)


def _batches(
    train_data: Any, val_data: Any, sweep: _Steps
) -> tuple[Iterator[Any], list[Any] | None]:
    """The training batches fit would draw (tensors and Datasets shuffled by the sweep's
    seed, or by one drawn from torch's generator) and the list of validation batches.

    Under several processes each takes its shard of both, as fit does (a seed drawn here
    is rank 0's, so the shards cut one order)."""
    world = World.current()
    data_seed = (
        world.broadcast_int(int(torch.randint(0, 2**62, (1,)).item()))
        if sweep.seed is None
        else sweep.seed
    )
    batches = _data.endless_batches(train_data, sweep.batch_size, data_seed, world.shard)
    val = (
        None
        if val_data is None
        else _data.val_batch_list(val_data, sweep.batch_size or 256, world.shard)
    )
    return batches, val


# =========================================================================== sessions


@contextlib.contextmanager
def _session(
    model: nn.Module,
    train_data: Any,
    val_data: Any,
    optim_spec: tuple[OptimizerSpec, dict[str, Any], float],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    steps: _Steps,
    device: str | torch.device | None,
) -> Iterator[tuple[Stepper, Iterator[Any], list[Any] | None]]:
    """Training that leaves nothing behind: inside the block, fit's step code over a fresh
    optimizer built with learning rate ``lr0`` (or the given instance), the training
    batches fit would draw for ``steps.seed`` and the validation batches; afterwards the
    model, the optimizer instance, the random generators and the data's generators are as
    they were. ``optim_spec`` is ``(optimizer, optimizer_kwargs, lr0)``."""
    optimizer, optimizer_kwargs, lr0 = optim_spec
    given = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if given is not None and optimizer_kwargs:
        raise TypeError("optimizer keyword arguments cannot be used with an optimizer instance")
    params, here, target = _placement(model, device, given is not None)
    steps.precision = check_precision(steps.precision, target)
    if launched():  # under torchrun: the processes sweep together, as fit trains
        ensure_process_group(device_of_rank(target, "auto" if device is None else device))
    if target.type == "cuda":
        torch.cuda.init()  # so the snapshot holds the CUDA generators' states
    snap = _snapshot.take(model, (train_data, val_data))
    opt_ctx = contextlib.nullcontext() if given is None else _snapshot.preserved_optimizer(given)
    try:
        with opt_ctx:
            if steps.seed is not None:
                _seed(steps.seed, target)
            if target not in here:
                model.to(target)
            if World.current().size > 1 and not synchronizes_gradients(model):
                # every process steps with the gradients of the global batch, as fit does
                ids = [target.index] if target.type == "cuda" else None
                model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
            batches, val = _batches(train_data, val_data, steps)
            opt = given
            if opt is None:
                trainable = [p for p in params if p.requires_grad]
                opt = _make_optimizer(optimizer, trainable, lr0, optimizer_kwargs)
            yield steps.stepper(model, loss_fn, opt, target), batches, val
    finally:
        _snapshot.restore(snap)


def _trial(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    lrs: Sequence[float],
    score_data: Sequence[Any],
    *,
    optimizer: OptimizerSpec,
    optimizer_kwargs: dict[str, Any],
    steps: _Steps,
    device: str | torch.device | None,
) -> list[float]:
    """Train with learning rate ``lrs[i]`` at step ``i`` from the model as it is, then
    return the loss on each of ``score_data`` (lists of batches, evaluated as fit
    validates); ``inf`` when a loss became non-finite. Everything is restored afterwards,
    as after :func:`lr_find`."""
    spec = (optimizer, optimizer_kwargs, float(lrs[0]) if len(lrs) else 1e-3)
    with _session(model, train_data, None, spec, loss_fn, steps, device) as (stepper, batches, _):
        opt = stepper.optimizer
        stepper.model.train()
        # fit sets the first group's lr and keeps every other group's ratio to it
        ratios = group_ratios(opt)
        for lr in lrs:
            _set_lr(opt, float(lr), ratios)
            opt.zero_grad(set_to_none=True)
            loss_v = _grad_step_loss(stepper, batches, steps.accumulation_steps)
            if not math.isfinite(loss_v):
                return [math.inf] * len(score_data)
            stepper._optimizer_step()
        opt.zero_grad(set_to_none=True)
        scores = [float(stepper._validate_on(b, {})["val_loss"]) for b in score_data]
    return [v if math.isfinite(v) else math.inf for v in scores]


# =========================================================================== lr_find


def lr_find(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    optimizer: OptimizerSpec = "adamw",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    val_data: Any = None,
    accumulation_steps: int = 1,
    batch_fn: BatchFn | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "32",
    clip_norm: float | None = None,
    clip_value: float | None = None,
    seed: int | None = None,
    warn: bool = True,
    **optimizer_kwargs: Any,
) -> LRFindResult:
    """Run the learning-rate range test and restore everything it touched.

    Step ``i`` (of ``steps``) trains with :math:`η_i = η_0 (η_1/η_0)^{i/(n-1)}`
    (``mode="exp"``) or :math:`η_0 + (η_1 - η_0) i/(n-1)` (``"linear"``), then records
    the loss *after* that update: the next training batch's loss, or the loss on
    ``val_data`` (weighted mean over its batches, in eval mode) when given. The smoothed
    curve is the bias-corrected EMA :math:`s_i = a_i / (1 - β^{i+1})`,
    :math:`a_i = β a_{i-1} + (1 - β) L_i`. The sweep stops early when
    ``s_i > diverge_factor · min_{j≤i} s_j`` (for a positive loss) or a loss is not finite.

    Everything is restored afterwards, also on error or ``KeyboardInterrupt``: parameter
    and buffer values (BatchNorm statistics too) in place, ``.grad``, ``requires_grad``,
    each module's train/eval flag, the optimizer instance's state, param groups and
    attributes (when you pass one), the torch / NumPy / Python (and CUDA, where used)
    random states, and the generators of a ``DataLoader``. Nothing is written to disk.

    ``suggestion`` is ``suggestions["soft_minimum"]`` (:data:`SUGGESTION_RULE`): a tenth
    of the centre of the bottom of the smoothed curve (a softmin-weighted mean of log-lr,
    see :func:`suggest`), which unlike the plain argmin does not wander along a flat
    bottom. It is read off the EMA, which lags the raw loss, so the smoothed minimum sits
    at the onset of divergence: the rule assumes the default ``smoothing`` and ``steps``.
    A suggestion read off one curve is a starting point, not a choice: on the 24 tasks of
    :mod:`bergab.tasks.suite` it scored worse than ``fit(..., lr="auto")``, which uses the
    range test only to bracket the lr and lets short trial runs scored on validation loss
    decide (``docs/choosing-the-learning-rate.md``). When the curve has no clear descending
    region (``confidence < 0.5``), an :class:`LRFindWarning` says why.

    Args:
        model: the model; it is trained during the sweep and put back afterwards.
        train_data: any form :func:`bergab.fit` takes, batched the same way (the two share
            ``bergab.training._data``): a ``DataLoader`` or any iterable of batches
            (re-iterated, or replayed when it is a one-shot iterator, if shorter than the
            sweep), a ``Dataset``, or a tuple of tensors ``(x, y)`` or ``(x, y, w, ...)``
            (shuffled mini-batches of ``batch_size``, in the order fit draws them for the
            same ``seed``).
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        optimizer: a name for :func:`bergab.optim.create`, an optimizer class, a factory
            ``params -> Optimizer``, or an Optimizer instance over the model's parameters
            (its lr is swept in every param group; its state is restored afterwards).
        start_lr: first learning rate, > 0.
        end_lr: last learning rate, > ``start_lr``.
        steps: optimizer steps of the sweep, >= 3 (the suggestion rules need 3 points).
        mode: ``"exp"`` (log-spaced) or ``"linear"``.
        smoothing: EMA factor β in [0, 1); 0 disables smoothing.
        diverge_factor: stop when the smoothed loss exceeds this many times its best, > 1.
        val_data: optional validation batches (same forms as ``train_data``); their loss
            is recorded instead of the training batch's.
        accumulation_steps: micro-batches per optimizer step; as in fit, each micro-loss is
            weighted by its share of the examples, and their weighted mean is recorded.
        batch_fn: maps a batch to ``(inputs, targets)``; by default a pair is unpacked, a
            longer tuple gives ``(all but the last, last)`` and a dict is read at
            ``inputs``/``input``/``x`` and ``targets``/``target``/``y``/``labels`` (fit's
            default). Inputs that are a tuple are passed as ``model(*inputs)``, a dict as
            ``model(**inputs)``.
        batch_size: mini-batch size when ``train_data`` is a Dataset or tensors (default
            64, or the whole set when it has at most 64 rows).
        device: where to run, as for :func:`bergab.fit` (``"cpu"``, ``"cuda:1"``,
            ``"auto"``...; default: where the model is). A single-device model is moved
            there and back; not allowed with an optimizer instance.
        precision: ``"32"``, ``"bf16"`` or ``"fp16"``, as in :func:`bergab.fit`: each step
            of the sweep runs fit's own step code (autocast, fp16 loss scaling).
        clip_norm: clip the global gradient norm of each step to this value, as fit does.
        clip_value: clip every gradient entry to ``[-clip_value, clip_value]``, as fit does.
        seed: seeds torch, NumPy and Python random for the sweep (dropout, data order), so
            the result is reproducible; ``None`` uses the current random state (which is
            restored afterwards either way).
        warn: emit :class:`LRFindWarning` when the confidence is below 0.5.
        **optimizer_kwargs: passed to the optimizer when it is a name or class
            (``weight_decay=0.01``, ``momentum=0.9``, ...).

    Returns:
        An :class:`LRFindResult`.

    Example:
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
        ...                             torch.nn.Linear(8, 1))
        >>> before = [p.clone() for p in model.parameters()]
        >>> res = lr_find(model, (x, y), torch.nn.functional.mse_loss, optimizer="sgd",
        ...               steps=30, warn=False)
        >>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    sweep = _Sweep(
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        mode=mode,
        smoothing=smoothing,
        diverge_factor=diverge_factor,
        accumulation_steps=accumulation_steps,
        batch_size=batch_size,
        seed=seed,
        batch_fn=batch_fn,
        clip_norm=clip_norm,
        clip_value=clip_value,
        precision=precision,
    )
    check_bool("warn", warn)
    with _session(
        model,
        train_data,
        val_data,
        (optimizer, optimizer_kwargs, sweep.start_lr),
        loss_fn,
        sweep,
        device,
    ) as (stepper, batches, val):
        lrs, losses, stop = _run(stepper, batches, val, sweep)
    return _result(lrs, losses, stop, sweep, sweep.config(optimizer, val_data), warn=warn)


def _result(
    lrs: list[float],
    losses: list[float],
    stop: str,
    sweep: _Sweep,
    config: dict[str, Any],
    *,
    warn: bool,
) -> LRFindResult:
    """The result of a sweep (its losses smoothed as the sweep smoothed them); with ``warn``,
    an :class:`LRFindWarning` to lr_find's caller when the curve has no clear descent."""
    smoothed = _smooth(losses, sweep.smoothing)
    result = LRFindResult.from_curve(lrs, losses, smoothed, stop_reason=stop, config=config)
    if warn and result.confidence < 0.5:
        why = "; ".join(result.reasons) or "the curve is noisy"
        verdict = (
            f"The suggestion {result.suggestion:.3g} is unreliable."
            if result.suggestions
            else "There is no suggestion."
        )
        warnings.warn(
            f"lr_find: no clear descending region (confidence {result.confidence:.2f}): "
            f"{why}. {verdict}",
            LRFindWarning,
            stacklevel=3,  # the caller of lr_find, which called this
        )
    return result


def _smooth(losses: Sequence[float], beta: float) -> list[float]:
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * loss
        out.append(avg / (1.0 - beta ** (i + 1)))
    return out


def _run(
    stepper: Stepper, batches: Iterator[Any], val: list[Any] | None, sweep: _Sweep
) -> tuple[list[float], list[float], str]:
    """The sweep itself, stepping with fit's step code; the recorded lrs and losses and why
    it stopped."""
    schedule, accumulation_steps = sweep.lrs(), sweep.accumulation_steps
    beta, diverge_factor = sweep.smoothing, sweep.diverge_factor
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    opt = stepper.optimizer
    stepper.model.train()

    def train_loss() -> float:
        return _grad_step_loss(stepper, batches, accumulation_steps)

    # step i updates with schedule[i]; the loss recorded for it is measured after that
    # update (the next batch's loss, or the validation loss)
    opt.zero_grad(set_to_none=True)
    current = train_loss()
    if not math.isfinite(current):  # before any update: no learning rate can be the cause
        fp = "" if sweep.precision == "32" else f" (or precision={sweep.precision!r}: try '32')"
        raise ValueError(
            f"lr_find: the loss is {current} at the model's initial parameters, before any "
            f"update, so no learning rate can fix it: check train_data, the model and "
            f"loss_fn{fp}"
        )
    for i, lr in enumerate(schedule):
        _set_lr(opt, float(lr))
        stepper._optimizer_step()
        opt.zero_grad(set_to_none=True)
        last = i == len(schedule) - 1
        if val is None:
            current = train_loss()
            recorded = current
        else:
            recorded = stepper._validate_on(val, {})["val_loss"]
            if not last and math.isfinite(recorded):
                current = train_loss()
                if not math.isfinite(current):
                    recorded = current
        if not math.isfinite(recorded):
            return lrs, losses, "non-finite"
        lrs.append(float(lr))
        losses.append(recorded)
        avg = beta * avg + (1.0 - beta) * recorded
        smooth = avg / (1.0 - beta ** len(losses))
        best = min(best, smooth)
        if best > 0 and smooth > diverge_factor * best:
            return lrs, losses, "diverged"
    return lrs, losses, "completed"
