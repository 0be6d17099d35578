"""bergab.schedules against torch.optim.lr_scheduler: same values, step for step.

Each test draws random valid hyperparameters, steps torch's scheduler the usual way
(``optimizer.step(); scheduler.step()``) and compares the lr the optimizer holds before
each step with ``schedule(t)``, over >= 1000 steps, relative error <= 1e-6.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from bergab import schedules as sch

SEEDS = range(5)
RTOL = 1e-6
ATOL = 1e-15  # only matters where both values are exactly 0


def loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def torch_values(
    make: Callable[[torch.optim.Optimizer], tls.LRScheduler],
    lr: float,
    n: int,
    keys: tuple[str, ...] = ("lr",),
    momentum: float = 0.0,
) -> dict[str, list[float]]:
    """Values of the optimizer's hyperparameters before each of ``n`` steps."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    opt.step()  # no grad: a no-op step, so torch sees the usual call order
    out: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n):
        for k in keys:
            out[k].append(float(opt.param_groups[0][k]))
        sched.step()
    return out


def ours(schedule: sch.Schedule, n: int) -> list[float]:
    return [schedule(t) for t in range(n)]


def assert_same(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b) >= 1000
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_step_decay_equals_steplr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lr, gamma, size = loguniform(rng, 1e-4, 1.0), rng.uniform(0.1, 1.0), int(rng.integers(1, 300))
    ref = torch_values(lambda o: tls.StepLR(o, step_size=size, gamma=gamma), lr, 1500)["lr"]
    assert_same(ours(sch.step_decay(lr, gamma, size), 1500), ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_multistep_equals_multisteplr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lr, gamma = loguniform(rng, 1e-4, 1.0), rng.uniform(0.1, 1.0)
    ms = sorted({int(m) for m in rng.integers(1, 1500, size=int(rng.integers(1, 8)))})
    ref = torch_values(lambda o: tls.MultiStepLR(o, milestones=ms, gamma=gamma), lr, 1500)["lr"]
    assert_same(ours(sch.multistep(lr, ms, gamma), 1500), ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_exponential_equals_exponentiallr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lr, gamma = loguniform(rng, 1e-4, 1.0), rng.uniform(0.99, 1.0)
    ref = torch_values(lambda o: tls.ExponentialLR(o, gamma=gamma), lr, 1500)["lr"]
    assert_same(ours(sch.exponential(lr, rate=-math.log(gamma)), 1500), ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_polynomial_equals_polynomiallr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lr, power, T = loguniform(rng, 1e-4, 1.0), rng.uniform(0.3, 3.0), int(rng.integers(1000, 1500))
    ref = torch_values(lambda o: tls.PolynomialLR(o, total_iters=T, power=power), lr, T + 200)
    assert_same(ours(sch.polynomial(lr, T, final=0.0, power=power), T + 200), ref["lr"])


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_equals_linearlr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lr, a, b = loguniform(rng, 1e-4, 1.0), rng.uniform(0.01, 1.0), rng.uniform(0.01, 1.0)
    T = int(rng.integers(1, 1500))
    ref = torch_values(
        lambda o: tls.LinearLR(o, start_factor=a, end_factor=b, total_iters=T), lr, 1600
    )["lr"]
    assert_same(ours(sch.linear(lr * a, lr * b, T), 1600), ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_cosine_equals_cosineannealinglr(seed: int) -> None:
    """Over [0, T_max] torch 2.13's recursive form and its closed form both agree with ours
    (measured: ~1e-15 relative). Past T_max torch keeps following the cosine back up, by
    design; ours stays at ``final`` (tested in test_schedules.py)."""
    rng = np.random.default_rng(seed)
    lr, T = loguniform(rng, 1e-4, 1.0), int(rng.integers(1000, 2000))
    eta_min = 0.0 if seed % 2 == 0 else rng.uniform(0.0, lr)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = tls.CosineAnnealingLR(opt, T_max=T, eta_min=eta_min)
    opt.step()
    stepped, closed = [], []
    for _ in range(T + 1):
        stepped.append(opt.param_groups[0]["lr"])
        closed.append(sched._get_closed_form_lr()[0])
        sched.step()
    mine = ours(sch.cosine(lr, T, final=eta_min), T + 1)
    assert_same(mine, stepped)
    assert_same(mine, closed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_cosine_restarts_equals_warmrestarts(seed: int, t_mult: int) -> None:
    rng = np.random.default_rng(seed)
    lr, T0 = loguniform(rng, 1e-4, 1.0), int(rng.integers(1, 200))
    eta_min = rng.uniform(0.0, lr / 2)
    ref = torch_values(
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=T0, T_mult=t_mult, eta_min=eta_min),
        lr,
        2000,
    )["lr"]
    sched = sch.cosine_restarts(lr, period=T0, final=eta_min, period_mult=t_mult)
    assert_same(ours(sched, 2000), ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("asymmetric", [False, True], ids=["down=None", "down=int"])
def test_cyclic_equals_cycliclr(seed: int, mode: str, asymmetric: bool) -> None:
    rng = np.random.default_rng(seed)
    low = loguniform(rng, 1e-4, 1e-1)
    high = low * rng.uniform(1.5, 10.0)
    up = int(rng.integers(1, 300))
    down = int(rng.integers(1, 300)) if asymmetric else None
    gamma = rng.uniform(0.995, 1.0) if mode == "exp_range" else 1.0
    ref = torch_values(
        lambda o: tls.CyclicLR(
            o,
            base_lr=low,
            max_lr=high,
            step_size_up=up,
            step_size_down=down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=False,  # torch cycles momentum by default; ours is a separate schedule
        ),
        low,
        2000,
    )["lr"]
    assert_same(ours(sch.cyclic(low, high, up, down, mode=mode, gamma=gamma), 2000), ref)


def one_cycle_params(seed: int, three_phase: bool) -> dict[str, float | int]:
    rng = np.random.default_rng(seed)
    base_m = rng.uniform(0.5, 0.9)
    return {
        "max_lr": loguniform(rng, 1e-4, 1.0),
        "total_steps": int(rng.integers(1000, 2000)),
        "pct_start": float(rng.uniform(0.05, 0.5 if three_phase else 0.95)),
        "div_factor": rng.uniform(1.0, 50.0),
        "final_div_factor": loguniform(rng, 1.0, 1e4),
        "base_momentum": base_m,
        "max_momentum": rng.uniform(base_m, 0.99),
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("anneal", "three_phase"), [("cos", False), ("linear", False), ("cos", True), ("linear", True)]
)
def test_one_cycle_equals_onecyclelr(seed: int, anneal: str, three_phase: bool) -> None:
    kw = one_cycle_params(seed, three_phase)
    T = int(kw["total_steps"])
    ref = torch_values(
        lambda o: tls.OneCycleLR(o, anneal_strategy=anneal, three_phase=three_phase, **kw),  # type: ignore[arg-type]
        0.1,
        T,
        keys=("lr", "momentum"),
        momentum=0.9,
    )
    lr = sch.one_cycle(
        kw["max_lr"],
        T,
        kw["pct_start"],
        kw["div_factor"],
        kw["final_div_factor"],
        anneal=anneal,
        three_phase=three_phase,
    )
    mom = sch.one_cycle_momentum(
        T,
        kw["pct_start"],
        kw["base_momentum"],
        kw["max_momentum"],
        anneal=anneal,
        three_phase=three_phase,
    )
    assert_same(ours(lr, T), ref["lr"])
    assert_same(ours(mom, T), ref["momentum"])


# --------------------------------------------------------------------------- attach
def quadratic_grads(params: list[torch.Tensor], step: int) -> None:
    """Gradients of a fixed ill-conditioned quadratic plus a deterministic wobble."""
    for i, p in enumerate(params):
        p.grad = (0.1 + i) * p.detach() + math.sin(0.37 * step + i)


def make_params(shapes: tuple[tuple[int, ...], ...] = ((5,),)) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in shapes]


def drive(
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    scheds: list[tls.LRScheduler],
    n: int,
    key: str,
) -> list[tuple[float, float]]:
    seen = []
    for t in range(n):
        g = opt.param_groups[0]
        seen.append((g["lr"], g["betas"][0] if key == "beta1" else g.get("momentum", 0.0)))
        quadratic_grads(params, t)
        opt.step()
        for s in scheds:
            s.step()
    return seen


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_attach_drives_optimizer_like_onecyclelr(three_phase: bool, opt_name: str) -> None:
    kw = one_cycle_params(11, three_phase)
    kw["total_steps"] = 1000
    T = 1000
    key = "beta1" if opt_name == "adam" else "momentum"

    def make_opt(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if opt_name == "adam":
            return torch.optim.Adam(params, lr=0.1, betas=(0.9, 0.99))
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)

    theirs = make_params()
    opt_t = make_opt(theirs)
    ref = drive(opt_t, theirs, [tls.OneCycleLR(opt_t, three_phase=three_phase, **kw)], T, key)  # type: ignore[arg-type]

    mine = make_params()
    opt_m = make_opt(mine)
    lr = sch.one_cycle(
        kw["max_lr"],
        T,
        kw["pct_start"],
        kw["div_factor"],
        kw["final_div_factor"],
        three_phase=three_phase,
    )
    mom = sch.one_cycle_momentum(
        T, kw["pct_start"], kw["base_momentum"], kw["max_momentum"], three_phase=three_phase
    )
    scheds = [sch.attach(opt_m, lr), sch.attach(opt_m, mom, key=key)]
    assert all(isinstance(s, tls.LRScheduler) for s in scheds)
    got = drive(opt_m, mine, scheds, T, key)

    np.testing.assert_allclose(np.array(got), np.array(ref), rtol=RTOL, atol=ATOL)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_attach_drives_optimizer_like_cycliclr() -> None:
    theirs, mine = make_params(), make_params()
    opt_t = torch.optim.SGD(theirs, lr=0.1)
    cyc = tls.CyclicLR(
        opt_t,
        1e-3,
        1e-2,
        step_size_up=70,
        step_size_down=30,
        mode="triangular2",
        cycle_momentum=False,
    )
    ref = drive(opt_t, theirs, [cyc], 1000, "momentum")
    opt_m = torch.optim.SGD(mine, lr=0.1)
    got = drive(
        opt_m,
        mine,
        [sch.attach(opt_m, sch.cyclic(1e-3, 1e-2, 70, 30, "triangular2"))],
        1000,
        "momentum",
    )
    np.testing.assert_allclose(np.array(got), np.array(ref), rtol=RTOL, atol=ATOL)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True): the state must be plain data."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def build(
    params: list[torch.nn.Parameter],
) -> tuple[torch.optim.Optimizer, list[sch.ScheduleLR], sch.ReduceOnPlateau]:
    opt = torch.optim.AdamW(
        [{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1, weight_decay=0.01
    )
    plateau = sch.ReduceOnPlateau(2e-2, factor=0.5, patience=1)
    lrs = [sch.warmup(plateau, steps=5), sch.wsd(1e-2, 60, 5, 20, final=1e-4, decay_shape="cosine")]
    scheds = [
        sch.attach(opt, lrs),
        sch.attach(opt, sch.cosine(0.05, 60), key="weight_decay"),
        sch.attach(opt, sch.linear(0.99, 0.9, 40), key="beta2"),
    ]
    return opt, scheds, plateau


def run(
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    scheds: list[sch.ScheduleLR],
    steps: range,
) -> list[list[float]]:
    seen = []
    for t in steps:
        seen.append(
            [g["lr"] for g in opt.param_groups]
            + [g["weight_decay"] for g in opt.param_groups]
            + [g["betas"][1] for g in opt.param_groups]
        )
        quadratic_grads(params, t)
        opt.step()
        for s in scheds:
            s.step()
        if t % 4 == 3:  # an "epoch" ends: report a metric that plateaus
            scheds[0].update(1.0 + 0.1 * math.cos(t))
    return seen


def test_attach_resume_from_state_dict_equals_uninterrupted_run() -> None:
    full = make_params(((5,), (2, 3)))
    opt, scheds, _ = build(full)
    seen_full = run(opt, full, scheds, range(60))

    part = make_params(((5,), (2, 3)))
    opt1, scheds1, plateau1 = build(part)
    seen_a = run(opt1, part, scheds1, range(30))
    assert plateau1.lr < 2e-2  # the plateau schedule did cut, so its state matters
    saved = roundtrip(
        {
            "opt": opt1.state_dict(),
            "scheds": [s.state_dict() for s in scheds1],
            "params": [p.detach().clone() for p in part],
        }
    )

    resumed = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
    opt2, scheds2, _ = build(resumed)
    opt2.load_state_dict(saved["opt"])
    for s, state in zip(scheds2, saved["scheds"], strict=True):
        s.load_state_dict(state)
    seen_b = run(opt2, resumed, scheds2, range(30, 60))

    assert seen_a + seen_b == seen_full
    for a, b in zip(resumed, full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_attach_values_and_get_last_lr() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD(
        [{"params": [p]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=1.0, momentum=0.5
    )
    a, b = sch.linear(1.0, 0.0, 10), sch.constant(0.3)
    sched = sch.attach(opt, [a, b])
    assert sched.get_last_lr() == [1.0, 0.3] == [g["lr"] for g in opt.param_groups]
    for k in range(1, 15):
        opt.step()
        sched.step()
        assert sched.last_epoch == k
        assert sched.get_last_lr() == [a(k), b(k)] == [g["lr"] for g in opt.param_groups]
    sched.step(3)  # jumping is exact: the schedules are closed form
    assert opt.param_groups[0]["lr"] == a(3)
    mom = sch.attach(opt, sch.constant(0.7), key="momentum")
    assert [g["momentum"] for g in opt.param_groups] == [0.7, 0.7]
    assert mom.get_last_lr() == [0.7, 0.7]


def test_attach_writes_tensor_hyperparameters_in_place() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.1), betas=(torch.tensor(0.9), torch.tensor(0.99)))
    lr_t, b1 = opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]
    sch.attach(opt, sch.constant(0.02))
    sch.attach(opt, sch.constant(0.8), key="beta1")
    assert opt.param_groups[0]["lr"] is lr_t
    assert lr_t.item() == pytest.approx(0.02)
    assert opt.param_groups[0]["betas"][0] is b1
    assert b1.item() == pytest.approx(0.8)


def test_attach_rejects_bad_keys_and_lengths() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="key"):
        sch.attach(opt, sch.constant(0.9), key="momentum")
    with pytest.raises(ValueError, match="key"):
        sch.attach(opt, sch.constant(0.9), key="amsgrad")  # a bool flag, not a number
    with pytest.raises(ValueError, match="schedule"):
        sch.attach(opt, [sch.constant(0.1), sch.constant(0.2)])
    with pytest.raises(TypeError, match="optimizer"):
        sch.attach(object(), sch.constant(0.1))  # type: ignore[arg-type]
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="beta1"):
        sch.attach(sgd, sch.constant(0.9), key="beta1")
    sched = sch.attach(sgd, sch.constant(0.1))
    with pytest.raises(TypeError, match="metric"):
        sched.update(1.0)
    other = sch.attach(sgd, sch.constant(0.0), key="weight_decay")
    with pytest.raises(ValueError, match="key"):
        sched.load_state_dict(other.state_dict())


def test_attach_on_bergab_optimizer_refuses_a_second_lr_schedule() -> None:
    from bergab.optim import SGD

    opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=sch.cosine(0.1, 10))
    with pytest.raises(ValueError, match="already has a lr schedule"):
        sch.attach(opt, sch.constant(0.1))
    plain = SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sch.attach(plain, sch.constant(0.05))
    assert plain.param_groups[0]["lr"] == 0.05


# --------------------------------------------------------------------------- plateau
def metric_sequence(rng: np.random.Generator, n: int, negative: bool) -> list[float]:
    """A noisy, rounded (so ties happen), slowly improving walk with plateaus and NaNs."""
    x, out = (-5.0 if negative else 5.0), []
    for _ in range(n):
        x += rng.normal(0.0, 0.3) - (0.05 if rng.uniform() < 0.3 else 0.0)
        v = round(x, 1)
        out.append(float("nan") if rng.uniform() < 0.02 else v)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_reduce_on_plateau_equals_torch(seed: int, mode: str, threshold_mode: str) -> None:
    rng = np.random.default_rng(seed)
    lr = loguniform(rng, 1e-3, 1.0)
    kw = {
        "mode": mode,
        "factor": float(rng.uniform(0.1, 0.9)),
        "patience": int(rng.integers(0, 6)),
        "threshold": float(rng.uniform(0.0, 0.05 if threshold_mode == "rel" else 0.3)),
        "threshold_mode": threshold_mode,
        "cooldown": int(rng.integers(0, 4)),
        "min_lr": float(lr * rng.choice([0.0, 1e-3])),
        "eps": float(rng.choice([1e-8, 0.0])),
    }
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    ref = tls.ReduceLROnPlateau(opt, **kw)  # type: ignore[arg-type]
    mine = sch.ReduceOnPlateau(lr, **kw)  # type: ignore[arg-type]
    driven_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    driven = sch.attach(driven_opt, sch.ReduceOnPlateau(lr, **kw))  # type: ignore[arg-type]
    cuts = 0
    for t, m in enumerate(metric_sequence(rng, 400, negative=seed % 2 == 1)):
        before = mine(t)
        opt.step()
        ref.step(m)
        mine.update(m)
        driven.update(torch.tensor(m, dtype=torch.float64))
        assert mine(t) == opt.param_groups[0]["lr"] == driven_opt.param_groups[0]["lr"]
        cuts += mine(t) < before
    assert cuts >= 1  # the sequences do exercise the cuts


def test_plateau_state_dict_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(3)
    metrics = metric_sequence(rng, 200, negative=False)
    a = sch.ReduceOnPlateau(0.1, factor=0.5, patience=2, cooldown=2)
    for m in metrics[:100]:
        a.update(m)
    b = copy.deepcopy(a)
    c = sch.ReduceOnPlateau(0.1, factor=0.5, patience=2, cooldown=2)
    c.load_state_dict(roundtrip(a.state_dict()))
    for m in metrics[100:]:
        b.update(m)
        c.update(m)
        assert b(0) == c(0)
