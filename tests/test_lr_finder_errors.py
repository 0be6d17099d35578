"""lr_find, LRFindResult and lr="auto" on wrong input: every mistake a clear error naming
its cause, no NaN handed on as a learning rate, plots that show what was measured."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bergab import fit
from bergab.auto_lr import auto_schedule
from bergab.lr_finder import LRFindResult, LRFindWarning, lr_find

mse = nn.functional.mse_loss


def _data(n: int = 64, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    return x, x @ torch.randn(d, 1, generator=gen)


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Linear(3, 1)


def _nan_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return mse(out, target) * math.nan


class _NanAfterFirstCall:
    """A loss that is finite once (the measurement before any update), then NaN."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return mse(out, target) * (1.0 if self.calls == 1 else math.nan)


# ------------------------------------------------------------------ device
@pytest.mark.parametrize(
    ("device", "error", "match"),
    [
        ("tpu", ValueError, r"device must be 'auto' or a torch device .*got 'tpu'"),
        (5, TypeError, "device must be 'auto', a str or a torch.device"),
    ],
)
def test_device_is_checked_as_fit_checks_it(device: object, error: type, match: str) -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=match):
        lr_find(model, _data(), mse, device=device)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_valueerror_naming_device() -> None:
    with pytest.raises(ValueError, match="device='cuda': CUDA is not available"):
        lr_find(_model(), _data(), mse, device="cuda")


def test_device_auto_runs_where_fit_would() -> None:
    res = lr_find(_model(), _data(), mse, device="auto", steps=10, warn=False)
    assert len(res.lrs) > 0


# ------------------------------------------------------------------ non-finite losses
def test_a_loss_that_is_nan_before_any_update_is_refused_as_no_lr_problem() -> None:
    # it used to return an empty curve advising "lower start_lr"
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"loss is nan at the model's initial parameters"):
        lr_find(model, _data(), _nan_loss)
    with pytest.raises(ValueError, match=r"check train_data, the model and loss_fn"):
        lr_find(model, _data(), _nan_loss, start_lr=1e-3)
    # everything is restored, as after any sweep
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_loss_non_finite_from_the_first_step_says_so_and_gives_no_lr() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = lr_find(_model(), _data(), _NanAfterFirstCall())
    assert res.stop_reason == "non-finite"
    assert len(res.lrs) == 0
    assert res.rule == "none"
    assert math.isnan(res.suggestion)
    (reason,) = res.reasons
    assert "not finite from the first step, at start_lr=1e-07" in reason
    assert "no learning-rate problem" in reason
    assert "lower start_lr" not in reason
    (warning,) = [w for w in caught if issubclass(w.category, LRFindWarning)]
    assert "There is no suggestion" in str(warning.message)


def test_a_curve_cut_short_after_some_steps_suggests_nothing() -> None:
    # two points: no rule applies; the suggestion used to be lrs[0], silently
    res = LRFindResult.from_curve([1e-3, 1e-2], [1.0, 0.9], stop_reason="diverged")
    assert math.isnan(res.suggestion)
    assert res.rule == "none"
    assert res.reasons == ["the sweep diverged after 2 step(s), at lr 0.01: lower start_lr"]
    with pytest.raises(ValueError, match=r"found no usable learning rate .*lower start_lr"):
        res.cosine(100)
    with pytest.raises(ValueError, match="found no usable learning rate"):
        res.one_cycle(100)


def test_auto_schedule_refuses_when_the_range_test_found_no_lr() -> None:
    # it used to pass the NaN on: "peak must be in [0, inf), got nan"; now the loss that
    # scores the trials is already NaN before any training, and the error says so rather
    # than training with a made-up lr
    with pytest.raises(ValueError, match=r"lr=\"auto\": the untrained model's loss on .* is "):
        auto_schedule(_model(), _data(), _NanAfterFirstCall(), total_steps=10, warn=False)
    with pytest.raises(ValueError, match=r"initial parameters.*check train_data"):
        fit(_model(), _data(), _nan_loss, lr="auto", epochs=1)


def test_steps_below_three_are_refused() -> None:
    # two steps can never give a suggestion
    with pytest.raises(ValueError, match=r"steps must be an integer in \[3, inf\)"):
        lr_find(_model(), _data(), mse, steps=2)


@pytest.mark.parametrize(
    ("lrs", "losses", "match"),
    [
        ([1e-2, 1e-3, 1e-1], [1.0, 0.5, 0.9], "lrs must be finite, positive and strictly"),
        ([0.0, 1e-3, 1e-1], [1.0, 0.5, 0.9], "lrs must be finite, positive"),
        ([1e-3, 1e-2, 1e-1], [1.0, math.nan, 0.9], "losses must be finite"),
        ([1e-3, 1e-2, 1e-1], [1.0, 0.5], r"losses must have the same length as lrs \(3\), got 2"),
        ([[1e-3], [1e-2], [1e-1]], [[1.0], [0.5], [0.9]], "lrs must be a 1-D sequence"),
        ([], [], "lrs must hold at least 3 points for a completed sweep, got 0"),
        ([1e-3, 1e-2], [1.0, 0.5], "at least 3 points for a completed sweep, got 2"),
    ],
)
def test_from_curve_refuses_a_curve_the_rules_cannot_read(
    lrs: list[float], losses: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        LRFindResult.from_curve(lrs, losses)


def test_from_curve_checks_stop_reason_and_the_kind_of_values() -> None:
    with pytest.raises(ValueError, match="stop_reason must be one of"):
        LRFindResult.from_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.9], stop_reason="done")
    with pytest.raises(TypeError, match="losses must be a sequence of numbers"):
        LRFindResult.from_curve([1e-3, 1e-2, 1e-1], ["a", "b", "c"])


def test_suggest_checks_its_curve() -> None:
    from bergab.lr_finder import suggest

    with pytest.raises(ValueError, match=r"smoothed must have the same length as lrs \(3\)"):
        suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5])
    with pytest.raises(ValueError, match="lrs must hold the learning rates of the sweep"):
        suggest([], [])
    with pytest.raises(ValueError, match="smoothed must be finite"):
        suggest([1e-3, 1e-2, 1e-1], [1.0, math.inf, 0.5])
    assert suggest([1e-3, 1e-2], [1.0, 0.5]) == {}  # too short for any rule


def test_warn_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="warn must be True or False"):
        lr_find(_model(), _data(), mse, warn="no")  # type: ignore[arg-type]


def test_auto_lr_checks_its_mappings_and_the_peak() -> None:
    from bergab.auto_lr import build_schedule

    with pytest.raises(TypeError, match="lr_find_kwargs must be a dict"):
        auto_schedule(_model(), _data(), mse, total_steps=10, lr_find_kwargs=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimizer_kwargs must be a dict"):
        auto_schedule(_model(), _data(), mse, total_steps=10, optimizer_kwargs=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"peak must be in \(0, inf\), got 0.0"):
        build_schedule(0.0, 10)


# ------------------------------------------------------------------ plot
def _result() -> LRFindResult:
    lrs = np.logspace(-4, 0, 40)
    raw = 1.0 / (1.0 + lrs / 1e-2) + (lrs / 0.3) ** 2
    raw[20] = 0.01  # one noisy batch far below the smoothed curve
    smoothed = np.convolve(raw, np.ones(5) / 5, mode="same")
    smoothed[:2], smoothed[-2:] = raw[:2], raw[-2:]
    return LRFindResult.from_curve(lrs, raw, smoothed)


def test_plot_y_axis_shows_the_raw_minimum() -> None:
    res = _result()
    fig = res.plot()
    low, high = fig.axes[0].get_ylim()
    assert low < 0.01 < high  # it was cut off at the smoothed minimum
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("raw minimum 0.01 at lr ") for label in labels)
    fig.clf()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("lr.xyz", r"path must end in a file extension matplotlib writes .*\.png"),
        ("", "path must be a file path, got the folder"),
        ("file.txt/lr.png", "cannot create a folder inside the file"),
    ],
)
def test_plot_path_is_checked_before_drawing(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    path = tmp_path / name if name else tmp_path
    with pytest.raises(ValueError, match=match):
        _result().plot(path)


def test_plot_refuses_a_path_that_is_not_a_path() -> None:
    with pytest.raises(TypeError, match="path must be a file path"):
        _result().plot(3)  # type: ignore[arg-type]


def test_plot_creates_missing_parent_folders(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "lr.svg"
    fig = _result().plot(out)
    assert out.read_text().lstrip().startswith("<?xml")
    fig.clf()
