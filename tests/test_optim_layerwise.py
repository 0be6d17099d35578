"""LARS and LAMB against their published formulas, written out plainly here.

The formulas below use only elementwise arithmetic and ``sqrt(sum(x * x))`` for norms, in
float64, and are compared with bergab's reference and fast paths over 200 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bergab import optim
from bergab.optim import _native, layerwise

NATIVE = pytest.mark.skipif(
    _native.library("layerwise") is None, reason="bergab's CPU kernels cannot be built here"
)

SHAPES = [(7,), (3, 5), (2, 3, 4), (1,), (6,)]


def make_params(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]
    with torch.no_grad():
        ps[-1].zero_()  # a zero-initialised tensor (a bias): its trust ratio starts at 1
    return ps


def grads_at(ws: list[torch.Tensor], gen: torch.Generator, step: int) -> list[torch.Tensor | None]:
    """Gradients of a loss with a random linear part; tensor 3 has a zero gradient on
    every 5th step (trust ratio 1) and tensor 1 has none on every 7th (it skips the step)."""
    out: list[torch.Tensor | None] = []
    for i, w in enumerate(ws):
        g = torch.randn(w.shape, generator=gen, dtype=w.dtype) + 0.5 * w.detach()
        if i == 3 and step % 5 == 0:
            g = torch.zeros_like(g)
        out.append(None if i == 1 and step % 7 == 3 else g)
    return out


def norm(x: torch.Tensor) -> float:
    return math.sqrt(float((x * x).sum()))


# ---------------------------------------------------------------------------- formulas
def lars_formula(
    ws: list[torch.Tensor],
    steps: int,
    seed: int,
    lr: Callable[[int], float],
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    excluded: Callable[[torch.Tensor], bool] = lambda w: False,
) -> list[torch.Tensor]:
    """You et al. (2017) trust ratio; torch-style momentum with the global lr outside."""
    ws = [w.detach().clone() for w in ws]
    bufs = [torch.zeros_like(w) for w in ws]
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        eta = lr(t)
        for i, g in enumerate(grads_at(ws, gen, t)):
            if g is None:
                continue
            w = ws[i]
            wn, gn = norm(w), norm(g)
            rho = 1.0
            if not excluded(w) and wn > 0 and gn > 0:
                rho = trust_coefficient * wn / (gn + weight_decay * wn + eps)
            d = rho * (g + weight_decay * w)
            bufs[i] = momentum * bufs[i] + d
            step = d + momentum * bufs[i] if nesterov else bufs[i]
            ws[i] = w - eta * step
    return ws


def lamb_formula(
    ws: list[torch.Tensor],
    steps: int,
    seed: int,
    lr: Callable[[int], float],
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    clamp_value: float | None,
    bias_correction: bool,
    adam: bool,
) -> list[torch.Tensor]:
    """You et al. (2019), Algorithm 2 with Adam's bias correction and phi(z) = min(z, c)."""
    b1, b2 = betas
    ws = [w.detach().clone() for w in ws]
    m = [torch.zeros_like(w) for w in ws]
    v = [torch.zeros_like(w) for w in ws]
    count = [0] * len(ws)  # each tensor's own step count
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        eta = lr(t)
        for i, g in enumerate(grads_at(ws, gen, t)):
            if g is None:
                continue
            count[i] += 1
            k = count[i]
            w = ws[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mh = m[i] / (1 - b1**k) if bias_correction else m[i]
            vh = v[i] / (1 - b2**k) if bias_correction else v[i]
            u = mh / (torch.sqrt(vh) + eps) + weight_decay * w
            wn, un = norm(w), norm(u)
            if clamp_value is not None:
                wn = min(wn, clamp_value)
            r = 1.0 if adam or wn == 0 or un == 0 else wn / un
            ws[i] = w - eta * r * u
    return ws


def run(opt: torch.optim.Optimizer, ps: list[torch.nn.Parameter], steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        for p, g in zip(ps, grads_at(ps, gen, t), strict=True):
            p.grad = g
        opt.step()


def const(lr: float) -> Callable[[int], float]:
    return lambda t: lr


def decaying(lr: float) -> Callable[[int], float]:
    return lambda t: lr * (0.5 + 0.5 * math.cos(math.pi * t / 200))


# ---------------------------------------------------------------------------- LARS
LARS_CASES: list[dict[str, Any]] = [
    {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "trust_coefficient": 0.01, "eps": 1e-8},
    {"lr": 2.0, "momentum": 0.0, "weight_decay": 0.01, "trust_coefficient": 0.01, "eps": 0.0},
    {
        "lr": 0.5,
        "momentum": 0.8,
        "weight_decay": 5e-3,
        "trust_coefficient": 0.02,
        "eps": 1e-3,
        "nesterov": True,
    },
    {"lr": 3.0, "momentum": 0.95, "weight_decay": 1e-4, "trust_coefficient": 0.001, "eps": 1e-8},
]


@pytest.mark.parametrize("impl", ["reference", "foreach", pytest.param("fused", marks=NATIVE)])
@pytest.mark.parametrize("schedule", [const, decaying], ids=["const-lr", "schedule-lr"])
@pytest.mark.parametrize("case", LARS_CASES, ids=[f"case{i}" for i in range(len(LARS_CASES))])
def test_lars_equals_formula(case: dict[str, Any], schedule: Any, impl: str) -> None:
    kw = {"nesterov": False, **case}
    ps = make_params(1)
    expected = lars_formula(ps, 200, 2, **{**kw, "lr": schedule(case["lr"])})
    run(optim.LARS(ps, **{**kw, "lr": schedule(case["lr"])}, impl=impl), ps, 200, seed=2)
    for p, e in zip(ps, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["reference", "foreach", pytest.param("fused", marks=NATIVE)])
def test_lars_exclusion_predicate_and_group_flag(impl: str) -> None:
    kw = {"lr": 1.0, "momentum": 0.9, "weight_decay": 1e-3, "trust_coefficient": 0.01, "eps": 0.0}
    one_d = lambda w: w.ndim == 1  # noqa: E731
    ps = make_params(3)
    expected = lars_formula(ps, 200, 4, **{**kw, "lr": const(1.0)}, nesterov=False, excluded=one_d)
    run(optim.LARS(ps, **kw, exclude_from_adaptation=one_d, impl=impl), ps, 200, seed=4)
    for p, e in zip(ps, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-10, atol=1e-12)

    # the same with two param groups, the 1-D tensors' group flagged
    qs = make_params(3)
    groups = [
        {"params": [q for q in qs if q.ndim != 1]},
        {"params": [q for q in qs if q.ndim == 1], "exclude_from_adaptation": True},
    ]
    run(optim.LARS(groups, **kw, impl=impl), qs, 200, seed=4)
    for q, e in zip(qs, expected, strict=True):
        torch.testing.assert_close(q.detach(), e, rtol=1e-10, atol=1e-12)


def test_lars_without_adaptation_is_torch_sgd() -> None:
    kw = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": True}
    ours, theirs = make_params(5), make_params(5)
    run(optim.LARS(ours, **kw, exclude_from_adaptation=True), ours, 200, seed=6)
    run(torch.optim.SGD(theirs, **kw), theirs, 200, seed=6)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lars_trust_ratio_one_step() -> None:
    # ||w|| = 5, ||g|| = 2, wd = 0.1: rho = 0.1 * 5 / (2 + 0.5) = 0.2
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = optim.LARS([w], lr=1.0, momentum=0.0, weight_decay=0.1, trust_coefficient=0.1, eps=0.0)
    w.grad = torch.tensor([0.0, 2.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([3.0 - 0.2 * 0.3, 4.0 - 0.2 * 2.4], dtype=torch.float64)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-14, atol=0.0)


# ---------------------------------------------------------------------------- LAMB
LAMB_CASES: list[dict[str, Any]] = [
    {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01, "clamp_value": 10.0},
    {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.1, "clamp_value": 1.0},
    {
        "lr": 0.01,
        "betas": (0.9, 0.999),
        "eps": 1e-6,
        "weight_decay": 0.0,
        "clamp_value": None,
        "bias_correction": False,
    },
    {"lr": 0.005, "betas": (0.95, 0.98), "eps": 1e-8, "weight_decay": 0.05, "adam": True},
]


@pytest.mark.parametrize("impl", ["reference", "foreach", pytest.param("fused", marks=NATIVE)])
@pytest.mark.parametrize("schedule", [const, decaying], ids=["const-lr", "schedule-lr"])
@pytest.mark.parametrize("case", LAMB_CASES, ids=[f"case{i}" for i in range(len(LAMB_CASES))])
def test_lamb_equals_formula(case: dict[str, Any], schedule: Any, impl: str) -> None:
    kw = {"clamp_value": 10.0, "bias_correction": True, "adam": False, **case}
    ps = make_params(7)
    expected = lamb_formula(ps, 200, 8, **{**kw, "lr": schedule(case["lr"])})
    run(optim.LAMB(ps, **{**kw, "lr": schedule(case["lr"])}, impl=impl), ps, 200, seed=8)
    for p, e in zip(ps, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("weight_decay", "torch_cls"), [(0.0, torch.optim.Adam), (0.05, torch.optim.AdamW)]
)
def test_lamb_adam_mode_is_torch_adam(weight_decay: float, torch_cls: type) -> None:
    # ratio 1: u = m̂/(√v̂+ε) + λw is exactly Adam's step (AdamW's when λ > 0)
    kw = {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-7, "weight_decay": weight_decay}
    ours, theirs = make_params(9), make_params(9)
    run(optim.LAMB(ours, **kw, adam=True), ours, 200, seed=10)
    run(torch_cls(theirs, **kw), theirs, 200, seed=10)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lamb_first_step_moves_each_tensor_by_lr_times_its_norm() -> None:
    # step 1: m̂ = g, v̂ = g², u ≈ sign(g); the update has norm lr * min(||w||, c)
    ps = make_params(11)[:3]
    before = [p.detach().clone() for p in ps]
    opt = optim.LAMB(ps, lr=0.1, weight_decay=0.0, eps=1e-12, clamp_value=3.0)
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    for p, b in zip(ps, before, strict=True):
        assert norm(p.detach() - b) == pytest.approx(0.1 * min(norm(b), 3.0), rel=1e-9)


# ---------------------------------------------------------------------------- fast paths
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.LARS, {"lr": 1.0, "trust_coefficient": 0.01, "weight_decay": 1e-3}),
        (optim.LARS, {"lr": 1.0, "momentum": 0.0, "trust_coefficient": 0.01}),
        (optim.LAMB, {"lr": 0.01, "weight_decay": 0.01}),
    ],
)
def test_foreach_batches_equal_reference(
    cls: type, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiny CPU batches: tensors split over several batches, some params skip steps
    monkeypatch.setattr(layerwise, "CPU_BATCH_NUMEL", 16)
    ref, fast = make_params(12, torch.float32), make_params(12, torch.float32)
    run(cls(ref, **kwargs, impl="reference"), ref, 30, seed=13)
    run(cls(fast, **kwargs, impl="foreach"), fast, 30, seed=13)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_dtypes_in_one_group() -> None:
    ps = [torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(4).double())]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    for cls in (optim.LARS, optim.LAMB):
        o1, o2 = cls(ps, lr=0.1), cls(ref, lr=0.1, impl="reference")
        for _ in range(3):
            for p, q in zip(ps, ref, strict=True):
                p.grad = torch.ones_like(p)
                q.grad = torch.ones_like(q)
            o1.step()
            o2.step()
        for p, q in zip(ps, ref, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (optim.LARS, {"lr": -1.0}, "lr"),
        (optim.LARS, {"momentum": -0.1}, "momentum"),
        (optim.LARS, {"weight_decay": -1.0}, "weight_decay"),
        (optim.LARS, {"trust_coefficient": 0.0}, "trust_coefficient"),
        (optim.LARS, {"eps": -1e-8}, "eps"),
        (optim.LARS, {"momentum": 0.0, "nesterov": True}, "nesterov"),
        (optim.LARS, {"exclude_from_adaptation": "yes"}, "exclude_from_adaptation"),
        (optim.LAMB, {"lr": -1.0}, "lr"),
        (optim.LAMB, {"betas": (1.0, 0.9)}, "betas"),
        (optim.LAMB, {"betas": (0.9,)}, "betas"),
        (optim.LAMB, {"eps": -1.0}, "eps"),
        (optim.LAMB, {"weight_decay": -0.1}, "weight_decay"),
        (optim.LAMB, {"clamp_value": 0.0}, "clamp_value"),
        (optim.LAMB, {"adam": 2}, "adam"),
        (optim.LAMB, {"impl": "fast"}, "impl"),
    ],
)
def test_bad_arguments_name_the_argument(cls: type, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_registry_names() -> None:
    w = [torch.nn.Parameter(torch.zeros(2))]
    assert type(optim.create("lars", w, lr=0.1)) is optim.LARS
    assert type(optim.create("LAMB", w)) is optim.LAMB
