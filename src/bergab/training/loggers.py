"""Loggers: the step and evaluation records of :func:`bergab.fit` written to files.

``fit(log_dir=...)`` adds :class:`CSVLogger` and :class:`JSONLLogger` always, and
:class:`TensorBoardLogger` when TensorBoard is installed. They are callbacks, so they
can also be passed in ``callbacks=`` (e.g. a TensorBoard logger writing elsewhere).

Files in ``log_dir``:

- ``steps.csv`` / ``steps.jsonl``: one line per optimizer step: ``step``, ``epoch``,
  ``loss``, ``grad_norm``, the lr of every param group, ``effective_lr`` where the
  optimizer has it, ``loss_scale`` under fp16, ``skipped``, ``time``;
- ``records.csv`` / ``records.jsonl``: one line per epoch end and validation.

The CSV columns are those of the first record (later extra keys go to the JSONL file
only). Lines are buffered and flushed at every checkpoint, epoch end and at the end. On
resume (and on a NaN rollback) each file is cut back to its length at the checkpoint, so
the files hold exactly the steps of the run as it continued; TensorBoard events of the
steps after the checkpoint are purged the same way (``purge_step``).

Example:
    >>> import tempfile, pathlib, torch, bergab
    >>> log_dir = pathlib.Path(tempfile.mkdtemp())
    >>> x = torch.randn(16, 2)
    >>> h = bergab.fit(torch.nn.Linear(2, 1), (x, x.sum(1, keepdim=True)),
    ...                torch.nn.functional.mse_loss, optimizer="sgd", lr=0.1, max_steps=3,
    ...                batch_size="full", log_dir=log_dir, progress=False)
    >>> (log_dir / "steps.csv").read_text().splitlines()[0]
    'step,epoch,loss,grad_norm,lr,effective_lr,skipped,time'
    >>> len((log_dir / "steps.jsonl").read_text().splitlines())
    3
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bergab.training.callbacks import Callback

if TYPE_CHECKING:
    from bergab.training._fit import Trainer

__all__ = ["CSVLogger", "JSONLLogger", "TensorBoardLogger", "tensorboard_available"]


def tensorboard_available() -> bool:
    """Whether TensorBoard (and so ``torch.utils.tensorboard``) can be imported.

    Example:
        >>> isinstance(tensorboard_available(), bool)
        True
    """
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class _FileLogger(Callback):
    """Two line-oriented files (steps, records) that resume by truncation."""

    suffix = ""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._files: dict[str, TextIO] = {}
        self._sizes: dict[str, int] = {}
        self._resume: dict[str, int] | None = None
        self._columns: dict[str, list[str] | None] = {"steps": None, "records": None}

    # -- files
    def _path(self, kind: str) -> Path:
        return self.log_dir / f"{kind}{self.suffix}"

    def on_fit_start(self, trainer: Trainer) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for kind in ("steps", "records"):
            path = self._path(kind)
            if self._resume is not None and path.exists():
                os.truncate(path, min(self._resume.get(kind, 0), path.stat().st_size))
                if self._resume.get(kind, 0) == 0:
                    self._columns[kind] = None
                self._files[kind] = path.open("a", encoding="utf-8", newline="")
            else:
                self._files[kind] = path.open("w", encoding="utf-8", newline="")
        self._resume = None

    def _write(self, kind: str, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        self._write("steps", logs)

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        self.flush()

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write an evaluation record (``fit`` calls this for every record it makes)."""
        self._write("records", record)

    def flush(self) -> None:
        """Flush both files to the operating system."""
        for f in self._files.values():
            f.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the files (idempotent)."""
        for kind, f in self._files.items():
            f.flush()
            self._sizes[kind] = os.fstat(f.fileno()).st_size
            f.close()
        self._files = {}

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The byte length of each file at this moment (after a flush) and the CSV columns."""
        sizes = dict(self._sizes)
        for kind, f in self._files.items():
            f.flush()
            sizes[kind] = os.fstat(f.fileno()).st_size
        columns = {k: list(v) for k, v in self._columns.items() if v is not None}
        return {"sizes": sizes, "columns": columns}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Cut the files back to their saved lengths (now if open, else when opened)."""
        sizes = {str(k): int(v) for k, v in state["sizes"].items()}
        self._columns = {"steps": None, "records": None}
        for kind, cols in state.get("columns", {}).items():
            self._columns[kind] = list(cols)
        if not self._files:
            self._resume = sizes
            return
        for kind, f in self._files.items():
            f.flush()
            f.truncate(sizes.get(kind, 0))
            f.seek(0, os.SEEK_END)


class CSVLogger(_FileLogger):
    """Write ``steps.csv`` and ``records.csv`` into ``log_dir``.

    Args:
        log_dir: the folder (created).

    Example:
        >>> CSVLogger("runs/x").log_dir.name
        'x'
    """

    suffix = ".csv"

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        self._writers = {kind: csv.writer(f) for kind, f in self._files.items()}

    def _write(self, kind: str, record: Mapping[str, Any]) -> None:
        f = self._files.get(kind)
        if f is None:
            return
        writer = self._writers[kind]
        cols = self._columns[kind]
        if cols is None:
            cols = self._columns[kind] = list(record)
            if os.fstat(f.fileno()).st_size == 0:
                writer.writerow(cols)
        writer.writerow([record.get(c) for c in cols])


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JSONLLogger(_FileLogger):
    """Write ``steps.jsonl`` and ``records.jsonl`` (one JSON object a line) into ``log_dir``.

    Non-finite numbers are written as ``null`` (strict JSON).

    Args:
        log_dir: the folder (created).

    Example:
        >>> JSONLLogger("runs/x").suffix
        '.jsonl'
    """

    suffix = ".jsonl"

    def _write(self, kind: str, record: Mapping[str, Any]) -> None:
        f = self._files.get(kind)
        if f is None:
            return
        if kind == "steps" and self._columns["steps"] is None:
            self._columns["steps"] = list(record)
        line = json.dumps(record)
        if "NaN" in line or "Infinity" in line:
            line = json.dumps({k: _clean(v) for k, v in record.items()})
        f.write(line + "\n")


class TensorBoardLogger(Callback):
    """Write the records as TensorBoard scalars (needs ``tensorboard``: ``bergab[log]``).

    Step records go under ``train/`` (``train/loss``, ``train/grad_norm``, ``lr/lr``,
    ...), evaluation records under ``val/`` and ``epoch/``, all against the step.

    Args:
        log_dir: the event-file folder.

    Example:
        >>> TensorBoardLogger("runs/x").log_dir.name
        'x'
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None
        self._reopen = False

    def on_fit_start(self, trainer: Trainer) -> None:
        from bergab._validate import require

        require("tensorboard", "log")
        from torch.utils.tensorboard import SummaryWriter

        purge = trainer.step + 1 if trainer.resumed else None
        self._writer = SummaryWriter(str(self.log_dir), purge_step=purge)
        self._reopen = False

    @staticmethod
    def _tag(key: str) -> str:
        if key == "lr" or key.startswith(("lr_", "effective_lr")):
            return f"lr/{key}"
        return f"train/{key}"

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        w = self._writer
        if w is None:
            return
        step = logs["step"]
        if self._reopen:  # a rollback restored an earlier step: purge what came after it
            from torch.utils.tensorboard import SummaryWriter

            w.close()
            w = self._writer = SummaryWriter(str(self.log_dir), purge_step=step)
            self._reopen = False
        for key, value in logs.items():
            if key in ("step", "epoch", "time", "skipped") or value is None:
                continue
            w.add_scalar(self._tag(key), value, step)

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write an evaluation record (``fit`` calls this for every record it makes)."""
        w = self._writer
        if w is None:
            return
        step = record["step"]
        for key, value in record.items():
            if key in ("step", "epoch", "time") or not isinstance(value, (int, float)):
                continue
            tag = f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}"
            w.add_scalar(tag, value, step)

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if self._writer is not None:
            self._writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        """Nothing but a flush: events after a checkpoint are purged on resume."""
        if self._writer is not None:
            self._writer.flush()
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After a rollback (writer open), reopen at the next step, purging undone steps."""
        self._reopen = self._writer is not None
