"""DoG / LDoG and the polynomial-decay averager: equal to the authors' ``dog`` package,
effective_lr is the η the update used, resume, arguments."""

from __future__ import annotations

import copy
import math

import dog
import pytest
import torch

from bergab import optim

SHAPES = [(7,), (3, 5), (2, 3, 4)]


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in SHAPES]


def grads_for(params: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.5 * p.detach() for p in params]


SETTINGS = [
    {},
    {"reps_rel": 1e-3, "weight_decay": 0.01},
    {"init_eta": 1e-3},
    {"reps_rel": 1e-4, "eps": 1e-4, "lr": 0.8},
    {"init_eta": 0.05, "weight_decay": 0.1, "lr": 1.2},
]


@pytest.mark.parametrize("impl", ["reference", "foreach"])
@pytest.mark.parametrize("kwargs", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
@pytest.mark.parametrize(("ours", "theirs"), [(optim.DoG, dog.DoG), (optim.LDoG, dog.LDoG)])
def test_equals_dog_package(ours, theirs, kwargs, impl) -> None:
    a, b = make_params(), make_params()
    oa, ob = ours(a, **kwargs, impl=impl), theirs(b, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    etas = [float(e) for e in ob.param_groups[0]["eta"]]
    if ours is optim.DoG:
        assert oa.effective_lr[0] == pytest.approx(etas[0], rel=1e-10)
    else:
        assert oa.tensor_lrs[0] == pytest.approx(etas, rel=1e-10)


def test_dog_over_two_groups_equals_package() -> None:
    a, b = make_params(), make_params()

    def groups(ps):
        return [{"params": ps[:1], "reps_rel": 1e-2}, {"params": ps[1:], "weight_decay": 0.01}]

    oa, ob = optim.DoG(groups(a)), dog.DoG(groups(b))
    gen = torch.Generator().manual_seed(2)
    for _ in range(100):
        for pa, pb, g in zip(a, b, grads_for(a, gen), strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [optim.DoG, optim.LDoG])
def test_effective_lr_is_the_eta_the_update_used(cls) -> None:
    ps = make_params()
    opt = cls(ps, reps_rel=1e-2, weight_decay=0.01)
    assert math.isnan(opt.effective_lr[0])  # unknown before the first gradient
    gen = torch.Generator().manual_seed(3)
    x0 = [p.detach().clone() for p in ps]
    rbar = [1e-2 * (1 + float(p.detach().norm())) for p in ps]
    rbar_all = 1e-2 * (1 + math.sqrt(sum(float(p.detach().norm()) ** 2 for p in ps)))
    gsum = [1e-8] * len(ps)
    for _ in range(20):
        before = [p.detach().clone() for p in ps]
        grads = grads_for(ps, gen)
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        full = [g + 0.01 * x for g, x in zip(grads, before, strict=True)]
        # the step each tensor took, read off the parameters
        etas = [
            float(((x - p.detach()) * f).sum() / (f * f).sum())
            for x, p, f in zip(before, ps, full, strict=True)
        ]
        # ... equals the DoG formula written out
        dists = [float((x - s).norm()) for x, s in zip(before, x0, strict=True)]
        if cls is optim.DoG:
            rbar_all = max(rbar_all, math.sqrt(sum(d * d for d in dists)))
            gsum[0] += sum(float(f.pow(2).sum()) for f in full)
            expected = [rbar_all / math.sqrt(gsum[0])] * len(ps)
            assert opt.effective_lr[0] == pytest.approx(expected[0], rel=1e-12)
        else:
            expected = []
            for i, (d, f) in enumerate(zip(dists, full, strict=True)):
                rbar[i] = max(rbar[i], d)
                gsum[i] += float(f.pow(2).sum())
                expected.append(rbar[i] / math.sqrt(gsum[i]))
            sizes = [p.numel() for p in ps]
            mean = sum(e * n for e, n in zip(expected, sizes, strict=True)) / sum(sizes)
            assert opt.effective_lr[0] == pytest.approx(mean, rel=1e-12)
            assert opt.tensor_lrs[0] == pytest.approx(expected, rel=1e-12)
        assert etas == pytest.approx(expected, rel=1e-9)


def test_init_eta_is_the_first_step_and_the_reported_value() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = optim.DoG([p], init_eta=0.125, lr=3.0)
    assert opt.effective_lr == [0.125]
    p.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt.step()
    assert p.tolist() == [0.875, 2.125]
    assert opt.effective_lr == [0.125]


def test_resume_restores_the_distance_and_gradient_sum() -> None:
    for cls in (optim.DoG, optim.LDoG):
        ps = make_params()
        opt = cls(ps, reps_rel=1e-3)
        gen = torch.Generator().manual_seed(4)
        for _ in range(15):
            for p, g in zip(ps, grads_for(ps, gen), strict=True):
                p.grad = g
            opt.step()
        sd = copy.deepcopy(opt.state_dict())
        qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        opt2 = cls(qs, reps_rel=1e-3)
        opt2.load_state_dict(sd)
        assert opt2.effective_lr == opt.effective_lr
        if cls is optim.DoG:  # the running max distance and the gradient sum came back
            for key in ("rbar", "G"):
                assert opt2.param_groups[0][key] == opt.param_groups[0][key] > 0
        else:
            for p, q in zip(ps, qs, strict=True):
                assert opt2.state[q]["rbar"] == opt.state[p]["rbar"] > 0
                assert opt2.state[q]["G"] == opt.state[p]["G"]
                assert torch.equal(opt2.state[q]["x0"], opt.state[p]["x0"])
        for _ in range(15):
            grads = grads_for(ps, gen)
            for p, q, g in zip(ps, qs, grads, strict=True):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            opt2.step()
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_zero_gradient_sum_is_an_error_with_a_hint() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = optim.DoG([p], eps=0.0)
    p.grad = torch.zeros(3)
    with pytest.raises(ValueError, match="eps > 0"):
        opt.step()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr"),
        ({"reps_rel": 0.0}, "reps_rel"),
        ({"init_eta": -1.0}, "init_eta"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        optim.LDoG(make_params(), **kwargs)


# ---------------------------------------------------------------------------- averager
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 1)
    ).double()


@pytest.mark.parametrize("gamma", [8.0, 0.0, 3.5])
def test_averager_equals_dog_package(gamma) -> None:
    ours_model, their_model = small_model(), small_model()
    ours = optim.PolynomialDecayAverager(ours_model, gamma=gamma)
    theirs = dog.PolynomialDecayAverager(their_model, gamma=gamma)
    o1, o2 = optim.DoG(ours_model.parameters()), dog.DoG(their_model.parameters())
    gen = torch.Generator().manual_seed(5)
    for _ in range(60):
        x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 1, generator=gen, dtype=torch.float64)
        for model, opt in ((ours_model, o1), (their_model, o2)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        ours.step()
        theirs.step()
    averaged = ours.averaged_state_dict()
    reference = theirs.averaged_model.state_dict()
    assert averaged.keys() == reference.keys()  # buffers (BatchNorm statistics) included
    for key, value in reference.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-10, atol=1e-12)
    assert ours.t == theirs.t == 61


def test_averaged_parameters_swaps_in_and_out() -> None:
    model = small_model()
    avg = optim.PolynomialDecayAverager(model, gamma=0.0)
    values = []
    for k in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(k))
        values.append([p.detach().clone() for p in model.parameters()])
        avg.step()
    live = [p.detach().clone() for p in model.parameters()]
    with avg.averaged_parameters():
        for p, *vs in zip(model.parameters(), *values, strict=True):
            torch.testing.assert_close(p.detach(), sum(vs) / 4)  # gamma 0: the plain mean
    for p, q in zip(model.parameters(), live, strict=True):
        assert torch.equal(p.detach(), q)


def test_averaged_parameters_restores_after_an_exception() -> None:
    model = small_model()
    avg = optim.PolynomialDecayAverager(model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    live = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"), avg.averaged_parameters():
        raise RuntimeError("boom")
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), live, strict=True))


def test_averager_state_dict_round_trip() -> None:
    model = small_model()
    avg = optim.PolynomialDecayAverager(model)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        avg.step()
    sd = copy.deepcopy(avg.state_dict())
    other = optim.PolynomialDecayAverager(small_model())
    other.load_state_dict(sd)
    assert other.t == 4
    for key, value in avg.averaged_state_dict().items():
        assert torch.equal(other.averaged_state_dict()[key], value)
    with pytest.raises(ValueError, match="lacks the averages"):
        other.load_state_dict({"t": 1, "averages": {}})
    with pytest.raises(ValueError, match="gamma"):
        optim.PolynomialDecayAverager(model, gamma=-1.0)
