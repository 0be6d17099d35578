"""Adagrad: per-coordinate learning rates from the accumulated squared gradients.

``impl="auto"`` is torch's fused kernel on CPU and CUDA. The foreach path runs on
cache-sized batches on CPU; ``impl="compiled"`` compiles on its first step, for a while
with many tensors (measured speeds and compile times: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from bergab._validate import check_choice, check_real
from bergab.optim._base import Optimizer
from bergab.optim._common import (
    Scalar,
    add_ratio_,
    foreach_root,
    group_by_device_dtype,
    group_by_step,
    lr_tensor,
    new_step,
    root,
    scalar_value,
)
from bergab.optim._foreach import batches, foreach_direction, scratch

__all__ = ["Adagrad", "adagrad_reference"]


def adagrad_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state_sums: list[torch.Tensor],
    state_steps: list[torch.Tensor],
    *,
    lr: Scalar,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """The readable per-tensor Adagrad update (sums and step counts updated in place).

    .. math::
        g \\leftarrow \\pm\\nabla J(\\theta) + \\lambda\\theta,\\quad
        G \\leftarrow G + g^2,\\quad
        \\theta \\leftarrow \\theta - \\frac{\\eta}{1 + (t-1)\\,\\delta}\\,
            \\frac{g}{\\sqrt{G} + \\epsilon}

    where :math:`t` is the parameter's step count after this step and δ is ``lr_decay``.

    Args:
        params, grads: parameters and their gradients.
        state_sums: accumulated squared gradients :math:`G` (same shapes).
        state_steps: per-parameter step counts (0-d tensors), incremented here.
        lr: learning rate η (a float, or a 0-d tensor when compiled).
        lr_decay, weight_decay, eps, maximize: δ, λ, ε and the direction.

    Example:
        >>> p, g = [torch.tensor([1.0])], [torch.tensor([2.0])]
        >>> G, step = [torch.zeros(1)], [torch.tensor(0.0)]
        >>> adagrad_reference(p, g, G, step, lr=0.1, lr_decay=0.0, weight_decay=0.0,
        ...                   eps=0.0, maximize=False)
        >>> round(p[0].item(), 6), G[0].item()  # the first step moves by lr * sign(g)
        (0.9, 4.0)
    """
    for p, g, total, step_t in zip(params, grads, state_sums, state_steps, strict=True):
        step_t += 1
        t = scalar_value(step_t)
        d = -g if maximize else g
        if weight_decay != 0:
            d = d + weight_decay * p
        total.addcmul_(d, d)
        decayed_lr = lr / (1 + (t - 1) * lr_decay)
        add_ratio_(p, d, root(total).add_(eps), -decayed_lr)


def _adagrad_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state_sums: list[torch.Tensor],
    tmp_d: list[torch.Tensor] | None = None,
    tmp_std: list[torch.Tensor] | None = None,
    *,
    t: float,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    # every tensor here shares device and dtype; t is their step count after this step;
    # tmp_d and tmp_std are kept scratch for the temporaries, or None
    d = foreach_direction(grads, params, maximize=maximize, weight_decay=weight_decay, out=tmp_d)
    torch._foreach_addcmul_(state_sums, d, d)
    std = foreach_root(state_sums, out=tmp_std)
    torch._foreach_add_(std, eps)
    torch._foreach_addcdiv_(params, d, std, value=-lr / (1 + (t - 1) * lr_decay))


class Adagrad(Optimizer):
    """Adagrad: each coordinate's step shrinks with its accumulated squared gradients.

    .. math::
        G_t = G_{t-1} + g_t^2,\\qquad
        \\theta_t = \\theta_{t-1} - \\frac{\\eta}{1 + (t-1)\\,\\delta}\\,
            \\frac{g_t}{\\sqrt{G_t} + \\epsilon}

    with :math:`g_t = \\nabla J(\\theta_{t-1}) + \\lambda\\theta_{t-1}` and
    :math:`G_0` = ``initial_accumulator_value``. Equal to ``torch.optim.Adagrad``; the fused
    path is torch's own kernel and ``impl="auto"`` picks it on CPU and CUDA.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule (``step -> lr``).
        lr_decay: δ ≥ 0, the built-in 1/(1 + (t-1)δ) decay (0 disables it).
        weight_decay: λ ≥ 0, L2 penalty added to the gradient (float or schedule).
        initial_accumulator_value: G_0 ≥ 0, the starting value of the sums.
        eps: ε ≥ 0 added to the denominator.
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = Adagrad([w], lr=0.5)
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-3)
        True

    References:
        Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
        Stochastic Optimization", JMLR 12 (2011),
        https://jmlr.org/papers/v12/duchi11a.html.
    """

    impls = ("reference", "foreach", "fused", "compiled")

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: Any = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("lr_decay", group["lr_decay"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        check_real("initial_accumulator_value", group["initial_accumulator_value"], low=0.0)
        check_real("eps", group["eps"], low=0.0)
        check_choice("maximize", group["maximize"], (False, True))

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = new_step()
                state["sum"] = torch.full_like(
                    p, group["initial_accumulator_value"], memory_format=torch.preserve_format
                )

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, dict[str, Any], list[dict[str, Any]], list[torch.Tensor], list[torch.Tensor]]:
        """lr, the hyperparameters, the states, the sums and the step counters."""
        hyper = {
            "lr_decay": group["lr_decay"],
            "weight_decay": group["weight_decay"],
            "eps": group["eps"],
            "maximize": group["maximize"],
        }
        states = [self.state[p] for p in params]
        sums = [s["sum"] for s in states]
        steps = [s["step"] for s in states]
        return group["lr"] * group["lr_scale"], hyper, states, sums, steps

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, _, sums, steps = self._args(group, params)
        adagrad_reference(params, grads, sums, steps, lr=lr, **hyper)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, _, sums, steps = self._args(group, params)
        fn = self._compile(adagrad_reference)
        fn(params, grads, sums, steps, lr=lr_tensor(lr, params[0]), **hyper)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, _, sums, steps = self._args(group, params)
        for idx in group_by_step(params, steps).values():
            for i in idx:  # count the step once per group (the same for all its tensors)
                steps[i] += 1
            t = steps[idx[0]].item()
            direction = hyper["maximize"] or hyper["weight_decay"] != 0
            for ps, gs, ss in batches([params, grads, sums], idx):
                tmp_d = scratch(self, ps, 0) if direction else None
                _adagrad_foreach(ps, gs, ss, tmp_d, scratch(self, ps, 1), t=t, lr=lr, **hyper)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, states, sums, steps = self._args(group, params)
        for idx in group_by_device_dtype(params).values():
            dev = params[idx[0]].device
            for i in idx:  # torch's kernel reads the step on the parameter's device
                if steps[i].device != dev:
                    steps[i] = states[i]["step"] = steps[i].to(dev)
            ss = [steps[i] for i in idx]
            torch._foreach_add_(ss, 1.0)
            torch._fused_adagrad_(
                [params[i] for i in idx],
                [grads[i] for i in idx],
                [sums[i] for i in idx],
                ss,
                lr=lr,
                **hyper,
            )
