"""param_groups: which parameters decay, the layer-wise lr scales, and that the scales reach
the update of every bergab optimizer, with schedules and with torch LR schedulers."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from bergab import optim
from bergab.optim import param_groups
from tests.optim_specs import SPECS, Spec, spec_ids


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # on the model itself: layer 0
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
        self.act = nn.ReLU()  # no parameters: not a layer
        self.norm = nn.LayerNorm((2, 3))
        self.head = nn.Linear(6, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.body(self.embed(idx) * self.scale)
        h = self.norm(self.act(h).view(-1, 2, 3)).view(-1, 6)
        return self.head(h)


def ids(group: dict[str, Any]) -> set[int]:
    return {id(p) for p in group["params"]}


def assert_partition(groups: list[dict[str, Any]], model: nn.Module) -> None:
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)), "a parameter is in two groups"
    assert set(seen) == {id(p) for p in model.parameters()}, "a parameter is missing"
    assert all(g["params"] for g in groups), "an empty group"


def test_decay_and_no_decay_split() -> None:
    torch.manual_seed(0)
    m = Net()
    groups = param_groups(m, weight_decay=0.05)
    assert_partition(groups, m)
    assert len(groups) == 2
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05
    assert no_decay["weight_decay"] == 0.0
    assert ids(decay) == {id(m.embed.weight), id(m.body[0].weight), id(m.head.weight)}
    # biases, BatchNorm's weight and bias, the 2-D LayerNorm weight, the 0-D scalar
    assert ids(no_decay) == {
        id(p)
        for p in [
            m.scale,
            m.body[0].bias,
            m.body[1].weight,
            m.body[1].bias,
            m.norm.weight,
            m.norm.bias,
            m.head.bias,
        ]
    }
    assert "lr_scale" not in decay
    assert "lr" not in decay


def test_embeddings_optional_and_substring_rules() -> None:
    m = Net()
    groups = param_groups(m, 0.1, no_decay_embeddings=True)
    assert id(m.embed.weight) in ids(groups[1])
    assert_partition(groups, m)
    # HF-style substrings: only names containing them are exempt
    groups = param_groups(m, 0.1, no_decay=["bias", "norm."])
    assert ids(groups[1]) == {
        id(p) for p in [m.body[0].bias, m.body[1].bias, m.norm.weight, m.norm.bias, m.head.bias]
    }
    # None: everything decays, one group
    groups = param_groups(m, 0.1, no_decay=None)
    assert len(groups) == 1
    assert groups[0]["weight_decay"] == 0.1
    assert_partition(groups, m)


def test_shared_and_frozen_parameters() -> None:
    m = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    m[1].weight = m[0].weight  # tied
    groups = param_groups(m, 0.1)
    assert_partition(groups, m)
    assert sum(len(g["params"]) for g in groups) == 1
    m2 = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    m2[0].weight.requires_grad_(False)
    assert sum(len(g["params"]) for g in param_groups(m2, 0.1)) == 4
    assert sum(len(g["params"]) for g in param_groups(m2, 0.1, trainable_only=True)) == 3


def test_weight_decay_zero_merges_groups() -> None:
    m = Net()
    groups = param_groups(m, 0.0, layer_decay=0.5)
    assert_partition(groups, m)
    assert len(groups) == 4  # one per layer: (scale, embed), body, norm, head


def test_layer_decay_by_top_level_order() -> None:
    m = Net()
    groups = param_groups(m, 0.01, layer_decay=0.75)
    assert_partition(groups, m)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    # layers: 0 = model's own + embed, 1 = body, 2 = norm, 3 = head (act has no parameters)
    expected = {
        m.scale: 0.75**3,
        m.embed.weight: 0.75**3,
        m.body[0].weight: 0.75**2,
        m.body[1].bias: 0.75**2,
        m.norm.weight: 0.75,
        m.head.weight: 1.0,
        m.head.bias: 1.0,
    }
    for p, s in expected.items():
        assert scale_of[id(p)] == pytest.approx(s, rel=1e-15)
    # ordered by layer, decayed group first within a layer
    assert [g["lr_scale"] for g in groups] == sorted(g["lr_scale"] for g in groups)


def test_layer_of_callable() -> None:
    blocks = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])
    m = nn.ModuleDict({"stem": nn.Linear(3, 3), "blocks": blocks})

    def layer_of(name: str) -> int:
        return int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0

    groups = param_groups(m, 0.0, layer_decay=0.5, layer_of=layer_of)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    assert scale_of[id(m["stem"].weight)] == 0.125
    assert [scale_of[id(b.weight)] for b in blocks] == [0.25, 0.5, 1.0]


def test_no_decay_options_reach_lars() -> None:
    m = nn.Linear(3, 2)
    groups = param_groups(m, 1e-4, no_decay_options={"exclude_from_adaptation": True})
    assert groups[1]["exclude_from_adaptation"] is True
    assert "exclude_from_adaptation" not in groups[0]
    opt = optim.LARS(groups, lr=0.1)
    assert [g["exclude_from_adaptation"] for g in opt.param_groups] == [False, True]


# ---------------------------------------------------------------------- the scales reach updates
def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)
    ).double()


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, sched: Any = None) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 1, generator=gen, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()


def explicit_groups(
    groups: list[dict[str, Any]], model: nn.Module, twin: nn.Module, lr: Any
) -> list[dict[str, Any]]:
    """The same groups for ``twin``, each with its lr multiplied out by hand (no lr_scale)."""
    params = dict(zip([id(p) for p in model.parameters()], twin.parameters(), strict=True))
    out = []
    for g in groups:
        s = g["lr_scale"]
        glr = (lambda t, s=s: s * lr(t)) if callable(lr) else lr * s
        out.append(
            {
                "params": [params[id(p)] for p in g["params"]],
                "weight_decay": g["weight_decay"],
                "lr": glr,
            }
        )
    return out


ONE_PER_CLASS = list({s.cls: s for s in SPECS if not s.lr_free}.values())


@pytest.mark.parametrize("spec", ONE_PER_CLASS, ids=spec_ids(ONE_PER_CLASS))
def test_layer_decay_reaches_the_update(spec: Spec) -> None:
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in ("lr", "weight_decay", "maximize")}
    lr = spec.kwargs["lr"]
    a, b = make_model(0), make_model(0)
    ga = param_groups(a, 0.01, layer_decay=0.6)
    assert len({g["lr_scale"] for g in ga}) == 4  # Linear, LayerNorm, Linear, Linear
    gb = explicit_groups(ga, a, b, lr)
    train(a, spec.cls(ga, lr=lr, **kwargs), 25)
    train(b, spec.cls(gb, lr=lr, **kwargs), 25)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert not torch.equal(a[0].weight, make_model(0)[0].weight)  # it trained


@pytest.mark.parametrize("cls", [optim.SGD, optim.LAMB])
def test_layer_decay_with_a_schedule(cls: type) -> None:
    sched = lambda t: 0.05 * 0.5 * (1 + math.cos(math.pi * t / 30))  # noqa: E731
    a, b = make_model(0), make_model(0)
    ga = param_groups(a, 0.01, layer_decay=0.5, lr=sched)
    opt = cls(ga)
    train(a, opt, 10)
    scales = [g["lr_scale"] for g in opt.param_groups]
    assert opt.effective_lr == pytest.approx([sched(10) * s for s in scales], rel=1e-12)
    train(a, opt, 20)
    train(b, cls(explicit_groups(ga, a, b, sched)), 30)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_layer_decay_with_a_torch_scheduler_matches_torch_with_applied_scales() -> None:
    # bergab: lr_scale applied by the optimizer; torch: lr * scale written into each group
    lam = lambda t: 1.0 / (1 + t)  # noqa: E731
    a, b = make_model(0), make_model(0)
    o1 = optim.SGD(param_groups(a, 0.01, layer_decay=0.7), lr=0.05, momentum=0.9)
    o2 = torch.optim.SGD(
        param_groups(b, 0.01, layer_decay=0.7, lr=0.05, apply_lr_scale=True), momentum=0.9
    )
    assert all("lr_scale" not in g for g in o2.param_groups)
    s1 = torch.optim.lr_scheduler.LambdaLR(o1, lam)
    s2 = torch.optim.lr_scheduler.LambdaLR(o2, lam)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    for _ in range(15):
        for model, opt, sch in ((a, o1, s1), (b, o2, s2)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            sch.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"weight_decay": 0.1, "layer_decay": 0.0}, ValueError, "layer_decay"),
        ({"weight_decay": 0.1, "layer_decay": 1.5}, ValueError, "layer_decay"),
        ({"weight_decay": 0.1, "lr": -0.1}, ValueError, "lr"),
        ({"weight_decay": 0.1, "layer_decay": 0.5, "apply_lr_scale": True}, ValueError, "lr"),
        (
            {"weight_decay": 0.1, "layer_decay": 0.5, "lr": lambda t: 0.1, "apply_lr_scale": True},
            ValueError,
            "float lr",
        ),
        ({"weight_decay": 0.1, "no_decay": "bias"}, TypeError, "no_decay"),
        ({"weight_decay": 0.1, "layer_decay": 0.5, "layer_of": lambda n: "x"}, TypeError, "int"),
        ({"weight_decay": 0.1, "layer_of": 3}, TypeError, "layer_of"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        param_groups(nn.Linear(2, 2), **kwargs)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match="model"):
        param_groups([torch.zeros(2)], 0.1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- registry


def test_register_refuses_a_non_optimizer_class_and_an_empty_name() -> None:
    from bergab.optim import _registry

    saved = dict(_registry._REGISTRY)
    try:
        with pytest.raises(TypeError, match=r"cls must be a torch\.optim\.Optimizer subclass"):
            optim.register("mine", 5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="optimizer name must be a non-empty str"):
            optim.register("", optim.SGD)
        with pytest.raises(ValueError, match="optimizer name must be a non-empty str"):
            optim.register("  ", optim.SGD)
        assert saved == dict(_registry._REGISTRY)
    finally:
        _registry._REGISTRY.clear()
        _registry._REGISTRY.update(saved)


def test_create_refuses_to_contradict_a_boolean_preset_but_overrides_numbers() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="nesterov=False contradicts optimizer 'nesterov'"):
        optim.create("nesterov", p, lr=0.1, nesterov=False)
    with pytest.raises(ValueError, match="amsgrad"):
        optim.create("amsgrad", p, lr=0.1, amsgrad=False)
    assert optim.create("nesterov", p, lr=0.1, nesterov=True).defaults["nesterov"] is True
    momentum = optim.create("momentum", p, lr=0.1, momentum=0.8).defaults["momentum"]
    assert momentum == pytest.approx(0.8)


def test_param_groups_refuses_a_no_decay_that_is_neither_predicate_nor_list() -> None:
    with pytest.raises(TypeError, match="no_decay must be a predicate"):
        param_groups(nn.Linear(2, 2), weight_decay=0.1, no_decay=5)  # type: ignore[arg-type]
