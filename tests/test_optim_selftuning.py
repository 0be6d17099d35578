"""Every self-tuning optimizer trains the built-in digits task with its default settings:
no learning rate is tuned. The targets are stated in docs/learning-rate-free.md."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bergab import optim, tasks

STEPS, BATCH = 600, 64

# (name, factory with defaults only, average the iterates?, target train loss); measured on
# seed 0 (train cross-entropy after 600 steps): 0.003, 0.024, 0.000, 0.004, 0.005, 0.087,
# 0.003, 0.033; the targets leave 3-10x of room. Adam at its default lr 1e-3 gets 0.043.
CASES: list[tuple[str, Callable[..., torch.optim.Optimizer], bool, float]] = [
    ("schedulefree_sgd", optim.ScheduleFreeSGD, False, 0.03),
    ("schedulefree_adamw", optim.ScheduleFreeAdamW, False, 0.1),
    ("prodigy", optim.Prodigy, False, 0.01),
    ("dog", optim.DoG, True, 0.03),
    ("ldog", optim.LDoG, True, 0.03),
    ("hypergradient_sgd", optim.HypergradientSGD, False, 0.25),
    ("hypergradient_sgd_momentum", lambda p: optim.HypergradientSGD(p, momentum=0.9), False, 0.03),
    ("hypergradient_adam", optim.HypergradientAdam, False, 0.1),
]


@pytest.mark.parametrize(
    ("factory", "average", "target"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_trains_digits_without_lr_tuning(factory, average, target) -> None:
    task = tasks.get("digits", seed=0)
    model = task.model
    opt = factory(model.parameters())
    averager = optim.PolynomialDecayAverager(model) if average else None
    x, y = task.train.tensors
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        opt.zero_grad()
        loss = task.loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        if averager is not None:
            averager.step()
    if isinstance(opt, optim.ScheduleFreeSGD | optim.ScheduleFreeAdamW):
        opt.eval()  # evaluate the average x
    with torch.no_grad():
        if averager is not None:
            with averager.averaged_parameters():
                final = float(task.loss_fn(model(x), y))
        else:
            final = float(task.loss_fn(model(x), y))
    assert final < target < first
    assert all(lr > 0 for lr in opt.effective_lr)
