"""The checks that turn a mistake in what fit is given into an error naming the argument.

fit's per-step code does not check what it is given: a step is too short for that. The
functions here run where they cost nothing per step: on the first batch (the first
forward, loss and backward of a run, and the first batch of every evaluation), before
the first step (folders, devices), or only after something already went wrong (a
non-finite loss: are the data to blame?). Each raises ``ValueError`` or ``TypeError``
naming the argument (``train_data``, ``val_data``, ``loss_fn``, ``metrics['acc']``,
``lr``, ``checkpoint_dir``, ...) and what was expected, with torch's own message kept
where there is one.
"""

from __future__ import annotations

import functools
import math
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bergab.training import _data

__all__ = [
    "check_fit_checkpoint",
    "check_loss",
    "check_resume_file",
    "check_resume_optimizer",
    "check_writable_dir",
    "checked_backward",
    "checked_forward",
    "checked_loss",
    "checked_metric",
    "describe",
    "lr_error",
    "metric_number",
    "non_finite_cause",
    "non_finite_data",
    "non_finite_val_data",
    "optimizer_class",
    "split_batch",
]

_F = nn.functional

#: torch losses that compare outputs and targets element by element and broadcast
#: targets of another shape silently (or with only a warning): on the first batch their
#: outputs and targets must have the same shape.
_ELEMENTWISE_FUNCTIONS = (
    _F.mse_loss,
    _F.l1_loss,
    _F.smooth_l1_loss,
    _F.huber_loss,
    _F.binary_cross_entropy,
    _F.binary_cross_entropy_with_logits,
    _F.soft_margin_loss,
    _F.poisson_nll_loss,
    _F.kl_div,
)
_ELEMENTWISE_MODULES = (
    nn.MSELoss,
    nn.L1Loss,
    nn.SmoothL1Loss,
    nn.HuberLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.SoftMarginLoss,
    nn.PoissonNLLLoss,
    nn.KLDivLoss,
)

#: The errors a wrong batch makes a model or a loss raise (shape, dtype, index, arity).
#: Out-of-memory errors are RuntimeErrors too, but are no mistake of the data: they pass.
_INPUT_ERRORS = (RuntimeError, TypeError, ValueError, IndexError, AssertionError)


def _out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def describe(obj: Any) -> str:
    """A short description of a batch part: its shape and dtype, or its type.

    Example:
        >>> describe(torch.zeros(2, 3))
        'shape (2, 3) dtype torch.float32'
        >>> describe((torch.zeros(2), {"m": torch.ones(2, dtype=torch.bool)}))
        "(shape (2,) dtype torch.float32, {'m': shape (2,) dtype torch.bool})"
    """
    if isinstance(obj, torch.Tensor):
        return f"shape {tuple(obj.shape)} dtype {obj.dtype}"
    if isinstance(obj, np.ndarray):
        return f"a numpy array of shape {obj.shape} dtype {obj.dtype}"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "(" + ", ".join(describe(v) for v in obj) + ("," if len(obj) == 1 else "") + ")"
    return f"a {type(obj).__name__}"


def _parameters(model: nn.Module) -> str:
    p = next(model.parameters(), None)
    return "" if p is None else f" (the model's parameters are {p.dtype} on {p.device})"


def split_batch(batch_fn: Callable[[Any], Any], batch: Any, what: str) -> tuple[Any, Any]:
    """``batch_fn(batch)``, checked to be an ``(inputs, targets)`` pair."""
    pair = batch_fn(batch)
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(
            f"batch_fn must return a pair (inputs, targets) for each batch of {what}, "
            f"got {describe(pair)}"
        )
    return pair[0], pair[1]


def checked_forward(model: nn.Module, inputs: Any, what: str) -> Any:
    """The model called on the first batch's inputs; an error says which data failed."""
    try:
        return _data.forward(model, inputs)
    except _INPUT_ERRORS as exc:
        if _out_of_memory(exc):
            raise
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        hint = ""
        if isinstance(inputs, np.ndarray) or (
            isinstance(inputs, (tuple, list)) and any(isinstance(t, np.ndarray) for t in inputs)
        ):
            hint = (
                f" (numpy arrays in a batch: pass {what}=(x, y) with the arrays themselves, "
                "or batches of tensors)"
            )
        raise kind(
            f"{what}: the model could not take the first batch's inputs of "
            f"{describe(inputs)}{_parameters(model)}{hint}: {exc}"
        ) from exc


def _unwrap(loss_fn: Any) -> Any:
    while isinstance(loss_fn, functools.partial):
        loss_fn = loss_fn.func
    return loss_fn


def _elementwise(loss_fn: Any) -> bool:
    fn = _unwrap(loss_fn)
    return isinstance(fn, _ELEMENTWISE_MODULES) or any(fn is f for f in _ELEMENTWISE_FUNCTIONS)


def _broadcast_error(outputs: Any, targets: Any, what: str) -> ValueError:
    return ValueError(
        f"{what}/loss_fn: the first batch's outputs have shape {tuple(outputs.shape)} and its "
        f"targets shape {tuple(targets.shape)}; an element-wise loss would broadcast them "
        "against each other and train on the wrong pairs: give the targets the outputs' "
        "shape (e.g. y.view(-1, 1) for one output per example)"
    )


def checked_loss(loss_fn: Callable[[Any, Any], Any], outputs: Any, targets: Any, what: str) -> Any:
    """``loss_fn(outputs, targets)`` on the first batch, checked.

    An element-wise torch loss must see outputs and targets of one shape (torch
    broadcasts them with at most a warning, which is turned into this error too, for a
    loss that calls torch's inside); the loss must be a 0-d tensor that needs gradients.
    """
    both = isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)
    if both and outputs.shape != targets.shape and _elementwise(loss_fn):
        raise _broadcast_error(outputs, targets, what)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="Using a target size", category=UserWarning)
            loss = loss_fn(outputs, targets)
    except UserWarning as exc:
        if both:
            raise _broadcast_error(outputs, targets, what) from exc
        raise ValueError(f"{what}/loss_fn: {exc}") from exc
    except _INPUT_ERRORS as exc:
        if _out_of_memory(exc):
            raise
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(
            f"loss_fn failed on the first batch of {what}: outputs of {describe(outputs)}, "
            f"targets of {describe(targets)}: {exc}"
        ) from exc
    check_loss(loss, grad=torch.is_grad_enabled())
    return loss


def check_loss(loss: Any, *, grad: bool) -> None:
    """Raise unless ``loss`` is a 0-d floating tensor (that needs gradients, ``grad``)."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a scalar tensor, got {describe(loss)}")
    if loss.ndim != 0:
        raise ValueError(
            f"loss_fn must return a scalar (0-d) tensor, got a tensor of shape "
            f"{tuple(loss.shape)}: reduce it, e.g. with .mean()"
        )
    if not (loss.is_floating_point() or loss.is_complex()):
        raise TypeError(f"loss_fn must return a floating-point tensor, got {loss.dtype}")
    if grad and not loss.requires_grad:
        raise ValueError(
            "loss_fn returned a tensor that does not depend on the model's parameters "
            "(requires_grad is False): compute it from the outputs with torch operations, "
            "without .item(), .detach(), .numpy() or torch.tensor(...)"
        )


def checked_backward(backward: Callable[[], None], outputs: Any, targets: Any, what: str) -> None:
    """The first batch's backward; an error names the loss and the batch's shapes."""
    try:
        backward()
    except RuntimeError as exc:
        if _out_of_memory(exc):
            raise
        raise ValueError(
            f"loss_fn: the backward pass through the first batch's loss of {what} failed "
            f"(outputs of {describe(outputs)}, targets of {describe(targets)}): {exc}"
        ) from exc


def metric_number(name: str, value: Any) -> float:
    """A metric's value as a float; anything else is an error naming ``metrics[name]``.

    Example:
        >>> metric_number("acc", torch.tensor(0.5))
        0.5
        >>> metric_number("acc", torch.ones(3))
        Traceback (most recent call last):
        ...
        ValueError: metrics['acc'] must return a number, got a tensor of shape (3,)
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"metrics[{name!r}] must return a number, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        return float(value.item())
    if isinstance(value, (int, float, np.number)) and not isinstance(value, complex):
        return float(value)
    raise TypeError(f"metrics[{name!r}] must return a number, got {describe(value)}")


def checked_metric(
    name: str, fn: Callable[[Any, Any], Any], outputs: Any, targets: Any, what: str
) -> float:
    """A metric on the first batch: a failure names the metric and the batch's shapes."""
    try:
        value = fn(outputs, targets)
    except _INPUT_ERRORS as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(
            f"metrics[{name!r}] failed on the first batch of {what}: outputs of "
            f"{describe(outputs)}, targets of {describe(targets)}: {exc}"
        ) from exc
    return metric_number(name, value)


def lr_error(lrs: Sequence[float], step: int, source: str) -> ValueError | None:
    """The error for learning rates that are negative, NaN or infinite (``None`` if fine).

    ``source`` names what set them: ``"lr"`` (fit's float or schedule), ``"scheduler"``
    or ``"optimizer"`` (its own lr or schedule).

    Example:
        >>> str(lr_error([0.1, -1.0], 3, "lr"))
        'lr: the learning rate of step 3 is -1.0 in param group 1; it must be finite and >= 0 (the lr schedule gave it)'
    """  # noqa: E501
    for i, v in enumerate(lrs):
        value = float(v)
        if not 0.0 <= value < math.inf:
            given = {
                "lr": "the lr schedule gave it",
                "scheduler": "the torch LR scheduler set it",
                "optimizer": "the optimizer's own lr schedule gave it",
            }[source]
            return ValueError(
                f"{source}: the learning rate of step {step} is {value} in param group {i}; "
                f"it must be finite and >= 0 ({given})"
            )
    return None


def _non_finite_kind(obj: Any) -> str | None:
    """``"NaN"``, ``"inf"`` or ``None``: what non-finite values the tensors in ``obj`` hold."""
    for t in _tensors(obj):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return "NaN" if bool(torch.isnan(t).any()) else "inf"
    return None


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def non_finite_data(
    batch_fn: Callable[[Any], Any], micro: Sequence[Any], first_batch: int, step: int
) -> str | None:
    """Whether the batches of a step hold NaN/inf, said as a sentence (``None`` if not).

    Called only after a step's loss came out non-finite, so it costs nothing per step.
    ``first_batch`` is the 1-based index in the epoch of ``micro[0]``.

    Example:
        >>> x = torch.tensor([[1.0], [float("nan")]])
        >>> non_finite_data(_data.default_batch_fn, [(x, x)], 4, 9)
        'the inputs of batch 4 (step 9) contain NaN'
    """
    for i, batch in enumerate(micro):
        inputs, targets = batch_fn(batch)
        for part, obj in (("inputs", inputs), ("targets", targets)):
            kind = _non_finite_kind(obj)
            if kind is not None:
                return f"the {part} of batch {first_batch + i} (step {step}) contain {kind}"
    return None


def non_finite_cause(
    batch_fn: Callable[[Any], Any],
    micro: Sequence[Any],
    first_batch: int,
    step: int,
    model: nn.Module,
) -> str | None:
    """What else than the learning rate made step ``step``'s loss non-finite, if anything.

    The step's batches holding NaN/inf (:func:`non_finite_data`), or, at the first step,
    the model's own parameters (a broken initialization); ``None`` when neither.
    """
    blame = non_finite_data(batch_fn, micro, first_batch, step)
    if blame is None and step == 1:
        for name, p in model.named_parameters():
            t = p.detach()
            t = t.to_local() if hasattr(t, "to_local") else t  # FSDP: this process's shard
            if _non_finite_kind(t) is not None:
                return f"the model's parameter {name!r} holds NaN/inf before the first step"
    return blame


def check_writable_dir(name: str, path: Path) -> None:
    """Create ``path`` and write a file in it, before any work: else an error naming ``name``.

    Example:
        >>> import tempfile, pathlib
        >>> check_writable_dir("log_dir", pathlib.Path(tempfile.mkdtemp()) / "runs" / "a")
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".bergab-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"{name}: cannot create or write the folder {str(path)!r} ({reason}); "
            "pass a folder this process can write"
        ) from exc


def non_finite_val_data(
    batch_fn: Callable[[Any], Any], batches: Iterable[Any], what: str
) -> str | None:
    """Which batch of validation data holds NaN/inf, said as a sentence (``None`` if none).

    Called only after a validation loss came out non-finite, so it costs nothing normally.

    Example:
        >>> x = torch.tensor([[1.0], [float("inf")]])
        >>> non_finite_val_data(_data.default_batch_fn, [(x[:1], x[:1]), (x, x)], "val_data")
        'val_data: the inputs of batch 2 contain inf'
    """
    for i, batch in enumerate(batches, start=1):
        inputs, targets = batch_fn(batch)
        for part, obj in (("inputs", inputs), ("targets", targets)):
            kind = _non_finite_kind(obj)
            if kind is not None:
                return f"{what}: the {part} of batch {i} contain {kind}"
    return None


def check_resume_file(path: Path) -> None:
    """Raise unless ``path`` (fit's ``resume``) is a file: a folder or a missing path is an
    error naming ``resume``."""
    if path.is_dir():
        raise IsADirectoryError(
            f"resume: {str(path)!r} is a directory, not a checkpoint file; pass the file "
            f"(e.g. {str(path / 'last.pt')!r}) or resume=True with checkpoint_dir"
        )
    if not path.is_file():
        raise FileNotFoundError(f"resume: checkpoint {str(path)!r} does not exist")


def check_fit_checkpoint(ckpt: Mapping[str, Any], path: Path, expected: str) -> None:
    """Raise unless ``ckpt`` (read from ``path`` for ``resume``) is a fit checkpoint of
    format ``expected`` (a plain ``state_dict`` file is not)."""
    if ckpt.get("format") != expected or not isinstance(ckpt.get("fit"), Mapping):
        raise ValueError(
            f"resume: {str(path)!r} is not a bergab fit checkpoint (format "
            f"{ckpt.get('format')!r}, expected {expected!r}; a fit checkpoint is the "
            "last.pt that fit writes into checkpoint_dir, not a model's state_dict): to "
            "start from saved weights, load them with model.load_state_dict(...) and do "
            "not pass resume"
        )


def optimizer_class(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class as ``module.Name`` (what a fit checkpoint records); for a
    ``ZeroRedundancyOptimizer``, the class of the optimizer it shards."""
    from bergab.training._lr import core  # lazily: _lr imports this module

    optimizer = core(optimizer)
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"


def check_resume_optimizer(ckpt: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Raise unless the checkpoint's optimizer state was written by an optimizer like
    ``optimizer``: the same class (when the checkpoint names it) and param groups with
    the same settings (keys), so that loading it cannot fail half-way or load another
    optimizer's state silently."""
    saved, saved_class = ckpt.get("optimizer"), ckpt.get("optimizer_class")
    ours = optimizer_class(optimizer)
    if saved_class is not None and saved_class != ours:
        raise ValueError(
            f"resume: the checkpoint's optimizer is {saved_class}, this run's is {ours}: "
            "resume with the same optimizer (and optimizer_kwargs) as the run that wrote it"
        )
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        n = len(groups) if isinstance(groups, list) else None
        raise ValueError(
            f"resume: the checkpoint's optimizer has {n} param groups, this run's "
            f"{len(optimizer.param_groups)}: the checkpoint's optimizer differs from this run's"
        )
    ignore = {"params", "initial_lr"}  # initial_lr: set by a torch LR scheduler
    for i, (old, new) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        missing = set(optimizer.defaults) - set(old) - ignore
        extra = set(old) - set(new) - ignore
        if missing and extra:  # one side only: a torch version that added a setting
            raise ValueError(
                f"resume: the checkpoint's optimizer differs from this run's ({ours}): its "
                f"param group {i} has the settings {sorted(extra)} and lacks "
                f"{sorted(missing)}; resume with the same optimizer as the run that wrote it"
            )
