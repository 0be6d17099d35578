"""How ``fit`` trains in several processes: torch.distributed's own engines, set up for you.

``fit(strategy=...)`` picks one:

- ``"none"``: one process (or a model you wrapped yourself in DDP/FSDP).
- ``"ddp"``: :class:`torch.nn.parallel.DistributedDataParallel`; every process holds the
  whole model and optimizer and the gradients are averaged after each backward.
- ``"fsdp"``: FSDP2's ``fully_shard``: parameters, gradients and optimizer state are
  sharded across the processes and gathered block by block (each child of the model that
  holds parameters: see :func:`fsdp_blocks`) for the forward and backward.
- ``"auto"`` (the default): ``"ddp"`` when the process was started by ``torchrun`` (or
  ``bergab train --nproc-per-node N``) with ``WORLD_SIZE`` > 1, else ``"none"``.

``shard_optimizer=True`` wraps the optimizer in
:class:`torch.distributed.optim.ZeroRedundancyOptimizer` (ZeRO stage 1: each process
keeps the state of its share of the parameters). The process group is started from
torchrun's environment (``env://``) with gloo on the CPU and nccl on CUDA. This module
is that setup: it launches nothing and communicates through torch.distributed only.

Which optimizers shard: an optimizer whose step reads only one element at a time
(SGD, Adam, AdamW, RMSprop...) works with both (schedule-free ones, which swap weights
for evaluation, with FSDP only); one that reads a whole
tensor (LARS, LAMB, LDoG: a layer's norm) with ZeRO (it keeps whole tensors) but not
with FSDP (it cuts tensors); one that reduces over all parameters (Prodigy, DoG,
hypergradient descent) with neither. :func:`optimizer_reach` says which one an optimizer is.

Example:
    >>> resolve_strategy("auto", torch.nn.Linear(1, 1), env={})
    'none'
    >>> resolve_strategy("ddp", torch.nn.Linear(1, 1), env={})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: strategy='ddp' needs several processes started by torchrun ...
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from bergab.training.world import World, synchronizes_gradients

#: The ``strategy`` values fit accepts.
STRATEGIES = ("auto", "none", "ddp", "fsdp")

__all__ = [
    "REACH",
    "STRATEGIES",
    "check_shardable",
    "device_of_rank",
    "ensure_process_group",
    "fsdp_blocks",
    "gather_full_state",
    "is_fsdp",
    "is_zero",
    "launched",
    "load_full_state",
    "load_model_state",
    "model_state",
    "no_sync",
    "optimizer_reach",
    "resolve_strategy",
    "shard_optimizer",
    "shards_parameters",
    "unwrap",
    "usable_cores",
    "wrap",
]


#: How far an optimizer's step reads: ``"element"`` (one entry at a time), ``"tensor"``
#: (a whole parameter: its norm), ``"all"`` (a sum over every parameter).
REACH = ("element", "tensor", "all")


def launched(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun as one of several (``WORLD_SIZE`` > 1).

    Example:
        >>> launched({"WORLD_SIZE": "2", "RANK": "0"}), launched({})
        (True, False)
    """
    env = os.environ if env is None else env
    try:
        return int(env.get("WORLD_SIZE", "1")) > 1 and "RANK" in env
    except ValueError:
        return False


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, else the machine's count).

    Example:
        >>> usable_cores() >= 1
        True
    """
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_strategy(strategy: Any, model: nn.Module, env: Mapping[str, str] | None = None) -> str:
    """``strategy`` checked against how this process was started; ``"auto"`` resolved.

    A model that already averages its gradients (your own DDP or FSDP wrapper) is used as
    it is: ``"none"``. ``"ddp"`` and ``"fsdp"`` need several processes (an initialized
    process group of more than one, or torchrun's environment).
    """
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}"
        )
    if synchronizes_gradients(model):
        if strategy in ("ddp", "fsdp"):
            raise ValueError(
                f"strategy={strategy!r}: the model is already wrapped in "
                f"{type(model).__name__}; pass the bare model (fit wraps it) or strategy='none'"
            )
        return "none"
    dist = torch.distributed
    many = (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1) or (
        launched(env)
    )
    if strategy == "auto":
        return "ddp" if many else "none"
    if strategy == "none" and launched(env) and not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "strategy='none' under torchrun: every process would train alone on all the data "
            "and write the same files; use strategy='auto' or 'ddp' (or start the process "
            "group and wrap the model yourself)"
        )
    if strategy in ("ddp", "fsdp") and not many:
        raise ValueError(
            f"strategy={strategy!r} needs several processes started by torchrun (or bergab "
            "train --nproc-per-node N); this process runs alone"
        )
    if strategy == "fsdp" and not _has_fully_shard():
        raise ValueError(
            f"strategy='fsdp' needs FSDP2's fully_shard (torch >= 2.6); this is torch "
            f"{torch.__version__}: use strategy='ddp'"
        )
    return strategy


def _has_fully_shard() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def ensure_process_group(device: torch.device, env: Mapping[str, str] | None = None) -> None:
    """Start the default process group from torchrun's environment unless one runs.

    The backend is gloo on the CPU and nccl on CUDA. On the CPU, more processes on this
    machine than cores to run them on is refused: they would take turns on the cores and
    every collective would wait for the slowest.
    """
    dist = torch.distributed
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed: train in one process")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"several processes train on the CPU (gloo) or on CUDA GPUs (nccl); device is "
            f"{device.type!r}: use device='cpu' or 'cuda', or train in one process"
        )
    env = os.environ if env is None else env
    local = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1")))
    if device.type == "cpu" and local > usable_cores():
        raise ValueError(
            f"{local} processes on this machine but {usable_cores()} CPU cores to run them: "
            f"start at most {usable_cores()} (--nproc-per-node)"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)  # also for a group you started: collectives use it
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    atexit.register(_destroy)  # a group left at exit can abort the process in gloo's teardown


def _destroy() -> None:
    dist = torch.distributed
    if dist.is_initialized():
        # DDP/ZeRO/FSDP objects of finished runs may live on in reference cycles: freed
        # at interpreter shutdown, after the group, they abort gloo (SIGABRT at exit)
        gc.collect()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def device_of_rank(
    device: torch.device, given: Any = "auto", env: Mapping[str, str] | None = None
) -> torch.device:
    """Under torchrun, CUDA is this process's own GPU, ``cuda:LOCAL_RANK``: a bare
    ``"cuda"``, or the device ``"auto"`` found (the model's, or ``cuda:0``), become it; a
    ``given`` device naming another GPU is refused (every process would use that one).

    Example:
        >>> device_of_rank(torch.device("cuda"), env={"LOCAL_RANK": "1"})
        device(type='cuda', index=1)
        >>> device_of_rank(torch.device("cpu"), env={"LOCAL_RANK": "1"})
        device(type='cpu')
    """
    env = os.environ if env is None else env
    if device.type != "cuda" or "LOCAL_RANK" not in env:
        return device
    mine = torch.device("cuda", int(env["LOCAL_RANK"]))
    explicit = given != "auto" and torch.device(given).index is not None
    if explicit and device != mine:
        raise ValueError(
            f"device={str(given)!r}: under torchrun each process trains on its own GPU, "
            f"{mine} in this one (LOCAL_RANK); use device='cuda' or 'auto'"
        )
    return mine


def optimizer_reach(optimizer: Any) -> str:
    """How far ``optimizer``'s step reads (one of :data:`REACH`), for an instance or class.

    bergab's optimizers declare it (``reach``); torch's built-in ones are element-wise
    (L-BFGS aside); anything else is taken to be element-wise, at your word.

    Example:
        >>> import bergab
        >>> optimizer_reach(bergab.optim.Prodigy), optimizer_reach(torch.optim.AdamW)
        ('all', 'element')
    """
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    reach = getattr(cls, "reach", None)
    if reach in REACH:
        return str(reach)
    if isinstance(cls, type) and issubclass(cls, torch.optim.LBFGS):
        return "all"
    return "element"


def check_shardable(optimizer: Any, strategy: str, sharded_optimizer: bool) -> None:
    """Refuse an optimizer whose step would read across the shards it cannot see.

    Example:
        >>> import bergab
        >>> check_shardable(bergab.optim.AdamW, "fsdp", True)  # element-wise: fine
        >>> check_shardable(bergab.optim.DoG, "ddp", True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: shard_optimizer=True gives each process a share of the parameters, ...
    """
    reach = optimizer_reach(optimizer)
    name = optimizer.__name__ if isinstance(optimizer, type) else type(optimizer).__name__
    if strategy == "fsdp" and reach != "element":
        what = "a whole tensor (a layer's norm)" if reach == "tensor" else "every parameter"
        raise ValueError(
            f"strategy='fsdp' cuts every tensor across the processes, and {name}'s step "
            f"reads {what}: use strategy='ddp' (with shard_optimizer=True to shard its "
            "state, when it reads no more than a tensor)"
        )
    if sharded_optimizer and reach == "all":
        raise ValueError(
            f"shard_optimizer=True gives each process a share of the parameters, and "
            f"{name}'s step sums over every parameter: use shard_optimizer=False"
        )


def wrap(model: nn.Module, strategy: str, device: torch.device) -> nn.Module:
    """``model`` wrapped for ``strategy`` (``"none"``: itself). DDP broadcasts rank 0's
    parameters and buffers, so every process starts from the same weights; FSDP2 shards
    the model in place (its class changes, the object stays)."""
    if strategy == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (World.current().size,))
        with torch.no_grad():  # every process starts from rank 0's weights
            for t in [*model.parameters(), *model.buffers()]:
                torch.distributed.broadcast(t.data, src=0)
        for block in fsdp_blocks(model):  # gathered one block at a time, then freed
            fully_shard(block, mesh=mesh)
        return fully_shard(model, mesh=mesh)  # type: ignore[return-value]
    return model


def fsdp_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules ``strategy="fsdp"`` shards on their own before the root: the root's
    children that hold parameters, looking inside ``ModuleList``/``ModuleDict`` (they
    have no forward to gather in). Each is gathered for its own forward and backward and
    freed after, so a process holds one block's whole weights at a time. None when two
    blocks share a parameter (tied weights): then the model is one unit.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> [type(m).__name__ for m in fsdp_blocks(net)]
        ['Linear', 'Linear']
    """

    def walk(module: nn.Module) -> list[nn.Module]:
        found = []
        for child in module.children():
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                found += walk(child)
            elif next(child.parameters(), None) is not None:
                found.append(child)
        return found

    blocks = walk(model)
    seen: set[int] = set()
    for block in blocks:
        ids = {id(p) for p in block.parameters()}
        if ids & seen:
            return []
        seen |= ids
    return blocks


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place: the model itself).

    Example:
        >>> m = torch.nn.Linear(1, 1)
        >>> unwrap(m) is m
        True
    """
    while isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` is sharded by FSDP2's ``fully_shard``.

    Example:
        >>> is_fsdp(torch.nn.Linear(1, 1))
        False
    """
    with contextlib.suppress(ImportError):
        from torch.distributed.fsdp import FSDPModule

        return isinstance(model, FSDPModule)
    return False


def shards_parameters(model: nn.Module) -> bool:
    """Whether ``model`` holds only a shard of its parameters in this process (FSDP2's
    ``fully_shard`` anywhere in it, or FSDP1): then every process must run each forward.

    Example:
        >>> shards_parameters(torch.nn.Linear(1, 1))
        False
    """
    if is_fsdp(model) or any(is_fsdp(m) for m in model.modules()):
        return True
    with contextlib.suppress(ImportError):
        from torch.distributed.fsdp import FullyShardedDataParallel

        return isinstance(model, FullyShardedDataParallel)
    return False


@contextlib.contextmanager
def no_sync(model: nn.Module, skip: bool) -> Iterator[None]:
    """Inside, backward passes keep their gradients local (``skip``): the micro-steps of
    gradient accumulation but the last, so gradients are averaged once per step.

    Example:
        >>> m = torch.nn.Linear(2, 1)
        >>> with no_sync(m, skip=True):  # a model that averages nothing: a plain backward
        ...     m(torch.ones(1, 2)).sum().backward()
        >>> m.weight.grad.tolist()
        [[1.0, 1.0]]
    """
    if not skip:
        yield
    elif isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_fsdp(model):
        model.set_requires_gradient_sync(False)  # type: ignore[operator]
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]
    else:
        yield


def shard_optimizer(
    factory: Any, params: list[nn.Parameter], kwargs: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """``ZeroRedundancyOptimizer`` over ``params``, each process's share stepped by
    ``factory(share, **kwargs)`` (an optimizer class or a function of the parameters)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(params, optimizer_class=factory, **dict(kwargs))


def is_zero(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a ``ZeroRedundancyOptimizer``.

    Example:
        >>> is_zero(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
        False
    """
    with contextlib.suppress(ImportError):
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return isinstance(optimizer, ZeroRedundancyOptimizer)
    return False


def model_state(model: nn.Module) -> dict[str, Any]:
    """The whole model's state with the bare module's keys, on every process (under FSDP
    gathered: every process must call it)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return unwrap(model).state_dict()


def load_model_state(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Load a :func:`model_state` into ``model`` (under FSDP into every process's shard)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        model.reshard()  # type: ignore[operator]  # the root stays gathered after a forward
        set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(state)


def gather_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """The model's and optimizer's whole state, as one process would hold it, on rank 0.

    Every process must call it (gathering is collective); ranks other than 0 get
    ``None``. Returns ``(model_state, optimizer_state, layout)``: the model state always
    has the bare module's keys (no ``module.`` prefix), so a checkpoint resumes under any
    strategy and world size; the optimizer state is torch's usual one (``layout``
    ``"index"``) except under FSDP, where it is keyed by parameter name (``"name"``).
    """
    main = World.current().is_main
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(model, options=opts)
        if optimizer.state:
            osd = get_optimizer_state_dict(model, optimizer, options=opts)
        else:  # no step yet: torch would fill the state by a step of its own (it counts)
            osd = {"state": {}, "param_groups": optimizer.state_dict()["param_groups"]}
        return (msd if main else None), (osd if main else None), "name"
    if is_zero(optimizer):
        optimizer.consolidate_state_dict(to=0)  # type: ignore[attr-defined]
    if not main:
        return None, None, "index"
    whole: dict[str, Any] = dict(optimizer.state_dict())
    if is_zero(optimizer):  # as the optimizer it shards writes its groups (no schedules)
        inner = optimizer.optim  # type: ignore[attr-defined]
        keys = set(inner.state_dict()["param_groups"][0]) if inner.param_groups else set()
        whole["param_groups"] = [
            {k: v for k, v in g.items() if k in keys or k == "params"}
            for g in whole["param_groups"]
        ]
    return unwrap(model).state_dict(), whole, "index"


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: Mapping[str, Any],
    optimizer_state: Mapping[str, Any],
    layout: str,
) -> None:
    """Load a state :func:`gather_full_state` made into every process's shard."""
    fsdp = is_fsdp(model)
    if (layout == "name") != fsdp:
        raise ValueError(
            "resume: the checkpoint was written "
            + ("under strategy='fsdp'" if layout == "name" else "without strategy='fsdp'")
            + " and this run "
            + ("uses it" if fsdp else "does not")
            + ": resume with the strategy it was written with"
        )
    if fsdp:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        model.reshard()  # type: ignore[operator]  # the root stays gathered after a forward
        set_model_state_dict(model, dict(model_state), options=opts)
        if optimizer_state["state"]:  # else saved before the first step: nothing to load
            set_optimizer_state_dict(model, optimizer, dict(optimizer_state), options=opts)
        return
    unwrap(model).load_state_dict(model_state)
    optimizer.load_state_dict(dict(optimizer_state))


#: The options every process must agree on (a difference would make them train apart
#: or wait for each other forever).
_AGREED = (
    "epochs", "max_steps", "batch_size", "shuffle", "accumulation_steps", "precision",
    "strategy", "shard_optimizer", "seed", "val_every", "checkpoint_every", "nan_policy",
    "clip_norm", "clip_value", "lr_scaling", "lr_scaling_warmup", "train_metrics", "tol_loss",
    "tol_grad",
)  # fmt: skip


def _length(data: Any) -> str:
    """How many examples ``data`` holds, as far as it says without being read."""
    if isinstance(data, (tuple, list)) and data and hasattr(data[0], "__len__"):
        return str(len(data[0]))  # tensors or arrays (x, y, ...)
    try:
        return str(len(data))
    except TypeError:
        return "?"


def _fingerprint(options: Any, model: nn.Module, train_data: Any) -> dict[str, str]:
    out = {name: repr(getattr(options, name)) for name in _AGREED}
    out["the number of train_data examples"] = _length(train_data)
    if options.val_data is not None:
        out["the number of val_data examples"] = _length(options.val_data)
    opt = options.optimizer
    out["optimizer"] = opt if isinstance(opt, str) else getattr(opt, "__name__", type(opt).__name__)
    out["optimizer_kwargs"] = repr(sorted((options.optimizer_kwargs or {}).items()))
    lr = options.lr
    out["lr"] = repr(lr) if lr is None or isinstance(lr, (int, float, str)) else type(lr).__name__
    out["model"] = repr([tuple(p.shape) for p in model.parameters()])
    out["metrics"] = repr(sorted(options.metrics or {}))
    out["val_data"] = "given" if options.val_data is not None else "none"
    out["early_stopping"] = "given" if options.early_stopping is not None else "none"
    out["checkpoint_dir"] = "given" if options.checkpoint_dir is not None else "none"
    out["resume"] = repr(bool(options.resume))
    return out


def check_same_options(options: Any, model: nn.Module, world: World, train_data: Any) -> None:
    """Raise ``ValueError`` naming the first option (or the model, or the data's size)
    that differs between this process and rank 0 (every process raises it, so none waits
    on another: processes that disagree would take different numbers of steps)."""
    prints = world.gather_objects(_fingerprint(options, model, train_data))
    for rank, fp in enumerate(prints[1:], start=1):
        for key in sorted(set(prints[0]) | set(fp)):
            value = prints[0].get(key)
            if fp.get(key) != value:
                what = "the model's parameter shapes" if key == "model" else f"{key}"
                raise ValueError(
                    f"the processes were not given the same run: {what} is {value} on rank 0 "
                    f"and {fp.get(key)} on rank {rank}; start every process with the same "
                    "config and arguments"
                )
