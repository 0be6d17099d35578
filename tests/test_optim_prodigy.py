"""Prodigy: equal to prodigyopt (several settings, several param groups), the shared D
estimate, effective_lr = d·lr (·bias correction) as the update uses it, resume, 16-bit state."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import prodigyopt
import pytest
import torch

from bergab import optim

SHAPES = [(7,), (3, 5), (2, 3, 4)]


def make_params(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]


def grads_for(params: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.5 * p.detach() for p in params]


def package(params, **kwargs) -> prodigyopt.Prodigy:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints about decoupled decay
        return prodigyopt.Prodigy(params, **kwargs)


SETTINGS = [
    {},
    {"lr": 0.5, "d0": 1e-3, "d_coef": 2.0, "growth_rate": 1.05},
    {"weight_decay": 0.1, "decouple": False, "use_bias_correction": True},
    {"weight_decay": 0.05, "safeguard_warmup": True, "betas": (0.8, 0.99), "beta3": 0.9},
    {"betas": (0.0, 0.99), "weight_decay": 0.01, "decouple": False},
    {"betas": (0.0, 0.99), "weight_decay": 0.01, "use_bias_correction": True},
    {"eps": 1e-4, "d_coef": 0.5},
]


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize("kwargs", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_equals_prodigyopt(kwargs, impl) -> None:
    a, b = make_params(), make_params()
    oa = optim.Prodigy(a, **kwargs, impl=impl)
    ob = package(b, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
        assert oa.d == pytest.approx(ob.param_groups[0]["d"], rel=1e-10)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert oa.param_groups[0]["d_max"] == pytest.approx(ob.param_groups[0]["d_max"], rel=1e-10)


def test_one_d_over_all_groups_equals_prodigyopt() -> None:
    # prodigyopt sums the D statistics over every group; groups may differ in weight decay
    a, b = make_params(), make_params()

    def groups(ps):
        return [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "eps": 1e-6}]

    oa = optim.Prodigy(groups(a), use_bias_correction=True)
    ob = package(groups(b), use_bias_correction=True)
    gen = torch.Generator().manual_seed(2)
    for _ in range(150):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert oa.param_groups[0]["d"] == oa.param_groups[1]["d"] == oa.d
    assert oa.d == pytest.approx(ob.param_groups[0]["d"], rel=1e-10)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_estimate_hyperparameters_must_agree_across_groups() -> None:
    ps = make_params()
    with pytest.raises(ValueError, match="d_coef must be the same in every param group"):
        optim.Prodigy([{"params": ps[:1]}, {"params": ps[1:], "d_coef": 2.0}])
    opt = optim.Prodigy(ps[:1])
    with pytest.raises(ValueError, match="betas must be the same"):
        opt.add_param_group({"params": ps[1:], "betas": (0.8, 0.99)})


def test_a_group_with_lr_zero_is_frozen() -> None:
    # documented deviation: prodigyopt still applies decay/updates to lr-0 groups
    ps = make_params()
    frozen = ps[0].detach().clone()
    opt = optim.Prodigy([{"params": ps[:1], "lr": 0.0}, {"params": ps[1:]}], weight_decay=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        for p, g in zip(ps, grads_for(ps, gen), strict=True):
            p.grad = g
        opt.step()
    assert torch.equal(ps[0].detach(), frozen)
    assert opt.d > 1e-6


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_effective_lr_is_the_step_size_the_update_used(beta1, bias_correction) -> None:
    # read effective_lr before the step; the parameters then move by exactly
    # -effective_lr * m / (sqrt(v) + d_new * eps)   (β1 = 0: d_new * g instead of m)
    ps = make_params()
    opt = optim.Prodigy(
        ps, lr=0.7, betas=(beta1, 0.99), eps=1e-3, use_bias_correction=bias_correction
    )
    gen = torch.Generator().manual_seed(4)
    for k in range(15):
        eff = opt.effective_lr[0]
        d_old = opt.d
        bc = math.sqrt(1 - 0.99 ** (k + 1)) / (1 - beta1 ** (k + 1)) if bias_correction else 1.0
        assert eff == pytest.approx(d_old * 0.7 * bc, rel=1e-14)
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
    assert opt.d > 1e-6  # it did adapt


def test_steps_without_information_move_nothing_and_do_not_count() -> None:
    # while every gradient so far was zero, s = 0 and ||s||_1 = 0: no d, no step, k stays
    # (as prodigyopt); later zero gradients still move the parameters by the momentum
    a, b = make_params(), make_params()
    oa, ob = optim.Prodigy(a, use_bias_correction=True), package(b, use_bias_correction=True)
    gen = torch.Generator().manual_seed(5)
    for t in range(20):
        grads = grads_for(a, gen) if t >= 2 and t % 5 else [torch.zeros_like(p) for p in a]
        for pa, pb, g in zip(a, b, grads, strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        before = [p.detach().clone() for p in a]
        oa.step()
        ob.step()
        moved = not all(torch.equal(p, q) for p, q in zip(a, before, strict=True))
        assert moved == (t >= 2)
    assert oa.param_groups[0]["k"] == ob.param_groups[0]["k"] == 18
    assert oa.param_groups[0]["step"] == 20
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_resume_restores_the_estimate() -> None:
    ps = make_params()
    kw = {"use_bias_correction": True, "growth_rate": 1.1, "weight_decay": 0.01}
    opt = optim.Prodigy(ps, **kw)
    gen = torch.Generator().manual_seed(6)
    for _ in range(25):
        for p, g in zip(ps, grads_for(ps, gen), strict=True):
            p.grad = g
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = optim.Prodigy(qs, **kw)
    opt2.load_state_dict(sd)
    for key in ("d", "d_max", "d_numerator", "k"):
        assert opt2.param_groups[0][key] == opt.param_groups[0][key]
    assert opt2.effective_lr == opt.effective_lr
    for _ in range(25):
        grads = grads_for(ps, gen)
        for p, q, g in zip(ps, qs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert opt2.d == opt.d
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_parameters_keep_float32_state(dtype) -> None:
    # steps of d0 = 1e-6 are below 16-bit resolution (the weights would never move and d
    # never grow): 16-bit weights need a d0 near their resolution, as documented
    ps = make_params(dtype=dtype)
    opt = optim.Prodigy(ps, d0=1e-2)
    gen = torch.Generator().manual_seed(7)
    for _ in range(30):
        for p, g in zip(ps, grads_for(ps, gen), strict=True):
            p.grad = g
        opt.step()
    st = opt.state[ps[0]]
    assert {st[k].dtype for k in ("s", "p0", "exp_avg", "exp_avg_sq")} == {torch.float32}
    assert all(p.dtype == dtype and bool(torch.isfinite(p).all()) for p in ps)
    assert opt.d > 1e-2
    opt2 = optim.Prodigy([torch.nn.Parameter(p.detach().clone()) for p in ps])
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.state[opt2.param_groups[0]["params"][0]]["exp_avg_sq"].dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d0": 0.0}, "d0"),
        ({"d_coef": -1.0}, "d_coef"),
        ({"growth_rate": 0.5}, "growth_rate"),
        ({"eps": 0.0}, "eps"),
        ({"beta3": 1.0}, "beta3"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\]"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        optim.Prodigy(make_params(), **kwargs)
