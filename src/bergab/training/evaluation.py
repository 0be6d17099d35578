"""``evaluate()``: a model's loss and metrics on a data set, computed as fit validates.

:func:`evaluate` runs the validation code of :func:`bergab.fit` (the same data path,
the same batch-size weighting, eval mode without gradients, the same autocast) on any
data, outside a training run: on a test set after training, or on a model loaded from
a run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bergab.training import _data
from bergab.training._step import StepCore, check_precision, resolve_device
from bergab.training.options import callable_or_none, check_batch_size, check_metrics

__all__ = ["evaluate"]

#: ``batch_size=None``: examples per evaluation batch (as fit's default for validation).
DEFAULT_BATCH_SIZE = 256


class _Evaluation(StepCore):
    """StepCore with what its validation code reads: no optimizer, no step."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        batch_fn: Callable[[Any], tuple[Any, Any]],
        device: torch.device,
        precision: str,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batch_fn = batch_fn
        self.device = device
        self._set_precision(precision)
        self.scaler = None  # no backward here, so no loss scaling


def evaluate(
    model: nn.Module,
    data: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    metrics: Mapping[str, Callable[[Any, Any], Any]] | None = None,
    batch_size: int | str | None = None,
    device: str | torch.device = "auto",
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    precision: str = "32",
) -> dict[str, float]:
    """The loss and metrics of ``model`` on ``data``, as :func:`bergab.fit` validates.

    Every batch is evaluated in eval mode without gradients (each module's train/eval
    flag is put back afterwards); ``loss`` and each metric are means over the batches
    weighted by their number of examples (exact for mean-type losses and metrics). The
    first batch is checked as fit checks it: an error names ``data``, ``loss_fn`` or the
    metric, with the shapes involved.

    Args:
        model: the ``torch.nn.Module``.
        data: tensors ``(x, y)`` (or numpy arrays, or ``(x1, x2, ..., y)``), a
            ``TensorDataset`` or map-style ``Dataset``, a ``DataLoader`` or any
            re-iterable of batches, as for fit's ``val_data``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        metrics: ``{name: fn(outputs, targets) -> number}``; ``"loss"`` is taken.
        batch_size: examples per batch for tensors and Datasets: an int >= 1,
            ``"full"`` (one batch) or ``None`` (256); must be ``None`` for a DataLoader.
        device: ``"auto"`` (where the model is; the CPU for a model without parameters)
            or a device, to which the model is moved (as fit moves it).
        batch_fn: maps a batch to ``(inputs, targets)`` (default: pairs and dicts).
        precision: ``"32"``, ``"bf16"`` or ``"fp16"`` (autocast, as in fit).

    Returns:
        ``{"loss": ..., "<metric name>": ...}`` as floats.

    Example:
        >>> import torch, bergab
        >>> model = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, -1.0]])), model.bias.zero_()
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
        >>> y = torch.tensor([[1.0], [-1.0], [1.0]])
        >>> mae = lambda out, t: (out - t).abs().mean()
        >>> bergab.evaluate(model, (x, y), torch.nn.functional.mse_loss,
        ...                 metrics={"mae": mae}, batch_size=2)
        {'loss': 0.3333333333333333, 'mae': 0.3333333333333333}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (outputs, targets) -> loss, got {loss_fn!r}")
    metric_fns = check_metrics("metrics", metrics)
    size = check_batch_size("batch_size", batch_size)
    split = callable_or_none("batch -> (inputs, targets)")("batch_fn", batch_fn)
    if size is not None and not _data.is_indexed(data):
        raise ValueError(
            f"batch_size must be None when data is a {type(data).__name__} (it makes its own "
            f"batches); got {size!r}"
        )
    if device == "auto":
        p = next(model.parameters(), None)
        dev = torch.device("cpu") if p is None else p.device
    else:
        dev = resolve_device(device, model)
    precision = check_precision(precision, dev)
    if any(t.device != dev for t in [*model.parameters(), *model.buffers()]):
        model.to(dev)
    per_batch = 2**62 if size == "full" else DEFAULT_BATCH_SIZE if size is None else int(size)
    batches = _data.val_batches(data, per_batch, "data", _data.float_dtype(model))
    core = _Evaluation(
        model, loss_fn, _data.default_batch_fn if split is None else split, dev, precision
    )
    return core._validate_on(batches, metric_fns, prefix="", what="data")
