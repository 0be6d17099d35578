"""The tensor operations of a Prodigy step (:mod:`bergab.optim.prodigy`).

Both halves of a step as functions of tensor lists: the accumulation (moments, the sum s
and the statistics of the D estimate) and the parameter update, as the readable reference
(public, re-exported by :mod:`bergab.optim.prodigy`) and as the ``foreach`` path. The
optimizer class, which keeps the shared estimate d and picks a path per step, and the
fused path's plumbing are in :mod:`bergab.optim.prodigy`.
"""

from __future__ import annotations

import torch

from bergab.optim._common import LOW_PRECISION, Scalar, TensorList

__all__ = ["prodigy_reference_accumulate", "prodigy_reference_step"]


def _axpy_(
    y: torch.Tensor, x: torch.Tensor, alpha: Scalar, x2: torch.Tensor | None = None
) -> torch.Tensor:
    """``y += alpha * x`` (``* x2`` too if given), with a float alpha (eager: the same
    rounding as ``add_(alpha=)``/``addcmul_(value=)``) or a 0-d tensor alpha (compiled)."""
    if isinstance(alpha, torch.Tensor):
        return y.add_((x if x2 is None else x * x2) * alpha)
    if x2 is not None:
        return y.addcmul_(x, x2, value=alpha)
    return y.add_(x, alpha=alpha)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a · b`` as a 0-d tensor: BLAS ``dot`` when eager (float32 for 16-bit inputs), a
    fusable float64 sum under ``torch.compile``. Every eager path calls it on the same
    tensors, so the paths agree to the last bit (the D numerator cancels: differences in
    it grow)."""
    if torch.compiler.is_compiling():
        return (a * b).sum(dtype=torch.float64)
    if a.dtype != b.dtype or a.dtype in LOW_PRECISION:
        dtype = torch.promote_types(a.dtype, b.dtype)
        dtype = torch.float32 if dtype in LOW_PRECISION else dtype
        a, b = a.to(dtype), b.to(dtype)
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _l1(s: torch.Tensor) -> torch.Tensor:
    """``‖s‖₁`` as a 0-d tensor (``abs().sum()``, faster on CPU than
    ``torch.linalg.vector_norm(s, 1)``: see ``benchmarks/RESULTS.md``; a fused float64
    sum under ``torch.compile``)."""
    if torch.compiler.is_compiling():
        return s.abs().sum(dtype=torch.float64)
    return s.abs().sum()


def prodigy_reference_accumulate(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    p0s: list[torch.Tensor],
    ss: list[torch.Tensor],
    exp_avgs: list[torch.Tensor] | None,
    exp_avg_sqs: list[torch.Tensor],
    *,
    d: Scalar,
    d0: float,
    dlr: Scalar,
    beta1: float,
    beta2: float,
    beta3: float,
    weight_decay: float,
    decouple: bool,
    safeguard_warmup: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """First half of a Prodigy step: moments, the sum s, and the D-estimate statistics.

    .. math::
        g &\\leftarrow g + \\lambda x \\;(\\text{coupled decay}),\\qquad
        m \\leftarrow \\beta_1 m + (1-\\beta_1) d\\, g,\\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) d^2 g^2 \\\\
        s &\\leftarrow \\beta_3 s + \\tfrac{d}{d_0}\\,\\delta\\, g
        \\quad(\\delta = d\\eta \\text{, or } d \\text{ with safeguard warmup})

    Args:
        params, grads: parameters x and their gradients g.
        p0s: the initial parameters :math:`x_0`.
        ss: the weighted gradient sums s.
        exp_avgs: first moments m (``None`` when β1 = 0); exp_avg_sqs: second moments v.
        d: the current estimate :math:`d_k`; d0: the initial :math:`d_0`.
        dlr: :math:`d_k\\eta_k` (bias correction included) for these parameters.
        beta1, beta2, beta3, weight_decay, decouple, safeguard_warmup: hyperparameters.

    Returns:
        ``(dots, norms)``: float64 tensors with one entry per tensor,
        :math:`\\langle g, x_0 - x\\rangle` (the caller adds
        :math:`\\tfrac{d}{d_0} d\\eta` times each to the numerator, in order, as
        ``prodigyopt`` does) and :math:`\\|s\\|_1` after the update of s.

    Example:
        >>> x, g = [torch.tensor([1.0])], [torch.tensor([2.0])]
        >>> x0, s = [torch.tensor([1.5])], [torch.zeros(1)]
        >>> m, v = [torch.zeros(1)], [torch.zeros(1)]
        >>> dots, norms = prodigy_reference_accumulate(x, g, x0, s, m, v, d=1.0, d0=1.0,
        ...     dlr=1.0, beta1=0.9, beta2=0.99, beta3=0.9, weight_decay=0.0, decouple=True,
        ...     safeguard_warmup=False)
        >>> dots.tolist(), norms.tolist(), round(m[0].item(), 6)
        ([1.0], [2.0], 0.2)
    """
    dots, norms = [], []
    for i, (x, g, x0, s, v) in enumerate(zip(params, grads, p0s, ss, exp_avg_sqs, strict=True)):
        if weight_decay != 0 and not decouple:
            g = g + weight_decay * x
        dots.append(_dot(g, x0 - x))
        if exp_avgs is not None:
            _axpy_(exp_avgs[i].mul_(beta1), g, d * (1 - beta1))
        _axpy_(v.mul_(beta2), g, d * d * (1 - beta2), g)
        _axpy_(s.mul_(beta3), g, d / d0 * (d if safeguard_warmup else dlr))
        norms.append(_l1(s))
    return torch.stack(dots).double(), torch.stack(norms).double()


def prodigy_reference_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor] | None,
    exp_avg_sqs: list[torch.Tensor],
    *,
    dlr: Scalar,
    d_new: Scalar,
    eps: float,
    weight_decay: float,
    decouple: bool,
) -> None:
    """Second half of a Prodigy step: move the parameters (in place).

    .. math::
        x \\leftarrow x\\,(1 - \\lambda\\, d_k\\eta) \\;(\\text{decoupled decay}),\\qquad
        x \\leftarrow x - d_k\\eta\\,\\frac{m}{\\sqrt v + d_{k+1}\\epsilon}
        \\quad\\Big(\\beta_1 = 0:\\;
            x - d_k\\eta\\, d_{k+1} \\frac{g}{\\sqrt v + d_{k+1}\\epsilon}\\Big)

    Args:
        params, grads: parameters and gradients (the gradient is used only when β1 = 0;
            with coupled decay it is recomputed as g + λx).
        exp_avgs: first moments (``None`` when β1 = 0); exp_avg_sqs: second moments.
        dlr: :math:`d_k\\eta` (bias correction included); d_new: :math:`d_{k+1}`.
        eps, weight_decay, decouple: hyperparameters.

    Example:
        >>> x, m, v = [torch.tensor([1.0])], [torch.tensor([0.5])], [torch.tensor([0.25])]
        >>> prodigy_reference_step(x, [torch.zeros(1)], m, v, dlr=0.1, d_new=1.0, eps=0.0,
        ...                        weight_decay=0.0, decouple=True)
        >>> round(x[0].item(), 6)
        0.9
    """
    for i, (x, g, v) in enumerate(zip(params, grads, exp_avg_sqs, strict=True)):
        low = v.dtype in LOW_PRECISION
        denom = (v.float() if low else v).sqrt() + d_new * eps
        if weight_decay != 0 and decouple:
            _axpy_(x, x, -weight_decay * dlr)
        if exp_avgs is not None:
            num, scale = exp_avgs[i], -dlr
        else:
            if weight_decay != 0 and not decouple:
                g = g + weight_decay * x
            num, scale = g, -dlr * d_new
        if low or isinstance(scale, torch.Tensor):
            x.add_((num / denom * scale).to(x.dtype))
        else:
            x.addcdiv_(num, denom, value=scale)


def _prodigy_foreach_accumulate(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    p0s: list[torch.Tensor],
    ss: list[torch.Tensor],
    exp_avgs: list[torch.Tensor] | None,
    exp_avg_sqs: list[torch.Tensor],
    tmp: list[torch.Tensor],
    tmp_grad: list[torch.Tensor],
    *,
    d: float,
    d0: float,
    dlr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    weight_decay: float,
    decouple: bool,
    safeguard_warmup: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    # tmp (the state's dtype) takes x0 - x and then |s|; tmp_grad g + λx (coupled decay)
    g: TensorList = grads
    if weight_decay != 0 and not decouple:
        for t, gi, x in zip(tmp_grad, grads, params, strict=True):
            torch.add(gi, x, alpha=weight_decay, out=t)
        g = tmp_grad
    dots = [
        _dot(gi, torch.sub(x0, x, out=t)) for t, gi, x0, x in zip(tmp, g, p0s, params, strict=True)
    ]
    if exp_avgs is not None:
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, g, alpha=d * (1 - beta1))
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, g, g, value=d * d * (1 - beta2))
    torch._foreach_mul_(ss, beta3)
    torch._foreach_add_(ss, g, alpha=d / d0 * (d if safeguard_warmup else dlr))
    norms = [torch.abs(si, out=t).sum() for t, si in zip(tmp, ss, strict=True)]
    return dots, norms


def _prodigy_foreach_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor] | None,
    exp_avg_sqs: list[torch.Tensor],
    tmp: list[torch.Tensor],
    tmp_grad: list[torch.Tensor],
    *,
    dlr: float,
    d_new: float,
    eps: float,
    weight_decay: float,
    decouple: bool,
) -> None:
    # tmp (the state's dtype) takes the denominator, tmp_grad g + λx (β1 = 0, coupled decay)
    for t, v in zip(tmp, exp_avg_sqs, strict=True):
        torch.sqrt(v, out=t)
    torch._foreach_add_(tmp, d_new * eps)
    num: TensorList = grads
    if exp_avgs is not None:
        num, scale = exp_avgs, -dlr
    else:
        scale = -dlr * d_new
        if weight_decay != 0 and not decouple:
            for t, g, x in zip(tmp_grad, grads, params, strict=True):
                torch.add(g, x, alpha=weight_decay, out=t)
            num = tmp_grad
    if weight_decay != 0 and decouple:
        torch._foreach_add_(params, params, alpha=-weight_decay * dlr)
    torch._foreach_addcdiv_(params, num, tmp, value=scale)
