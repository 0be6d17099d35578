"""Gradient descent: plain, heavy-ball momentum and Nesterov accelerated gradient."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch

from bergab._validate import check_real
from bergab.optim._base import Optimizer
from bergab.optim._common import group_by_device_dtype, lr_tensor
from bergab.optim._foreach import batches, foreach_direction, scratch

__all__ = ["SGD", "sgd_reference"]


def sgd_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor | None],
    *,
    lr: float | torch.Tensor,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    """The readable per-tensor SGD update (``momentum_buffers`` entries are set in place).

    .. math::
        g \\leftarrow \\pm\\nabla J(\\theta) + \\lambda\\theta,\\quad
        b \\leftarrow \\mu b + (1-\\tau) g,\\quad
        \\theta \\leftarrow \\theta - \\eta\\,(g + \\mu b \\text{ if Nesterov else } b)

    On its first step the momentum buffer is the gradient itself (torch's convention).

    Example:
        >>> p, g, bufs = [torch.ones(2)], [torch.ones(2)], [None]
        >>> sgd_reference(p, g, bufs, lr=0.1, momentum=0.9, dampening=0.0,
        ...               nesterov=False, weight_decay=0.0, maximize=False)
        >>> p[0].tolist()
        [0.8999999761581421, 0.8999999761581421]
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = -g if maximize else g
        if weight_decay != 0:
            d = d + weight_decay * p
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = d.detach().clone()
                momentum_buffers[i] = buf
            else:
                buf.mul_(momentum).add_(d, alpha=1 - dampening)
            d = d + momentum * buf if nesterov else buf
        p.sub_(lr * d)


def _sgd_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    tmp_d: list[torch.Tensor] | None = None,
    tmp_n: list[torch.Tensor] | None = None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    # all buffers exist here (the first step with momentum goes through the reference
    # loop); tmp_d and tmp_n are kept scratch for the direction and Nesterov's g + mu b
    d: Any = foreach_direction(
        grads, params, maximize=maximize, weight_decay=weight_decay, out=tmp_d
    )
    if momentum != 0:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, d, alpha=1 - dampening)
        if not nesterov:
            d = bufs
        elif d is not grads:  # d is a temporary of ours
            torch._foreach_add_(d, bufs, alpha=momentum)
        elif tmp_n is not None:
            for o, g, b in zip(tmp_n, grads, bufs, strict=True):
                torch.add(g, b, alpha=momentum, out=o)
            d = tmp_n
        else:
            d = torch._foreach_add(grads, bufs, alpha=momentum)
    torch._foreach_add_(params, d, alpha=-lr)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov acceleration.

    .. math::
        \\theta_{t+1} = \\theta_t - \\eta_t\\, d_t,\\qquad
        d_t = g_t \\;(\\text{plain}),\\quad b_t \\;(\\text{momentum}),\\quad
        g_t + \\mu b_t \\;(\\text{Nesterov})

    with :math:`g_t = \\nabla J(\\theta_t) + \\lambda\\theta_t` and
    :math:`b_t = \\mu b_{t-1} + (1-\\tau) g_t`. Equal to ``torch.optim.SGD``.

    Args:
        params: parameters or param groups.
        lr: learning rate η > 0, a float or a schedule (``step -> lr``).
        momentum: μ ≥ 0 (heavy ball).
        dampening: τ in [0, 1).
        nesterov: use Nesterov accelerated gradient (needs momentum > 0, dampening 0).
        weight_decay: λ ≥ 0, L2 penalty added to the gradient (float or schedule).
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0]))
        >>> opt = SGD([w], lr=0.1, momentum=0.9, nesterov=True)
        >>> for _ in range(200):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> abs(w.item()) < 1e-6
        True
    """

    impls = ("reference", "foreach", "fused", "compiled")

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: Any = 0.0,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("momentum", group["momentum"], low=0.0)
        check_real("dampening", group["dampening"], low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, dict[str, Any], list[dict[str, Any]], list[torch.Tensor | None], bool]:
        """lr, the hyperparameters, the states, the momentum buffers (``None`` where not yet
        made) and whether any buffer is missing (a first momentum step)."""
        hyper = {
            "momentum": group["momentum"],
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
            "weight_decay": group["weight_decay"],
            "maximize": group["maximize"],
        }
        if hyper["momentum"] != 0:
            states = [self.state[p] for p in params]
            bufs: list[torch.Tensor | None] = [s.get("momentum_buffer") for s in states]
            first = any(b is None for b in bufs)
        else:  # plain gradient descent keeps no state: no per-parameter lookups
            states, bufs, first = [], [None] * len(params), False
        return group["lr"] * group["lr_scale"], hyper, states, bufs, first

    @staticmethod
    def _store(states: list[dict[str, Any]], bufs: list[torch.Tensor | None]) -> None:
        if states:  # (none without momentum: plain gradient descent keeps no state)
            for s, b in zip(states, bufs, strict=True):
                s["momentum_buffer"] = b

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, states, bufs, _ = self._args(group, params)
        sgd_reference(params, grads, bufs, lr=lr, **hyper)
        self._store(states, bufs)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, states, bufs, first = self._args(group, params)
        if first:  # the first momentum step creates the buffers: the reference loop
            sgd_reference(params, grads, bufs, lr=lr, **hyper)
        else:
            fn = self._compile(sgd_reference)
            fn(params, grads, bufs, lr=lr_tensor(lr, params[0]), **hyper)
        self._store(states, bufs)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """In cache-sized batches on CPU, temporaries kept."""
        lr, hyper, states, bufs, first = self._args(group, params)
        if first:  # the first momentum step creates the buffers: the reference loop
            sgd_reference(params, grads, bufs, lr=lr, **hyper)
            self._store(states, bufs)
            return
        heavy = hyper["momentum"] != 0
        own_d = hyper["maximize"] or hyper["weight_decay"] != 0
        lists: list[list[Any]] = [params, grads, bufs] if heavy else [params, grads]
        for idx in group_by_device_dtype(params).values():
            for batch in batches(lists, idx):
                ps = batch[0]
                _sgd_foreach(
                    ps,
                    batch[1],
                    batch[2] if heavy else [],
                    scratch(self, ps, 0) if own_d else None,
                    scratch(self, ps, 1) if heavy and hyper["nesterov"] else None,
                    lr=lr,
                    **hyper,
                )

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """torch's fused kernel; the reference loop where only some buffers exist."""
        lr, hyper, states, bufs, first = self._args(group, params)
        if first and any(b is not None for b in bufs):
            sgd_reference(params, grads, bufs, lr=lr, **hyper)
            self._store(states, bufs)
            return
        # torch's kernel copies the gradient into fresh buffers on the first step
        if first:
            bufs = [torch.empty_like(p) for p in params]
        heavy = hyper["momentum"] != 0
        have = cast(list[torch.Tensor], bufs)  # (every buffer exists by now)
        for idx in group_by_device_dtype(params).values():
            whole = len(idx) == len(params)  # one device and dtype: the lists as they are
            torch._fused_sgd_(
                params if whole else [params[i] for i in idx],
                grads if whole else [grads[i] for i in idx],
                (have if whole else [have[i] for i in idx]) if heavy else [],
                lr=lr,
                is_first_step=first,
                **hyper,
            )
        self._store(states, bufs)
