"""Build optimizers by name: the lookup configs, the CLI and ``fit()`` use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["create", "names", "register"]

_REGISTRY: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {}


def register(name: str, cls: type[torch.optim.Optimizer], **preset: Any) -> None:
    """Register ``cls`` under ``name``; ``preset`` are defaults the name implies.

    Numeric presets (``momentum=0.9``) are defaults :func:`create` may override; boolean
    presets (``nesterov=True``) are what the name means, so :func:`create` refuses a
    keyword argument that contradicts them.

    Example:
        >>> from bergab.optim import SGD
        >>> register("heavy_ball", SGD, momentum=0.9)
        >>> create("heavy_ball", [torch.nn.Parameter(torch.zeros(1))], lr=0.1).defaults["momentum"]
        0.9
        >>> _ = _REGISTRY.pop("heavy_ball")
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a str, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("optimizer name must be a non-empty str, got ''")
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(
            f"cls must be a torch.optim.Optimizer subclass, got {cls!r} ({type(cls).__name__})"
        )
    key = name.lower().replace("-", "_")
    if key in _REGISTRY and _REGISTRY[key][0] is not cls:
        raise ValueError(f"optimizer name {name!r} is already registered")
    _REGISTRY[key] = (cls, dict(preset))


def names() -> list[str]:
    """The names :func:`create` accepts, sorted.

    Example:
        >>> "sgd" in names() and "nesterov" in names()
        True
    """
    return sorted(_REGISTRY)


def create(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` (case-insensitive; ``-`` and ``_`` alike).

    Keyword arguments override the name's presets, e.g. ``create("momentum", p, lr=0.1,
    momentum=0.8)``, but not a boolean preset that is the name's meaning:
    ``create("nesterov", p, nesterov=False)`` raises ``ValueError``. An unknown name
    raises ``ValueError`` listing the close matches and every name.

    Example:
        >>> opt = create("nesterov", [torch.nn.Parameter(torch.zeros(2))], lr=0.01)
        >>> type(opt).__name__, opt.defaults["nesterov"]
        ('SGD', True)
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown optimizer {name!r}.{hint} Known names: {', '.join(names())}")
    cls, preset = _REGISTRY[key]
    for k, v in preset.items():
        if isinstance(v, bool) and k in kwargs and kwargs[k] != v:
            raise ValueError(
                f"{k}={kwargs[k]!r} contradicts optimizer {name!r}, which means {k}={v}; "
                f"leave {k} out, or name an optimizer without that preset"
            )
    return cls(params, **{**preset, **kwargs})
