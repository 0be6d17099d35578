"""Hypergradient descent (Baydin et al., 2018): SGD-HD (plain, momentum, Nesterov) and
Adam-HD against the paper's update written out plainly here, per param group, with the
clamp and the multiplicative rule; β = 0 is torch's SGD/Adam; effective_lr is the α used."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from bergab import optim
from bergab.optim import _native

SHAPES = [(7,), (3, 5), (2, 3, 4)]


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in SHAPES]


def noises(steps: int, seed: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(steps)
    ]


def grad_fn(theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    # gradient of a noisy quadratic: the same rule for the flat vector and the tensors
    return noise + 0.5 * theta


def clip(a: float, lo: float, hi: float) -> float:
    return min(max(a, lo), hi)


def new_alpha(alpha, h, gn, un, beta, mult, lo, hi) -> float:
    if mult:
        alpha = alpha * (1 + beta * h / (gn * un)) if gn * un > 0 else alpha
    else:
        alpha = alpha + beta * h
    return clip(alpha, lo, hi)


# ---------------------------------------------------------------------------- the paper, plainly
def sgd_hd_paper(theta, noise_seq, *, lr, beta, mu=0.0, nesterov=False, wd=0.0, lo=0.0,
                 hi=math.inf, mult=False):  # fmt: skip
    """SGD-HD / SGDN-HD on one flat vector (one param group), Baydin et al. Alg. 1 and 4."""
    alpha, u_prev, b = lr, torch.zeros_like(theta), None
    alphas = []
    for noise in noise_seq:
        g = grad_fn(theta, noise) + wd * theta
        h = float(g @ u_prev)  # = -d f(θ_t)/dα
        alpha = new_alpha(alpha, h, float(g.norm()), float(u_prev.norm()), beta, mult, lo, hi)
        if mu:
            b = g.clone() if b is None else mu * b + g
            u = g + mu * b if nesterov else b
        else:
            u = g
        theta = theta - alpha * u
        u_prev = u
        alphas.append(alpha)
    return theta, alphas


def adam_hd_paper(theta, noise_seq, *, lr, beta, betas=(0.9, 0.999), eps=1e-8, wd=0.0,
                  lo=0.0, hi=math.inf, mult=False):  # fmt: skip
    """Adam-HD on one flat vector (one param group), with u = m̂/(√v̂ + ε)."""
    b1, b2 = betas
    alpha, m, v = lr, torch.zeros_like(theta), torch.zeros_like(theta)
    u_prev = torch.zeros_like(theta)
    alphas = []
    for t, noise in enumerate(noise_seq, start=1):
        g = grad_fn(theta, noise) + wd * theta
        h = float(g @ u_prev)
        alpha = new_alpha(alpha, h, float(g.norm()), float(u_prev.norm()), beta, mult, lo, hi)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        theta = theta - alpha * u
        u_prev = u
        alphas.append(alpha)
    return theta, alphas


def run_ours(opt, params, noise_seq) -> list[float]:
    alphas = []
    for noise in noise_seq:
        for p, n in zip(params, noise, strict=True):
            p.grad = grad_fn(p.detach(), n)
        opt.step()
        alphas.append(opt.effective_lr[0] if hasattr(opt, "effective_lr") else math.nan)
    return alphas


def flat(ts) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in ts])


SGD_CASES = [
    {"lr": 0.01, "hypergrad_lr": 1e-3},
    {"lr": 0.01, "hypergrad_lr": 1e-4, "momentum": 0.9, "weight_decay": 0.01},
    {"lr": 0.005, "hypergrad_lr": 1e-4, "momentum": 0.8, "nesterov": True},
    {"lr": 0.01, "hypergrad_lr": 0.02, "momentum": 0.9, "nesterov": True, "multiplicative": True},
    {"lr": 0.01, "hypergrad_lr": 1e-2, "max_lr": 0.03},  # the upper bound binds
    {"lr": 2.5, "hypergrad_lr": 1e-3, "min_lr": 0.5},  # oscillation: the lower bound binds
    {"lr": 0.01, "hypergrad_lr": 0.05, "multiplicative": True, "weight_decay": 0.1},
]


def paper_kwargs(kw):
    return {
        "lr": kw["lr"],
        "beta": kw["hypergrad_lr"],
        "mu": kw.get("momentum", 0.0),
        "nesterov": kw.get("nesterov", False),
        "wd": kw.get("weight_decay", 0.0),
        "lo": kw.get("min_lr", 0.0),
        "hi": kw.get("max_lr", math.inf),
        "mult": kw.get("multiplicative", False),
    }


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize("kwargs", SGD_CASES, ids=[str(i) for i in range(len(SGD_CASES))])
def test_sgd_hd_equals_the_paper(kwargs, impl) -> None:
    ps = make_params()
    seq = noises(200, seed=1)
    alphas = run_ours(optim.HypergradientSGD(ps, **kwargs, impl=impl), ps, seq)
    theta, paper_alphas = sgd_hd_paper(flat(make_params()), [flat(n) for n in seq],
                                       **paper_kwargs(kwargs))  # fmt: skip
    assert alphas == pytest.approx(paper_alphas, rel=1e-10)
    torch.testing.assert_close(flat(ps), theta, rtol=1e-10, atol=1e-12)
    assert len(set(alphas)) > 15  # α really moved
    if "max_lr" in kwargs:
        assert max(alphas) == kwargs["max_lr"]
    if "min_lr" in kwargs:
        assert min(alphas) == kwargs["min_lr"]


ADAM_CASES = [
    {"lr": 0.01, "hypergrad_lr": 1e-4},
    {"lr": 0.01, "hypergrad_lr": 1e-4, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01},
    {"lr": 0.01, "hypergrad_lr": 0.01, "multiplicative": True},
    {"lr": 0.01, "hypergrad_lr": 1e-3, "max_lr": 0.02, "min_lr": 0.005},
]


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=[str(i) for i in range(len(ADAM_CASES))])
def test_adam_hd_equals_the_paper(kwargs, impl) -> None:
    ps = make_params()
    seq = noises(200, seed=2)
    alphas = run_ours(optim.HypergradientAdam(ps, **kwargs, impl=impl), ps, seq)
    theta, paper_alphas = adam_hd_paper(
        flat(make_params()),
        [flat(n) for n in seq],
        lr=kwargs["lr"],
        beta=kwargs["hypergrad_lr"],
        betas=kwargs.get("betas", (0.9, 0.999)),
        eps=kwargs.get("eps", 1e-8),
        wd=kwargs.get("weight_decay", 0.0),
        lo=kwargs.get("min_lr", 0.0),
        hi=kwargs.get("max_lr", math.inf),
        mult=kwargs.get("multiplicative", False),
    )
    assert alphas == pytest.approx(paper_alphas, rel=1e-10)
    torch.testing.assert_close(flat(ps), theta, rtol=1e-10, atol=1e-12)
    assert len(set(alphas)) > 15


@pytest.mark.parametrize("cls", [optim.HypergradientSGD, optim.HypergradientAdam])
def test_each_group_has_its_own_alpha(cls) -> None:
    # two groups = two independent runs of the paper's update (not one mixed dot product)
    ps = make_params()
    seq = noises(100, seed=3)
    opt = cls([{"params": ps[:1], "lr": 0.02}, {"params": ps[1:]}], lr=0.01, hypergrad_lr=1e-3)
    run_ours(opt, ps, seq)
    paper = sgd_hd_paper if cls is optim.HypergradientSGD else adam_hd_paper
    for sl, lr in ((slice(0, 1), 0.02), (slice(1, 3), 0.01)):
        theta, alphas = paper(flat(make_params()[sl]), [flat(n[sl]) for n in seq], lr=lr, beta=1e-3)
        torch.testing.assert_close(flat(ps[sl]), theta, rtol=1e-10, atol=1e-12)
        group = 0 if sl.start == 0 else 1
        assert opt.effective_lr[group] == pytest.approx(alphas[-1], rel=1e-10)


def test_beta_zero_is_torch_sgd_and_adam() -> None:
    for ours_kw, torch_cls, torch_kw in [
        ({"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, torch.optim.SGD,
         {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ({"betas": (0.8, 0.99), "weight_decay": 0.01}, torch.optim.Adam,
         {"betas": (0.8, 0.99), "weight_decay": 0.01}),
    ]:  # fmt: skip
        cls = optim.HypergradientSGD if torch_cls is torch.optim.SGD else optim.HypergradientAdam
        a, b = make_params(), make_params()
        seq = noises(100, seed=4)
        run_ours(cls(a, lr=0.01, hypergrad_lr=0.0, **ours_kw), a, seq)
        run_ours(torch_cls(b, lr=0.01, **torch_kw), b, seq)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_effective_lr_is_the_alpha_the_update_used(momentum) -> None:
    ps = make_params()
    opt = optim.HypergradientSGD(ps, lr=0.01, hypergrad_lr=1e-3, momentum=momentum)
    assert opt.effective_lr == [0.01]
    bufs = [torch.zeros_like(p) for p in ps]
    for k, noise in enumerate(noises(30, seed=5)):
        before = [p.detach().clone() for p in ps]
        grads = [grad_fn(p.detach(), n) for p, n in zip(ps, noise, strict=True)]
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        bufs = [g.clone() if k == 0 else momentum * b + g for b, g in zip(bufs, grads, strict=True)]
        u = flat(bufs) if momentum else flat(grads)
        step = flat(before) - flat(ps)
        alpha = float(step @ u / (u @ u))  # the step size the parameters actually took
        assert alpha == pytest.approx(opt.effective_lr[0], rel=1e-12)
        torch.testing.assert_close(step, alpha * u, rtol=1e-12, atol=1e-14)


def test_a_schedule_multiplies_the_adapted_alpha() -> None:
    ps = make_params()
    sched = lambda t: 0.01 if t < 10 else 0.005  # noqa: E731 - any callable is a schedule
    opt = optim.HypergradientSGD(ps, lr=sched, hypergrad_lr=1e-3)
    seq = noises(12, seed=6)
    run_ours(opt, ps, seq[:10])
    adapted = opt.param_groups[0]["alpha"]
    assert adapted != 0.01
    assert opt.effective_lr[0] == pytest.approx(adapted * 0.5, rel=1e-15)  # lr halved
    run_ours(opt, ps, seq[10:])
    assert opt.param_groups[0]["alpha_base"] == 0.005


def test_a_tensor_that_skipped_the_previous_step_adds_no_hypergradient() -> None:
    # its previous direction is stale, so h sums over the tensors that took the last step
    ps = make_params()
    opt = optim.HypergradientSGD(ps, lr=0.01, hypergrad_lr=1e-2)
    seq = noises(3, seed=7)
    for p, n in zip(ps, seq[0], strict=True):
        p.grad = grad_fn(p.detach(), n)
    opt.step()
    prev = [p.grad.clone() for p in ps]
    ps[2].grad = None  # skips step 2
    for p, n in zip(ps[:2], seq[1][:2], strict=True):
        p.grad = grad_fn(p.detach(), n)
    alpha = opt.effective_lr[0]
    g2 = [p.grad.clone() for p in ps[:2]]
    opt.step()
    expected = alpha + 1e-2 * float(flat(g2) @ flat(prev[:2]))
    assert opt.effective_lr[0] == pytest.approx(expected, rel=1e-12)
    for p, n in zip(ps, seq[2], strict=True):  # step 3: ps[2] did not take step 2
        p.grad = grad_fn(p.detach(), n)
    g3 = [p.grad.clone() for p in ps]
    alpha = opt.effective_lr[0]
    opt.step()
    expected = alpha + 1e-2 * float(flat(g3[:2]) @ flat(g2))
    assert opt.effective_lr[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cls", [optim.HypergradientSGD, optim.HypergradientAdam])
def test_resume_restores_alpha(cls) -> None:
    ps = make_params()
    kw = {"lr": 0.01, "hypergrad_lr": 1e-3}
    opt = cls(ps, **kw)
    seq = noises(30, seed=8)
    run_ours(opt, ps, seq[:15])
    sd = copy.deepcopy(opt.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = cls(qs, **kw)
    opt2.load_state_dict(sd)
    assert opt2.effective_lr == opt.effective_lr != [0.01]
    run_ours(opt, ps, seq[15:])
    run_ours(opt2, qs, seq[15:])
    assert opt2.effective_lr == opt.effective_lr
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hypergrad_lr": -1.0}, "hypergrad_lr"),
        ({"min_lr": -1.0}, "min_lr"),
        ({"min_lr": 0.1, "max_lr": 0.01}, "max_lr"),
        ({"nesterov": True}, "nesterov"),
        ({"momentum": -0.5}, "momentum"),
        ({"multiplicative": "yes"}, "multiplicative"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        optim.HypergradientSGD(make_params(), **kwargs)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        optim.HypergradientAdam(make_params(), betas=(1.0, 0.9))


# momentum changed mid-run (plain -> heavy ball -> Nesterov -> heavy ball -> plain)
PHASES = [(0.0, False), (0.9, False), (0.8, True), (0.9, False), (0.0, False)]


def sgd_hd_paper_phases(theta, noise_seq, *, lr, beta, per_phase):
    """The paper's SGD-HD with μ / Nesterov switched every ``per_phase`` steps: u_{t-1} is
    always the direction of the step before, the buffer b carries over untouched."""
    alpha, u_prev, b = lr, torch.zeros_like(theta), None
    for t, noise in enumerate(noise_seq):
        mu, nesterov = PHASES[t // per_phase]
        g = grad_fn(theta, noise)
        alpha = max(alpha + beta * float(g @ u_prev), 0.0)
        u = g
        if mu:
            b = g.clone() if b is None else mu * b + g
            u = g + mu * b if nesterov else b
        theta = theta - alpha * u
        u_prev = u
    return theta, alpha


@pytest.mark.parametrize("impl", ["reference", "foreach", "fused"])
def test_sgd_hd_momentum_switched_mid_run_uses_the_last_direction(impl) -> None:
    if impl == "fused" and _native.library("hypergradient") is None:
        pytest.skip("bergab's CPU kernels cannot be built here")
    per_phase = 12
    ps = make_params()
    seq = noises(per_phase * len(PHASES), seed=3)
    opt = optim.HypergradientSGD(ps, lr=0.01, hypergrad_lr=1e-3, impl=impl)
    for t, noise in enumerate(seq):
        opt.param_groups[0]["momentum"], opt.param_groups[0]["nesterov"] = PHASES[t // per_phase]
        for p, n in zip(ps, noise, strict=True):
            p.grad = grad_fn(p.detach(), n)
        opt.step()
    theta, alpha = sgd_hd_paper_phases(flat(make_params()), [flat(n) for n in seq],
                                       lr=0.01, beta=1e-3, per_phase=per_phase)  # fmt: skip
    assert opt.effective_lr[0] == pytest.approx(alpha, rel=1e-10)
    torch.testing.assert_close(flat(ps), theta, rtol=1e-10, atol=1e-12)
