"""A tqdm progress bar for :func:`bergab.fit`: steps, speed, loss and learning rate.

``fit(progress=True)`` (the default) adds a :class:`ProgressBar` when tqdm is installed
(it comes with ``bergab[cli]``; torch itself usually pulls it in). Without tqdm the run
simply has no bar: training never fails for want of a progress display. ``progress=False``
turns it off. The bar is ``tqdm.auto``, so it is a widget in Jupyter and text elsewhere.

Example:
    >>> import io
    >>> bar = ProgressBar(file=io.StringIO())
    >>> bar.min_interval
    0.2
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from bergab._validate import check_real
from bergab.training.callbacks import Callback

if TYPE_CHECKING:
    from bergab.training._fit import Trainer

__all__ = ["ProgressBar", "tqdm_available"]


def tqdm_available() -> bool:
    """Whether tqdm can be imported.

    Example:
        >>> isinstance(tqdm_available(), bool)
        True
    """
    return importlib.util.find_spec("tqdm") is not None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over the optimizer steps with loss, lr and val_loss.

    tqdm shows the speed (steps/s) and the time left; the postfix shows the last loss,
    the lr of the first param group and the last validation loss. The bar (count and
    postfix) is updated at most every ``min_interval`` seconds, so a step costs it one
    clock reading.

    Args:
        file: where to draw (default: tqdm's, i.e. stderr).
        min_interval: seconds between postfix updates, >= 0.
        desc: the bar's label.

    Example:
        >>> ProgressBar(desc="digits").desc
        'digits'
    """

    def __init__(
        self, file: TextIO | None = None, min_interval: float = 0.2, desc: str = "fit"
    ) -> None:
        self.file = file
        self.min_interval = check_real("min_interval", min_interval, low=0.0)
        self.desc = desc
        self.bar: Any = None
        self._last = 0.0
        self._val: float | None = None
        self._lr_key = "lr"
        self._logs: Mapping[str, Any] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.total_steps,
            initial=trainer.step,
            desc=self.desc,
            unit="step",
            file=self.file,
            dynamic_ncols=True,
            leave=True,
        )
        self._lr_key = "lr" if len(trainer.optimizer.param_groups) == 1 else "lr_0"

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        self._logs = logs
        now = time.perf_counter()
        if now - self._last >= self.min_interval and self.bar is not None:
            self._last = now
            self._postfix(logs)
            self.bar.update(trainer.step - self.bar.n)  # negative right after a rollback

    def _postfix(self, logs: Mapping[str, Any]) -> None:
        post = f"loss={_fmt(logs.get('loss'))}, lr={_fmt(logs.get(self._lr_key))}"
        if self._val is not None:
            post += f", val_loss={_fmt(self._val)}"
        self.bar.set_postfix_str(post, refresh=False)  # drawn by the update that follows

    def on_validation_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        self._val = logs.get("val_loss")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            if self._logs is not None:
                self._postfix(self._logs)
            self.bar.update(trainer.step - self.bar.n)
            self.bar.close()
            self.bar = None
