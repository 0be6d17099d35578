"""``minimize()``: run any optimizer on a plain function and watch it go downhill.

A scipy-like entry point over functions of one tensor: gradients come from autograd (or
from a user ``grad`` for NumPy functions), steps come from a real ``torch.optim``
optimizer, and the result records the whole trajectory. Divergence is a result, not an
exception, so learning-rate sweeps can run unattended.

The module is ``bergab.minimization``; its :func:`minimize` and :class:`MinimizeResult` are
also ``bergab.minimize`` and ``bergab.MinimizeResult``.

Example:
    >>> from bergab import landscapes
    >>> res = minimize(landscapes.booth, optimizer="momentum", lr=0.01, tol=1e-10)
    >>> res.converged, bool(abs(res.x - [1.0, 3.0]).max() < 1e-4)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from bergab._validate import check_int, check_real, is_schedule
from bergab.landscapes import Landscape, Noisy

__all__ = [
    "MinimizeResult",
    "compare",
    "default_lr_grid",
    "format_table",
    "minimize",
    "steps_to_tolerance",
    "tune_lr",
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
            >>> from bergab import landscapes
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
def _schedule_of(lr: Any) -> Schedule | None:
    """``lr`` itself when it is a schedule (a callable step -> lr), else ``None``."""
    return cast("Schedule", lr) if is_schedule(lr) else None


def _optimizer_name(optimizer: OptimizerSpec) -> str:
    if isinstance(optimizer, str):
        return optimizer
    return str(getattr(optimizer, "__name__", type(optimizer).__name__))


def _handles_schedules(opt: torch.optim.Optimizer) -> bool:
    from bergab.optim import Optimizer

    return isinstance(opt, Optimizer)


def _build_optimizer(
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
    schedule = _schedule_of(lr)
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
    if schedule is not None and _handles_schedules(opt):
        # bergab optimizers take the schedule itself (it then shows in their state and lr)
        opt = factory([param], **{**kw, "lr": schedule})
        return opt, True
    return opt, schedule is None


def _validate_x0(fn: Any, x0: Any, numpy_mode: bool) -> torch.Tensor:
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


class _Monitor:
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


def _closure(f: float, evaluate: Callable[[], float]) -> Callable[[], float]:
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


def _check_callables(fn: Any, grad: Any, callback: Any, record: Any) -> None:
    """minimize's checks of ``fn``, ``grad``, ``callback`` and ``record``."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be callable or None, got {type(grad).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(record, bool):
        raise TypeError(f"record must be a bool, got {type(record).__name__}")


def _check_start(f: float, gnorm: float) -> None:
    """A run needs a finite f and gradient at x0."""
    if not math.isfinite(f):
        raise ValueError(f"fn(x0) must be finite, got {f}")
    if not math.isfinite(gnorm):
        raise ValueError(f"the gradient at x0 must be finite, got norm {gnorm}")


def _evaluator(
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


def _result(
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
        optimizer=_optimizer_name(optimizer),
        lr=lr,
        nfev=nfev,
    )


# ---------------------------------------------------------------------------- minimize
def minimize(
    fn: Callable[..., Any],
    x0: Any = None,
    *,
    optimizer: OptimizerSpec = "sgd",
    lr: float | Schedule | None = 1e-3,
    max_steps: int = 10_000,
    tol: float = 1e-8,
    target: float | None = None,
    grad: Callable[[np.ndarray], Any] | None = None,
    callback: Callable[[int, Any, float], Any] | None = None,
    record: bool = True,
    **optimizer_kwargs: Any,
) -> MinimizeResult:
    """Minimize ``fn`` from ``x0`` with a torch optimizer; never raises on divergence.

    Each step: evaluate ``f(x)`` and ``∇f(x)``, let the optimizer update ``x``, then test

    - **divergence**: ``f`` or ``∇f`` not finite, or ``f > f(x0) + 1e10 (|f(x0)| + 1)``
      (status ``"diverged"``); ``f < f(x0) − 1e10 (|f(x0)| + 1)`` is status
      ``"unbounded"``. Both give ``converged=False``.
    - **convergence**: ``‖∇f(x)‖ ≤ tol``, or ``|f(x_t) − f(x_{t−1})| ≤ tol`` on 10
      consecutive steps (one small change says little when momentum makes f pause at
      every turn); the message says which. The second also fires when the lr is so small
      that f barely moves: check ``grad_norm``. With ``target``, reaching ``f <= target``
      counts as convergence too (time-to-target, as in benchmarks).
    - ``callback(step, x, f)`` returning ``True`` stops the run (status ``"callback"``).

    Args:
        fn: a function of one tensor returning a scalar tensor (autograd gives the
            gradient), e.g. a :mod:`bergab.landscapes` landscape; with ``grad`` given, a
            function of a float64 NumPy array returning a float.
        x0: the start point (array-like or tensor; tensors keep their float dtype, the rest
            become float64). Default: ``fn.start`` for a landscape.
        optimizer: a name for :func:`bergab.optim.create` (``"sgd"``, ``"momentum"``,
            ``"adam"``, ...), a ``torch.optim.Optimizer`` class, or a factory
            ``(params, **kwargs) -> Optimizer``.
        lr: a float, a schedule (``step -> lr``; bergab optimizers take it directly, for
            others ``group["lr"]`` is set before each step), or ``None`` for the optimizer's
            own default.
        max_steps: the most optimizer steps, ``>= 1``.
        tol: the convergence tolerance, ``>= 0``.
        target: stop (converged) once ``f <= target``, e.g. ``f* + 1e-8`` for a landscape.
        grad: the gradient of a NumPy ``fn``: ``grad(x) -> array`` of the shape of ``x``.
        callback: called as ``callback(step, x, f)`` after each step (``x`` a detached
            copy, NumPy with ``grad``); a ``True`` return stops the run.
        record: keep the trajectory of iterates (``losses`` are always kept).
        **optimizer_kwargs: passed to the optimizer (``momentum=0.9``, ``betas=...``).

    Returns:
        A :class:`MinimizeResult`.

    Example:
        >>> import numpy as np
        >>> f = lambda x: float(np.sum((x - 3.0) ** 2))
        >>> res = minimize(f, [0.0, 0.0], grad=lambda x: 2 * (x - 3.0), lr=0.1, tol=1e-10)
        >>> res.message, np.round(res.x, 4).tolist()  # doctest: +ELLIPSIS
        ('converged: change in f <= tol=1e-10 for 10 consecutive steps', [3.0, 3.0])
        >>> import torch
        >>> res = minimize(lambda x: (x ** 2).sum(), [1.0], optimizer=torch.optim.SGD, lr=1.5)
        >>> res.status, res.steps
        ('diverged', 18)
    """
    _check_callables(fn, grad, callback, record)
    if lr is not None and not is_schedule(lr):
        lr = check_real("lr", lr, low=0.0)
    max_steps = check_int("max_steps", max_steps, low=1)  # 0 steps would minimize nothing
    tol = check_real("tol", tol, low=0.0)
    if target is not None:
        target = check_real("target", target)
    numpy_mode = grad is not None
    start = _validate_x0(fn, x0, numpy_mode)
    param = torch.nn.Parameter(start)
    if isinstance(fn, Landscape):
        fn.reset()  # noisy landscapes: every run sees the same noise sequence

    evaluate = _evaluator(fn, param, grad)
    f, gnorm = evaluate()
    nfev = 1
    _check_start(f, gnorm)
    opt, native = _build_optimizer(optimizer, param, lr, optimizer_kwargs)
    schedule = None if native else _schedule_of(lr)
    monitor = _Monitor(f, tol, target)
    trajectory = [param.detach().clone()] if record else None
    losses = [f]
    steps = 0

    def reevaluate() -> float:
        nonlocal nfev
        nfev += 1
        return evaluate()[0]

    stop = monitor.at_start(f, gnorm)
    while stop is None and steps < max_steps:
        if schedule is not None:
            for group in opt.param_groups:
                group["lr"] = float(schedule(steps))
        opt.step(_closure(f, reevaluate))
        steps += 1
        f_prev = f
        f, gnorm = evaluate()
        nfev += 1
        if trajectory is not None:
            trajectory.append(param.detach().clone())
        losses.append(f)
        stop = monitor.runaway(f, gnorm, steps)
        if stop is None and callback is not None:
            x_cb: Any = (
                param.detach().cpu().numpy().copy() if numpy_mode else param.detach().clone()
            )
            if callback(steps, x_cb, f) is True:
                stop = "callback", f"stopped by callback at step {steps}"
        if stop is None:
            stop = monitor.done(f, f_prev, gnorm)
    traj = None if trajectory is None else torch.stack(trajectory).cpu().numpy()
    return _result(param, f, gnorm, steps, stop, max_steps, traj, losses, optimizer, lr, nfev)


# ---------------------------------------------------------------------------- comparisons
def steps_to_tolerance(result: MinimizeResult, fn: Any, tol: float) -> int | None:
    """Steps until ``f − f* <= tol`` when ``fn`` knows its minimum ``f*`` (a landscape);
    otherwise the steps to convergence, or ``None``.

    Example:
        >>> from bergab import landscapes
        >>> r = minimize(landscapes.booth, optimizer="sgd", lr=0.05, max_steps=500)
        >>> steps_to_tolerance(r, landscapes.booth, 1e-6)
        87
    """
    tol = check_real("tol", tol, low=0.0)
    f_star = getattr(fn, "min_value", None)
    if f_star is not None and math.isfinite(f_star):
        return result.steps_to(f_star + tol)
    return result.steps if result.converged else None


def default_lr_grid() -> list[float]:
    """The learning rates :func:`tune_lr` tries by default: ``10^k`` for ``k = −5, −4.5, …, 0.5``.

    Example:
        >>> g = default_lr_grid()
        >>> len(g), g[0], round(g[-1], 4)
        (12, 1e-05, 3.1623)
    """
    return [10.0 ** (k / 2) for k in range(-10, 2)]


def _stopping(fn: Any, tol: float) -> tuple[float, float | None]:
    """``(tol, target)`` for minimize() in a race: stop at ``f − f* <= tol`` when f* is known."""
    f_star = getattr(fn, "min_value", None)
    if f_star is not None and math.isfinite(f_star):
        return 0.0, f_star + tol
    return tol, None


def _start_of_batch(fn: Landscape, start: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """f, the gradient norm and the gradient at ``start`` (checked finite), which every run
    of a batch shares."""
    x = start.clone().requires_grad_(True)
    with torch.enable_grad():
        value = fn(x)
        value.backward()
    assert x.grad is not None
    f0, g0 = float(value.detach()), float(torch.linalg.vector_norm(x.grad))
    _check_start(f0, g0)
    return f0, g0, x.grad


def _batched_runs(
    fn: Landscape,
    optimizer: OptimizerSpec,
    lrs: Sequence[float],
    *,
    steps: int,
    x0: Any,
    tol: float,
    target: float | None,
    optimizer_kwargs: dict[str, Any],
    record: bool = False,
) -> dict[float, MinimizeResult]:
    """``minimize(fn, x0, lr=lr, record=record, ...)`` for every lr at once.

    Each lr keeps its own parameter and its own optimizer (so nothing couples the runs);
    only the evaluation is shared: the landscape takes the stacked iterates ``(n, d)`` in
    one call, and one backward pass gives each row its gradient. Same runs as one by one
    (up to rounding in the last bits), several times faster.
    """
    start = _validate_x0(fn, x0, numpy_mode=False)
    fn.reset()
    n = len(lrs)
    f0, g0, grad0 = _start_of_batch(fn, start)
    params = [torch.nn.Parameter(start.clone()) for _ in lrs]
    for p in params:
        p.grad = grad0.clone()
    opts = [
        _build_optimizer(optimizer, p, lr, optimizer_kwargs)[0]
        for p, lr in zip(params, lrs, strict=True)
    ]
    monitors = [_Monitor(f0, tol, target) for _ in lrs]
    stops = [m.at_start(f0, g0) for m in monitors]
    fs, gnorms = [f0] * n, [g0] * n
    losses: list[list[float]] = [[f0] for _ in lrs]
    trajs = [[start.clone()] for _ in lrs] if record else None
    taken, nfev = [0] * n, [1] * n

    def reevaluate(i: int) -> float:  # for optimizers that call the closure again
        nfev[i] += 1
        params[i].grad = None
        with torch.enable_grad():
            v = fn(params[i])
            v.backward()
        return float(v.detach())

    for _ in range(steps):
        active = [i for i in range(n) if stops[i] is None]
        if not active:
            break
        for i in active:
            opts[i].step(_closure(fs[i], lambda i=i: reevaluate(i)))  # type: ignore[misc]
            taken[i] += 1
            params[i].grad = None
        with torch.enable_grad():
            values = fn(torch.stack([params[i] for i in active]))
            values.sum().backward()
        for k, i in enumerate(active):
            f_prev, fs[i] = fs[i], float(values[k].detach())
            gnorms[i] = float(torch.linalg.vector_norm(params[i].grad))
            nfev[i] += 1
            losses[i].append(fs[i])
            if trajs is not None:
                trajs[i].append(params[i].detach().clone())
            stops[i] = monitors[i].runaway(fs[i], gnorms[i], taken[i]) or monitors[i].done(
                fs[i], f_prev, gnorms[i]
            )
    return {
        lr: _result(
            params[i],
            fs[i],
            gnorms[i],
            taken[i],
            stops[i],
            steps,
            None if trajs is None else torch.stack(trajs[i]).numpy(),
            losses[i],
            optimizer,
            lr,
            nfev[i],
        )
        for i, lr in enumerate(lrs)
    }


#: On a function unbounded below, a run that leaves the plot window within this many steps
#: (or within its whole budget, if shorter) ranks after every run that stays longer.
MIN_WINDOW_STEPS = 10


def _escape_window(fn: Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The window tuning judges a run in, for a 2-D landscape unbounded below (the saddle):
    there "lowest final f" would reward the lr that flings the iterate out of any figure
    fastest. ``None`` for every other function."""
    if isinstance(fn, Landscape) and fn.min_value == -math.inf and fn.dim == 2:
        return fn.domain
    return None


def _window_score(result: MinimizeResult, window: Any, steps: int) -> tuple[float, float, float]:
    """The score of a run on a function unbounded below: the lowest f it reached while still
    inside ``window`` (the iterates before it first leaves), so the winner descends as far
    as the figure shows rather than jumping out of it; a run that left within
    :data:`MIN_WINDOW_STEPS` steps ranks after those that stayed."""
    (x0, x1), (y0, y1) = window
    t = result.trajectory
    assert t is not None  # tune_lr records the runs it scores this way
    inside = (t[:, 0] >= x0) & (t[:, 0] <= x1) & (t[:, 1] >= y0) & (t[:, 1] <= y1)
    k = len(t) if inside.all() else int(np.argmin(inside))  # iterates before leaving
    brief = not inside.all() and k - 1 < min(MIN_WINDOW_STEPS, steps)
    return (1.5 if brief else 1.0, float(np.min(result.losses[:k])), -float(k))


def _score(result: MinimizeResult, fn: Any, tol: float, steps: int) -> tuple[float, float, float]:
    """Lower is better: reached the tolerance (fewest steps), else lowest final f; on a
    function unbounded below, the lowest f inside the plot window (:func:`_window_score`)."""
    if result.status == "diverged" or not math.isfinite(result.fun):
        return (2.0, math.inf, math.inf)
    window = _escape_window(fn)
    if window is not None and result.trajectory is not None and result.losses.size:
        (x0, x1), (y0, y1) = window
        start = result.trajectory[0]
        if x0 <= start[0] <= x1 and y0 <= start[1] <= y1:  # else the window says nothing
            return _window_score(result, window, steps)
    hit = steps_to_tolerance(result, fn, tol)
    if hit is not None:
        return (0.0, float(hit), result.fun)
    return (1.0, result.fun, float(result.steps))


def tune_lr(
    fn: Callable[..., Any],
    optimizer: OptimizerSpec,
    *,
    steps: int,
    grid: Sequence[float] | None = None,
    x0: Any = None,
    tol: float = 1e-8,
    **optimizer_kwargs: Any,
) -> tuple[float, dict[float, MinimizeResult]]:
    """Pick ``optimizer``'s best learning rate on ``fn`` from a small log grid.

    Every lr runs up to ``steps`` steps from the same start (stopping early once
    ``f − f* <= tol`` when ``fn`` knows ``f*``). The best is the one that reaches
    ``f − f* <= tol`` in the fewest steps; if none does, the lowest final f. Diverged runs
    lose. On a 2-D landscape unbounded below (``saddle``), where the lowest final f would
    go to the lr that throws the iterate out of the picture fastest, the best is the
    lowest f reached while the iterate is still inside ``fn.domain`` (the plot window),
    and runs that leave it within 10 steps rank last but for diverged ones: the chosen lr
    escapes the saddle point in a path the figure shows (those runs are recorded). On a
    landscape the runs share one batched evaluation per step (each lr keeps its own
    optimizer); a noisy landscape runs them one by one, reseeded, so each lr sees the
    same noise.

    Args:
        fn: the function (usually a landscape).
        optimizer: as for :func:`minimize`.
        steps: steps per trial, ``>= 1``.
        grid: the learning rates to try (default :func:`default_lr_grid`).
        x0: start point (default ``fn.start``).
        tol: tolerance on ``f − f*`` (the convergence tol of each run when f* is unknown).
        **optimizer_kwargs: passed to the optimizer.

    Returns:
        ``(best_lr, {lr: result})``.

    Example:
        >>> from bergab import landscapes
        >>> best, runs = tune_lr(landscapes.booth, "sgd", steps=100, grid=[1e-3, 1e-2, 0.05, 0.2])
        >>> best, runs[0.2].status
        (0.05, 'diverged')
    """
    steps = check_int("steps", steps, low=1)
    if grid is not None and (isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence)):
        raise TypeError(f"grid must be a list of learning rates, got {type(grid).__name__}")
    lrs = (
        default_lr_grid()
        if grid is None
        else [check_real("grid", g, low=0.0, low_open=True) for g in grid]
    )
    if not lrs:
        raise ValueError("grid must hold at least one learning rate")
    tol = check_real("tol", tol, low=0.0)
    run_tol, target = _stopping(fn, tol)
    record = _escape_window(fn) is not None  # the window score reads the iterates
    if isinstance(fn, Landscape) and not isinstance(fn, Noisy):
        runs = _batched_runs(
            fn, optimizer, lrs, steps=steps, x0=x0, tol=run_tol, target=target,
            optimizer_kwargs=optimizer_kwargs, record=record,
        )  # fmt: skip
    else:  # a plain function, or a noisy landscape (each run reseeds its noise): one by one
        runs = {}
        for value in lrs:
            runs[value] = minimize(
                fn, x0, optimizer=optimizer, lr=value, max_steps=steps, tol=run_tol,
                target=target, record=record, **optimizer_kwargs,
            )  # fmt: skip
    best = min(lrs, key=lambda v: _score(runs[v], fn, tol, steps))
    return best, runs


def compare(
    fn: Callable[..., Any],
    optimizers: Sequence[OptimizerSpec],
    *,
    steps: int,
    lr: float | Sequence[float] | dict[str, float] | str = 1e-3,
    x0: Any = None,
    tol: float = 1e-8,
    grid: Sequence[float] | None = None,
) -> list[MinimizeResult]:
    """Run several optimizers on ``fn`` from the same start (what ``bergab landscape`` does).

    Args:
        fn: the function (usually a landscape).
        optimizers: names, classes or factories, as for :func:`minimize`.
        steps: the most steps per optimizer.
        lr: one float for all; a list of floats (every optimizer runs at each, to show the
            effect of the learning rate); a ``{name: lr}`` dict; or ``"tune"``: each
            optimizer's best lr from :func:`tune_lr` on ``grid`` (the fair comparison).
        x0: start point (default ``fn.start``).
        tol: each run stops once ``f − f* <= tol`` when ``fn`` knows ``f*`` (a landscape);
            otherwise it is the convergence tol of :func:`minimize`.
        grid: the lr grid for ``"tune"``.

    Returns:
        One recorded :class:`MinimizeResult` per optimizer (and lr), in order; a tuned run
        has the chosen lr in ``result.lr`` and the trials in ``result.extra["tuning"]``.

    Example:
        >>> from bergab import landscapes
        >>> rs = compare(landscapes.booth, ["sgd", "momentum"], steps=200, lr=0.01)
        >>> [r.optimizer for r in rs], rs[1].fun < rs[0].fun
        (['sgd', 'momentum'], True)
        >>> [(r.lr, r.status) for r in compare(landscapes.booth, ["sgd"], steps=50, lr=[0.05, 0.2])]
        [(0.05, 'max_steps'), (0.2, 'diverged')]
    """
    if isinstance(lr, str) and lr != "tune":
        raise ValueError(f"lr must be a float, a dict of floats or 'tune'; got {lr!r}")
    if isinstance(optimizers, (str, bytes)) or not isinstance(optimizers, Sequence):
        # a str is a sequence too: "sgd" would race the optimizers 's', 'g' and 'd'
        raise TypeError(
            f"optimizers must be a list of optimizers, e.g. ['sgd'], got {optimizers!r:.60}"
        )
    if not optimizers:
        raise ValueError("optimizers must name at least one optimizer")
    steps = check_int("steps", steps, low=1)
    tol = check_real("tol", tol, low=0.0)
    run_tol, target = _stopping(fn, tol)
    results = []
    for opt in optimizers:
        name = _optimizer_name(opt)
        extra: dict[str, Any] = {}
        if lr == "tune":
            best, trials = tune_lr(fn, opt, steps=steps, grid=grid, x0=x0, tol=tol)
            extra["tuning"] = {k: (r.fun, r.status) for k, r in trials.items()}
            values = [best]
        elif isinstance(lr, dict):
            if name not in lr:
                raise ValueError(f"lr has no value for optimizer {name!r}")
            values = [check_real(f"lr[{name!r}]", lr[name], low=0.0, low_open=True)]
        elif isinstance(lr, Sequence) and not isinstance(lr, str):
            if not lr:
                raise ValueError("lr must hold at least one learning rate")
            values = [check_real("lr", v, low=0.0, low_open=True) for v in lr]
        else:
            values = [check_real("lr", lr, low=0.0, low_open=True)]
        for value in values:
            res = minimize(
                fn, x0, optimizer=opt, lr=value, max_steps=steps, tol=run_tol, target=target
            )
            res.extra.update(extra)
            results.append(res)
    return results


def format_table(results: Sequence[MinimizeResult], fn: Any = None, tol: float = 1e-8) -> str:
    """A plain-text table: optimizer, lr, final f, steps to ``f − f* <= tol``, status.

    Example:
        >>> from bergab import landscapes
        >>> rs = compare(landscapes.booth, ["sgd"], steps=100, lr=0.05)
        >>> print(format_table(rs, landscapes.booth, tol=1e-6))  # doctest: +NORMALIZE_WHITESPACE
        optimizer  lr    final f   steps to tol  status
        sgd        0.05  5.96e-08  87            max_steps
    """
    header = ("optimizer", "lr", "final f", "steps to tol", "status")
    rows = []
    for r in results:
        lr = (
            "default"
            if r.lr is None
            else (f"{r.lr:.3g}" if isinstance(r.lr, float) else "schedule")
        )
        hit = steps_to_tolerance(r, fn, tol)
        rows.append((r.optimizer, lr, f"{r.fun:.3g}", "-" if hit is None else str(hit), r.status))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)
