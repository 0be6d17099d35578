"""The exceptions of fit's loop: the public :class:`NonFiniteError` and the private
signals the loop raises to itself (a NaN stop, a rollback, a pause)."""

from __future__ import annotations

from bergab.training.history import History

__all__ = ["NonFiniteError", "NonFiniteStopError", "PauseError", "RollbackError"]


class NonFiniteError(FloatingPointError):
    """Training hit a NaN/inf loss (or gradient) and ``nan_policy`` said stop.

    The message names the step, the epoch and the batch. ``history`` holds everything
    recorded up to that step (callbacks' ``on_fit_end`` has run, so ``EarlyStopping``
    has restored the best weights).

    Example:
        >>> err = NonFiniteError("loss is nan at step 3", History())
        >>> str(err), len(err.history)
        ('loss is nan at step 3', 0)
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class NonFiniteStopError(Exception):
    """Raised by a step whose NaN/inf ends the run; fit turns it into NonFiniteError."""


class RollbackError(Exception):
    """Raised by a step whose NaN/inf sends the run back to its last checkpoint."""


class PauseError(Exception):
    """Raised at a step boundary by a ``stop(..., checkpoint=True)``, once it is saved."""
