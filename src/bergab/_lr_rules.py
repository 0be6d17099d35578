"""The suggestion rules of the learning-rate range test (:mod:`bergab.lr_finder`): where on
the smoothed loss curve to read a learning rate, and how clearly the curve descends.

Pure functions of the recorded curve (NumPy arrays); :class:`bergab.lr_finder.LRFindResult`
applies them, and :func:`suggest` and :data:`SOFT_MINIMUM_TEMPERATURE` are also
``bergab.lr_finder``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SOFT_MINIMUM_TEMPERATURE", "suggest"]

ArrayLike = Sequence[float] | np.ndarray


def _start_level(smoothed: np.ndarray) -> float:
    """The loss before the descent: the median of the first 10% of the curve."""
    return float(np.median(smoothed[: max(1, len(smoothed) // 10)]))


def _descent_region(smoothed: np.ndarray, i_min: int) -> tuple[int, int]:
    """Indices where the smoothed loss has made 10% and 90% of its drop to the minimum."""
    start = _start_level(smoothed)
    drop = start - float(smoothed[i_min])
    if drop <= 0 or i_min == 0:
        return 0, i_min
    head = smoothed[: i_min + 1]
    fallen = (start - head) / drop
    # the last time the curve was above 10% / 90% of the drop, so noise early on is ignored
    above_10 = np.nonzero(fallen < 0.1)[0]
    a = int(above_10[-1]) if len(above_10) else 0
    above_90 = np.nonzero(fallen < 0.9)[0]
    b = int(above_90[-1]) + 1 if len(above_90) else i_min
    return a, max(a, min(b, i_min))


def _slide(logs: np.ndarray, smoothed: np.ndarray, width: int, thresh: float) -> int:
    """Right-to-left slide: the left end of the first window whose end slopes agree."""
    grad = np.gradient(smoothed, logs)
    span = float(np.max(smoothed) - np.min(smoothed)) or 1.0
    r = len(smoothed) - 1
    while r - width >= 0:
        if abs(grad[r] - grad[r - width]) <= thresh * span:
            return r - width
        r -= 1
    return 0


def _curve_array(name: str, values: ArrayLike) -> np.ndarray:
    """``values`` as a 1-D float64 array; anything else raises naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r:.80}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    return arr


def _check_curve(lrs: np.ndarray, **curves: np.ndarray) -> None:
    """A curve the rules can read: learning rates positive and strictly increasing, every
    other curve as long as ``lrs`` and finite (the rules take logs and minima: a NaN or an
    unsorted lr would give a suggestion that is silently wrong)."""
    if not (np.all(np.isfinite(lrs)) and np.all(lrs > 0) and np.all(np.diff(lrs) > 0)):
        raise ValueError("lrs must be finite, positive and strictly increasing")
    for name, values in curves.items():
        if len(values) != len(lrs):
            raise ValueError(
                f"{name} must have the same length as lrs ({len(lrs)}), got {len(values)}"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} must be finite (a sweep stops before a non-finite loss)")


#: Temperature of ``soft_minimum``, as a fraction of the loss drop (see :func:`suggest`).
SOFT_MINIMUM_TEMPERATURE = 0.05


def _soft_minimum(logs: np.ndarray, smoothed: np.ndarray, i_min: int) -> float:
    """Softmin-weighted mean of log10(lr): the centre of the bottom of the curve."""
    drop = _start_level(smoothed) - float(smoothed[i_min])
    if not drop > 0 or not math.isfinite(drop):
        return float(logs[i_min])
    u = (smoothed - smoothed[i_min]) / drop  # 0 at the minimum, 1 at the start level
    w = np.exp(-u / SOFT_MINIMUM_TEMPERATURE)
    return float(np.sum(w * logs) / np.sum(w))


def suggest(lrs: ArrayLike, smoothed: ArrayLike) -> dict[str, float]:
    """The suggestions read off a range-test curve (all on the smoothed loss).

    With ``i*`` the index of the smallest smoothed loss and ``ℓ = log10(lr)``:

    - ``minimum``: ``lrs[i*] / 10`` (the loss is lowest there; a tenth of it is safe).
    - ``soft_minimum``: ``minimum`` with the argmin replaced by a soft-argmin over the
      curve, so that it does not jump along a flat bottom:
      ``10^ℓ̄ / 10`` with ``ℓ̄ = Σ w_i ℓ_i / Σ w_i``, ``w_i = exp(-u_i / τ)``,
      ``u_i = (s_i - s_min) / (s_start - s_min)`` (0 at the minimum, 1 at the start level
      ``s_start``, the median of the first 10% of the curve) and ``τ = 0.05``
      (:data:`SOFT_MINIMUM_TEMPERATURE`): a point 5% of the drop above the minimum
      weighs ``1/e`` of it. Falls back to ``minimum`` when the curve never drops.
    - ``steep``: the lr where the loss falls fastest, ``argmin dL/dℓ`` between the first
      10% of the points and ``i*`` (torch-lr-finder and Lightning take it over the whole
      curve after skipping its first 10 points).
    - ``valley``: the middle (in ``ℓ``) of the descending region, which runs from where the
      smoothed loss has made 10% of its drop to the minimum to where it has made 90%
      (the drop is measured from the median of the first 10% of the curve; fastai's rule
      of the same name takes the middle of the longest decreasing run).
    - ``slide``: sliding a window of 15% of the points from the right end leftwards, the
      left end of the first window whose end slopes differ by under 5% of the loss range
      per decade: where the curve last bends before diverging (after fastai's ``slide``).

    Args:
        lrs: the learning rates of the sweep, increasing.
        smoothed: the smoothed loss at each of them.

    Returns:
        ``{"minimum", "soft_minimum", "steep", "valley", "slide"}`` -> learning rate;
        empty when the curve has 1 or 2 points.

    Raises:
        ValueError: no points, lrs not positive and strictly increasing, ``smoothed`` of
            another length or not finite.

    Example:
        >>> lrs = np.logspace(-5, 0, 51)
        >>> loss = 1 / (1 + (lrs / 1e-3)) + (lrs / 0.1) ** 2  # falls around 1e-3, blows up
        >>> s = suggest(lrs, loss)
        >>> [f"{s[k]:.0e}" for k in ("minimum", "soft_minimum", "steep", "valley")]
        ['2e-03', '1e-03', '1e-03', '7e-04']
    """
    lr, sm = _curve_array("lrs", lrs), _curve_array("smoothed", smoothed)
    _check_curve(lr, smoothed=sm)
    if len(lr) == 0:
        raise ValueError("lrs must hold the learning rates of the sweep, got none")
    if len(lr) < 3:
        return {}
    logs = np.log10(lr)
    i_min = int(np.argmin(sm))
    out = {"minimum": float(lr[i_min] / 10.0)}
    out["soft_minimum"] = float(10 ** _soft_minimum(logs, sm, i_min) / 10.0)
    skip = len(sm) // 10  # the EMA's first points are noisy; torch-lr-finder skips 10 too
    if i_min - skip >= 2:
        grad = np.gradient(sm[skip : i_min + 1], logs[skip : i_min + 1])
        out["steep"] = float(lr[skip + int(np.argmin(grad))])
    else:
        out["steep"] = float(lr[i_min])
    a, b = _descent_region(sm, i_min)
    out["valley"] = float(10 ** ((logs[a] + logs[b]) / 2))
    width = max(2, round(0.15 * len(sm)))
    out["slide"] = float(lr[_slide(logs, sm, width, 0.05)])
    return out


def _short_curve_reason(lrs: np.ndarray, stop_reason: str, start_lr: float | None) -> str:
    """Why a sweep recorded fewer than 3 steps, and what to do about it."""
    n = len(lrs)
    if stop_reason == "non-finite" and n == 0:
        at = "" if start_lr is None else f", at start_lr={start_lr:g}"
        return (
            f"the loss was not finite from the first step{at}: at the smallest learning rate "
            "the loss itself is NaN or infinite, which is no learning-rate problem (unless "
            "start_lr is large): check the data, the model and loss_fn"
        )
    if stop_reason == "non-finite":
        return (
            f"the loss became non-finite after {n} step(s), at lr {lrs[-1]:.3g}: lower "
            "start_lr, or check the data, the model and loss_fn if start_lr is already small"
        )
    if stop_reason == "diverged":
        return f"the sweep diverged after {n} step(s), at lr {lrs[-1]:.3g}: lower start_lr"
    return f"the sweep recorded {n} step(s); the rules need at least 3: raise steps"


def _confidence(
    lrs: np.ndarray, smoothed: np.ndarray, stop_reason: str, start_lr: float | None = None
) -> tuple[float, list[str]]:
    """A score in [0, 1] for how clearly the curve descends, and the reasons it is low
    (``start_lr``, when known, makes the reason for a curve cut short more precise)."""
    if len(smoothed) < 3:
        return 0.0, [_short_curve_reason(lrs, stop_reason, start_lr)]
    i_min = int(np.argmin(smoothed))
    start = _start_level(smoothed)
    drop = (start - float(smoothed[i_min])) / max(abs(start), 1e-12)
    a, b = _descent_region(smoothed, i_min)
    decades = float(np.log10(lrs[b] / lrs[a])) if b > a else 0.0
    reasons = []
    score_drop = min(1.0, max(0.0, drop / 0.2))
    if drop < 0.1:
        reasons.append(
            f"the smoothed loss fell only {100 * max(drop, 0.0):.1f}% below its start: the "
            "descent may lie below start_lr, or the model does not learn from these batches"
        )
    score_width = min(1.0, decades / 0.5)
    if decades < 0.25:
        reasons.append(
            f"the loss fell within {decades:.2f} decades of lr: increase steps for a finer sweep"
        )
    score_end = 1.0
    if stop_reason == "completed" and i_min >= len(smoothed) - max(2, len(smoothed) // 20):
        score_end = 0.5
        reasons.append("the loss was still falling at end_lr: raise end_lr")
    if i_min <= max(1, len(smoothed) // 20):
        score_end = min(score_end, 0.25)
        reasons.append("the loss was lowest at the very start: lower start_lr")
    return score_drop * score_width * score_end, reasons


# =========================================================================== trials
#
# ``lr="auto"`` reads only a bracket off the range test and lets short training runs
# ("trials") decide: these are the pure parts of that search, so they can be tested on
# made-up curves and score functions.

#: Width of the centred smoothing of a range-test curve, in decades of lr.
CENTRED_DECADES = 0.3


def centred(lrs: ArrayLike, losses: ArrayLike, decades: float = CENTRED_DECADES) -> np.ndarray:
    """The losses smoothed by a Gaussian in ``log10(lr)`` of width ``decades``.

    Each point is a weighted mean of its neighbours on *both* sides, so the smoothed curve
    does not lag the raw one the way an exponential moving average does (an EMA's minimum
    sits where the raw loss is already rising). Near the ends the kernel is cut off and
    renormalized.

    Example:
        >>> lrs = np.logspace(-4, 0, 41)
        >>> loss = (np.log10(lrs) + 2) ** 2  # lowest at 1e-2
        >>> float(lrs[np.argmin(centred(lrs, loss))])
        0.01
    """
    lr, raw = _curve_array("lrs", lrs), _curve_array("losses", losses)
    _check_curve(lr, losses=raw)
    logs = np.log10(lr)
    w = np.exp(-0.5 * ((logs[:, None] - logs[None, :]) / decades) ** 2)
    return (w @ raw) / w.sum(axis=1)


def bottom(lrs: ArrayLike, losses: ArrayLike) -> tuple[float | None, str]:
    """The lr at the bottom of the centred curve, or ``None`` and why it cannot be trusted.

    Losses above the start level (the median of the curve's first 10%) count as the start
    level, so the blow-up at the end does not drag the smoothed bottom towards it. The
    bottom is untrustworthy when the curve never fell 5% below its start, or when its
    lowest point lies in its first 10%: a lucky first batch, or a descent below
    ``start_lr``.

    Example:
        >>> lrs = np.logspace(-6, 1, 71)
        >>> loss = 1 / (1 + lrs / 1e-3) + (lrs / 0.3) ** 2
        >>> lr, why = bottom(lrs, loss)
        >>> f"{lr:.2g}", why
        ('0.025', 'the bottom of the centred range-test curve')
        >>> bottom(lrs, np.ones(71))[0] is None
        True
    """
    lr, raw = _curve_array("lrs", lrs), _curve_array("losses", losses)
    if len(lr) < 5:
        return None, f"the range test recorded only {len(lr)} steps"
    # losses above the start level are cut to it first: a blow-up just past the bottom
    # would otherwise leak into the smoothed bottom through the kernel and pull it down
    ceiling = float(np.median(raw[: max(1, len(raw) // 10)]))
    smooth = centred(lr, np.minimum(raw, ceiling))
    i_min = int(np.argmin(smooth))
    start = float(np.median(smooth[: max(1, len(smooth) // 10)]))
    drop = (start - float(smooth[i_min])) / max(abs(start), 1e-12)
    if i_min < max(1, len(smooth) // 10):
        return None, "the range-test loss was lowest at its very start"
    if drop < 0.05:
        return None, f"the range-test loss fell only {100 * max(drop, 0.0):.1f}% below its start"
    return float(lr[i_min]), "the bottom of the centred range-test curve"


@dataclass
class Trial:
    """One candidate learning rate and how its short run scored (``inf``: diverged).

    Example:
        >>> Trial(0.01, 0.5, "initial", train_score=0.4)
        Trial(lr=0.01, score=0.5, why='initial', train_score=0.4)
    """

    lr: float
    score: float
    why: str
    train_score: float = math.nan


_UP, _DOWN = "the best lr was the highest tried", "the best lr was the lowest tried"


def next_lr(trials: Sequence[Trial], spacing: float) -> tuple[float, str] | None:
    """The next learning rate the search should try, or ``None`` when the best is bracketed.

    While the best score lies at an end of the tried range, the search steps beyond that
    end: ``spacing`` the first time, ``spacing**2`` the second time in a row in the same
    direction, and so on, so that a bracket far from the optimum does not use up the
    trials (below the lowest lr by ``spacing**2`` when all diverged). Once the best is
    bracketed it halves the gap (in log lr) towards its better neighbour, once. (The
    caller does not step above an lr that diverged.)

    Example:
        >>> t = [Trial(1e-3, 0.9, "a"), Trial(1e-2, 0.5, "a")]
        >>> next_lr(t, 10.0)
        (0.1, 'the best lr was the highest tried')
        >>> t.append(Trial(0.1, 0.7, "b"))
        >>> lr, why = next_lr(t, 10.0); round(lr, 5), why
        (0.03162, 'between the best lr and its better neighbour')
    """
    done = sorted(trials, key=lambda t: t.lr)
    lrs = [t.lr for t in done]
    finite = [t for t in done if math.isfinite(t.score)]
    if not finite:
        return lrs[0] / spacing**2, "every lr tried diverged"
    best = min(finite, key=lambda t: t.score)
    i = lrs.index(best.lr)
    if i == len(done) - 1:
        k = 1 + sum(t.why == _UP for t in trials)
        return best.lr * spacing**k, _UP
    if i == 0:
        k = 1 + sum(t.why == _DOWN for t in trials)
        return best.lr / spacing**k, _DOWN
    if any("between" in t.why for t in done):
        return None
    left, right = done[i - 1], done[i + 1]
    other = left if left.score <= right.score else right
    mid = math.sqrt(best.lr * other.lr)
    if any(math.isclose(mid, v) for v in lrs):
        return None
    return mid, "between the best lr and its better neighbour"


def pick(trials: Sequence[Trial]) -> tuple[float, str]:
    """The learning rate the trials point to, and why.

    The best-scoring lr, moved to the vertex of the parabola (in ``log10 lr``) through it
    and its two neighbours when they bracket it and the parabola opens upward; the vertex
    is kept within half the gap to either neighbour.

    Example:
        >>> t = [Trial(1e-3, 1.0, ""), Trial(1e-2, 0.5, ""), Trial(1e-1, 0.6, "")]
        >>> lr, why = pick(t); f"{lr:.3g}", why
        ('0.0215', 'vertex of a parabola through the best trial and its neighbours')
    """
    done = sorted((t for t in trials if math.isfinite(t.score)), key=lambda t: t.lr)
    if not done:
        raise ValueError("every trial diverged")
    i = min(range(len(done)), key=lambda k: done[k].score)
    best = done[i]
    if i == 0 or i == len(done) - 1:
        return best.lr, "the best trial (at the end of the lrs tried)"
    x = np.log10([done[i - 1].lr, best.lr, done[i + 1].lr])
    y = np.array([done[i - 1].score, best.score, done[i + 1].score])
    a, b, _ = np.polyfit(x, y, 2)
    if not a > 0:
        return best.lr, "the best trial"
    vertex = float(np.clip(-b / (2 * a), (x[0] + x[1]) / 2, (x[1] + x[2]) / 2))
    return float(10**vertex), "vertex of a parabola through the best trial and its neighbours"
