"""LRMonitor on runs made to diverge, oscillate and stall on purpose; the advice it gives
fixes the run; UpdateCosine and grad_norm against plain formulas."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from bergab import landscapes, tasks
from bergab.diagnostics import Flag, LRMonitor, UpdateCosine, grad_norm

Q = landscapes.quadratic(100.0, dim=10)  # L = 100, mu = 1


def _gd_run(
    f: Any, lr: float, steps: int, *, cosines: bool = True, **kw: Any
) -> tuple[LRMonitor, list[float]]:
    """Gradient descent on a landscape, feeding the monitor every step."""
    x = torch.nn.Parameter(torch.tensor(f.start, dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=lr)
    cos = UpdateCosine([x])
    mon = LRMonitor(**kw)
    losses = []
    for t in range(steps):
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        g = grad_norm([x])
        opt.step()
        c = cos()
        mon.update(t, loss.item(), grad_norm=g, lr=lr, update_cosine=c if cosines else None)
        losses.append(loss.item())
    return mon, losses


def _kinds(mon: LRMonitor) -> list[str]:
    return [f.kind for f in mon.flags]


def test_healthy_run_raises_nothing() -> None:
    mon, losses = _gd_run(Q, 1.0 / Q.L, 400)
    assert mon.flags == []
    assert mon.status == "ok"
    assert losses[-1] < 1e-2 * losses[0]
    assert "no problems found" in mon.report()


def test_divergence_flagged_and_the_advised_range_converges() -> None:
    lr = 2.5 / Q.L  # above the stability limit 2/L
    mon, _ = _gd_run(Q, lr, 100)
    assert _kinds(mon) == ["divergence"]
    flag = mon.flags[0]
    assert flag.step <= 15
    assert mon.status == "diverging"
    assert flag.lr_range is not None
    low, high = flag.lr_range
    assert low < high < 2.0 / Q.L
    assert "lower the learning rate" in flag.message
    assert f"{high:.3g}" in flag.message
    mon2, losses = _gd_run(Q, high, 300)
    assert "divergence" not in _kinds(mon2)
    assert losses[-1] < 1e-3 * losses[0]


def test_divergence_of_a_real_task_with_plain_gradient_descent() -> None:
    task = tasks.linreg(seed=0, dtype=torch.float64)  # unscaled: GD is stable below ~2e-6
    x, y = task.train.tensors
    lr = 4e-6
    opt = torch.optim.SGD(task.model.parameters(), lr=lr)
    mon = LRMonitor()
    for step in range(60):
        opt.zero_grad()
        loss = task.loss_fn(task.model(x), y)
        loss.backward()
        mon.update(step, loss.item(), grad_norm=grad_norm(task.model), lr=lr)
        opt.step()
        if mon.status == "diverging":
            break
    assert mon.status == "diverging"
    assert mon.flags[0].lr_range == pytest.approx((4e-7, 4e-6 / 3))


def test_non_finite_loss_or_grad_norm_is_divergence_at_once() -> None:
    mon = LRMonitor(warmup=100)
    mon.update(0, 1.0, lr=0.1)
    (flag,) = mon.update(1, math.nan, lr=0.1)
    assert flag.kind == "divergence"
    assert flag.step == 1
    assert "not finite" in flag.message
    mon = LRMonitor()
    (flag,) = mon.update(0, 1.0, grad_norm=math.inf)
    assert "gradient norm inf" in flag.message
    assert flag.lr_range is None
    assert "3-10x" in flag.message


def test_oscillation_from_update_cosines_and_the_advised_range_stops_it() -> None:
    lr = 1.98 / Q.L  # stable, but the sharpest direction flips sign every step
    mon, _losses = _gd_run(Q, lr, 200)
    assert "oscillation" in _kinds(mon)
    assert "divergence" not in _kinds(mon)
    flag = next(f for f in mon.flags if f.kind == "oscillation")
    assert flag.evidence["mean_cosine"] < -0.9
    assert flag.lr_range is not None
    _low, high = flag.lr_range
    assert high <= 1.0 / Q.L  # at or below 1/L gradient descent does not overshoot
    mon2, _ = _gd_run(Q, high, 200)
    assert mon2.flags == []
    # without cosines the same run's loss decreases monotonically: nothing to see there
    mon3, _ = _gd_run(Q, lr, 200, cosines=False)
    assert "oscillation" not in _kinds(mon3)


def test_oscillation_from_a_zigzagging_loss() -> None:
    mon = LRMonitor(window=20, stall_window=1000)
    flags: list[Flag] = []
    for t in range(60):
        loss = 1.0 + 0.5 * (-1) ** t + 0.001 * t  # up, down, up, ... and no progress
        flags += mon.update(t, loss, lr=0.3)
    assert [f.kind for f in flags] == ["oscillation"]
    assert flags[0].evidence["alternation"] == 1.0
    assert flags[0].lr_range == pytest.approx((0.075, 0.15))
    assert mon.status == "oscillating"


def test_plain_noise_is_not_called_oscillation() -> None:
    rng = np.random.default_rng(0)
    mon = LRMonitor()
    for t in range(3000):
        mon.update(t, 1.0 + 0.1 * rng.standard_normal())
    assert "oscillation" not in _kinds(mon)
    assert "stall" in _kinds(mon)  # a pure-noise plateau is a stall


def test_stall_with_a_tiny_lr_advises_raising_it() -> None:
    lr = 1e-6 / Q.L
    mon, _ = _gd_run(Q, lr, 300)
    assert _kinds(mon) == ["stall"]
    flag = mon.flags[0]
    assert flag.step == 199  # judged once the stall window is full
    assert "raise the learning rate" in flag.message
    assert flag.lr_range == pytest.approx((3 * lr, 10 * lr))
    assert flag.evidence["mean_cosine"] > 0.99
    assert mon.status == "stalled"


def test_stall_on_a_noise_floor_advises_lowering_it_which_lowers_the_floor() -> None:
    q = landscapes.quadratic(10.0, dim=10)
    lr = 0.5 / q.L

    def floor(lr: float) -> tuple[LRMonitor, float]:
        f = landscapes.noisy(q, sigma=1.0, seed=0)
        mon, losses = _gd_run(f, lr, 700)
        return mon, float(np.mean(losses[-200:]))

    mon, level = floor(lr)
    assert "stall" in _kinds(mon)
    flag = next(f for f in mon.flags if f.kind == "stall")
    assert "noise floor" in flag.message
    assert flag.lr_range == pytest.approx((lr / 10, lr / 3))
    _, lower_level = floor(flag.lr_range[1])
    assert lower_level < 0.5 * level


def test_stall_convergence_hint_from_the_gradient_norm() -> None:
    mon = LRMonitor(stall_window=20)
    for t in range(40):
        mon.update(t, 1e-3, grad_norm=1.0 if t == 0 else 1e-5, lr=0.1)
    assert "looks like convergence" in mon.flags[0].message


def test_flags_are_raised_once_per_episode() -> None:
    mon = LRMonitor(stall_window=20, warmup=0)
    for t in range(40):
        mon.update(t, 1.0)  # flat: stall
    for t in range(40, 80):
        mon.update(t, 1.0 - 0.01 * (t - 39))  # clear progress: condition clears
    assert mon.status == "ok"
    for t in range(80, 120):
        mon.update(t, 0.6)  # flat again
    assert _kinds(mon) == ["stall", "stall"]


def test_state_dict_resume_gives_the_same_flags() -> None:
    f = landscapes.noisy(Q, sigma=1.0, seed=1)
    x = torch.nn.Parameter(torch.tensor(Q.start, dtype=torch.float64))
    stream = []
    for t in range(700):
        x.grad = None
        loss = f(x)
        loss.backward()
        with torch.no_grad():
            x -= 0.5 / Q.L * x.grad
        stream.append((t, loss.item(), float(x.grad.norm()), 0.005, 0.1 * math.sin(t)))
    whole = LRMonitor()
    for item in stream:
        whole.update(*item)
    first = LRMonitor()
    for item in stream[:333]:
        first.update(*item)
    second = LRMonitor()
    second.load_state_dict(first.state_dict())
    for item in stream[333:]:
        second.update(*item)
    assert second.flags == whole.flags
    assert second.state_dict() == whole.state_dict()


def test_status_priority_and_report() -> None:
    mon = LRMonitor(stall_window=10, warmup=0)
    for t in range(10):
        mon.update(t, 1.0, lr=0.1)
    assert mon.status == "stalled"
    mon.update(10, math.inf, lr=0.1)
    assert mon.status == "diverging"  # the most severe condition wins
    text = mon.report()
    assert text.startswith("LRMonitor: diverging after 11 steps")
    assert "[stall]" in text
    assert "[divergence]" in text
    assert repr(mon) == "LRMonitor(status='diverging', steps=11, flags=2)"


def test_update_cosine_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for source in (model, opt, list(model.parameters())):
        tracker = UpdateCosine(source)
        prev_flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
        prev_update = None
        for _ in range(5):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen))
            got = tracker()
            flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
            update = flat - prev_flat
            if prev_update is None:
                assert got is None
            else:
                a, b = update.numpy(), prev_update.numpy()
                want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
            prev_flat, prev_update = flat, update
    assert UpdateCosine(torch.zeros(2))() is None


def test_grad_norm_matches_torch_clip_grad_norm() -> None:
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.zeros(5, 3)), torch.nn.Parameter(torch.zeros(7))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    params.append(torch.nn.Parameter(torch.zeros(2)))  # no grad: ignored
    for p_norm in (2.0, 1.0, math.inf):
        want = torch.nn.utils.clip_grad_norm_(params, max_norm=1e9, norm_type=p_norm).item()
        assert grad_norm(params, p_norm) == pytest.approx(want, rel=1e-6)
    assert grad_norm([torch.nn.Parameter(torch.zeros(1))]) == 0.0
    with pytest.raises(ValueError, match="norm_type"):
        grad_norm(params, 0.0)
    with pytest.raises(TypeError, match="Module"):
        grad_norm(3)


def test_bad_arguments() -> None:
    for kwargs, match in [
        ({"window": 2}, "window"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"oscillation_cosine": 0.5}, "oscillation_cosine"),
        ({"alternation": 0.5}, "alternation"),
        ({"stall_window": 5}, "stall_window"),
        ({"stall_rtol": -1.0}, "stall_rtol"),
        ({"warmup": -1}, "warmup"),
    ]:
        with pytest.raises(ValueError, match=match):
            LRMonitor(**kwargs)


def test_lr_monitor_update_refuses_a_negative_step_and_a_str_loss() -> None:
    mon = LRMonitor()
    with pytest.raises(ValueError, match="step must be an integer in"):
        mon.update(step=-1, loss=1.0)
    with pytest.raises(TypeError, match="loss must be a real number"):
        mon.update(step=1, loss="1.0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lr must be a real number"):
        mon.update(step=1, loss=1.0, lr="0.1")  # type: ignore[arg-type]
    assert mon.steps_seen == 0
    # 0-d tensors and non-finite losses still pass (divergence is what it watches for)
    mon.update(step=0, loss=torch.tensor(1.0))
    assert mon.update(step=1, loss=float("nan"))[0].kind == "divergence"


def test_grad_norm_and_update_cosine_name_parameters_when_given_a_non_tensor() -> None:
    with pytest.raises(TypeError, match="parameters must be a Module"):
        grad_norm(5)
    with pytest.raises(TypeError, match="parameters must be a Module"):
        UpdateCosine(5)
    with pytest.raises(TypeError, match="parameters must hold tensors"):
        UpdateCosine([1.0])
