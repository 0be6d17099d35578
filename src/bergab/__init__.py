"""bergab ("downhill"): gradient descent with the learning rate under control.

Optimizers that are real ``torch.optim.Optimizer`` subclasses, closed-form learning-rate
schedules, and tools to choose, adapt and diagnose the learning rate.

Example:
    >>> import bergab
    >>> sched = bergab.schedules.cosine(peak=0.1, total_steps=100)
    >>> round(sched(50), 6)
    0.05
"""

from __future__ import annotations

from bergab import (
    auto_lr,
    diagnostics,
    landscapes,
    optim,
    plotting,
    scaling,
    schedules,
    tasks,
    training,
    tuning,
)
from bergab._version import __version__
from bergab.initialization import init
from bergab.loaded_run import load_run
from bergab.lr_finder import LRFindResult, lr_find
from bergab.minimization import MinimizeResult, minimize
from bergab.training import History, fit
from bergab.training.evaluation import evaluate
from bergab.tuning import TuneResult, tune

__all__ = [
    "History",
    "LRFindResult",
    "MinimizeResult",
    "TuneResult",
    "__version__",
    "auto_lr",
    "diagnostics",
    "evaluate",
    "fit",
    "init",
    "landscapes",
    "load_run",
    "lr_find",
    "minimize",
    "optim",
    "plotting",
    "scaling",
    "schedules",
    "tasks",
    "training",
    "tune",
    "tuning",
]


def __dir__() -> list[str]:
    return list(__all__)
