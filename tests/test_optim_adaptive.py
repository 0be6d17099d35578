"""Adaptive optimizers (Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam) beyond the generic table:
published formulas written plainly, per-parameter step counts, torch interop, GradScaler on
the fused kernels, argument checks and low-precision robustness."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from bergab import landscapes, minimize, optim
from bergab.optim import _foreach as fe
from bergab.optim import _native

SHAPES = [(7,), (3, 5), (2, 3, 4)]


def make_params(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]


def noise(steps: int, seed: int) -> list[list[np.ndarray]]:
    """Fixed random gradient noise per step and tensor (float64)."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def grad_of(theta: np.ndarray, e: np.ndarray) -> np.ndarray:
    # gradient of a noisy quadratic: depends on the parameter, so errors would compound
    return 0.5 * theta + e


def run_torch(opt: torch.optim.Optimizer, params: list[torch.Tensor], eps: list[list[np.ndarray]]):
    for step_noise in eps:
        for p, e in zip(params, step_noise, strict=True):
            p.grad = torch.as_tensor(grad_of(p.detach().numpy(), e), dtype=p.dtype)
        opt.step()


# ---------------------------------------------------------------- RMSprop, ε inside the root
def textbook_rmsprop(
    theta: np.ndarray,
    eps_seq: list[np.ndarray],
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float = 0.0,
    centered: bool = False,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """θ ← θ − η g/√(v+ε) (Hinton's lecture 6e), with the usual momentum/centered variants."""
    theta = theta.copy()
    v = np.zeros_like(theta)
    mean = np.zeros_like(theta)
    buf = np.zeros_like(theta)
    for e in eps_seq:
        g = grad_of(theta, e) + weight_decay * theta
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            mean = alpha * mean + (1 - alpha) * g
            step = g / np.sqrt(v - mean * mean + eps)
        else:
            step = g / np.sqrt(v + eps)
        if momentum:
            buf = momentum * buf + step
            theta = theta - lr * buf
        else:
            theta = theta - lr * step
    return theta


RMS_CASES = [
    {"lr": 0.01, "alpha": 0.9, "eps": 1e-3},
    {"lr": 0.005, "alpha": 0.95, "eps": 1e-4, "momentum": 0.8},
    {
        "lr": 0.005,
        "alpha": 0.9,
        "eps": 1e-2,
        "momentum": 0.5,
        "centered": True,
        "weight_decay": 0.01,
    },
]


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize("case", RMS_CASES, ids=["plain", "momentum", "centered-momentum-wd"])
def test_rmsprop_eps_inside_sqrt_is_the_textbook_formula(case: dict[str, Any], impl: str) -> None:
    params = make_params(0)
    start = [p.detach().numpy().copy() for p in params]
    eps_seq = noise(200, seed=1)
    run_torch(optim.RMSprop(params, **case, eps_inside_sqrt=True, impl=impl), params, eps_seq)
    for k, (p, theta0) in enumerate(zip(params, start, strict=True)):
        expected = textbook_rmsprop(theta0, [e[k] for e in eps_seq], **case)
        np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_rmsprop_eps_placement_matters() -> None:
    # the flag does change the update: with v ~ eps the two forms differ visibly
    a, b = make_params(0), make_params(0)
    eps_seq = noise(20, seed=1)
    run_torch(optim.RMSprop(a, lr=0.01, eps=1e-2), a, eps_seq)
    run_torch(optim.RMSprop(b, lr=0.01, eps=1e-2, eps_inside_sqrt=True), b, eps_seq)
    assert max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True)) > 1e-3


# ---------------------------------------------------------------- AdamW, decoupled decay
def plain_adamw(
    theta: np.ndarray,
    eps_seq: list[np.ndarray],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool,
) -> np.ndarray:
    """Loshchilov & Hutter's Algorithm 2 with torch's conventions (decay scaled by lr)."""
    b1, b2 = betas
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    vmax = np.zeros_like(theta)
    for t, e in enumerate(eps_seq, start=1):
        g = grad_of(theta, e)  # the decay never enters the moments
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        theta = theta * (1 - lr * weight_decay)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adamw", "amsgrad"])
@pytest.mark.parametrize("impl", ["reference", "foreach", "fused"])
def test_adamw_is_the_decoupled_formula(impl: str, amsgrad: bool) -> None:
    hyper = {"lr": 0.02, "betas": (0.85, 0.99), "eps": 1e-6, "weight_decay": 0.3}
    params = make_params(2)
    start = [p.detach().numpy().copy() for p in params]
    eps_seq = noise(200, seed=3)
    run_torch(optim.AdamW(params, **hyper, amsgrad=amsgrad, impl=impl), params, eps_seq)
    for k, (p, theta0) in enumerate(zip(params, start, strict=True)):
        expected = plain_adamw(theta0, [e[k] for e in eps_seq], **hyper, amsgrad=amsgrad)
        np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_adamw_is_adam_with_the_flag() -> None:
    w = [torch.nn.Parameter(torch.zeros(1))]
    opt = optim.AdamW(w)
    assert isinstance(opt, optim.Adam)
    assert opt.defaults["decoupled_weight_decay"] is True
    assert opt.defaults["weight_decay"] == 1e-2


# ---------------------------------------------------------------- per-parameter step counts
TORCH_TWINS = [
    (optim.Adagrad, torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.02}),
    (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    (optim.AdamW, torch.optim.AdamW, {"lr": 0.01}),
    (optim.NAdam, torch.optim.NAdam, {"lr": 0.01, "momentum_decay": 0.01}),
    (optim.RAdam, torch.optim.RAdam, {"lr": 0.01, "betas": (0.9, 0.99)}),
]
TWIN_IDS = [c[0].__name__ for c in TORCH_TWINS]


def run_with_gaps(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int) -> None:
    # tensor 1 has no gradient every third step, tensor 2 for the first 7 steps
    eps_seq = noise(steps, seed=5)
    for t, step_noise in enumerate(eps_seq):
        for k, (p, e) in enumerate(zip(params, step_noise, strict=True)):
            skip = (k == 1 and t % 3 == 0) or (k == 2 and t < 7)
            p.grad = None if skip else torch.as_tensor(grad_of(p.detach().numpy(), e))
        opt.step()


@pytest.mark.parametrize("impl", ["reference", "foreach", "auto"])
@pytest.mark.parametrize(("cls", "torch_cls", "kw"), TORCH_TWINS, ids=TWIN_IDS)
def test_params_that_skip_steps_match_torch(cls, torch_cls, kw, impl: str) -> None:
    ours, theirs = make_params(4), make_params(4)
    opt = cls(ours, **kw, impl=impl)
    run_with_gaps(opt, ours, 100)
    run_with_gaps(torch_cls(theirs, **kw), theirs, 100)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    counts = [opt.state[p]["step"] for p in ours]
    assert [float(c) for c in counts] == [100.0, 66.0, 93.0]
    assert all(c.dtype == torch.float32 and c.device.type == "cpu" and c.ndim == 0 for c in counts)


def test_nadam_keeps_mu_product_per_param_like_torch() -> None:
    ours, theirs = make_params(4), make_params(4)
    o1, o2 = optim.NAdam(ours, lr=0.01), torch.optim.NAdam(theirs, lr=0.01)
    run_with_gaps(o1, ours, 30)
    run_with_gaps(o2, theirs, 30)
    for a, b in zip(ours, theirs, strict=True):
        mine, torchs = o1.state[a]["mu_product"], o2.state[b]["mu_product"]
        assert mine.dtype == torch.float32
        assert mine.ndim == 0
        assert mine.item() == torchs.item()


# ---------------------------------------------------------------- torch interop
@pytest.mark.parametrize(("cls", "torch_cls", "kw"), TORCH_TWINS, ids=TWIN_IDS)
def test_state_dicts_interchange_with_torch(cls, torch_cls, kw) -> None:
    # same state keys as torch: a torch checkpoint resumes in bergab and the other way round
    ref = make_params(6)
    run_torch(torch_cls(ref, **kw), ref, noise(20, seed=7))

    a = make_params(6)
    t_opt = torch_cls(a, **kw)
    run_torch(t_opt, a, noise(10, seed=7))
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours = cls(b, **kw)
    ours.load_state_dict(copy.deepcopy(t_opt.state_dict()))
    c = [torch.nn.Parameter(p.detach().clone()) for p in a]
    back = torch_cls(c, **kw)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))
    run_torch(ours, b, noise(20, seed=7)[10:])
    run_torch(back, c, noise(20, seed=7)[10:])
    for x, y, z in zip(ref, b, c, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(z, x, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- fused kernels + GradScaler
@pytest.mark.parametrize(
    ("cls", "torch_cls", "kw"),
    [
        (optim.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
        (optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
        (optim.Adagrad, torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01}),
    ],
    ids=["adam", "adamw", "adagrad"],
)
def test_fused_under_grad_scaler_matches_torch_fused(cls, torch_cls, kw) -> None:
    # torch's fused optimizers unscale inside the kernel; ours let GradScaler unscale first.
    # Same result, the inf step skipped by both, and no step counted for it.
    def train(opt_factory) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        opt = opt_factory(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
        for i in range(12):
            opt.zero_grad()
            scaler.scale(model(x).pow(2).mean()).backward()
            if i == 5:
                model.weight.grad[1, 2] = float("inf")
            scaler.step(opt)
            scaler.update()
        return model, opt

    ours, o1 = train(lambda ps: cls(ps, **kw, impl="fused"))
    theirs, o2 = train(lambda ps: torch_cls(ps, **kw, fused=True))
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert o1.state[a]["step"].item() == o2.state[b]["step"].item() == 11
    assert o1.param_groups[0]["step"] == 11


# ---------------------------------------------------------------- implementation choice
def test_auto_uses_fused_kernels_where_they_exist() -> None:
    ps = make_params(0, torch.float32)
    for cls in (optim.Adam, optim.AdamW, optim.Adagrad):  # torch's fused kernels
        assert cls.native is None
        assert cls(ps)._select_impl(ps) == "fused"
    for cls in (optim.RMSprop, optim.NAdam, optim.RAdam):  # bergab's, where they build
        assert cls.native is not None
        built = _native.library(cls.native) is not None
        assert cls(ps)._select_impl(ps) == ("fused" if built else "foreach")


@pytest.mark.parametrize(("cls", "kw"), [(c, k) for c, _, k in TORCH_TWINS], ids=TWIN_IDS)
def test_cpu_batched_foreach_equals_reference(cls, kw, monkeypatch: pytest.MonkeyPatch) -> None:
    # tiny batches: every foreach op runs over several runs of tensors and of flat slices
    monkeypatch.setattr(fe, "CPU_BATCH_NUMEL", 10)
    sizes = [[t.numel() for t in ps] for (ps,) in fe.batches([make_params(0)], [0, 1, 2])]
    assert sizes == [[7], [10], [5], [10], [10], [4]]
    transposed = [torch.zeros(4, 6).t(), torch.zeros(3)]  # not contiguous: kept whole
    assert [len(ps) for (ps,) in fe.batches([transposed], [0, 1])] == [1, 1]
    a, b = make_params(8), make_params(8)
    run_with_gaps(cls(a, **kw, impl="foreach"), a, 30)
    run_with_gaps(cls(b, **kw, impl="reference"), b, 30)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cls", "kw"), [(c, k) for c, _, k in TORCH_TWINS], ids=TWIN_IDS)
def test_foreach_with_and_without_kept_scratch_equals_reference(cls, kw) -> None:
    # batches of up to 16 CPU tensors use kept scratch buffers, larger ones allocate
    for count in (3, 20):
        gen = torch.Generator().manual_seed(count)
        a = [torch.nn.Parameter(torch.randn(5, generator=gen, dtype=torch.float64))]
        a += [torch.nn.Parameter(torch.randn(2, 3, generator=gen, dtype=torch.float64))]
        a = (a * count)[:count]
        a = [torch.nn.Parameter(p.detach().clone()) for p in a]
        b = [torch.nn.Parameter(p.detach().clone()) for p in a]
        extra = {"maximize": True, "weight_decay": 0.1}
        kw = {**kw, **extra}
        oa, ob = cls(a, **kw, impl="foreach"), cls(b, **kw, impl="reference")
        for step in range(15):
            for x, y in zip(a, b, strict=True):
                x.grad = torch.sin(x.detach() * (step + 1))
                y.grad = torch.sin(y.detach() * (step + 1))
            oa.step()
            ob.step()
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
        assert bool(oa.__dict__.get("_scratch_buffers")) == (count <= 16)


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (optim.Adagrad, {"lr": 0.1}),
        (optim.RMSprop, {"lr": 0.01}),
        (optim.RMSprop, {"lr": 0.01, "eps_inside_sqrt": True, "centered": True}),
        (optim.Adam, {"lr": 0.01}),
        (optim.NAdam, {"lr": 0.01}),
        (optim.RAdam, {"lr": 0.01, "betas": (0.9, 0.9)}),
    ],
    ids=["adagrad", "rmsprop", "rmsprop-inside", "adam", "nadam", "radam"],
)
def test_half_precision_zero_gradients_give_no_nan(cls, kw, impl: str) -> None:
    # eps = 1e-8 rounds to 0 in float16, so sqrt(0) + eps = 0 and a zero gradient gives 0/0;
    # the root is taken in float32, so 0/(0+eps) stays 0 (torch's non-fused float16 paths
    # give NaN there; its fused kernels compute in float32 like this)
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float16))
    opt = cls([p], **kw, impl=impl)
    for _ in range(12):
        p.grad = torch.tensor([0.0, 3e-3, 0.5, -0.2], dtype=torch.float16)
        opt.step()
    assert p.dtype == torch.float16
    assert torch.isfinite(p).all()
    assert p[0].item() == 1.0  # a zero gradient never moves a parameter with no history


# ---------------------------------------------------------------- argument checks
BAD_ARGS = [
    (optim.Adam, {"lr": -1e-3}, "lr"),
    (optim.Adam, {"betas": (1.0, 0.999)}, r"betas\[0\]"),
    (optim.Adam, {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    (optim.Adam, {"betas": (0.9,)}, "betas"),
    (optim.Adam, {"eps": -1e-8}, "eps"),
    (optim.Adam, {"weight_decay": -0.1}, "weight_decay"),
    (optim.Adam, {"amsgrad": "yes"}, "amsgrad"),
    (optim.AdamW, {"lr": -1.0}, "lr"),
    (optim.AdamW, {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    (optim.NAdam, {"momentum_decay": -1.0}, "momentum_decay"),
    (optim.NAdam, {"eps": -1.0}, "eps"),
    (optim.RAdam, {"betas": (0.9, 1.5)}, r"betas\[1\]"),
    (optim.RAdam, {"lr": float("nan")}, "lr"),
    (optim.Adagrad, {"lr_decay": -0.1}, "lr_decay"),
    (optim.Adagrad, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    (optim.Adagrad, {"eps": -1e-10}, "eps"),
    (optim.Adagrad, {"lr": -0.01}, "lr"),
    (optim.RMSprop, {"alpha": 1.5}, "alpha"),
    (optim.RMSprop, {"momentum": -0.5}, "momentum"),
    (optim.RMSprop, {"eps": -1e-8}, "eps"),
    (optim.RMSprop, {"weight_decay": -1e-2}, "weight_decay"),
    (optim.RMSprop, {"impl": "fast"}, "impl"),
    (optim.RAdam, {"lr": lambda step: -0.1}, "lr"),  # a schedule is checked where it starts
]


@pytest.mark.parametrize(
    ("cls", "kw", "name"), BAD_ARGS, ids=[f"{c.__name__}-{n}" for c, _, n in BAD_ARGS]
)
def test_bad_arguments_raise_value_error_naming_them(cls, kw, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_wrong_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="lr"):
        optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr="0.1")


def test_registry_names_and_presets() -> None:
    w = [torch.nn.Parameter(torch.zeros(2))]
    assert type(optim.create("AdamW", w)) is optim.AdamW
    assert optim.create("amsgrad", w).defaults["amsgrad"] is True
    with pytest.raises(ValueError, match="amsgrad=False contradicts optimizer 'amsgrad'"):
        optim.create("amsgrad", w, amsgrad=False)  # the name means amsgrad=True
    for name, cls in [("adagrad", optim.Adagrad), ("rmsprop", optim.RMSprop), ("adam", optim.Adam)]:
        assert type(optim.create(name, w)) is cls
    assert type(optim.create("nadam", w)) is optim.NAdam
    assert type(optim.create("radam", w)) is optim.RAdam


def test_radam_switches_from_momentum_sgd_to_rectified_adam_at_rho_5() -> None:
    # scalar RAdam written plainly (Liu et al. Algorithm 2 with torch's threshold 5)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = optim.RAdam([w], lr=lr, betas=(b1, b2), eps=eps)
    theta, m, v, rho_inf = 1.0, 0.0, 0.0, 2 / (1 - b2) - 1
    branches = []
    for t in range(1, 11):
        g = 2.0 * theta - 1.0
        w.grad = torch.tensor([2.0 * w.item() - 1.0], dtype=torch.float64)
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        branches.append(rho_t > 5)
        if rho_t > 5:
            r = math.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            theta -= lr * r * m_hat * math.sqrt(1 - b2**t) / (math.sqrt(v) + eps)
        else:
            theta -= lr * m_hat
        assert w.item() == pytest.approx(theta, rel=1e-12)
    assert branches == [False] * 5 + [True] * 5


# ---------------------------------------------------------------- convergence
# (name, kwargs, steps): f <= 1e-6 on the κ = 100 quadratic from (-4, 2), f(x0) = 208
QUADRATIC = [
    ("adagrad", {"lr": 0.5}, 300),
    ("rmsprop", {"lr": 0.01}, 1000),
    ("rmsprop", {"lr": 0.002, "centered": True, "momentum": 0.9}, 500),
    ("adam", {"lr": 0.05}, 400),
    ("amsgrad", {"lr": 0.05}, 400),
    ("adamw", {"lr": 0.05}, 400),
    ("nadam", {"lr": 0.05}, 500),
    ("radam", {"lr": 0.05}, 1500),
]
# (name, kwargs, loss, steps) on Rosenbrock from (-1.2, 1)
ROSENBROCK = [
    ("adagrad", {"lr": 1.0}, 1e-3, 4000),
    ("rmsprop", {"lr": 0.002, "centered": True, "momentum": 0.9}, 1e-4, 1500),
    ("adam", {"lr": 0.1}, 1e-4, 1500),
    ("adamw", {"lr": 0.1, "weight_decay": 0.0}, 1e-4, 1500),
    ("nadam", {"lr": 0.02}, 1e-4, 4000),
    ("radam", {"lr": 0.005, "betas": (0.9, 0.99)}, 1e-4, 2500),
]


@pytest.mark.parametrize(("name", "kw", "steps"), QUADRATIC, ids=[c[0] for c in QUADRATIC])
def test_reaches_the_stated_loss_on_an_ill_conditioned_quadratic(name, kw, steps) -> None:
    res = minimize(
        landscapes.quadratic(100.0), optimizer=name, max_steps=steps, tol=0.0, target=1e-6,
        record=False, impl="foreach", **kw,
    )  # fmt: skip
    assert res.status == "converged", (res.steps, res.fun)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "kw", "loss", "steps"), ROSENBROCK, ids=[c[0] for c in ROSENBROCK]
)
def test_reaches_the_stated_loss_on_rosenbrock(name, kw, loss, steps) -> None:
    res = minimize(
        landscapes.rosenbrock, optimizer=name, max_steps=steps, tol=0.0, target=loss,
        record=False, impl="foreach", **kw,
    )  # fmt: skip
    assert res.status == "converged", (res.steps, res.fun)
