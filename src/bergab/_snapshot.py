"""A snapshot of everything a trial run on a model may touch, to put it back bit for bit.

:func:`take` copies the parameters and buffers (and keeps the tensor objects and their
storages), the gradients, the ``requires_grad`` flags, every module's train/eval mode,
the torch / NumPy / Python (and initialized CUDA) random states and the generators of the
given data loaders; :func:`restore` puts all of it back in place.
:func:`preserved_optimizer` does the same for an optimizer instance. :func:`bergab.lr_find`
runs its sweep between the two.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bergab.training import _data

__all__ = ["Snapshot", "preserved_optimizer", "restore", "take", "unique_tensors"]


@dataclass
class Snapshot:
    """Everything lr_find may touch, copied so it can be put back bit for bit."""

    # (module, name, the tensor object, its original data, a copy of the values)
    params: list[tuple[nn.Module, str, nn.Parameter, torch.Tensor, torch.Tensor]]
    buffers: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]]
    grads: list[tuple[nn.Parameter, torch.Tensor | None]]
    requires_grad: list[tuple[nn.Parameter, bool]]
    modes: list[tuple[nn.Module, bool]]
    rng_torch: torch.Tensor
    rng_numpy: Any
    rng_python: Any
    rng_cuda: list[torch.Tensor] | None
    generators: list[tuple[torch.Generator, torch.Tensor]]


def unique_tensors(model: nn.Module) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
    params: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        params.setdefault(id(p), p)
    buffers: dict[int, torch.Tensor] = {}
    for b in model.buffers():
        buffers.setdefault(id(b), b)
    return list(params.values()), list(buffers.values())


def take(model: nn.Module, data: Iterable[Any]) -> Snapshot:
    params, _ = unique_tensors(model)
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    gens = [g for d in data for g in _data.loader_generators(d)]
    owned_params = []
    owned_buffers = []
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                owned_params.append((module, name, p, p.data, p.detach().clone()))
        for name, b in module._buffers.items():
            if b is not None:
                owned_buffers.append((module, name, b, b.detach().clone()))
    return Snapshot(
        params=owned_params,
        buffers=owned_buffers,
        grads=[(p, None if p.grad is None else p.grad.detach().clone()) for p in params],
        requires_grad=[(p, p.requires_grad) for p in params],
        modes=[(m, m.training) for m in model.modules()],
        rng_torch=torch.get_rng_state(),
        rng_numpy=np.random.get_state(),
        rng_python=random.getstate(),
        rng_cuda=torch.cuda.get_rng_state_all() if cuda else None,
        generators=[(g, g.get_state()) for g in gens],
    )


def restore(snap: Snapshot) -> None:
    with torch.no_grad():
        # the original tensor objects and storages go back in place (a device move during
        # the sweep replaced buffers and parameters' data), then their values
        for module, name, p, data, saved in snap.params:
            module._parameters[name] = p
            if p.data is not data:
                p.data = data
            data.copy_(saved)
        for module, name, b, saved in snap.buffers:
            module._buffers[name] = b
            b.copy_(saved)
        for p, g in snap.grads:
            p.grad = g
    for p, flag in snap.requires_grad:
        p.requires_grad_(flag)
    for m, mode in snap.modes:
        m.training = mode
    torch.set_rng_state(snap.rng_torch)
    np.random.set_state(snap.rng_numpy)
    random.setstate(snap.rng_python)
    if snap.rng_cuda is not None:
        torch.cuda.set_rng_state_all(snap.rng_cuda)
    for gen, state in snap.generators:
        gen.set_state(state)


def _clone_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


@contextlib.contextmanager
def preserved_optimizer(opt: torch.optim.Optimizer) -> Iterator[None]:
    """Put an optimizer back exactly: its state tensors (in place), groups and attributes."""
    attrs = dict(vars(opt))
    state = {
        p: (st, dict(st), {k: _clone_value(v) for k, v in st.items()})
        for p, st in opt.state.items()
    }
    groups = [
        (
            g,
            dict(g),
            {k: v if k == "params" or callable(v) else _clone_value(v) for k, v in g.items()},
        )
        for g in opt.param_groups
    ]
    try:
        yield
    finally:
        for key in [k for k in vars(opt) if k not in attrs]:
            delattr(opt, key)
        for key, value in attrs.items():
            setattr(opt, key, value)
        for p in [p for p in opt.state if p not in state]:
            del opt.state[p]
        with torch.no_grad():
            for p, (st, entries, saved) in state.items():
                st.clear()
                st.update(entries)
                for k, v in saved.items():
                    if isinstance(v, torch.Tensor) and isinstance(st[k], torch.Tensor):
                        if st[k].shape == v.shape and st[k].dtype == v.dtype:
                            st[k].copy_(v)
                        else:
                            st[k] = v
                    else:
                        st[k] = v
                opt.state[p] = st
            for g, entries, saved in groups:
                g.clear()
                g.update(entries)
                for k, v in saved.items():
                    if isinstance(v, torch.Tensor) and isinstance(g[k], torch.Tensor):
                        g[k].copy_(v)
                    else:
                        g[k] = v
