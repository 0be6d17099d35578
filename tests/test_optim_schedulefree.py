"""Schedule-free SGD/AdamW: equal to the authors' package (with train/eval toggles), modes,
checkpoints in eval mode, effective_lr and the averaging weight, BatchNorm recalibration."""

from __future__ import annotations

import copy

import pytest
import schedulefree
import torch

from bergab import optim
from bergab.optim._foreach import pieces

SHAPES = [(7,), (3, 5), (2, 3, 4)]


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in SHAPES]


def grads_for(params: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.5 * p.detach() for p in params]


CASES = [
    (optim.ScheduleFreeSGD, schedulefree.SGDScheduleFree, {"lr": 0.5}),
    (
        optim.ScheduleFreeSGD,
        schedulefree.SGDScheduleFree,
        {"lr": 0.3, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 30, "r": 0.5},
    ),
    (
        optim.ScheduleFreeSGD,
        schedulefree.SGDScheduleFree,
        {"lr": 0.2, "momentum": 0.95, "warmup_steps": 50, "weight_lr_power": 0.0},
    ),
    (optim.ScheduleFreeAdamW, schedulefree.AdamWScheduleFree, {"lr": 0.01}),
    (
        optim.ScheduleFreeAdamW,
        schedulefree.AdamWScheduleFree,
        {
            "lr": 0.02,
            "betas": (0.85, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.05,
            "warmup_steps": 40,
            "r": 1.0,
            "weight_lr_power": 1.0,
        },
    ),
]


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES)
def test_equals_package_with_train_eval_toggles(ours, theirs, kwargs, impl) -> None:
    a, b = make_params(), make_params()
    oa = ours(a, **kwargs, impl=impl)
    ob = theirs(b, **kwargs)
    ob.train()
    gen = torch.Generator().manual_seed(1)
    for t in range(200):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
        if t % 23 == 7:  # evaluate (x), then go back to training (y)
            oa.eval()
            ob.eval()
            assert not oa.training
            for x, y in zip(a, b, strict=True):
                torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
            oa.train()
            ob.train()
            assert oa.training
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    oa.eval()
    ob.eval()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_param_groups_with_their_own_lr_equal_package() -> None:
    a, b = make_params(), make_params()

    def groups(ps: list[torch.nn.Parameter]) -> list[dict]:
        return [
            {"params": ps[:2], "lr": 0.4, "warmup_steps": 10},
            {"params": ps[2:], "lr": 0.1, "weight_decay": 0.02},
        ]

    oa = optim.ScheduleFreeSGD(groups(a), lr=1.0)
    ob = schedulefree.SGDScheduleFree(groups(b), lr=1.0)
    ob.train()
    gen = torch.Generator().manual_seed(2)
    for _ in range(100):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    oa.eval()
    ob.eval()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_step_in_eval_mode_raises_a_clear_error() -> None:
    ps = make_params()
    opt = optim.ScheduleFreeAdamW(ps)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    opt.eval()
    before = [p.detach().clone() for p in ps]
    with pytest.raises(optim.ScheduleFreeEvalModeError, match=r"call optimizer\.train\(\)"):
        opt.step()
    assert issubclass(optim.ScheduleFreeEvalModeError, RuntimeError)
    assert all(torch.equal(p, q) for p, q in zip(ps, before, strict=True))  # nothing moved
    opt.train()
    opt.step()  # fine again


def test_eval_holds_the_weighted_average_of_z() -> None:
    # track x_{t+1} = (1 - c) x_t + c z_{t+1} by hand from z and the reported weight c
    ps = make_params()
    opt = optim.ScheduleFreeSGD(ps, lr=0.3, warmup_steps=5, r=1.0)
    x = [p.detach().clone() for p in ps]
    gen = torch.Generator().manual_seed(3)
    for _ in range(30):
        c = opt.averaging_weight[0]
        for p, g in zip(ps, grads_for(ps, gen), strict=True):
            p.grad = g
        opt.step()
        for xi, p in zip(x, ps, strict=True):
            xi.mul_(1 - c).add_(opt.state[p]["z"], alpha=c)
    opt.eval()
    for xi, p in zip(x, ps, strict=True):
        torch.testing.assert_close(p.detach(), xi, rtol=1e-12, atol=1e-12)
    opt.train()  # and y = (1 - β) z + β x
    for xi, p in zip(x, ps, strict=True):
        y = 0.1 * opt.state[p]["z"] + 0.9 * xi
        torch.testing.assert_close(p.detach(), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [optim.ScheduleFreeSGD, optim.ScheduleFreeAdamW])
def test_effective_lr_is_the_step_of_z(cls) -> None:
    # z <- z - γ d: read γ before the step, rebuild d from the gradient, compare
    ps = make_params()
    opt = cls(ps, lr=0.05, warmup_steps=8, weight_decay=0.1)
    gen = torch.Generator().manual_seed(4)
    v = [torch.zeros_like(p) for p in ps]
    for t in range(12):
        gamma = opt.effective_lr[0]
        assert gamma == pytest.approx(0.05 * min(1.0, (t + 1) / 8), rel=1e-15)
        grads = grads_for(ps, gen)
        ys = [p.detach().clone() for p in ps]
        zs = [opt.state[p]["z"].clone() if "z" in opt.state[p] else p.detach().clone() for p in ps]
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        for i, p in enumerate(ps):
            d = grads[i]
            if cls is optim.ScheduleFreeAdamW:
                v[i] = 0.999 * v[i] + 0.001 * grads[i] ** 2
                d = grads[i] / ((v[i] / (1 - 0.999 ** (t + 1))).sqrt() + 1e-8)
            d = d + 0.1 * ys[i]
            torch.testing.assert_close(opt.state[p]["z"], zs[i] - gamma * d, rtol=1e-12, atol=1e-14)


def test_checkpoint_in_eval_mode_resumes_like_an_uninterrupted_run() -> None:
    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        ).double()

    gen = torch.Generator().manual_seed(5)
    data = [
        (torch.randn(16, 4, generator=gen).double(), torch.randn(16, 1, generator=gen).double())
        for _ in range(30)
    ]

    def train(net: torch.nn.Module, opt: optim.ScheduleFreeAdamW, batches) -> None:
        for x, y in batches:
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    net = model()
    opt = optim.ScheduleFreeAdamW(net.parameters(), lr=0.01, warmup_steps=5, weight_decay=0.01)
    train(net, opt, data[:15])
    opt.eval()  # evaluate and checkpoint in eval mode, as one should
    ckpt = copy.deepcopy({"model": net.state_dict(), "opt": opt.state_dict()})
    assert all(g["train_mode"] is False for g in ckpt["opt"]["param_groups"])
    opt.train()
    train(net, opt, data[15:])
    opt.eval()

    net2 = model()
    opt2 = optim.ScheduleFreeAdamW(net2.parameters(), lr=0.01, warmup_steps=5, weight_decay=0.01)
    net2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    assert not opt2.training  # the mode came with the checkpoint, as the weights (x) did
    with pytest.raises(optim.ScheduleFreeEvalModeError):
        train(net2, opt2, data[15:16])
    opt2.train()
    train(net2, opt2, data[15:])
    opt2.eval()
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_in_train_mode_also_resumes() -> None:
    ps = make_params()
    opt = optim.ScheduleFreeSGD(ps, lr=0.2, warmup_steps=3)
    gen = torch.Generator().manual_seed(6)
    for _ in range(5):
        for p, g in zip(ps, grads_for(ps, gen), strict=True):
            p.grad = g
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = optim.ScheduleFreeSGD(qs, lr=0.2, warmup_steps=3)
    opt2.eval()  # a fresh optimizer in eval mode: loading brings back the saved mode
    opt2.load_state_dict(sd)
    assert opt2.training
    for _ in range(5):
        grads = grads_for(ps, gen)
        for p, q, g in zip(ps, qs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_modes_are_idempotent_and_new_groups_join_the_current_mode() -> None:
    ps = make_params()
    opt = optim.ScheduleFreeSGD(ps[:2], lr=0.1)
    for p in ps[:2]:
        p.grad = torch.ones_like(p)
    opt.step()
    opt.eval()
    snapshot = [p.detach().clone() for p in ps]
    opt.eval()  # twice: no further change
    assert all(torch.equal(p, q) for p, q in zip(ps, snapshot, strict=True))
    opt.add_param_group({"params": ps[2:]})
    assert not opt.training
    assert opt.param_groups[1]["train_mode"] is False
    opt.train()
    assert opt.training


def test_parameters_never_stepped_are_left_alone_by_the_mode_switch() -> None:
    ps = make_params()
    opt = optim.ScheduleFreeSGD(ps, lr=0.1)
    ps[0].grad = torch.ones_like(ps[0])
    opt.step()
    untouched = ps[1].detach().clone()
    opt.eval()
    opt.train()
    assert torch.equal(ps[1].detach(), untouched)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum": 0.0}, "momentum"),
        ({"momentum": 1.0}, "momentum"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"lr": -0.1}, "lr"),
        ({"r": -1.0}, "r must"),
        ({"weight_lr_power": -2.0}, "weight_lr_power"),
    ],
)
def test_bad_arguments_sgd(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        optim.ScheduleFreeSGD(make_params(), **kwargs)


def test_bad_arguments_adamw() -> None:
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        optim.ScheduleFreeAdamW(make_params(), betas=(0.0, 0.999))
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.ScheduleFreeAdamW(make_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        optim.ScheduleFreeAdamW(make_params(), eps=-1.0)


def test_registry_names() -> None:
    p = [torch.nn.Parameter(torch.zeros(1))]
    for name, cls in [
        ("schedulefree_sgd", optim.ScheduleFreeSGD),
        ("schedule-free-sgd", optim.ScheduleFreeSGD),
        ("schedulefree_adamw", optim.ScheduleFreeAdamW),
        ("schedule_free_adamw", optim.ScheduleFreeAdamW),
    ]:
        assert type(optim.create(name, p)) is cls


def test_recompute_batchnorm_stats_uses_the_current_weights() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    net.eval()
    batches = [torch.randn(8, 3) for _ in range(5)]
    used = optim.recompute_batchnorm_stats(net, [(b, None) for b in batches], num_batches=4)
    assert used == 4
    assert not net.training  # flags restored
    assert not net[1].training
    assert net[1].momentum == 0.1  # restored
    with torch.no_grad():
        feats = [net[0](b) for b in batches[:4]]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(net[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].running_var, var, rtol=1e-5, atol=1e-6)


def test_pieces_cover_every_element_once() -> None:
    big = [torch.arange(10.0), torch.arange(3.0), torch.zeros(2, 2).t()]  # the last is strided
    seen = [torch.zeros_like(t) for t in big]
    for owners, (parts, marks) in pieces([big, seen], numel=4):
        for o, piece, mark in zip(owners, parts, marks, strict=True):
            assert mark.numel() == piece.numel() <= max(4, big[o].numel())
            mark.add_(1.0)
    assert all(bool((s == 1).all()) for s in seen)
