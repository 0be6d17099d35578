"""Hyperparameter search on Optuna: :func:`tune`, its search spaces and storages, and
population-based training (:func:`pbt`, also ``bergab.tune.pbt``) on the same storages.

``bergab.tune(config, space, sampler="tpe", pruner="asha", trials=50)`` searches the
hyperparameters of a run config (or a function) and returns a :class:`TuneResult`.
Optuna is imported only when a search runs (``pip install 'bergab[tune]'``).

Example:
    >>> import tempfile
    >>> from bergab import tuning
    >>> res = tuning.tune(lambda p, report: (p["x"] - 1) ** 2, {"x": {"uniform": [-3, 3]}},
    ...                   sampler="random", trials=10, out=tempfile.mkdtemp())
    >>> res.best_value < 1.0
    True
"""

from __future__ import annotations

from bergab.tuning._pbt import PBTResult, pbt
from bergab.tuning._tune import PRUNERS, SAMPLERS, TuneResult, tune

#: ``bergab.tune.pbt``: population-based training, beside the search it shares storages with
tune.pbt = pbt  # type: ignore[attr-defined]

__all__ = ["PRUNERS", "SAMPLERS", "PBTResult", "TuneResult", "pbt", "tune"]
