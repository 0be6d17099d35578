"""What the run layer checks of a config before it makes a run directory.

A mistake found after ``runs/x`` exists once left a run marked "running" that blocked the
corrected config. So :mod:`bergab.run` checks all it can first, with the config and the
built task: the options fit will get (:func:`fit_arguments`, through fit's own
:class:`~bergab.training.FitOptions`), that a monitored quantity is logged
(:func:`check_monitor`), and, for ``bergab resume --set``, that the change is one the
run's checkpoint can continue (:func:`check_resume_changes`). Every error is a
:class:`bergab.config.ConfigError` naming the key.

Example:
    >>> from bergab import config
    >>> old = config.validate({"task": {"name": "linreg"}, "fit": {"max_steps": 5}})
    >>> new = config.validate({"task": {"name": "linreg"}, "fit": {"max_steps": 50}})
    >>> check_resume_changes(old, new)  # raising max_steps trains a run on: allowed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bergab._config_errors import keyed, nested_keys, show
from bergab.config import ConfigError, RunConfig, batch_size

__all__ = ["RESUMABLE_KEYS", "check_monitor", "check_resume_changes", "fit_arguments"]


#: The keys ``bergab resume --set`` may change (a key, or a table and everything in it):
#: they change how the rest of the run goes without making what the checkpoint holds
#: (the model's shape, the optimizer's state, the random state and the position in the
#: data order) wrong for it. Any other change is refused: it would be ignored (the
#: checkpoint's optimizer hyperparameters win), fail deep inside fit, or silently train
#: something else than the config says.
RESUMABLE_KEYS = (
    "fit.max_steps",
    "fit.epochs",
    "fit.progress",
    "fit.device",
    "fit.precision",
    "fit.clip_norm",
    "fit.clip_value",
    "fit.val_every",
    "fit.checkpoint_every",
    "fit.keep_last",
    "fit.nan_policy",
    "fit.tol",
    "fit.early_stopping",
    "fit.train_metrics",
    # the checkpoint is whole: it resumes with another number of processes, with or
    # without ZeRO (one written under FSDP resumes under FSDP only, which fit says)
    "fit.strategy",
    "fit.shard_optimizer",
    "fit.lr_scaling",
    "fit.lr_scaling_warmup",
    "schedule",
    "output.plots",
    "output.keep_best",
)

_NOT_RESUMABLE = {
    "task": "the checkpoint holds this task's model, and its data were split by this table",
    "optimizer": "the checkpoint holds this optimizer's state, made with these arguments",
    "fit": "the checkpoint's random state and position in the data order depend on it",
    "lr_find": "the range test ran when the run started; a resume does not run it again",
    "output": "a resume continues in its own run directory",
}


def check_resume_changes(old: RunConfig, new: RunConfig) -> None:
    """Refuse a resumed config that changes what the run's checkpoint cannot continue.

    Args:
        old: the run's own config (its ``config.toml``).
        new: that config with the resume's ``--set`` overrides applied.

    Raises:
        ConfigError: naming the first changed key outside :data:`RESUMABLE_KEYS`.

    Example:
        >>> from bergab.config import validate
        >>> old = validate({"task": {"name": "linreg"}, "optimizer": {"name": "adamw"}})
        >>> new = validate({"task": {"name": "linreg"}, "optimizer": {"name": "sgd"}})
        >>> check_resume_changes(old, new)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: optimizer.name: cannot change when resuming ("adamw" -> \
"sgd"): the checkpoint holds this optimizer's state, made with these arguments; ...
    """
    before, after = dict(nested_keys(old.to_dict())), dict(nested_keys(new.to_dict()))
    missing = object()
    for key in [*before, *(k for k in after if k not in before)]:
        was, now = before.get(key, missing), after.get(key, missing)
        if was == now or any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS):
            continue
        shown = " -> ".join("(not set)" if v is missing else show(v) for v in (was, now))
        raise ConfigError(
            key,
            f"cannot change when resuming ({shown}): {_NOT_RESUMABLE[key.split('.')[0]]}; "
            "start a new run for it (bergab train CONFIG --out NEW_DIR)",
        )


def _logged_names(cfg: RunConfig, task: Any) -> list[str]:
    """The quantities fit logs for this config and task, which a monitor may name."""
    metrics = list(getattr(task, "metrics", None) or {})
    names = ["loss"]
    if getattr(task, "val", None) is not None:
        names += ["val_loss", *(f"val_{m}" for m in metrics)]
    if getattr(cfg.fit, "train_metrics", False):
        names += [f"train_{m}" for m in metrics]
    return names


def check_monitor(
    cfg: RunConfig, task: Any, monitor: str, key: str, *, more_logged: bool = False
) -> None:
    """Check that fit will log ``monitor`` for this config's task (before any training).

    Args:
        cfg: the config.
        task: its built task.
        monitor: the name, e.g. ``"val_accuracy"``.
        key: the key path to name in the error.
        more_logged: extra callbacks may log more quantities (only ``val_*`` names are
            then checked).

    Raises:
        ConfigError: ``<key>: "val_acc" is not logged by task "digits" (allowed: ...)``.

    Example:
        >>> from bergab.config import build_task, validate
        >>> cfg = validate({"task": {"name": "linreg"}})
        >>> check_monitor(cfg, build_task(cfg), "val_los", "fit.early_stopping.monitor")
        Traceback (most recent call last):
        ...
        bergab.config.ConfigError: fit.early_stopping.monitor: "val_los" is not logged by \
task "linreg" (allowed: "loss", "val_loss", "val_mse")
    """
    names = _logged_names(cfg, task)
    if monitor in names or (more_logged and not monitor.startswith("val_")):
        return
    allowed = ", ".join(show(n) for n in names)
    raise ConfigError(
        key, f"{show(monitor)} is not logged by task {show(task.name)} (allowed: {allowed})"
    )


def fit_arguments(cfg: RunConfig, task: Any, *, more_logged: bool = False) -> dict[str, Any]:
    """The keyword arguments of :func:`bergab.fit` that ``[fit]`` and the task give, checked.

    ``[fit]``'s keys, the batch size (the task's when the config sets none), the task's
    ``val``, ``metrics``, and ``early_stopping`` as an
    :class:`~bergab.training.EarlyStopping` (its ``mode = "auto"`` resolved). They are
    checked by :class:`~bergab.training.FitOptions` here, before a run directory is made,
    so a mistake that only fit would find is still a :class:`ConfigError` with its key.

    Args:
        cfg: the config.
        task: its built task.
        more_logged: extra callbacks may log more quantities for a monitor to name.

    Raises:
        ConfigError: naming the ``fit.`` key.

    Example:
        >>> from bergab.config import build_task, validate
        >>> cfg = validate({"task": {"name": "digits"}, "fit": {"early_stopping": {
        ...     "monitor": "val_accuracy"}}})
        >>> kw = fit_arguments(cfg, build_task(cfg))
        >>> kw["batch_size"], kw["early_stopping"].mode
        (64, 'max')
    """
    from bergab.training import EarlyStopping, FitOptions

    options = cfg.fit.model_dump(exclude={"early_stopping"})
    options["batch_size"] = batch_size(cfg, task)
    options["val_data"] = getattr(task, "val", None)
    options["metrics"] = getattr(task, "metrics", None)
    es = cfg.fit.early_stopping
    options["early_stopping"] = None
    if es is not None:
        key = "fit.early_stopping"
        check_monitor(cfg, task, es.monitor, f"{key}.monitor", more_logged=more_logged)
        try:
            options["early_stopping"] = EarlyStopping(**es.model_dump())
        except (ValueError, TypeError) as exc:
            raise ConfigError(*keyed(key, exc, list(es.model_fields))) from None
    try:  # fit's own checks of the options together (a placeholder checkpoint folder)
        FitOptions(**options, checkpoint_dir=Path("checkpoints"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(*keyed("fit", exc, list(options))) from None
    return options
