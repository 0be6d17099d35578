"""DoG and LDoG (Ivgi, Hinder & Carmon, 2023): SGD whose step size is "distance over
gradients", plus the polynomial-decay iterate averaging that DoG needs.

.. math::
    \\eta_t = c\\,\\frac{\\bar r_t}{\\sqrt{\\sum_{i\\le t}\\|g_i\\|^2 + \\epsilon}},\\qquad
    \\bar r_t = \\max\\Big(r_\\epsilon,\\; \\max_{i\\le t}\\|x_i - x_0\\|\\Big),\\qquad
    x_{t+1} = x_t - \\eta_t\\, g_t

with :math:`g_t = \\nabla f(x_t) + \\lambda x_t`, :math:`r_\\epsilon = \\text{reps\\_rel}\\,
(1 + \\|x_0\\|)` and :math:`c` the ``lr`` (1 by default; the paper's advice is to leave it).
DoG takes the norms over a whole param group (one η per group); LDoG over each tensor
(one η per tensor). Without a decaying schedule the last iterate is noisy: average the
iterates with :class:`PolynomialDecayAverager` and evaluate the average.

η_t depends on the gradient of step t itself, so :attr:`DoG.effective_lr` reports the η
of the **most recent** step (``nan`` before the first step, unless ``init_eta`` fixes it).

On CPU (float32/float64) ``impl="auto"`` runs bergab's own kernels (``csrc/dog.c``, see
:mod:`bergab.optim._native`). A DoG step is two passes over memory: one reads the
gradients for Σ‖g‖² (and the parameters with weight decay), the other updates x and
accumulates ‖x_new − x_0‖², which is kept for the next step's r̄ (recomputed when a
parameter was changed outside the optimizer: its ``_version`` or storage moved, or after
``load_state_dict``). LDoG's norms are per tensor, so its step is one call that takes the
tensors one at a time: the norm of g, then the update while the tensor is in cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from bergab._validate import check_real
from bergab.optim import _native
from bergab.optim._abi import DogHp, LdogHp
from bergab.optim._base import Optimizer
from bergab.optim._common import Scalar, TensorList, group_by_device_dtype, lr_tensor
from bergab.optim._foreach import kept_buffers, pieces

__all__ = ["DoG", "LDoG", "PolynomialDecayAverager", "dog_reference", "dog_statistics"]


def dog_statistics(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    x0s: list[torch.Tensor],
    *,
    weight_decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor squared distances from the start and squared gradient norms.

    .. math::
        \\|x - x_0\\|^2,\\qquad \\|g + \\lambda x\\|^2

    Args:
        params, grads: parameters x and gradients g.
        x0s: the parameters at the first step, :math:`x_0`.
        weight_decay: λ, the L2 term added to the gradient.

    Returns:
        ``(dist_sq, grad_sq)``: float64 tensors of shape ``(len(params),)``.

    Example:
        >>> x, g = [torch.tensor([3.0, 4.0]), torch.ones(1)], [torch.ones(2), torch.ones(1)]
        >>> d2, g2 = dog_statistics(x, g, [torch.zeros(2), torch.zeros(1)], weight_decay=0.0)
        >>> d2.tolist(), g2.tolist()
        ([25.0, 1.0], [2.0, 1.0])
    """
    dist = [(x - x0).norm() ** 2 for x, x0 in zip(params, x0s, strict=True)]
    if weight_decay != 0:
        grads = [g.add(x, alpha=weight_decay) for g, x in zip(grads, params, strict=True)]
    norms = [(g**2).sum() for g in grads]
    return torch.stack(dist).double(), torch.stack(norms).double()


def dog_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    etas: Sequence[Scalar],
    *,
    weight_decay: float,
) -> None:
    """The DoG/LDoG parameter update (in place): an SGD step with the step size η of each
    tensor.

    .. math::
        x \\leftarrow x - \\eta\\,(g + \\lambda x)

    Args:
        params, grads: parameters and gradients.
        etas: η per tensor (the same value for every tensor of a DoG group).
        weight_decay: λ.

    Example:
        >>> x = [torch.tensor([1.0])]
        >>> dog_reference(x, [torch.tensor([2.0])], [0.25], weight_decay=0.0)
        >>> x[0].item()
        0.5
    """
    for x, g, eta in zip(params, grads, etas, strict=True):
        if weight_decay != 0:
            g = g.add(x, alpha=weight_decay)
        if isinstance(eta, torch.Tensor):
            x.sub_(g * eta)
        else:
            x.add_(g, alpha=-eta)


def _sq(t: torch.Tensor) -> torch.Tensor:
    """``‖t‖²`` as a 0-d tensor (a BLAS dot: one read, no temporary)."""
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    flat = t.reshape(-1)
    return torch.dot(flat, flat)


def _dog_foreach_statistics(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    x0s: list[torch.Tensor],
    tmp: list[torch.Tensor],
    *,
    weight_decay: float,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    # tmp takes x - x0, then g + λx
    dist, gsq = [], []
    for t, x, g, x0 in zip(tmp, params, grads, x0s, strict=True):
        dist.append(_sq(torch.sub(x, x0, out=t)))
        gsq.append(_sq(torch.add(g, x, alpha=weight_decay, out=t) if weight_decay else g))
    return dist, gsq


def _dog_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    etas: Sequence[float],
    tmp: list[torch.Tensor],
    *,
    weight_decay: float,
) -> None:
    g: TensorList = grads
    if weight_decay != 0:
        for t, gi, x in zip(tmp, grads, params, strict=True):
            torch.add(gi, x, alpha=weight_decay, out=t)
        g = tmp
    if len(set(etas)) == 1:
        torch._foreach_add_(params, g, alpha=-etas[0])
    else:
        for x, gi, eta in zip(params, g, etas, strict=True):
            x.add_(gi, alpha=-eta)


class DoG(Optimizer):
    """DoG: SGD with the parameter-free "distance over gradients" step size (per group).

    .. math::
        \\eta_t = c\\,\\frac{\\max\\big(r_\\epsilon, \\max_{i\\le t}\\|x_i - x_0\\|\\big)}
            {\\sqrt{\\sum_{i\\le t}\\|g_i\\|^2 + \\epsilon}},\\qquad
        x_{t+1} = x_t - \\eta_t\\, g_t

    where the norms run over the whole param group, :math:`g_t` includes the L2 term
    :math:`\\lambda x_t`, :math:`r_\\epsilon = \\text{reps\\_rel}\\,(1+\\|x_0\\|)` and c is
    ``lr * lr_scale``. Equal to the ``dog`` package's ``DoG``. The running maximum
    distance :math:`\\bar r` and the gradient sum :math:`G` are kept in each param group
    (``group["rbar"]``, ``group["G"]``) and so are saved by ``state_dict()``; the start
    :math:`x_0` is ``state["x0"]``. A parameter joins the statistics at its first step with
    a gradient (``dog`` needs every parameter to have one at every step).

    Use it with iterate averaging (:class:`PolynomialDecayAverager`).

    Args:
        params: parameters or param groups.
        lr: c > 0, multiplies η (default 1.0; changing it is not recommended), float or
            schedule.
        reps_rel: :math:`r_\\epsilon` relative to 1 + ‖x_0‖ (default 1e-6; 1e-4 with
            BatchNorm); sets the size of the first step.
        weight_decay: λ ≥ 0, L2 term added to the gradient (float or schedule).
        eps: ε > 0 added to the gradient sum.
        init_eta: if given, the first step size, as is (not multiplied by ``lr`` or
            ``lr_scale``); then :math:`r_\\epsilon = 0`.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> opt = DoG([w], reps_rel=1e-2)
        >>> for _ in range(100):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-3), opt.effective_lr[0] > 0.1
        (True, True)

    References:
        Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step
        Size Schedule", ICML 2023, arXiv:2302.12022.
    """

    reach = "all"  # see bergab.optim.Optimizer.reach

    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "fused", "compiled")
    native: ClassVar[str | None] = "dog"
    fused_state: ClassVar[tuple[str, ...] | None] = ("x0",)
    layerwise: ClassVar[bool] = False
    #: ``effective_lr`` is the step size of the *last* step (η depends on its gradient):
    #: read it after ``step()`` to log the value a step used.
    effective_lr_timing: ClassVar[str] = "last"

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        reps_rel: float = 1e-6,
        weight_decay: Any = 0.0,
        eps: float = 1e-8,
        init_eta: float | None = None,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "reps_rel": reps_rel,
            "weight_decay": weight_decay,
            "eps": eps,
            "init_eta": init_eta,
            "rbar": None,
            "G": None,
            "eta": None,
        }
        # fused path: ||p - x0||^2 that the last update left, valid while p is untouched
        self._dist_sq = _native.KeptValues()
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0, low_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        check_real("eps", group["eps"], low=0.0)
        if group["init_eta"] is None:
            check_real("reps_rel", group["reps_rel"], low=0.0, low_open=True)
        else:
            check_real("init_eta", group["init_eta"], low=0.0, low_open=True)

    # ------------------------------------------------------------------ reporting
    @property
    def effective_lr(self) -> list[float]:
        """η of each group's most recent step (DoG: the group's η; LDoG: the mean of the
        tensors' η weighted by their sizes). Before the first step: ``init_eta`` if it is
        set, else ``nan`` (η depends on the first gradient).

        Example:
            >>> opt = DoG([torch.nn.Parameter(torch.zeros(1))], init_eta=0.01)
            >>> opt.effective_lr
            [0.01]
        """
        out = []
        for g in self.param_groups:
            if self.layerwise:
                pairs = [
                    (self.state[p]["eta"], p.numel())
                    for p in g["params"]
                    if "eta" in self.state.get(p, {})
                ]
                n = sum(k for _, k in pairs)
                out.append(sum(e * k for e, k in pairs) / n if n else self._initial_eta(g))
            else:
                out.append(float(g["eta"]) if g["eta"] is not None else self._initial_eta(g))
        return out

    @staticmethod
    def _initial_eta(group: dict[str, Any]) -> float:
        if group["init_eta"] is None:
            return math.nan
        return float(group["init_eta"])

    # ------------------------------------------------------------------ stepping
    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            if "x0" not in self.state[p]:
                x0 = self.state[p]["x0"] = p.detach().clone(memory_format=torch.preserve_format)
                self._dist_sq.keep([p], [0.0], [x0])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state; the fused path's kept distances are recomputed."""
        self._dist_sq.clear()
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_dist_sq", _native.KeptValues())

    def _native_step(
        self,
        lib: ctypes.CDLL,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        x0s: list[torch.Tensor],
    ) -> None:
        """The step with bergab's kernels: ``dog_reduce`` (Σ‖g + λx‖² per tensor, and
        ‖x − x0‖² where no kept value is valid), the step sizes, then ``dog_update``
        (x -= η(g + λx), the new ‖x − x0‖² kept for the next step)."""
        lists = [params, grads, x0s]
        hp = DogHp(weight_decay=float(group["weight_decay"]))
        stamps = self._dist_sq.stamps(params, x0s)  # still valid after the kernels
        known = self._dist_sq.known(params, stamps=stamps)
        n = len(params)
        out = _native.zeros(2 * n)
        stale = _native.doubles([1.0 if k < 0 else 0.0 for k in known])
        _native.call(lib, "dog_reduce", lists, hp, stale, out)
        g2 = out[0::2]
        d2 = [out[2 * i + 1] if k < 0 else k for i, k in enumerate(known)]
        scale = float(group["lr"]) * float(group["lr_scale"])
        etas = self._step_sizes(group, params, d2, g2, scale)
        dist = _native.zeros(n)
        _native.call(lib, "dog_update", lists, hp, _native.doubles(etas), dist)
        self._dist_sq.keep(params, dist[:], stamps=stamps)

    def _statistics(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        reference: bool,
    ) -> tuple[list[float], list[float]]:
        """Per-tensor ‖x − x0‖² and ‖g + λx‖² as Python floats (one device sync):
        :func:`dog_statistics` for the reference step, else BLAS dot products."""
        x0s = [self.state[p]["x0"] for p in params]
        wd = float(group["weight_decay"])
        if reference:
            d2, g2 = dog_statistics(params, grads, x0s, weight_decay=wd)
        else:  # foreach and compiled: BLAS dot products (faster than inductor's CPU sums)
            owners_all: list[int] = []
            dist_all: list[torch.Tensor] = []
            grad_all: list[torch.Tensor] = []
            for idx in group_by_device_dtype(params).values():
                lists = [[t[i] for i in idx] for t in (params, grads, x0s)]
                for owners, pc in pieces(lists):
                    dist, gsq = _dog_foreach_statistics(
                        pc[0], pc[1], pc[2], kept_buffers(self, pc[0]), weight_decay=wd
                    )
                    owners_all += [idx[o] for o in owners]
                    dist_all += dist
                    grad_all += gsq
            values = torch.stack([t.double().cpu() for t in dist_all + grad_all]).tolist()
            n = len(owners_all)
            sums = [0.0] * (2 * len(params))
            for j, o in enumerate(owners_all):
                sums[o] += values[j]
                sums[len(params) + o] += values[n + j]
            return sums[: len(params)], sums[len(params) :]
        both = torch.cat([d2.cpu(), g2.cpu()]).tolist()
        return both[: len(params)], both[len(params) :]

    def _etas(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        *,
        reference: bool = False,
    ) -> list[float]:
        """η of each tensor for this step (the statistics, then :meth:`_step_sizes`)."""
        d2, g2 = self._statistics(group, params, grads, reference=reference)
        scale = float(group["lr"]) * float(group["lr_scale"])
        return self._step_sizes(group, params, d2, g2, scale)

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        etas = self._etas(group, params, grads, reference=True)
        dog_reference(params, grads, etas, weight_decay=float(group["weight_decay"]))

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        # (the statistics as foreach: BLAS dot products beat inductor's CPU sums)
        etas = self._etas(group, params, grads)
        like = params[0]
        self._compile(dog_reference)(
            params,
            grads,
            [lr_tensor(e, like) for e in etas],
            weight_decay=float(group["weight_decay"]),
        )

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        etas = self._etas(group, params, grads)
        wd = float(group["weight_decay"])
        for idx in group_by_device_dtype(params).values():
            lists = [[t[i] for i in idx] for t in (params, grads)]
            for owners, pc in pieces(lists):
                etas_pc = [etas[idx[o]] for o in owners]
                tmp = kept_buffers(self, pc[0])
                _dog_foreach(pc[0], pc[1], etas_pc, tmp, weight_decay=wd)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        x0s = [self.state[p]["x0"] for p in params]
        self._native_step(self._kernels([params, grads, x0s]), group, params, grads, x0s)

    def _step_sizes(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        d2: list[float],
        g2: list[float],
        scale: float,
    ) -> list[float]:
        """Update the group's r̄ and G; return η for each tensor."""
        first = group["rbar"] is None
        if first:  # r_eps from the norm of x0 (x = x0 now)
            reps = 0.0 if group["init_eta"] is not None else float(group["reps_rel"])
            x_norm = math.sqrt(sum(float(p.detach().double().norm() ** 2) for p in params))
            group["rbar"] = reps * (1 + x_norm)
            group["G"] = float(group["eps"])
        group["rbar"] = max(float(group["rbar"]), math.sqrt(sum(d2)))
        group["G"] = float(group["G"]) + sum(g2)
        if group["G"] <= 0:
            raise ValueError(
                "DoG needs a positive gradient sum G (all gradients were zero and eps = 0); "
                "set eps > 0"
            )
        eta = scale * group["rbar"] / math.sqrt(group["G"])
        if first and group["init_eta"] is not None:
            eta = float(group["init_eta"])
        group["eta"] = eta
        return [eta] * len(params)


class LDoG(DoG):
    """LDoG: layer-wise DoG, one step size per tensor.

    .. math::
        \\eta^{(l)}_t = c\\,\\frac{\\max\\big(r^{(l)}_\\epsilon,
            \\max_{i\\le t}\\|x^{(l)}_i - x^{(l)}_0\\|\\big)}
            {\\sqrt{\\sum_{i\\le t}\\|g^{(l)}_i\\|^2 + \\epsilon}}

    for each tensor l, with :math:`r^{(l)}_\\epsilon = \\text{reps\\_rel}\\,(1 +
    \\|x^{(l)}_0\\|)`. Equal to the ``dog`` package's ``LDoG``. Per-tensor
    :math:`\\bar r, G, \\eta` are kept in ``state[p]`` (``"rbar"``, ``"G"``, ``"eta"``);
    :attr:`effective_lr` is their size-weighted mean per group and :attr:`tensor_lrs`
    lists them all. Arguments as :class:`DoG`.

    Example:
        >>> a = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> b = torch.nn.Parameter(torch.tensor([0.5]))
        >>> opt = LDoG([a, b], reps_rel=1e-2)
        >>> for _ in range(100):
        ...     opt.zero_grad(); ((a ** 2).sum() + 10 * (b ** 2).sum()).backward(); opt.step()
        >>> bool(a.abs().max() < 1e-3 and b.abs().max() < 1e-3)
        True
    """

    reach = "tensor"  # see bergab.optim.Optimizer.reach

    layerwise = True

    @property
    def tensor_lrs(self) -> list[list[float]]:
        """η of each tensor's most recent step, per group (``nan`` before its first step).

        Example:
            >>> LDoG([torch.nn.Parameter(torch.zeros(1))]).tensor_lrs
            [[nan]]
        """
        return [
            [
                float(self.state[p]["eta"]) if "eta" in self.state.get(p, {}) else math.nan
                for p in g["params"]
            ]
            for g in self.param_groups
        ]

    def _native_step(
        self,
        lib: ctypes.CDLL,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        x0s: list[torch.Tensor],
    ) -> None:
        """The step with bergab's kernel ``ldog``: per tensor its norms, η and the update
        in one call. Where a tensor's gradient sum G is not yet positive (``eps = 0``)
        DoG's two calls run instead, so the error is raised before anything moves."""
        init_eta = group["init_eta"]
        reps = 0.0 if init_eta is not None else float(group["reps_rel"])
        per_tensor: list[float] = []
        positive = True
        stamps = self._dist_sq.stamps(params, x0s)  # still valid after the kernel
        states = [self.state[p] for p in params]
        known_d2 = self._dist_sq.known(params, stamps=stamps)
        for p, state, known in zip(params, states, known_d2, strict=True):
            if "rbar" in state:
                rbar, gsum, first = float(state["rbar"]), float(state["G"]), 0.0
            else:  # as _step_sizes: r_eps from the norm of x0 (x = x0 now)
                rbar = reps * (1 + float(p.detach().double().norm()))
                gsum, first = float(group["eps"]), 1.0
            positive = positive and gsum > 0
            per_tensor += (rbar, gsum, known, first)
        if not positive:
            super()._native_step(lib, group, params, grads, x0s)
            return
        scale = float(group["lr"]) * float(group["lr_scale"])
        hp = LdogHp(
            weight_decay=float(group["weight_decay"]),
            scale=scale,
            init_eta=math.nan if init_eta is None else float(init_eta),
        )
        out = _native.zeros(4 * len(params))
        _native.call(lib, "ldog", [params, grads, x0s], hp, _native.doubles(per_tensor), out)
        for i, state in enumerate(states):
            state["rbar"], state["G"], state["eta"] = out[4 * i], out[4 * i + 1], out[4 * i + 2]
        self._dist_sq.keep(params, out[3::4], stamps=stamps)

    def _step_sizes(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        d2: list[float],
        g2: list[float],
        scale: float,
    ) -> list[float]:
        etas = []
        init_eta = group["init_eta"]
        for p, dist_sq, grad_sq in zip(params, d2, g2, strict=True):
            state = self.state[p]
            first = "rbar" not in state
            if first:
                reps = 0.0 if init_eta is not None else float(group["reps_rel"])
                state["rbar"] = reps * (1 + float(p.detach().double().norm()))
                state["G"] = float(group["eps"])
            state["rbar"] = max(state["rbar"], math.sqrt(dist_sq))
            state["G"] = state["G"] + grad_sq
            if state["G"] <= 0:
                raise ValueError(
                    "LDoG needs a positive gradient sum G for every tensor (a tensor's "
                    "gradients were all zero and eps = 0); set eps > 0"
                )
            eta = scale * state["rbar"] / math.sqrt(state["G"])
            if first and init_eta is not None:
                eta = float(init_eta)
            state["eta"] = eta
            etas.append(eta)
        return etas


class PolynomialDecayAverager:
    """Polynomial-decay averaging of iterates (Shamir & Zhang, 2013), as DoG recommends.

    .. math::
        \\bar x_t = \\Big(1 - \\frac{1+\\gamma}{t+\\gamma}\\Big)\\bar x_{t-1}
            + \\frac{1+\\gamma}{t+\\gamma}\\, x_t

    so :math:`\\bar x_1 = x_1` and older iterates fade polynomially (γ = 8 by default).
    Call :meth:`step` after each optimizer step. For a module every floating-point entry
    of its ``state_dict`` (parameters and buffers such as BatchNorm statistics) is
    averaged and integer buffers are copied, as the ``dog`` package's
    ``PolynomialDecayAverager`` does; equal to it. Unlike it, no second model is kept:
    :meth:`averaged_parameters` swaps the averages into the model for a ``with`` block.

    Args:
        model: a ``torch.nn.Module``, or an iterable of tensors (e.g. ``model.parameters()``).
        gamma: γ ≥ 0 (0: the uniform average).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([0.0]))
        >>> avg = PolynomialDecayAverager([w], gamma=0.0)
        >>> for value in (1.0, 2.0, 3.0):
        ...     with torch.no_grad():
        ...         _ = w.fill_(value)
        ...     avg.step()
        >>> with avg.averaged_parameters():
        ...     w.item()  # the uniform average of 1, 2, 3
        2.0
        >>> w.item()
        3.0
    """

    def __init__(self, model: torch.nn.Module | Iterable[torch.Tensor], gamma: float = 8.0) -> None:
        self.gamma = check_real("gamma", gamma, low=0.0)
        self.t = 1
        self._module = model if isinstance(model, torch.nn.Module) else None
        self._tensors = None if self._module is not None else list(model)  # type: ignore[arg-type]
        with torch.no_grad():
            self._averages = {k: v.detach().clone() for k, v in self._live().items()}

    def _live(self) -> dict[str, torch.Tensor]:
        if self._module is not None:
            return dict(self._module.state_dict())
        assert self._tensors is not None
        return {str(i): t.detach() for i, t in enumerate(self._tensors)}

    @torch.no_grad()
    def step(self) -> None:
        """Fold the current iterate into the average (weight (1+γ)/(t+γ)), then t += 1."""
        weight = (self.gamma + 1) / (self.gamma + self.t)
        for key, live in self._live().items():
            avg = self._averages[key]
            if avg.device != live.device:
                avg = self._averages[key] = avg.to(live.device)
            if not avg.is_floating_point():
                avg.copy_(live)  # e.g. BatchNorm's num_batches_tracked
            else:
                avg.mul_(1 - weight).add_(live, alpha=weight)
        self.t += 1

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The averages by name (module state-dict keys, or "0", "1", ... for tensors).

        Example:
            >>> avg = PolynomialDecayAverager(torch.nn.Linear(2, 1))
            >>> sorted(avg.averaged_state_dict())
            ['bias', 'weight']
        """
        return dict(self._averages)

    @contextlib.contextmanager
    def averaged_parameters(self) -> Iterator[None]:
        """Within the block the model holds the averaged values; the live ones come back after.

        Example:
            >>> lin = torch.nn.Linear(1, 1)
            >>> avg = PolynomialDecayAverager(lin)
            >>> with torch.no_grad():
            ...     _ = lin.weight.add_(1.0)
            >>> before = lin.weight.item()
            >>> with avg.averaged_parameters():  # t = 1: still the initial weights
            ...     abs(lin.weight.item() - before) > 0.5
            True
            >>> lin.weight.item() == before
            True
        """
        live = self._live()
        with torch.no_grad():
            saved = {k: v.clone() for k, v in live.items()}
            for k, v in live.items():
                v.copy_(self._averages[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in live.items():
                    v.copy_(saved[k])

    def state_dict(self) -> dict[str, Any]:
        """``{"t": t, "averages": {name: tensor}}`` (the averager's whole state).

        Example:
            >>> PolynomialDecayAverager([torch.zeros(2)]).state_dict()["t"]
            1
        """
        return {"t": self.t, "gamma": self.gamma, "averages": self.averaged_state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Example:
            >>> a = PolynomialDecayAverager([torch.zeros(2)])
            >>> a.load_state_dict({"t": 5, "averages": {"0": torch.ones(2)}})
            >>> a.t, a.averaged_state_dict()["0"].tolist()
            (5, [1.0, 1.0])
        """
        averages = state_dict["averages"]
        missing = set(self._averages) - set(averages)
        if missing:
            raise ValueError(f"state_dict lacks the averages of {sorted(missing)}")
        self.t = int(state_dict["t"])
        self.gamma = float(state_dict.get("gamma", self.gamma))
        with torch.no_grad():
            for k, v in self._averages.items():
                v.copy_(averages[k])
