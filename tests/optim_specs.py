"""The table of optimizer specs that parametrizes the optimizer tests.

Each spec names a bergab optimizer, its keyword arguments, and where one exists the
torch.optim class (with its own kwargs) that must produce identical parameters.
Add a row here when an optimizer lands; every generic test then covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dog
import prodigyopt
import schedulefree
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


_FUSED = ("reference", "foreach", "fused")  # a torch fused kernel or bergab's CPU kernel


class _SGDScheduleFreeTrain(schedulefree.SGDScheduleFree):
    """The package's schedule-free SGD, put in train mode (it starts in eval mode)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.train()


class _AdamWScheduleFreeTrain(schedulefree.AdamWScheduleFree):
    """The package's schedule-free AdamW, put in train mode (it starts in eval mode)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.train()


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
    # --- adaptive family (adagrad.py, rmsprop.py, adam.py); the last row of each class is
    # its richest configuration (the compiled test takes it)
    Spec("adagrad", optim.Adagrad, {"lr": 0.05}, torch.optim.Adagrad, impls=_FUSED),
    Spec(
        "adagrad-decay-init-wd",
        optim.Adagrad,
        {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
        torch.optim.Adagrad,
        impls=_FUSED,
    ),
    Spec("rmsprop", optim.RMSprop, {"lr": 0.01}, torch.optim.RMSprop),
    Spec(
        "rmsprop-wd-maximize",
        optim.RMSprop,
        {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.01, "maximize": True},
        torch.optim.RMSprop,
    ),
    Spec(  # the textbook form; its own test compares it with the formula
        "rmsprop-eps-inside-sqrt",
        optim.RMSprop,
        {"lr": 0.01, "eps": 1e-4, "momentum": 0.5, "eps_inside_sqrt": True},
    ),
    Spec(
        "rmsprop-centered-momentum",
        optim.RMSprop,
        {"lr": 0.005, "alpha": 0.95, "momentum": 0.9, "centered": True, "weight_decay": 0.001},
        torch.optim.RMSprop,
    ),
    Spec("adam", optim.Adam, {"lr": 0.01}, torch.optim.Adam, impls=_FUSED),
    Spec("adam-amsgrad", optim.Adam, {"lr": 0.01, "amsgrad": True}, torch.optim.Adam, impls=_FUSED),
    Spec("adam-l2", optim.Adam, {"lr": 0.01, "weight_decay": 0.1}, torch.optim.Adam, impls=_FUSED),
    Spec(
        "adam-decoupled",
        optim.Adam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
        torch.optim.Adam,
        impls=_FUSED,
    ),
    Spec(
        "adam-maximize-amsgrad-l2",
        optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05, "amsgrad": True, "maximize": True},
        torch.optim.Adam,
        impls=_FUSED,
    ),
    Spec("adamw", optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}, torch.optim.AdamW, impls=_FUSED),
    Spec(
        "adamw-amsgrad-maximize",
        optim.AdamW,
        {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True},
        torch.optim.AdamW,
        impls=_FUSED,
    ),
    Spec("nadam", optim.NAdam, {"lr": 0.01}, torch.optim.NAdam),
    Spec(
        "nadam-l2-maximize",
        optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.05, "maximize": True},
        torch.optim.NAdam,
    ),
    Spec(
        "nadam-decoupled",
        optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.1, "momentum_decay": 0.01, "decoupled_weight_decay": True},
        torch.optim.NAdam,
    ),
    Spec("radam", optim.RAdam, {"lr": 0.01}, torch.optim.RAdam),
    Spec(  # rho_inf = 5.67: steps 1-9 are unrectified, the rest barely rectified
        "radam-l2-low-beta2",
        optim.RAdam,
        {"lr": 0.01, "betas": (0.9, 0.7), "weight_decay": 0.05},
        torch.optim.RAdam,
    ),
    Spec(
        "radam-decoupled-maximize",
        optim.RAdam,
        {
            "lr": 0.01,
            "betas": (0.9, 0.99),
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
            "maximize": True,
        },
        torch.optim.RAdam,
    ),
    # --- layer-wise family (layerwise.py): no torch class; test_optim_layerwise.py checks the
    # formulas. The last row of each class is its richest configuration.
    Spec(
        "lars",
        optim.LARS,
        impls=_FUSED,
        kwargs={"lr": 1.0, "trust_coefficient": 0.01},
        converge={
            "quadratic": {"lr": 0.3, "steps": 400, "loss": 1e-4},
            "rosenbrock": {"lr": 0.1, "steps": 3000, "loss": 1e-3},
        },
    ),
    Spec(
        "lars-no-momentum-wd",
        optim.LARS,
        impls=_FUSED,
        kwargs={"lr": 2.0, "momentum": 0.0, "weight_decay": 0.01, "trust_coefficient": 0.01},
        converge={
            "quadratic": {"lr": 1.0, "steps": 1000, "loss": 1e-4},
            "rosenbrock": {"lr": 3.0, "steps": 1500, "loss": 0.1},
        },
    ),
    Spec(
        "lars-nesterov-wd-exclude-1d",
        optim.LARS,
        impls=_FUSED,
        kwargs={
            "lr": 0.5,
            "momentum": 0.8,
            "nesterov": True,
            "weight_decay": 0.02,
            "trust_coefficient": 0.02,
            "eps": 1e-6,
            "exclude_from_adaptation": lambda p: p.ndim == 1,
        },
        converge={  # the problems' one tensor is 1-D: plain Nesterov momentum
            "quadratic": {"lr": 0.01, "steps": 200, "loss": 1e-4},
            "rosenbrock": {"lr": 0.001, "steps": 1200, "loss": 1e-2},
        },
    ),
    Spec("lamb", optim.LAMB, {"lr": 0.01}, impls=_FUSED),
    Spec(
        "lamb-no-clamp-no-bias-correction",
        optim.LAMB,
        {"lr": 0.01, "clamp_value": None, "bias_correction": False, "weight_decay": 0.0},
        impls=_FUSED,
    ),
    Spec("lamb-adam", optim.LAMB, {"lr": 0.01, "adam": True, "weight_decay": 0.05}, impls=_FUSED),
    Spec(
        "lamb-clamp-wd-betas",
        optim.LAMB,
        {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.1, "clamp_value": 1.0},
        impls=_FUSED,
    ),
    # --- self-tuning family (schedulefree.py, prodigy.py, dog.py, hypergradient.py): the
    # authors' packages are the reference; hypergradient rows are checked against the paper's
    # formulas in test_optim_hypergradient.py. The last row of each class is its richest.
    Spec("schedulefree-sgd", optim.ScheduleFreeSGD, {"lr": 0.5}, _SGDScheduleFreeTrain),
    Spec(
        "schedulefree-sgd-warmup-wd-r",
        optim.ScheduleFreeSGD,
        {
            "lr": 0.5,
            "momentum": 0.8,
            "weight_decay": 0.01,
            "warmup_steps": 20,
            "r": 0.5,
            "weight_lr_power": 1.5,
        },
        _SGDScheduleFreeTrain,
        lr_free=True,
    ),
    Spec("schedulefree-adamw", optim.ScheduleFreeAdamW, {"lr": 0.01}, _AdamWScheduleFreeTrain),
    Spec(
        "schedulefree-adamw-warmup-wd-r",
        optim.ScheduleFreeAdamW,
        {
            "lr": 0.01,
            "betas": (0.85, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.05,
            "warmup_steps": 20,
            "r": 1.0,
        },
        _AdamWScheduleFreeTrain,
        lr_free=True,
    ),
    Spec("prodigy", optim.Prodigy, {"lr": 1.0}, prodigyopt.Prodigy, lr_free=True),
    Spec(
        "prodigy-coupled-bias-correction",
        optim.Prodigy,
        {"lr": 1.0, "weight_decay": 0.1, "decouple": False, "use_bias_correction": True},
        prodigyopt.Prodigy,
        lr_free=True,
    ),
    Spec(
        "prodigy-beta1-zero",
        optim.Prodigy,
        {"lr": 1.0, "betas": (0.0, 0.99), "weight_decay": 0.01},
        prodigyopt.Prodigy,
        lr_free=True,
        # without momentum it plateaus at 0.50-0.53 on Rosenbrock, and whether it dips
        # below 0.5 depends on the last bits: a start moved by 1e-12 decides, for the
        # reference path too. Every perturbation tried reaches 0.55 by step 880.
        converge={"rosenbrock": {"steps": 1500, "loss": 0.55}},
    ),
    Spec(
        "prodigy-safeguard-growth-d0-coef",
        optim.Prodigy,
        {
            "lr": 0.5,
            "betas": (0.8, 0.99),
            "beta3": 0.9,
            "weight_decay": 0.05,
            "safeguard_warmup": True,
            "d0": 1e-4,
            "d_coef": 2.0,
            "growth_rate": 1.05,
        },
        prodigyopt.Prodigy,
        lr_free=True,
    ),
    Spec("dog", optim.DoG, {"lr": 1.0}, dog.DoG, lr_free=True),
    Spec(
        "dog-init-eta",
        optim.DoG,
        {"lr": 1.0, "init_eta": 1e-3, "eps": 1e-6},
        dog.DoG,
        lr_free=True,
    ),
    Spec(
        "dog-reps-wd",
        optim.DoG,
        {"lr": 1.0, "reps_rel": 1e-3, "weight_decay": 0.01},
        dog.DoG,
        lr_free=True,
    ),
    Spec("ldog", optim.LDoG, {"lr": 1.0}, dog.LDoG, lr_free=True),
    Spec(
        "ldog-reps-wd",
        optim.LDoG,
        {"lr": 1.0, "reps_rel": 1e-4, "weight_decay": 0.01},
        dog.LDoG,
        lr_free=True,
    ),
    Spec(
        "hypergradient-sgd",
        optim.HypergradientSGD,
        {"lr": 0.01, "hypergrad_lr": 1e-3},
        lr_free=True,
    ),
    Spec(
        "hypergradient-sgd-momentum-wd",
        optim.HypergradientSGD,
        {"lr": 0.01, "hypergrad_lr": 1e-4, "momentum": 0.9, "weight_decay": 0.01},
        lr_free=True,
    ),
    Spec(
        "hypergradient-sgd-nesterov-multiplicative",
        optim.HypergradientSGD,
        {
            "lr": 0.01,
            "hypergrad_lr": 0.02,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.01,
            "multiplicative": True,
            "max_lr": 0.05,
        },
        lr_free=True,
    ),
    Spec(
        "hypergradient-adam",
        optim.HypergradientAdam,
        {"lr": 0.01, "hypergrad_lr": 1e-5},
        lr_free=True,
    ),
    Spec(
        "hypergradient-adam-wd-multiplicative",
        optim.HypergradientAdam,
        {
            "lr": 0.01,
            "hypergrad_lr": 0.01,
            "betas": (0.8, 0.99),
            "weight_decay": 0.01,
            "multiplicative": True,
            "min_lr": 1e-3,
        },
        lr_free=True,
    ),
]


def spec_ids(specs: list[Spec]) -> list[str]:
    return [s.id for s in specs]
