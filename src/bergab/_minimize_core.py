"""What one :func:`bergab.minimize` run is made of: the result type, the optimizer built
for a plain function, the start check, the step closure and the divergence/stall monitor.

:mod:`bergab.minimization` runs these one at a time (``minimize``) or many learning rates
in one batched evaluation (``tune_lr``, ``compare``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from bergab._validate import is_schedule
from bergab.landscapes import Landscape

__all__ = [
    "DIVERGENCE_FACTOR",
    "F_PATIENCE",
    "MinimizeResult",
    "Monitor",
    "OptimizerSpec",
    "Schedule",
    "build_optimizer",
    "check_callables",
    "check_start",
    "handles_schedules",
    "make_closure",
    "make_evaluator",
    "make_result",
    "optimizer_name",
    "schedule_of",
    "validate_x0",
]

#: f may grow to ``f(x0) + DIVERGENCE_FACTOR * (|f(x0)| + 1)`` before a run counts as diverged.
DIVERGENCE_FACTOR = 1e10

#: |Δf| <= tol must hold this many steps in a row: with momentum, f pauses at every turn of
#: an oscillation, and one small change says little.
F_PATIENCE = 10

Schedule = Callable[[int], float]
OptimizerSpec = str | type[torch.optim.Optimizer] | Callable[..., torch.optim.Optimizer]


@dataclass(repr=False)
class MinimizeResult:
    """What :func:`minimize` found, and how it got there.

    Attributes:
        x: the final iterate (NumPy array, shape of ``x0``).
        fun: ``f(x)``.
        grad_norm: the Euclidean norm of the gradient at ``x``.
        steps: optimizer steps taken.
        converged: whether a convergence test passed (see ``message``).
        status: ``"converged"``, ``"diverged"`` (non-finite or exploding f),
            ``"unbounded"`` (f fell without bound), ``"max_steps"`` or ``"callback"``.
        message: a sentence saying why the run stopped.
        trajectory: the iterates ``x_0 .. x_steps``, shape ``(steps + 1, *x0.shape)``;
            ``None`` with ``record=False``.
        losses: ``f(x_0) .. f(x_steps)``, shape ``(steps + 1,)`` (always recorded).
        optimizer: the optimizer's name.
        lr: the learning rate (float or schedule) the run used; ``None``: the optimizer's
            default.
        nfev: function (and gradient) evaluations.
    """

    x: np.ndarray
    fun: float
    grad_norm: float
    steps: int
    converged: bool
    status: str
    message: str
    trajectory: np.ndarray | None
    losses: np.ndarray
    optimizer: str
    lr: float | Schedule | None
    nfev: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether the iterates ran away (``status`` is ``"diverged"`` or ``"unbounded"``)."""
        return self.status in ("diverged", "unbounded")

    def steps_to(self, target: float) -> int | None:
        """The first step at which ``f <= target``, or ``None`` if never.

        Example:
            >>> from bergab import landscapes, minimize
            >>> r = minimize(landscapes.booth, optimizer="sgd", lr=0.05, max_steps=200)
            >>> r.steps_to(1e-3) < r.steps_to(1e-6)
            True
        """
        hit = np.flatnonzero(self.losses <= target)
        return int(hit[0]) if hit.size else None

    def __repr__(self) -> str:
        lr = self.lr if self.lr is None or isinstance(self.lr, float) else "schedule"
        return (
            f"MinimizeResult(optimizer={self.optimizer!r}, lr={lr}, status={self.status!r}, "
            f"steps={self.steps}, fun={self.fun:.6g}, grad_norm={self.grad_norm:.3g}, "
            f"x={np.array2string(self.x.ravel()[:6], precision=6)})"
        )


# ---------------------------------------------------------------------------- helpers
def schedule_of(lr: Any) -> Schedule | None:
    """``lr`` itself when it is a schedule (a callable step -> lr), else ``None``."""
    return cast("Schedule", lr) if is_schedule(lr) else None


def optimizer_name(optimizer: OptimizerSpec) -> str:
    if isinstance(optimizer, str):
        return optimizer
    return str(getattr(optimizer, "__name__", type(optimizer).__name__))


def handles_schedules(opt: torch.optim.Optimizer) -> bool:
    from bergab.optim import Optimizer

    return isinstance(opt, Optimizer)


def build_optimizer(
    optimizer: OptimizerSpec,
    param: torch.nn.Parameter,
    lr: float | Schedule | None,
    kwargs: dict[str, Any],
) -> tuple[torch.optim.Optimizer, bool]:
    """Build the optimizer; return it and whether it evaluates the schedule itself."""
    if isinstance(optimizer, str):
        from bergab import optim

        def factory(params: Any, **kw: Any) -> torch.optim.Optimizer:
            return optim.create(optimizer, params, **kw)

    elif callable(optimizer):
        factory = optimizer
    else:
        raise TypeError(
            "optimizer must be a name, a torch.optim.Optimizer class or a factory "
            f"params -> Optimizer, got {type(optimizer).__name__}"
        )
    schedule = schedule_of(lr)
    kw = dict(kwargs)
    if schedule is not None:
        kw["lr"] = float(schedule(0))
    elif lr is not None:
        kw["lr"] = lr
    opt = factory([param], **kw)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}"
        )
    if schedule is not None and handles_schedules(opt):
        # bergab optimizers take the schedule itself (it then shows in their state and lr)
        opt = factory([param], **{**kw, "lr": schedule})
        return opt, True
    return opt, schedule is None


def validate_x0(fn: Any, x0: Any, numpy_mode: bool) -> torch.Tensor:
    if x0 is None:
        start = getattr(fn, "start", None)
        if start is None:
            raise ValueError("x0 is required unless fn is a landscape with a start point")
        x0 = start
    if isinstance(x0, torch.Tensor):
        t = x0.detach().clone()
        if not t.is_floating_point() or numpy_mode:
            t = t.to(torch.float64)
    else:
        try:
            arr = np.asarray(x0, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"x0 must be array-like of real numbers, got {x0!r}") from exc
        t = torch.from_numpy(arr.copy())
    if t.ndim == 0:
        t = t.reshape(1)
    if t.numel() == 0:
        raise ValueError("x0 must not be empty")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"x0 must be finite, got {t.tolist()}")
    if isinstance(fn, Landscape):  # a point of the landscape's space, not a batch
        n = t.shape[-1]
        if t.ndim != 1 or (n < fn.min_dim if fn.any_dim else n != fn.dim):
            need = f"at least {fn.min_dim}" if fn.any_dim else str(fn.dim)
            raise ValueError(
                f"x0 must be one point of {need} coordinates for {fn.name}, got shape "
                f"{tuple(t.shape)}"
            )
    return t


class Monitor:
    """The stopping tests of one run: divergence, then target, gradient norm and Δf."""

    def __init__(self, f0: float, tol: float, target: float | None) -> None:
        self.f0 = f0
        self.bound = DIVERGENCE_FACTOR * (abs(f0) + 1.0)
        self.tol = tol
        self.target = target
        self.quiet = 0  # consecutive steps with |f_t - f_{t-1}| <= tol

    def at_start(self, f: float, gnorm: float) -> tuple[str, str] | None:
        if self.target is not None and f <= self.target:
            return "converged", f"converged: f = {f:.6g} <= target at x0"
        if gnorm <= self.tol:
            return "converged", f"converged: gradient norm {gnorm:.3g} <= tol at x0"
        return None

    def runaway(self, f: float, gnorm: float, step: int) -> tuple[str, str] | None:
        if not (math.isfinite(f) and math.isfinite(gnorm)):
            return "diverged", f"diverged at step {step}: f = {f}, gradient norm = {gnorm}"
        if f - self.f0 > self.bound:
            return (
                "diverged",
                f"diverged at step {step}: f = {f:.3g} exploded from f(x0) = {self.f0:.3g}",
            )
        if self.f0 - f > self.bound:
            return (
                "unbounded",
                f"f fell without bound (to {f:.3g} at step {step}): unbounded below?",
            )
        return None

    def done(self, f: float, f_prev: float, gnorm: float) -> tuple[str, str] | None:
        if self.target is not None and f <= self.target:
            return "converged", f"converged: f = {f:.6g} <= target={self.target:.6g}"
        if gnorm <= self.tol:
            return "converged", f"converged: gradient norm {gnorm:.3g} <= tol={self.tol:g}"
        self.quiet = self.quiet + 1 if abs(f - f_prev) <= self.tol else 0
        if self.quiet >= F_PATIENCE:
            return (
                "converged",
                f"converged: change in f <= tol={self.tol:g} for {F_PATIENCE} consecutive steps",
            )
        return None


def make_closure(f: float, evaluate: Callable[[], float]) -> Callable[[], float]:
    """The closure handed to ``step()``: the first call returns the known ``f`` (the gradient
    is already in ``.grad``); later calls (line searches, L-BFGS) re-evaluate."""
    first = True

    def closure() -> float:
        nonlocal first
        if first:
            first = False
            return f
        return evaluate()

    return closure


def check_callables(fn: Any, grad: Any, callback: Any, record: Any) -> None:
    """minimize's checks of ``fn``, ``grad``, ``callback`` and ``record``."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be callable or None, got {type(grad).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(record, bool):
        raise TypeError(f"record must be a bool, got {type(record).__name__}")


def check_start(f: float, gnorm: float) -> None:
    """A run needs a finite f and gradient at x0."""
    if not math.isfinite(f):
        raise ValueError(f"fn(x0) must be finite, got {f}")
    if not math.isfinite(gnorm):
        raise ValueError(f"the gradient at x0 must be finite, got norm {gnorm}")


def make_evaluator(
    fn: Callable[..., Any],
    param: torch.nn.Parameter,
    grad: Callable[[np.ndarray], Any] | None,
) -> Callable[[], tuple[float, float]]:
    """``evaluate() -> (f, ‖∇f‖)`` at ``param``, leaving the gradient in ``param.grad``:
    by autograd, or from ``grad`` for a NumPy ``fn``."""
    numpy_mode = grad is not None

    def evaluate() -> tuple[float, float]:
        param.grad = None
        if numpy_mode:
            assert grad is not None
            xn = param.detach().cpu().numpy().copy()
            value = fn(xn)
            try:
                fval = float(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"fn must return a real number, got {value!r}") from exc
            g = np.asarray(grad(xn), dtype=np.float64)
            if g.shape != tuple(param.shape):
                raise ValueError(
                    f"grad(x) must have the shape of x {tuple(param.shape)}, got {g.shape}"
                )
            param.grad = torch.from_numpy(g).to(dtype=param.dtype, device=param.device)
        else:
            with torch.enable_grad():
                value = fn(param)
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise TypeError(
                        "fn must return a scalar tensor (for NumPy functions pass grad=), "
                        f"got {type(value).__name__}"
                        + (f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else "")
                    )
                if not value.requires_grad:
                    raise ValueError("fn(x) does not depend on x through autograd")
                value.sum().backward()
            fval = float(value.detach())
        gnorm = float(torch.linalg.vector_norm(param.grad.detach()))  # type: ignore[union-attr]
        return fval, gnorm

    return evaluate


def make_result(
    param: torch.Tensor,
    f: float,
    gnorm: float,
    steps: int,
    stop: tuple[str, str] | None,
    max_steps: int,
    trajectory: np.ndarray | None,
    losses: list[float],
    optimizer: OptimizerSpec,
    lr: float | Schedule | None,
    nfev: int,
) -> MinimizeResult:
    """The result of a finished run (``stop`` is ``None`` when it ran out of steps)."""
    status, message = stop or ("max_steps", f"max_steps={max_steps} reached")
    return MinimizeResult(
        x=param.detach().cpu().numpy().copy(),
        fun=f,
        grad_norm=gnorm,
        steps=steps,
        converged=status == "converged",
        status=status,
        message=message,
        trajectory=trajectory,
        losses=np.asarray(losses, dtype=np.float64),
        optimizer=optimizer_name(optimizer),
        lr=lr,
        nfev=nfev,
    )


# ---------------------------------------------------------------------------- minimize
