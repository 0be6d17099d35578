"""Layer-wise adaptive optimizers: LARS and LAMB, for training with very large batches.

Both scale each tensor's step by a *trust ratio* built from the norm of the tensor and
the norm of its update, so that every layer moves by a similar fraction of its own size
whatever the scale of its gradients:

- :class:`LARS` (You, Gitman & Ginsburg 2017): momentum SGD whose per-tensor learning
  rate is ``η_trust · ‖w‖ / (‖g‖ + λ‖w‖ + ε)``.
- :class:`LAMB` (You et al. 2019): Adam's direction ``u = m̂ / (√v̂ + ε) + λw`` rescaled
  by ``‖w‖ / ‖u‖``.

Each has a readable per-tensor reference (:func:`lars_reference`, :func:`lamb_reference`),
a ``foreach`` path, a ``compiled`` path (``torch.compile`` of the reference) and a
``fused`` path on CPU (bergab's C kernels, ``csrc/layerwise.c``; what ``auto`` picks for
float32/float64 CPU tensors). The norms are per tensor, so the update of a tensor can only
start once its whole gradient has been read: every fast path works tensor by tensor (or
in cache-sized batches), computing the norms and then updating while the tensor is still
in cache. The fused LARS kernel also computes the new ‖w‖² while it updates, and keeps
it for the next step (recomputed if anything else changed the parameter meanwhile), so a
step reads each gradient twice (once from memory) and each parameter once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from bergab._validate import check_betas, check_choice, check_real
from bergab.optim import _native
from bergab.optim._abi import LambHp, LarsHp
from bergab.optim._base import Optimizer
from bergab.optim._common import Scalar, group_by_device_dtype, hoist, lr_tensor
from bergab.optim._foreach import scratch

__all__ = ["LAMB", "LARS", "lamb_reference", "lars_reference"]


#: On CPU the foreach paths work through the tensors in batches of about this many
#: elements, so the several passes of one update find their operands in cache.
CPU_BATCH_NUMEL = 1 << 18


# ---------------------------------------------------------------------------- helpers
def _batches(indices: Sequence[int], params: Sequence[torch.Tensor]) -> Iterator[list[int]]:
    """Runs of ``indices`` holding about :data:`CPU_BATCH_NUMEL` elements (CPU only).

    A tensor larger than the batch size is a batch of its own (its norm needs all of it).
    On accelerators the whole list is one batch: one kernel launch per operation.
    """
    if not indices or params[indices[0]].device.type != "cpu":
        yield list(indices)
        return
    run: list[int] = []
    size = 0
    for i in indices:
        run.append(i)
        size += params[i].numel()
        if size >= CPU_BATCH_NUMEL:
            yield run
            run, size = [], 0
    if run:
        yield run


def _norms(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[float]:
    """The Euclidean norm of each tensor, as Python floats (one host sync on accelerators)."""
    return torch.stack(torch._foreach_norm(tensors)).tolist()


def _check_flag(name: str, value: Any) -> bool:
    return bool(check_choice(name, value, (False, True)))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, or 1 where either is 0 (a zero tensor or a zero update keeps lr)."""
    return torch.where((num > 0) & (den > 0), num / den, torch.ones_like(num))


# ---------------------------------------------------------------------------- LARS
def lars_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    *,
    lr: Scalar,
    momentum: float,
    weight_decay: Scalar,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    adapt: Sequence[bool] | None = None,
) -> None:
    """The readable per-tensor LARS update (parameters and momentum buffers in place).

    For each tensor :math:`w` with gradient :math:`g`:

    .. math::
        \\rho &= \\eta_{\\text{trust}}\\,
            \\frac{\\lVert w\\rVert}{\\lVert g\\rVert + \\lambda\\lVert w\\rVert + \\epsilon}
            \\quad(\\rho = 1 \\text{ if } \\lVert w\\rVert = 0 \\text{ or }
            \\lVert g\\rVert = 0 \\text{, or the tensor is excluded}) \\\\
        d &= \\rho\\,(g + \\lambda w),\\qquad b \\leftarrow \\mu b + d,\\qquad
        w \\leftarrow w - \\eta\\,(d + \\mu b \\text{ if Nesterov else } b)

    Args:
        params, grads: the tensors and their gradients.
        momentum_buffers: one buffer per tensor (zeros before the first step); ignored
            (may be ``[]``) when ``momentum == 0``.
        lr: the global learning rate η (a float, or a 0-d tensor when compiled).
        momentum: μ ≥ 0.
        weight_decay: λ ≥ 0 (a float, or a 0-d tensor when compiled).
        trust_coefficient: η_trust > 0.
        eps: ε ≥ 0 in the denominator of the trust ratio.
        nesterov: use the Nesterov form of the momentum step.
        adapt: per tensor, whether to apply the trust ratio (``None``: all).

    Example:
        >>> w, g = [torch.tensor([3.0, 4.0])], [torch.tensor([0.0, 1.0])]
        >>> lars_reference(w, g, [torch.zeros(2)], lr=1.0, momentum=0.9, weight_decay=0.0,
        ...                trust_coefficient=0.1, eps=0.0, nesterov=False)
        >>> w[0].tolist()  # trust ratio 0.1 * 5 / 1 = 0.5
        [3.0, 3.5]
    """
    decay = isinstance(weight_decay, torch.Tensor) or weight_decay != 0
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = g + weight_decay * p if decay else g
        if adapt is None or adapt[i]:
            w_norm = torch.linalg.vector_norm(p)
            g_norm = torch.linalg.vector_norm(g)
            # where a norm is 0 the ratio is 1 (a plain SGD step for that tensor)
            (trust,) = hoist(
                torch.where(
                    (w_norm > 0) & (g_norm > 0),
                    trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps),
                    torch.ones_like(w_norm),
                )
            )
            d = d * trust
        if momentum != 0:
            buf = momentum_buffers[i]
            buf.mul_(momentum).add_(d)
            d = d + momentum * buf if nesterov else buf
        p.sub_(d * lr)


def _lars_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    adapt: Sequence[bool],
) -> None:
    # one batch of tensors sharing device and dtype
    trust = [1.0] * len(params)
    todo = [i for i, a in enumerate(adapt) if a]
    if todo:
        w_norms = _norms([params[i] for i in todo])
        g_norms = _norms([grads[i] for i in todo])
        for i, wn, gn in zip(todo, w_norms, g_norms, strict=True):
            if wn > 0 and gn > 0:
                trust[i] = trust_coefficient * wn / (gn + weight_decay * wn + eps)
    # The batch is one tensor or a few small ones (the norms above read w and g into
    # cache); each line below is one in-cache pass, and nothing is allocated.
    if momentum == 0:
        # w <- w - lr*rho*(g + wd*w) = (1 - lr*rho*wd) * w - lr*rho*g
        for p, g, t in zip(params, grads, trust, strict=True):
            if weight_decay != 0:
                p.mul_(1 - lr * t * weight_decay)
            p.add_(g, alpha=-lr * t)
        return
    # b <- mu*b + rho*g + rho*wd*w
    for b, g, p, t in zip(bufs, grads, params, trust, strict=True):
        b.mul_(momentum).add_(g, alpha=t)
        if weight_decay != 0:
            b.add_(p, alpha=t * weight_decay)
    if not nesterov:  # w <- w - lr*b
        torch._foreach_add_(params, bufs, alpha=-lr)
        return
    # Nesterov: w <- w - lr*(rho*(g + wd*w) + mu*b) = (1 - lr*rho*wd)*w - lr*rho*g - lr*mu*b
    for b, g, p, t in zip(bufs, grads, params, trust, strict=True):
        if weight_decay != 0:
            p.mul_(1 - lr * t * weight_decay)
        p.add_(g, alpha=-lr * t).add_(b, alpha=-lr * momentum)


class LARS(Optimizer):
    """LARS: momentum SGD with a layer-wise trust ratio (You, Gitman & Ginsburg, 2017).

    For each tensor :math:`w` (a "layer") with gradient :math:`g`:

    .. math::
        \\rho = \\eta_{\\text{trust}}\\,
            \\frac{\\lVert w\\rVert}{\\lVert g\\rVert + \\lambda\\lVert w\\rVert + \\epsilon},
        \\qquad b \\leftarrow \\mu b + \\rho\\,(g + \\lambda w),
        \\qquad w \\leftarrow w - \\eta_t\\, b

    (Nesterov: :math:`w \\leftarrow w - \\eta_t(\\rho(g+\\lambda w) + \\mu b)`), with
    :math:`\\rho = 1` where :math:`\\lVert w\\rVert` or :math:`\\lVert g\\rVert` is 0 and
    for tensors excluded from adaptation.

    Which published variant: the trust ratio of Algorithm 1 of the paper (with ε in the
    denominator, as in NVIDIA's LARC and most implementations) and torch-style momentum,
    where the global learning rate :math:`\\eta_t` multiplies the momentum buffer when
    the step is taken. The paper's Algorithm 1 puts :math:`\\eta_t` *inside* the buffer
    (:math:`v \\leftarrow m v + \\eta_t \\rho (g + \\lambda w)`); the two are identical for
    a constant learning rate and differ only while a schedule changes it.

    Exclude biases and normalization weights from both weight decay and adaptation (as
    the large-batch recipes do) with a param group, e.g. from
    :func:`bergab.optim.param_groups`, that sets ``weight_decay=0`` and
    ``exclude_from_adaptation=True``, or with a predicate
    ``exclude_from_adaptation=lambda p: p.ndim <= 1``.

    Args:
        params: parameters or param groups.
        lr: the global learning rate η ≥ 0, a float or a schedule (default 1.0; the
            paper's runs use 2-30 with η_trust = 0.001, scaled with the batch size).
        momentum: μ ≥ 0.
        weight_decay: λ ≥ 0, float or schedule.
        trust_coefficient: η_trust > 0 (the paper's η, default 0.001).
        eps: ε ≥ 0 in the trust ratio's denominator.
        nesterov: Nesterov momentum (needs momentum > 0).
        exclude_from_adaptation: ``None``/``False`` (adapt every tensor), ``True``
            (adapt none: plain momentum SGD; useful as a group option) or a predicate
            ``tensor -> bool`` naming the tensors to exclude. A group may set its own
            ``exclude_from_adaptation`` bool.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
        >>> opt = LARS([w], lr=20.0, momentum=0.9, trust_coefficient=0.01)
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 1e-3)
        True

    References:
        You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
        arXiv:1708.03888.
    """

    reach = "tensor"  # see bergab.optim.Optimizer.reach

    impls = ("reference", "foreach", "fused", "compiled")
    native = "layerwise"

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        momentum: float = 0.9,
        weight_decay: Any = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        nesterov: bool = False,
        exclude_from_adaptation: bool | Callable[[torch.Tensor], bool] | None = None,
        *,
        impl: str = "auto",
    ) -> None:
        self._exclude: Callable[[torch.Tensor], bool] | None = None
        self._w_sqnorms = _native.KeptValues()  # fused path: ||p||^2 after the last step
        if callable(exclude_from_adaptation):
            self._exclude = exclude_from_adaptation
            exclude_flag = False
        elif exclude_from_adaptation is None:
            exclude_flag = False
        else:
            exclude_flag = _check_flag("exclude_from_adaptation", exclude_from_adaptation)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "nesterov": nesterov,
            "exclude_from_adaptation": exclude_flag,
        }
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        check_real("momentum", group["momentum"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        check_real("trust_coefficient", group["trust_coefficient"], low=0.0, low_open=True)
        check_real("eps", group["eps"], low=0.0)
        _check_flag("nesterov", group["nesterov"])
        _check_flag("exclude_from_adaptation", group["exclude_from_adaptation"])
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("nesterov=True requires momentum > 0")

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        if group["momentum"] != 0:
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )

    def _adapt(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> list[bool]:
        if group["exclude_from_adaptation"]:
            return [False] * len(params)
        if self._exclude is None:
            return [True] * len(params)
        return [not self._exclude(p) for p in params]

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, float, list[bool], list[torch.Tensor], dict[str, Any]]:
        """lr, weight decay, which tensors adapt, the momentum buffers, the rest."""
        hyper: dict[str, Any] = {
            "momentum": group["momentum"],
            "trust_coefficient": group["trust_coefficient"],
            "eps": group["eps"],
            "nesterov": group["nesterov"],
        }
        bufs = [self.state[p]["momentum_buffer"] for p in params] if hyper["momentum"] else []
        lr = group["lr"] * group["lr_scale"]
        return lr, group["weight_decay"], self._adapt(group, params), bufs, hyper

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, adapt, bufs, hyper = self._args(group, params)
        lars_reference(params, grads, bufs, lr=lr, weight_decay=wd, adapt=adapt, **hyper)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, adapt, bufs, hyper = self._args(group, params)
        self._lars_fused(params, grads, bufs, lr=lr, weight_decay=wd, adapt=adapt, **hyper)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, adapt, bufs, hyper = self._args(group, params)
        for key_idx in group_by_device_dtype(params).values():
            for idx in _batches(key_idx, params):
                _lars_foreach(
                    [params[i] for i in idx],
                    [grads[i] for i in idx],
                    [bufs[i] for i in idx] if bufs else [],
                    lr=lr,
                    weight_decay=wd,
                    adapt=[adapt[i] for i in idx],
                    **hyper,
                )

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """lr and weight decay as tensors, so schedules never recompile."""
        lr, wd, adapt, bufs, hyper = self._args(group, params)
        fn = self._compile(lars_reference)
        fn(
            params,
            grads,
            bufs,
            lr=lr_tensor(lr, params[0]),
            weight_decay=lr_tensor(wd, params[0]) if wd != 0 else 0.0,
            adapt=adapt,
            **hyper,
        )

    def _lars_fused(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        bufs: list[torch.Tensor],
        *,
        lr: float,
        momentum: float,
        weight_decay: float,
        trust_coefficient: float,
        eps: float,
        nesterov: bool,
        adapt: Sequence[bool],
    ) -> None:
        lib = self._kernels([params, grads, bufs])
        per_tensor: list[float] = []
        stamps = self._w_sqnorms.stamps(params)  # still valid after the kernel
        for a, known in zip(adapt, self._w_sqnorms.known(params, stamps=stamps), strict=True):
            per_tensor += (1.0 if a else 0.0, known)
        out = _native.zeros(2 * len(params))
        hp = LarsHp(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            nesterov=bool(nesterov),
        )
        # without momentum the buffer pointers are never read: pass the gradients
        lists = [params, grads, bufs if bufs else grads]
        _native.call(lib, "lars", lists, hp, _native.doubles(per_tensor), out)
        self._w_sqnorms.keep(params, out[1::2], stamps=stamps)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state; the fused path's kept parameter norms are recomputed."""
        self._w_sqnorms.clear()
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_exclude", None)
        self.__dict__.setdefault("_w_sqnorms", _native.KeptValues())


# ---------------------------------------------------------------------------- LAMB
def lamb_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: Sequence[Scalar],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: Scalar,
    clamp_value: float | None,
    bias_correction: bool,
    adam: bool,
) -> None:
    """The readable per-tensor LAMB update (parameters and moments in place).

    For each tensor :math:`w` with gradient :math:`g` at its step :math:`t` (counting
    this one):

    .. math::
        m &\\leftarrow \\beta_1 m + (1-\\beta_1)\\,g,\\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2)\\,g^2 \\\\
        u &= \\frac{m/(1-\\beta_1^t)}{\\sqrt{v/(1-\\beta_2^t)} + \\epsilon} + \\lambda w
            \\qquad(\\text{no } 1-\\beta^t \\text{ factors without bias correction}) \\\\
        r &= \\frac{\\min(\\lVert w\\rVert, c)}{\\lVert u\\rVert}
            \\quad(r = 1 \\text{ if a norm is 0, or with } \\texttt{adam=True}),\\qquad
        w \\leftarrow w - \\eta\\, r\\, u

    Args:
        params, grads, exp_avgs, exp_avg_sqs: tensors, gradients and the first/second
            moments (zeros before the first step).
        steps: each tensor's step count *including* this step (ints, or 0-d tensors when
            compiled).
        lr: η (a float, or a 0-d tensor when compiled).
        beta1, beta2: the moments' decay rates in [0, 1).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0 (a float, or a 0-d tensor when compiled).
        clamp_value: c, the upper clamp of ``‖w‖`` in the trust ratio (``None``: none).
        bias_correction: divide the moments by :math:`1-\\beta^t`.
        adam: use r = 1 (Adam with λw added to its direction), for comparisons.

    Example:
        >>> w, g = [torch.tensor([3.0, 4.0])], [torch.tensor([1.0, 0.0])]
        >>> m, v = [torch.zeros(2)], [torch.zeros(2)]
        >>> lamb_reference(w, g, m, v, [1], lr=0.1, beta1=0.9, beta2=0.999, eps=1e-6,
        ...                weight_decay=0.0, clamp_value=None, bias_correction=True,
        ...                adam=False)
        >>> [round(x, 4) for x in w[0].tolist()]  # u ≈ (1, 0), r ≈ 5: a step of lr * ||w||
        [2.5, 4.0]
    """
    decay = isinstance(weight_decay, torch.Tensor) or weight_decay != 0
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        # 1) Adam's moments
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat, v_hat = m, v
        if bias_correction:
            bias1, bias2 = hoist(1 - beta1**t, 1 - beta2**t)
            m_hat = m / bias1
            v_hat = v / bias2
        # 2) the direction, with decoupled weight decay
        u = m_hat / (v_hat.sqrt() + eps)
        if decay:
            u = u + weight_decay * p
        # 3) the trust ratio ||w|| / ||u||
        if adam:
            p.sub_(u * lr)
            continue
        w_norm = torch.linalg.vector_norm(p)
        if clamp_value is not None:
            w_norm = w_norm.clamp(max=clamp_value)
        (step,) = hoist(_ratio(w_norm, torch.linalg.vector_norm(u)) * lr)
        p.sub_(u * step)


def _lamb_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    m: list[torch.Tensor],
    v: list[torch.Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    clamp_value: float | None,
    bias_correction: bool,
    adam: bool,
    tmp: list[torch.Tensor] | None = None,
) -> None:
    # one batch of tensors sharing device, dtype and step count; tmp (kept scratch shaped
    # like the batch, or None to allocate) takes the direction
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
    bias1 = 1 - beta1**step if bias_correction else 1.0
    bias2 = 1 - beta2**step if bias_correction else 1.0
    # u = m̂/(√v̂ + ε) + λw = c·r with c = √bias2/bias1 and r = m/(√v + ε√bias2) + (λ/c)·w:
    # r is built in place in the sqrt buffer, and c cancels in the trust ratio ||w||/||u||
    c = bias2**0.5 / bias1
    if tmp is None:
        r = list(torch._foreach_sqrt(v))
    else:
        r = tmp
        for t, vi in zip(r, v, strict=True):
            torch.sqrt(vi, out=t)
    torch._foreach_add_(r, eps * bias2**0.5)
    for t, mi in zip(r, m, strict=True):
        torch.div(mi, t, out=t)
    if weight_decay != 0:
        torch._foreach_add_(r, params, alpha=weight_decay / c)
    if adam:
        torch._foreach_add_(params, r, alpha=-lr * c)
        return
    w_norms = _norms(params)
    r_norms = _norms(r)
    for p, ri, wn, rn in zip(params, r, w_norms, r_norms, strict=True):
        wn = wn if clamp_value is None else min(wn, clamp_value)
        # the step is lr * ratio * u = lr * (wn / (c * rn)) * c * r
        p.add_(ri, alpha=-lr * (wn / rn if wn > 0 and rn > 0 else c))


class LAMB(Optimizer):
    """LAMB: Adam's direction with a layer-wise trust ratio (You et al., 2019).

    For each tensor :math:`w` at its step :math:`t`:

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,\\quad
        u_t = \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t)}+\\epsilon} + \\lambda w

    .. math::
        w \\leftarrow w - \\eta_t\\, \\frac{\\min(\\lVert w\\rVert, c)}{\\lVert u_t\\rVert}\\, u_t

    with ratio 1 where :math:`\\lVert w\\rVert` or :math:`\\lVert u_t\\rVert` is 0. This is
    Algorithm 2 of the paper with the scaling function :math:`\\phi(z) = \\min(z, c)`
    (``clamp_value``; ``None`` for :math:`\\phi(z) = z`) and Adam's bias correction (as
    in NVIDIA's and most implementations; ``bias_correction=False`` drops it). The weight
    decay is decoupled: it enters the direction, not the moments. ``adam=True`` fixes
    the ratio at 1 (Adam with λw added to its direction) for comparisons.

    Args:
        params: parameters or param groups.
        lr: learning rate η ≥ 0, a float or a schedule.
        betas: (β1, β2), each in [0, 1).
        eps: ε ≥ 0 (default 1e-6).
        weight_decay: λ ≥ 0 (default 0.01), float or schedule.
        clamp_value: c > 0 clamping ‖w‖ in the trust ratio, or ``None``.
        bias_correction: divide the moments by :math:`1-\\beta^t`.
        adam: trust ratio fixed at 1.
        impl: "auto", "reference", "foreach", "fused" (bergab's CPU kernel: contiguous
            float32/float64 CPU tensors) or "compiled". "auto" is "fused" where it
            applies, else "foreach".

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = LAMB([w], lr=0.05, weight_decay=0.0)
        >>> for _ in range(300):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> bool(w.abs().max() < 0.1)
        True

    References:
        You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
        minutes", arXiv:1904.00962.
    """

    reach = "tensor"  # see bergab.optim.Optimizer.reach

    impls = ("reference", "foreach", "fused", "compiled")
    native = "layerwise"

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: Any = 0.01,
        clamp_value: float | None = 10.0,
        bias_correction: bool = True,
        adam: bool = False,
        *,
        impl: str = "auto",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "clamp_value": clamp_value,
            "bias_correction": bias_correction,
            "adam": adam,
        }
        self._scratch: dict[torch.dtype, torch.Tensor] = {}  # the fused path's direction
        super().__init__(params, defaults, impl=impl)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_real("lr", group["lr"], low=0.0)
        group["betas"] = check_betas(group["betas"])
        check_real("eps", group["eps"], low=0.0)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        if group["clamp_value"] is not None:
            check_real("clamp_value", group["clamp_value"], low=0.0, low_open=True)
        _check_flag("bias_correction", group["bias_correction"])
        _check_flag("adam", group["adam"])

    def _init_state(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _args(
        self, group: dict[str, Any], params: list[torch.Tensor]
    ) -> tuple[float, float, list[list[Any]], dict[str, Any]]:
        """lr, weight decay, ``[m, v, steps]`` (each step counted here) and the rest."""
        beta1, beta2 = group["betas"]
        hyper: dict[str, Any] = {
            "beta1": beta1,
            "beta2": beta2,
            "eps": group["eps"],
            "clamp_value": group["clamp_value"],
            "bias_correction": group["bias_correction"],
            "adam": group["adam"],
        }
        states = [self.state[p] for p in params]
        for s in states:
            s["step"] = int(s["step"]) + 1
        steps = [s["step"] for s in states]
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        lr = group["lr"] * group["lr_scale"]
        return lr, group["weight_decay"], [m, v, steps], hyper

    def _reference(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, lists, hyper = self._args(group, params)
        lamb_reference(params, grads, *lists, lr=lr, weight_decay=wd, **hyper)

    def _fused(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, lists, hyper = self._args(group, params)
        self._lamb_fused(params, grads, *lists, lr=lr, weight_decay=wd, **hyper)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        lr, wd, (m, v, steps), hyper = self._args(group, params)
        by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_key[(p.device, p.dtype, steps[i])].append(i)
        for (_, _, step), key_idx in by_key.items():
            for idx in _batches(key_idx, params):
                _lamb_foreach(
                    [params[i] for i in idx],
                    [grads[i] for i in idx],
                    [m[i] for i in idx],
                    [v[i] for i in idx],
                    tmp=scratch(self, [params[i] for i in idx]),
                    step=step,
                    lr=lr,
                    weight_decay=wd,
                    **hyper,
                )

    def _compiled(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> None:
        """lr, weight decay and steps as tensors, so nothing recompiles."""
        lr, wd, (m, v, steps), hyper = self._args(group, params)
        fn = self._compile(lamb_reference)
        like = params[0]
        step_ts = [torch.tensor(float(t), dtype=torch.float64, device=like.device) for t in steps]
        fn(
            params,
            grads,
            m,
            v,
            step_ts,
            lr=lr_tensor(lr, like),
            weight_decay=lr_tensor(wd, like) if wd != 0 else 0.0,
            **hyper,
        )

    def _lamb_fused(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        m: list[torch.Tensor],
        v: list[torch.Tensor],
        steps: list[int],
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        clamp_value: float | None,
        bias_correction: bool,
        adam: bool,
    ) -> None:
        lib = self._kernels([params, grads, m, v])
        biases: list[float] = []
        for t in steps:
            biases += (1 - beta1**t, 1 - beta2**t) if bias_correction else (1.0, 1.0)
        clamp = math.inf if clamp_value is None else clamp_value
        hp = LambHp(
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            clamp=clamp,
            adam=bool(adam),
        )
        # each thread keeps the direction of the tensor it is on in its slice of a kept
        # buffer (so the second pass over the tensor reads it from cache)
        threads = _native.threads_for(sum(p.numel() for p in params))
        largest = max(p.numel() for p in params)
        buf = self._scratch.get(params[0].dtype)
        if buf is None or buf.numel() < threads * largest:
            buf = torch.empty(threads * largest, dtype=params[0].dtype)
            self._scratch[params[0].dtype] = buf
        _native.call(
            lib,
            "lamb",
            [params, grads, m, v],
            hp,
            _native.doubles(biases),
            _native.zeros(len(params)),
            buf.data_ptr(),
            largest,
            nthreads=threads,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_scratch", {})
