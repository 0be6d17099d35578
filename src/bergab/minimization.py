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
from typing import Any

import numpy as np
import torch

from bergab._minimize_core import (
    MinimizeResult,
    Monitor,
    OptimizerSpec,
    Schedule,
    build_optimizer,
    check_callables,
    check_start,
    make_closure,
    make_evaluator,
    make_result,
    optimizer_name,
    schedule_of,
    validate_x0,
)
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
    check_callables(fn, grad, callback, record)
    if lr is not None and not is_schedule(lr):
        lr = check_real("lr", lr, low=0.0)
    max_steps = check_int("max_steps", max_steps, low=1)  # 0 steps would minimize nothing
    tol = check_real("tol", tol, low=0.0)
    if target is not None:
        target = check_real("target", target)
    numpy_mode = grad is not None
    start = validate_x0(fn, x0, numpy_mode)
    param = torch.nn.Parameter(start)
    if isinstance(fn, Landscape):
        fn.reset()  # noisy landscapes: every run sees the same noise sequence

    evaluate = make_evaluator(fn, param, grad)
    f, gnorm = evaluate()
    nfev = 1
    check_start(f, gnorm)
    opt, native = build_optimizer(optimizer, param, lr, optimizer_kwargs)
    schedule = None if native else schedule_of(lr)
    monitor = Monitor(f, tol, target)
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
        opt.step(make_closure(f, reevaluate))
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
    return make_result(param, f, gnorm, steps, stop, max_steps, traj, losses, optimizer, lr, nfev)


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
    check_start(f0, g0)
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
    start = validate_x0(fn, x0, numpy_mode=False)
    fn.reset()
    n = len(lrs)
    f0, g0, grad0 = _start_of_batch(fn, start)
    params = [torch.nn.Parameter(start.clone()) for _ in lrs]
    for p in params:
        p.grad = grad0.clone()
    opts = [
        build_optimizer(optimizer, p, lr, optimizer_kwargs)[0]
        for p, lr in zip(params, lrs, strict=True)
    ]
    monitors = [Monitor(f0, tol, target) for _ in lrs]
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
            opts[i].step(make_closure(fs[i], lambda i=i: reevaluate(i)))  # type: ignore[misc]
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
        lr: make_result(
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
        name = optimizer_name(opt)
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
