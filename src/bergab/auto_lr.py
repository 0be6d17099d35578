"""``lr="auto"``: choose the learning rate with a range test, then schedule it.

The policy, used by ``bergab.fit(..., lr="auto")``, ``bergab train`` with
``[schedule] lr = "auto"`` and ``bergab demo``:

1. **Bracket.** A short range test (:func:`bergab.lr_find`, 1e-7 .. 10 over a quarter of
   the run's steps, 30 to 100) with the optimizer that will train. Only the bottom of its
   curve, smoothed without lag (:func:`bergab._lr_rules.centred`), is read: where the loss
   stops falling. A curve with no clear descent (or lowest at its very start: a lucky
   batch) gives no bracket; then the search starts around the optimizer's default lr.
2. **Trials.** Short runs from the model as it is, each :data:`TRIAL_FRACTION` of the run
   under the run's own schedule compressed to that length, at candidate peak lrs a factor
   :data:`SPACING` apart below the bottom. While an end candidate scores best the search
   steps past it, by a growing factor (``SPACING``, then ``SPACING**2``, ...); once the
   best is bracketed it halves the gap to the best one's better neighbour; all within
   :data:`COST_LIMIT` runs' worth of steps for the whole choice. Each trial is scored on
   ``val_data`` when there is validation data (what the run will be judged on). Without
   it, :data:`HOLDOUT_FRACTION` of the training examples (at most 2,048, drawn with the
   seed) are held out of the trials to score them; data that cannot be split (a
   ``DataLoader``, any iterable) is scored on a sample of the training data, which
   favours large learning rates when the model can overfit.
3. **Pick.** The vertex of a parabola (in log lr) through the best trial and its
   neighbours. Where the best trial already overfits (validation loss ``g`` times its
   loss on the training sample, ``g > 1``), the full run, which trains longer, overfits
   more: the pick is divided by ``sqrt(g)``. When no trial beat the untrained model's
   score, the choice falls back to the optimizer's default lr, says so in
   :class:`~bergab.lr_finder.LRFindResult` (``fallback``, ``choice``) and in the run's
   log, and warns.
4. **Train** under ``policy`` peaking there: ``"cosine"`` (default; decay to 0 after
   ``warmup_steps``) or ``"one_cycle"`` (Smith & Topin's 1cycle).

The choice's steps are not counted in the training budget: the model, the optimizer
instance and every random generator are put back exactly as they were before training
starts. ``benchmarks/lr_find_quality.py`` measures the policy against the grid-best lr on
the 24 tasks of :mod:`bergab.tasks.suite`.

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

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, Subset, TensorDataset

from bergab import _snapshot, schedules
from bergab._lr_rules import Trial, bottom, next_lr, pick
from bergab._validate import check_bool, check_choice, check_int, check_real
from bergab.lr_finder import LRFindResult, LRFindWarning, _Steps, _trial, lr_find
from bergab.training import _data
from bergab.training._lr import register_auto_lr
from bergab.training.world import World

__all__ = [
    "COST_LIMIT",
    "HOLDOUT_FRACTION",
    "POLICIES",
    "SPACING",
    "TRIAL_FRACTION",
    "AutoLR",
    "auto_schedule",
    "build_schedule",
    "choose_lr",
]

#: Each trial trains this fraction of the run's steps.
TRIAL_FRACTION = 0.25
#: The whole choice (range test and trials) takes at most this many runs' worth of steps.
COST_LIMIT = 1.5
#: Candidate peak lrs are this factor apart (half a decade).
SPACING = math.sqrt(10.0)
#: The first candidates: the range test's bottom divided by ``SPACING ** k`` for these k.
FIRST_CANDIDATES = (1, 2, 3)
#: The range test spans this fraction of the run's steps, clipped to 10 .. 100 steps.
SWEEP_FRACTION = 0.25
#: A trial must beat the untrained model's score by this fraction to count as learning.
MIN_IMPROVEMENT = 0.01
#: The overfitting correction divides the pick by at most ``sqrt(MAX_GAP)``.
MAX_GAP = 10.0
#: Examples of the training data that score the trials when nothing else can, and that
#: measure how much a trial overfits.
TRAIN_SAMPLE = 2048
#: Without validation data, this fraction of the training examples (at most
#: ``TRAIN_SAMPLE``) is held out of the trials to score them.
HOLDOUT_FRACTION = 0.2

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
        peak: the chosen peak learning rate (``result.suggestion``).
        policy: ``"cosine"`` or ``"one_cycle"``.
        total_steps: the training run's length the schedule spans.
        result: the choice: the range test's curve and rules, every trial, why (plot).

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
        r = self.result
        if r.candidates:
            how = (
                f"{len(r.candidates)} trials, {'FALLBACK: ' if r.fallback else ''}{r.choice}; "
                f"cost {r.cost_steps} steps"
            )
        else:
            how = f"rule {r.rule}, confidence {r.confidence:.2f}"
        return (
            f'lr="auto": peak {self.peak:.3g} ({how}), {self.policy} over {self.total_steps} steps'
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


def _default_lr(optimizer: Any, optimizer_kwargs: Mapping[str, Any]) -> float:
    """The learning rate ``optimizer`` has when nobody chooses one (1e-3 when unknown)."""
    from bergab import optim as _optim

    probe = [nn.Parameter(torch.zeros(1))]
    try:
        if isinstance(optimizer, torch.optim.Optimizer):
            opt = optimizer
        elif isinstance(optimizer, str):
            opt = _optim.create(optimizer, probe, **optimizer_kwargs)
        else:
            opt = optimizer(probe, **optimizer_kwargs)
        lr = float(opt.param_groups[0]["lr"])
    except Exception:
        return 1e-3
    return lr if math.isfinite(lr) and lr > 0 else 1e-3


def _train_sample(
    train_data: Any, batch_size: int | None, batch_fn: Callable[[Any], tuple[Any, Any]] | None
) -> list[Any]:
    """Up to :data:`TRAIN_SAMPLE` examples of the training data, as fixed batches, read
    lazily (an endless stream gives its first batches); none from a one-shot iterator,
    which the range test and the trials need whole."""
    if isinstance(train_data, Iterator):
        return []
    split = batch_fn or _data.default_batch_fn
    out, n = [], 0
    for batch in _data.val_batches(train_data, batch_size or 256)():
        out.append(batch)
        n += _data.batch_len(split(batch)[1])
        if n >= TRAIN_SAMPLE:
            break
    return out


def _holdout(train_data: Any, model: nn.Module, seed: int | None) -> tuple[Any, Any, int] | None:
    """``(the trials' training data, held-out examples, their number)``: :data:`HOLDOUT_FRACTION` of
    ``train_data`` (at most :data:`TRAIN_SAMPLE` examples, drawn with ``seed``) split off
    when it is tensors or a map-style Dataset of at least 25 examples; else ``None``."""
    tensors = None
    if not isinstance(train_data, Dataset) or isinstance(train_data, TensorDataset):
        try:
            tensors = _data._as_tensors(train_data, float_dtype=_data.float_dtype(model))
        except (TypeError, ValueError):
            return None
        if tensors is None:
            return None
        n = len(tensors[0])
    elif isinstance(train_data, IterableDataset) or not hasattr(train_data, "__len__"):
        return None
    else:
        n = len(train_data)
    k = min(TRAIN_SAMPLE, int(HOLDOUT_FRACTION * n))
    if n < 25:
        return None
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    perm = torch.randperm(n, generator=gen)
    keep, out = perm[k:], perm[:k]
    if tensors is not None:
        return tuple(t[keep] for t in tensors), tuple(t[out] for t in tensors), k
    return Subset(train_data, keep.tolist()), Subset(train_data, out.tolist()), k


def _sweep_steps(total_steps: int) -> int:
    return int(min(100, max(10, round(SWEEP_FRACTION * total_steps))))


def _checked_sweep(
    lr_find_kwargs: Any, optimizer_kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``lr_find_kwargs`` and ``optimizer_kwargs`` as dicts, each checked."""
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
    return sweep, dict(optimizer_kwargs or {})


def _scoring(
    model: nn.Module,
    train_data: Any,
    val_data: Any,
    batch_size: int | None,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None,
    seed: int | None,
) -> tuple[Any, list[Any], bool, str]:
    """What the trials train on and are scored on: ``(trial data, score batches, whether
    the first are held-out batches, what they are)``; the score batches are the held-out
    ones (validation data, or training examples held out of the trials) and a training
    sample. Reading batches draws from torch's generator and a loader's own: both are put
    back (an empty module: nothing here touches the model, which need not be copied)."""
    snap = _snapshot.take(nn.Module(), (train_data, val_data))
    try:
        trial_data, held = train_data, None
        if val_data is not None:
            held = _data.val_batch_list(val_data, batch_size or 256, World.current().shard)
            scored_on = "val_data"
        elif (split := _holdout(train_data, model, seed)) is not None:
            trial_data, held_out, k = split
            # each process scores its share of the held-out examples (sums are reduced)
            held = _data.val_batch_list(held_out, batch_size or 256, World.current().shard)
            scored_on = f"{k} training examples held out from the trials"
        else:
            scored_on = "a sample of the training data"
        sample = _train_sample(trial_data, batch_size, batch_fn)
    finally:
        _snapshot.restore(snap)
    if held is None:
        if not sample:
            raise ValueError(
                'lr="auto" scores its trials on validation data or on training data it can '
                "read again: give val_data, or train_data that is not a one-shot iterator"
            )
        return trial_data, [sample], False, scored_on
    # a one-shot iterator gives no training sample: no overfitting measure
    return trial_data, [held, sample or held], True, scored_on


def choose_lr(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    total_steps: int,
    val_data: Any = None,
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
) -> LRFindResult:
    """Choose the peak learning rate of a run: a range test brackets it, trials decide.

    See the module docstring for the policy. The model, an optimizer instance, the
    random generators and the data order are left exactly as they were.

    Args:
        model: the model about to be trained.
        train_data: the training data, in any form :func:`bergab.fit` accepts.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        total_steps: optimizer steps of the run the lr is for, >= 1.
        val_data: validation data (any form fit accepts): the trials are scored on it;
            ``None`` holds 20% of the training examples (at most 2,048) out of the
            trials to score them, or, for data that cannot be split, scores them on a
            sample of the training data.
        optimizer: what will train (a name, a class, a factory or an instance).
        policy: the run's schedule, ``"cosine"`` or ``"one_cycle"``; each trial runs it
            compressed to its own length.
        warmup_steps: the run's linear warmup before the cosine decay.
        batch_size, batch_fn, accumulation_steps, device, precision, clip_norm,
            clip_value: as for :func:`bergab.fit`; the range test and the trials step
            as fit does.
        seed: seeds the range test and every trial (each trial sees the same batches).
        lr_find_kwargs: range-test settings (``start_lr``, ``end_lr``, ``steps``,
            ``mode``, ``smoothing``, ``diverge_factor``).
        optimizer_kwargs: optimizer arguments for a name or class.
        warn: warn with :class:`~bergab.lr_finder.LRFindWarning` when the choice falls
            back to the optimizer's default lr (the range test itself does not warn: its
            curve only brackets).

    Returns:
        The range test's :class:`~bergab.lr_finder.LRFindResult`, with ``suggestion``
        the chosen lr, ``rule`` ``"trials"`` (or ``"fallback"``), ``candidates`` every
        trial, ``choice`` why, and ``cost_steps`` every training step the choice took.

    Raises:
        ValueError: when the untrained model's loss on the scoring data is not finite, or
            when every trial diverged (down to ``SPACING**3`` below the first candidates).

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(256, 4)
        >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        >>> res = choose_lr(torch.nn.Linear(4, 1), (x, y), torch.nn.functional.mse_loss,
        ...                 total_steps=200, optimizer="sgd", batch_size=32, seed=0)
        >>> res.rule, 0.01 < res.suggestion < 1.0, len(res.candidates) >= 3
        ('trials', True, True)
    """
    check_choice("policy", policy, POLICIES)
    total_steps = check_int("total_steps", total_steps, low=1)
    build_schedule(1.0, total_steps, policy, warmup_steps)  # fail before any training
    sweep_kwargs, opt_kwargs = _checked_sweep(lr_find_kwargs, optimizer_kwargs)
    check_bool("warn", warn)
    sweep_kwargs.setdefault("steps", _sweep_steps(total_steps))
    result = lr_find(
        model, train_data, loss_fn, optimizer=optimizer, batch_size=batch_size,
        batch_fn=batch_fn, accumulation_steps=accumulation_steps, device=device,
        precision=precision, clip_norm=clip_norm, clip_value=clip_value, seed=seed,
        warn=False, **sweep_kwargs, **opt_kwargs,
    )  # fmt: skip
    steps = _Steps(
        accumulation_steps=accumulation_steps, batch_size=batch_size, seed=seed,
        batch_fn=batch_fn, clip_norm=clip_norm, clip_value=clip_value, precision=precision,
    )  # fmt: skip
    # one-cycle needs 4 steps (its warmup is 30% of them); a warmup leaves a step to decay
    length = max(4 if policy == "one_cycle" else 1, round(TRIAL_FRACTION * total_steps))
    warm = min(length - 1, round(warmup_steps * length / total_steps))
    trial_data, score_data, held, scored_on = _scoring(
        model, train_data, val_data, batch_size, batch_fn, seed
    )

    def run(lrs: list[float]) -> list[float]:
        return _trial(model, trial_data, loss_fn, lrs, score_data, optimizer=optimizer,
                      optimizer_kwargs=opt_kwargs, steps=steps, device=device)  # fmt: skip

    initial = run([])[0]
    if not math.isfinite(initial):
        raise ValueError(
            f'lr="auto": the untrained model\'s loss on {scored_on} is {initial}, before any '
            "training, so no learning rate can be scored: check that data, the model and "
            "loss_fn"
        )

    def trial(lr: float, why: str) -> Trial:
        sched = build_schedule(lr, length, policy, warm)
        scores = run([float(sched(t)) for t in range(length)])
        return Trial(lr, scores[0], why, scores[-1])

    first, spacing, bracket = _first_candidates(result, optimizer, opt_kwargs)
    budget = max(len(first), int((COST_LIMIT * total_steps - len(result.lrs)) // length))
    trials = _search(trial, first, spacing, bracket, budget)
    if not any(math.isfinite(t.score) for t in trials):
        raise ValueError(
            f'lr="auto": every trial diverged, down to lr {min(t.lr for t in trials):.3g}: the '
            "loss becomes non-finite at any learning rate tried; check the data, the model and "
            "loss_fn, or give lr a number"
        )
    lr, why, fallback = _decide(trials, initial, held, scored_on, length, optimizer, opt_kwargs)
    if fallback and warn:
        warnings.warn(f'lr="auto": {why}', LRFindWarning, stacklevel=2)
    result.suggestion, result.rule = float(lr), "fallback" if fallback else "trials"
    result.candidates = [
        {"lr": t.lr, "score": t.score, "train_score": t.train_score, "steps": length, "why": t.why}
        for t in trials
    ]
    result.choice, result.fallback = why, fallback
    result.cost_steps = len(result.lrs) + length * len(trials)
    result.initial_score = initial
    return result


def _first_candidates(
    result: LRFindResult, optimizer: Any, opt_kwargs: Mapping[str, Any]
) -> tuple[list[float], float, str]:
    """The first candidate lrs, the search's spacing, and where they come from."""
    centre, bracket = bottom(result.lrs, result.losses) if len(result.lrs) else (None, "")
    if centre is None:
        default = _default_lr(optimizer, opt_kwargs)
        why = f"{bracket or 'the range test stopped at once'}: search around the default lr"
        return [default / 10, default, default * 10], 10.0, why
    return sorted(centre / SPACING**k for k in FIRST_CANDIDATES), SPACING, bracket


def _search(
    trial: Callable[[float, str], Trial],
    first: list[float],
    spacing: float,
    bracket: str,
    budget: int,
) -> list[Trial]:
    """The trials: ``first`` in increasing order, then where :func:`next_lr` points, never
    above an lr that diverged and never more than ``spacing**3`` below ``first``."""
    trials: list[Trial] = []
    for lr in first:
        if any(not math.isfinite(t.score) and t.lr < lr for t in trials):
            break  # above an lr that diverged: it would diverge too
        trials.append(trial(lr, f"first candidates ({bracket})"))
    floor = min(first) / spacing**3
    while len(trials) < budget:
        nxt = next_lr(trials, spacing)
        if nxt is None or nxt[0] < floor:
            break
        if any(not math.isfinite(t.score) and t.lr <= nxt[0] for t in trials):
            break
        trials.append(trial(*nxt))
    return trials


def _decide(
    trials: list[Trial],
    initial: float,
    held: bool,
    scored_on: str,
    length: int,
    optimizer: Any,
    opt_kwargs: Mapping[str, Any],
) -> tuple[float, str, bool]:
    """``(lr, why, fallback)`` from the trials (the module docstring's step 3)."""
    lr, why = pick(trials)
    best_trial = min(trials, key=lambda t: t.score)
    best, train = best_trial.score, best_trial.train_score
    # a short run favours a larger lr than the full run where the full run overfits: the
    # more the best trial already overfits (held-out over training loss), the lower; at
    # most sqrt(MAX_GAP) lower (a training loss near 0 says overfitting, not how much)
    if held and train > 0 and best > train:
        factor = math.sqrt(min(MAX_GAP, best / train))
        lr /= factor
        if factor >= 1.05:
            why = (
                f"{why}, divided by {factor:.2g} (the best trial's held-out loss is "
                f"{best / train:.2g}× its training loss)"
            )
    # learning means beating the untrained model by MIN_IMPROVEMENT of its loss's size
    if not initial - best > MIN_IMPROVEMENT * abs(initial):
        lr = _default_lr(optimizer, opt_kwargs)
        why = (
            f"no trial improved on the untrained model's score {initial:.4g} on {scored_on} "
            f"(best {best:.4g}): fell back to the optimizer's default lr {lr:.3g}"
        )
        return lr, why, True
    return lr, f"{why}, scored on {scored_on} after {length}-step trials", False


def auto_schedule(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    total_steps: int,
    policy: str = "cosine",
    warmup_steps: int = 0,
    lr_find_kwargs: Mapping[str, Any] | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    **choice: Any,
) -> AutoLR:
    """Choose the peak learning rate (:func:`choose_lr`) and build the schedule around it.

    This is what ``fit(..., lr="auto")`` calls before training (see the module docstring
    for the policy). The model, the optimizer instance (if one is given), the random
    number generators and the data order are left exactly as they were.

    Args:
        model: the model about to be trained.
        train_data: the training data, in any form :func:`bergab.fit` accepts.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        total_steps: optimizer steps of the training run the schedule spans, >= 1.
        policy: ``"cosine"`` or ``"one_cycle"`` (see :func:`build_schedule`).
        warmup_steps: linear warmup before the cosine decay (``"cosine"`` only).
        lr_find_kwargs: range-test settings for :func:`bergab.lr_find`: ``start_lr``,
            ``end_lr``, ``steps``, ``mode``, ``smoothing``, ``diverge_factor``.
        optimizer_kwargs: optimizer arguments when the optimizer is a name or a class
            (``weight_decay``, ``betas``, ...).
        **choice: the rest of :func:`choose_lr`'s arguments: ``val_data``,
            ``optimizer``, ``batch_size``, ``batch_fn``, ``accumulation_steps``,
            ``device``, ``precision``, ``clip_norm``, ``clip_value``, ``seed``, ``warn``.

    Returns:
        An :class:`AutoLR` holding the schedule, the peak and the choice's result.

    Raises:
        ValueError: when every trial diverged; the message says why.

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
    sweep, _ = _checked_sweep(lr_find_kwargs, optimizer_kwargs)
    result = choose_lr(
        model, train_data, loss_fn, total_steps=total_steps, policy=policy,
        warmup_steps=warmup_steps, lr_find_kwargs=sweep, optimizer_kwargs=optimizer_kwargs,
        **choice,
    )  # fmt: skip
    peak = result.suggestion
    return AutoLR(
        schedule=build_schedule(peak, total_steps, policy, warmup_steps),
        peak=peak,
        policy=policy,
        total_steps=total_steps,
        result=result,
    )


# fit(lr="auto") resolves the learning rate with these (training does not import upward)
register_auto_lr(auto_schedule, build_schedule)
