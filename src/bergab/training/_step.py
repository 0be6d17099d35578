"""One optimization step, as :func:`fit` takes it, shared with :func:`bergab.lr_find`.

:class:`StepCore` holds the pieces of a step: the forward/backward of a micro-batch under
autocast (scaled by a ``GradScaler`` for fp16), the example-weighted accumulation of
micro-batches, unscaling and gradient clipping with the loss and gradient norm read back
in one sync, the optimizer step (through the scaler under fp16) and the validation loss.
:class:`~bergab.training.Trainer` is a ``StepCore``; :class:`Stepper` is one built on its
own, for the range test's sweep, so the sweep trains exactly as ``fit`` would.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from bergab._validate import check_choice, check_real
from bergab.training import _checks, _data
from bergab.training.strategy import no_sync
from bergab.training.world import World

__all__ = [
    "PRECISIONS",
    "StepCore",
    "Stepper",
    "check_clip",
    "check_precision",
    "device_unavailable",
    "resolve_device",
    "seed_everything",
]

#: The ``precision`` values fit accepts.
PRECISIONS = ("32", "bf16", "fp16")

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _norms_one_by_one(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.linalg.vector_norm(t) for t in tensors]


#: The 2-norm of every tensor of a list (one foreach kernel where torch has it).
_foreach_norm: Callable[[list[torch.Tensor]], Sequence[torch.Tensor]] = getattr(
    torch, "_foreach_norm", _norms_one_by_one
)


def check_precision(precision: Any, device: torch.device) -> str:
    """Validate ``precision`` for ``device``; return it."""
    precision = check_choice("precision", precision, PRECISIONS)
    if precision == "fp16" and device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"precision='fp16' needs a CUDA device or the CPU (autocast with a GradScaler); "
            f"on {device.type} use precision='bf16' or '32'"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' is not supported by this GPU; use 'fp16' or '32'")
    return str(precision)


def check_clip(clip_norm: Any, clip_value: Any) -> tuple[float | None, float | None]:
    """Validate ``clip_norm`` and ``clip_value`` (each ``None`` or > 0, not both)."""
    norm = None if clip_norm is None else check_real("clip_norm", clip_norm, low=0.0, low_open=True)
    value = (
        None if clip_value is None else check_real("clip_value", clip_value, low=0.0, low_open=True)
    )
    if norm is not None and value is not None:
        raise ValueError("set clip_norm or clip_value, not both")
    return norm, value


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def resolve_device(device: Any, model: nn.Module) -> torch.device:
    """``device`` checked; ``"auto"``: the model's device if not the CPU, else CUDA when
    available, else the CPU."""
    if device == "auto":
        p = next(model.parameters(), None)
        if p is not None and p.device.type != "cpu":
            return p.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be 'auto', a str or a torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1'; "
            f"got {device!r}"
        ) from None
    _check_available(dev, device)
    return dev


def device_unavailable(dev: torch.device) -> str | None:  # noqa: PLR0911 (a return a case)
    """Why this process cannot train on ``dev``, or ``None`` when it can (the one check
    of a device, for ``fit``, ``lr_find`` and a run config's ``fit.device``).

    Example:
        >>> device_unavailable(torch.device("cpu")) is None
        True
        >>> device_unavailable(torch.device("meta"))
        'the meta device holds no data to train on'
    """
    if dev.type == "cpu":
        return None
    if dev.type == "meta":
        return "the meta device holds no data to train on"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "" if torch.version.cuda else " (this torch build has no CUDA)"
            return f"CUDA is not available on this machine{built}"
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return f"this machine has {n} cuda device{'s' if n != 1 else ''} (indices 0..{n - 1})"
        return None
    try:  # mps, xpu, xla, ...: a device is usable when a tensor can be made there
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).strip().split("\n")[0].split(". ")[0]  # torch's first sentence
        return f"{dev.type.upper()} is not available in this process ({reason})"
    return None


def _check_available(dev: torch.device, given: Any) -> None:
    """Raise ``ValueError`` naming ``device`` unless this process can compute on ``dev``."""
    reason = device_unavailable(dev)
    if reason is not None:
        raise ValueError(f"device={given!r}: {reason}; use 'cpu' or 'auto'")


class StepCore:
    """The step code of :func:`fit` (see the module docstring); subclasses set the fields.

    The hot path (:meth:`_forward_backward`) checks nothing. The first micro-batch goes
    through :meth:`_first_forward_backward` instead (:meth:`_arm_first_batch_checks`
    puts it in place as an instance attribute, and it takes itself out), which checks
    the batch, the model's call, the loss and the backward and names the data in any
    error; with training metrics on, the steady state is
    :meth:`_forward_backward_metrics`. So the checks cost nothing after the first batch.
    """

    model: nn.Module
    loss_fn: Callable[[Any, Any], torch.Tensor]
    batch_fn: Callable[[Any], tuple[Any, Any]]
    device: torch.device
    optimizer: torch.optim.Optimizer
    scaler: Any
    clip_norm: float | None
    clip_value: float | None
    _move: bool
    _autocast_dtype: torch.dtype | None
    _params: list[torch.Tensor]
    _uniform: bool
    #: the metrics computed on the training batches (fit's ``train_metrics``), or ``{}``
    _train_metrics: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType({})
    #: their values of the current step's micro-batches, ``(values, examples)`` each
    _pending_metrics: list[tuple[list[Any], int]]
    #: how errors name the training data
    _data_name = "train_data"
    #: the processes training together (a world of one unless fit or lr_find runs under
    #: torchrun): losses, validation sums and gradient norms are reduced over them
    world: World = World()
    #: the module validation runs (DDP's inner module: no collectives), else ``model``
    _eval_model: nn.Module | None = None
    #: whether every process must run the same number of forward passes (FSDP gathers
    #: each layer's weights in a collective)
    _lockstep: bool = False

    def _set_precision(self, precision: str) -> None:
        """The GradScaler (fp16) and the autocast dtype of ``precision``."""
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        self._autocast_dtype = _AUTOCAST_DTYPES.get(precision)

    def _set_optimizer(self, opt: torch.optim.Optimizer) -> None:
        self.optimizer = opt
        self._params = [p for g in opt.param_groups for p in g["params"]]
        self._uniform = len({(p.dtype, p.device) for p in self._params}) <= 1

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def _arm_first_batch_checks(self, what: str = "train_data") -> None:
        """Check the next micro-batch's forward/backward (errors name ``what``)."""
        self._data_name = what
        self._forward_backward = self._first_forward_backward  # type: ignore[method-assign]

    def _forward_backward(self, batch: Any, weight: float | None) -> torch.Tensor:
        """One micro-batch: forward under autocast, backward (scaled); the (weighted) loss."""
        x, y = self.batch_fn(batch)
        if self._move:
            x = _data.to_device(x, self.device)
            y = _data.to_device(y, self.device)
        if self._autocast_dtype is None:
            loss = self.loss_fn(_data.forward(self.model, x), y)
        else:
            with torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype):
                loss = self.loss_fn(_data.forward(self.model, x), y)
        if weight is not None:
            loss = loss * weight
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return loss  # backward freed its graph: only read from now on (no detach op)

    def _first_forward_backward(self, batch: Any, weight: float | None) -> torch.Tensor:
        """The first micro-batch, checked; later ones take the steady-state path."""
        if self._train_metrics:
            self._forward_backward = self._forward_backward_metrics  # type: ignore[method-assign]
        else:
            self.__dict__.pop("_forward_backward", None)  # back to the method: no checks
        return self._forward_backward_slow(batch, weight, check=True)

    def _forward_backward_metrics(self, batch: Any, weight: float | None) -> torch.Tensor:
        """:meth:`_forward_backward` that also keeps the outputs' metrics (train_metrics)."""
        return self._forward_backward_slow(batch, weight, check=False)

    def _forward_backward_slow(
        self, batch: Any, weight: float | None, *, check: bool
    ) -> torch.Tensor:
        """:meth:`_forward_backward`, with the checks of the first batch (``check``) and the
        training metrics (when set), which need the outputs the fast path does not keep."""
        what = self._data_name
        x, y = _checks.split_batch(self.batch_fn, batch, what) if check else self.batch_fn(batch)
        if self._move:
            x = _data.to_device(x, self.device)
            y = _data.to_device(y, self.device)
        with self._autocast():
            if check:
                out = _checks.checked_forward(self.model, x, what)
                loss = _checks.checked_loss(self.loss_fn, out, y, what)
            else:
                out = _data.forward(self.model, x)
                loss = self.loss_fn(out, y)
        if self._train_metrics:
            with torch.no_grad():  # values stay on the device until the step is kept
                values = [
                    _checks.checked_metric(name, fn, out, y, what) if check else fn(out, y)
                    for name, fn in self._train_metrics.items()
                ]
            self._pending_metrics.append((values, _data.batch_len(y)))
        if weight is not None:
            loss = loss * weight
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        if check:
            _checks.checked_backward(scaled.backward, out, y, what)
        else:
            scaled.backward()
        return loss

    def _accumulate(self, micro: list[Any]) -> torch.Tensor:
        """Forward/backward of the micro-batches of one step; their example-weighted loss."""
        if len(micro) == 1:
            return self._forward_backward(micro[0], None)
        try:
            sizes = [_data.batch_len(self.batch_fn(b)[1]) for b in micro]
        except (TypeError, KeyError, IndexError):  # batch_fn gave no pair: say so
            for b in micro:
                _checks.split_batch(self.batch_fn, b, self._data_name)
            raise
        total = sum(sizes)
        last = len(micro) - 1
        skip = self.world.size > 1  # gradients are averaged once, at the last micro-batch
        with no_sync(self.model, skip):
            loss = self._forward_backward(micro[0], sizes[0] / total).detach()
        for i, (b, n) in enumerate(zip(micro[1:], sizes[1:], strict=True), start=1):
            with no_sync(self.model, skip and i < last):
                loss = loss + self._forward_backward(b, n / total).detach()
        return loss

    def _loss_and_grad_norm(self, loss: torch.Tensor) -> tuple[float, float]:
        """Unscale, clip, and bring the loss and the gradient norm to the host (one sync)."""
        if loss.ndim != 0:
            raise ValueError(
                f"loss_fn must return a scalar (0-d) tensor, got shape {tuple(loss.shape)}"
            )
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.world.size > 1:
            return self._reduced_loss_and_grad_norm(loss)
        if self.clip_norm is not None:
            total = torch.nn.utils.clip_grad_norm_(self._params, self.clip_norm)
            dt = torch.promote_types(loss.dtype, total.dtype)
            pair = torch.stack([loss.detach().to(dt), total.to(loss.device, dt)])
            loss_v, gn_v = pair.tolist()
            return loss_v, gn_v
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return loss.item(), 0.0
        # per-tensor norms in one foreach kernel, combined on the host (math.hypot: no
        # overflow), read back together with the loss
        norms = _foreach_norm(grads)
        if loss.is_cpu and len(norms) <= 64:
            values = [n.item() for n in norms]  # no sync to wait for: .item() is cheapest
            loss_v = loss.item()
        elif self._uniform and norms[0].dtype == loss.dtype and norms[0].device == loss.device:
            values = torch.stack([*norms, loss.detach()]).tolist()  # one device->host copy
            loss_v = values.pop()
        else:
            values = torch.stack([n.to(loss.device, torch.float64) for n in norms]).tolist()
            loss_v = loss.item()
        if self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self._params, self.clip_value)
        return loss_v, math.hypot(*values)

    def _reduced_loss_and_grad_norm(self, loss: torch.Tensor) -> tuple[float, float]:
        """:meth:`_loss_and_grad_norm` over several processes: the loss is the mean of
        theirs (each took an equal share of the global batch), the gradient norm that of
        the averaged gradients (under FSDP summed from every process's shard), so every
        process sees the same numbers and takes the same decisions (NaN policy, tol)."""
        grads = [p.grad for p in self._params if p.grad is not None]
        local = [_local(g) for g in grads]
        dev = loss.device
        sq = (
            torch.stack([n.to(dev, torch.float64) for n in _foreach_norm(local)]).square().sum()
            if local
            else torch.zeros((), dtype=torch.float64, device=dev)
        )
        # one collective and one device->host copy: the losses' and the squared norms' sums;
        # under FSDP each process holds a shard of every gradient (the norm is the sum's),
        # under DDP the whole averaged gradient (the same on every process: their mean)
        pair = torch.stack([loss.detach().to(torch.float64), sq])
        loss_sum, sq_sum = self.world.all_reduce_sum_tensor(pair).tolist()
        gn = math.sqrt(sq_sum if self._lockstep else sq_sum / self.world.size)
        if self.clip_norm is not None and grads:
            coef = self.clip_norm / (gn + 1e-6)
            if coef < 1.0:
                torch._foreach_mul_(local, coef)
        if self.clip_value is not None and grads:
            for g in local:
                g.clamp_(-self.clip_value, self.clip_value)
        return loss_sum / self.world.size, gn

    def _optimizer_step(self) -> bool:
        """``optimizer.step()`` (through the GradScaler under fp16); whether it was skipped."""
        scaler = self.scaler
        if scaler is None:
            self.optimizer.step()
            return False
        before = scaler.get_scale()
        scaler.step(self.optimizer)
        scaler.update()
        return bool(scaler.get_scale() < before)  # inf/NaN gradients: the step was skipped

    def _validate_on(
        self,
        batches: Iterable[Any] | Callable[[], Iterable[Any]],
        metrics: Mapping[str, Callable[[Any, Any], Any]],
        *,
        prefix: str = "val_",
        what: str = "val_data",
    ) -> dict[str, float]:
        """``<prefix>loss`` and ``<prefix><metric>`` over ``batches``, weighted by batch
        size, in eval mode without gradients (each module's train/eval flag is put back).

        The first batch is checked (batch_fn, the model's call, the loss, the metrics'
        values); errors name ``what``. ``batches`` may be a function giving them: then a
        non-finite loss makes the batches be searched for NaN/inf (an error naming
        ``what`` and the batch when one holds them).
        """
        source = batches
        if callable(batches):
            batches = batches()
        model = self.model if self._eval_model is None else self._eval_model
        pad, last = 0, None
        if self._lockstep:  # the same number of forward passes on every process
            listed = list(batches)
            most = self.world.all_reduce_max(len(listed))
            if self.world.all_reduce_max(int(not listed)):  # every process raises
                raise ValueError(
                    f"{what} has fewer examples than processes: under FSDP every process "
                    "evaluates its share, and needs at least one"
                )
            pad, last, batches = most - len(listed), listed[-1], listed
        modes = [m.training for m in model.modules()]
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        sums = dict.fromkeys(metrics, 0.0)
        first = True
        try:
            with torch.no_grad():
                for batch in batches:
                    if first:
                        x, y = _checks.split_batch(self.batch_fn, batch, what)
                    else:
                        x, y = self.batch_fn(batch)
                    x = _data.to_device(x, self.device)
                    y = _data.to_device(y, self.device)
                    with self._autocast():
                        if first:
                            out = _checks.checked_forward(model, x, what)
                            loss = _checks.checked_loss(self.loss_fn, out, y, what)
                        else:
                            out = _data.forward(model, x)
                            loss = self.loss_fn(out, y)
                    n = _data.batch_len(y)
                    total += loss.detach().double() * n
                    count += n
                    for name, fn in metrics.items():
                        if first:
                            value = _checks.checked_metric(name, fn, out, y, what)
                        else:
                            value = _checks.metric_number(name, fn(out, y))
                        sums[name] += value * n
                    first = False
                for _ in range(pad):  # in step with the others; the result is not used
                    x, _y = self.batch_fn(last)
                    with self._autocast():
                        _data.forward(model, _data.to_device(x, self.device))
        finally:
            for m, mode in zip(model.modules(), modes, strict=True):
                m.training = mode
        loss_total = float(total.item())
        if self.world.size > 1:  # each process saw its own share: exact means over all
            names = list(sums)
            loss_total, *vals, n_all = self.world.all_reduce_sum(
                [loss_total, *(sums[k] for k in names), float(count)]
            )
            sums, count = dict(zip(names, vals, strict=True)), int(n_all)
        if count == 0:
            raise ValueError(f"{what} yielded no batches")
        result = {f"{prefix}loss": loss_total / count}
        if not math.isfinite(result[f"{prefix}loss"]) and callable(source):
            blame = _checks.non_finite_val_data(self.batch_fn, source(), what)
            if self.world.size > 1:  # each process searched its shard: all raise, or none
                blame = next((b for b in self.world.gather_objects(blame) if b is not None), None)
            if blame is not None:
                raise ValueError(
                    f"{blame}, and the {prefix}loss is {result[f'{prefix}loss']}: fix the "
                    "data (a NaN or inf never gives a finite loss)"
                )
        for name, s in sums.items():
            result[f"{prefix}{name}"] = s / count
        return result


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this process (FSDP), any other tensor itself."""
    to_local = getattr(t, "to_local", None)
    return t if to_local is None else to_local()


class Stepper(StepCore):
    """fit's step code on its own: what :func:`bergab.lr_find` sweeps with.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> s = Stepper(model, torch.nn.functional.mse_loss, opt, device=torch.device("cpu"),
        ...             clip_norm=1e-3)
        >>> loss = s._accumulate([(torch.ones(4, 2), torch.full((4, 1), 5.0))])
        >>> _, norm = s._loss_and_grad_norm(loss)
        >>> bool(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
        ...      <= 1.001e-3)
        True
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        precision: str = "32",
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batch_fn = _data.default_batch_fn if batch_fn is None else batch_fn
        self.device = device
        self.clip_norm, self.clip_value = check_clip(clip_norm, clip_value)
        self._move = True
        self._set_precision(check_precision(precision, device))
        self._set_optimizer(optimizer)
        self._arm_first_batch_checks()
