"""lr_find: the sweep against a plain reference loop, bitwise restore of every item it
touches (one test each), data forms, divergence, suggestions, warnings, plot, schedules."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bergab import optim, schedules
from bergab.lr_finder import LRFindResult, LRFindWarning, lr_find, suggest

mse = nn.functional.mse_loss


def _data(n: int = 64, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = x @ torch.randn(d, 1, generator=gen) + 0.1 * torch.randn(n, 1, generator=gen)
    return x, y


def _bn_net(d: int = 5) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)
    )


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (*model.parameters(), *model.buffers())]


def _assert_same(before: list[torch.Tensor], model: nn.Module) -> None:
    after = [*model.parameters(), *model.buffers()]
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b.detach())


# ------------------------------------------------------------------ the sweep itself


def _reference_sweep(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    lrs: np.ndarray,
    accumulation: int = 1,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[float]:
    """Plain SGD range test written from the definition: the loss after each update."""
    opt = torch.optim.SGD(model.parameters(), lr=float(lrs[0]))
    stream = iter(batches * 1000)

    def batch_loss(backward: bool) -> float:
        total = 0.0
        for _ in range(accumulation):
            x, y = next(stream)
            loss = mse(model(x), y)
            if backward:
                (loss / accumulation).backward()
            total += loss.item()
        return total / accumulation

    out = []
    opt.zero_grad()
    batch_loss(True)
    for i, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = float(lr)
        opt.step()
        opt.zero_grad()
        last = i == len(lrs) - 1
        if val is None:
            out.append(batch_loss(not last))
        else:
            with torch.no_grad():
                out.append(mse(model(val[0]), val[1]).item())
            if not last:
                batch_loss(True)
    return out


@pytest.mark.parametrize(
    ("mode", "accumulation", "use_val"),
    [("exp", 1, False), ("linear", 1, False), ("exp", 3, False), ("exp", 1, True)],
)
def test_sweep_matches_reference_loop(mode: str, accumulation: int, use_val: bool) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        x, y = _data(40)
        batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]
        val = _data(30, seed=1) if use_val else None
        torch.manual_seed(1)
        model = nn.Linear(5, 1)
        ref_model = nn.Linear(5, 1)
        ref_model.load_state_dict(model.state_dict())
        steps, start, end = 25, 1e-3, 0.5
        res = lr_find(
            model,
            batches,
            mse,
            optimizer="sgd",
            start_lr=start,
            end_lr=end,
            steps=steps,
            mode=mode,
            smoothing=0.9,
            diverge_factor=1e9,
            accumulation_steps=accumulation,
            val_data=None if val is None else [val],
            warn=False,
        )
        i = np.arange(steps)
        if mode == "exp":
            lrs = start * (end / start) ** (i / (steps - 1))
        else:
            lrs = start + (end - start) * i / (steps - 1)
        expected = _reference_sweep(ref_model, batches, lrs, accumulation, val)
        np.testing.assert_allclose(res.lrs, lrs, rtol=1e-12)
        np.testing.assert_allclose(res.losses, expected, rtol=1e-10)
        # bias-corrected EMA, written plainly
        avg, smooth = 0.0, []
        for k, loss in enumerate(expected):
            avg = 0.9 * avg + 0.1 * loss
            smooth.append(avg / (1 - 0.9 ** (k + 1)))
        np.testing.assert_allclose(res.smoothed, smooth, rtol=1e-10)
        assert res.stop_reason == "completed"
    finally:
        torch.set_default_dtype(torch.float32)


def test_stops_on_divergence_and_on_non_finite_loss() -> None:
    x, y = _data()
    model = nn.Linear(5, 1)
    res = lr_find(model, (x, y), mse, optimizer="sgd", start_lr=1e-3, end_lr=100, steps=100)
    assert res.stop_reason == "diverged"
    assert len(res.lrs) < 100
    assert res.smoothed[-1] > 4.0 * res.smoothed.min()
    assert np.all(res.smoothed[:-1] <= 4.0 * np.minimum.accumulate(res.smoothed)[:-1])

    def capped(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = mse(out, target)
        return loss if loss.item() < 50 else loss * math.inf

    res = lr_find(
        model,
        (x, y),
        capped,
        optimizer="sgd",
        start_lr=1e-3,
        end_lr=100,
        steps=100,
        diverge_factor=1e9,
        warn=False,
    )
    assert res.stop_reason == "non-finite"
    assert np.all(np.isfinite(res.losses))
    assert len(res.lrs) < 100


# ------------------------------------------------------------------ restore, item by item


def test_restores_parameters_and_batchnorm_buffers_bitwise() -> None:
    model = _bn_net()
    model.train()
    model(torch.randn(8, 5))  # non-trivial running stats and num_batches_tracked
    before = _state(model)
    res = lr_find(model, _data(), mse, optimizer="adam", steps=30, batch_size=16, warn=False)
    assert len(res.lrs) > 5
    _assert_same(before, model)
    assert model[1].num_batches_tracked.item() == 1


def test_restores_train_eval_mode_per_module() -> None:
    model = _bn_net()
    model.eval()
    model[3].train()  # a mixed state: everything in eval but the dropout
    lr_find(model, _data(), mse, optimizer="sgd", steps=10, warn=False)
    assert [m.training for m in model.modules()] == [False, False, False, False, True, False]


def test_restores_requires_grad_flags_and_leaves_frozen_params_alone() -> None:
    model = _bn_net()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()

    def flipping_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        model[4].bias.requires_grad_(False)  # user code that changes flags mid-sweep
        return mse(out, target)

    lr_find(model, _data(), flipping_loss, optimizer="sgd", steps=10, warn=False)
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]
    assert torch.equal(model[0].weight, frozen)


def test_restores_gradients() -> None:
    model = _bn_net()
    x, y = _data()
    mse(model(x), y).backward()
    model[4].bias.grad = None
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    lr_find(model, (x, y), mse, optimizer="sgd", steps=10, warn=False)
    for g, p in zip(grads, model.parameters(), strict=True):
        if g is None:
            assert p.grad is None
        else:
            assert torch.equal(g, p.grad)


def test_restores_torch_numpy_python_rng_states() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    t, n, r = torch.get_rng_state(), np.random.get_state(), random.getstate()
    model = _bn_net()  # dropout draws from torch's generator during the sweep
    torch.set_rng_state(t)

    def noisy_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        np.random.rand()
        random.random()  # user code drawing from the other generators
        return mse(out, target)

    lr_find(model, _data(), noisy_loss, optimizer="sgd", steps=10, warn=False)
    assert torch.equal(torch.get_rng_state(), t)
    n2 = np.random.get_state()
    assert n2[0] == n[0]
    assert np.array_equal(n2[1], n[1])
    assert n2[2:] == n[2:]
    assert random.getstate() == r
    # and a seeded sweep is reproducible whatever the global state
    a = lr_find(_bn_net(), _data(), mse, optimizer="sgd", steps=15, seed=5, warn=False)
    torch.manual_seed(999)
    b = lr_find(_bn_net(), _data(), mse, optimizer="sgd", steps=15, seed=5, warn=False)
    np.testing.assert_array_equal(a.losses, b.losses)


def test_restores_dataloader_generator_so_training_order_is_unchanged() -> None:
    x, y = _data()
    gen = torch.Generator().manual_seed(7)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=gen)
    state = gen.get_state()
    lr_find(nn.Linear(5, 1), loader, mse, optimizer="sgd", steps=20, warn=False)
    assert torch.equal(gen.get_state(), state)


def _trained_adam(model: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _data()
    for _ in range(3):
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()
    return opt


def test_restores_optimizer_instance_state_and_training_continues_identically() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    twin = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    twin.load_state_dict(model.state_dict())
    opt, twin_opt = _trained_adam(model), _trained_adam(twin)
    sd = opt.state_dict()
    saved = {k: v.clone() for k, v in sd["state"][0].items()}
    lr_find(model, _data(), mse, optimizer=opt, steps=20, warn=False)
    after = opt.state_dict()
    assert after["param_groups"] == sd["param_groups"]
    for k, v in saved.items():
        assert torch.equal(after["state"][0][k], v)
    assert opt.param_groups[0]["lr"] == 1e-2
    x, y = _data(seed=3)
    for m, o in ((model, opt), (twin, twin_opt)):
        for _ in range(3):
            o.zero_grad()
            mse(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_restores_bergab_optimizer_schedule_and_step_count() -> None:
    model = nn.Linear(5, 1)
    sched = schedules.cosine(peak=0.1, total_steps=50)
    opt = optim.create("momentum", model.parameters(), lr=sched)
    x, y = _data()
    for _ in range(4):
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()
    group = dict(opt.param_groups[0])
    buf = opt.state[model.weight]["momentum_buffer"].clone()
    lr_find(model, (x, y), mse, optimizer=opt, steps=20, warn=False)
    g = opt.param_groups[0]
    assert g["step"] == 4
    assert opt.schedules(0) == {"lr": sched}
    assert g["lr"] == group["lr"] == sched(4)
    assert torch.equal(opt.state[model.weight]["momentum_buffer"], buf)


def test_state_restored_when_the_loss_raises() -> None:
    model = _bn_net()
    before = _state(model)
    rng = torch.get_rng_state()
    calls = 0

    def failing(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 6:
            raise RuntimeError("boom")
        return mse(out, target)

    with pytest.raises(RuntimeError, match="boom"):
        lr_find(model, _data(), failing, optimizer="sgd", steps=20, warn=False)
    _assert_same(before, model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training


def test_writes_no_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lr_find(_bn_net(), _data(), mse, optimizer="adam", steps=20, warn=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_and_device_move_restored() -> None:
    model = _bn_net()
    before = _state(model)
    torch.cuda.init()
    cuda_rng = torch.cuda.get_rng_state_all()
    res = lr_find(model, _data(), mse, optimizer="adam", steps=20, device="cuda", warn=False)
    assert len(res.lrs) > 5
    assert all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
    _assert_same(before, model)
    for a, b in zip(torch.cuda.get_rng_state_all(), cuda_rng, strict=True):
        assert torch.equal(a, b)
    gpu_model = _bn_net().cuda()
    gpu_before = _state(gpu_model)
    lr_find(gpu_model, _data(), mse, optimizer="adam", steps=20, warn=False)
    _assert_same(gpu_before, gpu_model)
    for a, b in zip(torch.cuda.get_rng_state_all(), cuda_rng, strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ data forms


class _DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 1)

    def forward(self, features: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.lin(features) * scale


def test_tuple_and_dict_batches_give_the_same_curve() -> None:
    x, y = _data(48)
    tuples = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    dicts = [{"x": a, "y": b} for a, b in tuples]
    custom = [{"image": a, "label": b} for a, b in tuples]
    kwargs: dict[str, Any] = {"optimizer": "sgd", "steps": 30, "seed": 0, "warn": False}
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    a = lr_find(model, tuples, mse, **kwargs)
    b = lr_find(model, dicts, mse, **kwargs)
    c = lr_find(model, custom, mse, batch_fn=lambda b: (b["image"], b["label"]), **kwargs)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.losses, c.losses)
    # inputs given as a dict are passed as keyword arguments
    dm = _DictModel()
    dm.lin.load_state_dict(model.state_dict())
    d = lr_find(dm, tuples, mse, batch_fn=lambda b: ({"features": b[0]}, b[1]), **kwargs)
    np.testing.assert_array_equal(a.losses, d.losses)
    with pytest.raises(TypeError, match="batch_fn"):
        lr_find(model, custom, mse, **kwargs)


def test_tiny_dataset_and_one_shot_iterator_are_cycled() -> None:
    x, y = _data(3)
    res = lr_find(
        nn.Linear(5, 1),
        (x, y),
        mse,
        optimizer="sgd",
        steps=50,
        diverge_factor=1e9,
        start_lr=1e-4,
        end_lr=1e-2,
        warn=False,
    )
    assert len(res.lrs) == 50
    seen = []

    def once() -> Any:
        for i in range(2):
            seen.append(i)
            yield x[i : i + 1], y[i : i + 1]

    res = lr_find(
        nn.Linear(5, 1),
        once(),
        mse,
        optimizer="sgd",
        steps=30,
        start_lr=1e-4,
        end_lr=1e-2,
        warn=False,
    )
    assert len(res.lrs) == 30
    assert seen == [0, 1]
    with pytest.raises(ValueError, match="no batches"):
        lr_find(nn.Linear(5, 1), [], mse, optimizer="sgd", steps=10)


def test_batchnorm_dropout_model_on_dataset_with_val_data() -> None:
    x, y = _data(200)
    res = lr_find(
        _bn_net(),
        TensorDataset(x[:160], y[:160]),
        mse,
        optimizer="adam",
        steps=60,
        start_lr=1e-4,
        smoothing=0.9,
        val_data=TensorDataset(x[160:], y[160:]),
        batch_size=16,
        seed=0,
        warn=False,
    )
    assert res.config["val_data"] is True
    assert res.smoothed.min() < 0.8 * res.smoothed[0]
    assert 1e-5 < res.suggestion < 1.0


# ------------------------------------------------------------------ optimizer forms


def test_optimizer_as_name_class_factory_or_kwargs() -> None:
    x, y = _data()
    kw: dict[str, Any] = {"steps": 20, "seed": 0, "warn": False}
    by_name = lr_find(nn.Linear(5, 1), (x, y), mse, optimizer="momentum", **kw)
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    a = lr_find(model, (x, y), mse, optimizer="sgd", momentum=0.9, **kw)
    b = lr_find(model, (x, y), mse, optimizer=torch.optim.SGD, momentum=0.9, **kw)
    c = lr_find(
        model, (x, y), mse, optimizer=lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9), **kw
    )
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)
    np.testing.assert_allclose(a.losses, c.losses, rtol=1e-6)
    assert by_name.config["optimizer"] == "momentum"
    with pytest.raises(TypeError, match="factory"):
        lr_find(model, (x, y), mse, optimizer=lambda p: torch.optim.SGD(p, lr=1.0), momentum=0.9)
    with pytest.raises(TypeError, match="Optimizer"):
        lr_find(model, (x, y), mse, optimizer=lambda p: None)
    with pytest.raises(ValueError, match="unknown optimizer"):
        lr_find(model, (x, y), mse, optimizer="adamx")


# ------------------------------------------------------------------ suggestions & result


def test_suggestions_on_a_known_curve() -> None:
    lrs = np.logspace(-6, 0, 121)
    logs = np.log10(lrs)
    # a smooth descent centred at 1e-3 (steepest there), a floor, then a blow-up after 1e-1
    loss = 2.0 - np.tanh(2 * (logs + 3)) + np.where(logs > -1, 30 * (logs + 1) ** 2, 0.0)
    s = suggest(lrs, loss)
    i_min = int(np.argmin(loss))
    assert s["minimum"] == pytest.approx(lrs[i_min] / 10)
    assert s["steep"] == pytest.approx(1e-3, rel=0.06)
    # valley: middle of where tanh has made 10%..90% of the drop, symmetric around 1e-3
    assert s["valley"] == pytest.approx(1e-3, rel=0.25)
    assert 1e-3 < s["slide"] <= lrs[i_min]
    assert suggest([1e-3, 1e-2], [1.0, 0.5]) == {}


def _soft_minimum_reference(lrs: np.ndarray, loss: np.ndarray, tau: float = 0.05) -> float:
    """The published formula, written plainly: softmin-weighted mean of log10(lr), / 10."""
    start = float(np.median(loss[: max(1, len(loss) // 10)]))
    low = float(np.min(loss))
    num = den = 0.0
    for lr, value in zip(lrs, loss, strict=True):
        w = math.exp(-(value - low) / (start - low) / tau)
        num += w * math.log10(lr)
        den += w
    return 10 ** (num / den) / 10


def test_soft_minimum_matches_the_formula_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(20, 150))
        lrs = np.logspace(-7, 1, n)
        loss = 3.0 + rng.normal(size=n).cumsum() * 0.1
        loss[: n // 10] = loss[: n // 10].max() + 1.0  # the start lies above the minimum
        got = suggest(lrs, loss)["soft_minimum"]
        assert got == pytest.approx(_soft_minimum_reference(lrs, loss), rel=1e-12)


def test_soft_minimum_known_answers() -> None:
    lrs = np.logspace(-6, 0, 121)
    logs = np.log10(lrs)
    # a parabola in log-lr, sampled symmetrically about 1e-3: the centroid is its vertex
    s = suggest(lrs, 1.0 + (logs + 3) ** 2)
    assert s["soft_minimum"] == pytest.approx(1e-4, rel=1e-9)
    assert s["minimum"] == pytest.approx(1e-4, rel=1e-9)
    # an exactly flat bottom over 1e-3..1e-1 with steep walls: the geometric centre, 1e-2
    flat = np.where(
        logs < -3, 1.0 + 5 * (-3 - logs), np.where(logs > -1, 1.0 + 5 * (logs + 1), 1.0)
    )
    flat[:12] = 20.0
    s = suggest(lrs, flat)
    assert s["soft_minimum"] == pytest.approx(1e-2 / 10, rel=0.02)
    assert s["minimum"] == pytest.approx(1e-3 / 10)  # argmin: the first point of the floor
    # a curve that never falls below its start level: the soft minimum is the plain minimum
    rising = 1.0 + np.maximum(np.arange(121.0) - 20, 0)
    assert suggest(lrs, rising)["soft_minimum"] == suggest(lrs, rising)["minimum"]


def test_soft_minimum_is_stable_on_a_noisy_flat_bottom() -> None:
    # a descent, a wide flat bottom over 0.05..0.5 with noise, then a blow-up: the argmin
    # wanders over the whole bottom from one noise draw to the next, the soft minimum not
    lrs = np.logspace(-7, 1, 100)
    logs = np.log10(lrs)
    base = (
        1.0 + 0.5 * (1 - np.tanh(3 * (logs + 2))) + np.where(logs > -0.3, 40 * (logs + 0.3) ** 2, 0)
    )
    rng = np.random.default_rng(1)
    soft, hard = [], []
    for _ in range(30):
        s = suggest(lrs, base + 0.005 * rng.normal(size=lrs.size))
        soft.append(s["soft_minimum"])
        hard.append(s["minimum"])
    assert max(hard) / min(hard) > 4.0
    assert max(soft) / min(soft) < 1.5


def test_flat_curve_warns_with_low_confidence() -> None:
    x, y = _data()

    def flat(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 + 0.0 * out.sum()

    with pytest.warns(LRFindWarning, match="no clear descending region"):
        res = lr_find(nn.Linear(5, 1), (x, y), flat, optimizer="sgd", steps=20)
    assert res.confidence < 0.5
    assert any("fell only" in r for r in res.reasons)


def test_clear_curve_has_high_confidence_and_no_warning() -> None:
    x, y = _data(256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = lr_find(
            nn.Linear(5, 1),
            (x, y),
            mse,
            optimizer="sgd",
            start_lr=1e-5,
            end_lr=10,
            steps=80,
            batch_size=32,
            seed=0,
        )
    assert res.confidence >= 0.5
    assert res.reasons == []
    assert res.suggestion == res.suggestions["soft_minimum"]
    # SGD on this least-squares problem is stable below 2/L; the suggestion is below that
    xtx = (x.T @ x / len(x)).double()
    lmax = 2 * torch.linalg.eigvalsh(xtx)[-1].item()
    assert res.suggestion < 2 / lmax
    assert res.suggestion > 2 / lmax / 100


def test_to_dict_json_round_trip_and_repr() -> None:
    x, y = _data()
    res = lr_find(nn.Linear(5, 1), (x, y), mse, optimizer="sgd", steps=20, warn=False)
    data = json.loads(json.dumps(res.to_dict()))
    back = LRFindResult.from_dict(data)
    np.testing.assert_array_equal(back.lrs, res.lrs)
    np.testing.assert_array_equal(back.smoothed, res.smoothed)
    assert back.suggestions == res.suggestions
    assert back.suggestion == res.suggestion
    assert back.config == res.config
    assert "suggestion=" in repr(res)


def test_plot_marks_every_suggestion(tmp_path: Any) -> None:
    x, y = _data()
    res = lr_find(nn.Linear(5, 1), (x, y), mse, optimizer="sgd", steps=40, warn=False)
    path = tmp_path / "lr.png"
    fig = res.plot(path)
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    for name in res.suggestions:
        assert any(label.startswith(name) for label in labels)
    assert sum("(suggestion)" in label for label in labels) == 1
    from bergab.plotting import pyplot

    pyplot().close(fig)


def test_one_cycle_and_cosine_peak_at_the_suggestion() -> None:
    res = LRFindResult.from_curve(np.logspace(-4, 0, 20), np.linspace(1, 0.1, 20) ** 2)
    peak = res.suggestion
    oc = res.one_cycle(200, pct_start=0.25)
    values = [oc(t) for t in range(200)]
    assert max(values) == pytest.approx(peak, rel=1e-12)
    assert values[0] == pytest.approx(peak / 25)
    cos = res.cosine(100)
    assert cos(0) == peak
    assert cos(100) == 0.0
    warm = res.cosine(100, warmup_steps=10)
    assert warm(10) == peak
    assert warm(0) < peak
    assert isinstance(warm, schedules.Schedule)


def test_bad_arguments() -> None:
    x, y = _data()
    model = nn.Linear(5, 1)
    for kwargs, match in [
        ({"start_lr": 0.0}, "start_lr"),
        ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr"),
        ({"steps": 1}, "steps"),
        ({"mode": "log"}, "mode"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
        ({"accumulation_steps": 0}, "accumulation_steps"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            lr_find(model, (x, y), mse, optimizer="sgd", **kwargs)
    with pytest.raises(TypeError, match="model"):
        lr_find("model", (x, y), mse)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train_data"):
        lr_find(model, 3, mse, optimizer="sgd")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="instance"):
        lr_find(model, (x, y), mse, optimizer=opt, momentum=0.9)


# ------------------------------------------------------------------ fit's data and step


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * scale


def test_longer_tuples_are_batched_as_fit_batches_them() -> None:
    # (x, s, y): fit's default batch_fn gives inputs (x, s) and targets y
    x, y = _data(48)
    s = torch.rand(48, 1) + 0.5
    kwargs: dict[str, Any] = {"optimizer": "sgd", "steps": 20, "end_lr": 0.1, "warn": False}
    res = lr_find(_TwoInputs(), (x, s, y), mse, batch_size=16, **kwargs)
    assert len(res.lrs) == 20
    loader = DataLoader(TensorDataset(x, s, y), batch_size=16)
    res = lr_find(_TwoInputs(), loader, mse, **kwargs)
    assert len(res.lrs) == 20


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_sweep_clips_gradients_like_fit() -> None:
    # with a tiny clip_norm, SGD moves the parameters by exactly lr * clip_norm per step
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    seen: list[torch.Tensor] = []

    def recording(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(_flat(model))  # the parameters each batch's loss is measured at
        return mse(out, target)

    clip = 1e-3
    res = lr_find(
        model,
        _data(),
        recording,
        optimizer="sgd",
        start_lr=1e-2,
        end_lr=10.0,
        steps=30,
        clip_norm=clip,
        diverge_factor=1e9,
        warn=False,
    )
    assert res.config["clip_norm"] == clip
    moves = [float(torch.linalg.vector_norm(b - a)) for a, b in itertools.pairwise(seen)]
    assert len(moves) == len(res.lrs) == 30
    np.testing.assert_allclose(moves, res.lrs * clip, rtol=1e-3)
    # unclipped, the large learning rates move them much further
    seen.clear()
    lr_find(
        model,
        _data(),
        recording,
        optimizer="sgd",
        start_lr=1e-2,
        end_lr=10.0,
        steps=30,
        diverge_factor=1e9,
        warn=False,
    )
    free = [float(torch.linalg.vector_norm(b - a)) for a, b in itertools.pairwise(seen)]
    assert max(free) > 100 * max(moves)


def test_the_sweep_runs_under_fits_precision() -> None:
    model = _bn_net()
    before = _state(model)
    dtypes: set[torch.dtype] = set()

    def recording(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dtypes.add(out.dtype)
        return mse(out.float(), target)

    res = lr_find(
        model, _data(), recording, optimizer="adam", steps=15, precision="bf16", seed=0, warn=False
    )
    assert dtypes == {torch.bfloat16}  # under autocast, as fit's steps
    assert len(res.lrs) == 15
    assert res.config["precision"] == "bf16"
    _assert_same(before, model)
    dtypes.clear()
    lr_find(model, _data(), recording, optimizer="sgd", steps=10, precision="fp16", warn=False)
    assert dtypes == {torch.float16}  # autocast with a GradScaler, on the CPU too
    _assert_same(before, model)
    with pytest.raises(ValueError, match="precision"):
        lr_find(model, _data(), mse, precision="fp8")
    with pytest.raises(ValueError, match="clip_norm or clip_value"):
        lr_find(model, _data(), mse, clip_norm=1.0, clip_value=1.0)


def test_accumulation_weights_micro_batches_by_their_examples_as_fit_does() -> None:
    # batches of 6 and 2 examples: the step's loss is the mean over all 8, not of the two
    torch.set_default_dtype(torch.float64)
    try:
        x, y = _data(8)
        batches = [(x[:6], y[:6]), (x[6:], y[6:])]
        torch.manual_seed(0)
        model = nn.Linear(5, 1)
        ref = nn.Linear(5, 1)
        ref.load_state_dict(model.state_dict())
        res = lr_find(
            model,
            batches,
            mse,
            optimizer="sgd",
            start_lr=1e-3,
            end_lr=1e-2,
            steps=5,
            accumulation_steps=2,
            smoothing=0.0,
            warn=False,
        )
        opt = torch.optim.SGD(ref.parameters(), lr=1e-3)
        mse(ref(x), y).backward()  # one batch of all 8 examples is the same step
        expected = []
        for lr in res.lrs:
            opt.param_groups[0]["lr"] = float(lr)
            opt.step()
            opt.zero_grad()
            loss = mse(ref(x), y)
            loss.backward()
            expected.append(loss.item())
        np.testing.assert_allclose(res.losses, expected, rtol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)
