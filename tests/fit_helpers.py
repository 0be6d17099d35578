"""Small shared fixtures for the fit tests: a float64 linear problem and its model."""

from __future__ import annotations

import torch
from torch import nn

mse = nn.functional.mse_loss


def data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` float64 inputs of 3 features and their sum as the target."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, x.sum(1, keepdim=True)


def model() -> nn.Module:
    """A float64 ``Linear(3, 1)`` with seed-0 weights."""
    torch.manual_seed(0)
    return nn.Linear(3, 1).double()
