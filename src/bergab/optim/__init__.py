"""Optimizers: each a real ``torch.optim.Optimizer``, equal to its reference formula.

Every optimizer accepts a float or a schedule (``step -> value``) for ``lr`` (and for
``weight_decay``), keeps its step count in its state so a checkpoint resumes the schedule,
honours a per-group ``lr_scale`` (layer-wise lr decay), exposes ``effective_lr``, and has
a readable reference implementation beside its fast paths (``impl=``).

Example:
    >>> import torch
    >>> from bergab import optim
    >>> w = torch.nn.Parameter(torch.tensor([2.0]))
    >>> opt = optim.create("momentum", [w], lr=0.1)
    >>> for _ in range(300):
    ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
    >>> abs(w.item()) < 1e-6
    True
"""

from __future__ import annotations

from bergab.optim._base import IMPLS, Optimizer
from bergab.optim._native import NativeStatus, native_status
from bergab.optim._registry import create, names, register
from bergab.optim.adagrad import Adagrad
from bergab.optim.adam import Adam, AdamW, NAdam, RAdam
from bergab.optim.dog import DoG, LDoG, PolynomialDecayAverager
from bergab.optim.groups import param_groups
from bergab.optim.hypergradient import HypergradientAdam, HypergradientSGD
from bergab.optim.layerwise import LAMB, LARS
from bergab.optim.prodigy import Prodigy
from bergab.optim.rmsprop import RMSprop
from bergab.optim.schedulefree import (
    ScheduleFreeAdamW,
    ScheduleFreeEvalModeError,
    ScheduleFreeSGD,
    recompute_batchnorm_stats,
)
from bergab.optim.sgd import SGD

__all__ = [
    "IMPLS",
    "LAMB",
    "LARS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "DoG",
    "HypergradientAdam",
    "HypergradientSGD",
    "LDoG",
    "NAdam",
    "NativeStatus",
    "Optimizer",
    "PolynomialDecayAverager",
    "Prodigy",
    "RAdam",
    "RMSprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeEvalModeError",
    "ScheduleFreeSGD",
    "create",
    "names",
    "native_status",
    "param_groups",
    "recompute_batchnorm_stats",
    "register",
]

register("sgd", SGD)
register("gd", SGD)
register("momentum", SGD, momentum=0.9)
register("nesterov", SGD, momentum=0.9, nesterov=True)
register("adagrad", Adagrad)
register("rmsprop", RMSprop)
register("adam", Adam)
register("amsgrad", Adam, amsgrad=True)
register("adamw", AdamW)
register("nadam", NAdam)
register("radam", RAdam)
register("lars", LARS)
register("lamb", LAMB)
# self-tuning: learning-rate-free and hypergradient methods
register("schedulefree_sgd", ScheduleFreeSGD)
register("schedule_free_sgd", ScheduleFreeSGD)
register("schedulefree_adamw", ScheduleFreeAdamW)
register("schedule_free_adamw", ScheduleFreeAdamW)
register("prodigy", Prodigy)
register("dog", DoG)
register("ldog", LDoG)
register("hypergradient_sgd", HypergradientSGD)
register("hypergradient_adam", HypergradientAdam)
