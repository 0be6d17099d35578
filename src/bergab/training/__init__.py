"""Training: :func:`fit`, its :class:`History`, callbacks, loggers and checkpoints.

``bergab.fit`` is the training loop (batch, mini-batch and stochastic gradient descent,
clipping, accumulation, mixed precision, validation, callbacks, logs, a progress bar,
NaN policies) with exact resume: a run killed at any moment and resumed with
``resume=True`` ends with the same weights, bit for bit, as a run never interrupted
(on the CPU). :func:`evaluate` computes a model's loss and metrics on any data as fit
validates. See ``docs/training.md``.

Example:
    >>> import torch
    >>> from bergab.training import fit, EarlyStopping
    >>> x = torch.linspace(-1, 1, 64).unsqueeze(1)
    >>> h = fit(torch.nn.Linear(1, 1), (x, 2 * x + 1), torch.nn.functional.mse_loss,
    ...         val_data=(x, 2 * x + 1), optimizer="sgd", lr=0.3, epochs=30,
    ...         batch_size="full", early_stopping=EarlyStopping(patience=3), progress=False)
    >>> h.best["val_loss"] < 1e-3
    True
"""

from __future__ import annotations

from bergab.training._fit import PRECISIONS, NonFiniteError, Trainer, fit
from bergab.training._state import CHECKPOINT_FORMAT, RunState
from bergab.training.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from bergab.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bergab.training.evaluation import evaluate
from bergab.training.history import History
from bergab.training.loggers import CSVLogger, JSONLLogger, TensorBoardLogger
from bergab.training.options import NAN_POLICIES, FitOptions
from bergab.training.progress import ProgressBar
from bergab.training.world import World

__all__ = [
    "CHECKPOINT_FORMAT",
    "NAN_POLICIES",
    "PRECISIONS",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FitOptions",
    "History",
    "JSONLLogger",
    "LambdaCallback",
    "ModelCheckpoint",
    "NonFiniteError",
    "ProgressBar",
    "ReduceLROnPlateau",
    "RunState",
    "TensorBoardLogger",
    "Trainer",
    "World",
    "evaluate",
    "fit",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
