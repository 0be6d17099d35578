"""The base every bergab optimizer shares: schedules as hyperparameters, the step count,
layer-wise lr scales, and the choice between the reference loop and the fast paths.

Contract of a param group (on top of torch's):

- ``group["lr"]`` is always a float: the learning rate the *next* ``step()`` uses, before
  ``lr_scale``. torch LR schedulers may write it as usual.
- a hyperparameter named in ``schedulable`` (``lr``, ``weight_decay``, ...) may be driven
  by a schedule, given to the constructor or set later with :meth:`Optimizer.set_schedule`
  and read with :meth:`Optimizer.schedules`; it is evaluated at ``group["step"]`` before
  every step and overrides ``group[key]``. (It is kept in ``group[f"{key}_schedule"]``, a
  detail of this module: read and write it through those two methods.) Schedules are
  never written into ``state_dict()``: they come from the constructor, the *position*
  comes from the state dict.
- ``group["step"]`` counts the completed ``step()`` calls of this group.
- ``group["lr_scale"]`` multiplies the learning rate (layer-wise lr decay); 1.0 by default.

A subclass sets ``defaults``, validates a group in ``_validate_group``, creates its state
in ``_init_state`` and defines one method per implementation it lists in ``impls``:
``_reference``, ``_foreach``, ``_fused`` and ``_compiled``, each
``(group, params, grads) -> None``. :meth:`Optimizer.step` picks the implementation
(:meth:`Optimizer._select_impl`) and calls the method through one table, built once per
class (:data:`IMPL_METHODS`).
"""

from __future__ import annotations

import ctypes
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from numbers import Real
from typing import Any, ClassVar

import torch

from bergab._validate import check_bool, check_choice, check_int, check_real, is_schedule
from bergab.optim import _native

__all__ = ["IMPLS", "IMPL_METHODS", "Optimizer"]

#: Every implementation name an optimizer may accept.
IMPLS = ("auto", "reference", "foreach", "fused", "compiled")

#: The method that runs each implementation: ``method(self, group, params, grads)``.
IMPL_METHODS = {
    "reference": "_reference",
    "foreach": "_foreach",
    "fused": "_fused",
    "compiled": "_compiled",
}

_UpdateFn = Callable[[Any, dict[str, Any], list[torch.Tensor], list[torch.Tensor]], None]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _scheduled(key: str, schedule: Callable[[int], Any], step: int) -> float:
    """The value ``schedule`` gives hyperparameter ``key`` at ``step``, checked: the
    schedulable hyperparameters (lr, weight decay) are finite and >= 0, and a schedule
    (a plain function, say) that leaves that range would otherwise step silently with a
    negative or NaN learning rate. A float costs one type test and one comparison."""
    value = schedule(step)
    if type(value) is not float:  # bergab's schedules return floats: no further tests
        value = _as_float(key, value, step)
    if not 0.0 <= value < math.inf:  # NaN fails it too
        raise ValueError(
            f"the {key} schedule must give values in [0, inf), got {value} at step {step}"
        )
    return value


def _as_float(key: str, value: Any, step: int) -> float:
    """A schedule's value that is not a float: a real number or a 0-d tensor (a str such
    as "0.1" would pass ``float()``, and a bool is no learning rate)."""
    if isinstance(value, (bool, str, bytes)) or not (
        isinstance(value, Real) or (isinstance(value, torch.Tensor) and value.ndim == 0)
    ):
        raise TypeError(
            f"the {key} schedule must return a number, got {type(value).__name__} "
            f"{value!r} at step {step}"
        )
    return float(value)


def _param_list(params: Any) -> list[Any]:
    """``params`` as a non-empty list of tensors or param-group dicts; anything else (None,
    a single tensor, a number, an empty list) raises naming ``params``."""
    if isinstance(params, (torch.Tensor, str, bytes, dict)) or not isinstance(params, Iterable):
        raise TypeError(
            "params must be an iterable of tensors or of param-group dicts (e.g. "
            f"model.parameters()), got {type(params).__name__}"
        )
    if isinstance(params, (set, frozenset)):  # the order is what state_dict() keys on
        raise TypeError("params must be an ordered collection such as a list, not a set")
    items = list(params)
    if not items:
        raise ValueError(
            "params must hold at least one tensor or param group, got none (an exhausted "
            "generator? model.parameters() can be iterated once)"
        )
    return items


class Optimizer(torch.optim.Optimizer):
    """Base class of bergab optimizers (a real ``torch.optim.Optimizer``).

    Args:
        params: parameters or param-group dicts, as for any torch optimizer.
        defaults: the hyperparameter defaults of the algorithm.
        impl: ``"auto"`` (fastest path known to be correct for the device and dtype),
            ``"reference"`` (readable per-tensor loop), ``"foreach"``, ``"fused"``
            (torch's fused kernel where it exists, else bergab's own CPU kernel, see
            :mod:`bergab.optim._native`) or ``"compiled"`` (``torch.compile`` of the
            update; compiles once per group layout, lr passed as a tensor).

    Example:
        >>> from bergab.optim import SGD
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD([w], lr=lambda step: 0.1 / (step + 1))
        >>> for _ in range(2):
        ...     w.grad = torch.tensor([1.0]); opt.step()
        >>> round(w.item(), 6), opt.param_groups[0]["step"]
        (0.85, 2)
    """

    #: Hyperparameters that may be given as a schedule (a callable step -> value).
    schedulable: ClassVar[tuple[str, ...]] = ("lr", "weight_decay")
    #: Implementations this algorithm has, besides "auto".
    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "compiled")
    #: The family of bergab's own CPU kernels (``csrc/<native>.c``) behind ``"fused"``,
    #: for algorithms torch has no fused kernel for; ``None``: "fused" is torch's.
    native: ClassVar[str | None] = None
    #: The state keys of the tensors bergab's kernels read (``impl="auto"`` checks only
    #: those, with the parameters and gradients); ``None``: every state tensor.
    fused_state: ClassVar[tuple[str, ...] | None] = None
    #: How far a step reads: "element" (one entry at a time), "tensor" (a parameter's
    #: norm) or "all" (sums over every parameter); sharding (ZeRO, FSDP) checks it.
    reach: ClassVar[str] = "element"
    #: impl name -> the class's method for it (built by ``__init_subclass__``).
    _impl_table: ClassVar[dict[str, _UpdateFn]] = {}
    #: The hyperparameters that are flags: the constructor's arguments with a bool default
    #: (built by ``__init_subclass__``); a group's value must be ``True`` or ``False``.
    _flags: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._impl_table = {
            impl: getattr(cls, method)
            for impl, method in IMPL_METHODS.items()
            if callable(getattr(cls, method, None))
        }
        # the flags: constructor arguments whose default is True or False
        cls._flags = tuple(
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if isinstance(p.default, bool)
        )

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], *, impl: str = "auto"
    ) -> None:
        check_choice("impl", impl, IMPLS)
        if impl != "auto" and impl not in self.impls:
            allowed = ", ".join(repr(i) for i in ("auto", *self.impls))
            raise ValueError(
                f"impl must be one of {allowed} for {type(self).__name__}; got {impl!r}"
            )
        missing = [i for i in self.impls if i not in self._impl_table]
        if missing:
            raise TypeError(
                f"{type(self).__name__} lists impl {missing[0]!r} in impls but defines no "
                f"{IMPL_METHODS[missing[0]]} method"
            )
        self.impl = impl
        self._compiled_fns: dict[Callable[..., Any], Callable[..., Any]] = {}
        defaults = dict(defaults)
        defaults.setdefault("lr_scale", 1.0)
        defaults["step"] = 0
        super().__init__(_param_list(params), defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; hyperparameters given as schedules are resolved here.

        A group that fails a check (a parameter that is not floating point, a bad
        hyperparameter) raises and is not added.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._check_dtypes(group["params"], len(self.param_groups) - 1)
            self._check_shared(group)
            for key in self.schedulable:
                value = group.get(key)
                if is_schedule(value):
                    group[f"{key}_schedule"] = value
                    group[key] = _scheduled(key, value, int(group["step"]))
                elif key in group:
                    group.setdefault(f"{key}_schedule", None)
            check_real("lr_scale", group["lr_scale"], low=0.0)
            self._validate_group(group)
        except BaseException:
            self.param_groups.pop()  # the optimizer stays as it was before the call
            raise

    def _check_shared(self, group: dict[str, Any]) -> None:
        """The checks every family shares, before its own ``_validate_group``: a
        hyperparameter whose constructor default is ``True``/``False`` is a flag and takes
        only those (``nesterov="yes"`` or ``maximize=1`` were accepted as truthy), and a
        momentum coefficient β is in [0, 1] (above 1 the momentum buffer grows without
        bound)."""
        for key in self._flags:
            if key in group:
                check_bool(key, group[key])
        if "momentum" in group and not is_schedule(group["momentum"]):
            check_real("momentum", group["momentum"], low=0.0, high=1.0)

    def _check_dtypes(self, params: Sequence[torch.Tensor], index: int) -> None:
        """Every parameter is floating point: the updates (and torch's own optimizers) are
        defined for real floats only, and an integer, bool or complex tensor would fail
        deep inside a kernel at the first step, or be rounded silently. Checked once,
        when the group is added, so a step costs nothing more."""
        for i, p in enumerate(params):
            if p.dtype not in _FLOAT_DTYPES:
                allowed = ", ".join(str(d).removeprefix("torch.") for d in _FLOAT_DTYPES)
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} of param group {index} has dtype "
                    f"{str(p.dtype).removeprefix('torch.')}; parameters must be floating "
                    f"point ({allowed})"
                )

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check a group's hyperparameters; raise ValueError naming the bad one."""

    def set_schedule(self, key: str, schedule: Any, group: int | None = None) -> None:
        """Drive hyperparameter ``key`` by ``schedule`` (``step -> value``), or stop it.

        The schedule is evaluated at each group's step count before every ``step()``
        (and once here, so ``param_groups`` shows the value the next step uses). With
        ``schedule=None`` the hyperparameter keeps its current value and no schedule
        drives it any longer (set ``group["lr"]`` etc. as usual afterwards).

        Args:
            key: a hyperparameter in :attr:`schedulable` (``"lr"``, ``"weight_decay"``...).
            schedule: a callable ``step -> value`` (see :func:`bergab.schedules.is_schedule`)
                or ``None``.
            group: the index of the param group, or ``None`` for every group.

        Example:
            >>> from bergab.optim import SGD
            >>> opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            >>> opt.set_schedule("lr", lambda step: 0.5 / (step + 1))
            >>> opt.param_groups[0]["lr"], sorted(opt.schedules(0))
            (0.5, ['lr'])
            >>> opt.set_schedule("lr", None)
            >>> opt.param_groups[0]["lr"], opt.schedules(0)
            (0.5, {})
        """
        check_choice("key", key, self.schedulable)
        if schedule is not None and not is_schedule(schedule):
            raise TypeError(
                f"schedule must be a callable step -> value or None, got {type(schedule).__name__}"
            )
        groups = self.param_groups if group is None else [self.param_groups[self._index(group)]]
        for g in groups:
            g[f"{key}_schedule"] = schedule
            if schedule is not None:
                g[key] = _scheduled(key, schedule, int(g["step"]))

    def schedules(self, group: int = 0) -> dict[str, Any]:
        """The schedules driving param group ``group``: hyperparameter -> schedule.

        Only the hyperparameters that a schedule drives are in the dict (empty if none).

        Example:
            >>> from bergab.optim import AdamW
            >>> sched = lambda step: 1e-3 * 0.5**step
            >>> opt = AdamW([torch.nn.Parameter(torch.zeros(1))], lr=sched)
            >>> opt.schedules(0) == {"lr": sched}
            True
        """
        g = self.param_groups[self._index(group)]
        found = {}
        for key in self.schedulable:
            sched = g.get(f"{key}_schedule")
            if sched is not None:
                found[key] = sched
        return found

    def _index(self, group: Any) -> int:
        n = len(self.param_groups)
        return check_int("group", group, low=0, high=n - 1)

    def _apply_schedules(self, group: dict[str, Any], strict: bool = True) -> None:
        """Set each scheduled hyperparameter to its schedule's value at the group's step.
        ``strict=False`` (after an update, for the next step) leaves a value the schedule
        gives out of range unset: the next ``step()`` raises on it before anything moves."""
        for key in self.schedulable:
            sched = group.get(f"{key}_schedule")
            if sched is not None:
                try:
                    group[key] = _scheduled(key, sched, group["step"])
                except (TypeError, ValueError):
                    if strict:
                        raise

    @property
    def effective_lr(self) -> list[float]:
        """The learning rate each param group's next step uses (``lr * lr_scale``).

        Example:
            >>> from bergab.optim import SGD
            >>> SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).effective_lr
            [0.1]
        """
        return [float(g["lr"]) * float(g["lr_scale"]) for g in self.param_groups]

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict without the schedule objects (they come from the constructor)."""
        sd = super().state_dict()
        for g in sd["param_groups"]:
            for key in self.schedulable:
                g.pop(f"{key}_schedule", None)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's state dict; keep this optimizer's schedules, restore their position."""
        kept = [{k: g.get(f"{k}_schedule") for k in self.schedulable} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for g, scheds in zip(self.param_groups, kept, strict=True):
            g.setdefault("step", 0)
            g.setdefault("lr_scale", 1.0)
            for key, sched in scheds.items():
                g[f"{key}_schedule"] = sched
            self._apply_schedules(g)

    # ------------------------------------------------------------------ stepping
    def _select_impl(self, params: Sequence[torch.Tensor]) -> str:
        """The implementation for this group: the user's choice, or the best known one."""
        if self.impl != "auto":
            return self.impl
        if params and _is_dtensor(params[0]):
            return "reference"  # FSDP's sharded parameters: torch's ops dispatch them per shard
        if self.native is not None:
            # the parameters, their gradients and their state tensors (step counters aside)
            grads = [p.grad for p in params if p.grad is not None]
            states = self.state
            if self.fused_state is None:
                state = [
                    v
                    for p in params
                    for v in states[p].values()
                    if isinstance(v, torch.Tensor) and v.dim() > 0
                ]
            else:
                keys = self.fused_state
                state = [st[k] for p in params if (st := states.get(p)) for k in keys if k in st]
            if _native.supports(params, grads, state) and _native.library(self.native):
                return "fused"
            return "foreach"
        if "fused" in self.impls and all(
            p.dtype in _FLOAT_DTYPES and (p.is_cpu or p.is_cuda) for p in params
        ):
            return "fused"
        return "foreach"

    def _kernels(self, lists: Sequence[Sequence[torch.Tensor]]) -> ctypes.CDLL:
        """bergab's CPU kernels for the parallel ``lists`` (params, grads, state...) of a
        ``"fused"`` step. An explicit ``impl="fused"`` checks every list (raising
        :class:`~bergab.optim._native.NativeUnavailableError`); ``"auto"`` chose "fused"
        after :meth:`_select_impl` checked them all."""
        assert self.native is not None
        if self.impl == "fused":
            return _native.check_available(self.native, [ts for ts in lists if ts])
        lib = _native.library(self.native)
        assert lib is not None  # _select_impl chose "fused" only where it builds
        return lib

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        """Create the per-parameter state lazily (first step a parameter has a gradient)."""

    def _compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``torch.compile`` of ``fn``, built once per optimizer and reused."""
        if fn not in self._compiled_fns:
            self._compiled_fns[fn] = torch.compile(fn, dynamic=False)
        return self._compiled_fns[fn]

    def _before_step(self) -> None:
        """Hook for optimizers that need all groups before updating (e.g. global norms)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # one sweep over the parameters, before anything moves (Prodigy's _before_step)
        work: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        for group in self.param_groups:
            params, grads = [], []
            for p in group["params"]:
                g = p.grad
                if g is not None:
                    if g.is_sparse:
                        raise RuntimeError(
                            f"{type(self).__name__} does not support sparse gradients "
                            "(use torch.optim.SparseAdam, or dense gradients)"
                        )
                    params.append(p)
                    grads.append(g)
            work.append((params, grads))
        for group in self.param_groups:  # every group's schedules checked before any update
            self._apply_schedules(group)
        self._before_step()
        update = self._impl_table
        for group, (params, grads) in zip(self.param_groups, work, strict=True):
            if params:
                self._init_state(group, params)
                update[self._select_impl(params)](self, group, params, grads)
            group["step"] += 1
            self._apply_schedules(group, strict=False)
        return loss

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("impl", "auto")
        self.__dict__.setdefault("_compiled_fns", {})


def _is_dtensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``DTensor`` (a shard of a parameter under FSDP)."""
    return type(t).__name__ == "DTensor"  # FSDP2's parameters are DTensors themselves
