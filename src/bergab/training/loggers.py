"""Loggers: the step and evaluation records of :func:`bergab.fit` written to files.

``fit(log_dir=...)`` adds :class:`CSVLogger` and :class:`JSONLLogger` always, and
:class:`TensorBoardLogger` when the ``tensorboard`` package is installed (the ``log``
extra: ``pip install 'bergab[log]'``). They are callbacks, so they can also be passed in
``callbacks=`` (e.g. a TensorBoard logger writing elsewhere).

Files in ``log_dir``:

- ``steps.csv`` / ``steps.jsonl``: one line per optimizer step: ``step``, ``epoch``,
  ``loss``, ``grad_norm``, the lr of every param group, ``effective_lr`` where the
  optimizer has it, ``loss_scale`` under fp16, ``skipped``, ``time``;
- ``records.csv`` / ``records.jsonl``: one line per epoch end and validation.

The CSV columns are those of the first record (later extra keys go to the JSONL file
only). Step lines are kept in memory and written in batches (formatting many at once is
cheaper than one by one): the files get them at least every ``flush_secs`` seconds
(default 5) and every ``flush_steps`` steps (default 1000), at every checkpoint, and when
fit ends, normally, by an exception or by Ctrl-C. A run killed outright (SIGKILL, power
loss) loses at most that unwritten tail, which is always after the last checkpoint. On
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
import sys
import time
from collections.abc import Mapping, Sequence
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from bergab._validate import check_int, check_path, check_real
from bergab.training import _tensorboard
from bergab.training._checks import check_writable_dir
from bergab.training.callbacks import Callback

if TYPE_CHECKING:
    from bergab.training._fit import Trainer

__all__ = [
    "FLUSH_SECS",
    "FLUSH_STEPS",
    "CSVLogger",
    "JSONLLogger",
    "TensorBoardLogger",
    "masked_crc32c",
    "masked_crc32c_many",
    "tensorboard_available",
]

#: Default longest time (seconds) step lines wait in memory before they are written.
FLUSH_SECS = 5.0
#: Default largest number of step lines kept in memory before they are written.
FLUSH_STEPS = 1000


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package can be imported (found without importing it).

    Example:
        >>> isinstance(tensorboard_available(), bool)
        True
    """
    import importlib.util

    try:
        return importlib.util.find_spec("tensorboard") is not None
    except ValueError:  # in sys.modules without a spec; None there blocks the import
        return sys.modules.get("tensorboard") is not None


# The two checksum functions stay public under their old names (they were the logger's own
# CRC-32C); the logger now gets its checksums from tensorboard and _tensorboard.
def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``: tensorboard's (needs ``bergab[log]``).

    .. math:: \\mathrm{mask}(c) = ((c \\gg 15) \\mid (c \\ll 17)) + \\mathtt{0xA282EAD8}
        \\pmod{2^{32}}

    Example:
        >>> hex(masked_crc32c(b"123456789"))  # CRC-32C check value 0xe3069283, masked
        '0xc78ab0e5'
    """
    return int(_tensorboard.tensorboard_modules().masked_crc32c(data))


def masked_crc32c_many(messages: Sequence[bytes]) -> list[int]:
    """:func:`masked_crc32c` of every message, in order.

    Example:
        >>> masked_crc32c_many([b"123456789"] * 2) == [masked_crc32c(b"123456789")] * 2
        True
    """
    crc = _tensorboard.tensorboard_modules().masked_crc32c
    return [int(crc(m)) for m in messages]


class _FileLogger(Callback):
    """Two line-oriented files (steps, records) that resume by truncation.

    Step records wait in ``_pending`` and are written in batches by :meth:`flush`.
    """

    suffix = ""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        flush_secs: float = FLUSH_SECS,
        flush_steps: int = FLUSH_STEPS,
    ) -> None:
        self.log_dir = check_path("log_dir", log_dir)
        self.flush_secs = check_real("flush_secs", flush_secs, low=0.0)
        self.flush_steps = check_int("flush_steps", flush_steps, low=1)
        self._files: dict[str, TextIO] = {}
        self._sizes: dict[str, int] = {}
        self._resume: dict[str, int] | None = None
        self._columns: dict[str, list[str] | None] = {"steps": None, "records": None}
        self._pending: list[Mapping[str, Any]] = []
        self._deadline = 0.0

    # -- files
    def _path(self, kind: str) -> Path:
        return self.log_dir / f"{kind}{self.suffix}"

    def on_fit_start(self, trainer: Trainer) -> None:
        check_writable_dir(f"{type(self).__name__} log_dir", self.log_dir)
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
        self._pending = []
        self._deadline = time.monotonic() + self.flush_secs

    def _write(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Write ``records`` (at least one) as lines of the ``kind`` file."""
        raise NotImplementedError

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        pending = self._pending
        pending.append(logs)
        if len(pending) >= self.flush_steps or time.monotonic() >= self._deadline:
            self.flush()

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write an evaluation record (``fit`` calls this for every record it makes)."""
        if "records" in self._files:
            self._write("records", [record])

    def flush(self) -> None:
        """Write the pending step lines and flush both files to the operating system."""
        if self._pending and "steps" in self._files:
            self._write("steps", self._pending)
        self._pending = []
        for f in self._files.values():
            f.flush()
        self._deadline = time.monotonic() + self.flush_secs

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Write what is pending, flush and close the files (idempotent)."""
        self.flush()
        for kind, f in self._files.items():
            self._sizes[kind] = os.fstat(f.fileno()).st_size
            f.close()
        self._files = {}

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The byte length of each file at this moment (after a flush) and the CSV columns."""
        self.flush()
        sizes = dict(self._sizes)
        for kind, f in self._files.items():
            sizes[kind] = os.fstat(f.fileno()).st_size
        columns = {k: list(v) for k, v in self._columns.items() if v is not None}
        return {"sizes": sizes, "columns": columns}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Cut the files back to their saved lengths (now if open, else when opened)."""
        sizes = {str(k): int(v) for k, v in state["sizes"].items()}
        self.flush()  # what is pending came after the checkpoint: written, then cut off
        self._columns = {"steps": None, "records": None}
        for kind, cols in state.get("columns", {}).items():
            self._columns[kind] = list(cols)
        if not self._files:
            self._resume = sizes
            return
        for kind, f in self._files.items():
            f.truncate(sizes.get(kind, 0))
            f.seek(0, os.SEEK_END)


_PLAIN = frozenset((int, float, bool, type(None)))
#: text of a value in CSV / JSON where it differs from ``str(value)``
_CSV_TEXT = {"None": ""}
_JSON_TEXT = {
    "True": "true",
    "False": "false",
    "None": "null",
    "nan": "null",  # strict JSON has no NaN or infinity
    "inf": "null",
    "-inf": "null",
}


def _text_columns(
    records: Sequence[Mapping[str, Any]], keys: Sequence[str], fix: Mapping[str, str]
) -> list[list[str]] | None:
    """The values of ``keys`` in ``records`` as columns of text: ``str``, then ``fix``.

    Column by column, so the loops run in C (``map``) rather than record by record. For
    the types allowed, ``str`` is what ``csv`` and ``json`` write (``repr`` for floats).

    Returns:
        One list of strings per key, or ``None`` when a record lacks a key or a value is
        not an int, float, bool or None (the caller then formats record by record).
    """
    get = itemgetter(*keys)
    try:
        rows = list(map(get, records)) if len(keys) > 1 else [(get(r),) for r in records]
    except KeyError:
        return None
    columns = []
    for column in zip(*rows, strict=True):
        if not _PLAIN.issuperset(map(type, column)):
            return None
        text = list(map(str, column))
        columns.append(list(map(fix.get, text, text)))
    return columns


class CSVLogger(_FileLogger):
    """Write ``steps.csv`` and ``records.csv`` into ``log_dir``.

    Args:
        log_dir: the folder (created).
        flush_secs: write pending step lines at least this often (seconds, >= 0).
        flush_steps: ... and whenever this many are pending (an int >= 1).

    Example:
        >>> CSVLogger("runs/x").log_dir.name
        'x'
    """

    suffix = ".csv"

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        self._writers = {kind: csv.writer(f) for kind, f in self._files.items()}

    def _write(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        writer = self._writers[kind]
        cols = self._columns[kind]
        if cols is None:
            cols = self._columns[kind] = list(records[0])
            if os.fstat(self._files[kind].fileno()).st_size == 0:
                writer.writerow(cols)
        columns = _text_columns(records, cols, _CSV_TEXT) if len(cols) > 1 else None
        if columns is None:  # the csv module, row by row (quoting, missing keys)
            writer.writerows([[r.get(c) for c in cols] for r in records])
        else:  # numbers need no quoting: the same text as csv.writer, its "\r\n" included
            self._files[kind].write("\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_encode_json = json.JSONEncoder().encode


class JSONLLogger(_FileLogger):
    """Write ``steps.jsonl`` and ``records.jsonl`` (one JSON object a line) into ``log_dir``.

    Non-finite numbers are written as ``null`` (strict JSON).

    Args:
        log_dir: the folder (created).
        flush_secs: write pending step lines at least this often (seconds, >= 0).
        flush_steps: ... and whenever this many are pending (an int >= 1).

    Example:
        >>> JSONLLogger("runs/x").suffix
        '.jsonl'
    """

    suffix = ".jsonl"

    def _write(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        keys = list(records[0])
        if kind == "steps" and self._columns["steps"] is None:
            self._columns["steps"] = keys
        columns = None
        if keys and len(set(map(tuple, records))) == 1:  # the same keys in the same order
            columns = _text_columns(records, keys, _JSON_TEXT)
        if columns is not None:  # json.dumps's text: '{"key": value, ...}'
            names = [json.dumps(k).replace("%", "%%") for k in keys]
            line = "{" + ", ".join(f"{name}: %s" for name in names) + "}"
            text = "\n".join(map(line.__mod__, zip(*columns, strict=True)))
        else:
            text = "\n".join(_encode_json({k: _clean(v) for k, v in r.items()}) for r in records)
        self._files[kind].write(text + "\n")


# ----------------------------------------------------------------------------- TensorBoard
_SKIP = frozenset(("step", "epoch", "time", "skipped"))


def _layout(item: tuple[float, Mapping[str, Any], bool]) -> tuple[Any, ...] | None:
    """What pending step records of one matrix share: keys and the step's varint length."""
    _, record, evaluation = item
    if evaluation:
        return None
    return (*record, (record["step"].bit_length() + 6) // 7)


class TensorBoardLogger(Callback):
    """Write the records as TensorBoard scalars (view with ``tensorboard --logdir``).

    Needs the ``tensorboard`` package (``pip install 'bergab[log]'``). Step records go
    under ``train/`` (``train/loss``, ``train/grad_norm``, ``train/loss_scale``) and
    ``lr/`` (``lr/lr``, ``lr/effective_lr``, ...), evaluation records under ``val/`` and
    ``epoch/``, all against the step. Events are tensorboard's own protobuf messages and
    records, written synchronously (no ``SummaryWriter`` thread) and in batches: they wait
    in memory at most ``flush_secs`` seconds or ``flush_steps`` steps, and are written at
    checkpoints and when fit ends. After a resume or a rollback the events of the undone
    steps are purged (a ``SessionLog.START`` at the restored step, as
    ``SummaryWriter(purge_step=...)`` writes).

    Args:
        log_dir: the event-file folder.
        flush_secs: write pending events at least this often (seconds, >= 0).
        flush_steps: ... and whenever this many steps are pending (an int >= 1).

    Raises:
        MissingDependencyError: (an ``ImportError``) when tensorboard is not installed.

    Example:
        >>> TensorBoardLogger("runs/x").log_dir.name
        'x'
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        flush_secs: float = FLUSH_SECS,
        flush_steps: int = FLUSH_STEPS,
    ) -> None:
        _tensorboard.tensorboard_modules()  # now, so that a missing tensorboard fails early
        self.log_dir = check_path("log_dir", log_dir)
        self.flush_secs = check_real("flush_secs", flush_secs, low=0.0)
        self.flush_steps = check_int("flush_steps", flush_steps, low=1)
        self._file: _tensorboard.EventFile | None = None
        self._purge = False
        self._step_tags: dict[str, str] = {}
        # (wall time, record, whether it is an evaluation record), in the order they came
        self._pending: list[tuple[float, Mapping[str, Any], bool]] = []
        self._deadline = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        check_writable_dir(f"{type(self).__name__} log_dir", self.log_dir)
        self._file = _tensorboard.EventFile(self.log_dir)
        if trainer.resumed:
            self._file.purge_from(trainer.step + 1)
        self._purge = False
        self._pending = []
        self._deadline = time.monotonic() + self.flush_secs

    def _tag(self, key: str) -> str:
        tag = self._step_tags.get(key)
        if tag is None:
            lr = key == "lr" or key.startswith(("lr_", "effective_lr"))
            tag = self._step_tags[key] = f"lr/{key}" if lr else f"train/{key}"
        return tag

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        if self._purge:  # a rollback restored an earlier step: hide what came after it
            self._file.purge_from(logs["step"])
            self._purge = False
        pending = self._pending
        pending.append((time.time(), logs, False))
        if len(pending) >= self.flush_steps or time.monotonic() >= self._deadline:
            self.flush()

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write an evaluation record (``fit`` calls this for every record it makes)."""
        if self._file is not None:
            self._pending.append((time.time(), record, True))

    def _values(self, record: Mapping[str, Any], evaluation: bool) -> list[tuple[str, Any]]:
        if not evaluation:
            tag = self._tag
            return [(tag(k), v) for k, v in record.items() if k not in _SKIP and v is not None]
        values = []
        for key, value in record.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            values.append((f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}", value))
        return values

    def _matrix(self, items: list[tuple[float, Mapping[str, Any], bool]]) -> bytes | None:
        """The records of a run of step records of one layout (see :func:`_layout`) made at
        once (:meth:`EventFile.scalar_rows`), or ``None`` where that does not apply."""
        assert self._file is not None
        keys = [k for k in items[0][1] if k not in _SKIP]
        if len(items) < _tensorboard.MIN_ROWS or not keys:
            return None
        get = itemgetter(*keys)
        rows = [get(rec) for _, rec, _ in items]
        if len(keys) == 1:
            rows = [(v,) for v in rows]
        if any(None in row for row in rows):  # None: the value is left out of that event
            return None
        try:
            values = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):  # not numbers: event by event (protobuf's errors)
            return None
        return self._file.scalar_rows(
            [w for w, _, _ in items],
            [rec["step"] for _, rec, _ in items],
            [self._tag(k) for k in keys],
            values.reshape(len(items), len(keys)),
        )

    def flush(self) -> None:
        """Write the pending events and flush the file to the operating system."""
        f = self._file
        if f is None:
            return
        if self._pending:
            # Step events first, then evaluation records, each in the order they came: a
            # run of step events is then not cut short by an evaluation record. TensorBoard
            # files values by step; an evaluation record's step may be less than the last
            # step event's, which only purges its own (val/, epoch/) tags from that step on.
            pending = [p for p in self._pending if not p[2]] + [p for p in self._pending if p[2]]
            for _, run in groupby(pending, _layout):
                items = list(run)
                data = None if items[0][2] else self._matrix(items)
                if data is not None:
                    f.write(data)
                    continue
                for wall, rec, evaluation in items:
                    f.write_event(f.scalars_event(wall, rec["step"], self._values(rec, evaluation)))
            self._pending = []
        f.flush()
        self._deadline = time.monotonic() + self.flush_secs

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Write what is pending, flush and close the event file (idempotent)."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def state_dict(self) -> dict[str, Any]:
        """Nothing but a flush: events after a checkpoint are purged on resume."""
        self.flush()
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After a rollback (file open), purge the undone steps at the next step."""
        self.flush()
        self._purge = self._file is not None
