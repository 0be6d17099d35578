"""Parameter groups: no weight decay on biases and norms, and layer-wise lr decay.

:func:`param_groups` turns a model into torch param-group dicts. Layer-wise learning-rate
decay is written as a per-group ``lr_scale``, which every bergab optimizer multiplies into
its learning rate itself (after any schedule or torch LR scheduler has set ``lr``), so it
works with every bergab optimizer, every schedule and every torch LR scheduler. Plain
``torch.optim`` optimizers ignore ``lr_scale``; for them pass ``apply_lr_scale=True`` and
a float ``lr`` to get ``lr = lr * scale`` written into each group instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from bergab._validate import check_real

__all__ = ["NORM_LAYERS", "default_no_decay", "param_groups"]


def _norm_layers() -> tuple[type[nn.Module], ...]:
    names = ("LayerNorm", "GroupNorm", "LocalResponseNorm", "RMSNorm")
    found: list[type[nn.Module]] = [getattr(nn, n) for n in names if hasattr(nn, n)]
    # BatchNorm*, SyncBatchNorm, InstanceNorm* and their lazy forms share this base
    found.append(nn.modules.batchnorm._NormBase)
    return tuple(found)


#: The module types whose weights :func:`default_no_decay` exempts from weight decay.
NORM_LAYERS: tuple[type[nn.Module], ...] = _norm_layers()

NoDecay = Callable[[str, nn.Parameter, nn.Module], bool]


def default_no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Whether a parameter should get no weight decay: biases, 0-/1-D tensors and the
    parameters of normalization layers (:data:`NORM_LAYERS`).

    Args:
        name: the parameter's full name in the model (``"encoder.0.bias"``).
        param: the parameter.
        module: the module that owns it directly.

    Returns:
        ``True`` to exempt it from weight decay.

    Example:
        >>> ln = nn.LayerNorm((2, 3))
        >>> default_no_decay("ln.weight", ln.weight, ln)  # 2-D, but a norm's weight
        True
        >>> lin = nn.Linear(2, 2)
        >>> default_no_decay("fc.weight", lin.weight, lin)
        False
    """
    return name.rsplit(".", 1)[-1] == "bias" or param.ndim <= 1 or isinstance(module, NORM_LAYERS)


def _as_predicate(no_decay: NoDecay | Iterable[str] | None) -> NoDecay:
    if no_decay is None:
        return lambda name, param, module: False
    if callable(no_decay):
        return no_decay
    if isinstance(no_decay, str):
        raise TypeError(
            "no_decay must be a predicate (name, param, module) -> bool or a list of name "
            f"substrings, got the str {no_decay!r} (wrap it in a list)"
        )
    if not isinstance(no_decay, Iterable):
        raise TypeError(
            "no_decay must be a predicate (name, param, module) -> bool, a list of name "
            f"substrings or None, got {type(no_decay).__name__} {no_decay!r}"
        )
    parts = tuple(no_decay)
    for p in parts:
        if not isinstance(p, str):
            raise TypeError(f"no_decay substrings must be str, got {type(p).__name__}")
    return lambda name, param, module: any(s in name for s in parts)


def _top_level_layers(model: nn.Module) -> Callable[[str], int]:
    """Layer index by top-level child: the k-th child that has parameters is layer k;
    parameters registered on the model itself are layer 0."""
    order: dict[str, int] = {}
    for child_name, child in model.named_children():
        if any(True for _ in child.parameters()):
            order[child_name] = len(order)
    return lambda name: order.get(name.split(".", 1)[0], 0)


def _classified(
    model: nn.Module,
    is_no_decay: NoDecay,
    layer: Callable[[str], int],
    no_decay_embeddings: bool,
    trainable_only: bool,
) -> list[tuple[int, bool, nn.Parameter]]:
    """``(layer, no decay, parameter)`` for each parameter of ``model`` in model order
    (a shared one once; with ``trainable_only``, only those that require grad)."""
    owners = dict(model.named_modules())
    seen: set[int] = set()
    entries: list[tuple[int, bool, nn.Parameter]] = []
    for name, param in model.named_parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        owner = owners[name.rsplit(".", 1)[0]] if "." in name else model
        skip = is_no_decay(name, param, owner) or (
            no_decay_embeddings and isinstance(owner, nn.Embedding | nn.EmbeddingBag)
        )
        k = layer(name)
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"layer_of({name!r}) must return an int, got {k!r}")
        entries.append((k, bool(skip), param))
    return entries


def param_groups(
    model: nn.Module,
    weight_decay: Any,
    no_decay: NoDecay | Iterable[str] | None = default_no_decay,
    layer_decay: float | None = None,
    lr: Any = None,
    *,
    layer_of: Callable[[str], int] | None = None,
    no_decay_embeddings: bool = False,
    no_decay_options: Mapping[str, Any] | None = None,
    apply_lr_scale: bool = False,
    trainable_only: bool = False,
) -> list[dict[str, Any]]:
    """Split a model's parameters into torch param groups by weight decay and depth.

    Every parameter lands in exactly one group (shared parameters once). Parameters for
    which ``no_decay`` is true get ``weight_decay=0``; with ``layer_decay=γ`` a parameter
    in layer ``k`` of ``L`` gets

    .. math::
        \\text{lr\\_scale} = \\gamma^{(L-1) - k}

    so the last layer trains at the full learning rate and each earlier one γ times
    slower. Layers are the model's top-level children that have parameters, in order
    (parameters registered on the model itself count as layer 0), or whatever
    ``layer_of(name)`` returns (then ``L - 1`` is the largest index it returns).

    The scale goes in each group's ``lr_scale``, which bergab optimizers multiply into
    their learning rate at every step, after schedules and torch LR schedulers have set
    ``lr``. ``torch.optim`` optimizers ignore ``lr_scale``: for them pass a float ``lr``
    and ``apply_lr_scale=True``, which writes ``lr = lr * scale`` into each group (a torch
    LR scheduler then scales each group's own initial lr, which keeps the ratios).

    Args:
        model: the module whose ``named_parameters()`` are grouped.
        weight_decay: the decay of the decayed groups (a float ≥ 0, or a schedule for
            bergab optimizers).
        no_decay: which parameters get no decay: a predicate ``(name, param, module) ->
            bool`` (``module`` owns the parameter), a list of name substrings
            (``["bias", "norm"]``), or ``None`` (decay everything). Default:
            :func:`default_no_decay` (biases, 0-/1-D parameters, normalization layers).
        layer_decay: γ in (0, 1] for layer-wise lr decay, or ``None`` (no ``lr_scale``).
        lr: optional learning rate (float or schedule) written into every group.
        layer_of: ``name -> int`` layer index, instead of the top-level module order.
        no_decay_embeddings: also exempt ``nn.Embedding``/``nn.EmbeddingBag`` weights.
        no_decay_options: extra keys for the no-decay groups, e.g.
            ``{"exclude_from_adaptation": True}`` for :class:`~bergab.optim.LARS`.
        apply_lr_scale: write ``lr * scale`` into ``lr`` instead of an ``lr_scale`` key
            (for ``torch.optim`` optimizers; needs a float ``lr``).
        trainable_only: leave out parameters with ``requires_grad=False``.

    Returns:
        A list of param-group dicts (``params``, ``weight_decay``, and ``lr_scale``,
        ``lr`` and the ``no_decay_options`` where they apply), ordered by layer, decayed
        group first; empty groups are left out.

    Example:
        >>> from bergab.optim import SGD
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))
        >>> groups = param_groups(model, weight_decay=0.01, layer_decay=0.5)
        >>> [(len(g["params"]), g["weight_decay"], g["lr_scale"]) for g in groups]
        [(1, 0.01, 0.25), (1, 0.0, 0.25), (2, 0.0, 0.5), (1, 0.01, 1.0), (1, 0.0, 1.0)]
        >>> opt = SGD(groups, lr=0.1)
        >>> opt.effective_lr
        [0.025, 0.025, 0.05, 0.1, 0.1]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(weight_decay):
        weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    if layer_decay is not None:
        layer_decay = check_real("layer_decay", layer_decay, low=0.0, high=1.0, low_open=True)
    if lr is not None and not callable(lr):
        lr = check_real("lr", lr, low=0.0)
    if apply_lr_scale and layer_decay is not None and (lr is None or callable(lr)):
        raise ValueError(
            "apply_lr_scale=True needs a float lr (the base learning rate to scale); "
            f"got {lr!r}. With a schedule, use a bergab optimizer, which applies lr_scale"
        )
    if layer_of is not None and not callable(layer_of):
        raise TypeError(f"layer_of must be a callable name -> int, got {type(layer_of).__name__}")
    is_no_decay = _as_predicate(no_decay)
    layer = layer_of if layer_of is not None else _top_level_layers(model)
    extra = dict(no_decay_options or {})
    entries = _classified(model, is_no_decay, layer, no_decay_embeddings, trainable_only)

    last = max((k for k, _, _ in entries), default=0)
    merge = not callable(weight_decay) and weight_decay == 0 and not extra
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    keyed = [
        ((k if layer_decay is not None else 0, skip and not merge), p) for k, skip, p in entries
    ]
    for key, param in sorted(keyed, key=lambda e: e[0]):  # stable: model order within a group
        if key not in groups:
            group: dict[str, Any] = {"params": [], "weight_decay": 0.0 if key[1] else weight_decay}
            if key[1]:
                group.update(extra)
            scale = 1.0 if layer_decay is None else float(layer_decay ** (last - key[0]))
            if apply_lr_scale and layer_decay is not None:
                group["lr"] = lr * scale
            else:
                if lr is not None:
                    group["lr"] = lr
                if layer_decay is not None:
                    group["lr_scale"] = scale
            groups[key] = group
        groups[key]["params"].append(param)
    return list(groups.values())
