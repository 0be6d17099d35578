"""Schedule-free SGD and AdamW (Defazio et al., 2024): no learning-rate schedule needed.

Schedule-free methods keep two sequences and evaluate the gradient at a third:

.. math::
    y_t &= (1-\\beta)\\,z_t + \\beta\\,x_t \\qquad\\text{(where the gradient is taken)} \\\\
    z_{t+1} &= z_t - \\gamma_t\\, d_t \\qquad\\text{(the SGD / Adam iterate)} \\\\
    x_{t+1} &= (1-c_{t+1})\\,x_t + c_{t+1}\\,z_{t+1} \\qquad\\text{(a weighted average)}

with :math:`d_t` the gradient at :math:`y_t` (SGD) or the Adam-normalized gradient
:math:`g_t/(\\sqrt{v_t/(1-\\beta_2^{t+1})}+\\epsilon)` (AdamW), plus the weight decay
:math:`\\lambda y_t`. The step size :math:`\\gamma_t = \\eta\\,\\min(1, (t+1)/T_w)` includes
a linear warmup over :math:`T_w` steps, and the averaging weight is
:math:`c_{t+1} = w_{t+1}/\\sum_{i\\le t+1} w_i` with
:math:`w_{t+1} = (t+1)^r\\,(\\max_{i\\le t}\\gamma_i)^{p}` (``r``, ``weight_lr_power``).

Only :math:`z` is stored (``state["z"]``): the parameters hold :math:`y` in **train** mode
and :math:`x` (the average: the weights to evaluate and to ship) in **eval** mode, and
:meth:`ScheduleFreeSGD.eval` / :meth:`ScheduleFreeSGD.train` convert between the two in
place (:math:`x = (y-(1-\\beta)z)/\\beta`). ``step()`` in eval mode raises
:class:`ScheduleFreeEvalModeError`. Unlike the ``schedulefree`` package, a new optimizer
starts in train mode (with no state, :math:`x = y = z` and the two modes coincide).

Each has a readable per-tensor reference (:func:`schedulefree_reference`), a ``foreach``
path, a ``compiled`` path and a ``fused`` path on CPU (bergab's C kernel,
``csrc/schedulefree.c``; what ``auto`` picks for float32/float64 CPU tensors): the step is
elementwise, so the kernel reads y, g, z (and v) once and writes y, z (and v) once, the
memory traffic of the update itself (20 bytes per float32 parameter for SGD, 28 for
AdamW). The warmup, the averaging weights and the train/eval switch stay in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch

from bergab._validate import check_betas, check_int, check_real
from bergab.optim import _native
from bergab.optim._abi import SfAdamwHp, SfSgdHp
from bergab.optim._base import Optimizer
from bergab.optim._common import LOW_PRECISION, Scalar, TensorList, group_by_device_dtype, lr_tensor
from bergab.optim._foreach import kept_buffers, pieces

__all__ = [
    "ScheduleFreeAdamW",
    "ScheduleFreeEvalModeError",
    "ScheduleFreeSGD",
    "recompute_batchnorm_stats",
    "schedulefree_reference",
]


class ScheduleFreeEvalModeError(RuntimeError):
    """``step()`` was called while a schedule-free optimizer was in eval mode.

    In eval mode the parameters hold the averaged weights x, not the point y where the
    gradient must be taken; call ``optimizer.train()`` before training steps.
    """


def schedulefree_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    zs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor] | None,
    *,
    lr: Scalar,
    ckp1: Scalar,
    beta1: float,
    weight_decay: float,
    beta2: float = 0.0,
    eps: float = 0.0,
    bias_correction2: Scalar = 1.0,
) -> None:
    """The readable per-tensor schedule-free step (``params`` hold y; all updated in place).

    .. math::
        d &= g \\;\\text{(SGD)}\\quad\\text{or}\\quad
            v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2,\\;
            d = \\frac{g}{\\sqrt{v/b_2}+\\epsilon} \\;\\text{(AdamW)},\\qquad
            d \\leftarrow d + \\lambda y \\\\
        y &\\leftarrow (1-c)\\,y + c\\,z + \\gamma\\,(\\beta_1(1-c)-1)\\,d,\\qquad
        z \\leftarrow z - \\gamma\\, d

    The y update is x's averaging step and the interpolation y = (1-β)z + βx folded
    together, so x never needs to be stored.

    Args:
        params: the parameters, holding y (train mode).
        grads: gradients at y.
        zs: the base iterates z.
        exp_avg_sqs: second-moment buffers v (AdamW), or ``None`` for SGD.
        lr: γ, the step size of this step (warmup included); a 0-d tensor when compiled.
        ckp1: c, the averaging weight of this step; a 0-d tensor when compiled.
        beta1: the interpolation β (``momentum`` for SGD, ``betas[0]`` for AdamW).
        weight_decay: λ, applied at y after normalization.
        beta2, eps: AdamW's second-moment decay and ε.
        bias_correction2: :math:`b_2 = 1-\\beta_2^{t+1}` (AdamW).

    Example:
        >>> y, z = [torch.tensor([1.0])], [torch.tensor([1.0])]
        >>> schedulefree_reference(y, [torch.tensor([2.0])], z, None, lr=0.1, ckp1=1.0,
        ...                        beta1=0.9, weight_decay=0.0)
        >>> round(y[0].item(), 6), round(z[0].item(), 6)  # first step: y moves by lr*g
        (0.8, 0.8)
    """
    for i, (y, g, z) in enumerate(zip(params, grads, zs, strict=True)):
        d = g
        if exp_avg_sqs is not None:
            v = exp_avg_sqs[i]
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            vv = v.float() if v.dtype in LOW_PRECISION else v
            d = (g / ((vv / bias_correction2).sqrt() + eps)).to(g.dtype)
        if weight_decay != 0:
            d = d + weight_decay * y
        y.lerp_(z, ckp1)
        y.add_(d * (lr * (beta1 * (1 - ckp1) - 1)))
        z.sub_(d * lr)


def _schedulefree_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    zs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor] | None,
    tmp: list[torch.Tensor],
    *,
    lr: float,
    ckp1: float,
    beta1: float,
    weight_decay: float,
    beta2: float = 0.0,
    eps: float = 0.0,
    bias_correction2: float = 1.0,
) -> None:
    # the same step on lists of tensors of one device and dtype; ``tmp`` (float32 for
    # 16-bit AdamW) receives the direction d, so nothing is allocated
    scale = 1.0
    d: TensorList = grads
    if exp_avg_sqs is not None:
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        # g / (sqrt(v / b2) + eps) == sqrt(b2) * g / (sqrt(v) + eps * sqrt(b2))
        scale = math.sqrt(bias_correction2)
        for t, v in zip(tmp, exp_avg_sqs, strict=True):
            torch.sqrt(v, out=t)
        torch._foreach_add_(tmp, eps * scale)
        torch._foreach_reciprocal_(tmp)
        torch._foreach_mul_(tmp, grads)
        if weight_decay != 0:
            torch._foreach_add_(tmp, params, alpha=weight_decay / scale)
        d = tmp
    elif weight_decay != 0:
        for t, g, p in zip(tmp, grads, params, strict=True):
            torch.add(g, p, alpha=weight_decay, out=t)
        d = tmp
    torch._foreach_lerp_(params, zs, ckp1)
    torch._foreach_add_(params, d, alpha=scale * lr * (beta1 * (1 - ckp1) - 1))
    torch._foreach_add_(zs, d, alpha=-scale * lr)


class _ScheduleFree(Optimizer):
    """Shared machinery of ScheduleFreeSGD and ScheduleFreeAdamW."""

    impls: ClassVar[tuple[str, ...]] = ("reference", "foreach", "fused", "compiled")
    native: ClassVar[str | None] = "schedulefree"
    adaptive: ClassVar[bool] = False
    #: ``effective_lr`` is the step size of the *next* step (known before it).
    effective_lr_timing: ClassVar[str] = "next"

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, impl: str) -> None:
        defaults = {**defaults, "train_mode": True, "weight_sum": 0.0, "lr_max": -1.0}
        self._pending: dict[int, tuple[float, float]] = {}
        super().__init__(params, defaults, impl=impl)

    # ------------------------------------------------------------------ hyperparameters
    def _beta(self, group: dict[str, Any]) -> float:
        return float(group["betas"][0]) if self.adaptive else float(group["momentum"])

    def _validate_common(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        group["warmup_steps"] = check_int("warmup_steps", group["warmup_steps"], low=0)
        check_real("r", group["r"], low=0.0)
        check_real("weight_lr_power", group["weight_lr_power"], low=0.0)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; it joins in the optimizer's current mode (train or eval)."""
        mode = self.training if getattr(self, "param_groups", None) else True
        super().add_param_group(param_group)
        self.param_groups[-1]["train_mode"] = mode

    def _scheduled_lr(self, group: dict[str, Any]) -> float:
        """γ for the group's next step: lr · lr_scale · warmup factor."""
        k = int(group["step"])
        warm = int(group["warmup_steps"])
        factor = (k + 1) / warm if k < warm else 1.0
        return float(group["lr"]) * float(group["lr_scale"]) * factor

    def _next_weights(self, group: dict[str, Any]) -> tuple[float, float, float, float]:
        """(γ, c, lr_max, weight_sum) of the group's next step, without changing state."""
        lr = self._scheduled_lr(group)
        lr_max = max(lr, float(group["lr_max"]))
        weight = (group["step"] + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
        weight_sum = float(group["weight_sum"]) + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        return lr, ckp1, lr_max, weight_sum

    @property
    def effective_lr(self) -> list[float]:
        """γ, the step size of each group's next step: ``lr * lr_scale`` times the warmup factor
        ``min(1, (step + 1) / warmup_steps)``. It is the step of the base iterate z
        (:math:`z \\leftarrow z - \\gamma d`).

        Example:
            >>> w = torch.nn.Parameter(torch.zeros(1))
            >>> ScheduleFreeSGD([w], lr=1.0, warmup_steps=4).effective_lr
            [0.25]
        """
        return [self._scheduled_lr(g) for g in self.param_groups]

    @property
    def averaging_weight(self) -> list[float]:
        """c, the weight the next step gives the new z in the average x (per group).

        Example:
            >>> w = torch.nn.Parameter(torch.zeros(1))
            >>> ScheduleFreeSGD([w], lr=1.0).averaging_weight  # the first average is z itself
            [1.0]
        """
        return [self._next_weights(g)[1] for g in self.param_groups]

    # ------------------------------------------------------------------ modes
    @property
    def training(self) -> bool:
        """True when the parameters hold y (train mode), False when they hold x (eval mode)."""
        return all(bool(g["train_mode"]) for g in self.param_groups)

    @torch.no_grad()
    def train(self) -> None:
        """Switch the parameters to y, the point where gradients are taken (no-op if there).

        Call it before training steps (``fit()`` does it for you).
        """
        self._set_mode(True)

    @torch.no_grad()
    def eval(self) -> None:
        """Switch the parameters to x, the averaged weights to evaluate, save or ship.

        Call it before evaluation and before saving weights (``fit()`` does it for you).
        """
        self._set_mode(False)

    def _set_mode(self, train: bool) -> None:
        for group in self.param_groups:
            if bool(group["train_mode"]) == train:
                continue
            beta = self._beta(group)
            # y = (1-β) z + β x   <=>   x = y + (1 - 1/β) (z - y)
            weight = 1 - beta if train else 1 - 1 / beta
            ps = [p for p in group["params"] if "z" in self.state[p]]
            for idx in group_by_device_dtype(ps).values():
                pl = [ps[i] for i in idx]
                torch._foreach_lerp_(pl, [self.state[p]["z"] for p in pl], weight)
            group["train_mode"] = train

    # ------------------------------------------------------------------ stepping
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step (train mode only).

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.

        Raises:
            ScheduleFreeEvalModeError: the optimizer is in eval mode.
        """
        if not self.training:
            raise ScheduleFreeEvalModeError(
                f"{type(self).__name__}.step() was called in eval mode, where the parameters "
                "hold the averaged weights x; call optimizer.train() before training steps "
                "(and optimizer.eval() before evaluating or saving)"
            )
        return super().step(closure)

    def _before_step(self) -> None:
        # the averaging weights advance for every group, with or without gradients
        self._pending = {}
        for group in self.param_groups:
            self._apply_schedules(group)
            lr, ckp1, lr_max, weight_sum = self._next_weights(group)
            group["lr_max"], group["weight_sum"] = lr_max, weight_sum
            self._pending[id(group)] = (lr, ckp1)

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if "z" not in state:
                state["z"] = p.detach().clone(memory_format=torch.preserve_format)
                if self.adaptive:
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, float, float, list[torch.Tensor], list[torch.Tensor] | None, dict[str, Any]]:
        """lr, c_(k+1), the second-moment bias correction, z, v (AdamW only) and the rest."""
        lr, ckp1 = self._pending[id(group)]
        states = [self.state[p] for p in params]
        zs = [s["z"] for s in states]
        hyper: dict[str, Any] = {
            "beta1": self._beta(group),
            "weight_decay": float(group["weight_decay"]),
        }
        vs: list[torch.Tensor] | None = None
        bc2 = 1.0
        if self.adaptive:
            vs = [s["exp_avg_sq"] for s in states]
            beta2 = float(group["betas"][1])
            bc2 = 1 - beta2 ** (group["step"] + 1)
            hyper.update(beta2=beta2, eps=float(group["eps"]))
        return lr, ckp1, bc2, zs, vs, hyper

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, ckp1, bc2, zs, vs, hyper = self._args(group, params)
        schedulefree_reference(
            params, grads, zs, vs, lr=lr, ckp1=ckp1, bias_correction2=bc2, **hyper
        )

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """bergab's CPU kernel: one pass over y, g, z (and v)."""
        lr, ckp1, bc2, zs, vs, hyper = self._args(group, params)
        beta1, wd = hyper["beta1"], hyper["weight_decay"]
        hp: SfSgdHp | SfAdamwHp
        if vs is None:
            kernel, hp = "sf_sgd", SfSgdHp(lr=lr, ckp1=ckp1, beta1=beta1, weight_decay=wd)
        else:
            kernel = "sf_adamw"
            hp = SfAdamwHp(
                lr=lr,
                ckp1=ckp1,
                beta1=beta1,
                weight_decay=wd,
                beta2=hyper["beta2"],
                eps=hyper["eps"],
                bias_correction2=bc2,
            )
        for idx in group_by_device_dtype(params).values():
            lists = [[t[i] for i in idx] for t in (params, grads, zs, *([vs] if vs else []))]
            lib = self._kernels(lists)
            _native.call(lib, kernel, lists, hp)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, ckp1, bc2, zs, vs, hyper = self._args(group, params)
        for idx in group_by_device_dtype(params).values():
            lists = [[t[i] for i in idx] for t in (params, grads, zs, *([vs] if vs else []))]
            direction = vs is not None or hyper["weight_decay"] != 0  # d needs a buffer
            for _, piece in pieces(lists):
                low = piece[0][0].dtype in LOW_PRECISION and vs is not None
                tmp = (
                    kept_buffers(self, piece[0], dtype=torch.float32 if low else None)
                    if direction
                    else []
                )
                _schedulefree_foreach(
                    piece[0],
                    piece[1],
                    piece[2],
                    piece[3] if vs is not None else None,
                    tmp,
                    lr=lr,
                    ckp1=ckp1,
                    bias_correction2=bc2,
                    **hyper,
                )

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """The changing scalars go in as 0-d tensors (no recompiles)."""
        lr, ckp1, bc2, zs, vs, hyper = self._args(group, params)
        fn = self._compile(schedulefree_reference)
        like = params[0]
        fn(
            params,
            grads,
            zs,
            vs,
            lr=lr_tensor(lr, like),
            ckp1=lr_tensor(ckp1, like),
            bias_correction2=lr_tensor(bc2, like),
            **hyper,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, mode included.

        The mode (train/eval) comes from the checkpoint, like the parameters do: load the
        model and the optimizer from the same checkpoint and they agree. A checkpoint
        saved in eval mode resumes training after ``optimizer.train()``.
        """
        super().load_state_dict(state_dict)
        for g in self.param_groups:
            g.setdefault("train_mode", True)


class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-free SGD: momentum-like interpolation plus iterate averaging, no schedule.

    .. math::
        y_t = (1-\\beta) z_t + \\beta x_t,\\quad
        z_{t+1} = z_t - \\gamma_t (\\nabla f(y_t) + \\lambda y_t),\\quad
        x_{t+1} = (1-c_{t+1})\\, x_t + c_{t+1}\\, z_{t+1}

    with warmup :math:`\\gamma_t = \\eta\\min(1,(t+1)/T_w)` and
    :math:`c_{t+1} = w_{t+1}/\\sum_{i\\le t+1} w_i`,
    :math:`w_t = t^r(\\max_{i<t}\\gamma_i)^p`. Equal to ``schedulefree.SGDScheduleFree``
    (except that a new optimizer starts in train mode). The parameters hold y in train
    mode and the average x in eval mode: call :meth:`eval` before evaluating or saving
    weights and :meth:`train` before training; ``step()`` in eval mode raises
    :class:`ScheduleFreeEvalModeError`. The mode is saved in ``state_dict()``.

    With BatchNorm, the running statistics were collected at y, not at x: recompute them
    in eval mode (:func:`recompute_batchnorm_stats`) before evaluating.

    Args:
        params: parameters or param groups.
        lr: η ≥ 0 (default 1.0; schedule-free SGD wants 10-50x a tuned SGD lr), a float
            or a schedule (a schedule multiplies η; the warmup stays on top of it).
        momentum: β in (0, 1), the interpolation between z and x (default 0.9).
        weight_decay: λ ≥ 0, added to the gradient at y (float or schedule).
        warmup_steps: T_w ≥ 0, linear warmup length.
        r: r ≥ 0, polynomial weighting of the average (0: uniform).
        weight_lr_power: p ≥ 0, weights ∝ (max lr so far)^p (de-weights warmup iterates).
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
        >>> opt = ScheduleFreeSGD([w], lr=0.5, warmup_steps=5)
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> opt.eval()  # the parameters now hold the average x
        >>> bool(w.abs().max() < 1e-2), opt.training
        (True, False)

    References:
        Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled",
        arXiv:2405.15682.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        momentum: float = 0.9,
        weight_decay: Any = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._validate_common(group)
        check_real("momentum", group["momentum"], low=0.0, high=1.0, low_open=True, high_open=True)


class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-free AdamW: the schedule-free average over Adam-normalized steps.

    .. math::
        v_{t+1} = \\beta_2 v_t + (1-\\beta_2) g_t^2,\\quad
        d_t = \\frac{g_t}{\\sqrt{v_{t+1}/(1-\\beta_2^{t+1})}+\\epsilon} + \\lambda y_t,\\quad
        z_{t+1} = z_t - \\gamma_t d_t

    with :math:`g_t = \\nabla f(y_t)`, :math:`y_t = (1-\\beta_1) z_t + \\beta_1 x_t` and x the
    weighted average of z as in :class:`ScheduleFreeSGD` (no first moment: β1 is the
    interpolation). Equal to ``schedulefree.AdamWScheduleFree`` (except that a new
    optimizer starts in train mode). Modes, checkpoints and BatchNorm: see
    :class:`ScheduleFreeSGD`.

    Args:
        params: parameters or param groups.
        lr: η ≥ 0 (default 0.0025), a float or a schedule.
        betas: (β1, β2): β1 in (0, 1) the interpolation, β2 in [0, 1) the second-moment decay.
        eps: ε ≥ 0 added to the denominator.
        weight_decay: λ ≥ 0, applied at y after normalization (float or schedule).
        warmup_steps: T_w ≥ 0, linear warmup length.
        r: r ≥ 0, polynomial weighting of the average.
        weight_lr_power: p ≥ 0, weights ∝ (max lr so far)^p.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = ScheduleFreeAdamW([w], lr=0.05, warmup_steps=10)
        >>> for _ in range(400):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> opt.eval()
        >>> bool(w.abs().max() < 0.05)
        True

    References:
        Defazio et al., "The Road Less Scheduled", arXiv:2405.15682.
    """

    adaptive = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._validate_common(group)
        group["betas"] = check_betas(group["betas"], beta1_low_open=True)
        check_real("eps", group["eps"], low=0.0)


@torch.no_grad()
def recompute_batchnorm_stats(
    model: torch.nn.Module, batches: Iterable[Any], num_batches: int = 50
) -> int:
    """Recompute BatchNorm running statistics at the current weights (e.g. schedule-free x).

    A schedule-free model trained in train mode collected its BatchNorm statistics at y;
    in eval mode the weights are x and those statistics are stale. This resets every
    BatchNorm's running mean/var and re-estimates them (cumulative average) over up to
    ``num_batches`` batches of inputs, with the model in train mode and gradients off, then
    restores the model's train/eval flags.

    Args:
        model: the model (its parameters already switched with ``optimizer.eval()``).
        batches: an iterable of model inputs, or of ``(inputs, targets)`` pairs.
        num_batches: how many batches to use (≥ 1).

    Returns:
        The number of batches used.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> recompute_batchnorm_stats(net, [torch.randn(8, 3) for _ in range(3)])
        3
        >>> net[1].num_batches_tracked.item(), net.training
        (3, True)
    """
    num_batches = check_int("num_batches", num_batches, low=1)
    bns = [b for b in model.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
    flags = {m: m.training for m in model.modules()}
    momenta = {b: b.momentum for b in bns}
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative moving average: every batch counts the same
    model.train()
    used = 0
    try:
        for batch in batches:
            if used >= num_batches:
                break
            inputs = batch[0] if isinstance(batch, list | tuple) else batch
            model(inputs)
            used += 1
    finally:
        for m, flag in flags.items():
            m.training = flag
        for b, mom in momenta.items():
            b.momentum = mom
    return used
