"""TensorBoard event files written with the ``tensorboard`` package's own pieces.

Private to :class:`bergab.training.loggers.TensorBoardLogger`. An event file is a sequence
of TFRecords (little-endian u64 length, its masked CRC-32C, the data, its masked CRC-32C),
each holding one serialized ``Event``. Every event here is one of tensorboard's protobuf
messages (``tensorboard.compat.proto``), and single records are written by tensorboard's
``RecordWriter`` (what ``SummaryWriter`` uses, without its queue and writer thread).

Step events need one exception, for speed. Built and written that way, an event costs
about 20 µs: ~5 µs to build and serialize the messages, ~14 µs in ``RecordWriter``, whose
CRC-32C is a pure-Python loop over every byte (a step's event is ~100 bytes), while the
whole logger may cost no more than ~1.6 µs a step. So a run of step events of one layout
(the same tags, steps whose varints have one length) is made at once as a byte matrix,
one record a row (:meth:`EventFile.scalar_rows`, ~0.3 µs an event):

- the protobuf serialization of one event is the template of every row, and the fields
  that change from row to row (wall time, step, float32 values) are written column by
  column with numpy where protobuf puts them, found once per layout by comparing
  serializations (:func:`_find_layout`);
- the CRC-32C of a row is the template's (tensorboard's ``crc32c``) XOR one table entry per
  byte in which the row differs from it: a CRC is affine in the message (for messages of
  one length, ``crc(t ^ d) = crc(t) ^ L(d)`` with ``L`` linear), so ``L`` of the changed
  bytes is a sum of per-byte terms, tabulated once per layout (:func:`_crc_terms`).

Each layout is checked when found (once a process): two events filled in and their
checksums must equal what protobuf and tensorboard's ``masked_crc32c`` give, else its
events are written one by one. Importing this module does not import tensorboard;
:func:`tensorboard_modules` does.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bergab._validate import require

__all__ = ["MIN_ROWS", "EventFile", "tensorboard_modules"]

#: runs of at least this many step events are made as a matrix; a single one is built and
#: written by protobuf and RecordWriter (~20 µs), cheaper than the matrix's numpy calls (~26 µs)
MIN_ROWS = 2


def tensorboard_modules() -> SimpleNamespace:
    """tensorboard's event messages, ``RecordWriter`` and CRC-32C functions, imported now.

    Raises:
        MissingDependencyError: (an ``ImportError``) when tensorboard is not installed; the
            message names ``pip install 'bergab[log]'``.
    """
    event_pb2 = require("tensorboard.compat.proto.event_pb2", "log")
    summary_pb2 = require("tensorboard.compat.proto.summary_pb2", "log")
    record_writer = require("tensorboard.summary.writer.record_writer", "log")
    crc = require("tensorboard.compat.tensorflow_stub.pywrap_tensorflow", "log")
    return SimpleNamespace(
        Event=event_pb2.Event,
        SessionLog=event_pb2.SessionLog,
        Summary=summary_pb2.Summary,
        RecordWriter=record_writer.RecordWriter,
        crc32c=crc.crc32c,  # unmasked
        masked_crc32c=crc.masked_crc32c,  # what RecordWriter writes
        crc_table=crc.CRC_TABLE,  # the byte-at-a-time table of CRC-32C
    )


# ----------------------------------------------------------------------------- layouts
class _Layout:
    """Where the fields of a scalar event of given tags and step width lie, and its CRC.

    (A plain class: a NamedTuple costs ~0.2 ms to create when the module is imported.)
    """

    __slots__ = ("crc", "step", "template", "terms", "values", "varying", "wall")

    def __init__(
        self,
        template: np.ndarray,
        wall: int,
        step: int,
        values: tuple[int, ...],
        varying: np.ndarray,
        crc: np.uint32,
        terms: np.ndarray,
    ) -> None:
        self.template = template  # an event serialized by protobuf (uint8): rows start as it
        self.wall = wall  # offset of the wall time (a little-endian double)
        self.step = step  # offset of the step's varint (``width`` bytes)
        self.values = values  # offset of each tag's value (a little-endian float32)
        self.varying = varying  # offsets of all those bytes, increasing
        self.crc = crc  # CRC-32C of the template, unmasked
        self.terms = terms  # (len(varying), 256) uint32: see _crc_terms


# Markers: two values of each fixed-size type whose encodings differ in every byte (both
# finite, and exact in float32 for the floats), so that the bytes where two serializations
# differ are exactly the field's.
_DOUBLES = struct.unpack("<2d", b"\x11" * 8 + b"\x22" * 8)
_FLOATS = struct.unpack("<2f", b"\x11" * 4 + b"\x22" * 4)
_MASK_DELTA = np.uint32(0xA282EAD8)


def _crc_terms(size: int, varying: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``terms[j, b]``: the CRC-32C register after ``size`` bytes that are all zero but
    ``b`` at offset ``varying[j]``, from a zero register (the linear part of the CRC).

    Byte ``b`` puts ``table[b]`` in the register, and each zero byte after it applies
    ``r -> table[r & 0xFF] ^ (r >> 8)``; walking back from the last offset, one more zero
    byte follows at each step.
    """
    terms = np.empty((len(varying), 256), dtype=np.uint32)
    index = {int(p): j for j, p in enumerate(varying)}
    r = table.copy()  # b at the last offset: no zero byte after it
    for p in range(size - 1, int(varying[0]) - 1, -1):
        j = index.get(p)
        if j is not None:
            terms[j] = r
        r = table[r & 0xFF] ^ (r >> 8)
    return terms


def _masked_crcs(layout: _Layout, rows: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC-32C of each row (uint8, rows of ``layout``), as uint32."""
    delta = rows[:, layout.varying] ^ layout.template[layout.varying]
    picked = layout.terms[np.arange(len(layout.varying)), delta]
    crc = np.bitwise_xor.reduce(picked, axis=1) ^ layout.crc
    return ((crc >> 15) | (crc << 17)) + _MASK_DELTA  # wraps mod 2**32


def _fill(
    layout: _Layout, width: int, walls: Any, steps: Any, values: np.ndarray, rows: np.ndarray
) -> None:
    """Write events of ``layout`` in ``rows`` (n × template length, uint8).

    ``values`` is n × (number of tags), float64; they are stored as float32, as protobuf
    does (a C cast: beyond the float32 range gives ±inf).
    """
    n = values.shape[0]
    rows[:] = layout.template
    rows[:, layout.wall : layout.wall + 8] = (
        np.asarray(walls, dtype="<f8").view(np.uint8).reshape(n, 8)
    )
    s = np.asarray(steps, dtype=np.uint64)
    for i in range(width):  # varint: base-128 digits, low first, continuation bit on all but last
        digit = (s >> np.uint64(7 * i)) & np.uint64(0x7F)
        rows[:, layout.step + i] = digit | np.uint64(0x80 if i < width - 1 else 0)
    with np.errstate(over="ignore"):
        f32 = np.ascontiguousarray(values.astype("<f4")).view(np.uint8)
    for j, at in enumerate(layout.values):
        rows[:, at : at + 4] = f32[:, 4 * j : 4 * j + 4]


def _find_layout(
    tb: SimpleNamespace,
    encode: Callable[[float, int, list[tuple[str, float]]], bytes],
    tags: tuple[str, ...],
    width: int,
) -> _Layout | None:
    """The layout of protobuf's scalar events of ``tags`` with steps of ``width`` varint bytes.

    ``encode(wall_time, step, [(tag, value), ...])`` serializes an event. Each field is
    located by serializing two events that differ in it alone, set to two marker values
    whose encodings differ in every byte (for the step: the least and the greatest value
    of ``width`` varint bytes). ``None`` when anything does not fit (the events are then
    written one by one).
    """
    low, high = 1 << 7 * (width - 1), (1 << 7 * width) - 1
    d0, d1 = _DOUBLES
    f0, f1 = _FLOATS
    base = encode(d0, low, [(t, f0) for t in tags])
    template = np.frombuffer(base, dtype=np.uint8)

    def where(other: bytes, size: int) -> int | None:
        """The offset of the ``size`` bytes, one block, where ``other`` differs from base."""
        if len(other) != len(base):
            return None
        diff = np.flatnonzero(np.frombuffer(other, dtype=np.uint8) != template)
        if len(diff) != size or diff[-1] - diff[0] != size - 1:
            return None
        return int(diff[0])

    wall = where(encode(d1, low, [(t, f0) for t in tags]), 8)
    step = where(encode(d0, high, [(t, f0) for t in tags]), width)
    values = [
        where(encode(d0, low, [(t, f1 if i == j else f0) for i, t in enumerate(tags)]), 4)
        for j in range(len(tags))
    ]
    if wall is None or step is None or None in values:
        return None
    at = [v for v in values if v is not None]
    fields = [(wall, 8), (step, width), *((v, 4) for v in at)]
    varying = np.sort(np.concatenate([np.arange(p, p + k) for p, k in fields]))
    if len(np.unique(varying)) != len(varying):
        return None
    table = np.array(tb.crc_table, dtype=np.uint32)
    terms = _crc_terms(len(base), varying, table)
    layout = _Layout(template, wall, step, tuple(at), varying, np.uint32(tb.crc32c(base)), terms)
    # the check: the markers' two events, filled in, and their checksums
    expected = [base, encode(d1, high, [(t, f1) for t in tags])]
    rows = np.empty((2, len(base)), dtype=np.uint8)
    markers = np.array([[f0] * len(tags), [f1] * len(tags)], dtype=np.float64)
    _fill(layout, width, [d0, d1], [low, high], markers, rows)
    if [r.tobytes() for r in rows] != expected:
        return None
    if _masked_crcs(layout, rows).tolist() != [tb.masked_crc32c(e) for e in expected]:
        return None
    return layout


#: the layouts found, by (tags, step width): a layout depends on nothing else, so it is
#: found once a process (~0.5 ms) rather than once a file
_LAYOUTS: dict[tuple[tuple[str, ...], int], _Layout | None] = {}


# ----------------------------------------------------------------------------- the file
class EventFile:
    """One TensorBoard event file in ``folder``, written synchronously.

    The name is ``events.out.tfevents.<unix time>.<host>.<pid>`` (``.1``, ``.2``, ... added
    if that file exists), and the first record an ``Event`` with ``file_version``
    ``brain.Event:2``, as TensorBoard writes them. Nothing is buffered here beyond the
    file object's own buffer: the caller batches (see :meth:`scalar_rows`).

    Raises:
        MissingDependencyError: when tensorboard is not installed.
    """

    def __init__(self, folder: Path) -> None:
        self._tb = tb = tensorboard_modules()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        path = folder / name
        n = 0
        while path.exists():
            n += 1
            path = folder / f"{name}.{n}"
        self.path = path
        self._f = path.open("wb")
        self._writer = tb.RecordWriter(self._f)
        self._heads: dict[int, bytes] = {}
        self.write_event(tb.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write_event(self, event: Any) -> None:
        """Append one ``Event`` message as a record (tensorboard's ``RecordWriter``)."""
        self._writer.write(event.SerializeToString())

    def scalars_event(self, wall_time: float, step: int, values: Sequence[tuple[str, Any]]) -> Any:
        """An ``Event`` at ``step`` whose ``Summary`` holds every (tag, value) as a float32.

        Values beyond the float32 range become ±inf (protobuf's cast).
        """
        tb = self._tb
        summary = tb.Summary(value=[tb.Summary.Value(tag=t, simple_value=v) for t, v in values])
        return tb.Event(wall_time=wall_time, step=step, summary=summary)

    def _encode(self, wall_time: float, step: int, values: list[tuple[str, float]]) -> bytes:
        return bytes(self.scalars_event(wall_time, step, values).SerializeToString())

    def purge_from(self, step: int) -> None:
        """A ``SessionLog.START`` at ``step``: TensorBoard then drops the events from ``step``
        on that it read before (``SummaryWriter(purge_step=...)`` writes the same event)."""
        tb = self._tb
        start = tb.SessionLog(status=tb.SessionLog.START)
        self.write_event(tb.Event(wall_time=time.time(), step=step, session_log=start))

    def scalar_rows(
        self,
        walls: Sequence[float],
        steps: Sequence[int],
        tags: Sequence[str],
        values: np.ndarray,
    ) -> bytes | None:
        """The records of one scalar ``Event`` per row of ``values`` (n × len(tags)), at once.

        Byte for byte what :meth:`write_event` of :meth:`scalars_event` writes row by row.

        Returns:
            The bytes (to append with :meth:`write`), or ``None`` when these events cannot
            be made as a matrix: steps outside ``[1, 2**63)`` or whose varints differ in
            length, or a layout that protobuf does not write as expected.
        """
        first, last = int(min(steps)), int(max(steps))
        width = (first.bit_length() + 6) // 7
        if first < 1 or last >= 1 << 63 or (last.bit_length() + 6) // 7 != width:
            return None
        key = (tuple(tags), width)
        if key not in _LAYOUTS:
            _LAYOUTS[key] = _find_layout(self._tb, self._encode, key[0], width)
        layout = _LAYOUTS[key]
        if layout is None:
            return None
        size = len(layout.template)
        head = self._heads.get(size)
        if head is None:  # the record's length and its CRC: the same for every row
            length = struct.pack("<Q", size)
            head = self._heads[size] = length + struct.pack("<I", self._tb.masked_crc32c(length))
        n = len(steps)
        records = np.empty((n, 12 + size + 4), dtype=np.uint8)
        records[:, :12] = np.frombuffer(head, dtype=np.uint8)
        events = records[:, 12 : 12 + size]
        _fill(layout, width, walls, steps, np.asarray(values, dtype=np.float64), events)
        crcs = _masked_crcs(layout, events).astype("<u4")
        records[:, 12 + size :] = crcs.view(np.uint8).reshape(n, 4)
        return records.tobytes()

    def write(self, data: bytes) -> None:
        """Append records made by :meth:`scalar_rows`."""
        self._f.write(data)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
