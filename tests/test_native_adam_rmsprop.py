"""bergab's CPU kernels for RMSprop (csrc/rmsprop.c), NAdam and RAdam (csrc/adam.c)
against the readable reference paths, over 200 steps of random problems.

Tolerances: in float64 the kernels do the reference's operations in its order, in T
(only a multiply and an add may be fused into one FMA by the compiler, and torch's own
vectorized ops fuse some too), so the runs agree to a few units in the last place per
step; over 200 steps of these contracting updates that stays below 1e-10 relative. In
float32 the same one-rounding differences (about 6e-8 relative) accumulate to a few 1e-6
absolute on O(1) parameters.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from bergab import optim
from bergab.optim import _native

NATIVE = pytest.mark.skipif(
    _native.library("adam") is None or _native.library("rmsprop") is None,
    reason="bergab's CPU kernels cannot be built here",
)
pytestmark = NATIVE

SHAPES = [(), (1,), (5, 3), (257,)]
F64: dict[str, Any] = {"rtol": 1e-10, "atol": 1e-12}
F32: dict[str, Any] = {"rtol": 1e-5, "atol": 2e-5}


def make_params(
    seed: int, dtype: torch.dtype = torch.float64, shapes: list[Any] = SHAPES
) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def run(
    opt: torch.optim.Optimizer,
    ps: list[torch.nn.Parameter],
    steps: int,
    seed: int = 1,
    start: int = 0,
) -> None:
    """Random gradients plus a pull towards 0; tensor 2 has no gradient on every 7th step
    (it skips the step, so the tensors' step counts differ), tensor 0 a zero one on every
    5th."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(start):  # the same gradients as a run that went through these steps
        for p in ps:
            torch.randn(p.shape, generator=gen, dtype=p.dtype)
    for s in range(start, start + steps):
        for i, p in enumerate(ps):
            g = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.3 * p.detach()
            if i == 0 and s % 5 == 0:
                g = torch.zeros_like(g)
            p.grad = None if i == 2 and s % 7 == 3 else g
        opt.step()


def assert_same_run(
    cls: type, kw: dict[str, Any], dtype: torch.dtype, group: dict[str, Any] | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    a, b = make_params(0, dtype), make_params(0, dtype)
    oa, ob = cls(a, **kw, impl="fused"), cls(b, **kw, impl="reference")
    for o in (oa, ob):
        o.param_groups[0].update(group or {})
    run(oa, a, 200)
    run(ob, b, 200)
    tol = F64 if dtype == torch.float64 else F32
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)
    for p, q in zip(a, b, strict=True):
        sa, sb = oa.state[p], ob.state[q]
        assert sa.keys() == sb.keys()
        for key in sa:
            if key in ("step", "mu_product"):  # equal, also in their float32 rounding
                assert torch.equal(sa[key], sb[key]), key
            else:
                torch.testing.assert_close(sa[key], sb[key], **tol)
    return oa, ob


# ---------------------------------------------------------------------------- RMSprop
RMS_FLAGS = list(
    itertools.product([0.0, 0.1], [0.0, 0.9], [False, True], [False, True], [False, True])
)


@pytest.mark.parametrize(("weight_decay", "momentum", "centered", "inside", "maximize"), RMS_FLAGS)
def test_rmsprop_fused_equals_reference(
    weight_decay: float, momentum: float, centered: bool, inside: bool, maximize: bool
) -> None:
    kw = {
        "lr": 1e-2,
        "alpha": 0.9,
        "eps": 1e-3 if inside else 1e-8,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "centered": centered,
        "eps_inside_sqrt": inside,
        "maximize": maximize,
    }
    assert_same_run(optim.RMSprop, kw, torch.float64)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"alpha": 0.3, "centered": True},  # a lerp weight above 1/2: torch's other form
        {"momentum": 0.9, "centered": True, "weight_decay": 0.1, "maximize": True},
        {"eps_inside_sqrt": True, "eps": 1e-4, "alpha": 0.3, "momentum": 0.5},
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rmsprop_fused_more(kw: dict[str, Any], dtype: torch.dtype) -> None:
    assert_same_run(optim.RMSprop, {"lr": 1e-2, **kw}, dtype)


def test_rmsprop_fused_equals_torch() -> None:
    a, b = make_params(0), make_params(0)
    kw: dict[str, Any] = {"lr": 1e-2, "momentum": 0.5, "centered": True, "weight_decay": 0.01}
    run(optim.RMSprop(a, **kw, impl="fused"), a, 50)
    run(torch.optim.RMSprop(b, **kw), b, 50)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **F64)


# ---------------------------------------------------------------------------- NAdam, RAdam
ADAM_FLAGS = list(itertools.product(["none", "l2", "decoupled"], [False, True], [0.9, 0.3]))


@pytest.mark.parametrize("cls", [optim.NAdam, optim.RAdam])
@pytest.mark.parametrize(("decay", "maximize", "beta1"), ADAM_FLAGS)
def test_adam_variants_fused_equal_reference(
    cls: type, decay: str, maximize: bool, beta1: float
) -> None:
    kw: dict[str, Any] = {
        "lr": 1e-2,
        "betas": (beta1, 0.99),
        "weight_decay": 0.0 if decay == "none" else 0.1,
        "decoupled_weight_decay": decay == "decoupled",
        "maximize": maximize,
    }
    if cls is optim.NAdam:
        kw["momentum_decay"] = 0.05
    oa, _ = assert_same_run(cls, kw, torch.float64)
    steps = sorted({float(s["step"]) for s in oa.state.values()})
    assert len(steps) == 2  # the tensor that skipped steps counts fewer
    if cls is optim.RAdam:  # both sides of the rectification threshold were crossed
        assert steps[0] > 6


@pytest.mark.parametrize("cls", [optim.NAdam, optim.RAdam])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("decay", ["l2", "decoupled"])
def test_adam_variants_fused_amsgrad_and_float32(cls: type, dtype: torch.dtype, decay: str) -> None:
    # amsgrad is no constructor option of NAdam and RAdam, but a group flag they honour
    kw = {"lr": 1e-2, "weight_decay": 0.05, "decoupled_weight_decay": decay == "decoupled"}
    assert_same_run(cls, kw, dtype)
    assert_same_run(cls, kw, dtype, group={"amsgrad": True})


@pytest.mark.parametrize("cls", [optim.NAdam, optim.RAdam])
def test_adam_variants_fused_equal_torch(cls: type) -> None:
    a, b = make_params(0), make_params(0)
    kw = {"lr": 1e-2, "weight_decay": 0.01, "decoupled_weight_decay": True}
    run(cls(a, **kw, impl="fused"), a, 50)
    run(getattr(torch.optim, cls.__name__)(b, **kw), b, 50)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **F64)


# ---------------------------------------------------------------------------- shared
CASES = [
    (optim.RMSprop, {"lr": 1e-2, "momentum": 0.9, "centered": True}),
    (optim.NAdam, {"lr": 1e-2, "weight_decay": 0.1}),
    (optim.RAdam, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}),
]
IDS = ["rmsprop", "nadam", "radam"]


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_threads_split_elements(
    cls: type, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the element ranges of two threads cut tensors anywhere: the same arithmetic per element
    shapes = [(1000,), (3,), (77, 13), ()]
    a, b, c = (make_params(0, shapes=shapes) for _ in range(3))
    oa, ob, oc = (
        cls(a, **kw, impl="fused"),
        cls(b, **kw, impl="fused"),
        cls(c, **kw, impl="reference"),
    )
    monkeypatch.setattr(_native, "MIN_NUMEL_PER_THREAD", 16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _native.threads_for(2000) == 2
        run(oa, a, 30)
        torch.set_num_threads(1)
        run(ob, b, 30)
    finally:
        torch.set_num_threads(threads)
    run(oc, c, 30)
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x, y)
        torch.testing.assert_close(x, z, **F64)


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_params_without_grad_untouched(cls: type, kw: dict[str, Any]) -> None:
    ps = make_params(0)
    before = [p.detach().clone() for p in ps]
    opt = cls(ps, **kw, impl="fused")
    for _ in range(3):
        for i, p in enumerate(ps):
            p.grad = None if i == 1 else torch.ones_like(p)
        opt.step()
    assert torch.equal(ps[1], before[1])
    assert not opt.state[ps[1]]
    assert all(float(opt.state[p]["step"]) == 3 for i, p in enumerate(ps) if i != 1)


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_state_dict_resume_equals_uninterrupted(cls: type, kw: dict[str, Any]) -> None:
    a, b = make_params(0), make_params(0)
    run(cls(a, **kw, impl="fused"), a, 40)
    ob = cls(b, **kw, impl="fused")
    run(ob, b, 15)
    saved = ob.state_dict()
    ob2 = cls(b, **kw, impl="fused")
    ob2.load_state_dict(saved)
    run(ob2, b, 25, start=15)
    for x, y in zip(a, b, strict=True):
        # torch's load_state_dict casts NAdam's mu_product to the parameter's dtype (here
        # float64), so from there on it is rounded differently, as in every other impl
        torch.testing.assert_close(x, y, **F64)


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_counters_of_another_dtype(cls: type, kw: dict[str, Any]) -> None:
    # counters the kernel cannot store (here float64 step tensors) are counted by torch
    a, b = make_params(0), make_params(0)
    oa, ob = cls(a, **kw, impl="fused"), cls(b, **kw, impl="reference")
    run(oa, a, 3)
    run(ob, b, 3)
    for o in (oa, ob):
        for s in o.state.values():
            s["step"] = s["step"].double()
    run(oa, a, 20, start=3)
    run(ob, b, 20, start=3)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **F64)
    for p, q in zip(a, b, strict=True):
        assert torch.equal(oa.state[p]["step"], ob.state[q]["step"])
        assert oa.state[p]["step"].dtype == torch.float64


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_mixed_dtypes_in_one_group(cls: type, kw: dict[str, Any]) -> None:
    def params() -> list[torch.nn.Parameter]:
        ps = make_params(0)
        ps[1] = torch.nn.Parameter(ps[1].detach().float())
        return ps

    a, b = params(), params()
    run(cls(a, **kw, impl="fused"), a, 30)
    run(cls(b, **kw, impl="reference"), b, 30)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **(F64 if x.dtype == torch.float64 else F32))


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_auto_picks_fused_on_float_cpu(
    cls: type, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for dtype, expected in [
        (torch.float32, "fused"),
        (torch.float64, "fused"),
        (torch.bfloat16, "foreach"),
    ]:
        ps = make_params(0, dtype)
        for p in ps:
            p.grad = torch.ones_like(p)
        assert cls(ps, **kw)._select_impl(ps) == expected
    ps = make_params(0, torch.float32)
    for p in ps:
        p.grad = torch.ones_like(p)
    monkeypatch.setattr(_native, "library", lambda family: None)
    assert cls(ps, **kw)._select_impl(ps) == "foreach"


def test_adam_and_adamw_keep_torchs_fused_kernel() -> None:
    assert optim.Adam.native is None
    assert optim.AdamW.native is None
    assert optim.NAdam.native == optim.RAdam.native == "adam"
    assert optim.RMSprop.native == "rmsprop"
    ps = make_params(0, torch.float32)
    for p in ps:
        p.grad = torch.ones_like(p)
    assert optim.AdamW(ps)._select_impl(ps) == "fused"


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_explicit_fused_on_bfloat16_raises_before_counting(cls: type, kw: dict[str, Any]) -> None:
    ps = make_params(0, torch.bfloat16)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt = cls(ps, **kw, impl="fused")
    with pytest.raises(_native.NativeUnavailableError, match="float32 or float64"):
        opt.step()
    assert all(float(opt.state[p]["step"]) == 0 for p in ps)
