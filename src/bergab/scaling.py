"""Scaling rules: how the learning rate (and warmup) should change with the batch size.

Rules of thumb from the literature, each with its source:

- **Linear rule** for SGD (Goyal et al. 2017): multiply the batch size by ``k``, multiply
  the lr by ``k``, and warm up over the first epochs.
- **Square-root rule** (Krizhevsky 2014; Hoffer et al. 2017): multiply the lr by ``√k``,
  which keeps the variance of the update the same.
- **Adam family** (Malladi et al. 2022): the square-root rule for the lr, with ``1 − β``
  scaled by ``k`` and ``ε`` divided by ``√k`` (:func:`scale_adam`).

They hold up to a problem-dependent critical batch size, past which larger batches stop
paying off; check the scaled lr with :func:`bergab.lr_find` when it matters.

Example:
    >>> from bergab import scaling
    >>> scaling.scale_lr(0.1, base_batch_size=256, batch_size=1024)
    0.4
    >>> scaling.scale_lr(1e-3, 256, 1024, rule="sqrt")
    0.002
    >>> scaling.warmup_steps_for(256, 8192, dataset_size=1_281_167)
    782
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bergab._validate import check_betas, check_choice, check_int, check_real

__all__ = ["RULES", "adam_warmup_steps", "scale_adam", "scale_lr", "warmup_steps_for"]

#: The rules :func:`scale_lr` knows.
RULES = ("linear", "sqrt")


def _ratio(base_batch_size: Any, batch_size: Any) -> float:
    base = check_int("base_batch_size", base_batch_size, low=1)
    new = check_int("batch_size", batch_size, low=1)
    return new / base


def scale_lr(lr: float, base_batch_size: int, batch_size: int, rule: str = "linear") -> float:
    """The learning rate for ``batch_size``, given one that works at ``base_batch_size``.

    With ``k = batch_size / base_batch_size``:

    .. math:: η' = k · η \\quad (\\text{linear}), \\qquad η' = \\sqrt{k} · η \\quad
              (\\text{sqrt})

    - ``"linear"``: Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet
      in 1 Hour" (arXiv:1706.02677), for SGD with momentum, together with a gradual
      warmup (:func:`warmup_steps_for`). It matches ``k`` small-batch steps with one large
      step as long as the gradient changes little over them.
    - ``"sqrt"``: Krizhevsky 2014, "One weird trick for parallelizing convolutional neural
      networks" (arXiv:1404.5997), and Hoffer et al. 2017, "Train longer, generalize
      better" (arXiv:1705.08741): keeps the covariance of the update constant. It is
      the rule for Adam-type optimizers (Malladi et al. 2022, arXiv:2205.10287; see
      :func:`scale_adam` for their matching β and ε).

    Args:
        lr: the learning rate tuned at ``base_batch_size``, > 0.
        base_batch_size: the batch size ``lr`` was tuned at, >= 1.
        batch_size: the new batch size, >= 1.
        rule: ``"linear"`` or ``"sqrt"``.

    Returns:
        The scaled learning rate.

    Example:
        >>> scale_lr(0.1, 256, 64)
        0.025
        >>> round(scale_lr(3e-4, 32, 512, rule="sqrt"), 10)
        0.0012
    """
    lr = check_real("lr", lr, low=0.0, low_open=True)
    k = _ratio(base_batch_size, batch_size)
    check_choice("rule", rule, RULES)
    return lr * k if rule == "linear" else lr * math.sqrt(k)


def warmup_steps_for(
    base_batch_size: int, batch_size: int, dataset_size: int, *, epochs: float = 5.0
) -> int:
    """Warmup length for a batch size scaled up by the linear rule (Goyal et al. 2017).

    Goyal et al. (arXiv:1706.02677, §2.2) ramp the lr linearly from the base lr ``η`` to
    the scaled ``k·η`` over the first 5 epochs when ``k > 1``; without it, the large lr
    diverges or hurts accuracy early in training. Smaller scale-ups need none:

    .. math:: w = \\lceil \\text{epochs} · \\text{dataset\\_size} / \\text{batch\\_size}
              \\rceil \\ (k > 1), \\qquad w = 0 \\ (k ≤ 1)

    Use it with :func:`bergab.schedules.warmup` and ``start_factor = 1/k`` to start at
    the base lr, as the paper does.

    Args:
        base_batch_size: the batch size the lr was tuned at, >= 1.
        batch_size: the new batch size, >= 1.
        dataset_size: training examples per epoch, >= 1.
        epochs: warmup length in epochs, >= 0 (the paper's 5 by default).

    Returns:
        The number of warmup steps.

    Example:
        >>> warmup_steps_for(256, 1024, dataset_size=50_000)
        245
        >>> warmup_steps_for(256, 256, dataset_size=50_000)
        0
    """
    k = _ratio(base_batch_size, batch_size)
    n = check_int("dataset_size", dataset_size, low=1)
    epochs = check_real("epochs", epochs, low=0.0)
    if k <= 1:
        return 0
    return math.ceil(epochs * n / check_int("batch_size", batch_size, low=1) - 1e-9)


def adam_warmup_steps(beta2: float = 0.999) -> int:
    """The "untuned" warmup length for Adam: ``2 / (1 − β₂)`` steps, linear.

    Ma & Yarats 2019, "On the adequacy of untuned warmup for adaptive optimization"
    (arXiv:1910.04209): Adam's second-moment estimate is unreliable for roughly the first
    ``2/(1−β₂)`` steps, and a linear warmup over that many steps does as well as RAdam's
    rectification. Combine with :func:`bergab.schedules.warmup`.

    Args:
        beta2: Adam's second-moment decay, in (0, 1).

    Returns:
        ``ceil(2 / (1 - beta2))`` (2000 for the default β₂ = 0.999).

    Example:
        >>> adam_warmup_steps(0.999), adam_warmup_steps(0.99)
        (2000, 200)
    """
    beta2 = check_real("beta2", beta2, low=0.0, high=1.0, low_open=True, high_open=True)
    return math.ceil(2.0 / (1.0 - beta2) - 1e-9)


def scale_adam(
    lr: float,
    betas: Sequence[float],
    eps: float,
    base_batch_size: int,
    batch_size: int,
) -> dict[str, Any]:
    """Adam's hyperparameters for a new batch size: the square-root scaling rule.

    Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"
    (NeurIPS 2022, arXiv:2205.10287), Definition 4.2: with ``κ = batch_size /
    base_batch_size``,

    .. math:: η' = \\sqrt{κ}\\,η, \\quad 1 − β_1' = κ (1 − β_1), \\quad
              1 − β_2' = κ (1 − β_2), \\quad ε' = ε / \\sqrt{κ}

    keeps the stochastic differential equation that Adam approximates the same, so
    training curves match when plotted against examples seen. Growing the batch needs
    ``κ (1 − β) < 1`` for both betas.

    Args:
        lr: the learning rate at ``base_batch_size``, > 0.
        betas: ``(β1, β2)`` at ``base_batch_size``, each in [0, 1).
        eps: ε at ``base_batch_size``, >= 0.
        base_batch_size: the batch size the hyperparameters were tuned at, >= 1.
        batch_size: the new batch size, >= 1.

    Returns:
        ``{"lr": ..., "betas": (β1', β2'), "eps": ...}``, ready for ``**kwargs``.

    Example:
        >>> h = scale_adam(1e-3, (0.9, 0.999), 1e-8, base_batch_size=64, batch_size=256)
        >>> round(h["lr"], 12), tuple(round(b, 12) for b in h["betas"]), h["eps"]
        (0.002, (0.6, 0.996), 5e-09)
    """
    lr = check_real("lr", lr, low=0.0, low_open=True)
    b1, b2 = check_betas(betas)
    eps = check_real("eps", eps, low=0.0)
    k = _ratio(base_batch_size, batch_size)
    new_betas = []
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        one_minus = k * (1.0 - b)
        if one_minus >= 1.0:
            raise ValueError(
                f"{name}={b} cannot be scaled by batch ratio {k:g}: k * (1 - beta) must be "
                f"< 1, got {one_minus:g}; scale the batch by less than {1 / (1 - b):g}x"
            )
        new_betas.append(1.0 - one_minus)
    return {"lr": lr * math.sqrt(k), "betas": tuple(new_betas), "eps": eps / math.sqrt(k)}
