"""Callbacks: a small set of hooks into :func:`bergab.fit`, and the built-in ones.

A callback subclasses :class:`Callback` and overrides any of these hooks; each receives
the running :class:`~bergab.training.Trainer` (model, optimizer, history, ``epoch``,
``step``, ...):

==========================================  ===============================================
hook                                        when
==========================================  ===============================================
``on_fit_start(trainer)``                   after setup (and after a resume), before step 1
``on_epoch_start(trainer)``                 before the first batch of an epoch
``on_batch_end(trainer, logs)``             after every optimizer step (``logs``: the step
                                            record: loss, grad_norm, lr, ...); with
                                            ``accumulation_steps=k`` once per k batches
``on_validation_end(trainer, logs)``        after each validation (``logs``: ``val_loss``,
                                            ``val_<metric>``, ``step``, ``epoch``)
``on_epoch_end(trainer, logs)``             after an epoch (``logs``: the epoch record)
``on_fit_end(trainer)``                     once, however training ended (epochs done,
                                            max_steps, tol, a stop, a NaN stop, Ctrl-C)
==========================================  ===============================================

Any hook may call ``trainer.stop(reason)`` to end training after the current step.
A callback with state implements ``state_dict()`` / ``load_state_dict()``: the state is
saved in every checkpoint and restored on resume, so a resumed run's callbacks behave
exactly like an uninterrupted run's. ``lr_factor()`` lets a callback scale the learning
rate (see :class:`ReduceLROnPlateau`).

``on_validation_end`` and ``on_epoch_end`` run while schedule-free optimizers are switched
to their averaged (evaluation) weights, so saving or copying the model there captures
the weights to ship.

Example:
    >>> import torch
    >>> import bergab
    >>> class StopAtLoss(Callback):
    ...     def on_batch_end(self, trainer, logs):
    ...         if logs["loss"] < 0.1:
    ...             trainer.stop("loss below 0.1")
    >>> x = torch.linspace(-1, 1, 32).unsqueeze(1)
    >>> h = bergab.fit(torch.nn.Linear(1, 1), (x, 3 * x), torch.nn.functional.mse_loss,
    ...                optimizer="sgd", lr=0.5, max_steps=500, batch_size="full",
    ...                callbacks=[StopAtLoss()], progress=False, seed=0)
    >>> h.stop_reason, h.steps["loss"][-1] < 0.1
    ('loss below 0.1', True)
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bergab import schedules
from bergab._validate import check_choice, check_int, check_path, check_real
from bergab.training._checks import check_writable_dir

if TYPE_CHECKING:
    from bergab.training._fit import Trainer

__all__ = [
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
]

HOOKS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_end",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
)


class Callback:
    """Base class of callbacks: every hook does nothing; override the ones you need.

    See the module docstring for when each hook runs.

    Example:
        >>> class CountSteps(Callback):
        ...     def __init__(self):
        ...         self.n = 0
        ...     def on_batch_end(self, trainer, logs):
        ...         self.n += 1
        ...     def state_dict(self):
        ...         return {"n": self.n}
        ...     def load_state_dict(self, state):
        ...         self.n = state["n"]
        >>> CountSteps().state_dict()
        {'n': 0}
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once after setup (and after restoring a checkpoint), before training."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Called before the first batch of each epoch (not again for a resumed epoch)."""

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        """Called after each optimizer step with its step record."""

    def on_validation_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        """Called after each validation with ``val_loss`` and ``val_<metric>``."""

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        """Called after each epoch with the epoch record."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called once when training ends, whatever the reason."""

    def lr_factor(self) -> float:
        """A factor this callback applies to the learning rate (1.0: none).

        ``fit`` multiplies the factors of all callbacks into every param group's lr (a
        schedule's values included) after each validation and epoch end.
        """
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """The callback's state for checkpoints: tensors and plain containers only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class LambdaCallback(Callback):
    """A callback made of plain functions, one per hook.

    Args:
        **hooks: ``on_fit_start=fn(trainer)``, ``on_batch_end=fn(trainer, logs)``, ...
            (the names of :class:`Callback`'s hooks).

    Example:
        >>> seen = []
        >>> cb = LambdaCallback(on_batch_end=lambda trainer, logs: seen.append(logs["step"]))
        >>> cb.on_batch_end(None, {"step": 1}); seen
        [1]
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        for name, fn in hooks.items():
            check_choice("hook", name, HOOKS)
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)


# ----------------------------------------------------------------------------- monitoring
def _check_monitor(monitor: Any) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be a non-empty str such as 'val_loss', got {monitor!r}")
    return monitor


#: Words of metric names that improve by going up (``mode="max"``) and by going down
#: (``mode="min"``), written as one string each (a word a line would take 70 lines).
_HIGHER_WORDS = (
    "accuracy acc auc auroc auprc f1 f2 fbeta fscore precision recall r2 iou miou jaccard "
    "dice map ap ndcg mrr hits bleu rouge meteor chrf psnr ssim kappa mcc specificity "
    "sensitivity tpr tnr correlation pearson spearman reward return"
)
_LOWER_WORDS = (
    "loss error err mse mae rmse msle rmsle mape smape nll perplexity ppl bpc bpd wer cer "
    "ter distance divergence kl brier hinge huber regret fpr fnr cost entropy crossentropy eer"
)
_HIGHER_IS_BETTER = frozenset(_HIGHER_WORDS.split())
_LOWER_IS_BETTER = frozenset(_LOWER_WORDS.split())


def infer_mode(monitor: str) -> str | None:
    """``"max"`` or ``"min"`` for a metric name, as Keras' ``mode="auto"`` decides; else
    ``None`` (an unknown name, or one with words of both kinds).

    The name is split into words at every non-alphanumeric character (``val_top1_acc``:
    ``val``, ``top1``, ``acc``). Accuracy-like words (accuracy, acc, auc, f1, precision,
    recall, r2, iou, ...; and any word containing "acc", as Keras checks) mean higher is
    better; loss-like ones (loss, error, mse, mae, perplexity, nll, ...; any word ending
    in "loss" or "error") mean lower is better.

    Example:
        >>> [infer_mode(m) for m in ("val_accuracy", "val_loss", "train_f1", "perplexity")]
        ['max', 'min', 'max', 'min']
        >>> infer_mode("val_score") is None
        True
    """
    words = [w for w in re.split(r"[^0-9a-z]+", monitor.lower()) if w]
    higher = any(w in _HIGHER_IS_BETTER or "acc" in w for w in words)
    lower = any(w in _LOWER_IS_BETTER or w.endswith(("loss", "error")) for w in words)
    if higher == lower:
        return None
    return "max" if higher else "min"


def resolve_mode(mode: Any, monitor: str) -> str:
    """``mode`` checked; ``"auto"`` becomes ``"min"`` or ``"max"`` by :func:`infer_mode`.

    Example:
        >>> resolve_mode("auto", "val_acc"), resolve_mode("min", "val_acc")
        ('max', 'min')
    """
    mode = check_choice("mode", mode, ("auto", "min", "max"))
    if mode != "auto":
        return str(mode)
    inferred = infer_mode(monitor)
    if inferred is None:
        raise ValueError(
            f"mode: cannot tell whether monitor {monitor!r} improves by going up or down; "
            "pass mode='max' (accuracy-like) or mode='min' (loss-like)"
        )
    return inferred


class _Monitoring(Callback):
    """Shared by callbacks that watch one logged quantity.

    A ``val_*`` quantity is read after each validation, anything else (``loss``, a key a
    callback adds) at each epoch end.
    """

    monitor: str
    mode: str

    def _value(self, logs: Mapping[str, Any]) -> float | None:
        if self.monitor not in logs:
            available = ", ".join(sorted(k for k in logs if isinstance(logs[k], (int, float))))
            raise ValueError(
                f"{type(self).__name__}: monitor {self.monitor!r} is not logged; "
                f"available here: {available}"
            )
        value = logs[self.monitor]
        if isinstance(value, torch.Tensor):
            value = value.item()
        return float(value)

    def on_fit_start(self, trainer: Trainer) -> None:
        """Check before the first step that :attr:`monitor` will be logged."""
        name = type(self).__name__
        if self.monitor.startswith("val_") and not trainer.has_validation:
            raise ValueError(
                f"{name} monitors {self.monitor!r}, but fit() has no val_data; "
                "pass val_data or monitor='loss'"
            )
        options = getattr(trainer, "options", None)
        if options is None:
            return
        metrics = list(options.metrics)
        if self.monitor.startswith("val_"):
            logged = ["val_loss", *(f"val_{m}" for m in metrics)]
            if self.monitor not in logged:
                raise ValueError(
                    f"{name}: monitor {self.monitor!r} is not logged; available here: "
                    f"{', '.join(logged)}"
                )
        elif (
            self.monitor.startswith("train_")
            and self.monitor[len("train_") :] in metrics
            and not options.train_metrics
        ):
            raise ValueError(
                f"{name} monitors {self.monitor!r}: pass train_metrics=True to compute the "
                "metrics on the training batches"
            )

    def on_validation_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if self.monitor.startswith("val_"):
            self._observe(trainer, self._value(logs))

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if not self.monitor.startswith("val_"):
            self._observe(trainer, self._value(logs))

    def _observe(self, trainer: Trainer, value: float | None) -> None:
        raise NotImplementedError


class EarlyStopping(_Monitoring):
    """Stop when a monitored quantity stops improving; optionally restore the best weights.

    After each validation (for ``val_*`` quantities; at each epoch end otherwise) the
    value improves when ``value < best - min_delta`` (``mode="min"``) or
    ``value > best + min_delta`` (``mode="max"``); NaN never improves. After
    ``patience`` evaluations without improvement training stops.

    With ``restore_best=True`` a copy of the weights is kept (on the CPU) at every
    improvement and loaded back into the model when training ends, whatever the reason
    it ended (this callback, ``max_steps``, ``epochs``, ``tol``, a NaN stop, Ctrl-C). The
    copy is part of the checkpoints, so it survives a resume.

    Args:
        monitor: the logged quantity, e.g. ``"val_loss"``, ``"val_accuracy"``, ``"loss"``.
        patience: evaluations without improvement before stopping, an int >= 0.
        min_delta: the margin an improvement must beat, >= 0.
        mode: ``"min"``, ``"max"``, or ``"auto"``: from the name of ``monitor``
            (:func:`infer_mode`: accuracy-like names such as ``val_accuracy``, ``val_f1``
            are maximized, loss-like ones such as ``val_loss``, ``val_mae`` minimized; an
            unknown name is a ``ValueError`` asking for ``"min"`` or ``"max"``).
        restore_best: load the best weights back at the end.

    Example:
        >>> es = EarlyStopping(patience=2)
        >>> es.mode, es.best
        ('min', inf)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = True,
    ) -> None:
        self.monitor = _check_monitor(monitor)
        self.patience = check_int("patience", patience, low=0)
        self.min_delta = check_real("min_delta", min_delta, low=0.0)
        self.mode = resolve_mode(mode, self.monitor)
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {type(restore_best).__name__}")
        self.restore_best = restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None
        self.wait = 0
        self.stopped_step: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _observe(self, trainer: Trainer, value: float | None) -> None:
        if value is None:
            return
        if self._improved(value):
            self.best = value
            self.best_step = trainer.step
            self.wait = 0
            if self.restore_best:
                self.best_weights = {
                    k: v.detach().to("cpu", copy=True) for k, v in _model_state(trainer).items()
                }
            return
        self.wait += 1
        if self.wait >= self.patience and not trainer.should_stop:
            self.stopped_step = trainer.step
            trainer.stop(
                f"early stopping: {self.monitor} did not improve for {self.wait} evaluations "
                f"(best {self.best:.6g} at step {self.best_step})"
            )

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_weights is not None:
            load = getattr(trainer, "load_model_state", trainer.model.load_state_dict)
            load(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """best, best_step, wait, stopped_step and the best weights (tensors)."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "wait": self.wait,
            "stopped_step": self.stopped_step,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best = float(state["best"])
        self.best_step = state["best_step"]
        self.wait = int(state["wait"])
        self.stopped_step = state["stopped_step"]
        weights = state["best_weights"]
        self.best_weights = None if weights is None else dict(weights)


class ReduceLROnPlateau(_Monitoring):
    """Cut the learning rate by ``factor`` when a monitored quantity stops improving.

    Built on :class:`bergab.schedules.ReduceOnPlateau` (torch's rules, update for
    update), run on a multiplier that starts at 1: the lr every param group uses is its
    own lr (or its schedule's value, warmup included) times this multiplier. So it
    composes with any schedule: ``lr=warmup(cosine(...), steps=500)`` with this callback
    warms up, decays, and is cut on plateaus.

    Args:
        monitor: the logged quantity (``"val_loss"``, ``"val_accuracy"``, ``"loss"``).
        factor: the multiplier applied at each cut, in (0, 1).
        patience: evaluations without improvement tolerated before a cut, an int >= 0.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name of ``monitor``, as in
            :class:`EarlyStopping`).
        threshold: the margin an improvement must beat, >= 0.
        threshold_mode: ``"rel"`` or ``"abs"`` (as in torch).
        cooldown: evaluations to wait after a cut before counting again, an int >= 0.
        min_scale: the smallest multiplier, in [0, 1] (the lr floor relative to the
            uncut lr).

    Example:
        >>> cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0)
        >>> for loss in [1.0, 1.0, 1.0]:
        ...     cb.plateau.update(loss)
        >>> cb.lr_factor()
        0.25
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_scale: float = 0.0,
    ) -> None:
        self.monitor = _check_monitor(monitor)
        self.mode = resolve_mode(mode, self.monitor)
        check_real("min_scale", min_scale, low=0.0, high=1.0)
        self.plateau = schedules.ReduceOnPlateau(
            1.0,
            mode=self.mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_scale,
            eps=0.0,
        )

    def _observe(self, trainer: Trainer, value: float | None) -> None:
        if value is not None:
            self.plateau.update(value)

    def lr_factor(self) -> float:
        """The current multiplier (1.0 until the first cut)."""
        return float(self.plateau(0))

    def state_dict(self) -> dict[str, Any]:
        """The plateau schedule's position (current factor, best, counters)."""
        return self.plateau.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.plateau.load_state_dict(state)


def _writes(trainer: Any) -> bool:
    """Whether this process writes files: rank 0 of the trainer's World (or no World)."""
    world = getattr(trainer, "world", None)
    return world is None or world.is_main


class ModelCheckpoint(_Monitoring):
    """Save the model's weights: the ``keep`` best by a monitored quantity, or the last.

    ``save="best"``: after each evaluation of ``monitor``, if the value is among the
    ``keep`` best seen so far, the weights are saved to
    ``best-step{step}-{monitor}={value}.pt`` and the file that fell out of the top
    ``keep`` is deleted. ``save="last"``: the weights are saved at every epoch end to
    ``epoch{epoch}-step{step}.pt`` and only the ``keep`` newest files are kept.

    Each file is written atomically and holds ``{"model": state_dict, "step", "epoch",
    "monitor", "value"}``; read it with
    ``torch.load(path, weights_only=True)["model"]``. (The resumable checkpoint of the
    whole run is ``checkpoint_dir/last.pt``, written by ``fit`` itself.)

    Args:
        dirpath: the folder; default ``<checkpoint_dir>/models`` (or
            ``<log_dir>/models``).
        save: ``"best"`` or ``"last"``.
        monitor: the quantity ranking the ``"best"`` files.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name of ``monitor``, as in
            :class:`EarlyStopping`).
        keep: how many files to keep, an int >= 1.

    Attributes:
        best_path: the file of the best model so far (``save="best"``), or ``None``.
        kept: ``[(value, path)]`` of the files kept, best (or newest) first.

    Example:
        >>> ModelCheckpoint("ckpts", keep=3).kept
        []
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        *,
        save: str = "best",
        monitor: str = "val_loss",
        mode: str = "auto",
        keep: int = 1,
    ) -> None:
        self.dirpath = None if dirpath is None else check_path("dirpath", dirpath)
        self.save = check_choice("save", save, ("best", "last"))
        self.monitor = _check_monitor(monitor)
        if self.save == "best":
            self.mode = resolve_mode(mode, self.monitor)
        else:  # the newest files are kept: no value is ranked, any mode will do
            self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.keep = check_int("keep", keep, low=1)
        self.kept: list[tuple[float, str]] = []

    @property
    def best_path(self) -> str | None:
        """The path of the best kept file (``save="best"``), else ``None``."""
        if self.save != "best" or not self.kept:
            return None
        return self.kept[0][1]

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.save == "best":
            super().on_fit_start(trainer)
        if self.dirpath is None:
            base = trainer.checkpoint_dir or trainer.log_dir
            if base is None:
                raise ValueError(
                    "ModelCheckpoint needs a folder: pass dirpath, or give fit() a "
                    "checkpoint_dir or log_dir"
                )
            self.dirpath = Path(base) / "models"
        if _writes(trainer):  # the folder is written by rank 0 only
            check_writable_dir("ModelCheckpoint dirpath", self.dirpath)

    def _write(self, trainer: Trainer, name: str, value: float | None) -> str:
        from bergab.training.checkpoint import save_checkpoint

        assert self.dirpath is not None
        path = self.dirpath / name
        state = _model_state(trainer)  # under FSDP a gather: every process takes part
        if not _writes(trainer):  # rank 0 writes; the others keep the same list
            return str(path)
        save_checkpoint(
            {
                "format": "bergab.model/1",
                "model": state,
                "step": trainer.step,
                "epoch": trainer.epoch,
                "monitor": self.monitor if self.save == "best" else None,
                "value": value,
            },
            path,
            keep_last=0,  # every file has its own name: nothing is replaced
        )
        return str(path)

    @staticmethod
    def _delete(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()

    def _observe(self, trainer: Trainer, value: float | None) -> None:
        if self.save != "best" or value is None or math.isnan(value):
            return
        sign = 1.0 if self.mode == "min" else -1.0
        if len(self.kept) >= self.keep and sign * value >= sign * self.kept[-1][0]:
            return
        name = f"best-step{trainer.step}-{self.monitor}={value:.6g}.pt"
        path = self._write(trainer, name, value)
        self.kept = [(v, p) for v, p in self.kept if p != path]
        self.kept.append((value, path))
        self.kept.sort(key=lambda vp: sign * vp[0])
        while len(self.kept) > self.keep:
            gone = self.kept.pop()[1]
            if _writes(trainer):
                self._delete(gone)

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if self.save == "best":
            super().on_epoch_end(trainer, logs)
            return
        path = self._write(trainer, f"epoch{trainer.epoch}-step{trainer.step}.pt", None)
        self.kept = [(float(trainer.step), path), *((v, p) for v, p in self.kept if p != path)]
        while len(self.kept) > self.keep:
            gone = self.kept.pop()[1]
            if _writes(trainer):
                self._delete(gone)

    def state_dict(self) -> dict[str, Any]:
        """The kept files and their values."""
        return {"kept": [[v, p] for v, p in self.kept], "dirpath": str(self.dirpath or "")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.kept = [(float(v), str(p)) for v, p in state["kept"]]
        if state.get("dirpath") and self.dirpath is None:
            self.dirpath = Path(state["dirpath"])


def _model_state(trainer: Any) -> dict[str, Any]:
    """The trainer's whole model state (:meth:`Trainer.model_state`: no DDP prefix, FSDP
    gathered), or its model's ``state_dict()`` for a trainer-like object without it."""
    get = getattr(trainer, "model_state", None)
    return dict(get() if callable(get) else trainer.model.state_dict())
