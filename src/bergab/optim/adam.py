"""Adam and its variants: AMSGrad, AdamW (decoupled weight decay), NAdam and RAdam.

One formula with flags, not four copies: :func:`adam_reference` is the readable update of
the whole family (``variant="adam"|"nadam"|"radam"``, ``amsgrad``,
``decoupled_weight_decay``), ``_adam_foreach`` the same update on lists of tensors.
``impl="fused"`` is torch's fused kernel for Adam/AdamW and bergab's own CPU kernel
(``csrc/adam.c``, see :mod:`bergab.optim._native`) for NAdam and RAdam: the whole update
of an element in one loop, one pass over memory per step, each operation rounded as in
:func:`adam_reference`. Each parameter keeps its own step count (``state["step"]``, a
float32 0-d CPU tensor as in torch), so bias corrections match torch exactly, including
for parameters that skipped steps; the kernel gets each tensor's factors, computed in
Python floats, and stores the new float32 counters itself.

Which path ``impl="auto"`` takes, and why (measured speeds: ``benchmarks/RESULTS.md``):

- on float32/float64 CPU tensors, torch's fused kernel for Adam and AdamW and bergab's
  kernel for NAdam and RAdam: one pass over memory per step, close to the memory-traffic
  floor (7 words per parameter). Elsewhere (other dtypes or devices, or without the
  kernels) the foreach path, which runs every op of the update on cache-sized batches
  rather than streaming each op through main memory as torch's own for-loop and foreach
  implementations do.
- never ``impl="compiled"`` (``torch.compile`` of :func:`adam_reference`, step sizes
  passed as tensors so an lr schedule never recompiles): fast once compiled, but its first
  step compiles for minutes with many tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, cast

import torch

from bergab._validate import check_betas, check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import AdamHp
from bergab.optim._base import Optimizer
from bergab.optim._common import (
    Scalar,
    add_ratio_,
    add_scaled_,
    counts_natively,
    f32,
    foreach_root,
    group_by_device_dtype,
    group_by_step,
    hoist,
    lr_tensor,
    native_runs,
    new_step,
    root,
    scalar_value,
)
from bergab.optim._foreach import (
    batches,
    foreach_direction,
    scratch,
)

__all__ = ["Adam", "AdamW", "NAdam", "RAdam", "adam_reference"]


def _nadam_mu(t: Scalar, beta1: float, momentum_decay: float) -> tuple[Scalar, Scalar]:
    """NAdam's momentum schedule at steps t and t + 1: β1 (1 − ½ · 0.96^(t ψ))."""
    mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    return mu, mu_next


def _rectifier(rho_t: Scalar, rho_inf: float) -> Scalar:
    """RAdam's variance rectification term r_t (real only where rho_t > 4)."""
    return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


# ---------------------------------------------------------------------------- reference
def adam_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor],
    state_steps: list[torch.Tensor],
    mu_products: list[torch.Tensor] | None = None,
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool = False,
    amsgrad: bool = False,
    maximize: bool = False,
    variant: str = "adam",
    momentum_decay: float = 4e-3,
) -> None:
    """The readable per-tensor update of the Adam family (all state updated in place).

    With :math:`g` the gradient (negated when maximizing), :math:`t` the parameter's step
    count after this step and :math:`\\lambda` the weight decay:

    .. math::
        g &\\leftarrow g + \\lambda\\theta \\quad\\text{(L2), or }\\;
            \\theta \\leftarrow (1-\\eta\\lambda)\\,\\theta \\;\\text{(decoupled, AdamW)} \\\\
        m &\\leftarrow \\beta_1 m + (1-\\beta_1)\\,g,\\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2)\\,g^2,\\qquad
        \\hat v = \\max(\\hat v, v) \\text{ (AMSGrad) else } v \\\\
        \\text{adam:}\\quad \\theta &\\leftarrow \\theta - \\frac{\\eta}{1-\\beta_1^t}\\,
            \\frac{m}{\\sqrt{\\hat v/(1-\\beta_2^t)}+\\epsilon} \\\\
        \\text{nadam:}\\quad \\theta &\\leftarrow \\theta - \\eta\\,
            \\frac{\\frac{1-\\mu_t}{1-\\Pi_t}\\,g + \\frac{\\mu_{t+1}}{1-\\Pi_{t+1}}\\,m}
                  {\\sqrt{v/(1-\\beta_2^t)}+\\epsilon},\\quad
            \\mu_t = \\beta_1\\big(1-\\tfrac12\\,0.96^{t\\psi}\\big),\\;
            \\Pi_t = \\textstyle\\prod_{s\\le t}\\mu_s \\\\
        \\text{radam:}\\quad \\theta &\\leftarrow \\theta - \\frac{\\eta}{1-\\beta_1^t}\\,m
            \\cdot\\begin{cases} r_t\\,\\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v}+\\epsilon}
            & \\rho_t > 5 \\\\ 1 & \\text{otherwise}\\end{cases}

    where for RAdam :math:`\\rho_\\infty = 2/(1-\\beta_2)-1`,
    :math:`\\rho_t = \\rho_\\infty - 2t\\beta_2^t/(1-\\beta_2^t)` and
    :math:`r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
    {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}`; :math:`\\psi` is ``momentum_decay``.
    These are torch.optim's Adam, AdamW, NAdam and RAdam formulas (note where each puts ε).

    Args:
        params, grads, exp_avgs, exp_avg_sqs: parameters, gradients and the first/second
            moment buffers (same shapes).
        max_exp_avg_sqs: running maxima of ``exp_avg_sqs`` (AMSGrad only, else ``[]``).
        state_steps: per-parameter step counts (0-d tensors), incremented here.
        mu_products: per-parameter products :math:`\\Pi_t` (NAdam only, 0-d tensors).
        lr: learning rate η (a float, or a 0-d tensor when compiled).
        beta1, beta2, eps, weight_decay, decoupled_weight_decay, amsgrad, maximize,
        momentum_decay: the hyperparameters above.
        variant: "adam", "nadam" or "radam".

    Example:
        >>> p, g = [torch.tensor([1.0])], [torch.tensor([0.5])]
        >>> m, v, step = [torch.zeros(1)], [torch.zeros(1)], [torch.tensor(0.0)]
        >>> adam_reference(p, g, m, v, [], step, lr=0.1, beta1=0.9, beta2=0.999,
        ...                eps=1e-8, weight_decay=0.0)
        >>> round(p[0].item(), 6), step[0].item()  # the first Adam step moves by lr
        (0.9, 1.0)
    """
    for i, (p, g, m, v, step_t) in enumerate(
        zip(params, grads, exp_avgs, exp_avg_sqs, state_steps, strict=True)
    ):
        step_t += 1
        t = scalar_value(step_t)
        d = -g if maximize else g
        if weight_decay != 0:
            if decoupled_weight_decay:
                p.mul_(1 - lr * weight_decay)
            else:
                d = d + weight_decay * p
        # 1) moments
        m.lerp_(d, 1 - beta1)
        v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        second = v
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            second = max_exp_avg_sqs[i]
        bias1, bias2, root2 = hoist(1 - beta1**t, 1 - beta2**t, (1 - beta2**t) ** 0.5)
        # 2) the step
        if variant == "radam":
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * t * beta2**t / bias2
            if isinstance(rho_t, torch.Tensor):  # compiled: select, don't branch on data
                rho, scale = hoist(rho_t, _rectifier(rho_t, rho_inf) * root2)
                adaptive = torch.where(
                    cast(torch.Tensor, rho) > 5, scale / (root(second) + eps), 1.0
                )
                add_scaled_(p, m * adaptive, -lr / bias1)
            elif rho_t > 5:
                rect = _rectifier(rho_t, rho_inf)
                add_ratio_(p, m, root(second).add_(eps), -lr * rect * root2 / bias1)
            else:
                add_scaled_(p, m, -lr / bias1)
            continue
        denom = (root(second) / root2).add_(eps)
        if variant == "nadam":
            assert mu_products is not None
            mu, mu_next = hoist(*_nadam_mu(t, beta1, momentum_decay))
            mu_products[i].mul_(mu)
            prod = scalar_value(mu_products[i])
            add_ratio_(p, d, denom, -lr * (1 - mu) / (1 - prod))
            add_ratio_(p, m, denom, -lr * mu_next / (1 - prod * mu_next))
        else:
            add_ratio_(p, m, denom, -lr / bias1)


# ---------------------------------------------------------------------------- foreach
def _adam_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor],
    tmp_d: list[torch.Tensor] | None = None,
    tmp_denom: list[torch.Tensor] | None = None,
    *,
    t: float,
    mu_product: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    variant: str,
    momentum_decay: float,
) -> None:
    # every tensor here shares device and dtype; the caller has counted the step: t is the
    # step count after it, mu_product NAdam's product of mu up to it (all tensors alike);
    # tmp_d and tmp_denom are kept scratch for the temporaries, or None
    l2 = 0.0 if decoupled_weight_decay else weight_decay
    d = foreach_direction(grads, params, maximize=maximize, weight_decay=l2, out=tmp_d)
    if weight_decay != 0 and decoupled_weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, d, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, d, d, value=1 - beta2)
    second = exp_avg_sqs
    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        second = max_exp_avg_sqs
    bias1 = 1 - beta1**t
    bias2 = 1 - beta2**t
    if variant == "radam":
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / bias2
        if rho_t > 5:
            rect = _rectifier(rho_t, rho_inf)
            denom = foreach_root(second, out=tmp_denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr * rect * bias2**0.5 / bias1)
        else:
            torch._foreach_add_(params, exp_avgs, alpha=-lr / bias1)
        return
    # sqrt(v / bias2) + eps == (sqrt(v) + eps * sqrt(bias2)) / sqrt(bias2): one pass fewer
    denom = foreach_root(second, out=tmp_denom)
    torch._foreach_add_(denom, eps * bias2**0.5)
    if variant == "nadam":
        mu, mu_next = _nadam_mu(t, beta1, momentum_decay)
        scale = -lr * bias2**0.5
        torch._foreach_addcdiv_(params, d, denom, value=scale * (1 - mu) / (1 - mu_product))
        torch._foreach_addcdiv_(
            params, exp_avgs, denom, value=scale * mu_next / (1 - mu_product * mu_next)
        )
    else:
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr * bias2**0.5 / bias1)


# ---------------------------------------------------------------------------- optimizers
_StateLists = tuple[
    list[torch.Tensor],
    list[torch.Tensor],
    list[torch.Tensor],
    list[torch.Tensor],
    list[torch.Tensor] | None,
]


class _AdamFamily(Optimizer):
    """Shared machinery of Adam, AdamW, NAdam and RAdam (one update, variant flags)."""

    variant: ClassVar[str] = "adam"
    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "compiled")

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        group["betas"] = check_betas(group["betas"])
        check_real("eps", group["eps"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        if "momentum_decay" in group:
            check_real("momentum_decay", group["momentum_decay"], low=0.0)
        for flag in ("amsgrad", "decoupled_weight_decay", "maximize"):
            if flag in group:
                check_choice(flag, group[flag], (False, True))

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = new_step()
                if self.variant == "nadam":
                    state["mu_product"] = torch.ones((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group.get("amsgrad", False) and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, dict[str, Any], dict[str, Any], list[dict[str, Any]], _StateLists]:
        """What every implementation reads: lr, the hyperparameters, the variant's extras,
        the states and the state lists ``(m, v, vmax, steps, mus)`` (``vmax`` empty
        without AMSGrad, ``mus`` None except for NAdam)."""
        beta1, beta2 = group["betas"]
        amsgrad = bool(group.get("amsgrad", False))
        hyper: dict[str, Any] = {
            "beta1": beta1,
            "beta2": beta2,
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            # absent from the groups of checkpoints written by older torch versions
            "decoupled_weight_decay": group.get(
                "decoupled_weight_decay", self.defaults["decoupled_weight_decay"]
            ),
            "amsgrad": amsgrad,
            "maximize": group["maximize"],
        }
        lr = group["lr"] * group["lr_scale"]
        states = [self.state[p] for p in params]
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        vmax = [s["max_exp_avg_sq"] for s in states] if amsgrad else []
        steps = [s["step"] for s in states]
        mus = [s["mu_product"] for s in states] if self.variant == "nadam" else None
        more = {"variant": self.variant, "momentum_decay": group.get("momentum_decay", 0.0)}
        return lr, hyper, more, states, (m, v, vmax, steps, mus)

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, more, _, (m, v, vmax, steps, mus) = self._args(group, params)
        adam_reference(params, grads, m, v, vmax, steps, mus, lr=lr, **hyper, **more)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, more, _, (m, v, vmax, steps, mus) = self._args(group, params)
        fn = self._compile(adam_reference)
        fn(params, grads, m, v, vmax, steps, mus, lr=lr_tensor(lr, params[0]), **hyper, **more)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, hyper, more, _, (m, v, vmax, steps, mus) = self._args(group, params)
        amsgrad = hyper["amsgrad"]
        counters = [steps] if mus is None else [steps, mus]
        lists = [params, grads, m, v, vmax] if amsgrad else [params, grads, m, v]
        l2 = hyper["weight_decay"] != 0 and not hyper["decoupled_weight_decay"]
        direction = hyper["maximize"] or l2  # d is then a temporary
        for idx in group_by_step(params, *counters).values():
            # count the step once per group (the same count for all its tensors)
            for i in idx:
                steps[i] += 1
            t = steps[idx[0]].item()
            prod = 1.0
            if mus is not None:
                mu, _ = _nadam_mu(t, hyper["beta1"], more["momentum_decay"])
                for i in idx:
                    mus[i].mul_(mu)
                prod = mus[idx[0]].item()
            for batch in batches(lists, idx):
                _adam_foreach(
                    batch[0],
                    batch[1],
                    batch[2],
                    batch[3],
                    batch[4] if amsgrad else [],
                    scratch(self, batch[0], 0) if direction else None,
                    scratch(self, batch[0], 1),
                    t=t,
                    mu_product=prod,
                    lr=lr,
                    **hyper,
                    **more,
                )

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """torch's fused Adam/AdamW kernel (NAdam and RAdam: :meth:`_native_fused`)."""
        lr, hyper, _, states, (m, v, vmax, steps, _) = self._args(group, params)
        amsgrad = hyper["amsgrad"]
        decoupled = hyper.pop("decoupled_weight_decay")
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        for idx in group_by_device_dtype(params).values():
            dev = params[idx[0]].device
            for i in idx:  # torch's kernels read the step on the parameter's device
                if steps[i].device != dev:
                    steps[i] = states[i]["step"] = steps[i].to(dev)
            ss = [steps[i] for i in idx]
            torch._foreach_add_(ss, 1.0)
            kernel(
                [params[i] for i in idx],
                [grads[i] for i in idx],
                [m[i] for i in idx],
                [v[i] for i in idx],
                [vmax[i] for i in idx] if amsgrad else [],
                ss,
                lr=lr,
                **hyper,
            )

    def _native_fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """bergab's CPU kernel (``csrc/adam.c``): NAdam's and RAdam's ``_fused``."""
        lr, hyper, more, _, (m, v, vmax, steps, mus) = self._args(group, params)
        self._native_update(params, grads, m, v, vmax, steps, mus, lr=lr, **hyper, **more)

    def _native_update(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        m: list[torch.Tensor],
        v: list[torch.Tensor],
        vmax: list[torch.Tensor],
        steps: list[torch.Tensor],
        mus: list[torch.Tensor] | None,
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled_weight_decay: bool,
        amsgrad: bool,
        maximize: bool,
        variant: str,
        momentum_decay: float,
    ) -> None:
        """NAdam and RAdam on bergab's CPU kernels (``csrc/adam.c``): one pass per step.

        The per-tensor factors come from each tensor's own step count, computed here in
        Python floats as :func:`adam_reference` computes them; the new float32 counters
        (step, NAdam's product of mu) are rounded as torch's float32 ops round them and
        stored by the kernel (a torch op per 0-d tensor would cost more than the checks
        and the whole Python side here)."""
        runs = native_runs(self.native, params, grads, m, v, vmax, checked=self.impl == "auto")
        counters = [steps] if mus is None else [steps, mus]
        count = counts_natively(*counters)
        if count:  # as torch's float32 step += 1 rounds
            ts = f32([s.item() + 1.0 for s in steps])
        else:
            torch._foreach_add_(steps, 1.0)
            ts = [s.item() for s in steps]
        per: list[float] = []
        if variant == "nadam":
            assert mus is not None
            mu_pairs = [cast(tuple[float, float], _nadam_mu(t, beta1, momentum_decay)) for t in ts]
            if count:  # as torch's float32 tensor *= mu rounds: mu to float32, then x * mu
                mu32 = f32([mu for mu, _ in mu_pairs])
                prods = f32([c.item() * mu for c, mu in zip(mus, mu32, strict=True)])
            else:
                torch._foreach_mul_(mus, [mu for mu, _ in mu_pairs])
                prods = [c.item() for c in mus]
            for t, (mu, mu_next), prod in zip(ts, mu_pairs, prods, strict=True):
                c_grad = -lr * (1 - mu) / (1 - prod)
                c_avg = -lr * mu_next / (1 - prod * mu_next)
                per += [c_grad, c_avg, (1 - beta2**t) ** 0.5, t, prod]
            width = 5
        else:
            rho_inf = 2 / (1 - beta2) - 1
            for t in ts:
                bias1, bias2 = 1 - beta1**t, 1 - beta2**t
                rho_t = rho_inf - 2 * t * beta2**t / bias2
                if rho_t > 5:
                    rect = cast(float, _rectifier(rho_t, rho_inf))
                    per += [1.0, -lr * rect * bias2**0.5 / bias1, t]
                else:
                    per += [0.0, -lr / bias1, t]
            width = 3
        hp = AdamHp(
            one_minus_beta1=1 - beta1,
            beta2=beta2,
            one_minus_beta2=1 - beta2,
            eps=eps,
            weight_decay=weight_decay,
            decay=1 - lr * weight_decay,
            maximize=bool(maximize),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            amsgrad=bool(amsgrad),
            count=bool(count),
        )
        for lib, idx, lists in runs:
            pt, own = per, counters
            if idx is not None:
                pt = [per[width * i + k] for i in idx for k in range(width)]
                own = [[c[i] for i in idx] for c in counters]
            _native.call(lib, variant, [*lists, *own] if count else lists, hp, _native.doubles(pt))


class Adam(_AdamFamily):
    """Adam: adaptive moment estimation, with AMSGrad and decoupled weight decay as flags.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,\\quad
        \\theta_t = \\theta_{t-1} - \\frac{\\eta}{1-\\beta_1^t}\\,
            \\frac{m_t}{\\sqrt{v_t/(1-\\beta_2^t)} + \\epsilon}

    with :math:`g_t = \\nabla J(\\theta_{t-1}) + \\lambda\\theta_{t-1}` (L2 weight decay) or,
    with ``decoupled_weight_decay=True`` (AdamW), :math:`\\theta` shrunk by
    :math:`(1-\\eta\\lambda)` before the step. AMSGrad replaces :math:`v_t` in the
    denominator by its running maximum. Equal to ``torch.optim.Adam``; the fused path is
    torch's own kernel and ``impl="auto"`` picks it on CPU and CUDA.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule (``step -> lr``).
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0 added to the denominator.
        weight_decay: λ ≥ 0 (float or schedule).
        amsgrad: use the running maximum of the second moment (Reddi et al., 2018).
        decoupled_weight_decay: decay the weights directly (AdamW) instead of adding
            λθ to the gradient.
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = Adam([w], lr=0.1)
        >>> for _ in range(500):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-2)
        True

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", arXiv:1412.6980.
        Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", arXiv:1904.09237.
    """

    impls = ("reference", "foreach", "fused", "compiled")

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (``Adam(..., decoupled_weight_decay=True)``).

    .. math::
        \\theta_t = (1-\\eta\\lambda)\\,\\theta_{t-1} - \\frac{\\eta}{1-\\beta_1^t}\\,
            \\frac{m_t}{\\sqrt{v_t/(1-\\beta_2^t)} + \\epsilon}

    where the moments :math:`m_t, v_t` see the plain gradient (no λθ term). Note that the
    decay is multiplied by the (scheduled) learning rate η, as in torch.optim.AdamW; the
    paper's :math:`\\eta_t\\lambda` with a separate schedule multiplier is obtained by
    scheduling ``weight_decay``. Equal to ``torch.optim.AdamW``.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule.
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0 (default 1e-2), float or schedule.
        amsgrad: use the running maximum of the second moment.
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = torch.zeros(1); opt.step()  # zero gradient: only the decay acts
        >>> round(w.item(), 6)
        0.95

    References:
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            decoupled_weight_decay=True,
            maximize=maximize,
            impl=impl,
        )


class NAdam(_AdamFamily):
    """NAdam: Adam with Nesterov momentum and Dozat's momentum-decay schedule.

    .. math::
        \\mu_t = \\beta_1\\big(1 - \\tfrac12\\,0.96^{t\\psi}\\big),\\quad
        \\theta_t = \\theta_{t-1} - \\eta\\,
            \\frac{\\frac{1-\\mu_t}{1-\\prod_{s\\le t}\\mu_s}\\,g_t
                 + \\frac{\\mu_{t+1}}{1-\\prod_{s\\le t+1}\\mu_s}\\,m_t}
                 {\\sqrt{v_t/(1-\\beta_2^t)} + \\epsilon}

    with Adam's moments :math:`m_t, v_t` and ψ = ``momentum_decay``. The running product
    of μ is kept per parameter in ``state["mu_product"]`` (a float32 0-d tensor, as in
    torch). Equal to ``torch.optim.NAdam``.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0 (default 2e-3), a float or a schedule.
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0, float or schedule.
        momentum_decay: ψ ≥ 0 (default 4e-3).
        decoupled_weight_decay: decay the weights directly (as AdamW) instead of adding
            λθ to the gradient.
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel, float32 or
            float64 CPU tensors; "auto" picks it there) or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = NAdam([w], lr=0.05)
        >>> for _ in range(500):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-2)
        True

    References:
        Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop
        (https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ).
    """

    variant = "nadam"
    impls = ("reference", "foreach", "fused", "compiled")
    native = "adam"
    _fused = _AdamFamily._native_fused

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)


class RAdam(_AdamFamily):
    """RAdam: Adam whose adaptive step is switched on gradually (variance rectification).

    .. math::
        \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1,\\quad
        \\rho_t = \\rho_\\infty - \\frac{2t\\beta_2^t}{1-\\beta_2^t},\\quad
        \\theta_t = \\theta_{t-1} - \\frac{\\eta}{1-\\beta_1^t}\\,m_t\\cdot
        \\begin{cases} r_t\\,\\dfrac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v_t}+\\epsilon} & \\rho_t > 5\\\\
        1 & \\text{otherwise (momentum SGD)} \\end{cases}

    with :math:`r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
    {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}` and Adam's moments. The threshold 5 is
    torch's (the paper uses 4). Equal to ``torch.optim.RAdam``.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule.
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0, float or schedule.
        decoupled_weight_decay: decay the weights directly (as AdamW) instead of adding
            λθ to the gradient.
        maximize: ascend instead of descend.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel, float32 or
            float64 CPU tensors; "auto" picks it there) or "compiled".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = RAdam([w], lr=0.1)
        >>> for _ in range(500):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-2)
        True

    References:
        Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
        arXiv:1908.03265.
    """

    variant = "radam"
    impls = ("reference", "foreach", "fused", "compiled")
    native = "adam"
    _fused = _AdamFamily._native_fused

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl)
