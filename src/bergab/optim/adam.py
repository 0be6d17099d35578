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

import ctypes
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, cast

import torch

from bergab._validate import check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import AdamHp
from bergab.optim._base import Optimizer, group_by_device_dtype, lr_tensor
from bergab.optim._foreach import (
    LOW_PRECISION,
    batches,
    foreach_direction,
    scratch,
)

__all__ = ["Adam", "AdamW", "NAdam", "RAdam", "adam_reference"]

Scalar = float | torch.Tensor
TensorList = list[torch.Tensor] | tuple[torch.Tensor, ...]


# ---------------------------------------------------------------------------- helpers
def _value(t: torch.Tensor) -> Scalar:
    """A 0-d state tensor as a number: a Python float when eager (exact bias corrections,
    as torch computes them), the tensor itself under ``torch.compile`` (so a changing step
    count never triggers a recompile)."""
    if torch.compiler.is_compiling():
        return t
    return t.item()


def _hoist(*scalars: Scalar) -> tuple[Scalar, ...]:
    """Return ``scalars`` unchanged when eager; under ``torch.compile`` compute them once.

    Inductor inlines a 0-d expression such as ``1 - beta ** step`` into every elementwise
    loop that reads it, evaluating ``pow`` once per element (several times slower than
    the memory traffic on CPU). Stacking the scalars materializes them in a tiny buffer
    first, as torch's own compiled optimizers do (a stack of one is a view that inductor
    would inline again, so a lone scalar is stacked twice).
    """
    if torch.compiler.is_compiling():
        ts = [torch.as_tensor(s) for s in scalars]
        return tuple(torch.stack(ts if len(ts) > 1 else ts * 2).unbind()[: len(ts)])
    return scalars


def _add_scaled_(p: torch.Tensor, t: torch.Tensor, scale: Scalar) -> None:
    """``p += scale * t`` for a float scale (eager) or a 0-d tensor scale (compiled)."""
    if isinstance(scale, torch.Tensor):
        p.add_(t * _hoist(scale)[0])
    else:
        p.add_(t, alpha=scale)


def _add_ratio_(p: torch.Tensor, num: torch.Tensor, den: torch.Tensor, scale: Scalar) -> None:
    """``p += scale * num / den`` for a float scale (eager) or a 0-d tensor scale (compiled)."""
    if isinstance(scale, torch.Tensor):
        p.add_(num / den * _hoist(scale)[0])
    else:
        p.addcdiv_(num, den, value=scale)


_LOW_PRECISION = LOW_PRECISION


def _root(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``sqrt(x)``, in float32 for 16-bit tensors so that an ε added to it does not vanish
    (1e-8 rounds to 0 in float16); torch's fused kernels compute in float32 likewise.
    ``inplace=True`` overwrites ``x`` (a temporary of ours) where the dtype allows."""
    if x.dtype in _LOW_PRECISION:
        return x.float().sqrt_()
    return x.sqrt_() if inplace else x.sqrt()


def _foreach_root(
    xs: TensorList, *, inplace: bool = False, out: list[torch.Tensor] | None = None
) -> TensorList:
    """:func:`_root` of each tensor in ``xs``; nothing is allocated with ``inplace=True``
    (``xs`` is a temporary of ours) or ``out`` (kept :func:`scratch`)."""
    if out is not None:
        for o, x in zip(out, xs, strict=True):
            torch.sqrt(x, out=o)
        return out
    if xs and xs[0].dtype in _LOW_PRECISION:
        up = [x.float() for x in xs]
        torch._foreach_sqrt_(up)
        return up
    if inplace:
        torch._foreach_sqrt_(xs)
        return xs
    return torch._foreach_sqrt(xs)


def _nadam_mu(t: Scalar, beta1: float, momentum_decay: float) -> tuple[Scalar, Scalar]:
    """NAdam's momentum schedule at steps t and t + 1: β1 (1 − ½ · 0.96^(t ψ))."""
    mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    return mu, mu_next


def _rectifier(rho_t: Scalar, rho_inf: float) -> Scalar:
    """RAdam's variance rectification term r_t (real only where rho_t > 4)."""
    return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


def new_step() -> torch.Tensor:
    """A fresh per-parameter step counter: a float32 0-d CPU tensor, as torch keeps it.

    Example:
        >>> new_step()
        tensor(0.)
    """
    return torch.zeros((), dtype=torch.float32)


def group_by_step(
    params: Sequence[torch.Tensor], *counters: Sequence[torch.Tensor]
) -> dict[tuple[Any, ...], list[int]]:
    """Indices of ``params`` grouped by device, dtype and the values of per-param counters.

    The foreach paths take one step size per group, so parameters whose step counts differ
    (one skipped a step because its gradient was None) go in different groups.

    Example:
        >>> ps = [torch.zeros(2), torch.zeros(3), torch.zeros(1)]
        >>> steps = [torch.tensor(2.0), torch.tensor(1.0), torch.tensor(2.0)]
        >>> sorted(group_by_step(ps, steps).values())
        [[0, 2], [1]]
    """
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        key = (p.device, p.dtype, *(float(c[i]) for c in counters))
        groups[key].append(i)
    return dict(groups)


def _f32(xs: Iterable[float]) -> list[float]:
    """Each of ``xs`` rounded to float32 (as a float32 0-d tensor holds it), as floats."""
    return array("f", xs).tolist()


def counts_natively(*counters: Sequence[torch.Tensor]) -> bool:
    """Whether bergab's CPU kernels can store these per-parameter counters (float32 0-d
    CPU tensors, as :func:`new_step` makes them) instead of a torch op per tensor.

    Example:
        >>> counts_natively([new_step()]), counts_natively([torch.zeros((), dtype=torch.int64)])
        (True, False)
    """
    return all(
        isinstance(c, torch.Tensor) and c.dtype is torch.float32 and c.is_cpu and c.dim() == 0
        for cs in counters
        for c in cs
    )


def native_runs(
    family: str | None,
    params: list[torch.Tensor],
    *lists: list[torch.Tensor],
    checked: bool = False,
) -> list[tuple[ctypes.CDLL, list[int] | None, list[list[torch.Tensor]]]]:
    """The calls of one step on bergab's CPU kernels: per dtype, the library, the indices
    into ``params`` (``None``: all of them) and the parallel lists (empty ones left out).

    Raises :class:`~bergab.optim._native.NativeUnavailableError` (before any state has
    changed) where the kernels cannot run on these tensors. ``checked=True``: the caller
    has already checked every tensor (``impl="auto"`` chose the kernels), so they are not
    checked again.

    Example:
        >>> ps = [torch.zeros(2), torch.zeros(3, dtype=torch.float64)]
        >>> try:
        ...     print([idx for _, idx, _ in native_runs("adam", ps, ps, [])])
        ... except _native.NativeUnavailableError:  # no C compiler here
        ...     print([[0], [1]])
        [[0], [1]]
    """
    assert family is not None
    kept = [params, *(ts for ts in lists if ts)]
    if checked:  # one dtype, suitable tensors, and the library builds
        lib = _native.library(family)
        assert lib is not None
        return [(lib, None, kept)]
    dtype = params[0].dtype
    if all(p.dtype is dtype for p in params):
        return [(_native.check_available(family, kept), None, kept)]
    runs: list[tuple[ctypes.CDLL, list[int] | None, list[list[torch.Tensor]]]] = []
    for idx in group_by_device_dtype(params).values():
        sub = [[ts[i] for i in idx] for ts in kept]
        runs.append((_native.check_available(family, sub), idx, sub))
    return runs


def check_betas(betas: Any) -> tuple[float, float]:
    """Check ``betas`` is a pair of reals in [0, 1); return it as floats.

    Example:
        >>> check_betas((0.9, 0.999))
        (0.9, 0.999)
        >>> check_betas((0.9, 1.0))
        Traceback (most recent call last):
        ...
        ValueError: betas[1] must be in [0, 1), got 1.0
    """
    if isinstance(betas, str | bytes) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2) with each in [0, 1), got {betas!r}")
    b1 = check_real("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
    b2 = check_real("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
    return b1, b2


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
        t = _value(step_t)
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
        bias1, bias2, root2 = _hoist(1 - beta1**t, 1 - beta2**t, (1 - beta2**t) ** 0.5)
        # 2) the step
        if variant == "radam":
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * t * beta2**t / bias2
            if isinstance(rho_t, torch.Tensor):  # compiled: select, don't branch on data
                rho, scale = _hoist(rho_t, _rectifier(rho_t, rho_inf) * root2)
                adaptive = torch.where(
                    cast(torch.Tensor, rho) > 5, scale / (_root(second) + eps), 1.0
                )
                _add_scaled_(p, m * adaptive, -lr / bias1)
            elif rho_t > 5:
                rect = _rectifier(rho_t, rho_inf)
                _add_ratio_(p, m, _root(second).add_(eps), -lr * rect * root2 / bias1)
            else:
                _add_scaled_(p, m, -lr / bias1)
            continue
        denom = (_root(second) / root2).add_(eps)
        if variant == "nadam":
            assert mu_products is not None
            mu, mu_next = _hoist(*_nadam_mu(t, beta1, momentum_decay))
            mu_products[i].mul_(mu)
            prod = _value(mu_products[i])
            _add_ratio_(p, d, denom, -lr * (1 - mu) / (1 - prod))
            _add_ratio_(p, m, denom, -lr * mu_next / (1 - prod * mu_next))
        else:
            _add_ratio_(p, m, denom, -lr / bias1)


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
            denom = _foreach_root(second, out=tmp_denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr * rect * bias2**0.5 / bias1)
        else:
            torch._foreach_add_(params, exp_avgs, alpha=-lr / bias1)
        return
    # sqrt(v / bias2) + eps == (sqrt(v) + eps * sqrt(bias2)) / sqrt(bias2): one pass fewer
    denom = _foreach_root(second, out=tmp_denom)
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

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        impl: str,
    ) -> None:
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

        if impl == "fused" and self.native is not None:
            self._native_update(params, grads, m, v, vmax, steps, mus, lr=lr, **hyper, **more)
        elif impl == "fused":
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
        elif impl == "foreach":
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
                    mu, _ = _nadam_mu(t, beta1, more["momentum_decay"])
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
        elif impl == "reference":
            adam_reference(params, grads, m, v, vmax, steps, mus, lr=lr, **hyper, **more)
        else:  # compiled
            fn = self._compiled(adam_reference)
            fn(params, grads, m, v, vmax, steps, mus, lr=lr_tensor(lr, params[0]), **hyper, **more)

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
            ts = _f32([s.item() + 1.0 for s in steps])
        else:
            torch._foreach_add_(steps, 1.0)
            ts = [s.item() for s in steps]
        per: list[float] = []
        if variant == "nadam":
            assert mus is not None
            mu_pairs = [cast(tuple[float, float], _nadam_mu(t, beta1, momentum_decay)) for t in ts]
            if count:  # as torch's float32 tensor *= mu rounds: mu to float32, then x * mu
                mu32 = _f32([mu for mu, _ in mu_pairs])
                prods = _f32([c.item() * mu for c, mu in zip(mus, mu32, strict=True)])
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
