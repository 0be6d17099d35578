"""Every optimizer in the spec table reaches a stated loss on two classic problems.

- ``quadratic``: ``f(x) = ½ Σ λᵢ xᵢ²`` in 20 dimensions, ``λ`` log-spaced in [1, 100]
  (condition number 100), from a fixed random start (``f ≈ 10³``); minimum 0.
- ``rosenbrock``: ``(1 − x)² + 100 (y − x²)²`` from the classic start (−1.2, 1), ``f = 24.2``;
  minimum 0 at (1, 1). Weight decay is switched off here (it would move the minimum).

A run passes when ``f`` falls to the stated ``loss`` within the stated number of ``steps``
(gradients are written out by hand, float64, ``impl="auto"``). The settings come from, in
order: the spec row's ``converge`` dict (``{"quadratic": {"lr": ..., "steps": ...,
"loss": ..., "kwargs": {...}}, "rosenbrock": {...}}``; a missing ``lr`` keeps the row's own,
``kwargs`` overrides some of the row's keyword arguments), this file's
per-class table :data:`DEFAULTS`, or, for a class in neither, :data:`FALLBACK`: the row's
own lr for LR-free rows, else the best of a small lr grid. Rows with ``maximize=True`` are
given the negated objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.optim_specs import SPECS, Spec, spec_ids

DIM = 20
KAPPA = 100.0
EIGENVALUES = torch.logspace(0.0, math.log10(KAPPA), DIM, dtype=torch.float64)
QUADRATIC_START = 2.0 * torch.randn(
    DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64
)
ROSENBROCK_START = torch.tensor([-1.2, 1.0], dtype=torch.float64)

Problem = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def quadratic(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    return float(0.5 * (EIGENVALUES * x * x).sum()), EIGENVALUES * x


def rosenbrock(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    a, b = x[0], x[1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    return float(f), torch.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


PROBLEMS: dict[str, tuple[Problem, torch.Tensor]] = {
    "quadratic": (quadratic, QUADRATIC_START),
    "rosenbrock": (rosenbrock, ROSENBROCK_START),
}

# Per-class settings for rows without their own ``converge`` entry: lr, step budget and
# the loss to reach. Budgets leave a margin of about 1.5x over the steps the slowest row
# of the class needed when the table was written.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "SGD": {
        "quadratic": {"lr": 0.005, "steps": 2500, "loss": 1e-6},
        "rosenbrock": {"lr": 0.0015, "steps": 4000, "loss": 1e-2},
    },
    "Adagrad": {
        "quadratic": {"lr": 1.0, "steps": 1500, "loss": 1e-4},
        "rosenbrock": {"lr": 1.0, "steps": 2500, "loss": 1.0},  # lr_decay slows one row
    },
    "RMSprop": {
        "quadratic": {"lr": 0.003, "steps": 2500, "loss": 1e-3},
        "rosenbrock": {"lr": 0.003, "steps": 3000, "loss": 1e-2},
    },
    "Adam": {
        "quadratic": {"lr": 0.03, "steps": 1000, "loss": 1e-4},
        "rosenbrock": {"lr": 0.03, "steps": 4000, "loss": 1e-2},
    },
    "AdamW": {
        "quadratic": {"lr": 0.03, "steps": 1000, "loss": 1e-4},
        "rosenbrock": {"lr": 0.03, "steps": 4000, "loss": 1e-2},
    },
    "NAdam": {
        "quadratic": {"lr": 0.03, "steps": 1000, "loss": 1e-4},
        "rosenbrock": {"lr": 0.03, "steps": 4000, "loss": 1e-2},
    },
    "RAdam": {
        "quadratic": {"lr": 0.01, "steps": 3500, "loss": 1e-4},
        "rosenbrock": {"lr": 0.005, "steps": 6000, "loss": 5e-2},
    },
    "LARS": {
        "quadratic": {"lr": 0.3, "steps": 3500, "loss": 1e-4},
        "rosenbrock": {"lr": 0.1, "steps": 4000, "loss": 1e-2},
    },
    "LAMB": {
        "quadratic": {"lr": 0.03, "steps": 2000, "loss": 1e-4},
        "rosenbrock": {"lr": 0.01, "steps": 4000, "loss": 1e-2},
    },
    "ScheduleFreeSGD": {
        "quadratic": {"lr": 0.03, "steps": 1500, "loss": 1e-4},
        "rosenbrock": {"lr": 0.003, "steps": 2000, "loss": 1e-2},
    },
    "ScheduleFreeAdamW": {
        "quadratic": {"lr": 0.1, "steps": 1000, "loss": 1e-4},
        "rosenbrock": {"lr": 0.03, "steps": 2500, "loss": 1e-2},
    },
    # LR-free: the rows keep their own lr (a multiplier of the estimated step size)
    "Prodigy": {
        "quadratic": {"steps": 3000, "loss": 1e-3},
        "rosenbrock": {"steps": 1500, "loss": 0.5},
    },
    "DoG": {
        "quadratic": {"steps": 2500, "loss": 1e-4},
        "rosenbrock": {"steps": 5000, "loss": 0.1},
    },
    "LDoG": {
        "quadratic": {"steps": 2500, "loss": 1e-4},
        "rosenbrock": {"steps": 5000, "loss": 0.1},
    },
    # additive hypergradient descent needs a hypergradient lr matched to |g|^2 (~1e4 here)
    "HypergradientSGD": {
        "quadratic": {"lr": 0.005, "steps": 1500, "loss": 1e-4, "kwargs": {"hypergrad_lr": 1e-7}},
        "rosenbrock": {"lr": 0.001, "steps": 3000, "loss": 0.1, "kwargs": {"hypergrad_lr": 1e-7}},
    },
    "HypergradientAdam": {
        "quadratic": {"steps": 800, "loss": 1e-4},
        "rosenbrock": {"steps": 2500, "loss": 1e-2},
    },
}

# Classes in neither the row nor DEFAULTS: LR-free rows keep their own lr; the others try
# the grid (largest first, which fails fastest) and pass if any lr reaches the loss.
FALLBACK: dict[str, dict[str, float]] = {
    "quadratic": {"steps": 3000, "loss": 1e-4},
    "rosenbrock": {"steps": 6000, "loss": 1e-2},
}
LR_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def settings(spec: Spec, problem: str) -> tuple[list[float | None], int, float, dict[str, Any]]:
    """The lrs to try (``None``: the row's own), the step budget, the target loss and
    keyword arguments overriding the row's."""
    entry = spec.converge.get(problem) or DEFAULTS.get(spec.cls.__name__, {}).get(problem)
    if entry is not None:
        return [entry.get("lr")], int(entry["steps"]), float(entry["loss"]), entry.get("kwargs", {})
    fb = FALLBACK[problem]
    lrs: list[float | None] = [None] if spec.lr_free else list(LR_GRID)
    return lrs, int(fb["steps"]), float(fb["loss"]), {}


def descend(
    spec: Spec,
    problem: str,
    lr: float | None,
    steps: int,
    target: float,
    overrides: dict[str, Any] | None = None,
) -> tuple[int | None, float]:
    """Run until ``f <= target``: (the step it got there or None, the best loss seen)."""
    fn, start = PROBLEMS[problem]
    kwargs = {**spec.kwargs, **(overrides or {})}
    if lr is not None:
        kwargs["lr"] = lr
    if problem == "rosenbrock" and "weight_decay" in kwargs:
        kwargs["weight_decay"] = 0.0
    sign = -1.0 if kwargs.get("maximize", False) else 1.0
    x = torch.nn.Parameter(start.clone())
    opt = spec.cls([x], **kwargs)
    if callable(getattr(opt, "train", None)):  # schedule-free: step in training mode
        opt.train()
    best = math.inf
    for t in range(steps + 1):
        f, grad = fn(x.detach())
        if f <= target:
            return t, f
        if not math.isfinite(f):
            return None, best
        best = min(best, f)
        x.grad = sign * grad

        def closure(f: float = f) -> float:  # for optimizers that want the loss
            return sign * f

        opt.step(closure)
    return None, best


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("spec", SPECS, ids=spec_ids(SPECS))
def test_reaches_the_stated_loss(spec: Spec, problem: str) -> None:
    lrs, steps, target, overrides = settings(spec, problem)
    tried = []
    for lr in lrs:
        reached, best = descend(spec, problem, lr, steps, target, overrides)
        if reached is not None:
            return
        tried.append(f"lr={lr}: best {best:.3g}")
    pytest.fail(f"{spec.id} did not reach {target:g} on {problem} in {steps} steps ({tried})")


def test_the_problems_are_what_they_claim() -> None:
    # the hand-written gradients agree with autograd; the minima are where stated
    for fn, start in PROBLEMS.values():
        x = start.clone().requires_grad_(True)
        f, grad = fn(x.detach())
        if fn is quadratic:
            value = 0.5 * (EIGENVALUES * x * x).sum()
        else:
            value = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        value.backward()
        torch.testing.assert_close(grad, x.grad, rtol=1e-12, atol=1e-12)
        assert f == pytest.approx(value.item(), rel=1e-12)
    assert quadratic(torch.zeros(DIM, dtype=torch.float64))[0] == 0.0
    assert rosenbrock(torch.ones(2, dtype=torch.float64))[0] == 0.0
    assert EIGENVALUES.max() / EIGENVALUES.min() == pytest.approx(KAPPA)
    assert quadratic(QUADRATIC_START)[0] > 100.0
