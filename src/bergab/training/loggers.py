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
import socket
import struct
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from bergab._validate import check_int, check_real
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
    """Whether TensorBoard (and so ``torch.utils.tensorboard``) can be imported.

    Example:
        >>> isinstance(tensorboard_available(), bool)
        True
    """
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


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
        self.log_dir = Path(log_dir)
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
_NP_T0, _NP_T1, _NP_T2, _NP_T3 = (np.array(t, dtype=np.uint32) for t in (_T0, _T1, _T2, _T3))
_LITTLE = sys.byteorder == "little"
#: below this many messages of one length, masked_crc32c_many loops in Python
_MIN_VECTORIZED = 48


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of ``data`` (slicing-by-4 in pure Python).

    .. math:: \\mathrm{mask}(c) = ((c \\gg 15) \\mid (c \\ll 17)) + \\mathtt{0xA282EAD8}
        \\pmod{2^{32}}

    Args:
        data: the bytes.

    Returns:
        The masked checksum, an int in ``[0, 2**32)``.

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


def _masked_crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """:func:`masked_crc32c` of every row of a ``uint8`` matrix (``uint32``), vectorized over
    the rows."""
    n4 = rows.shape[1] // 4 * 4
    words = np.ascontiguousarray(rows[:, :n4]).view("<u4")
    t0, t1, t2, t3 = _NP_T0, _NP_T1, _NP_T2, _NP_T3
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(words.shape[1]):  # the same slicing-by-4 steps, one column at a time
        x = crc ^ words[:, j]
        crc = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
    for j in range(n4, rows.shape[1]):
        crc = t0[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    masked: np.ndarray = ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)  # wraps mod 2**32
    return masked


def masked_crc32c_many(messages: Sequence[bytes]) -> list[int]:
    """:func:`masked_crc32c` of every message; numpy over many messages of one length.

    A CRC is a sequential loop over the bytes, slow in Python (about as slow as 1 µs per
    8 bytes); messages of equal length are stacked into a matrix and the loop runs over
    its columns, each step one vectorized operation on all the messages together.

    Args:
        messages: the byte strings.

    Returns:
        Their masked checksums, in order.

    Example:
        >>> masked_crc32c_many([b"123456789"] * 100)[99] == masked_crc32c(b"123456789")
        True
    """
    out = [0] * len(messages)
    by_length: dict[int, list[int]] = {}
    for i, m in enumerate(messages):
        by_length.setdefault(len(m), []).append(i)
    for length, idx in by_length.items():
        if len(idx) < _MIN_VECTORIZED or length == 0:
            for i in idx:
                out[i] = masked_crc32c(messages[i])
            continue
        rows = np.frombuffer(b"".join([messages[i] for i in idx]), dtype=np.uint8)
        crcs = _masked_crc32c_rows(rows.reshape(len(idx), length)).tolist()
        for i, c in zip(idx, crcs, strict=True):
            out[i] = c
    return out


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


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F32_INF = _F32.pack(math.inf)
_F32_NEG_INF = _F32.pack(-math.inf)


class _EventFile:
    """A TensorBoard event file written directly: TFRecords of hand-encoded ``Event``s.

    About 2 µs per step of scalars when many steps are encoded together
    (:meth:`scalar_rows`), 10-15 µs event by event (:meth:`scalars_event`, :meth:`frame`),
    against several hundred with ``SummaryWriter`` (which builds protobuf objects and runs
    a pure-Python CRC in a second thread).
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
        self._heads: dict[str, bytes] = {}
        self._length_crcs: dict[int, bytes] = {}
        version = b"\x09" + _F64.pack(time.time()) + _field(0x1A, b"brain.Event:2")
        self.write_events([version])

    def _record_head(self, n: int) -> bytes:
        """A TFRecord's first 12 bytes: the length and its masked CRC (cached by length)."""
        head = self._length_crcs.get(n)
        if head is None:
            length = _U64.pack(n)
            head = self._length_crcs[n] = length + _U32.pack(masked_crc32c(length))
        return head

    def frame(self, events: Sequence[bytes]) -> bytes:
        """Serialized ``Event``s as TFRecords (length, its CRC, data, its CRC)."""
        crcs = masked_crc32c_many(events)
        parts: list[bytes] = []
        for event, crc in zip(events, crcs, strict=True):
            parts += (self._record_head(len(event)), event, _U32.pack(crc))
        return b"".join(parts)

    def write_events(self, events: Sequence[bytes]) -> None:
        """Append serialized ``Event``s as TFRecords."""
        self._f.write(self.frame(events))

    def write(self, data: bytes) -> None:
        """Append bytes made by :meth:`frame` or :meth:`scalar_rows`."""
        self._f.write(data)

    def _head(self, tag: str) -> bytes:
        """``Summary.value`` (field 1) up to the float: its length, the tag, simple_value's key."""
        head = self._heads.get(tag)
        if head is None:  # Summary.Value: field 1 (tag), field 2 (simple_value, float)
            encoded = tag.encode()
            inner = b"\x0a" + _varint(len(encoded)) + encoded + b"\x15"
            head = self._heads[tag] = b"\x0a" + _varint(len(inner) + 4) + inner
        return head

    def scalar_rows(
        self, walls: Sequence[float], steps: Sequence[int], tags: Sequence[str], values: np.ndarray
    ) -> bytes:
        """TFRecords of one scalar ``Event`` per row of ``values`` (n × len(tags)) at once.

        The events of a run share their layout (the tags, the varint length of the step),
        so they are rows of one byte matrix: a template with the constant bytes, the
        varying fields (wall time, step, float32 values, CRC) written column-wise. The
        bytes are those of :meth:`frame` of :meth:`scalars_event` row by row.
        """
        n = len(steps)
        width = max(1, (steps[0].bit_length() + 6) // 7)  # varint bytes of the step
        if any(max(1, (s.bit_length() + 6) // 7) != width for s in (min(steps), max(steps))):
            raise ValueError("scalar_rows: the steps need varints of one length")
        heads = [self._head(t) for t in tags]
        prefix = b"\x09" + bytes(8) + b"\x10" + bytes(width)
        prefix += b"\x2a" + _varint(sum(len(h) + 4 for h in heads))
        template = prefix + b"".join(h + bytes(4) for h in heads)
        size = len(template)
        rows = np.empty((n, 12 + size + 4), dtype=np.uint8)
        rows[:, :12] = np.frombuffer(self._record_head(size), dtype=np.uint8)
        event = rows[:, 12 : 12 + size]
        event[:] = np.frombuffer(template, dtype=np.uint8)
        event[:, 1:9] = np.asarray(walls, dtype="<f8").view(np.uint8).reshape(n, 8)
        s = np.asarray(steps, dtype=np.uint64)
        for i in range(width):  # little-endian base-128 digits, continuation bit on all but last
            event[:, 10 + i] = ((s >> np.uint64(7 * i)) & 0x7F) | (0x80 if i < width - 1 else 0)
        with np.errstate(over="ignore"):  # beyond float32: infinite, as struct gives below
            f32 = np.ascontiguousarray(values, dtype=np.float64).astype("<f4").view(np.uint8)
        at = len(prefix)
        for j, head in enumerate(heads):
            at += len(head)
            event[:, at : at + 4] = f32[:, 4 * j : 4 * j + 4]
            at += 4
        rows[:, 12 + size :] = _masked_crc32c_rows(event).astype("<u4").view(np.uint8).reshape(n, 4)
        return rows.tobytes()

    def scalars_event(
        self, wall_time: float, step: int, values: Sequence[tuple[str, Any]]
    ) -> bytes:
        """An ``Event`` at ``step`` holding a ``Summary`` with every (tag, float value)."""
        parts: list[bytes] = []
        for tag, value in values:
            head = self._head(tag)
            try:
                packed = _F32.pack(value)
            except OverflowError:  # beyond float32: infinite, as a float32 cast gives
                packed = _F32_INF if value > 0 else _F32_NEG_INF
            parts += (head, packed)
        summary = b"".join(parts)
        return b"".join(
            (b"\x09", _F64.pack(wall_time), b"\x10", _varint(step), _field(0x2A, summary))
        )

    def scalars(self, step: int, values: Sequence[tuple[str, Any]]) -> None:
        """Write one ``Event`` at ``step`` holding a ``Summary`` with every (tag, value)."""
        self.write_events([self.scalars_event(time.time(), step, values)])

    def purge_from(self, step: int) -> None:
        """A ``SessionLog.START`` at ``step``: TensorBoard hides events from ``step`` on.

        ``Event.session_log`` is field 7 (key ``0x3a``); ``SessionLog.status`` field 1, 1 = START.
        """
        self.write_events(
            [b"\x09" + _F64.pack(time.time()) + b"\x10" + _varint(step) + b"\x3a\x02\x08\x01"]
        )

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


_SKIP = frozenset(("step", "epoch", "time", "skipped"))


def _layout(item: tuple[float, Mapping[str, Any], bool]) -> tuple[Any, ...] | None:
    """What pending step records of one encoded run share: keys and the step's varint length."""
    _, record, evaluation = item
    if evaluation:
        return None
    return (*record, (record["step"].bit_length() + 6) // 7)


class TensorBoardLogger(Callback):
    """Write the records as TensorBoard scalars (view with ``tensorboard --logdir``).

    Step records go under ``train/`` (``train/loss``, ``train/grad_norm``,
    ``train/loss_scale``) and ``lr/`` (``lr/lr``, ``lr/effective_lr``, ...), evaluation
    records under ``val/`` and ``epoch/``, all against the step. The event file is
    written directly (no ``SummaryWriter``), in batches: events wait in memory at most
    ``flush_secs`` seconds or ``flush_steps`` steps, and are written at checkpoints and
    when fit ends. After a resume or a rollback the events of the undone steps are purged
    (a ``SessionLog.START`` at the restored step, as ``SummaryWriter(purge_step=...)``
    does).

    Args:
        log_dir: the event-file folder.
        flush_secs: write pending events at least this often (seconds, >= 0).
        flush_steps: ... and whenever this many steps are pending (an int >= 1).

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
        self.log_dir = Path(log_dir)
        self.flush_secs = check_real("flush_secs", flush_secs, low=0.0)
        self.flush_steps = check_int("flush_steps", flush_steps, low=1)
        self._file: _EventFile | None = None
        self._purge = False
        self._step_tags: dict[str, str] = {}
        # (wall time, record, whether it is an evaluation record), in the order they came
        self._pending: list[tuple[float, Mapping[str, Any], bool]] = []
        self._deadline = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._file = _EventFile(self.log_dir)
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

    def _encode(self, run: Iterable[tuple[float, Mapping[str, Any], bool]]) -> bytes:
        """TFRecords of a run of pending records of one layout (see :func:`_layout`)."""
        f = self._file
        assert f is not None
        items = list(run)
        _, first, evaluation = items[0]
        if not evaluation and len(items) >= _MIN_VECTORIZED:
            keys = [k for k in first if k not in _SKIP]
            get = itemgetter(*keys)
            rows = [get(rec) for _, rec, _ in items] if len(keys) > 1 else []
            values = None
            if rows and not any(None in row for row in rows):  # None: a key left out
                try:
                    values = np.array(rows, dtype=np.float64)
                except (TypeError, ValueError):  # not numbers: event by event below
                    values = None
            if values is not None:
                return f.scalar_rows(
                    [w for w, _, _ in items],
                    [rec["step"] for _, rec, _ in items],
                    [self._tag(k) for k in keys],
                    values.reshape(len(items), len(keys)),
                )
        return f.frame(
            [f.scalars_event(w, rec["step"], self._values(rec, ev)) for w, rec, ev in items]
        )

    def flush(self) -> None:
        """Write the pending events and flush the file to the operating system."""
        f = self._file
        if f is None:
            return
        if self._pending:
            # step events first, so that evaluation records do not cut their runs short (the
            # file order does not matter to TensorBoard: it reads the steps)
            pending = [p for p in self._pending if not p[2]] + [p for p in self._pending if p[2]]
            f.write(b"".join(self._encode(run) for _, run in groupby(pending, _layout)))
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
