"""Learning-rate health of a running training: divergence, oscillation, stall.

:class:`LRMonitor` is fed once per optimizer step with the loss (and, when you have them,
the gradient norm, the learning rate and the cosine between successive parameter
updates). It raises a :class:`Flag` when the run

- **diverges**: the loss is not finite, or its smoothed value rose above
  ``divergence_factor`` × its best;
- **oscillates**: successive updates point against each other (mean cosine below
  ``oscillation_cosine``), or the loss reverses direction on almost every step;
- **stalls**: over ``stall_window`` steps the loss's trend moved less than its own noise
  (or less than ``stall_rtol`` of its level).

Each flag carries a message that names a better learning-rate range (absolute when the
monitor knows the lr). :class:`UpdateCosine` measures the update cosine from the
parameters, and :func:`grad_norm` the global gradient norm. The monitor is a plain
class with ``update()``, ``status``, ``flags``, ``report()`` and ``state_dict()``, so a
training loop (or ``fit()``'s callbacks) can drive and checkpoint it.

Example:
    >>> mon = LRMonitor(window=10)
    >>> for step in range(30):
    ...     flags = mon.update(step, loss=1.0 / (step + 1), lr=0.1)
    >>> mon.status
    'ok'
    >>> mon.update(30, float("nan"), lr=0.1)[0].kind
    'divergence'
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from numbers import Real
from typing import Any

import torch
from torch import nn

from bergab._validate import check_int, check_real

__all__ = ["KINDS", "Flag", "LRMonitor", "UpdateCosine", "grad_norm"]

#: The kinds of flag, most severe first.
KINDS = ("divergence", "oscillation", "stall")


@dataclass(frozen=True)
class Flag:
    """One problem the monitor found.

    Attributes:
        kind: ``"divergence"``, ``"oscillation"`` or ``"stall"``.
        step: the step at which it was found.
        message: what happened and what to do, naming a better lr range.
        lr: the learning rate at that step, when known.
        lr_range: the suggested ``(low, high)`` learning rates (``None`` without ``lr``).
        evidence: the numbers behind the decision.

    Example:
        >>> Flag("stall", 10, "raise the lr", 0.1, (0.3, 1.0)).lr_range
        (0.3, 1.0)
    """

    kind: str
    step: int
    message: str
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    evidence: dict[str, float] = field(default_factory=dict)


def _range(lr: float | None, low: float, high: float) -> tuple[float, float] | None:
    return None if lr is None else (lr * low, lr * high)


def _fmt_range(lr: float | None, low: float, high: float, words: str) -> str:
    if lr is None:
        return words
    return f"{words}: lr in [{lr * low:.3g}, {lr * high:.3g}] (now {lr:.3g})"


class LRMonitor:
    """Online detector of divergence, oscillation and stall, fed one step at a time.

    Decisions (``W`` = ``window``, ``S`` = ``stall_window``):

    - *divergence*: ``loss`` (or ``grad_norm``) not finite; or, after ``warmup`` steps,
      the bias-corrected EMA of the loss (factor ``smoothing``) exceeds
      ``divergence_factor`` × its smallest value so far (for positive losses).
      Advice: lr 3–10× lower (``[lr/10, lr/3]``), warmup or clipping, restart from a
      good checkpoint.
    - *oscillation*: over the last ``W`` steps the mean update cosine is below
      ``oscillation_cosine``; or, without cosines, at least ``alternation`` of the
      successive loss changes reverse sign while the loss made less net progress than
      half its total movement. Advice: lr 2–4× lower (``[lr/4, lr/2]``): above ``1/L``
      gradient descent overshoots the sharpest direction and bounces.
    - *stall*: over the last ``S`` steps, with ``b`` the least-squares slope of the loss
      and ``σ`` its residual standard deviation, the trend's progress ``−b·(S−1)`` is
      below ``max(z·SE, stall_rtol·|mean loss|)``, ``SE = σ (S−1) / √(S(S²−1)/12)`` (about
      ``σ √(12/S)``): it moved less than its noise. Judged every ``S // 10`` steps. If the
      updates keep their direction (mean cosine > 0.5) or the loss is smooth, the steps
      are too small: raise the lr 3–10× (``[3·lr, 10·lr]``). If the loss sits on a noisy
      floor (or updates cancel out), lower the lr 3–10× (``[lr/10, lr/3]``) or enlarge
      the batch; if the loss is as low as expected, training has converged.

    A flag is raised when its condition starts to hold, and again only after the
    condition has cleared (``status`` tells whether it still holds).

    Args:
        window: steps over which oscillation is judged, >= 4.
        divergence_factor: smoothed loss / best smoothed loss that counts as divergence,
            > 1.
        smoothing: EMA factor for the divergence test, in [0, 1).
        oscillation_cosine: mean update cosine below which updates bounce, in [-1, 0].
        alternation: share of loss changes that must reverse sign, in (0.5, 1].
        stall_window: steps over which a stall is judged, >= 10.
        stall_rtol: progress per ``stall_window`` below this fraction of the loss level
            counts as a stall, >= 0.
        stall_z: progress below this many standard errors of the trend counts as a
            stall, >= 0.
        warmup: steps before divergence and oscillation are judged, >= 0.

    Example:
        >>> mon = LRMonitor(stall_window=20)
        >>> for step in range(40):
        ...     _ = mon.update(step, loss=5.0 - 1e-9 * step, lr=1e-6)
        >>> mon.status, [f"{v:.0e}" for v in mon.flags[0].lr_range]
        ('stalled', ['3e-06', '1e-05'])
    """

    def __init__(
        self,
        window: int = 50,
        *,
        divergence_factor: float = 4.0,
        smoothing: float = 0.9,
        oscillation_cosine: float = -0.3,
        alternation: float = 0.9,
        stall_window: int = 200,
        stall_rtol: float = 1e-3,
        stall_z: float = 2.0,
        warmup: int = 10,
    ) -> None:
        self.window = check_int("window", window, low=4)
        self.divergence_factor = check_real(
            "divergence_factor", divergence_factor, low=1.0, low_open=True
        )
        self.smoothing = check_real("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
        self.oscillation_cosine = check_real(
            "oscillation_cosine", oscillation_cosine, low=-1.0, high=0.0
        )
        self.alternation = check_real("alternation", alternation, low=0.5, high=1.0, low_open=True)
        self.stall_window = check_int("stall_window", stall_window, low=10)
        self.stall_rtol = check_real("stall_rtol", stall_rtol, low=0.0)
        self.stall_z = check_real("stall_z", stall_z, low=0.0)
        self.warmup = check_int("warmup", warmup, low=0)
        self._stall_every = max(1, self.stall_window // 10)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything seen so far.

        Example:
            >>> mon = LRMonitor(); _ = mon.update(0, float("inf")); mon.reset(); mon.status
            'ok'
        """
        self.steps_seen = 0
        self.flags: list[Flag] = []
        self._active: dict[str, bool] = dict.fromkeys(KINDS, False)
        self._ema = 0.0
        self._ema_n = 0
        self._best = math.inf
        self._losses: deque[float] = deque(maxlen=max(self.window, self.stall_window) + 1)
        self._cosines: deque[float] = deque(maxlen=self.window)
        self._grad_norms: deque[float] = deque(maxlen=max(self.window, self.stall_window))
        self._first_grad_norm: float | None = None
        self._last: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume monitoring exactly (plain Python values).

        Example:
            >>> mon = LRMonitor(); _ = mon.update(0, 1.0)
            >>> other = LRMonitor(); other.load_state_dict(mon.state_dict())
            >>> other.state_dict() == mon.state_dict()
            True
        """
        return {
            "steps_seen": self.steps_seen,
            "flags": [asdict(f) for f in self.flags],
            "active": dict(self._active),
            "ema": self._ema,
            "ema_n": self._ema_n,
            "best": self._best,
            "losses": list(self._losses),
            "cosines": list(self._cosines),
            "grad_norms": list(self._grad_norms),
            "first_grad_norm": self._first_grad_norm,
            "last": dict(self._last),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.reset()
        self.steps_seen = int(state["steps_seen"])
        self.flags = [
            Flag(
                **{
                    **f,
                    "lr_range": None if f["lr_range"] is None else tuple(f["lr_range"]),
                    "evidence": dict(f["evidence"]),
                }
            )
            for f in state["flags"]
        ]
        self._active = dict(state["active"])
        self._ema = float(state["ema"])
        self._ema_n = int(state["ema_n"])
        self._best = float(state["best"])
        self._losses.extend(state["losses"])
        self._cosines.extend(state["cosines"])
        self._grad_norms.extend(state["grad_norms"])
        self._first_grad_norm = state["first_grad_norm"]
        self._last = dict(state["last"])

    # ------------------------------------------------------------------ feeding
    def update(
        self,
        step: int,
        loss: float,
        grad_norm: float | None = None,
        lr: float | None = None,
        update_cosine: float | None = None,
    ) -> list[Flag]:
        """Record one optimizer step; return the flags raised at this step.

        Args:
            step: the step number (used in messages).
            loss: the training loss at this step (a float or 0-d tensor).
            grad_norm: the global gradient norm, if known (see :func:`grad_norm`).
            lr: the learning rate used, if known; makes the advice absolute.
            update_cosine: cosine between this update and the previous one, if known (see
                :class:`UpdateCosine`).

        Returns:
            The new flags (usually empty).
        """
        step = check_int("step", step, low=0)
        loss = _scalar("loss", loss)
        grad_norm = None if grad_norm is None else _scalar("grad_norm", grad_norm)
        lr = None if lr is None else _scalar("lr", lr)
        update_cosine = None if update_cosine is None else _scalar("update_cosine", update_cosine)
        self.steps_seen += 1
        self._last = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
        if update_cosine is not None and math.isfinite(update_cosine):
            self._cosines.append(update_cosine)
        if grad_norm is not None and math.isfinite(grad_norm):
            self._grad_norms.append(grad_norm)
            if self._first_grad_norm is None:
                self._first_grad_norm = grad_norm

        new: list[Flag] = []
        diverged = self._check_divergence(step, loss, grad_norm, lr, new)
        if math.isfinite(loss):
            self._losses.append(loss)
        if not diverged:
            self._check_oscillation(step, lr, new)
            self._check_stall(step, lr, new)
        self.flags.extend(new)
        return new

    def _raise(self, kind: str, active: bool, flag: Flag | None, new: list[Flag]) -> None:
        if active and not self._active[kind] and flag is not None:
            new.append(flag)
        self._active[kind] = active

    # ------------------------------------------------------------------ divergence
    def _check_divergence(
        self, step: int, loss: float, grad_norm: float | None, lr: float | None, new: list[Flag]
    ) -> bool:
        advice = _fmt_range(
            lr,
            0.1,
            1 / 3,
            "lower the learning rate 3-10x, add warmup or gradient clipping, and restart "
            "from the last good checkpoint",
        )
        if not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
            nonfinite = Flag(
                "divergence",
                int(step),
                f"divergence at step {step}: {what} is not finite; {advice}",
                lr,
                _range(lr, 0.1, 1 / 3),
                {"loss": loss},
            )
            self._raise("divergence", True, nonfinite, new)
            return True
        self._ema = self.smoothing * self._ema + (1 - self.smoothing) * loss
        self._ema_n += 1
        smooth = self._ema / (1 - self.smoothing**self._ema_n)
        self._best = min(self._best, smooth)
        ratio = smooth / self._best if self._best > 0 else 1.0
        active = self._ema_n > self.warmup and self._best > 0 and ratio > self.divergence_factor
        flag: Flag | None = None
        if active:
            flag = Flag(
                "divergence",
                int(step),
                f"divergence at step {step}: the smoothed loss {smooth:.4g} is {ratio:.1f}x "
                f"its best {self._best:.4g}; {advice}",
                lr,
                _range(lr, 0.1, 1 / 3),
                {"smoothed_loss": smooth, "best": self._best, "ratio": ratio},
            )
        self._raise("divergence", active, flag, new)
        return active

    # ------------------------------------------------------------------ oscillation
    def _check_oscillation(self, step: int, lr: float | None, new: list[Flag]) -> None:
        if self.steps_seen <= self.warmup:
            return
        advice = _fmt_range(
            lr,
            0.25,
            0.5,
            "lower the learning rate 2-4x (or decay it): it overshoots the sharpest direction",
        )
        flag: Flag | None = None
        active = False
        if len(self._cosines) >= self.window // 2:
            mean_cos = sum(self._cosines) / len(self._cosines)
            if mean_cos < self.oscillation_cosine:
                active = True
                flag = Flag(
                    "oscillation",
                    int(step),
                    f"oscillation at step {step}: successive updates point against each other "
                    f"(mean cosine {mean_cos:.2f} over the last {len(self._cosines)} steps); "
                    f"{advice}",
                    lr,
                    _range(lr, 0.25, 0.5),
                    {"mean_cosine": mean_cos},
                )
        losses = list(self._losses)[-self.window - 1 :]
        if not active and len(losses) == self.window + 1:
            deltas = [b - a for a, b in itertools.pairwise(losses)]
            flips = sum(1 for a, b in itertools.pairwise(deltas) if a * b < 0)
            share = flips / (len(deltas) - 1)
            movement = sum(abs(d) for d in deltas)
            net = losses[0] - losses[-1]
            if share >= self.alternation and movement > 0 and net < 0.5 * movement:
                active = True
                flag = Flag(
                    "oscillation",
                    int(step),
                    f"oscillation at step {step}: the loss reversed direction on "
                    f"{100 * share:.0f}% of the last {len(deltas)} steps and made "
                    f"{100 * max(net, 0.0) / movement:.0f}% net progress for its movement; "
                    f"{advice}",
                    lr,
                    _range(lr, 0.25, 0.5),
                    {"alternation": share, "net_over_movement": net / movement},
                )
        self._raise("oscillation", active, flag, new)

    # ------------------------------------------------------------------ stall
    def _check_stall(self, step: int, lr: float | None, new: list[Flag]) -> None:
        s = self.stall_window
        if len(self._losses) < s or self.steps_seen % self._stall_every:
            return  # judged every stall_window // 10 steps, which keeps update() cheap
        losses = list(self._losses)[-s:]
        mean_t = (s - 1) / 2
        mean_l = sum(losses) / s
        sxx = s * (s * s - 1) / 12
        slope = sum((t - mean_t) * (v - mean_l) for t, v in enumerate(losses)) / sxx
        resid = [v - mean_l - slope * (t - mean_t) for t, v in enumerate(losses)]
        sigma = math.sqrt(sum(r * r for r in resid) / max(s - 2, 1))
        progress = -slope * (s - 1)
        noise = self.stall_z * sigma * (s - 1) / math.sqrt(sxx)  # z standard errors
        level = self.stall_rtol * abs(mean_l)
        active = progress < max(noise, level)
        flag: Flag | None = None
        if active:
            cos = sum(self._cosines) / len(self._cosines) if self._cosines else None
            # smooth loss (noise well under the level test) or updates that keep their
            # direction: the steps are too small; otherwise the loss sits on its noise floor
            too_small = (cos is not None and cos > 0.5) or (
                cos is None and noise <= level and progress > -level
            )
            evidence = {"progress": progress, "noise": noise, "level": level, "slope": slope}
            converged = ""
            if self._grad_norms and self._first_grad_norm:
                ratio = self._grad_norms[-1] / self._first_grad_norm
                evidence["grad_norm_ratio"] = ratio
                if ratio < 1e-3:
                    converged = (
                        f" The gradient norm fell to {ratio:.1e} of its first value: this "
                        "looks like convergence; stop, or keep decaying the lr."
                    )
            if cos is not None:
                evidence["mean_cosine"] = cos
            head = (
                f"stall at step {step}: over the last {s} steps the loss moved {progress:.3g} "
                f"(noise {noise:.3g}, {100 * self.stall_rtol:g}% of its level: {level:.3g})"
            )
            if too_small:
                advice = _fmt_range(
                    lr, 3.0, 10.0, "the steps are too small: raise the learning rate 3-10x"
                )
                lr_range = _range(lr, 3.0, 10.0)
            else:
                advice = _fmt_range(
                    lr,
                    0.1,
                    1 / 3,
                    "the loss sits on its noise floor at this lr: lower the learning rate "
                    "3-10x (or decay it, or enlarge the batch); if the loss is already as "
                    "low as expected, training has converged",
                )
                lr_range = _range(lr, 0.1, 1 / 3)
            flag = Flag("stall", int(step), f"{head}; {advice}.{converged}", lr, lr_range, evidence)
        self._raise("stall", active, flag, new)

    # ------------------------------------------------------------------ reading
    @property
    def status(self) -> str:
        """``"ok"``, or the most severe condition that holds now: ``"diverging"``,
        ``"oscillating"``, ``"stalled"``.

        Example:
            >>> LRMonitor().status
            'ok'
        """
        names = {"divergence": "diverging", "oscillation": "oscillating", "stall": "stalled"}
        for kind in KINDS:
            if self._active[kind]:
                return names[kind]
        return "ok"

    def report(self) -> str:
        """A readable summary: status, last values, gradient-norm statistics and flags.

        Example:
            >>> mon = LRMonitor(); _ = mon.update(0, 2.0, grad_norm=1.0, lr=0.1)
            >>> print(mon.report().splitlines()[0])
            LRMonitor: ok after 1 steps
        """
        lines = [f"LRMonitor: {self.status} after {self.steps_seen} steps"]
        if self._last:
            last = self._last
            parts = [f"step {last['step']}", f"loss {last['loss']:.4g}"]
            if last.get("lr") is not None:
                parts.append(f"lr {last['lr']:.3g}")
            if last.get("grad_norm") is not None:
                parts.append(f"grad norm {last['grad_norm']:.3g}")
            lines.append("  last: " + ", ".join(parts))
        if self._grad_norms:
            norms = sorted(self._grad_norms)
            lines.append(
                f"  grad norm over the last {len(norms)} steps: median "
                f"{norms[len(norms) // 2]:.3g}, max {norms[-1]:.3g}"
            )
        if self._cosines:
            lines.append(
                f"  mean update cosine (last {len(self._cosines)}): "
                f"{sum(self._cosines) / len(self._cosines):.2f}"
            )
        if not self.flags:
            lines.append("  no problems found")
        lines.extend(f"  [{f.kind}] {f.message}" for f in self.flags)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"LRMonitor(status={self.status!r}, steps={self.steps_seen}, flags={len(self.flags)})"
        )


# =========================================================================== helpers


def _scalar(name: str, value: Any) -> float:
    """``value`` as a float: a real number or a one-element tensor/array (NaN and inf
    pass; they are what the monitor watches for)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        if not (hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1):
            raise TypeError(
                f"{name} must be a real number or a one-element tensor, "
                f"got {type(value).__name__} {value!r}"
            )
        value = value.item()  # type: ignore[union-attr]
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _params_of(source: Any) -> list[torch.Tensor]:
    if isinstance(source, nn.Module):
        return list(source.parameters())
    if isinstance(source, torch.optim.Optimizer):
        return [p for g in source.param_groups for p in g["params"]]
    if isinstance(source, torch.Tensor):
        return [source]
    if isinstance(source, Iterable):
        out = list(source)
        bad = next((p for p in out if not isinstance(p, torch.Tensor)), None)
        if bad is not None:
            raise TypeError(f"parameters must hold tensors, got a {type(bad).__name__}")
        return out
    raise TypeError(
        "parameters must be a Module, an Optimizer or an iterable of tensors, "
        f"got {type(source).__name__}"
    )


def grad_norm(parameters: Any, norm_type: float = 2.0) -> float:
    """The global gradient norm over ``parameters`` (those with a ``.grad``).

    .. math:: \\lVert g \\rVert_p = \\Big(\\sum_i \\lVert g_i \\rVert_p^p\\Big)^{1/p}

    Args:
        parameters: a Module, an Optimizer or an iterable of tensors.
        norm_type: p, > 0 (``math.inf`` for the max-norm).

    Returns:
        The norm as a float (0.0 when no parameter has a gradient).

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(2)); w.grad = torch.tensor([3.0, 4.0])
        >>> grad_norm([w])
        5.0
    """
    p = float(norm_type)
    if not (p > 0):
        raise ValueError(f"norm_type must be in (0, inf], got {norm_type!r}")
    grads = [t.grad.detach() for t in _params_of(parameters) if t.grad is not None]
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g.double(), p).cpu() for g in grads])
    return float(torch.linalg.vector_norm(norms, p))


class UpdateCosine:
    """Cosine between successive parameter updates, measured from the parameters.

    Call it once after every optimizer step; it returns
    :math:`\\cos(Δ_t, Δ_{t-1}) = \\langle Δ_t, Δ_{t-1}\\rangle / (\\lVert Δ_t\\rVert
    \\lVert Δ_{t-1}\\rVert)` with :math:`Δ_t = θ_t - θ_{t-1}` over all parameters, or
    ``None`` until two updates have been seen (or when an update is zero). Near ``+1``:
    steady descent; near ``-1``: the iterate bounces across a valley (lr too high); near
    0: noise dominates. It keeps two copies of the parameters.

    Args:
        parameters: a Module, an Optimizer or an iterable of tensors, read at construction
            (θ₀) and at every call.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
        >>> cos = UpdateCosine([w])
        >>> with torch.no_grad():
        ...     w -= torch.tensor([0.5, 0.0]); first = cos()
        ...     w += torch.tensor([0.25, 0.0]); second = cos()
        >>> first, second
        (None, -1.0)
    """

    def __init__(self, parameters: Any) -> None:
        self.params = _params_of(parameters)
        self._prev = [p.detach().clone() for p in self.params]
        self._prev_update: list[torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self) -> float | None:
        """Measure the update since the last call; return its cosine with the previous one."""
        update = [p.detach() - q for p, q in zip(self.params, self._prev, strict=True)]
        for q, p in zip(self._prev, self.params, strict=True):
            q.copy_(p.detach())
        prev, self._prev_update = self._prev_update, update
        if prev is None:
            return None
        dot = sum(float((a.double() * b.double()).sum()) for a, b in zip(update, prev, strict=True))
        na = math.sqrt(sum(float(a.double().pow(2).sum()) for a in update))
        nb = math.sqrt(sum(float(b.double().pow(2).sum()) for b in prev))
        if na == 0.0 or nb == 0.0:
            return None
        return max(-1.0, min(1.0, dot / (na * nb)))
