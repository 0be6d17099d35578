"""The tensor operations of hypergradient descent (:mod:`bergab.optim.hypergradient`).

The statistics :math:`[\\sum g\\cdot u_{t-1}, \\sum\\|g\\|^2, \\sum\\|u_{t-1}\\|^2]` that α's
update reads, and the parameter steps taken with the adapted α, as functions of tensor
lists: the readable reference paths (public, re-exported by
:mod:`bergab.optim.hypergradient`) and the ``foreach`` paths. The optimizer classes,
which keep α and the state and pick a path per step, are in
:mod:`bergab.optim.hypergradient`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bergab.optim._common import LOW_PRECISION, Scalar, TensorList

__all__ = [
    "adam_hd_reference",
    "adam_hd_statistics",
    "sgd_hd_reference",
    "sgd_hd_statistics",
]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a · b`` of two flat tensors (under ``torch.compile`` a fusable sum, not a BLAS call)."""
    if torch.compiler.is_compiling():
        return (a * b).sum()
    return torch.dot(a, b)


def _stats(
    dots: list[torch.Tensor], gsq: list[torch.Tensor], usq: list[torch.Tensor]
) -> torch.Tensor:
    """``[Σ dot, Σ ‖g‖², Σ ‖u‖²]`` as one float64 tensor (zeros when the lists are empty)."""
    if not dots:
        return torch.zeros(3, dtype=torch.float64)
    return torch.stack([torch.stack(t).double().sum() for t in (dots, gsq, usq)])


# ---------------------------------------------------------------------------- SGD
def sgd_hd_statistics(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    prev_directions: list[torch.Tensor],
    *,
    weight_decay: float,
    norms: bool = True,
) -> torch.Tensor:
    """The hypergradient statistics of SGD-HD for these tensors.

    Args:
        params, grads: parameters θ and gradients.
        prev_directions: :math:`u_{t-1}`, the previous step's directions.
        weight_decay: λ (the gradient is :math:`g = \\nabla f + \\lambda\\theta`).
        norms: also compute the norms (only the multiplicative rule needs them; without,
            g and u are read once, by one dot product, and the norms are returned as 0).

    Returns:
        float64 tensor ``[Σ g·u, Σ ‖g‖², Σ ‖u‖²]``.

    Example:
        >>> sgd_hd_statistics([torch.zeros(2)], [torch.tensor([1.0, 2.0])],
        ...                   [torch.tensor([3.0, 1.0])], weight_decay=0.0).tolist()
        [5.0, 5.0, 10.0]
        >>> sgd_hd_statistics([torch.zeros(2)], [torch.tensor([1.0, 2.0])],
        ...                   [torch.tensor([3.0, 1.0])], weight_decay=0.0, norms=False).tolist()
        [5.0, 0.0, 0.0]
    """
    dots, gsq, usq = [], [], []
    for p, g, u in zip(params, grads, prev_directions, strict=True):
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        gf, uf = g.reshape(-1), u.reshape(-1)
        dots.append(_dot(gf, uf))
        if norms:
            gsq.append(_dot(gf, gf))
            usq.append(_dot(uf, uf))
    if not norms:
        gsq = usq = [torch.zeros((), dtype=torch.float64)] * len(dots)
    return _stats(dots, gsq, usq)


def sgd_hd_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor | None],
    directions: list[torch.Tensor | None],
    *,
    lr: Scalar,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """The SGD step with the (already adapted) learning rate α; records the direction.

    .. math::
        g = \\nabla f + \\lambda\\theta,\\quad b \\leftarrow \\mu b + g,\\quad
        u = g \\;|\\; b \\;|\\; g + \\mu b \\;(\\text{Nesterov}),\\quad
        \\theta \\leftarrow \\theta - \\alpha u

    ``momentum_buffers[i]`` is created as ``g`` on the first step (torch's convention) and
    ``directions[i]`` receives u (for plain and Nesterov SGD; heavy-ball's u is the buffer
    itself, pass ``None`` entries to skip the copy).

    Example:
        >>> p, dirs = [torch.tensor([1.0])], [torch.zeros(1)]
        >>> sgd_hd_reference(p, [torch.tensor([2.0])], [None], dirs, lr=0.1, momentum=0.0,
        ...                  nesterov=False, weight_decay=0.0)
        >>> round(p[0].item(), 6), dirs[0].item()
        (0.8, 2.0)
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        u = g
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = g.detach().clone()
            else:
                buf.mul_(momentum).add_(g)
            u = g.add(buf, alpha=momentum) if nesterov else buf
        d = directions[i]
        if d is not None:
            d.copy_(u)
        if isinstance(lr, torch.Tensor):
            p.sub_(u * lr)
        else:
            p.add_(u, alpha=-lr)


def _sgd_hd_foreach(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    dirs: list[torch.Tensor],
    tmp: list[torch.Tensor],
    tmp2: list[torch.Tensor],
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    # every buffer exists (first momentum steps go through the reference loop); tmp takes
    # g + λx and tmp2 Nesterov's g + μb, so nothing is allocated
    g: TensorList = grads
    if weight_decay != 0:
        for t, gi, p in zip(tmp, grads, params, strict=True):
            torch.add(gi, p, alpha=weight_decay, out=t)
        g = tmp
    u: TensorList = g
    if momentum != 0:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, g)
        u = bufs
        if nesterov:
            for t, gi, b in zip(tmp2, g, bufs, strict=True):
                torch.add(gi, b, alpha=momentum, out=t)
            u = tmp2
    if dirs:
        torch._foreach_copy_(dirs, u)
    torch._foreach_add_(params, u, alpha=-lr)


# ---------------------------------------------------------------------------- Adam
def _adam_direction(
    m: torch.Tensor, v: torch.Tensor, bias1: Scalar, bias2: Scalar, eps: float
) -> torch.Tensor:
    """Adam's direction :math:`\\hat m/(\\sqrt{\\hat v}+\\epsilon)` (hats: divided by b1, b2)."""
    vv = v.float() if v.dtype in LOW_PRECISION else v
    return (m / bias1) / ((vv / bias2).sqrt() + eps)


def adam_hd_statistics(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    bias_corrections: Sequence[tuple[Scalar, Scalar]],
    *,
    eps: float,
    weight_decay: float,
) -> torch.Tensor:
    """The hypergradient statistics of Adam-HD, from the moments of the previous step.

    .. math::
        u_{t-1} = \\frac{m_{t-1}/(1-\\beta_1^{s})}{\\sqrt{v_{t-1}/(1-\\beta_2^{s})}+\\epsilon}

    with s the tensor's step count at the previous step.

    Args:
        params, grads: parameters and gradients (g = ∇f + λθ).
        exp_avgs, exp_avg_sqs: the moments after the previous step.
        bias_corrections: per tensor :math:`(1-\\beta_1^s, 1-\\beta_2^s)`.
        eps, weight_decay: ε and λ.

    Returns:
        float64 tensor ``[Σ g·u, Σ ‖g‖², Σ ‖u‖²]``.

    Example:
        >>> m, v = [torch.tensor([0.1])], [torch.tensor([0.001])]
        >>> s = adam_hd_statistics([torch.zeros(1)], [torch.tensor([2.0])], m, v,
        ...                        [(0.1, 0.001)], eps=0.0, weight_decay=0.0)
        >>> [round(x, 6) for x in s.tolist()]  # u = 1: h = g·u = 2
        [2.0, 4.0, 1.0]
    """
    dots, gsq, usq = [], [], []
    for p, g, m, v, (b1, b2) in zip(
        params, grads, exp_avgs, exp_avg_sqs, bias_corrections, strict=True
    ):
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        u = _adam_direction(m, v, b1, b2, eps).to(g.dtype).reshape(-1)
        gf = g.reshape(-1)
        dots.append(_dot(gf, u))
        gsq.append(_dot(gf, gf))
        usq.append(_dot(u, u))
    return _stats(dots, gsq, usq)


def adam_hd_reference(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    bias_corrections: Sequence[tuple[Scalar, Scalar]],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """The Adam step with the (already adapted) learning rate α (moments updated in place).

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g,\\quad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2,\\quad
        \\theta \\leftarrow \\theta - \\alpha\\,
            \\frac{m/(1-\\beta_1^{s})}{\\sqrt{v/(1-\\beta_2^{s})}+\\epsilon}

    with s the tensor's step count after this step and :math:`g = \\nabla f + \\lambda\\theta`.

    Args:
        bias_corrections: per tensor :math:`(1-\\beta_1^s, 1-\\beta_2^s)` for this step.

    Example:
        >>> p, m, v = [torch.tensor([1.0])], [torch.zeros(1)], [torch.zeros(1)]
        >>> adam_hd_reference(p, [torch.tensor([0.5])], m, v, [(0.1, 0.001)], lr=0.1,
        ...                   beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
        >>> round(p[0].item(), 6)  # the first Adam step moves by lr
        0.9
    """
    for p, g, m, v, (b1, b2) in zip(
        params, grads, exp_avgs, exp_avg_sqs, bias_corrections, strict=True
    ):
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.sub_((_adam_direction(m, v, b1, b2, eps) * lr).to(p.dtype))


def _adam_hd_foreach_moments(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    m: list[torch.Tensor],
    v: list[torch.Tensor],
    tmp_g: list[torch.Tensor],
    tmp_u: list[torch.Tensor],
    *,
    prev_bias: tuple[float, float] | None,
    norms: bool,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> list[torch.Tensor]:
    """Pass 1 over one cache-sized batch: the statistics against the previous direction,
    then the new moments (they do not need α). Returns per tensor a float64
    ``[g·u, ‖g‖², ‖u‖²]`` (only ``[g·u]`` without ``norms``; nothing without a previous
    direction). tmp_g takes g + λx, tmp_u the direction."""
    g: TensorList = grads
    if weight_decay != 0:
        for t, gi, p in zip(tmp_g, grads, params, strict=True):
            torch.add(gi, p, alpha=weight_decay, out=t)
        g = tmp_g
    stats: list[torch.Tensor] = []
    if prev_bias is not None:
        # u = c·r (see _foreach_direction): the dots take r, c is applied in float64
        r, c = _foreach_direction(m, v, *prev_bias, eps, tmp_u)
        scale = torch.tensor([c, 1.0, c * c] if norms else [c], dtype=torch.float64)
        for gi, ri in zip(g, r, strict=True):
            gf, rf = gi.reshape(-1).to(ri.dtype), ri.reshape(-1)
            dots = [_dot(gf, rf), _dot(gf, gf), _dot(rf, rf)] if norms else [_dot(gf, rf)]
            stats.append(torch.stack(dots).double() * scale)
    torch._foreach_lerp_(m, g, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, g, g, value=1 - beta2)
    return stats


def _foreach_denominator(
    v: list[torch.Tensor], b2: float, eps: float, out: list[torch.Tensor]
) -> list[torch.Tensor]:
    """``√v + ε√b2`` into ``out`` (float32 for 16-bit moments): Adam's denominator scaled by
    √b2, since (m/b1)/(√(v/b2) + ε) = (√b2/b1) · m/(√v + ε√b2)."""
    for t, vi in zip(out, v, strict=True):
        torch.sqrt(vi, out=t)
    torch._foreach_add_(out, eps * math.sqrt(b2))
    return out


def _foreach_direction(
    m: list[torch.Tensor],
    v: list[torch.Tensor],
    b1: float,
    b2: float,
    eps: float,
    out: list[torch.Tensor],
) -> tuple[list[torch.Tensor], float]:
    """Adam's direction u = c·r as ``(r, c)``: r = m/(√v + ε√b2) in ``out``, c = √b2/b1
    (three passes over cached operands; the scalar c is applied by the caller)."""
    den = _foreach_denominator(v, b2, eps, out)
    for t, mi in zip(den, m, strict=True):
        torch.div(mi, t, out=t)
    return out, math.sqrt(b2) / b1
