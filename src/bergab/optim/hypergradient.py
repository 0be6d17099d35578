"""Hypergradient descent (Baydin et al., ICLR 2018): the learning rate learns by gradient
descent too.

The update :math:`\\theta_t = \\theta_{t-1} - \\alpha\\,u_{t-1}` depends on α, and
:math:`\\partial f(\\theta_t)/\\partial\\alpha = -\\nabla f(\\theta_t)\\cdot u_{t-1}`. One step
of gradient descent on α with rate β (``hypergrad_lr``) before each parameter step gives

.. math::
    h_t = g_t\\cdot u_{t-1},\\qquad
    \\alpha_t = \\operatorname{clip}\\big(\\alpha_{t-1} + \\beta\\, h_t,\\;
        [\\alpha_{\\min}, \\alpha_{\\max}]\\big),\\qquad
    \\theta_{t+1} = \\theta_t - \\alpha_t\\, u_t

where :math:`u_t` is the base optimizer's update direction (the step is :math:`-\\alpha u`):
:math:`g_t` for SGD (so :math:`h_t = g_t\\cdot g_{t-1}`), the momentum buffer (or
:math:`g + \\mu b` with Nesterov) for momentum SGD, :math:`\\hat m/(\\sqrt{\\hat v}+\\epsilon)`
for Adam. α grows while successive steps agree and shrinks when they oppose.

Differences from the authors' code (gbaydin/hypergradient-descent), on purpose:

- **Per param group.** :math:`h_t` is the dot product summed over all tensors of a param
  group, and each group has its own α. (The authors' SGD-HD flattens the whole model into
  one vector and refuses param groups; their Adam-HD updates the group's α after *each
  tensor*, so tensors of one group step with different α and the result depends on the
  order of the tensors.)
- **Safeguards.** α is clamped to ``[min_lr, max_lr]`` (``min_lr = 0`` by default, so α
  never turns negative and starts ascending); the first step uses α = ``lr`` (there is no
  previous direction, :math:`h_1 = 0`).
- **Multiplicative variant** (``multiplicative=True``): the normalized rule
  :math:`\\alpha_t = \\alpha_{t-1}\\big(1 + \\beta\\,\\frac{g_t\\cdot u_{t-1}}
  {\\|g_t\\|\\,\\|u_{t-1}\\|}\\big)` (the cosine of successive directions, so β is
  dimensionless, e.g. 0.01; discussed by Baydin et al. after Martínez Rubio, 2017). α
  changes by at most a factor 1 ± β per step and keeps its sign.
- **Adam's ε** sits as in ``torch.optim.Adam`` (:math:`\\hat m/(\\sqrt{\\hat v}+\\epsilon)`),
  and :math:`u_{t-1}` is exactly the direction the previous step used.
- **Schedules.** ``lr`` is α's initial value. If ``lr`` later changes (a schedule, a torch
  LR scheduler, ``lr_scale``), α is multiplied by new/old, so a schedule shapes the
  adapted rate instead of being ignored.

:attr:`HypergradientSGD.effective_lr` is the current α of each group: the step size of
the most recent step (``lr * lr_scale`` before the first).

On CPU (float32/float64) ``impl="auto"`` runs bergab's own kernels (``csrc/hypergradient.c``,
see :mod:`bergab.optim._native`): a step is two passes over memory, since α needs the dot
product over the whole group before any parameter moves. The first reads g and the state
that holds :math:`u_{t-1}`, sums h, and already writes what does not depend on α (SGD: the
new direction or momentum buffer; Adam: the new moments, :math:`u_{t-1}` recomputed from
the old ones); the second is :math:`\\theta \\mathrel{-}= \\alpha u_t`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, cast

import torch

from bergab._validate import check_betas, check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import AdamHdReduceHp, SgdHdReduceHp, SgdHdUpdateHp
from bergab.optim._base import Optimizer
from bergab.optim._common import LOW_PRECISION, group_by_device_dtype, lr_tensor
from bergab.optim._foreach import kept_buffers, pieces

# the statistics and the steps as functions of tensor lists; the reference functions are
# also this module's public names (see __all__)
from bergab.optim._hypergradient_ops import (
    _adam_hd_foreach_moments,
    _foreach_denominator,
    _sgd_hd_foreach,
    adam_hd_reference,
    adam_hd_statistics,
    sgd_hd_reference,
    sgd_hd_statistics,
)

__all__ = [
    "HypergradientAdam",
    "HypergradientSGD",
    "adam_hd_reference",
    "adam_hd_statistics",
    "hypergradient_lr",
    "sgd_hd_reference",
    "sgd_hd_statistics",
]


def hypergradient_lr(
    alpha: float,
    h: float,
    grad_norm: float,
    direction_norm: float,
    *,
    hypergrad_lr: float,
    multiplicative: bool = False,
    min_lr: float = 0.0,
    max_lr: float = math.inf,
) -> float:
    """One hypergradient step on the learning rate α, clamped to ``[min_lr, max_lr]``.

    .. math::
        \\alpha \\leftarrow \\alpha + \\beta h \\quad\\text{or (multiplicative)}\\quad
        \\alpha \\leftarrow \\alpha\\Big(1 + \\beta\\,\\frac{h}{\\|g\\|\\,\\|u\\|}\\Big)

    with :math:`h = g_t\\cdot u_{t-1}`; the multiplicative rule leaves α alone when a norm
    is zero.

    Args:
        alpha: the current α.
        h: the hypergradient :math:`g_t\\cdot u_{t-1}` (minus ∂f/∂α).
        grad_norm, direction_norm: :math:`\\|g_t\\|` and :math:`\\|u_{t-1}\\|`
            (multiplicative rule only).
        hypergrad_lr: β.
        multiplicative: use the normalized multiplicative rule.
        min_lr, max_lr: the bounds.

    Returns:
        The new α.

    Example:
        >>> hypergradient_lr(0.25, 2.0, 1.0, 1.0, hypergrad_lr=0.125)
        0.5
        >>> hypergradient_lr(0.25, -50.0, 1.0, 1.0, hypergrad_lr=0.125)  # clamped at 0
        0.0
        >>> hypergradient_lr(0.5, 1.0, 1.0, 2.0, hypergrad_lr=0.5, multiplicative=True)
        0.625
    """
    if multiplicative:
        denom = grad_norm * direction_norm
        if denom > 0:
            alpha = alpha * (1 + hypergrad_lr * h / denom)
    else:
        alpha = alpha + hypergrad_lr * h
    return min(max(alpha, min_lr), max_lr)


class _Hypergradient(Optimizer):
    """Shared machinery: α per group, its rescaling with lr, the clamp, effective_lr."""

    reach = "all"  # see bergab.optim.Optimizer.reach

    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "fused", "compiled")
    native: ClassVar[str | None] = "hypergradient"
    #: ``effective_lr`` is the α of the *last* step (α is adapted from that step's
    #: gradient): read it after ``step()`` to log the value a step used.
    effective_lr_timing: ClassVar[str] = "last"

    def _validate_common(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("hypergrad_lr", group["hypergrad_lr"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        min_lr = check_real("min_lr", group["min_lr"], low=0.0)
        max_lr = group["max_lr"]
        if not (isinstance(max_lr, int | float) and not isinstance(max_lr, bool)) or not (
            max_lr >= min_lr and not math.isnan(max_lr)
        ):
            raise ValueError(f"max_lr must be a real number in [min_lr, inf], got {max_lr!r}")
        check_choice("multiplicative", group["multiplicative"], (False, True))

    def _clamp(self, group: dict[str, Any], alpha: float) -> float:
        return min(max(alpha, float(group["min_lr"])), float(group["max_lr"]))

    def _current_alpha(self, group: dict[str, Any]) -> float:
        """α before this step's hypergradient (``lr * lr_scale`` at first, rescaled if lr moved)."""
        base = float(group["lr"]) * float(group["lr_scale"])
        alpha, ref = group["alpha"], group["alpha_base"]
        if alpha is None:
            alpha = base
        elif base != ref:
            alpha = float(alpha) * base / ref if ref else base
        return self._clamp(group, float(alpha))

    @property
    def effective_lr(self) -> list[float]:
        """α of each group: the step size of the most recent step (``lr * lr_scale``,
        clamped to [min_lr, max_lr], before the first step, whose h is 0). If ``lr`` was
        changed since (a schedule), the value shown is already rescaled by new/old.

        Example:
            >>> opt = HypergradientSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
            >>> opt.effective_lr
            [0.05]
        """
        return [self._current_alpha(g) for g in self.param_groups]

    def _new_alpha(self, group: dict[str, Any], stats: list[float]) -> float:
        alpha = self._current_alpha(group)
        h, gsq, usq = stats
        alpha = hypergradient_lr(
            alpha,
            h,
            math.sqrt(gsq),
            math.sqrt(usq),
            hypergrad_lr=float(group["hypergrad_lr"]),
            multiplicative=bool(group["multiplicative"]),
            min_lr=float(group["min_lr"]),
            max_lr=float(group["max_lr"]),
        )
        group["alpha"] = alpha
        group["alpha_base"] = float(group["lr"]) * float(group["lr_scale"])
        return alpha

    def _fresh(self, group: dict[str, Any], params: list[torch.Tensor]) -> list[bool]:
        """Which tensors took the group's previous step (only they have a u_{t-1})."""
        prev = int(group["step"]) - 1
        return [self.state[p].get("last_step") == prev for p in params]


class HypergradientSGD(_Hypergradient):
    """SGD-HD: SGD (with optional momentum / Nesterov) whose learning rate adapts online.

    .. math::
        \\alpha_t = \\operatorname{clip}\\big(\\alpha_{t-1} + \\beta\\, g_t\\cdot u_{t-1}\\big),
        \\qquad \\theta_{t+1} = \\theta_t - \\alpha_t u_t

    with :math:`g_t = \\nabla f(\\theta_t) + \\lambda\\theta_t` and the direction
    :math:`u_t = g_t` (plain), :math:`b_t = \\mu b_{t-1} + g_t` (momentum) or
    :math:`g_t + \\mu b_t` (Nesterov); dot products and α are per param group. See the
    module docstring for the multiplicative rule, the clamp and how schedules combine.
    The paper's defaults are α₀ = β = 1e-3 for SGD-HD and SGDN-HD. Plain and Nesterov SGD
    keep u in ``state["prev_direction"]`` (one extra tensor per parameter, as in the
    paper); heavy-ball's u is its momentum buffer.

    Args:
        params: parameters or param groups.
        lr: α₀ ≥ 0, the initial learning rate (float or schedule; a schedule multiplies α).
        hypergrad_lr: β ≥ 0, the hypergradient learning rate (0: plain SGD).
        momentum: μ ≥ 0.
        nesterov: Nesterov momentum (needs momentum > 0).
        weight_decay: λ ≥ 0, L2 term added to the gradient (float or schedule).
        min_lr, max_lr: bounds for α (default [0, inf)).
        multiplicative: use the normalized multiplicative rule.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> opt = HypergradientSGD([w], lr=1e-3, hypergrad_lr=1e-3)
        >>> for _ in range(200):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-3), opt.effective_lr[0] > 1e-2  # α grew from 1e-3
        (True, True)

    References:
        Baydin, Cornish, Martínez Rubio, Schmidt & Wood, "Online Learning Rate Adaptation
        with Hypergradient Descent", ICLR 2018, arXiv:1703.04782.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        hypergrad_lr: float = 1e-3,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: Any = 0.0,
        min_lr: float = 0.0,
        max_lr: float = math.inf,
        multiplicative: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "hypergrad_lr": hypergrad_lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "min_lr": min_lr,
            "max_lr": max_lr,
            "multiplicative": multiplicative,
            "alpha": None,  # the adapted learning rate (None until the first step)
            "alpha_base": None,  # the lr * lr_scale that alpha was last adapted under
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._validate_common(group)
        check_real("momentum", group["momentum"], low=0.0)
        check_choice("nesterov", group["nesterov"], (False, True))
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("nesterov=True requires momentum > 0")

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        stores = group["momentum"] == 0 or group["nesterov"]
        for p in params:
            state = self.state[p]
            if stores and "prev_direction" not in state:
                # momentum switched from heavy ball: its last direction was the buffer
                buf = state.get("momentum_buffer")
                state["prev_direction"] = (
                    torch.zeros_like(p, memory_format=torch.preserve_format)
                    if buf is None
                    else buf.clone(memory_format=torch.preserve_format)
                )

    @staticmethod
    def _last_direction(state: dict[str, Any], heavy_ball: bool) -> torch.Tensor | None:
        """u_{t-1} of one tensor: its recorded direction (plain and Nesterov steps record
        it; heavy-ball steps drop it, their u is the buffer), else its momentum buffer."""
        if not heavy_ball or "prev_direction" in state:
            return state.get("prev_direction")
        return state.get("momentum_buffer")

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any], list[Any], bool]:
        """The step's hyperparameters, the states, the momentum buffers and recorded
        directions (``None`` where absent) and whether a buffer is missing (first step)."""
        momentum = float(group["momentum"])
        hyper: dict[str, Any] = {
            "momentum": momentum,
            "nesterov": bool(group["nesterov"]),
            "weight_decay": float(group["weight_decay"]),
        }
        states = [self.state[p] for p in params]
        bufs: list[torch.Tensor | None] = [s.get("momentum_buffer") for s in states]
        dirs: list[torch.Tensor | None] = [s.get("prev_direction") for s in states]
        first = momentum != 0 and any(b is None for b in bufs)
        return hyper, states, bufs, dirs, first

    def _alpha(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        *,
        foreach: bool = False,
    ) -> float:
        """The new α from the hypergradient over the tensors that took the previous step.

        Computed eagerly for every impl: BLAS dot products run at memory speed, inductor's
        CPU reductions did not; ``foreach=True`` takes cache-sized pieces."""
        momentum = float(group["momentum"])
        heavy_ball = momentum != 0 and not group["nesterov"]
        wd = float(group["weight_decay"])
        fresh = self._fresh(group, params)
        idx_fresh: list[int] = []
        prev: list[torch.Tensor] = []
        for i, (f, s) in enumerate(zip(fresh, states, strict=True)):
            u = self._last_direction(s, heavy_ball) if f else None
            if u is not None:
                idx_fresh.append(i)
                prev.append(u)
        sub_p = [params[i] for i in idx_fresh]
        sub_g = [grads[i] for i in idx_fresh]
        stats = [0.0, 0.0, 0.0]
        norms = bool(group["multiplicative"])  # the additive rule needs only g·u
        if idx_fresh and foreach:
            total = torch.zeros(3, dtype=torch.float64)
            for key in group_by_device_dtype(sub_p).values():
                lists = [[t[i] for i in key] for t in (sub_p, sub_g, prev)]
                # one call over all the cache-sized pieces (few small ops per step)
                cut: list[list[torch.Tensor]] = [[], [], []]
                for _, pc in pieces(lists):
                    for dst, src in zip(cut, pc, strict=True):
                        dst += src
                total += sgd_hd_statistics(*cut, weight_decay=wd, norms=norms).cpu()
            stats = total.tolist()
        elif idx_fresh:
            stats = sgd_hd_statistics(sub_p, sub_g, prev, weight_decay=wd, norms=norms).tolist()
        return self._new_alpha(group, stats)

    def _finish(self, group: dict[str, Any], states: list[dict[str, Any]], bufs: list[Any]) -> None:
        """Keep the new buffers; heavy ball's u is the buffer from now on."""
        heavy_ball = float(group["momentum"]) != 0 and not group["nesterov"]
        for s, b in zip(states, bufs, strict=True):
            if b is not None:
                s["momentum_buffer"] = b
            if heavy_ball:
                s.pop("prev_direction", None)
            s["last_step"] = int(group["step"])

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        hyper, states, bufs, dirs, _ = self._args(group, params)
        alpha = self._alpha(group, params, grads, states)
        sgd_hd_reference(params, grads, bufs, dirs, lr=alpha, **hyper)
        self._finish(group, states, bufs)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        hyper, states, bufs, dirs, first = self._args(group, params)
        alpha = self._alpha(group, params, grads, states)
        if first:  # the first momentum step creates the buffers: the reference loop
            sgd_hd_reference(params, grads, bufs, dirs, lr=alpha, **hyper)
        else:
            fn = self._compile(sgd_hd_reference)
            fn(params, grads, bufs, dirs, lr=lr_tensor(alpha, params[0]), **hyper)
        self._finish(group, states, bufs)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        hyper, states, bufs, dirs, first = self._args(group, params)
        alpha = self._alpha(group, params, grads, states, foreach=True)
        if first:  # the first momentum step creates the buffers: the reference loop
            sgd_hd_reference(params, grads, bufs, dirs, lr=alpha, **hyper)
            self._finish(group, states, bufs)
            return
        momentum = hyper["momentum"]
        heavy_ball = momentum != 0 and not hyper["nesterov"]
        # (every buffer exists here: a first momentum step took the reference path)
        have_bufs = cast(list[torch.Tensor], bufs)
        have_dirs = cast(list[torch.Tensor], dirs)
        for key in group_by_device_dtype(params).values():
            step_lists = [[params[i] for i in key], [grads[i] for i in key]]
            if momentum != 0:
                step_lists.append([have_bufs[i] for i in key])
            if not heavy_ball:
                step_lists.append([have_dirs[i] for i in key])
            for _, pc in pieces(step_lists):
                _sgd_hd_foreach(
                    pc[0],
                    pc[1],
                    pc[2] if momentum != 0 else [],
                    pc[-1] if not heavy_ball else [],
                    kept_buffers(self, pc[0]),
                    kept_buffers(self, pc[0], slot=1),
                    lr=alpha,
                    **hyper,
                )
        self._finish(group, states, bufs)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        heavy_ball = float(group["momentum"]) != 0 and not group["nesterov"]
        states = [self.state[p] for p in params]
        # the step that switches to heavy ball reads the recorded directions (reference)
        if heavy_ball and any("prev_direction" in s for s in states):
            self._reference(group, params, grads)
            return
        kept = [s[k] for s in states for k in ("momentum_buffer", "prev_direction") if k in s]
        self._native_step(self._kernels([params, grads, kept]), group, params, grads)

    def _native_step(
        self,
        lib: ctypes.CDLL,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
    ) -> None:
        """The step with bergab's kernels: ``sgd_hd_reduce`` (h over the tensors that took
        the previous step, and the new direction / momentum buffer), α, then
        ``sgd_hd_update`` (θ -= α u)."""
        momentum = float(group["momentum"])
        nesterov = bool(group["nesterov"])
        heavy_ball = momentum != 0 and not nesterov
        states = [self.state[p] for p in params]
        fresh = self._fresh(group, params)
        per_tensor: list[float] = []
        for p, s, f in zip(params, states, fresh, strict=True):
            new = momentum != 0 and "momentum_buffer" not in s
            if new:  # the first momentum step: b = 0·b + g = g, torch's convention
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                f = f and not heavy_ball  # heavy ball's u_{t-1} is that buffer
            per_tensor += (1.0 if f else 0.0, 1.0 if new else 0.0)
        bufs = [s["momentum_buffer"] for s in states] if momentum != 0 else grads
        dirs = grads if heavy_ball else [s["prev_direction"] for s in states]
        lists = [params, grads, bufs, dirs]  # a list the mode never touches: the grads
        hp = SgdHdReduceHp(
            mode=0 if momentum == 0 else (2 if nesterov else 1),
            weight_decay=float(group["weight_decay"]),
            norms=bool(group["multiplicative"]),
            momentum=momentum,
        )
        out = _native.zeros(3)
        _native.call(lib, "sgd_hd_reduce", lists, hp, _native.doubles(per_tensor), out)
        alpha = self._new_alpha(group, out[:])
        u = bufs if heavy_ball else dirs
        _native.call(lib, "sgd_hd_update", [params, u], SgdHdUpdateHp(alpha=alpha))
        for s in states:
            s["last_step"] = int(group["step"])


@dataclasses.dataclass
class _AdamHdArgs:
    """What every implementation of :class:`HypergradientAdam`'s step reads."""

    hyper: dict[str, Any]  # beta1, beta2, eps, weight_decay
    states: list[dict[str, Any]]
    m: list[torch.Tensor]
    v: list[torch.Tensor]
    steps: list[int]  # each tensor's step count before this step
    fresh: list[bool]  # took the previous step (its u_{t-1} is known)
    idx_fresh: list[int]

    @property
    def eps(self) -> float:
        return float(self.hyper["eps"])

    @property
    def wd(self) -> float:
        return float(self.hyper["weight_decay"])

    def bias(self, k: int) -> tuple[float, float]:
        """(1 - beta1^k, 1 - beta2^k)."""
        return 1 - self.hyper["beta1"] ** k, 1 - self.hyper["beta2"] ** k


class HypergradientAdam(_Hypergradient):
    """Adam-HD: Adam whose learning rate adapts online by hypergradient descent.

    .. math::
        \\alpha_t = \\operatorname{clip}\\big(\\alpha_{t-1} + \\beta\\, g_t\\cdot u_{t-1}\\big),
        \\qquad u_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t}+\\epsilon},\\qquad
        \\theta_{t+1} = \\theta_t - \\alpha_t u_t

    with Adam's bias-corrected moments :math:`\\hat m_t, \\hat v_t` of
    :math:`g_t = \\nabla f(\\theta_t) + \\lambda\\theta_t` (ε as in ``torch.optim.Adam``).
    :math:`u_{t-1}` is recomputed from the stored moments, so no extra memory is needed.
    The paper's defaults are α₀ = 1e-3 and β = 1e-7 (h sums over every coordinate, so β
    is much smaller than for SGD-HD). Dot products and α are per param group; see the
    module docstring.

    Args:
        params: parameters or param groups.
        lr: α₀ ≥ 0 (float or schedule; a schedule multiplies α).
        hypergrad_lr: β ≥ 0 (0: plain Adam).
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0, L2 term added to the gradient (float or schedule).
        min_lr, max_lr: bounds for α.
        multiplicative: use the normalized multiplicative rule.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = HypergradientAdam([w], lr=1e-2, hypergrad_lr=1e-3)
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 0.05), opt.effective_lr[0] > 1e-2
        (True, True)

    References:
        Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent",
        ICLR 2018, arXiv:1703.04782.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        min_lr: float = 0.0,
        max_lr: float = math.inf,
        multiplicative: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "hypergrad_lr": hypergrad_lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "min_lr": min_lr,
            "max_lr": max_lr,
            "multiplicative": multiplicative,
            "alpha": None,  # the adapted learning rate (None until the first step)
            "alpha_base": None,  # the lr * lr_scale that alpha was last adapted under
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._validate_common(group)
        group["betas"] = check_betas(group["betas"])
        check_real("eps", group["eps"], low=0.0)

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _args(self, group: dict[str, Any], params: list[torch.Tensor]) -> _AdamHdArgs:
        """What every implementation reads (see :class:`_AdamHdArgs`)."""
        beta1, beta2 = group["betas"]
        eps, wd = float(group["eps"]), float(group["weight_decay"])
        states = [self.state[p] for p in params]
        fresh = self._fresh(group, params)
        return _AdamHdArgs(
            hyper={"beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": wd},
            states=states,
            m=[s["exp_avg"] for s in states],
            v=[s["exp_avg_sq"] for s in states],
            steps=[int(s["step"]) for s in states],
            fresh=fresh,
            idx_fresh=[i for i, f in enumerate(fresh) if f],
        )

    @staticmethod
    def _finish(group: dict[str, Any], states: list[dict[str, Any]]) -> None:
        for s in states:
            s["step"] = int(s["step"]) + 1
            s["last_step"] = int(group["step"])

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        a = self._args(group, params)
        bias = a.bias
        sub_p, sub_g, sub_m, sub_v = (
            [t[i] for i in a.idx_fresh] for t in (params, grads, a.m, a.v)
        )
        prev_bias = [bias(a.steps[i]) for i in a.idx_fresh]
        stats = [0.0, 0.0, 0.0]
        if a.idx_fresh:
            stats = adam_hd_statistics(
                sub_p, sub_g, sub_m, sub_v, prev_bias, eps=a.eps, weight_decay=a.wd
            ).tolist()
        alpha = self._new_alpha(group, stats)
        adam_hd_reference(
            params, grads, a.m, a.v, [bias(k + 1) for k in a.steps], lr=alpha, **a.hyper
        )
        self._finish(group, a.states)

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """The statistics, then the whole Adam step (faster than moving the moment update
        into pass 1 as foreach does: measured with inductor on CPU)."""
        a = self._args(group, params)
        like = params[0]

        def tensors(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            b1, b2 = a.bias(k)
            return lr_tensor(b1, like), lr_tensor(b2, like)

        stats = [0.0, 0.0, 0.0]
        if a.idx_fresh:
            args = [[t[i] for i in a.idx_fresh] for t in (params, grads, a.m, a.v)]
            prev = [tensors(a.steps[i]) for i in a.idx_fresh]
            fn = self._compile(adam_hd_statistics)
            stats = fn(*args, prev, eps=a.eps, weight_decay=a.wd).tolist()
        alpha = self._new_alpha(group, stats)
        self._compile(adam_hd_reference)(
            params,
            grads,
            a.m,
            a.v,
            [tensors(k + 1) for k in a.steps],
            lr=lr_tensor(alpha, like),
            **a.hyper,
        )
        self._finish(group, a.states)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        a = self._args(group, params)
        bias, steps, fresh, eps = a.bias, a.steps, a.fresh, a.eps
        # pass 1: statistics against u_{t-1}, then the new moments (they do not need α);
        # the additive rule needs only g·u, the norms only the multiplicative one
        norms = bool(group["multiplicative"])
        parts: list[torch.Tensor] = []
        by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_key[(p.device, p.dtype, steps[i], fresh[i])].append(i)

        def tmp_u(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            low = ts[0].dtype in LOW_PRECISION
            return kept_buffers(self, ts, slot=1, dtype=torch.float32 if low else None)

        for (_, _, k, is_fresh), key in by_key.items():
            lists = [[t[i] for i in key] for t in (params, grads, a.m, a.v)]
            for _, pc in pieces(lists):
                parts += _adam_hd_foreach_moments(
                    pc[0],
                    pc[1],
                    pc[2],
                    pc[3],
                    kept_buffers(self, pc[0]),
                    tmp_u(pc[0]),
                    prev_bias=bias(k) if is_fresh else None,
                    norms=norms,
                    **a.hyper,
                )
        stats = torch.stack(parts).sum(0).tolist() if parts else [0.0] * 3
        stats += [0.0] * (3 - len(stats))
        alpha = self._new_alpha(group, stats)
        # pass 2: the step θ -= α·c·m/(√v + ε√b2), the direction never materialized
        for (_, _, k, _), key in by_key.items():
            b1, b2 = bias(k + 1)
            lists = [[t[i] for i in key] for t in (params, a.m, a.v)]
            for _, pc in pieces(lists):
                den = _foreach_denominator(pc[2], b2, eps, tmp_u(pc[0]))
                torch._foreach_addcdiv_(pc[0], pc[1], den, value=-alpha * math.sqrt(b2) / b1)
        self._finish(group, a.states)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        moments = [[self.state[p][k] for p in params] for k in ("exp_avg", "exp_avg_sq")]
        self._native_step(self._kernels([params, grads, *moments]), group, params, grads, moments)

    def _native_step(
        self,
        lib: ctypes.CDLL,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        moments: list[list[torch.Tensor]],
    ) -> None:
        """The step with bergab's kernels: ``adam_hd_reduce`` (h against
        :math:`u_{t-1}` recomputed from the stored moments, then the new moments), α, then
        ``adam_hd_update`` (θ -= α u_t)."""
        beta1, beta2 = group["betas"]
        eps = float(group["eps"])
        states = [self.state[p] for p in params]
        lists = [params, grads, *moments]
        steps = [int(s["step"]) for s in states]

        @functools.cache
        def bias(k: int) -> tuple[float, float, float]:
            # (1 - beta1^k, 1 - beta2^k) as Adam's direction c·m/(√v + e) needs them:
            # (c = √b2/b1, e = ε√b2, and 1/b1 for the step)
            b1, b2 = 1 - beta1**k, 1 - beta2**k
            return b1, math.sqrt(b2), math.sqrt(b2) / b1

        per_tensor: list[float] = []
        for k, f in zip(steps, self._fresh(group, params), strict=True):
            if f:
                _, root, c = bias(k)
                per_tensor += (1.0, c, eps * root)
            else:
                per_tensor += (0.0, 0.0, 0.0)
        hp = AdamHdReduceHp(
            beta1=beta1,
            beta2=beta2,
            weight_decay=float(group["weight_decay"]),
            norms=bool(group["multiplicative"]),
        )
        out = _native.zeros(3)
        _native.call(lib, "adam_hd_reduce", lists, hp, _native.doubles(per_tensor), out)
        alpha = self._new_alpha(group, out[:])
        step_args: list[float] = []
        for k in steps:
            b1, root, _ = bias(k + 1)
            step_args += (-alpha * root / b1, eps * root)
        _native.call(
            lib, "adam_hd_update", [params, lists[2], lists[3]], _native.doubles(step_args)
        )
        for s in states:
            s["step"] = int(s["step"]) + 1
            s["last_step"] = int(group["step"])
