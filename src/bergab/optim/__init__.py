"""Optimizers (placeholder until the optimizer family lands)."""

from __future__ import annotations

__all__: list[str] = []
