"""The table of optimizer specs that parametrizes the optimizer tests.

Each spec names a bergab optimizer, its keyword arguments, and where one exists the
torch.optim class (with its own kwargs) that must produce identical parameters.
Add a row here when an optimizer lands; every generic test then covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bergab import optim


@dataclass(frozen=True)
class Spec:
    id: str
    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any]
    torch_cls: type[torch.optim.Optimizer] | None = None
    torch_kwargs: dict[str, Any] | None = None  # None: the same kwargs as bergab
    impls: tuple[str, ...] = ("reference", "foreach")
    lr_free: bool = False  # effective_lr is not lr * lr_scale (Prodigy, DoG, ...)
    # a loss the optimizer reaches on the test quadratic / Rosenbrock within `steps`
    converge: dict[str, Any] = field(default_factory=dict)

    def torch_opt(self, params: Any) -> torch.optim.Optimizer:
        assert self.torch_cls is not None
        kw = self.kwargs if self.torch_kwargs is None else self.torch_kwargs
        return self.torch_cls(params, **kw)


SPECS: list[Spec] = [
    Spec("sgd", optim.SGD, {"lr": 0.05}, torch.optim.SGD, impls=("reference", "foreach", "fused")),
    Spec(
        "sgd-momentum-dampening-wd",
        optim.SGD,
        {"lr": 0.03, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
        torch.optim.SGD,
        impls=("reference", "foreach", "fused"),
    ),
    Spec(
        "sgd-nesterov",
        optim.SGD,
        {"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001},
        torch.optim.SGD,
        impls=("reference", "foreach", "fused"),
    ),
    Spec(
        "sgd-maximize",
        optim.SGD,
        {"lr": 0.01, "momentum": 0.5, "maximize": True},
        torch.optim.SGD,
        impls=("reference", "foreach", "fused"),
    ),
    # --- layer-wise family (layerwise.py): no torch class; test_optim_layerwise.py checks the
    # formulas. The last row of each class is its richest configuration.
    Spec("lars", optim.LARS, {"lr": 1.0, "trust_coefficient": 0.01}),
    Spec(
        "lars-no-momentum-wd",
        optim.LARS,
        {"lr": 2.0, "momentum": 0.0, "weight_decay": 0.01, "trust_coefficient": 0.01},
    ),
    Spec(
        "lars-nesterov-wd-exclude-1d",
        optim.LARS,
        {
            "lr": 0.5,
            "momentum": 0.8,
            "nesterov": True,
            "weight_decay": 0.02,
            "trust_coefficient": 0.02,
            "eps": 1e-6,
            "exclude_from_adaptation": lambda p: p.ndim == 1,
        },
    ),
    Spec("lamb", optim.LAMB, {"lr": 0.01}),
    Spec(
        "lamb-no-clamp-no-bias-correction",
        optim.LAMB,
        {"lr": 0.01, "clamp_value": None, "bias_correction": False, "weight_decay": 0.0},
    ),
    Spec("lamb-adam", optim.LAMB, {"lr": 0.01, "adam": True, "weight_decay": 0.05}),
    Spec(
        "lamb-clamp-wd-betas",
        optim.LAMB,
        {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.1, "clamp_value": 1.0},
    ),
]


def spec_ids(specs: list[Spec]) -> list[str]:
    return [s.id for s in specs]
