"""Learning-rate schedules (placeholder until the schedules module lands)."""

from __future__ import annotations

__all__: list[str] = []
