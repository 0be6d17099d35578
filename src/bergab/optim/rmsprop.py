"""RMSprop: gradients divided by a running root-mean-square, optionally centered and with
momentum; ε outside the square root (torch) or inside it (the textbook form).

torch has no fused RMSprop kernel; ``impl="fused"`` is bergab's own CPU kernel
(``csrc/rmsprop.c``, see :mod:`bergab.optim._native`): the whole update of an element in
one loop, one pass over memory per step, each operation rounded as in
:func:`rmsprop_reference`, and ``impl="auto"`` picks it for float32/float64 CPU tensors.
Elsewhere ``auto`` is the foreach path, run on cache-sized batches on CPU (faster than
torch's for-loop and foreach, which stream each op through main memory).
``impl="compiled"`` compiles on its first step, for a while with many tensors (measured
speeds and compile times: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from bergab._validate import check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import RmspropHp
from bergab.optim._base import Optimizer
from bergab.optim._common import (
    LOW_PRECISION,
    Scalar,
    TensorList,
    add_ratio_,
    add_scaled_,
    counts_natively,
    foreach_root,
    group_by_device_dtype,
    lr_tensor,
    native_runs,
    new_step,
    root,
)
from bergab.optim._foreach import batches, foreach_direction, scratch

__all__ = ["RMSprop", "rmsprop_reference"]


def rmsprop_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    grad_avgs: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    state_steps: list[torch.Tensor],
    *,
    lr: Scalar,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    eps_inside_sqrt: bool,
    maximize: bool,
) -> None:
    """The readable per-tensor RMSprop update (all state updated in place).

    .. math::
        g &\\leftarrow \\pm\\nabla J(\\theta) + \\lambda\\theta,\\qquad
        v \\leftarrow \\alpha v + (1-\\alpha)\\,g^2,\\qquad
        \\bar g \\leftarrow \\alpha \\bar g + (1-\\alpha)\\,g \\;\\text{(centered)} \\\\
        s &= v - \\bar g^2 \\text{ (centered) else } v,\\qquad
        r = \\sqrt{s} + \\epsilon \\;\\text{ or }\\; \\sqrt{s + \\epsilon}
            \\;(\\texttt{eps\\_inside\\_sqrt}) \\\\
        \\theta &\\leftarrow \\theta - \\eta\\,g/r \\quad\\text{or, with momentum }\\mu:\\quad
        b \\leftarrow \\mu b + g/r,\\;\\; \\theta \\leftarrow \\theta - \\eta b

    Args:
        params, grads: parameters and their gradients.
        square_avgs: running means of g² (v).
        grad_avgs: running means of g (centered only, else ``[]``).
        momentum_buffers: momentum buffers b (momentum > 0 only, else ``[]``).
        state_steps: per-parameter step counts (0-d tensors), incremented here.
        lr: learning rate η (a float, or a 0-d tensor when compiled).
        alpha, eps, weight_decay, momentum, centered, eps_inside_sqrt, maximize: as above.

    Example:
        >>> p, g = [torch.tensor([1.0])], [torch.tensor([2.0])]
        >>> v, step = [torch.zeros(1)], [torch.tensor(0.0)]
        >>> rmsprop_reference(p, g, v, [], [], step, lr=0.1, alpha=0.75, eps=0.0,
        ...                   weight_decay=0.0, momentum=0.0, centered=False,
        ...                   eps_inside_sqrt=False, maximize=False)
        >>> round(p[0].item(), 6), v[0].item()  # v = 0.25 * 4, step = lr * 2 / 1
        (0.8, 1.0)
    """
    for i, (p, g, v, step_t) in enumerate(
        zip(params, grads, square_avgs, state_steps, strict=True)
    ):
        step_t += 1
        d = -g if maximize else g
        if weight_decay != 0:
            d = d + weight_decay * p
        v.mul_(alpha).addcmul_(d, d, value=1 - alpha)
        if centered:
            grad_avgs[i].lerp_(d, 1 - alpha)
            s = v.addcmul(grad_avgs[i], grad_avgs[i], value=-1)
        else:
            s = v
        if eps_inside_sqrt:
            denom = (s.float() if s.dtype in LOW_PRECISION else s).add(eps).sqrt_()
        else:
            denom = root(s, inplace=centered).add_(eps)
        if momentum > 0:
            buf = momentum_buffers[i]
            buf.mul_(momentum).addcdiv_(d, denom)
            add_scaled_(p, buf, -lr)
        else:
            add_ratio_(p, d, denom, -lr)


def _rmsprop_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    grad_avgs: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    tmp_d: list[torch.Tensor] | None = None,
    tmp_denom: list[torch.Tensor] | None = None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    eps_inside_sqrt: bool,
    maximize: bool,
) -> None:
    # every tensor here shares device and dtype (the caller counts the steps); tmp_d and
    # tmp_denom are kept scratch for the temporaries, or None
    d = foreach_direction(grads, params, maximize=maximize, weight_decay=weight_decay, out=tmp_d)
    torch._foreach_mul_(square_avgs, alpha)
    torch._foreach_addcmul_(square_avgs, d, d, value=1 - alpha)
    var: TensorList = square_avgs
    if centered:  # var is then a temporary of ours, updated in place below
        torch._foreach_lerp_(grad_avgs, d, 1 - alpha)
        if tmp_denom is None:
            var = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
        else:
            for o, v, a in zip(tmp_denom, square_avgs, grad_avgs, strict=True):
                torch.addcmul(v, a, a, value=-1, out=o)
            var = tmp_denom
    if eps_inside_sqrt:
        if var[0].dtype in LOW_PRECISION:  # float32, or eps would round to 0
            denom: TensorList = [x.float() for x in var]
            torch._foreach_add_(denom, eps)
        elif centered:
            denom = var
            torch._foreach_add_(denom, eps)
        elif tmp_denom is not None:
            for o, v in zip(tmp_denom, var, strict=True):
                torch.add(v, eps, out=o)
            denom = tmp_denom
        else:
            denom = torch._foreach_add(var, eps)
        torch._foreach_sqrt_(denom)
    else:
        denom = foreach_root(var, inplace=centered, out=None if centered else tmp_denom)
        torch._foreach_add_(denom, eps)
    if momentum > 0:
        torch._foreach_mul_(momentum_buffers, momentum)
        torch._foreach_addcdiv_(momentum_buffers, d, denom)
        torch._foreach_add_(params, momentum_buffers, alpha=-lr)
    else:
        torch._foreach_addcdiv_(params, d, denom, value=-lr)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root-mean-square of recent gradients.

    .. math::
        v_t = \\alpha v_{t-1} + (1-\\alpha)\\,g_t^2,\\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\,\\frac{g_t}{\\sqrt{v_t} + \\epsilon}

    with :math:`g_t = \\nabla J(\\theta_{t-1}) + \\lambda\\theta_{t-1}`. ``centered=True``
    divides by the running standard deviation :math:`\\sqrt{v_t - \\bar g_t^2}` instead
    (:math:`\\bar g_t` the running mean of :math:`g`), and ``momentum`` μ > 0 accumulates
    :math:`b_t = \\mu b_{t-1} + g_t/(\\sqrt{v_t}+\\epsilon)` and steps by :math:`\\eta b_t`.
    With the default ``eps_inside_sqrt=False`` it equals ``torch.optim.RMSprop``.

    .. warning::
        Where ε sits differs between libraries. torch (and this default) computes
        :math:`g/(\\sqrt{v}+\\epsilon)`; the textbook form (Hinton's lecture, TensorFlow/Keras
        and optax's ``eps_in_sqrt`` convention) is :math:`g/\\sqrt{v+\\epsilon}`, selected by
        ``eps_inside_sqrt=True``. The two agree when :math:`v \\gg \\epsilon` but not early
        in training or for parameters with tiny gradients, where
        :math:`\\sqrt{\\epsilon}` ≫ ε bounds the step much more tightly: the same ``eps``
        value does not mean the same thing in both forms.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule (``step -> lr``).
        alpha: smoothing constant α in [0, 1].
        eps: ε ≥ 0, added to the root (default) or under it (``eps_inside_sqrt``).
        weight_decay: λ ≥ 0, L2 penalty added to the gradient (float or schedule).
        momentum: μ ≥ 0.
        centered: normalize by the running variance instead of the second moment.
        eps_inside_sqrt: use :math:`\\sqrt{v+\\epsilon}` (textbook) instead of
            :math:`\\sqrt{v}+\\epsilon` (torch).
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel, float32 or
            float64 CPU tensors; "auto" picks it there) or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = RMSprop([w], lr=0.01, momentum=0.5, centered=True)
        >>> for _ in range(500):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-2)
        True

    References:
        Hinton, Srivastava & Swersky, "Neural Networks for Machine Learning", lecture 6e
        (2012), https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf;
        Graves, "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850
        (the centered form).
    """

    impls = ("reference", "foreach", "fused", "compiled")
    native = "rmsprop"

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        eps_inside_sqrt: bool = False,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "eps_inside_sqrt": eps_inside_sqrt,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("alpha", group["alpha"], low=0.0, high=1.0)
        check_real("eps", group["eps"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        check_real("momentum", group["momentum"], low=0.0)
        for flag in ("centered", "eps_inside_sqrt", "maximize"):
            check_choice(flag, group[flag], (False, True))

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = new_step()
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"] and "grad_avg" not in state:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, dict[str, Any], list[list[torch.Tensor]]]:
        """lr, the hyperparameters and the state lists ``[v, gavg, bufs, steps]`` (``gavg``
        empty unless centered, ``bufs`` empty without momentum)."""
        hyper = {
            "alpha": group["alpha"],
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "momentum": group["momentum"],
            "centered": group["centered"],
            "eps_inside_sqrt": group.get("eps_inside_sqrt", False),  # absent in torch's groups
            "maximize": group["maximize"],
        }
        states = [self.state[p] for p in params]
        v = [s["square_avg"] for s in states]
        gavg = [s["grad_avg"] for s in states] if hyper["centered"] else []
        bufs = [s["momentum_buffer"] for s in states] if hyper["momentum"] > 0 else []
        steps = [s["step"] for s in states]
        return group["lr"] * group["lr_scale"], hyper, [v, gavg, bufs, steps]

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, lists = self._args(group, params)
        rmsprop_reference(params, grads, *lists, lr=lr, **hyper)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, lists = self._args(group, params)
        fn = self._compile(rmsprop_reference)
        fn(params, grads, *lists, lr=lr_tensor(lr, params[0]), **hyper)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, (v, gavg, bufs, steps) = self._args(group, params)
        for st in steps:
            st += 1
        lists = [params, grads, v]
        lists += [gavg] if gavg else []
        lists += [bufs] if bufs else []
        direction = hyper["maximize"] or hyper["weight_decay"] != 0  # d is a temporary
        for idx in group_by_device_dtype(params).values():
            for batch in batches(lists, idx):
                ps, gs, vs, *rest = batch
                _rmsprop_foreach(
                    ps,
                    gs,
                    vs,
                    rest[0] if gavg else [],
                    rest[-1] if bufs else [],
                    scratch(self, ps, 0) if direction else None,
                    scratch(self, ps, 1),
                    lr=lr,
                    **hyper,
                )

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """bergab's kernel (csrc/rmsprop.c): one pass per step."""
        lr, hyper, (v, gavg, bufs, steps) = self._args(group, params)
        runs = native_runs(self.native, params, grads, v, gavg, bufs, checked=self.impl == "auto")
        count = counts_natively(steps)  # the kernel increments the float32 steps
        if not count:
            torch._foreach_add_(steps, 1.0)
        hp = RmspropHp(
            lr=lr,
            alpha=hyper["alpha"],
            one_minus_alpha=1 - hyper["alpha"],
            eps=hyper["eps"],
            weight_decay=hyper["weight_decay"],
            momentum=hyper["momentum"],
            maximize=bool(hyper["maximize"]),
            centered=bool(hyper["centered"]),
            eps_inside_sqrt=bool(hyper["eps_inside_sqrt"]),
            count=bool(count),
        )
        for lib, idx, lists in runs:
            if count:
                lists = [*lists, steps if idx is None else [steps[i] for i in idx]]
            _native.call(lib, "rmsprop", lists, hp)
