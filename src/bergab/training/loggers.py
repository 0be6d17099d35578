"""Loggers: the step and evaluation records of :func:`bergab.fit` written to files.

``fit(log_dir=...)`` adds :class:`CSVLogger` and :class:`JSONLLogger` always, and
:class:`TensorBoardLogger` when TensorBoard is installed (the logger itself writes event
files without it). They are callbacks, so they
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
import socket
import struct
import sys
import time
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


# ----------------------------------------------------------------------------- TensorBoard
def _crc32c_tables() -> tuple[list[int], ...]:
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(3):  # slicing-by-4: the tables for bytes 1, 2, 3 positions further on
        prev = tables[-1]
        tables.append([(prev[i] >> 8) ^ t0[prev[i] & 0xFF] for i in range(256)])
    return tuple(tables)


_T0, _T1, _T2, _T3 = _crc32c_tables()
_LITTLE = sys.byteorder == "little"


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of ``data`` (slicing-by-4 in pure Python).

    Example:
        >>> hex(masked_crc32c(b"123456789"))  # CRC-32C check value 0xe3069283, masked
        '0xc78ab0e5'
    """
    t0, t1, t2, t3 = _T0, _T1, _T2, _T3
    crc = 0xFFFFFFFF
    n4 = len(data) // 4 * 4 if _LITTLE else 0
    if n4:
        for word in memoryview(data)[:n4].cast("I"):
            x = crc ^ word
            crc = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
    for b in data[n4:]:
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= 0xFFFFFFFFFFFFFFFF
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


class _EventFile:
    """A TensorBoard event file written directly: TFRecords of hand-encoded ``Event``s.

    About 15 µs per step of scalars, against several hundred with ``SummaryWriter``
    (which builds protobuf objects and runs a pure-Python CRC in a second thread).
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        path = folder / name
        n = 0
        while path.exists():
            n += 1
            path = folder / f"{name}.{n}"
        self.path = path
        self._f = path.open("wb")
        self._tags: dict[str, bytes] = {}
        self._write(b"\x09" + struct.pack("<d", time.time()) + _field(0x1A, b"brain.Event:2"))

    def _write(self, event: bytes) -> None:
        header = struct.pack("<Q", len(event))
        self._f.write(
            header
            + struct.pack("<I", masked_crc32c(header))
            + event
            + struct.pack("<I", masked_crc32c(event))
        )

    def scalars(self, step: int, values: list[tuple[str, float]]) -> None:
        """One ``Event`` at ``step`` holding a ``Summary`` with every (tag, value)."""
        parts = []
        for tag, value in values:
            prefix = self._tags.get(tag)
            if prefix is None:
                encoded = tag.encode()
                prefix = self._tags[tag] = b"\x0a" + _varint(len(encoded)) + encoded + b"\x15"
            val = prefix + struct.pack("<f", value)
            parts.append(b"\x0a" + _varint(len(val)) + val)
        summary = b"".join(parts)
        self._write(
            b"\x09"
            + struct.pack("<d", time.time())
            + b"\x10"
            + _varint(step)
            + _field(0x2A, summary)
        )

    def purge_from(self, step: int) -> None:
        """A ``SessionLog.START`` at ``step``: TensorBoard hides events from ``step`` on."""
        self._write(
            b"\x09" + struct.pack("<d", time.time()) + b"\x10" + _varint(step) + b"\x32\x02\x08\x01"
        )

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


_SKIP = frozenset(("step", "epoch", "time", "skipped"))


class TensorBoardLogger(Callback):
    """Write the records as TensorBoard scalars (view with ``tensorboard --logdir``).

    Step records go under ``train/`` (``train/loss``, ``train/grad_norm``,
    ``train/loss_scale``) and ``lr/`` (``lr/lr``, ``lr/effective_lr``, ...), evaluation
    records under ``val/`` and ``epoch/``, all against the step. The event file is
    written directly (no ``SummaryWriter``), which keeps logging every step cheap; it is
    flushed at checkpoints and epoch ends. After a resume or a rollback the events of the
    undone steps are purged (a ``SessionLog.START`` at the restored step, as
    ``SummaryWriter(purge_step=...)`` does).

    Args:
        log_dir: the event-file folder.

    Example:
        >>> TensorBoardLogger("runs/x").log_dir.name
        'x'
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._file: _EventFile | None = None
        self._purge = False
        self._step_tags: dict[str, str] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        self._file = _EventFile(self.log_dir)
        if trainer.resumed:
            self._file.purge_from(trainer.step + 1)
        self._purge = False

    def _tag(self, key: str) -> str:
        tag = self._step_tags.get(key)
        if tag is None:
            lr = key == "lr" or key.startswith(("lr_", "effective_lr"))
            tag = self._step_tags[key] = f"lr/{key}" if lr else f"train/{key}"
        return tag

    def on_batch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        f = self._file
        if f is None:
            return
        step = logs["step"]
        if self._purge:  # a rollback restored an earlier step: hide what came after it
            f.purge_from(step)
            self._purge = False
        f.scalars(
            step,
            [(self._tag(k), v) for k, v in logs.items() if k not in _SKIP and v is not None],
        )

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write an evaluation record (``fit`` calls this for every record it makes)."""
        f = self._file
        if f is None:
            return
        values = []
        for key, value in record.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            values.append((f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}", value))
        f.scalars(record["step"], values)

    def on_epoch_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def state_dict(self) -> dict[str, Any]:
        """Nothing but a flush: events after a checkpoint are purged on resume."""
        if self._file is not None:
            self._file.flush()
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After a rollback (file open), purge the undone steps at the next step."""
        self._purge = self._file is not None
