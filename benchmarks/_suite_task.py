"""``bergab.tasks.suite``'s tasks as run-config tasks: ``task.name = "_suite_task:make"``
with ``suite_name``, for the benchmarks that train run configs (``benchmarks/pbt.py``)."""

from __future__ import annotations

from bergab.tasks import Task, suite


def make(suite_name: str, seed: int = 0) -> Task:
    """The suite task ``suite_name`` built with ``seed``."""
    return suite.get(suite_name).build(seed)
