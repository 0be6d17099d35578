"""``lr="auto"``: the range test's suggestion as the peak of a cosine or 1cycle schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bergab import auto_lr, schedules
from bergab.lr_finder import lr_find


def problem(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 5, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(
        256, 1, generator=gen, dtype=torch.float64
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    return model, (x, y)


def test_the_peak_is_the_trials_choice_and_cosine_follows_the_formula() -> None:
    model, data = problem()
    kw = {"optimizer": "adamw", "batch_size": 32, "seed": 3}
    auto = auto_lr.auto_schedule(
        model, data, nn.functional.mse_loss, total_steps=300, lr_find_kwargs={"steps": 80}, **kw
    )
    # the range test inside is lr_find's own, step for step
    ref = lr_find(model, data, nn.functional.mse_loss, steps=80, warn=False, **kw)
    assert auto.result.suggestions == ref.suggestions
    np.testing.assert_array_equal(auto.result.losses, ref.losses)
    # the peak is what the trials chose, and the same again for the same seed
    assert auto.result.rule == "trials"
    assert not auto.result.fallback
    assert auto.peak == auto.result.suggestion
    again = auto_lr.choose_lr(model, data, nn.functional.mse_loss, total_steps=300,
                              lr_find_kwargs={"steps": 80}, **kw)  # fmt: skip
    assert again.suggestion == auto.peak
    assert auto.policy == "cosine"
    assert auto.total_steps == 300
    T, peak = 300, auto.peak
    for t in range(T + 5):
        expected = peak * (1 + math.cos(math.pi * min(t, T) / T)) / 2  # the plain formula
        assert auto.schedule(t) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert "peak" in auto.describe()


def test_cosine_with_warmup_rises_linearly_then_decays() -> None:
    model, data = problem(1)
    auto = auto_lr.auto_schedule(
        model,
        data,
        nn.functional.mse_loss,
        total_steps=100,
        warmup_steps=10,
        optimizer="sgd",
        batch_size=64,
        seed=0,
        lr_find_kwargs={"steps": 40},
        warn=False,
    )
    peak = auto.peak
    assert max(auto.schedule(t) for t in range(100)) == pytest.approx(peak, rel=1e-12)
    ref = schedules.warmup(schedules.cosine(peak=peak, total_steps=90), steps=10)
    assert [auto.schedule(t) for t in range(110)] == [ref(t) for t in range(110)]
    assert auto.schedule(0) < auto.schedule(5) < auto.schedule(10)


def test_one_cycle_peaks_at_the_suggestion() -> None:
    model, data = problem(2)
    auto = auto_lr.auto_schedule(
        model,
        data,
        nn.functional.mse_loss,
        total_steps=200,
        policy="one_cycle",
        optimizer="adam",
        batch_size=32,
        seed=1,
        lr_find_kwargs={"steps": 50},
        warn=False,
    )
    ref = schedules.one_cycle(peak=auto.peak, total_steps=200)
    assert [auto.schedule(t) for t in range(200)] == [ref(t) for t in range(200)]
    assert max(auto.schedule(t) for t in range(200)) == auto.peak
    assert auto.schedule(0) == pytest.approx(auto.peak / 25, rel=1e-12)


def test_leaves_the_model_and_the_random_state_untouched() -> None:
    model, data = problem(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    auto_lr.auto_schedule(
        model,
        data,
        nn.functional.mse_loss,
        total_steps=50,
        optimizer="adamw",
        batch_size=32,
        lr_find_kwargs={"steps": 30},
        warn=False,
    )
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_reproducible_given_the_seed() -> None:
    peaks = []
    for _ in range(2):
        model, data = problem(4)
        auto = auto_lr.auto_schedule(
            model,
            data,
            nn.functional.mse_loss,
            total_steps=50,
            optimizer="adamw",
            batch_size=16,
            seed=9,
            lr_find_kwargs={"steps": 40},
            warn=False,
        )
        peaks.append(auto.peak)
    assert peaks[0] == peaks[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "linear"}, "policy must be one of 'cosine', 'one_cycle'"),
        ({"warmup_steps": 50}, r"warmup_steps must be an integer in \[0, 49\]"),
        (
            {"policy": "one_cycle", "warmup_steps": 5},
            r"warmup_steps must be an integer in \[0, 0\]",
        ),
        ({"total_steps": 0}, r"total_steps must be an integer in \[1, inf\)"),
        ({"lr_find_kwargs": {"stepz": 3}}, "lr_find_kwargs: unknown key 'stepz'"),
    ],
)
def test_bad_arguments_fail_before_the_range_test(
    kwargs: dict, match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kw: object) -> None:
        raise AssertionError("the range test must not run")

    monkeypatch.setattr(auto_lr, "lr_find", never)
    model, data = problem()
    args = {"total_steps": 50, **kwargs}
    with pytest.raises(ValueError, match=match):
        auto_lr.auto_schedule(model, data, nn.functional.mse_loss, **args)


def test_build_schedule_policies() -> None:
    assert auto_lr.build_schedule(0.5, 10)(0) == 0.5
    assert auto_lr.build_schedule(0.5, 10)(10) == 0.0
    with pytest.raises(ValueError, match=r"total_steps must be an integer in \[2, inf\)"):
        auto_lr.build_schedule(0.5, 1, "one_cycle")


def test_fit_lr_auto_trains_like_the_schedule_auto_schedule_builds() -> None:
    from bergab.training import fit

    kw = {"optimizer": "adamw", "batch_size": 32, "seed": 5}
    model, data = problem(1)
    auto = auto_lr.auto_schedule(
        model, data, nn.functional.mse_loss, total_steps=40, device="cpu", **kw
    )
    init = {k: v.clone() for k, v in model.state_dict().items()}
    h_auto = fit(model, data, nn.functional.mse_loss, lr="auto", max_steps=40, progress=False, **kw)
    auto_weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(init)
    h_ref = fit(
        model, data, nn.functional.mse_loss, lr=auto.schedule, max_steps=40, progress=False, **kw
    )
    assert h_auto.info["auto_lr"]["peak"] == auto.peak
    assert h_auto.info["auto_lr"]["policy"] == "cosine"
    assert h_auto.steps["lr"] == h_ref.steps["lr"]
    assert h_auto.steps["loss"] == h_ref.steps["loss"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, auto_weights[k]), k


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 1).double()

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * s


def test_fit_lr_auto_takes_three_tuple_batches_as_fit_does() -> None:
    # fit(lr=0.1) trains on (x, y, w) batches; lr="auto" must sweep on the same batches
    from torch.utils.data import DataLoader, TensorDataset

    from bergab.training import fit

    model, (x, y) = problem(2)
    w = torch.rand(len(x), 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def weighted(out: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        y, w = target
        return (w * (out - y) ** 2).mean()

    def batch_fn(b: Any) -> tuple[Any, Any]:
        return b[0], (b[1], b[2])

    loader = DataLoader(TensorDataset(x, y, w), batch_size=32)
    kw: dict[str, Any] = {"batch_fn": batch_fn, "optimizer": "adamw", "progress": False}
    init = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, loader, weighted, lr=0.1, max_steps=5, **kw)
    model.load_state_dict(init)
    h = fit(model, loader, weighted, lr="auto", max_steps=16, seed=0, **kw)
    model.load_state_dict(init)
    ref = auto_lr.choose_lr(
        model, loader, weighted, total_steps=16, optimizer="adamw", batch_fn=batch_fn, seed=0
    )
    assert h.info["auto_lr"]["peak"] == ref.suggestion
    assert h.steps["lr"][0] == pytest.approx(ref.suggestion)
    # with fit's default batch_fn, (x, s, y) calls model(x, s) against y: lr="auto" too
    s = 0.5 + w
    h = fit(
        _Scaled(),
        (x, s, y),
        nn.functional.mse_loss,
        lr="auto",
        max_steps=16,
        batch_size=32,
        seed=0,
        progress=False,
    )
    assert h.info["auto_lr"]["peak"] > 0


def test_fit_lr_auto_sweeps_with_fits_precision_and_clipping() -> None:
    from bergab.training import fit

    model, data = problem(3)
    model.float()
    data = (data[0].float(), data[1].float())
    init = {k: v.clone() for k, v in model.state_dict().items()}
    dtypes: list[torch.dtype] = []

    def recording(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dtypes.append(out.dtype)
        return nn.functional.mse_loss(out.float(), target)

    kw: dict[str, Any] = {"optimizer": "adamw", "batch_size": 32, "seed": 1}
    h = fit(
        model,
        data,
        recording,
        lr="auto",
        max_steps=10,
        precision="bf16",
        clip_norm=0.5,
        progress=False,
        **kw,
    )
    assert len(dtypes) > 40  # the range test's and the trials' forward passes, then training's
    assert set(dtypes) == {torch.bfloat16}
    model.load_state_dict(init)
    auto = auto_lr.auto_schedule(
        model, data, recording, total_steps=10, device="cpu", precision="bf16", clip_norm=0.5, **kw
    )
    assert h.info["auto_lr"]["peak"] == auto.peak
