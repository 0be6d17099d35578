"""``lr="auto"``: choose the learning rate with a range test, then schedule it.

The policy, used by ``bergab.fit(..., lr="auto")``, ``bergab train`` with
``[schedule] lr = "auto"`` and ``bergab demo``:

1. Run :func:`bergab.lr_find` on the training data with the optimizer that will train
   (default sweep ``1e-7 .. 10`` over 100 steps, seeded, everything restored afterwards).
2. Take its :attr:`~bergab.lr_finder.LRFindResult.suggestion` (a tenth of the lr at the
   minimum of the smoothed loss) as the **peak** learning rate.
3. Train under a schedule peaking there:

   - ``policy="cosine"`` (default): cosine decay from the peak to 0 over the whole run
     (optionally after ``warmup_steps`` of linear warmup). This is the schedule the
     suggestion rule was calibrated for (AdamW + cosine, ``benchmarks/lr_find_quality.py``:
     within 0.8–3× of the grid-best peak lr on every built-in task).
   - ``policy="one_cycle"``: the 1cycle policy (Smith & Topin 2018) with the suggestion as
     its maximum (``pct_start=0.3``, starting at peak/25).

The range test's steps are not counted in the training budget: the model is put back
exactly as it was before training starts.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(256, 4)
    >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    >>> model = torch.nn.Linear(4, 1)
    >>> auto = auto_schedule(model, (x, y), torch.nn.functional.mse_loss, total_steps=200,
    ...                      optimizer="sgd", batch_size=32, seed=0)
    >>> auto.schedule(0) == auto.peak, auto.schedule(200)
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bergab import schedules
from bergab._validate import check_choice, check_int, check_real
from bergab.lr_finder import LRFindResult, lr_find
from bergab.training._lr import register_auto_lr

__all__ = ["POLICIES", "AutoLR", "auto_schedule", "build_schedule"]

#: The schedules ``lr="auto"`` can build around the suggested peak.
POLICIES: tuple[str, ...] = ("cosine", "one_cycle")

# lr_find's keyword arguments that belong to the sweep (the rest of its signature is
# passed explicitly by auto_schedule).
_SWEEP_KEYS = ("start_lr", "end_lr", "steps", "mode", "smoothing", "diverge_factor")


@dataclass
class AutoLR:
    """What ``lr="auto"`` chose.

    Attributes:
        schedule: the schedule to train with; its maximum is :attr:`peak`.
        peak: the chosen peak learning rate (the range test's suggestion).
        policy: ``"cosine"`` or ``"one_cycle"``.
        total_steps: the training run's length the schedule spans.
        result: the range test itself (curve, every suggestion, confidence, plot).

    Example:
        >>> r = LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9])
        >>> a = AutoLR(r.cosine(10), r.suggestion, "cosine", 10, r)
        >>> a.describe()
        'lr="auto": peak 0.001 (rule soft_minimum, confidence 0.25), cosine over 10 steps'
    """

    schedule: schedules.Schedule
    peak: float
    policy: str
    total_steps: int
    result: LRFindResult

    def describe(self) -> str:
        """One line: the chosen peak, how it was chosen, and the schedule policy."""
        return (
            f'lr="auto": peak {self.peak:.3g} (rule {self.result.rule}, confidence '
            f"{self.result.confidence:.2f}), {self.policy} over {self.total_steps} steps"
        )


def build_schedule(
    peak: float, total_steps: int, policy: str = "cosine", warmup_steps: int = 0
) -> schedules.Schedule:
    """The schedule of ``policy`` with maximum ``peak`` over ``total_steps`` steps.

    Args:
        peak: the peak learning rate, > 0.
        total_steps: the run's length in optimizer steps, >= 1 (>= 2 for one_cycle).
        policy: ``"cosine"`` (decay to 0 after ``warmup_steps`` of linear warmup) or
            ``"one_cycle"`` (Smith & Topin's 1cycle with default phases).
        warmup_steps: linear warmup steps for ``"cosine"``, in ``[0, total_steps)``;
            must be 0 for ``"one_cycle"``, which warms up by itself.

    Returns:
        A :class:`bergab.schedules.Schedule`.

    Example:
        >>> build_schedule(0.1, 100, "cosine", warmup_steps=10)
        warmup(schedule=cosine(peak=0.1, total_steps=90), steps=10)
        >>> build_schedule(0.1, 100, "one_cycle")(29)
        0.1
    """
    # a schedule peaking at 0 (or NaN) trains nothing: refused here, naming peak
    peak = check_real("peak", peak, low=0.0, low_open=True)
    check_choice("policy", policy, POLICIES)
    total_steps = check_int("total_steps", total_steps, low=2 if policy == "one_cycle" else 1)
    if policy == "one_cycle":
        check_int("warmup_steps", warmup_steps, low=0, high=0)
        return schedules.one_cycle(peak=peak, total_steps=total_steps)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0, high=total_steps - 1)
    sched = schedules.cosine(peak=peak, total_steps=total_steps - warmup_steps)
    return schedules.warmup(sched, steps=warmup_steps) if warmup_steps else sched


def auto_schedule(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    total_steps: int,
    optimizer: Any = "adamw",
    policy: str = "cosine",
    warmup_steps: int = 0,
    batch_size: int | None = None,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    accumulation_steps: int = 1,
    device: str | torch.device | None = None,
    precision: str = "32",
    clip_norm: float | None = None,
    clip_value: float | None = None,
    seed: int | None = None,
    lr_find_kwargs: Mapping[str, Any] | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    warn: bool = True,
) -> AutoLR:
    """Run the range test and build the training schedule peaking at its suggestion.

    This is what ``fit(..., lr="auto")`` calls before training (see the module docstring
    for the policy). The model, the optimizer instance (if one is given), the random
    number generators and the data order are left exactly as they were.

    Args:
        model: the model about to be trained.
        train_data: the training data, in any form :func:`bergab.lr_find` accepts.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        total_steps: optimizer steps of the training run the schedule spans, >= 1.
        optimizer: what will train: a name for :func:`bergab.optim.create`, an optimizer
            class, a factory ``params -> Optimizer`` or an instance.
        policy: ``"cosine"`` or ``"one_cycle"`` (see :func:`build_schedule`).
        warmup_steps: linear warmup before the cosine decay (``"cosine"`` only).
        batch_size: mini-batch size when ``train_data`` is a Dataset or tensors.
        batch_fn: maps a batch to ``(inputs, targets)`` (see :func:`bergab.lr_find`).
        accumulation_steps: micro-batches per optimizer step.
        device: where to run the range test (default: where the model is).
        precision: ``"32"``, ``"bf16"`` or ``"fp16"``: the sweep's steps run as fit's do.
        clip_norm: gradient-norm clipping of the sweep's steps (fit passes its own).
        clip_value: gradient-value clipping of the sweep's steps (fit passes its own).
        seed: seeds the range test (dropout, data order) so the choice is reproducible.
        lr_find_kwargs: sweep settings for :func:`bergab.lr_find`: ``start_lr``,
            ``end_lr``, ``steps``, ``mode``, ``smoothing``, ``diverge_factor``.
        optimizer_kwargs: optimizer arguments when ``optimizer`` is a name or a class
            (``weight_decay``, ``betas``, ...).
        warn: let :func:`bergab.lr_find` warn when its curve has no clear descent.

    Returns:
        An :class:`AutoLR` holding the schedule, the peak and the range test.

    Raises:
        ValueError: when the range test found no usable learning rate (a loss that was
            non-finite or diverged within its first steps); the message says why.

    Example:
        >>> x, y = torch.randn(128, 3), torch.randn(128, 1)
        >>> auto = auto_schedule(torch.nn.Linear(3, 1), (x, y), torch.nn.functional.mse_loss,
        ...                      total_steps=50, optimizer="sgd", policy="one_cycle",
        ...                      lr_find_kwargs={"steps": 40}, seed=1, warn=False)
        >>> auto.policy, auto.peak == auto.result.suggestion
        ('one_cycle', True)
    """
    check_choice("policy", policy, POLICIES)
    total_steps = check_int("total_steps", total_steps, low=1)
    for name, value in (("lr_find_kwargs", lr_find_kwargs), ("optimizer_kwargs", optimizer_kwargs)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(
                f"{name} must be a dict of keyword arguments, got {type(value).__name__}"
            )
    sweep = dict(lr_find_kwargs or {})
    unknown = sorted(set(sweep) - set(_SWEEP_KEYS))
    if unknown:
        raise ValueError(
            f"lr_find_kwargs: unknown key {unknown[0]!r}; allowed: {', '.join(_SWEEP_KEYS)}"
        )
    # fail on a bad policy/warmup before spending the range test
    build_schedule(1.0, total_steps, policy, warmup_steps)
    result = lr_find(
        model,
        train_data,
        loss_fn,
        optimizer=optimizer,
        batch_size=batch_size,
        batch_fn=batch_fn,
        accumulation_steps=accumulation_steps,
        device=device,
        precision=precision,
        clip_norm=clip_norm,
        clip_value=clip_value,
        seed=seed,
        warn=warn,
        **sweep,
        **dict(optimizer_kwargs or {}),
    )
    try:
        peak = result.usable_suggestion()
    except ValueError as exc:  # no NaN peak into a schedule: say what the range test saw
        raise ValueError(
            f'lr="auto": {exc}. Give lr a number instead of "auto", or change the sweep '
            "(lr_find_kwargs: start_lr, end_lr, steps)"
        ) from None
    return AutoLR(
        schedule=build_schedule(peak, total_steps, policy, warmup_steps),
        peak=peak,
        policy=policy,
        total_steps=total_steps,
        result=result,
    )


# fit(lr="auto") resolves the learning rate with these (training does not import upward)
register_auto_lr(auto_schedule, build_schedule)
