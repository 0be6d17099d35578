"""The public schedule API of bergab optimizers (set_schedule, schedules), the one
is_schedule, the shared argument checks, and the impl -> method table of the base."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from bergab import optim
from bergab import schedules as S  # noqa: N812
from bergab._validate import check_betas, check_bool, is_schedule
from bergab.optim._base import IMPL_METHODS


def _params(n: int = 2) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3)) for _ in range(n)]


def _two_groups(**kw: Any) -> optim.Optimizer:
    a, b = _params()
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, **kw)


def _step(opt: torch.optim.Optimizer) -> None:
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = torch.ones_like(p)
    opt.step()


# ---------------------------------------------------------------------------- set_schedule
def test_set_schedule_on_every_group_applies_at_once_and_drives_the_steps() -> None:
    opt = _two_groups()
    sched = S.linear(1.0, 0.0, 10)
    opt.set_schedule("lr", sched)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 1.0]
    assert opt.schedules(0) == opt.schedules(1) == {"lr": sched}
    for k in range(3):
        _step(opt)
        assert [g["lr"] for g in opt.param_groups] == [sched(k + 1)] * 2


def test_set_schedule_on_one_group_leaves_the_others_alone() -> None:
    opt = _two_groups()
    opt.set_schedule("weight_decay", lambda t: 0.5, group=1)
    assert opt.schedules(0) == {}
    assert list(opt.schedules(1)) == ["weight_decay"]
    assert opt.param_groups[1]["weight_decay"] == 0.5
    assert opt.param_groups[0]["weight_decay"] == 0.0


def test_set_schedule_evaluates_at_the_groups_step_count() -> None:
    opt = _two_groups()
    for _ in range(4):
        _step(opt)
    opt.set_schedule("lr", lambda t: 1.0 / (t + 1))
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 5)


def test_removing_a_schedule_keeps_the_current_value_and_lets_lr_be_written() -> None:
    w = torch.nn.Parameter(torch.ones(1))
    opt = optim.SGD([w], lr=lambda t: 0.5 * 0.5**t)
    _step(opt)
    opt.set_schedule("lr", None)
    assert opt.schedules(0) == {}
    assert opt.param_groups[0]["lr"] == 0.25
    opt.param_groups[0]["lr"] = 0.125
    _step(opt)
    assert opt.param_groups[0]["lr"] == 0.125  # no schedule writes it back


def test_schedules_of_the_constructor_are_reported() -> None:
    lr, wd = S.cosine(0.1, 100), (lambda t: 1e-4)
    opt = optim.AdamW(_params(1), lr=lr, weight_decay=wd)
    assert opt.schedules(0) == {"lr": lr, "weight_decay": wd}
    assert optim.AdamW(_params(1), lr=1e-3).schedules() == {}


def test_set_schedule_survives_state_dict_round_trip() -> None:
    opt = _two_groups()
    sched = S.linear(1.0, 0.0, 10)
    opt.set_schedule("lr", sched)
    _step(opt)
    sd = opt.state_dict()
    assert all("lr_schedule" not in g for g in sd["param_groups"])
    opt.load_state_dict(sd)
    assert opt.schedules(0) == {"lr": sched}
    assert opt.param_groups[0]["lr"] == sched(1)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("momentum", lambda t: 0.9), {}, ValueError, "key must be one of 'lr', 'weight_decay'"),
        (("lr", 0.1), {}, TypeError, "schedule must be a callable step -> value or None"),
        (("lr", float), {}, TypeError, "got type"),
        (("lr", None), {"group": 2}, ValueError, r"group must be an integer in \[0, 1\], got 2"),
        (("lr", None), {"group": -1}, ValueError, r"group must be an integer in \[0, 1\]"),
        (("lr", None), {"group": "0"}, TypeError, "group must be an integer"),
    ],
)
def test_set_schedule_refuses_bad_arguments(args, kwargs, error, match) -> None:
    opt = _two_groups()
    with pytest.raises(error, match=match):
        opt.set_schedule(*args, **kwargs)


def test_schedules_refuses_a_bad_group() -> None:
    with pytest.raises(ValueError, match=r"group must be an integer in \[0, 1\], got 5"):
        _two_groups().schedules(5)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "lamb", "prodigy", "schedulefree_adamw"])
def test_set_schedule_works_for_every_family(name: str) -> None:
    w = torch.nn.Parameter(torch.ones(4))
    lr = 1.0 if name == "prodigy" else 1e-2
    opt = optim.create(name, [w], lr=lr)
    sched = S.constant(lr)
    opt.set_schedule("lr", sched)
    assert opt.schedules(0)["lr"] is sched
    _step(opt)
    assert torch.isfinite(w.detach()).all()


def test_attach_refuses_a_key_a_bergab_schedule_already_drives() -> None:
    opt = _two_groups()
    opt.set_schedule("lr", S.constant(0.1), group=1)
    with pytest.raises(ValueError, match="param group 1 already has a lr schedule"):
        S.attach(opt, S.constant(0.1))
    S.attach(opt, S.constant(0.0), key="weight_decay")  # another key is free


# ---------------------------------------------------------------------------- is_schedule
class _Callable:
    def __call__(self, step: int) -> float:
        return 0.1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (S.cosine(1.0, 10), True),
        (lambda t: 0.1, True),
        (math.exp, True),
        (_Callable(), True),
        (0.1, False),
        (1, False),
        (None, False),
        ("cosine", False),
        (torch.tensor(0.1), False),
        (float, False),
        (_Callable, False),
    ],
)
def test_is_schedule(value: Any, expected: bool) -> None:
    assert is_schedule(value) is expected


def test_is_schedule_is_one_function() -> None:
    assert S.is_schedule is is_schedule


def test_a_class_is_not_taken_as_an_lr_schedule() -> None:
    with pytest.raises(TypeError, match="lr must be a real number, got type"):
        optim.SGD(_params(1), lr=float)


# ---------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    ("value", "kwargs", "match"),
    [
        ((0.9, 1.0), {}, r"betas\[1\] must be in \[0, 1\), got 1.0"),
        ((-0.1, 0.9), {}, r"betas\[0\] must be in \[0, 1\), got -0.1"),
        ((0.0, 0.9), {"beta1_low_open": True}, r"betas\[0\] must be in \(0, 1\), got 0.0"),
        (0.9, {}, r"betas must be a pair \(beta1, beta2\) with each in \[0, 1\), got 0.9"),
        ("ab", {}, "betas must be a pair"),
        ((0.9, 0.99, 0.999), {}, "betas must be a pair"),
        (0.9, {"beta1_low_open": True}, r"with beta1 in \(0, 1\) and beta2 in \[0, 1\)"),
    ],
)
def test_check_betas_names_the_bad_value_and_the_range(value, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_betas(value, **kwargs)


def test_check_betas_returns_floats() -> None:
    assert check_betas([torch.tensor(0.5), 0]) == (0.5, 0.0)


@pytest.mark.parametrize(
    "cls", [optim.Adam, optim.NAdam, optim.LAMB, optim.HypergradientAdam, optim.Prodigy]
)
def test_every_optimizer_reports_betas_alike(cls) -> None:
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\), got 1.0"):
        cls(_params(1), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"betas must be a pair \(beta1, beta2\) with each"):
        cls(_params(1), betas=0.9)


def test_schedulefree_betas_exclude_beta1_zero() -> None:
    with pytest.raises(ValueError, match=r"betas\[0\] must be in \(0, 1\), got 0.0"):
        optim.ScheduleFreeAdamW(_params(1), betas=(0.0, 0.999))


def test_check_bool() -> None:
    assert check_bool("flag", False) is False
    with pytest.raises(TypeError, match="flag must be True or False, got int 1"):
        check_bool("flag", 1)


# ---------------------------------------------------------------------------- impl table
@pytest.mark.parametrize("name", optim.names())
def test_every_impl_an_optimizer_lists_has_its_method(name: str) -> None:
    opt = optim.create(name, _params(1))
    assert set(opt.impls) <= set(type(opt)._impl_table)
    for impl in opt.impls:
        assert type(opt)._impl_table[impl] is getattr(type(opt), IMPL_METHODS[impl])


class _Half(optim.Optimizer):
    """SGD with only a reference step."""

    impls = ("reference",)

    def __init__(self, params: Any, lr: float = 0.1, *, impl: str = "auto") -> None:
        super().__init__(params, {"lr": lr}, impl=impl)

    def _reference(self, group: dict[str, Any], params: list, grads: list) -> None:
        for p, g in zip(params, grads, strict=True):
            p.sub_(g, alpha=group["lr"] * group["lr_scale"])


def test_an_optimizer_defines_only_the_methods_it_has() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = _Half([w], impl="reference")
    _step(opt)
    assert w.detach().tolist() == pytest.approx([0.9, 0.9])
    with pytest.raises(ValueError, match="impl must be one of 'auto', 'reference' for _Half"):
        _Half([w], impl="foreach")


def test_listing_an_impl_without_its_method_fails_at_construction() -> None:
    class Broken(_Half):
        impls = ("reference", "foreach")

    with pytest.raises(TypeError, match=r"Broken lists impl 'foreach' .* no _foreach method"):
        Broken(_params(1))


# ---------------------------------------------------------------------------- parameter dtypes
@pytest.mark.parametrize("name", optim.names())
@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.complex64])
def test_a_parameter_that_is_not_floating_point_is_refused_naming_its_dtype(
    name: str, dtype: torch.dtype
) -> None:
    # an integer/bool/complex tensor would otherwise be accepted and fail (or be rounded)
    # only at the first step, deep inside a kernel
    good, bad = torch.nn.Parameter(torch.ones(3)), torch.zeros(3, dtype=dtype)
    short = str(dtype).removeprefix("torch.")
    with pytest.raises(TypeError, match=rf"parameter 1 of param group 0 has dtype {short};"):
        optim.create(name, [good, bad])
    with pytest.raises(TypeError, match=r"floating point \(float16, bfloat16, float32, float64\)"):
        optim.create(name, [bad])


def test_a_refused_param_group_is_not_added() -> None:
    opt = optim.SGD(_params(1), lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 of param group 1 has dtype int32"):
        opt.add_param_group({"params": [torch.zeros(2, dtype=torch.int32)]})
    with pytest.raises(ValueError, match="lr_scale"):
        opt.add_param_group({"params": _params(1), "lr_scale": -1.0})
    assert len(opt.param_groups) == 1
    _step(opt)  # the optimizer still works on the group it had


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_floating_dtype_is_accepted(dtype: torch.dtype) -> None:
    w = torch.nn.Parameter(torch.ones(3, dtype=dtype))
    opt = optim.AdamW([w], lr=0.1)
    _step(opt)
    assert w.dtype == dtype


# ---------------------------------------------------------------------------- scheduled values
def test_a_schedule_that_leaves_the_range_raises_before_anything_moves() -> None:
    # a plain function as lr used to step with whatever it returned, NaN or negative
    a, b = _params()
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": lambda t: 0.1 if t < 1 else math.nan}])
    _step(opt)  # step 0 at lr 0.1; the value for step 1 is NaN: kept out of the group
    assert opt.param_groups[1]["lr"] == 0.1
    before = [a.detach().clone(), b.detach().clone()]
    with pytest.raises(
        ValueError, match=r"the lr schedule must give values in \[0, inf\), got nan"
    ):
        _step(opt)
    # neither group moved: every group's schedule is checked before the first update
    assert torch.equal(a, before[0])
    assert torch.equal(b, before[1])


@pytest.mark.parametrize("value", ["0.1", True, [0.1]])
def test_a_schedule_that_returns_no_number_is_refused(value: object) -> None:
    # float("0.1") would have stepped with a str's value
    with pytest.raises(TypeError, match="the lr schedule must return a number, got"):
        optim.SGD(_params(1), lr=lambda t: value)


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan])
def test_a_schedule_out_of_range_at_the_start_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="the weight_decay schedule must give values"):
        optim.AdamW(_params(1), lr=0.1, weight_decay=lambda t: value)
    opt = optim.SGD(_params(1), lr=0.1)
    with pytest.raises(ValueError, match="the lr schedule must give values"):
        opt.set_schedule("lr", lambda t: value)


# ---------------------------------------------------------------------------- shared checks
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("sgd", {"momentum": 0.9, "nesterov": "yes"}, "nesterov must be True or False"),
        ("sgd", {"maximize": 1}, "maximize must be True or False, got int 1"),
        ("rmsprop", {"centered": "no"}, "centered must be True or False"),
        ("adam", {"amsgrad": "true"}, "amsgrad must be True or False"),
        ("lamb", {"bias_correction": None}, "bias_correction must be True or False"),
    ],
)
def test_flags_take_only_true_or_false(name: str, kwargs: dict[str, Any], match: str) -> None:
    # 1, "yes" and "no" were accepted as truthy (or compared equal to True)
    with pytest.raises(TypeError, match=match):
        optim.create(name, _params(1), lr=0.1, **kwargs)


@pytest.mark.parametrize("name", ["sgd", "lars", "hypergradient_sgd"])
def test_momentum_above_one_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\], got 1.5"):
        optim.create(name, _params(1), lr=0.1, momentum=1.5)
    optim.create(name, _params(1), lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ([], ValueError, "params must hold at least one tensor or param group"),
        (None, TypeError, "params must be an iterable of tensors .* got NoneType"),
        (torch.zeros(2, requires_grad=True), TypeError, "params must be an iterable .* Tensor"),
        ({"params": []}, TypeError, "params must be an iterable .* got dict"),
        ({torch.zeros(2, requires_grad=True)}, TypeError, "params must be an ordered collection"),
    ],
)
def test_params_that_are_not_a_list_of_tensors_are_named(
    params: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        optim.SGD(params, lr=0.1)
