"""The learning rate as fit controls it: one factor over whatever drives each group's lr.

NaN rollbacks halve the learning rate and callbacks such as
:class:`~bergab.training.ReduceLROnPlateau` scale it; :class:`LRControl` applies their
product to every param group, whether a bergab schedule, fit's schedule adapter for a
torch optimizer, a user's torch LR scheduler or a constant drives it. ``fit(lr="auto")``
is resolved with the functions :func:`register_auto_lr` was given.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

from bergab import optim as _optim
from bergab import schedules
from bergab.training._checks import lr_error

if TYPE_CHECKING:
    from bergab.training._fit import Trainer

__all__ = [
    "AUTO_LR",
    "LRControl",
    "Scaled",
    "build_optimizer",
    "group_ratios",
    "is_bergab",
    "register_auto_lr",
    "resolve_lr",
    "stateful_schedules",
    "write_lr",
]


def core(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that steps: inside a ``ZeroRedundancyOptimizer``, this process's one
    (over its share of the parameters, with the same param groups), else ``opt``.

    Example:
        >>> sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> core(sgd) is sgd
        True
    """
    from bergab.training.strategy import is_zero

    return opt.optim if is_zero(opt) else opt  # type: ignore[attr-defined]


def sync_zero(opt: torch.optim.Optimizer) -> None:
    """After a change to the stepping optimizer's groups (a schedule set, an lr written),
    copy them to ZeRO's own groups, which ZeRO copies back into it before every step."""
    inner = core(opt)
    if inner is not opt:
        for outer, mine in zip(opt.param_groups, inner.param_groups, strict=True):
            outer.update({k: v for k, v in mine.items() if k != "params"})


def write_lr(group: dict[str, Any], value: float) -> None:
    if isinstance(group.get("lr"), torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


class _GroupRatio(schedules.Schedule):
    """Another param group's lr: the first group's schedule times a fixed ratio.

    It has no children on purpose: the schedule inside is the first group's, fed (a
    metric-driven one) and saved there once; reporting it here too would feed it twice.
    """

    name = "fit_group_ratio"

    def __init__(self, schedule: schedules.ScheduleLike, ratio: float) -> None:
        self.schedule = schedule
        self.ratio = ratio

    def _value(self, t: int) -> float:
        return self.ratio * float(self.schedule(t))

    def children(self) -> tuple[schedules.Schedule, ...]:
        return ()

    def _config(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "ratio": self.ratio}


def group_ratios(opt: torch.optim.Optimizer) -> list[float]:
    """Each param group's lr divided by the first group's, as the optimizer was given.

    A group's base lr is its ``initial_lr`` when a torch scheduler already set one (so a
    reused optimizer keeps the ratios it was built with), else its ``lr``.

    Example:
        >>> w, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        >>> group_ratios(torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 1e-2}], lr=1e-3))
        [1.0, 10.0]
    """
    base = [float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]
    if 0.0 < base[0] < math.inf:
        return [b / base[0] for b in base]
    if all(b == base[0] for b in base):
        return [1.0] * len(base)
    raise ValueError(
        f"lr: fit sets the first param group's learning rate and keeps every other group's "
        f"ratio to it, but the optimizer's first group has lr {base[0]} (the groups have "
        f"{base}): give the first group a learning rate > 0"
    )


class Scaled(schedules.Schedule):
    """A schedule times the factor fit controls (NaN rollbacks, plateau cuts)."""

    name = "fit_scaled"

    def __init__(self, schedule: schedules.ScheduleLike) -> None:
        self.schedule = schedule
        self.factor = 1.0

    def _value(self, t: int) -> float:
        return self.factor * float(self.schedule(t))

    def children(self) -> tuple[schedules.Schedule, ...]:
        return (self.schedule,) if isinstance(self.schedule, schedules.Schedule) else ()

    def _config(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "factor": self.factor}


def is_bergab(opt: torch.optim.Optimizer) -> TypeGuard[_optim.Optimizer]:
    return isinstance(opt, _optim.Optimizer) and "lr" in opt.schedulable


class LRControl:
    """Multiplies every param group's learning rate by one factor, whatever drives it.

    bergab optimizers: ``lr_scale = base_scale * factor`` (schedules keep running).
    torch optimizers driven by fit's schedule adapter: the schedule is wrapped in
    :class:`Scaled`. A user's torch LR scheduler: its ``base_lrs`` and the groups' lr are
    rescaled. A constant lr: ``lr = base_lr * factor``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaled: Scaled | None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaled = scaled
        groups = optimizer.param_groups  # ZeRO's: copied into its stepping optimizer's
        if is_bergab(core(optimizer)):
            self.kind = "lr_scale"
            self.base = [float(g["lr_scale"]) for g in groups]
        elif scaled is not None:
            self.kind = "schedule"
            self.base = []
        elif scheduler is not None:
            self.kind = "scheduler"
            self.base = []
        else:
            self.kind = "lr"
            self.base = [float(g["lr"]) for g in groups]
        self.applied = 1.0

    def apply(self, factor: float) -> None:
        if factor == self.applied:
            return
        groups = self.optimizer.param_groups
        if self.kind == "lr_scale":
            for g, b in zip(groups, self.base, strict=True):
                g["lr_scale"] = b * factor
        elif self.kind == "lr":
            for g, b in zip(groups, self.base, strict=True):
                write_lr(g, b * factor)
        elif self.kind == "schedule":
            assert self.scaled is not None
            self.scaled.factor = factor
            t = self.scheduler.last_epoch
            for g, s in zip(groups, self.scheduler.schedules, strict=True):
                write_lr(g, float(s(t)))
        else:
            ratio = factor / self.applied
            for g in groups:
                write_lr(g, float(g["lr"]) * ratio)
            if hasattr(self.scheduler, "base_lrs"):
                self.scheduler.base_lrs = [b * ratio for b in self.scheduler.base_lrs]
        self.applied = factor

    def set_base_lr(self, lr: float) -> None:
        """A new constant lr for the first group (every other group keeps its ratio to
        it), under the factor in force: what population-based training's explore sets.

        Example:
            >>> w = torch.nn.Parameter(torch.zeros(1))
            >>> opt = torch.optim.SGD([w], lr=0.1)
            >>> control = LRControl(opt, None, None); control.apply(0.5)
            >>> control.set_base_lr(0.4); opt.param_groups[0]["lr"]
            0.2
        """
        groups = self.optimizer.param_groups
        if self.kind == "lr":
            first = self.base[0]
            self.base = [lr * (b / first) if first else lr for b in self.base]
            for g, b in zip(groups, self.base, strict=True):
                write_lr(g, b * self.applied)
        elif self.kind == "lr_scale":  # the factor is in lr_scale; the lr is the group's own
            first = float(groups[0]["lr"])
            for g, r in zip(groups, [float(g["lr"]) / first if first else 1.0 for g in groups],
                            strict=True):  # fmt: skip
                write_lr(g, lr * r)
        else:
            raise ValueError(
                f"set_base_lr: the lr is driven by a {self.kind}, not a constant: change the "
                "schedule instead"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": list(self.base), "applied": self.applied}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(
                f"the checkpoint's learning rate is driven by {state['kind']!r}, this run's by "
                f"{self.kind!r}: resume with the same optimizer, lr and scheduler"
            )
        self.base = [float(b) for b in state["base"]]
        self.applied = float(state["applied"])
        if self.scaled is not None:
            self.scaled.factor = self.applied


def _accepts_lr(factory: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "lr" or p.kind is p.VAR_KEYWORD for p in params)


def build_optimizer(
    spec: Any, kwargs: Mapping[str, Any], model: torch.nn.Module, lr: Any, shard: bool = False
) -> tuple[torch.optim.Optimizer, Any, Scaled | None]:
    """fit's optimizer from its ``optimizer`` option, with ``lr`` (a number or schedule) set.

    With ``shard`` it is a ``ZeroRedundancyOptimizer`` whose processes each step their
    share of the parameters with the optimizer ``spec`` names (``shard_optimizer``).
    Returns the optimizer, the schedule adapter fit steps for a torch optimizer driven
    by a schedule (else ``None``), and the :class:`Scaled` schedule inside that adapter.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params and not isinstance(spec, torch.optim.Optimizer):
        raise ValueError("the model has no trainable parameters (requires_grad=True)")
    float_lr = None if lr is None else (lr if isinstance(lr, float) else float(lr(0)))
    if float_lr is not None and (bad := lr_error([float_lr], 1, "lr")) is not None:
        raise bad
    if isinstance(spec, torch.optim.Optimizer):
        opt = spec
        mine = {id(p) for p in model.parameters()}
        theirs = {id(p) for g in opt.param_groups for p in g["params"]}
        if not mine & theirs:
            raise ValueError("the optimizer holds none of the model's parameters")
    elif shard:
        from bergab.training.strategy import shard_optimizer

        if isinstance(spec, str):
            factory: Any = functools.partial(_optim.create, spec)
            args = dict(kwargs)
        elif isinstance(spec, type):
            factory, args = spec, dict(kwargs)
        else:  # a factory of the parameters
            factory = spec
            args = {"lr": float_lr} if float_lr is not None and _accepts_lr(spec) else {}
        opt = shard_optimizer(factory, params, args)
    elif isinstance(spec, str):
        opt = _optim.create(spec, params, **kwargs)
    elif isinstance(spec, type):
        opt = spec(params, **kwargs)
    else:
        opt = (
            spec(params, lr=float_lr)
            if float_lr is not None and _accepts_lr(spec)
            else spec(params)
        )
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                "the optimizer factory must return a torch.optim.Optimizer, got "
                f"{type(opt).__name__}"
            )
    scheduler = scaled = None
    if lr is not None:
        # fit's lr is the first group's; every other group keeps its ratio to it, as a
        # torch scheduler keeps each group's base lr
        ratios = group_ratios(opt)

        def per_group(s: schedules.ScheduleLike) -> list[schedules.ScheduleLike]:
            return [s if r == 1.0 else _GroupRatio(s, r) for r in ratios]

        stepper = core(opt)  # a bergab optimizer inside ZeRO keeps its own schedules
        if schedules.is_schedule(lr):
            if is_bergab(stepper):
                for i, s in enumerate(per_group(lr)):
                    stepper.set_schedule("lr", s, group=i)
            else:
                scaled = Scaled(lr)
                scheduler = schedules.attach(opt, per_group(scaled))
        else:
            if is_bergab(stepper):
                stepper.set_schedule("lr", None)
            for g, r in zip(stepper.param_groups, ratios, strict=True):
                write_lr(g, float(lr) * r)
        sync_zero(opt)
    return opt, scheduler, scaled


def stateful_schedules(opt: torch.optim.Optimizer) -> list[schedules.Schedule]:
    """The metric-driven schedules driving a bergab optimizer's groups, each once."""
    opt = core(opt)
    found: list[schedules.Schedule] = []
    if isinstance(opt, _optim.Optimizer):
        for i in range(len(opt.param_groups)):
            for s in opt.schedules(i).values():
                if (
                    isinstance(s, schedules.Schedule)
                    and s.stateful
                    and all(s is not f for f in found)
                ):
                    found.append(s)
    return found


#: What ``fit(lr="auto")`` calls: ``auto_schedule`` and ``build_schedule`` of
#: :mod:`bergab.auto_lr`. The range test lives a layer above training, so training does
#: not import it: ``bergab.auto_lr`` hands its functions down with
#: :func:`register_auto_lr` when it is imported (``import bergab`` imports it).
AUTO_LR: dict[str, Callable[..., Any]] = {}


def register_auto_lr(auto_schedule: Callable[..., Any], build_schedule: Callable[..., Any]) -> None:
    """Set what ``fit(lr="auto")`` resolves the learning rate with (see ``AUTO_LR``)."""
    AUTO_LR["auto_schedule"] = auto_schedule
    AUTO_LR["build_schedule"] = build_schedule


def resolve_lr(trainer: Trainer, fit_state: Mapping[str, Any] | None) -> Any:
    """fit's ``lr`` option for ``trainer``: ``lr="auto"`` is turned into a schedule here
    (range test + policy, or the checkpoint's choice on resume), anything else is kept."""
    o = trainer.options
    if o.lr != "auto":
        return o.lr
    if not AUTO_LR:  # pragma: no cover - ``import bergab`` registers it
        raise RuntimeError('lr="auto" needs bergab.auto_lr: import bergab first')
    auto_schedule, build_schedule = AUTO_LR["auto_schedule"], AUTO_LR["build_schedule"]
    if fit_state is not None and fit_state.get("auto") is not None:
        auto = fit_state["auto"]  # resume: the same schedule, no new range test
        trainer.state.auto = dict(auto)
        return build_schedule(auto["peak"], auto["total_steps"], auto["policy"])
    if trainer.strategy == "fsdp":
        raise ValueError(
            'lr="auto" does not run under strategy="fsdp" (its trials restore the whole '
            "model, which FSDP shards): choose the lr under strategy='ddp' or in one process "
            "and pass it as a number"
        )
    if trainer.total_steps is None:
        raise ValueError(
            'lr="auto" needs the length of the run: pass max_steps, or epochs with data '
            "that has a length"
        )
    bs = None if o.batch_size is None else getattr(trainer._source, "batch_size", None)
    # the range test draws fit's batches and takes fit's steps (precision, clipping,
    # accumulation, device): both run bergab.training's data and step code
    chosen = auto_schedule(
        trainer.model,
        trainer.train_data,
        trainer.loss_fn,
        total_steps=trainer.total_steps,
        val_data=trainer.val_data,
        optimizer=o.optimizer,
        batch_size=bs,
        batch_fn=trainer.batch_fn,
        accumulation_steps=o.accumulation_steps,
        device=trainer.device,
        precision=trainer.precision,
        clip_norm=trainer.clip_norm,
        clip_value=trainer.clip_value,
        # without a seed, the data seed fit drew: the trials see the run's own batches
        seed=o.seed if o.seed is not None else trainer.state.data_seed,
        optimizer_kwargs=o.optimizer_kwargs or None,
    )
    res = chosen.result
    trainer.state.auto = {
        "peak": chosen.peak,
        "policy": chosen.policy,
        "total_steps": chosen.total_steps,
        "describe": chosen.describe(),
        "rule": res.rule,
        "fallback": res.fallback,
        "choice": res.choice,
        "cost_steps": res.cost_steps,
        "candidates": [dict(c) for c in res.candidates],
    }
    return chosen.schedule
