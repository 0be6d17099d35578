"""bergab's fused CPU kernels for schedule-free SGD/AdamW and Prodigy (``csrc/schedulefree.c``,
``csrc/prodigy.c``) against the reference paths: every option, 200 steps, float64 and
float32, two threads, parameters without gradients, resume, ``auto``, ``effective_lr``."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from bergab import optim
from bergab.optim import _native

pytestmark = pytest.mark.skipif(
    _native.library("schedulefree") is None or _native.library("prodigy") is None,
    reason="bergab's CPU kernels cannot be built here",
)

# a 0-d tensor, one element, sizes that are not multiples of a vector, a bigger one
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (300,)]

F64: dict[str, Any] = {"rtol": 1e-10, "atol": 1e-12}


def make_params(
    seed: int = 0, dtype: torch.dtype = torch.float64, shapes: list[Any] | None = None
) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype))
        for s in shapes or SHAPES
    ]


def grads_for(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    """A noisy quadratic: the gradient pulls towards 0 (so errors shrink, not grow)."""
    return [
        torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) + 0.5 * p.detach()
        for p in params
    ]


def run(
    make_opt: Callable[[list[torch.nn.Parameter]], Any],
    *,
    dtype: torch.dtype = torch.float64,
    steps: int = 200,
    seed: int = 1,
    shapes: list[Any] | None = None,
    every: Callable[[Any, int], None] | None = None,
    zero_until: int = 0,
) -> tuple[list[torch.nn.Parameter], Any]:
    ps = make_params(dtype=dtype, shapes=shapes)
    opt = make_opt(ps)
    gen = torch.Generator().manual_seed(seed)
    for k in range(steps):
        grads = grads_for(ps, gen)
        for p, g in zip(ps, grads, strict=True):
            p.grad = torch.zeros_like(g) if k < zero_until else g
        opt.step()
        if every is not None:
            every(opt, k)
    return ps, opt


def assert_f32_close(
    fused: Sequence[torch.Tensor], ref32: Sequence[torch.Tensor], ref64: Sequence[torch.Tensor]
) -> None:
    """float32: as close to the float64 result as the float32 reference is (rounding only)."""
    a = torch.cat([p.detach().double().reshape(-1) for p in fused])
    b = torch.cat([p.detach().double().reshape(-1) for p in ref32])
    c = torch.cat([p.detach().reshape(-1) for p in ref64])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (a - c).norm() <= 2 * (b - c).norm() + 1e-6 * c.norm()


def toggle_modes(opt: Any, k: int) -> None:
    if k % 37 == 36:  # an evaluation now and then: x, then back to y
        opt.eval()
        opt.train()


# ----------------------------------------------------------------------- schedule-free
SF_SGD: list[dict[str, Any]] = [
    {"lr": lr, "momentum": mom, "weight_decay": wd, "warmup_steps": wu, "r": r, **extra}
    for (lr, mom, wd, wu, r), extra in itertools.product(
        [(0.3, 0.9, 0.0, 0, 0.0), (0.2, 0.5, 0.01, 20, 1.0), (0.1, 0.95, 0.05, 0, 0.5)],
        [{}, {"weight_lr_power": 0.0}],
    )
]
SF_ADAMW: list[dict[str, Any]] = [
    {"lr": lr, "betas": betas, "eps": eps, "weight_decay": wd, "warmup_steps": wu, **extra}
    for (lr, betas, eps, wd, wu), extra in itertools.product(
        [
            (0.01, (0.9, 0.999), 1e-8, 0.0, 0),
            (0.02, (0.85, 0.99), 1e-6, 0.05, 40),
            (0.005, (0.5, 0.0), 1e-3, 0.01, 10),
        ],
        [{}, {"r": 1.0, "weight_lr_power": 1.0}],
    )
]
SF_CASES = [(optim.ScheduleFreeSGD, kw) for kw in SF_SGD] + [
    (optim.ScheduleFreeAdamW, kw) for kw in SF_ADAMW
]


@pytest.mark.parametrize(
    ("cls", "kwargs"), SF_CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(SF_CASES)]
)
def test_schedulefree_fused_equals_reference(cls, kwargs) -> None:
    ref, oref = run(lambda ps: cls(ps, **kwargs, impl="reference"), every=toggle_modes)
    fused, opt = run(lambda ps: cls(ps, **kwargs, impl="fused"), every=toggle_modes)
    for x, y in zip(fused, ref, strict=True):  # y, where the gradients are taken
        torch.testing.assert_close(x.detach(), y.detach(), **F64)
        torch.testing.assert_close(opt.state[x]["z"], oref.state[y]["z"], **F64)
    opt.eval()
    oref.eval()
    for x, y in zip(fused, ref, strict=True):  # the averages x
        torch.testing.assert_close(x.detach(), y.detach(), **F64)


@pytest.mark.parametrize(("cls", "kwargs"), [SF_CASES[0], SF_CASES[5], SF_CASES[6], SF_CASES[9]])
def test_schedulefree_fused_float32(cls, kwargs) -> None:
    ref32, _ = run(lambda ps: cls(ps, **kwargs, impl="reference"), dtype=torch.float32)
    fused32, _ = run(lambda ps: cls(ps, **kwargs, impl="fused"), dtype=torch.float32)
    ref64, _ = run(lambda ps: cls(ps, **kwargs, impl="reference"))
    assert_f32_close(fused32, ref32, ref64)


@pytest.mark.parametrize("cls", [optim.ScheduleFreeSGD, optim.ScheduleFreeAdamW])
def test_schedulefree_lr_schedule_and_groups(cls) -> None:
    def groups(ps):
        return [
            {"params": ps[:3], "lr": lambda t: 0.2 / (1 + 0.01 * t)},
            {"params": ps[3:], "lr": 0.05, "weight_decay": 0.02, "lr_scale": 0.5},
        ]

    ref, _ = run(lambda ps: cls(groups(ps), warmup_steps=5, impl="reference"))
    fused, _ = run(lambda ps: cls(groups(ps), warmup_steps=5, impl="fused"))
    for x, y in zip(fused, ref, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F64)


# ----------------------------------------------------------------------- Prodigy
PRODIGY: list[dict[str, Any]] = [
    {  # lr != 1, so that safeguard_warmup (d instead of d·lr in s) makes a difference
        "lr": 0.8,
        "betas": (beta1, 0.99),
        "weight_decay": wd,
        "decouple": decouple,
        "use_bias_correction": bc,
        "safeguard_warmup": sw,
    }
    for beta1, (wd, decouple), bc, sw in itertools.product(
        [0.9, 0.0], [(0.0, True), (0.1, True), (0.05, False)], [False, True], [False, True]
    )
] + [
    {"lr": 0.5, "d0": 1e-3, "d_coef": 2.0, "growth_rate": 1.05},
    {"beta3": 0.9, "eps": 1e-4, "d_coef": 0.5, "betas": (0.8, 0.999)},
    {"lr": 0.3, "betas": (0.0, 0.9), "growth_rate": 1.2, "weight_decay": 0.01},
]


@pytest.mark.parametrize("kwargs", PRODIGY, ids=[str(i) for i in range(len(PRODIGY))])
def test_prodigy_fused_equals_reference(kwargs) -> None:
    ref, oref = run(lambda ps: optim.Prodigy(ps, **kwargs, impl="reference"))
    fused, opt = run(lambda ps: optim.Prodigy(ps, **kwargs, impl="fused"))
    assert opt.d == pytest.approx(oref.d, rel=1e-10)
    assert opt.d > 10 * opt.param_groups[0]["d0"]  # it adapted
    for key in ("d_max", "d_hat", "d_numerator", "d_denom"):
        assert opt.param_groups[0][key] == pytest.approx(oref.param_groups[0][key], rel=1e-10)
    for x, y in zip(fused, ref, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F64)
        for name in ("exp_avg", "exp_avg_sq", "s"):
            if name in oref.state[y]:
                torch.testing.assert_close(opt.state[x][name], oref.state[y][name], **F64)


@pytest.mark.parametrize("kwargs", [PRODIGY[0], PRODIGY[9], PRODIGY[14], PRODIGY[-1]])
def test_prodigy_fused_float32(kwargs) -> None:
    ref32, o32 = run(lambda ps: optim.Prodigy(ps, **kwargs, impl="reference"), dtype=torch.float32)
    fused32, f32 = run(lambda ps: optim.Prodigy(ps, **kwargs, impl="fused"), dtype=torch.float32)
    ref64, o64 = run(lambda ps: optim.Prodigy(ps, **kwargs, impl="reference"))
    # the float32 reference sums in float32 (torch.dot, sum), the kernel in float64 blocks
    assert f32.d == pytest.approx(o32.d, rel=1e-4)
    assert abs(f32.d - o64.d) <= 2 * abs(o32.d - o64.d) + 1e-6 * o64.d
    assert_f32_close(fused32, ref32, ref64)


def test_prodigy_groups_lr_zero_and_steps_without_information() -> None:
    # one D over groups with their own lr/decay/eps, a frozen group (lr 0), and the first
    # steps with zero gradients (no d, no move, moments still updated: as the reference)
    def groups(ps):
        return [
            {"params": ps[:2], "weight_decay": 0.1},
            {"params": ps[2:4], "eps": 1e-6, "lr": lambda t: 1.0 / (1 + 0.02 * t)},
            {"params": ps[4:5], "lr": 0.0},
            {"params": ps[5:], "lr_scale": 0.5},
        ]

    kw: dict[str, Any] = {"use_bias_correction": True, "betas": (0.9, 0.99)}
    ref, oref = run(lambda ps: optim.Prodigy(groups(ps), **kw, impl="reference"), zero_until=3)
    fused, opt = run(lambda ps: optim.Prodigy(groups(ps), **kw, impl="fused"), zero_until=3)
    assert opt.param_groups[0]["k"] == oref.param_groups[0]["k"] == 197
    assert opt.d == pytest.approx(oref.d, rel=1e-10)
    for x, y in zip(fused, ref, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F64)
    assert torch.equal(fused[4].detach(), make_params()[4].detach())  # frozen


def test_prodigy_mixed_dtypes_in_one_group() -> None:
    def mixed(ps):
        return [p if i % 2 else torch.nn.Parameter(p.detach().float()) for i, p in enumerate(ps)]

    def make(impl):
        def f(ps):
            qs = mixed(ps)
            ps[:] = qs
            return optim.Prodigy(qs, weight_decay=0.01, impl=impl)

        return f

    ref, oref = run(make("reference"), steps=50)
    fused, opt = run(make("fused"), steps=50)
    assert opt.d == pytest.approx(oref.d, rel=1e-5)
    for x, y in zip(fused, ref, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------- shared behaviour
ALL = [
    (optim.ScheduleFreeSGD, {"lr": 0.2, "weight_decay": 0.01, "warmup_steps": 5}),
    (optim.ScheduleFreeAdamW, {"lr": 0.01, "weight_decay": 0.01, "warmup_steps": 5}),
    (optim.Prodigy, {"weight_decay": 0.01}),
    (optim.Prodigy, {"betas": (0.0, 0.99), "weight_decay": 0.01, "decouple": False}),
]
IDS = ["sf_sgd", "sf_adamw", "prodigy", "prodigy_beta1_0"]


@pytest.mark.parametrize(("cls", "kwargs"), ALL, ids=IDS)
def test_two_threads_split_tensors(cls, kwargs, monkeypatch) -> None:
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 16)
    shapes = [(), (1,), (1001,), (33, 7), (5,)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _native.threads_for(1300) == 2
        ref, _ = run(lambda ps: cls(ps, **kwargs, impl="reference"), shapes=shapes, steps=30)
        fused, _ = run(lambda ps: cls(ps, **kwargs, impl="fused"), shapes=shapes, steps=30)
    finally:
        torch.set_num_threads(before)
    for x, y in zip(fused, ref, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F64)


@pytest.mark.parametrize(("cls", "kwargs"), ALL, ids=IDS)
def test_params_without_grad_are_untouched(cls, kwargs) -> None:
    ps = make_params()
    opt = cls(ps, **kwargs, impl="fused")
    gen = torch.Generator().manual_seed(3)
    frozen = ps[2].detach().clone()
    for _ in range(10):
        for i, (p, g) in enumerate(zip(ps, grads_for(ps, gen), strict=True)):
            p.grad = None if i == 2 else g
        opt.step()
    assert torch.equal(ps[2].detach(), frozen)
    assert not opt.state[ps[2]]
    assert not torch.equal(ps[3].detach(), make_params()[3].detach())


@pytest.mark.parametrize(("cls", "kwargs"), ALL, ids=IDS)
def test_resume_equals_an_uninterrupted_run(cls, kwargs) -> None:
    ps, opt = run(lambda ps: cls(ps, **kwargs, impl="fused"), steps=40)
    sd = copy.deepcopy(opt.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    rs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = cls(qs, **kwargs, impl="fused")
    opt2.load_state_dict(sd)
    opt3 = cls(rs, **kwargs, impl="reference")  # the state means the same on every path
    opt3.load_state_dict(copy.deepcopy(sd))
    gen = torch.Generator().manual_seed(6)
    for _ in range(40):
        grads = grads_for(ps, gen)
        for group in (ps, qs, rs):
            for p, g in zip(group, grads, strict=True):
                p.grad = g.clone()
        opt.step()
        opt2.step()
        opt3.step()
    for p, q, r in zip(ps, qs, rs, strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
        torch.testing.assert_close(r, p, **F64)


@pytest.mark.parametrize(("cls", "kwargs"), ALL, ids=IDS)
def test_auto_picks_fused_for_float_cpu_and_foreach_for_bfloat16(cls, kwargs, monkeypatch) -> None:
    calls: list[str] = []
    real = _native.call

    def spy(lib, kernel, *args, **kw):
        calls.append(kernel)
        return real(lib, kernel, *args, **kw)

    monkeypatch.setattr(_native, "call", spy)
    for dtype in (torch.float32, torch.float64):
        ps = make_params(dtype=dtype)
        opt = cls(ps, **kwargs)
        for p in ps:
            p.grad = torch.ones_like(p)
        assert opt._select_impl(ps) == "fused"
        opt.step()
    assert calls
    calls.clear()
    ps = make_params(dtype=torch.bfloat16)
    opt = cls(ps, **kwargs)
    for p in ps:
        p.grad = torch.ones_like(p)
    assert opt._select_impl(ps) == "foreach"
    opt.step()
    assert not calls
    explicit = cls(ps, **kwargs, impl="fused")
    with pytest.raises(_native.NativeUnavailableError, match="float32 or float64"):
        explicit.step()


@pytest.mark.parametrize("cls", [optim.ScheduleFreeSGD, optim.ScheduleFreeAdamW])
def test_schedulefree_effective_lr_is_the_step_of_z(cls) -> None:
    ps = make_params()
    opt = cls(ps, lr=0.1, warmup_steps=10, impl="fused")
    gen = torch.Generator().manual_seed(7)
    for k in range(20):
        eff = opt.effective_lr[0]
        assert eff == pytest.approx(0.1 * min(1.0, (k + 1) / 10), rel=1e-14)
        zs = [opt.state[p]["z"].clone() if opt.state[p] else p.detach().clone() for p in ps]
        grads = grads_for(ps, gen)
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        for p, z, g in zip(ps, zs, grads, strict=True):
            d = g
            if cls is optim.ScheduleFreeAdamW:
                bc2 = 1 - 0.999 ** (k + 1)
                d = g / ((opt.state[p]["exp_avg_sq"] / bc2).sqrt() + 1e-8)
            torch.testing.assert_close(opt.state[p]["z"], z - eff * d, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_prodigy_effective_lr_is_the_step_size_the_update_used(beta1) -> None:
    ps = make_params()
    opt = optim.Prodigy(
        ps, lr=0.7, betas=(beta1, 0.99), eps=1e-3, use_bias_correction=True, impl="fused"
    )
    gen = torch.Generator().manual_seed(4)
    for k in range(15):
        eff = opt.effective_lr[0]
        bc = math.sqrt(1 - 0.99 ** (k + 1)) / (1 - beta1 ** (k + 1))
        assert eff == pytest.approx(opt.d * 0.7 * bc, rel=1e-14)
        before = [p.detach().clone() for p in ps]
        grads = grads_for(ps, gen)
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        d_new = opt.d
        for p, x, g in zip(ps, before, grads, strict=True):
            st = opt.state[p]
            num = st["exp_avg"] if beta1 > 0 else d_new * g
            expected = x - eff * num / (st["exp_avg_sq"].sqrt() + d_new * 1e-3)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)
    assert opt.d > 1e-6
