"""bergab's CPU kernels for DoG / LDoG (``csrc/dog.c``) and hypergradient SGD / Adam
(``csrc/hypergradient.c``): ``impl="fused"`` equals the reference over 200 steps for every
option, in float64 to 1e-10 and in float32 as close to the float64 result as the float32
reference; threads, parameters without gradients, resume, the kept ‖x − x0‖² of DoG,
``effective_lr``, and what ``auto`` picks.

Tolerances: the kernels add up the norms and dot products in another order than torch
(32 double lanes in a fixed order; torch: its own reduction tree), and fold
some scalars differently (Adam-HD: c·m/(√v + ε√b2) like the foreach path), so float64
results agree to rounding (about 1e-15 after 200 steps, checked to 1e-10). In float32 the
two orders differ by float32 rounding, which a self-tuned step size (η, α) feeds back:
there the test asks that the fused result be as close to the float64 reference as the
float32 reference is (within a factor 2 plus 1e-6).
"""

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
from bergab.optim._base import Optimizer
from bergab.optim.hypergradient import adam_hd_reference

pytestmark = pytest.mark.skipif(
    _native.library("dog") is None or _native.library("hypergradient") is None,
    reason="bergab's CPU kernels cannot be built here",
)

SHAPES = [(7,), (3, 5), (), (1,), (40, 50)]
Factory = Callable[..., Optimizer]


def make_params(
    shapes: list[tuple[int, ...]], dtype: torch.dtype, seed: int = 0
) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    base = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    return [torch.nn.Parameter(b.to(dtype)) for b in base]


def set_grads(ps: Sequence[torch.Tensor], gen: torch.Generator, t: int, skip: int = 0) -> None:
    """Gradients of a noisy quadratic (drawn in float64, so every dtype sees the same);
    with ``skip``, the second tensor has no gradient every ``skip``-th step."""
    for i, p in enumerate(ps):
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        p.grad = (0.3 * noise + 0.5 * p.detach().double()).to(p.dtype)
        if skip and i == 1 and t % skip == 0:
            p.grad = None


def grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None
    return p.grad


def run(
    factory: Factory,
    impl: str,
    dtype: torch.dtype = torch.float64,
    *,
    steps: int = 200,
    shapes: list[tuple[int, ...]] | None = None,
    skip: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """The parameters after ``steps`` (flat, float64) and effective_lr after each step."""
    ps = make_params(shapes or SHAPES, dtype)
    opt = factory(ps, impl=impl)
    gen = torch.Generator().manual_seed(1)
    lrs = []
    for t in range(steps):
        set_grads(ps, gen, t, skip)
        opt.step()
        lrs.append(opt.effective_lr[0])
    return torch.cat([p.detach().double().reshape(-1) for p in ps]), lrs


def check_float64(factory: Factory, **kw: Any) -> None:
    ref, ref_lrs = run(factory, "reference", **kw)
    fused, lrs = run(factory, "fused", **kw)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    assert lrs == pytest.approx(ref_lrs, rel=1e-10, abs=1e-14)


def check_float32(factory: Factory, **kw: Any) -> None:
    ref64, _ = run(factory, "reference", **kw)
    ref32, _ = run(factory, "reference", torch.float32, **kw)
    fused32, _ = run(factory, "fused", torch.float32, **kw)
    scale = float(ref64.abs().max())
    err_ref = float((ref32 - ref64).abs().max()) / scale
    err_fused = float((fused32 - ref64).abs().max()) / scale
    assert err_fused <= 2 * err_ref + 1e-6, (err_fused, err_ref)


# ---------------------------------------------------------------------------- settings
DOG_SETTINGS: list[dict[str, Any]] = [
    {},
    {"reps_rel": 1e-3, "weight_decay": 0.01},
    {"init_eta": 1e-3},
    {"reps_rel": 1e-4, "eps": 1e-4, "lr": 0.8},
    {"init_eta": 0.05, "weight_decay": 0.1, "lr": 1.2},
    {"eps": 0.0},  # LDoG: G = 0 before the first step, the two-call path
    {"lr": lambda step: 1.0 / (1 + step / 50)},
]

SGD_SETTINGS: list[dict[str, Any]] = [
    {"momentum": mu, "nesterov": nesterov, "weight_decay": wd, "multiplicative": mult}
    for mu, nesterov, wd, mult in itertools.product((0.0, 0.9), (False, True), (0.0, 0.01), (0, 1))
    if not (nesterov and mu == 0)
]
ADAM_SETTINGS: list[dict[str, Any]] = [
    {"betas": betas, "weight_decay": wd, "multiplicative": mult}
    for betas, wd, mult in itertools.product(((0.9, 0.999), (0.3, 0.9)), (0.0, 0.01), (0, 1))
]


def dog_factory(cls: type, kw: dict[str, Any]) -> Factory:
    return lambda ps, impl: cls(ps, impl=impl, **kw)


def sgd_factory(kw: dict[str, Any], **extra: Any) -> Factory:
    kw = {**kw, "multiplicative": bool(kw.get("multiplicative", False))}
    beta = 0.02 if kw["multiplicative"] else 2e-3
    base = {"lr": 1e-2, "hypergrad_lr": beta, "max_lr": 0.2, **extra}
    return lambda ps, impl: optim.HypergradientSGD(ps, impl=impl, **base, **kw)


def adam_factory(kw: dict[str, Any], **extra: Any) -> Factory:
    kw = {**kw, "multiplicative": bool(kw.get("multiplicative", False))}
    beta = 0.02 if kw["multiplicative"] else 1e-4
    base = {"lr": 1e-2, "hypergrad_lr": beta, "min_lr": 1e-3, "max_lr": 0.05, **extra}
    return lambda ps, impl: optim.HypergradientAdam(ps, impl=impl, **base, **kw)


def ids(settings: list[dict[str, Any]]) -> list[str]:
    return [",".join(f"{k}={v}" for k, v in s.items() if not callable(v)) or "-" for s in settings]


# ---------------------------------------------------------------------------- equality
@pytest.mark.parametrize("kw", DOG_SETTINGS, ids=ids(DOG_SETTINGS))
@pytest.mark.parametrize("cls", [optim.DoG, optim.LDoG])
def test_dog_fused_equals_reference(cls: type, kw: dict[str, Any]) -> None:
    check_float64(dog_factory(cls, kw))


@pytest.mark.parametrize("kw", SGD_SETTINGS, ids=ids(SGD_SETTINGS))
def test_sgd_hd_fused_equals_reference(kw: dict[str, Any]) -> None:
    check_float64(sgd_factory(kw))


@pytest.mark.parametrize("kw", ADAM_SETTINGS, ids=ids(ADAM_SETTINGS))
def test_adam_hd_fused_equals_reference(kw: dict[str, Any]) -> None:
    check_float64(adam_factory(kw))


@pytest.mark.parametrize(
    "factory",
    [
        dog_factory(optim.DoG, {}),
        dog_factory(optim.DoG, {"weight_decay": 0.01, "init_eta": 1e-3}),
        dog_factory(optim.LDoG, {"reps_rel": 1e-3, "weight_decay": 0.01}),
        sgd_factory({}),
        sgd_factory({"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        sgd_factory({"momentum": 0.9, "multiplicative": True}),
        adam_factory({}),
        adam_factory({"betas": (0.3, 0.9), "weight_decay": 0.01, "multiplicative": True}),
    ],
    ids=["dog", "dog-wd", "ldog-wd", "sgd", "nesterov-wd", "momentum-mult", "adam", "adam-b03"],
)
def test_float32_within_float32_rounding(factory: Factory) -> None:
    check_float32(factory)


def test_clamps_and_schedules() -> None:
    """α pinned at min_lr / max_lr for a while, and a schedule rescaling it."""
    check_float64(sgd_factory({"momentum": 0.5}, max_lr=0.03, min_lr=5e-3))
    check_float64(adam_factory({}, min_lr=9e-3, max_lr=1.1e-2))
    check_float64(sgd_factory({}, lr=lambda step: 1e-2 * 0.99**step))
    check_float64(adam_factory({"multiplicative": True}, lr=lambda step: 1e-2 / (1 + step)))


def test_several_groups() -> None:
    def dog_groups(ps: list[torch.Tensor], impl: str) -> Optimizer:
        groups = [
            {"params": ps[:2], "reps_rel": 1e-2},
            {"params": ps[2:], "weight_decay": 0.01, "lr_scale": 0.5},
        ]
        return optim.DoG(groups, impl=impl)

    def sgd_groups(ps: list[torch.Tensor], impl: str) -> Optimizer:
        groups = [
            {"params": ps[:2]},
            {"params": ps[2:], "momentum": 0.9, "nesterov": True, "hypergrad_lr": 1e-3},
        ]
        return optim.HypergradientSGD(groups, lr=1e-2, hypergrad_lr=2e-3, impl=impl)

    check_float64(dog_groups)
    check_float64(sgd_groups)


# ---------------------------------------------------------------------------- threads
@pytest.mark.parametrize(
    "factory",
    [
        dog_factory(optim.DoG, {"weight_decay": 0.01}),
        dog_factory(optim.LDoG, {}),
        sgd_factory({"momentum": 0.9, "nesterov": True, "multiplicative": True}),
        sgd_factory({"momentum": 0.9}),
        adam_factory({"weight_decay": 0.01}),
    ],
    ids=["dog", "ldog", "nesterov", "momentum", "adam"],
)
def test_threads(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        shapes = [(1000,), (37, 29), (), (5,), (3000,)]
        assert _native.threads_for(sum(math.prod(s) for s in shapes)) == 2
        check_float64(factory, shapes=shapes, steps=50)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- missing grads
@pytest.mark.parametrize(
    "factory",
    [
        dog_factory(optim.DoG, {}),
        dog_factory(optim.LDoG, {"weight_decay": 0.01}),
        sgd_factory({}),
        sgd_factory({"momentum": 0.9}),
        sgd_factory({"momentum": 0.9, "nesterov": True}),
        adam_factory({"multiplicative": True}),
    ],
    ids=["dog", "ldog", "sgd", "momentum", "nesterov", "adam"],
)
def test_params_without_grad(factory: Factory) -> None:
    check_float64(factory, skip=3)
    ps = make_params(SHAPES, torch.float32)
    opt = factory(ps, impl="fused")
    gen = torch.Generator().manual_seed(4)
    for t in range(1, 7):
        set_grads(ps, gen, t, skip=3)
        before = ps[1].detach().clone()
        opt.step()
        if t % 3 == 0:
            assert torch.equal(ps[1], before)
        else:
            assert not torch.equal(ps[1], before)


@pytest.mark.parametrize(
    "factory",
    [
        dog_factory(optim.DoG, {"weight_decay": 0.01}),
        dog_factory(optim.LDoG, {"weight_decay": 0.01}),
        sgd_factory({"weight_decay": 0.01}),
        sgd_factory({"momentum": 0.9, "weight_decay": 0.01}),
        sgd_factory({"momentum": 0.9, "nesterov": True}),
        adam_factory({"weight_decay": 0.01}),
    ],
    ids=["dog", "ldog", "sgd", "momentum", "nesterov", "adam"],
)
def test_gradients_are_left_alone(factory: Factory) -> None:
    """The kernels add λθ on the fly and never write the gradients (SGD-HD passes them
    for the list its mode does not use)."""
    ps = make_params(SHAPES, torch.float32)
    opt = factory(ps, impl="fused")
    gen = torch.Generator().manual_seed(11)
    for t in range(3):
        set_grads(ps, gen, t)
        kept = [grad(p).clone() for p in ps]
        opt.step()
        assert all(torch.equal(grad(p), g) for p, g in zip(ps, kept, strict=True))


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    "factory",
    [
        dog_factory(optim.DoG, {"weight_decay": 0.01}),
        dog_factory(optim.LDoG, {}),
        sgd_factory({"momentum": 0.9, "nesterov": True}),
        adam_factory({"multiplicative": True}),
    ],
    ids=["dog", "ldog", "nesterov", "adam"],
)
def test_resume_equals_uninterrupted(factory: Factory) -> None:
    ps = make_params(SHAPES, torch.float64)
    opt = factory(ps, impl="fused")
    gen = torch.Generator().manual_seed(5)
    for t in range(100):
        set_grads(ps, gen, t)
        opt.step()
    saved_params = copy.deepcopy([p.detach() for p in ps])
    saved = copy.deepcopy(opt.state_dict())
    gen_state = gen.get_state()
    for t in range(100, 200):
        set_grads(ps, gen, t)
        opt.step()
    qs = [torch.nn.Parameter(p.clone()) for p in saved_params]
    opt2 = factory(qs, impl="fused")
    opt2.load_state_dict(saved)
    gen.set_state(gen_state)
    for t in range(100, 200):
        set_grads(qs, gen, t)
        opt2.step()
    # the kept ‖x − x0‖² (DoG) is recomputed after loading: another summation order
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)
    assert opt2.effective_lr == pytest.approx(opt.effective_lr, rel=1e-12)


# ---------------------------------------------------------------------------- DoG's kept distance
@pytest.mark.parametrize("cls", [optim.DoG, optim.LDoG])
def test_changed_params_invalidate_the_kept_distance(cls: type) -> None:
    """In-place changes (a new _version) and a new storage make the kernels recompute
    ‖x − x0‖² instead of using the one kept from the last update."""
    results = []
    for impl in ("reference", "fused"):
        ps = make_params(SHAPES, torch.float64)
        opt = cls(ps, reps_rel=1e-2, impl=impl)
        gen = torch.Generator().manual_seed(6)
        for t in range(30):
            set_grads(ps, gen, t)
            opt.step()
            with torch.no_grad():
                if t == 10:
                    ps[0].mul_(3.0)  # bumps _version
                if t == 20:
                    ps[4].data = ps[4].data * 2.0  # new storage, _version of the new one
        results.append((torch.cat([p.detach().reshape(-1) for p in ps]), opt.effective_lr))
    (ref, ref_lr), (fused, lr) = results
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    assert lr == pytest.approx(ref_lr, rel=1e-10)


def test_kept_distance_is_the_distance() -> None:
    ps = make_params(SHAPES, torch.float64)
    opt = optim.DoG(ps, reps_rel=1e-2)
    gen = torch.Generator().manual_seed(7)
    for t in range(5):
        set_grads(ps, gen, t)
        opt.step()
    x0s = [opt.state[p]["x0"] for p in ps]
    for p, x0, kept in zip(ps, x0s, opt._dist_sq.known(ps, x0s), strict=True):
        dist = float(((p.detach() - x0) ** 2).sum())
        assert kept == pytest.approx(dist, rel=1e-12)


def test_ldog_zero_gradient_sum_raises_like_reference() -> None:
    for impl in ("reference", "fused"):
        ps = make_params(SHAPES, torch.float64)
        opt = optim.LDoG(ps, eps=0.0, impl=impl)
        for p in ps:
            p.grad = torch.zeros_like(p)
        with pytest.raises(ValueError, match="positive gradient sum"):
            opt.step()


# ---------------------------------------------------------------------------- effective_lr
def test_effective_lr_is_the_step_the_fused_update_used() -> None:
    ps = make_params(SHAPES, torch.float64)
    dog_opt = optim.DoG(ps, reps_rel=1e-2, weight_decay=0.01, impl="fused")
    gen = torch.Generator().manual_seed(8)
    for t in range(5):
        set_grads(ps, gen, t)
        before = [p.detach().clone() for p in ps]
        dog_opt.step()
        eta = dog_opt.effective_lr[0]
        for p, x in zip(ps, before, strict=True):
            expected = x - eta * (grad(p) + 0.01 * x)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)

    ps = make_params(SHAPES, torch.float64)
    sgd = optim.HypergradientSGD(ps, lr=1e-2, hypergrad_lr=1e-3, impl="fused")
    for t in range(5):
        set_grads(ps, gen, t)
        before = [p.detach().clone() for p in ps]
        sgd.step()
        alpha = sgd.effective_lr[0]
        for p, x in zip(ps, before, strict=True):
            torch.testing.assert_close(p.detach(), x - alpha * grad(p), rtol=1e-12, atol=1e-15)

    ps = make_params(SHAPES, torch.float64)
    adam = optim.HypergradientAdam(ps, lr=1e-2, hypergrad_lr=1e-3, impl="fused")
    for t in range(5):
        set_grads(ps, gen, t)
        before = [p.detach().clone() for p in ps]
        m = [adam.state[p]["exp_avg"].clone() if t else torch.zeros_like(p) for p in ps]
        v = [adam.state[p]["exp_avg_sq"].clone() if t else torch.zeros_like(p) for p in ps]
        adam.step()
        bias = [(1 - 0.9 ** (t + 1), 1 - 0.999 ** (t + 1))] * len(ps)
        grads = [grad(p) for p in ps]
        hyper = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
        adam_hd_reference(before, grads, m, v, bias, lr=adam.effective_lr[0], **hyper)
        for p, x in zip(ps, before, strict=True):
            torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    "cls", [optim.DoG, optim.LDoG, optim.HypergradientSGD, optim.HypergradientAdam]
)
def test_auto_picks_fused_on_cpu_float_and_foreach_for_bfloat16(cls: type) -> None:
    for dtype, expected in (
        (torch.float32, "fused"),
        (torch.float64, "fused"),
        (torch.bfloat16, "foreach"),
    ):
        ps = make_params(SHAPES, dtype)
        opt = cls(ps)
        gen = torch.Generator().manual_seed(9)
        set_grads(ps, gen, 1)
        assert opt._select_impl(ps) == expected
        opt.step()  # runs on that path
        assert all(torch.isfinite(p).all() for p in ps)
    ps = make_params(SHAPES, torch.bfloat16)
    set_grads(ps, gen, 1)
    opt = cls(ps, impl="fused")
    with pytest.raises(_native.NativeUnavailableError):
        opt.step()


@pytest.mark.parametrize(
    ("factory", "key"),
    [
        (dog_factory(optim.DoG, {}), "x0"),
        (dog_factory(optim.LDoG, {}), "x0"),
        (sgd_factory({}), "prev_direction"),
        (adam_factory({}), "exp_avg"),
    ],
    ids=["dog", "ldog", "sgd", "adam"],
)
def test_unsuitable_state_falls_back_under_auto(factory: Factory, key: str) -> None:
    """A non-contiguous state tensor: "auto" runs foreach, "fused" raises."""
    results = []
    for impl in ("reference", "auto", "fused"):
        ps = make_params(SHAPES, torch.float64)
        opt = factory(ps, impl=impl)
        gen = torch.Generator().manual_seed(10)
        for t in range(6):
            set_grads(ps, gen, t)
            if t == 3:
                state = opt.state[ps[1]]  # shape (3, 5)
                strided = torch.empty(5, 3, dtype=torch.float64).t()
                state[key] = strided.copy_(state[key])
                assert not state[key].is_contiguous()
                if impl == "fused":
                    with pytest.raises(_native.NativeUnavailableError):
                        opt.step()
                    break
            opt.step()
        results.append(torch.cat([p.detach().reshape(-1) for p in ps]))
    torch.testing.assert_close(results[1], results[0], rtol=1e-10, atol=1e-12)
