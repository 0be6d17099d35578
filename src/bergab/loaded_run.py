"""``bergab.load_run(run_dir)``: a trained run back in Python, for inference.

What Lightning's ``load_from_checkpoint`` and Hugging Face's ``from_pretrained`` give:
the model rebuilt from the run's own config (``config.toml``) with its trained weights,
the config, the training :class:`~bergab.training.History` and the task (its data,
loss and metrics), from a directory ``bergab train`` (or :func:`bergab.run.train`)
wrote. The weights are ``model.pt`` (the final weights; with early stopping's
``restore_best``, the best), or, for a run that did not finish, the last checkpoint,
with a warning saying so; ``best=True`` takes the weights ``output.keep_best`` kept.

Example:
    >>> import tempfile, torch, bergab
    >>> from bergab import config, run
    >>> out = tempfile.mkdtemp() + "/linreg"
    >>> cfg = config.validate({"task": {"name": "linreg", "standardize": True},
    ...     "schedule": {"lr": 0.1}, "fit": {"max_steps": 30, "progress": False},
    ...     "output": {"dir": out, "plots": False}})
    >>> _ = run.train(cfg)
    >>> loaded = bergab.load_run(out)
    >>> loaded.weights, loaded.model.training, len(loaded.history)
    ('model.pt', False, 30)
    >>> x, y = loaded.task.val[:5]
    >>> with torch.no_grad():
    ...     loaded.model(x).shape
    torch.Size([5, 1])
"""

from __future__ import annotations

import json
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A run loaded by :func:`load_run`.

    Attributes:
        model: the task's model with the run's weights, in eval mode, on ``device``.
        config: the run's resolved :class:`bergab.config.RunConfig`.
        history: the training :class:`~bergab.training.History` (empty without a
            checkpoint).
        task: the :class:`bergab.tasks.Task` rebuilt from the config (data splits,
            ``loss_fn``, ``metrics``); ``task.model`` is :attr:`model`.
        run_dir: the run directory.
        weights: the file the weights came from, relative to ``run_dir``.
        summary: ``summary.json`` (``{}`` when missing).
        note: why the weights are not ``model.pt`` (also given as a warning), else
            ``None``.
    """

    model: torch.nn.Module
    config: Any
    history: Any
    task: Any
    run_dir: Path
    weights: str
    summary: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    def __repr__(self) -> str:
        name = self.config.task.name
        return (
            f"LoadedRun({str(self.run_dir)!r}, task={name!r}, weights={self.weights!r}, "
            f"steps={len(self.history)})"
        )


def _not_a_run(path: Path, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{str(path)!r} is not a run directory: {why} (bergab train writes one; "
        "bergab.load_run takes the folder it wrote, e.g. 'runs/digits')"
    )


def _load_config(run_dir: Path) -> Any:
    """The run's config, valid on this machine even if its ``fit.device`` is not here
    (loading for inference needs no GPU); the returned config keeps the original."""
    from bergab import config

    path = run_dir / config.CONFIG_NAME
    try:
        device = tomllib.loads(path.read_text(encoding="utf-8")).get("fit", {}).get("device")
    except (OSError, ValueError, AttributeError):
        device = None
    cfg = config.load(path, ['fit.device="cpu"', f"output.dir={json.dumps(str(run_dir))}"])
    if isinstance(device, str):
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"device": device})})
    return cfg


def _best_file(run_dir: Path, summary: dict[str, Any]) -> Path:
    """The weights ``output.keep_best`` kept (named in ``summary.json``)."""
    name = summary.get("best_checkpoint")
    if isinstance(name, str) and (run_dir / name).is_file():
        return run_dir / name
    found = sorted((run_dir / "checkpoints").glob("best-*.pt"))
    if not found:
        raise FileNotFoundError(
            f"best=True: {str(run_dir)!r} kept no best weights (train with "
            "--set output.keep_best=true to keep them)"
        )
    return found[-1]


def _weights(run_dir: Path, best: bool, summary: dict[str, Any]) -> tuple[Any, str, str | None]:
    """``(state_dict, file relative to run_dir, note or None)``."""
    from bergab.training.checkpoint import load_checkpoint

    if best:
        path = _best_file(run_dir, summary)
        return load_checkpoint(path)["model"], path.relative_to(run_dir).as_posix(), None
    if (run_dir / "model.pt").is_file():
        return load_checkpoint(run_dir / "model.pt"), "model.pt", None
    last = run_dir / "checkpoints" / "last.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note below says which file it was
        try:
            ckpt = load_checkpoint(last, fallback=True)
        except FileNotFoundError:
            raise _not_a_run(run_dir, "it has neither model.pt nor checkpoints/last.pt") from None
    status = summary.get("status", "unknown")
    note = (
        f"{run_dir / 'model.pt'} is missing (the run's status: {status}); using the weights "
        f"of its last checkpoint, at step {ckpt.get('fit', {}).get('step', '?')}"
    )
    return ckpt["model"], "checkpoints/last.pt", note


def _history(run_dir: Path) -> Any:
    """The History of the run's last readable checkpoint (empty without one)."""
    from bergab.training import History
    from bergab.training.checkpoint import load_checkpoint

    history = History()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt", fallback=True, mmap=True)
        except (FileNotFoundError, ValueError):
            return history
    if isinstance(ckpt.get("history"), dict):
        history.load_state_dict(ckpt["history"])
    return history


def load_run(run_dir: str | Path, *, best: bool = False, device: str = "cpu") -> LoadedRun:
    """Load a trained run: its model with the trained weights, config and history.

    The model is rebuilt by the run's task function from ``config.toml`` (a custom task
    ``"package.module:function"`` must be importable, as for training) and gets the
    weights of ``model.pt``; a run that did not finish (interrupted, stopped on a NaN)
    has none, and the weights of its last checkpoint are used, with a warning.

    Args:
        run_dir: the directory ``bergab train`` wrote (e.g. ``"runs/digits"``).
        best: load the weights ``output.keep_best = true`` kept (the best evaluation of
            ``fit.early_stopping.monitor``, else ``val_loss``) instead of the final ones.
        device: where to put the model (``"cpu"``, ``"cuda"``, ...).

    Returns:
        A :class:`LoadedRun` (``.model`` in eval mode, ``.config``, ``.history``,
        ``.task``, ``.weights``, ``.summary``, ``.note``).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory (no ``config.toml``, or no
            weights at all), or ``best=True`` and no best weights were kept.
        ValueError: the config or the weights cannot be used (a one-line message: a
            changed task, a damaged file).

    Example:
        >>> load_run("no/such/run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: 'no/such/run' is not a run directory: no such folder ...
    """
    from bergab import config

    path = Path(run_dir)
    if not path.is_dir():
        raise _not_a_run(path, "no such folder" if not path.exists() else "it is a file")
    if not (path / config.CONFIG_NAME).is_file():
        raise _not_a_run(path, f"it has no {config.CONFIG_NAME}")
    cfg = _load_config(path)
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    state, weights, note = _weights(path, best, summary if isinstance(summary, dict) else {})
    task = config.build_task(cfg)
    try:
        task.model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(
            f"{weights} in {str(path)!r} does not fit the model task {cfg.task.name!r} builds "
            f"from its config now ({first})"
        ) from None
    if note is not None:
        warnings.warn(note, UserWarning, stacklevel=2)
    model = task.model.to(device).eval()
    return LoadedRun(model, cfg, _history(path), task, path, weights, summary, note)
