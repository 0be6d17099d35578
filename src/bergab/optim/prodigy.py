"""Prodigy (Mishchenko & Defazio, 2024): Adam whose step size is a running estimate of the
distance to the solution, D.

Prodigy scales Adam's normalized step by :math:`d_k\\,\\eta`, where :math:`d_k` is a lower
estimate of :math:`D = \\|x_0 - x_*\\|` that only grows. With all gradients weighted by
the estimate of their time, per step k (β3 defaults to √β2, :math:`\\eta_k` is ``lr``,
optionally times Adam's bias correction :math:`\\sqrt{1-\\beta_2^{k+1}}/(1-\\beta_1^{k+1})`):

.. math::
    m &\\leftarrow \\beta_1 m + (1-\\beta_1)\\,d_k\\,g,\\qquad
    v \\leftarrow \\beta_2 v + (1-\\beta_2)\\,d_k^2\\,g^2 \\\\
    r_{k+1} &= \\beta_3 r_k + \\tfrac{d_k}{d_0}\\,d_k\\eta_k\\,\\langle g, x_0 - x\\rangle,\\qquad
    s \\leftarrow \\beta_3 s + \\tfrac{d_k}{d_0}\\,d_k\\eta_k\\, g
        \\quad(\\text{safeguard warmup: } \\tfrac{d_k}{d_0}\\,d_k\\, g) \\\\
    \\hat d_{k+1} &= c\\,\\frac{r_{k+1}}{\\|s\\|_1},\\qquad
    d_{k+1} = \\min\\big(\\max(d_k, \\hat d_{k+1}, \\ldots),\\; \\gamma\\, d_k\\big) \\\\
    x &\\leftarrow x - d_k\\eta_k \\frac{m}{\\sqrt v + d_{k+1}\\epsilon}
        \\;(-\\,\\lambda d_k\\eta_k x \\text{ when decoupled})

(precisely: :math:`d_{k+1} = \\min(d^{\\max}_{k+1}, \\gamma d')` with
:math:`d' = \\max(d_k, \\hat d_{k+1})` while :math:`d_k = d_0` and :math:`d' = d_k` after,
:math:`d^{\\max}_{k+1} = \\max(d^{\\max}_k, \\hat d_{k+1})`; c is ``d_coef``, γ
``growth_rate``). Note that the step of iteration k uses the *previous* estimate
:math:`d_k` (and the new one only in ε's term), so the step size is known before the step:
:attr:`Prodigy.effective_lr` reports :math:`d_k\\,\\eta_k` (bias correction included) for the
next step.

Paths: a readable reference (:func:`prodigy_reference_accumulate` then
:func:`prodigy_reference_step`), ``foreach``, ``compiled`` and ``fused`` on CPU (bergab's C
kernels, ``csrc/prodigy.c``; what ``auto`` picks for float32/float64 CPU tensors). No
parameter can move before :math:`d_{k+1}` is known, and that needs two sums over every
gradient, so a step is two passes over memory whatever the path. The fused one does it in
as few bytes as the math allows: pass 1 reads x, g, x0 and s, writes s and sums
:math:`\\langle g, x_0 - x\\rangle` and :math:`\\|s\\|_1` per tensor; pass 2 (after d is
updated in Python) reads x, g, m and v and writes m, v and x, walking the tensors in
reverse (it starts on what pass 1 read last): 48 bytes per float32 parameter, against 40
for the state update alone (measured: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, NamedTuple

import torch

from bergab._validate import check_betas, check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import ProdigyStepHp, ProdigySumsHp
from bergab.optim._base import Optimizer
from bergab.optim._common import LOW_PRECISION, group_by_device_dtype, lr_tensor
from bergab.optim._foreach import kept_buffers, pieces

# both halves of a step as functions of tensor lists; the reference functions are also this
# module's public names (see __all__)
from bergab.optim._prodigy_ops import (
    _prodigy_foreach_accumulate,
    _prodigy_foreach_step,
    prodigy_reference_accumulate,
    prodigy_reference_step,
)

__all__ = ["Prodigy", "prodigy_reference_accumulate", "prodigy_reference_step"]


#: Hyperparameters of the shared D estimate: one value for the whole optimizer.
GLOBAL_KEYS = (
    "betas",
    "beta3",
    "d0",
    "d_coef",
    "growth_rate",
    "use_bias_correction",
    "safeguard_warmup",
    "decouple",
)


def _pick(idx: list[int], *lists: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The tensors at ``idx`` of each list (the lists themselves when ``idx`` is all)."""
    if len(idx) == len(lists[0]):
        return list(lists)
    return [[t[i] for i in idx] for t in lists]


class _FusedPart(NamedTuple):
    """The tensors of one dtype of a group, for the two kernels of a fused step."""

    lib: ctypes.CDLL
    idx: list[int]  # their positions in the group's list of parameters with gradients
    sums_lists: list[list[torch.Tensor]]  # x, g, x0, s
    step_lists: list[list[torch.Tensor]]  # x, g, v, m (v again without β1)


def _fused_sums(plan: list[_FusedPart], n: int, *, hp: ProdigySumsHp) -> list[float]:
    """Pass 1 of the fused step (``csrc/prodigy.c``): s <- β3 s + c3 g and, per tensor,
    ``<g, x0 - x>`` and ``‖s‖₁``, interleaved, for the ``n`` tensors in the plan's order."""
    sums = [0.0] * (2 * n)
    for part in plan:
        threads = _native.threads_for(sum(t.numel() for t in part.sums_lists[0]))
        out = _native.zeros(2 * len(part.idx) * threads)
        _native.call(part.lib, "prodigy_sums", part.sums_lists, hp, out, nthreads=threads)
        if len(plan) == 1:
            return out[: 2 * n]
        for k, i in enumerate(part.idx):
            sums[2 * i], sums[2 * i + 1] = out[2 * k], out[2 * k + 1]
    return sums


class Prodigy(Optimizer):
    """Prodigy: Adam with a learned step size d·lr (D-adaptation with Prodigy's estimate).

    .. math::
        x_{k+1} = x_k - d_k\\eta_k\\,\\frac{m_k}{\\sqrt{v_k} + d_{k+1}\\epsilon},\\qquad
        d_{k+1} = \\min\\Big(\\max_{i\\le k+1}\\hat d_i,\\; \\gamma d_k\\Big),\\quad
        \\hat d_{k+1} = c\\,\\frac{\\sum_{i\\le k}\\beta_3^{k-i}\\,\\frac{d_i}{d_0}
            d_i\\eta_i\\langle g_i, x_0 - x_i\\rangle}{\\|s_{k+1}\\|_1}

    where m, v are Adam's moments of the d-weighted gradients and s the β3-discounted
    sum of the weighted gradients (see the module docstring for every term). Equal to
    ``prodigyopt.Prodigy`` (``slice_p=1``, no FSDP).

    **One D for all groups**: as in ``prodigyopt``, the estimate d is shared by every
    param group — the numerator and ‖s‖₁ are summed over all groups — and the
    hyperparameters of the estimate (``betas``, ``beta3``, ``d0``, ``d_coef``,
    ``growth_rate``, ``use_bias_correction``, ``safeguard_warmup``, ``decouple``) must be
    the same in every group. ``lr``, ``weight_decay`` and ``eps`` may differ per group:
    group g steps by :math:`d\\,\\eta_g` (``lr * lr_scale``), which is ``prodigyopt``'s rule
    where it is defined (it only allows equal lrs or 0); a group with lr 0 is frozen
    (``prodigyopt`` still decays and, with β1 = 0, moves it by the global lr).

    The d state (``d``, ``d_max``, ``d_hat``, ``d_numerator``, ``d_denom``) and the count
    ``k`` of steps that moved live in every param group, so ``state_dict()`` has them. A
    step whose gradients are all zero (‖s‖₁ = 0) updates the moments but neither d nor
    the parameters, and does not advance ``k`` (as ``prodigyopt``).

    **16-bit weights**: the state is kept in float32, but the first steps (about
    :math:`d_0\\eta` = 1e-6) are far below the resolution of float16/bfloat16 weights, so
    the weights do not move, :math:`x_0 - x` stays 0 and d never grows (``prodigyopt``
    stalls the same way). Train with float32 master weights (autocast) or raise ``d0`` to
    about the weights' resolution (1e-2 for bfloat16).

    Args:
        params: parameters or param groups.
        lr: η > 0 multiplies the learned step (default 1.0; leave it unless unstable), a
            float or a schedule (then the schedule shapes the step: d·η(t)).
        betas: (β1, β2), each in [0, 1).
        beta3: β3 in [0, 1) for the D statistics, or ``None`` for √β2.
        eps: ε > 0 (scaled by d in the denominator).
        weight_decay: λ ≥ 0 (float or schedule).
        decouple: AdamW-style decay :math:`x(1-\\lambda d\\eta)` (default) instead of
            adding λx to the gradient.
        use_bias_correction: multiply the step by
            :math:`\\sqrt{1-\\beta_2^{k+1}}/(1-\\beta_1^{k+1})`.
        safeguard_warmup: leave η out of s (safer with a warmup schedule on lr).
        d0: initial estimate :math:`d_0 > 0` (default 1e-6).
        d_coef: c > 0 multiplies the estimate (0.5-2 are typical; the preferred knob).
        growth_rate: γ > 1 caps d's growth per step (default inf: uncapped).
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> opt = Prodigy([w])
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 0.1), opt.effective_lr[0] > 0.1  # d grew from 1e-6
        (True, True)

    References:
        Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
        arXiv:2306.06101.
    """

    reach = "all"  # see bergab.optim.Optimizer.reach

    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "fused", "compiled")
    native: ClassVar[str | None] = "prodigy"
    #: ``effective_lr`` is the step size of the *next* step (it uses the current d).
    effective_lr_timing: ClassVar[str] = "next"

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "beta3": beta3,
            "eps": eps,
            "weight_decay": weight_decay,
            "decouple": decouple,
            "use_bias_correction": use_bias_correction,
            "safeguard_warmup": safeguard_warmup,
            "d0": d0,
            "d_coef": d_coef,
            "growth_rate": growth_rate,
            # the shared D estimate (identical in every group) and the count of moving steps
            "d": d0,
            "d_max": d0,
            "d_hat": d0,
            "d_numerator": 0.0,
            "d_denom": 0.0,
            "k": 0,
        }
        self._moved = False
        self._d_prev = float(d0)
        # fused path: the groups whose moments and parameters the update pass still owes,
        # with their checked tensor lists (id(group) -> one part per dtype)
        self._fused_moments: dict[int, list[_FusedPart]] = {}
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        group["betas"] = check_betas(group["betas"])
        if group["beta3"] is not None:
            check_real("beta3", group["beta3"], low=0.0, high=1.0, high_open=True)
        check_real("eps", group["eps"], low=0.0, low_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        check_real("d0", group["d0"], low=0.0, low_open=True)
        check_real("d_coef", group["d_coef"], low=0.0, low_open=True)
        gr = group["growth_rate"]
        if not (isinstance(gr, int | float) and not isinstance(gr, bool) and gr >= 1.0):
            raise ValueError(f"growth_rate must be in [1, inf], got {gr!r}")
        for flag in ("decouple", "use_bias_correction", "safeguard_warmup"):
            check_choice(flag, group[flag], (False, True))
        first = self.param_groups[0]
        if first is not group:
            for key in GLOBAL_KEYS:
                if group[key] != first[key]:
                    raise ValueError(
                        f"{key} must be the same in every param group (Prodigy's D estimate "
                        f"is shared by all groups); got {group[key]!r} and {first[key]!r}"
                    )
            for key in ("d", "d_max", "d_hat", "d_numerator", "d_denom", "k"):
                group[key] = first[key]

    # ------------------------------------------------------------------ helpers
    def _bias_correction(self) -> float:
        g = self.param_groups[0]
        if not g["use_bias_correction"]:
            return 1.0
        beta1, beta2 = g["betas"]
        k = int(g["k"])
        return float(math.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1)))

    @property
    def effective_lr(self) -> list[float]:
        """The step size of each group's next step: :math:`d_k\\,\\eta\\cdot` ``lr_scale``,
        times the bias correction :math:`\\sqrt{1-\\beta_2^{k+1}}/(1-\\beta_1^{k+1})` when
        ``use_bias_correction``. It multiplies the normalized direction
        :math:`m/(\\sqrt v + d_{k+1}\\epsilon)` in the update (m and v hold d-weighted
        gradients, so that ratio is scale-free); with β1 = 0 the direction is
        :math:`d_{k+1} g/(\\sqrt v + d_{k+1}\\epsilon)`.

        Example:
            >>> opt = Prodigy([torch.nn.Parameter(torch.zeros(1))], lr=1.0, d0=1e-3)
            >>> opt.effective_lr  # before any step: d0 * lr
            [0.001]
        """
        bc = self._bias_correction()
        return [
            float(g["d"]) * float(g["lr"]) * float(g["lr_scale"]) * bc for g in self.param_groups
        ]

    @property
    def d(self) -> float:
        """The current estimate d of the distance to the solution (shared by all groups).

        Example:
            >>> Prodigy([torch.nn.Parameter(torch.zeros(1))]).d
            1e-06
        """
        return float(self.param_groups[0]["d"])

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        beta1 = group["betas"][0]
        for p in params:
            state = self.state[p]
            if "s" not in state:
                # 16-bit parameters keep the state in float32: d² g² underflows float16 while
                # d is small, and bfloat16 is too coarse for x0 - x
                dtype = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
                fmt = torch.preserve_format
                state["s"] = torch.zeros_like(p, dtype=dtype, memory_format=fmt)
                state["p0"] = p.detach().to(dtype=dtype, copy=True, memory_format=fmt)
                if beta1 > 0:
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=fmt)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=fmt)

    # ------------------------------------------------------------------ stepping
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step (the D estimate is updated over all groups).

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = super().step(closure)
        self._fused_moments = {}  # (every group's update took its part; drop what is left)
        if self._moved:
            for g in self.param_groups:
                g["k"] = int(g["k"]) + 1
        return loss

    def _before_step(self) -> None:
        # 1) moments, s and the D statistics over every group; 2) the new estimate d
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        beta3 = math.sqrt(beta2) if first["beta3"] is None else float(first["beta3"])
        d, d0 = float(first["d"]), float(first["d0"])
        bc = self._bias_correction()
        numerator = float(first["d_numerator"]) * beta3
        delta, denom, lr_max = 0.0, 0.0, 0.0
        hyper: dict[str, Any] = {
            "beta1": beta1,
            "beta2": beta2,
            "beta3": beta3,
            "decouple": bool(first["decouple"]),
            "safeguard_warmup": bool(first["safeguard_warmup"]),
        }
        self._fused_moments = {}
        for group in self.param_groups:
            self._apply_schedules(group)
            lr = float(group["lr"]) * float(group["lr_scale"])
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            self._init_state(group, params)
            lr_max = max(lr_max, lr)
            if lr == 0:
                continue
            dlr = d * lr * bc
            grads = [p.grad for p in params]
            accumulate = self._ACCUMULATE[self._select_impl(params)]
            xs, ys = accumulate(self, group, params, grads, d=d, d0=d0, dlr=dlr, hyper=hyper)
            coef = d / d0 * dlr
            for x in xs:
                delta += coef * x
            for y in ys:
                denom += y
        self._d_prev = d
        self._moved = denom != 0
        if not self._moved:  # no information: neither d nor the parameters move
            return
        d_max = float(first["d_max"])
        numerator += delta
        d_hat = d
        if lr_max > 0:
            d_hat = float(first["d_coef"]) * numerator / denom
            if d == d0:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * float(first["growth_rate"]))
        for group in self.param_groups:
            group.update(d=d, d_max=d_max, d_hat=d_hat, d_numerator=numerator, d_denom=denom)

    def _fused_plan(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        has_m: bool,
    ) -> list[_FusedPart]:
        """The fused step's tensor lists, per dtype, checked once for both passes."""
        plan = []
        for idx in group_by_device_dtype(params).values():
            x, g = _pick(idx, params, grads)
            st = [states[i] for i in idx]
            p0, s, v = ([t[k] for t in st] for k in ("p0", "s", "exp_avg_sq"))
            m = [t["exp_avg"] for t in st] if has_m else v  # (never read without β1)
            lib = self._kernels([x, g, p0, s, v, m])  # auto: checked by _select_impl
            plan.append(_FusedPart(lib, idx, [x, g, p0, s], [x, g, v, m]))
        return plan

    # pass 1 of a step, per implementation: s, the moments (all but fused) and the
    # statistics of d; each returns the per-tensor (x0 - x)·s terms and the |s| terms
    def _accumulate_fused(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        d: float,
        d0: float,
        dlr: float,
        hyper: dict[str, Any],
    ) -> tuple[list[float], list[float]]:
        """s and the sums here; the moments in the update pass (:meth:`_fused`)."""
        states = [self.state[p] for p in params]
        plan = self._fused_plan(params, grads, states, hyper["beta1"] > 0)
        c3 = d / d0 * (d if hyper["safeguard_warmup"] else dlr)
        coupled = float(group["weight_decay"]) if not hyper["decouple"] else 0.0
        hp = ProdigySumsHp(beta3=hyper["beta3"], c3=c3, coupled_weight_decay=coupled)
        sums = _fused_sums(plan, len(params), hp=hp)
        self._fused_moments[id(group)] = plan
        return sums[0::2], sums[1::2]

    def _accumulate_lists(
        self, params: list[torch.Tensor], beta1: float
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None, list[Any]]:
        """p0, s, m (``None`` without β1) and v of ``params``."""
        states = [self.state[p] for p in params]
        m = [st["exp_avg"] for st in states] if beta1 > 0 else None
        v = [st["exp_avg_sq"] for st in states]
        return [st["p0"] for st in states], [st["s"] for st in states], m, v

    @staticmethod
    def _split(dots: list[torch.Tensor], norms: list[torch.Tensor]) -> tuple[list[float], ...]:
        # one device sync per group; then summed in order in float64, as prodigyopt
        both = torch.cat([torch.cat(dots), torch.cat(norms)]).cpu().tolist()
        return both[: len(both) // 2], both[len(both) // 2 :]

    def _accumulate_reference(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        d: float,
        d0: float,
        dlr: float,
        hyper: dict[str, Any],
    ) -> tuple[list[float], ...]:
        p0, ss, m, v = self._accumulate_lists(params, hyper["beta1"])
        wd = float(group["weight_decay"])
        n, dn = prodigy_reference_accumulate(
            params, grads, p0, ss, m, v, d=d, d0=d0, dlr=dlr, weight_decay=wd, **hyper
        )
        return self._split([n], [dn])

    def _accumulate_foreach(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        d: float,
        d0: float,
        dlr: float,
        hyper: dict[str, Any],
    ) -> tuple[list[float], ...]:
        p0, ss, m, v = self._accumulate_lists(params, hyper["beta1"])
        wd = float(group["weight_decay"])
        dots: list[torch.Tensor] = []
        norms: list[torch.Tensor] = []
        for idx in group_by_device_dtype(params).values():
            lists = [[t[i] for i in idx] for t in (params, grads, p0, ss, v)]
            if m is not None:
                lists.append([m[i] for i in idx])
            for _, pc in pieces(lists):
                n_, dn_ = _prodigy_foreach_accumulate(
                    pc[0],
                    pc[1],
                    pc[2],
                    pc[3],
                    pc[5] if m is not None else None,
                    pc[4],
                    kept_buffers(self, pc[4]),
                    kept_buffers(self, pc[1], slot=1),
                    d=d,
                    d0=d0,
                    dlr=dlr,
                    weight_decay=wd,
                    **hyper,
                )
                dots.append(torch.stack(n_).double())
                norms.append(torch.stack(dn_).double())
        return self._split(dots, norms)

    def _accumulate_compiled(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        d: float,
        d0: float,
        dlr: float,
        hyper: dict[str, Any],
    ) -> tuple[list[float], ...]:
        p0, ss, m, v = self._accumulate_lists(params, hyper["beta1"])
        like = params[0]
        fn = self._compile(prodigy_reference_accumulate)
        n, dn = fn(
            params,
            grads,
            p0,
            ss,
            m,
            v,
            d=lr_tensor(d, like),
            d0=d0,
            dlr=lr_tensor(dlr, like),
            weight_decay=float(group["weight_decay"]),
            **hyper,
        )
        return self._split([n], [dn])

    #: pass 1's method for each implementation (pass 2 is the base's table)
    _ACCUMULATE: ClassVar[dict[str, Callable[..., tuple[list[float], ...]]]] = {
        "reference": _accumulate_reference,
        "foreach": _accumulate_foreach,
        "fused": _accumulate_fused,
        "compiled": _accumulate_compiled,
    }

    # pass 2 of a step, per implementation: the moments (fused only) and x
    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, float, list[torch.Tensor] | None, list[torch.Tensor], dict[str, Any]] | None:
        """dlr, the new d, m, v and the rest; ``None`` where nothing moves this step."""
        if not self._moved:
            return None
        lr = float(group["lr"]) * float(group["lr_scale"])
        if lr == 0:
            return None
        beta1 = group["betas"][0]
        dlr = self._d_prev * lr * self._bias_correction()
        hyper: dict[str, Any] = {
            "eps": float(group["eps"]),
            "weight_decay": float(group["weight_decay"]),
            "decouple": bool(group["decouple"]),
        }
        states = [self.state[p] for p in params]
        m = [s["exp_avg"] for s in states] if beta1 > 0 else None
        v = [s["exp_avg_sq"] for s in states]
        return dlr, float(group["d"]), m, v, hyper

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        args = self._args(group, params)
        if args is not None:
            dlr, d_new, m, v, hyper = args
            prodigy_reference_step(params, grads, m, v, dlr=dlr, d_new=d_new, **hyper)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        args = self._args(group, params)
        if args is None:
            return
        dlr, d_new, m, v, hyper = args
        for idx in group_by_device_dtype(params).values():
            lists = [[t[i] for i in idx] for t in (params, grads, v)]
            if m is not None:
                lists.append([m[i] for i in idx])
            for _, pc in pieces(lists):
                _prodigy_foreach_step(
                    pc[0],
                    pc[1],
                    pc[3] if m is not None else None,
                    pc[2],
                    kept_buffers(self, pc[2]),
                    kept_buffers(self, pc[1], slot=1),
                    dlr=dlr,
                    d_new=d_new,
                    **hyper,
                )

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        args = self._args(group, params)
        if args is None:
            return
        dlr, d_new, m, v, hyper = args
        like = params[0]
        fn = self._compile(prodigy_reference_step)
        fn(
            params,
            grads,
            m,
            v,
            dlr=lr_tensor(dlr, like),
            d_new=lr_tensor(d_new, like),
            **hyper,
        )

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """Pass 2 of the fused step: m, v and (when d moved) x; the moments are updated
        also on a step that moves nothing."""
        plan = self._fused_moments.pop(id(group), None)
        lr = float(group["lr"]) * float(group["lr_scale"])
        if plan is None or lr == 0:  # (pass 1 made no plan where lr = 0)
            return
        beta1, beta2 = group["betas"]
        d, d_new = self._d_prev, float(group["d"])
        dlr = d * lr * self._bias_correction()
        wd, eps = float(group["weight_decay"]), float(group["eps"])
        hp = ProdigyStepHp(
            beta1=beta1,
            beta2=beta2,
            c1=d * (1 - beta1),
            c2=d * d * (1 - beta2),
            weight_decay=wd,
            dlr=dlr,
            d_eps=d_new * eps,
            d_new=d_new,
            decouple=bool(group["decouple"]),
            has_m=beta1 > 0,
            move=bool(self._moved),
        )
        for part in plan:
            _native.call(part.lib, "prodigy_step", part.step_lists, hp)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; 16-bit parameters get their float32 state back.

        (torch casts loaded state to the parameter's dtype; Prodigy keeps float32 state for
        float16/bfloat16 parameters, so those tensors are restored from the saved ones.)
        """
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for key, p in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(key)
            if p.dtype not in LOW_PRECISION or not saved:
                continue
            for name, value in saved.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    self.state[p][name] = value.to(p.device, torch.float32, copy=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_moved", False)
        self.__dict__.setdefault("_d_prev", 1e-6)
        self.__dict__.setdefault("_fused_moments", {})
