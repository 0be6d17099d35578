"""fit's logs written in batches: when buffered lines reach the files, that nothing is lost
when a run ends by an exception, the batched CSV/JSONL text, and TensorBoard event files
read back by tensorboard's own readers (matrix-made records equal to protobuf's and
RecordWriter's, the purge on resume, a clear error without tensorboard)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bergab._validate import MissingDependencyError
from bergab.training import CSVLogger, JSONLLogger, LambdaCallback, TensorBoardLogger, fit
from bergab.training import _tensorboard as tbfile
from bergab.training.loggers import masked_crc32c, masked_crc32c_many, tensorboard_available
from tests.fit_helpers import data, model, mse


def record(step: int) -> dict[str, Any]:
    return {"step": step, "epoch": 0, "loss": 1.0 / step, "grad_norm": 2.0 * step, "lr": 0.1,
            "skipped": False, "time": 0.01 * step}  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def read_events(path: Path) -> list[Any]:
    """The ``Event`` protos of an event file, read by tensorboard's record reader, which
    checks both CRCs of every record (``DataLossError`` on a bad one)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    reader = PyRecordReader_New(str(path))
    events = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return events
        events.append(Event.FromString(reader.record()))


def accumulate(folder: Path) -> Any:
    """TensorBoard's view of ``folder`` (every scalar kept, purge events honoured)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def float32(x: float) -> float:
    return torch.tensor(x, dtype=torch.float64).float().item()


# ----------------------------------------------------------------------------- buffering
@pytest.mark.parametrize("cls", [CSVLogger, JSONLLogger])
def test_step_lines_reach_the_file_every_flush_steps(cls: Any, tmp_path: Path) -> None:
    log = cls(tmp_path, flush_secs=1e9, flush_steps=3)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    path = tmp_path / f"steps{cls.suffix}"
    header = 1 if cls is CSVLogger else 0
    seen = []
    for step in range(1, 8):
        log.on_batch_end(None, record(step))
        seen.append(len(lines(path)) - header if path.stat().st_size else 0)
    assert seen == [0, 0, 3, 3, 3, 6, 6]
    log.state_dict()  # a checkpoint writes everything
    assert len(lines(path)) - header == 7
    log.on_batch_end(None, record(8))
    log.close()
    assert len(lines(path)) - header == 8
    if cls is JSONLLogger:
        assert [json.loads(s) for s in lines(path)] == [record(s) for s in range(1, 9)]


def test_flush_secs_zero_writes_every_step(tmp_path: Path) -> None:
    log = CSVLogger(tmp_path, flush_secs=0)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    for step in range(1, 4):
        log.on_batch_end(None, record(step))
        assert len(lines(tmp_path / "steps.csv")) == 1 + step
    log.close()


needs_tensorboard = pytest.mark.skipif(not tensorboard_available(), reason="needs tensorboard")


@pytest.mark.parametrize(
    "cls", [CSVLogger, JSONLLogger, pytest.param(TensorBoardLogger, marks=needs_tensorboard)]
)
def test_flush_arguments_are_checked(cls: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_steps must be"):
        cls(tmp_path, flush_steps=0)
    with pytest.raises(ValueError, match="flush_secs must be"):
        cls(tmp_path, flush_secs=-1.0)
    with pytest.raises(TypeError, match="flush_steps"):
        cls(tmp_path, flush_steps=2.5)


def test_an_exception_mid_run_still_writes_every_finished_step(tmp_path: Path) -> None:
    def crash(trainer: Any, logs: Any) -> None:
        if logs["step"] == 6:
            raise RuntimeError("boom")

    x, y = data()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model(), (x, y), mse, optimizer="sgd", lr=0.05, epochs=3, batch_size=4,
            log_dir=tmp_path, callbacks=[LambdaCallback(on_batch_end=crash)],
            progress=False)  # fmt: skip
    # the crashing callback runs before the loggers: steps 1..5 are logged
    assert len(lines(tmp_path / "steps.csv")) == 1 + 5
    assert [json.loads(s)["step"] for s in lines(tmp_path / "steps.jsonl")] == [1, 2, 3, 4, 5]
    assert len(lines(tmp_path / "records.csv")) == 1 + 1  # the first epoch's record
    if tensorboard_available():
        acc = accumulate(tmp_path)
        assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5]
        assert [e.step for e in acc.Scalars("epoch/loss")] == [4]


# ----------------------------------------------------------------------------- text
def reference_csv(records: list[dict[str, Any]], cols: list[str]) -> str:
    """What the csv module writes, row by row."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in records:
        writer.writerow([r.get(c) for c in cols])
    return buf.getvalue()


def reference_jsonl(records: list[dict[str, Any]]) -> str:
    """json.dumps of every record, non-finite numbers as null."""
    clean = [{k: None if isinstance(v, float) and not math.isfinite(v) else v
              for k, v in r.items()} for r in records]  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in clean)


def random_records(n: int, seed: int) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    special = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e16, 1e-7, 123456789.0, 2.0**-1074]
    out = []
    for step in range(1, n + 1):
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        pick = int(torch.randint(0, 40, (1,), generator=g))
        loss = special[pick] if pick < len(special) else math.exp(40 * u[0] - 20)
        eff = None if pick % 3 == 0 else u[1] * 10.0 ** int(torch.randint(-9, 3, (1,), generator=g))
        out.append({"step": step * 97, "epoch": -pick, "loss": loss, "grad_norm": u[2] * 1e-3,
                    "lr%": u[3], "effective_lr": eff, "skipped": pick % 2 == 0,
                    "time": step / 7})  # fmt: skip
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_csv_and_jsonl_text_is_what_csv_and_json_write(seed: int, tmp_path: Path) -> None:
    records = random_records(300, seed)
    for cls in (CSVLogger, JSONLLogger):
        log = cls(tmp_path, flush_steps=128)
        log.on_fit_start(SimpleNamespace(resumed=False, step=0))
        for r in records:
            log.on_batch_end(None, r)
        log.close()
    with (tmp_path / "steps.csv").open(newline="") as f:
        assert f.read() == reference_csv(records, list(records[0]))
    assert (tmp_path / "steps.jsonl").read_text() == reference_jsonl(records)


def test_records_of_other_shapes_fall_back_to_the_csv_and_json_modules(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"step": 1, "loss": 0.5, "note": 'a "quoted", text'},  # a string: quoted in CSV
        {"step": 2, "loss": 0.25},  # a key missing: empty in CSV
        {"loss": 0.125, "step": 3, "extra": 1},  # other key order and an extra key
        {"step": 4, "loss": torch.tensor(2.0).item(), "note": None},
    ]
    for cls in (CSVLogger, JSONLLogger):
        log = cls(tmp_path, flush_steps=1000)
        log.on_fit_start(SimpleNamespace(resumed=False, step=0))
        for r in records:
            log.on_batch_end(None, r)
        log.close()
    with (tmp_path / "steps.csv").open(newline="") as f:
        assert f.read() == reference_csv(records, ["step", "loss", "note"])
    assert (tmp_path / "steps.jsonl").read_text() == reference_jsonl(records)
    one = CSVLogger(tmp_path / "one")
    one.on_fit_start(SimpleNamespace(resumed=False, step=0))
    for r in [{"x": None}, {"x": 1.5}]:
        one.on_batch_end(None, r)
    one.close()
    with (tmp_path / "one" / "steps.csv").open(newline="") as f:
        assert f.read() == reference_csv([{"x": None}, {"x": 1.5}], ["x"])


# ----------------------------------------------------------------------------- TensorBoard
TAGS = ["train/loss", "train/grad_norm", "lr/lr", "lr/effective_lr"]
SPECIALS = [math.nan, math.inf, -math.inf, 1e39, -1e39, 3.4028235e38, 1e-46, -0.0, 0.0]


def one_by_one(f: Any, walls: list[float], steps: list[int], tags: list[str], values: Any) -> bytes:
    """The records of tensorboard's RecordWriter for protobuf's events, one at a time."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for wall, step, row in zip(walls, steps, values.tolist(), strict=True):
        writer.write(
            f.scalars_event(wall, step, list(zip(tags, row, strict=True))).SerializeToString()
        )
    return buf.getvalue()


@needs_tensorboard
def test_matrix_records_are_protobufs_and_record_writers_bytes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    f = tbfile.EventFile(tmp_path)
    tag_sets = [
        TAGS,
        ["train/loss"],
        [f"epoch/metric_{i}" for i in range(40)],  # a Summary of more than 127 bytes
        ["t/" + "x" * 200, "val/größe", "lr/lr"],  # a tag of more than 127 bytes, UTF-8
    ]
    # steps with varints of 1, 2, 3, 4 and 9 bytes, runs of 2 to 384 events
    runs = [(1, 60), (100, 28), (128, 200), (16000, 384), (2**21, 50), (2**62, 2), (2**63 - 9, 9)]
    for tags in tag_sets:
        for first, n in runs:
            steps = list(range(first, first + n))
            values = torch.randn(n, len(tags), generator=g, dtype=torch.float64) * 1e3
            column = values[:, -1]
            column[::3] = torch.tensor(SPECIALS * n)[: len(column[::3])]
            walls = (1.7e9 + torch.rand(n, generator=g, dtype=torch.float64) * 1e6).tolist()
            got = f.scalar_rows(walls, steps, tags, values.numpy())
            assert got == one_by_one(f, walls, steps, tags, values)
    # steps whose varints differ in length, step 0 (which protobuf leaves out), 2**63 (beyond
    # int64): not as a matrix
    for steps in ([127, 128], [0, 1], [2**63 - 1, 2**63]):
        assert f.scalar_rows([1.7e9] * 2, steps, TAGS, torch.ones(2, 4).numpy()) is None
    f.close()
    assert masked_crc32c_many([b"", b"123456789"]) == [masked_crc32c(b""), 0xC78AB0E5]


def step_values(r: dict[str, Any]) -> list[tuple[str, float]]:
    """The (tag, float32 value) pairs of a step record's event."""
    names = {"loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "lr/lr",
             "effective_lr": "lr/effective_lr", "loss_scale": "train/loss_scale"}  # fmt: skip
    return [(names[k], float32(v)) for k, v in r.items() if k in names]


@needs_tensorboard
def test_event_file_read_back_by_tensorboard(tmp_path: Path) -> None:
    """Name, first record and every event as tensorboard reads them: steps of varints of one
    and two bytes, flushes every 100 steps, evaluation records, all CRCs checked."""
    log = TensorBoardLogger(tmp_path, flush_steps=100)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    steps = [{**record(s), "effective_lr": 1e-3 * s, "loss_scale": 2.0**16} for s in range(1, 251)]
    for rec in steps:
        log.on_batch_end(None, rec)
        if rec["step"] % 60 == 0:
            log.write_record({"step": rec["step"], "epoch": 1, "loss": 0.5, "val_loss": 0.25,
                              "val_acc": 1, "lr": 0.1, "note": "text", "time": 1.0})  # fmt: skip
    log.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    name = rf"events\.out\.tfevents\.\d{{10}}\.{re.escape(socket.gethostname())}\.{os.getpid()}"
    assert re.fullmatch(name, path.name)
    events = read_events(path)
    assert events[0].file_version == "brain.Event:2"
    assert events[0].wall_time > 1e9
    scalars = [(e.step, [(v.tag, v.simple_value) for v in e.summary.value]) for e in events[1:]]
    train = [(s, v) for s, v in scalars if v[0][0].startswith("train/")]
    assert train == [(r["step"], step_values(r)) for r in steps]
    evaluation = [(s, v) for s, v in scalars if not v[0][0].startswith("train/")]
    assert evaluation == [
        (s, [("epoch/loss", 0.5), ("val/loss", 0.25), ("val/acc", 1.0), ("epoch/lr", float32(0.1))])
        for s in (60, 120, 180, 240)
    ]
    walls = [e.wall_time for e in events[1:] if e.summary.value[0].tag == "train/loss"]
    assert walls == sorted(walls)  # each step's own wall time
    acc = accumulate(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("lr/effective_lr")] == [
        (r["step"], float32(r["effective_lr"])) for r in steps
    ]
    assert [e.step for e in acc.Scalars("val/acc")] == [60, 120, 180, 240]


@needs_tensorboard
def test_step_events_are_made_as_matrices_and_one_by_one_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step events go into the file as matrices (RecordWriter writes only the first record
    and the evaluation records); without a layout they go one by one, and read the same."""
    written = []
    write_event = tbfile.EventFile.write_event
    monkeypatch.setattr(tbfile.EventFile, "write_event",
                        lambda self, e: written.append(e) or write_event(self, e))  # fmt: skip

    def run(folder: Path) -> list[tuple[int, list[tuple[str, float]]]]:
        written.clear()
        log = TensorBoardLogger(folder, flush_steps=1000)
        log.on_fit_start(SimpleNamespace(resumed=False, step=0))
        for step in range(1, 2001):
            log.on_batch_end(None, record(step))
            if step % 500 == 0:
                log.write_record({"step": step, "epoch": 0, "loss": 1.0})
        log.close()
        (path,) = folder.glob("events.out.tfevents.*")
        return [(e.step, [(v.tag, v.simple_value) for v in e.summary.value])
                for e in read_events(path)]  # fmt: skip

    matrices = run(tmp_path / "matrices")
    assert len(written) == 1 + 4  # file_version and the 4 evaluation records
    monkeypatch.setattr(tbfile, "_LAYOUTS", {})  # the layouts found so far, forgotten
    monkeypatch.setattr(tbfile, "_find_layout", lambda *args: None)
    assert run(tmp_path / "one_by_one") == matrices
    assert len(written) == 1 + 2000 + 4


@needs_tensorboard
def test_tensorboard_values_beyond_float32_are_infinite(tmp_path: Path) -> None:
    log = TensorBoardLogger(tmp_path)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    for step, gn in [(1, 1e39), (2, -1e39), (3, math.nan), (4, 3.0)]:
        log.on_batch_end(None, {**record(step), "grad_norm": gn})
    log.write_record({"step": 4, "epoch": 0, "loss": 0.5, "val_loss": 0.25})
    log.close()
    acc = accumulate(tmp_path)
    values = [e.value for e in acc.Scalars("train/grad_norm")]
    assert values[:2] == [math.inf, -math.inf]
    assert math.isnan(values[2])
    assert values[3] == 3.0
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [(e.step, e.value) for e in acc.Scalars("val/loss")] == [(4, 0.25)]


@needs_tensorboard
def test_tensorboard_runs_with_missing_values_and_step_widths_read_back(tmp_path: Path) -> None:
    log = TensorBoardLogger(tmp_path, flush_steps=10_000)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    expected = []
    for step in range(1, 400):  # varints of 1 and 2 bytes; eff. lr None for a while
        rec = {**record(step), "effective_lr": None if 150 <= step < 160 else step / 1000}
        log.on_batch_end(None, rec)
        if step % 100 == 0:
            log.write_record({"step": step, "epoch": 0, "loss": 1.0 / step})
        expected.append(rec)
    log.close()
    acc = accumulate(tmp_path)
    got = [(e.step, e.value) for e in acc.Scalars("train/grad_norm")]
    assert got == [(r["step"], float32(r["grad_norm"])) for r in expected]
    eff = [(e.step, e.value) for e in acc.Scalars("lr/effective_lr")]
    assert [s for s, _ in eff] == [r["step"] for r in expected if r["effective_lr"] is not None]
    assert [e.step for e in acc.Scalars("epoch/loss")] == [100, 200, 300]


@needs_tensorboard
def test_resume_purges_the_interrupted_runs_later_steps(tmp_path: Path) -> None:
    """A run logs steps 1-10 (all written; validation at 4 and 8) and dies; it resumes from
    its checkpoint at step 6 and logs steps 7-12 with other values (validation at 12) in a
    second file. TensorBoard shows each step once, those after 6 from the resumed run: the
    second file starts with a SessionLog.START at step 7."""

    def run(resumed_from: int | None, steps: range, sign: float, validate: set[int]) -> None:
        log = TensorBoardLogger(tmp_path, flush_steps=3)
        log.on_fit_start(SimpleNamespace(resumed=resumed_from is not None, step=resumed_from))
        for step in steps:
            log.on_batch_end(None, {**record(step), "loss": sign * step})
            if step in validate:
                log.write_record({"step": step, "epoch": 0, "loss": 1.0, "val_loss": sign})
        log.close()

    run(None, range(1, 11), 1.0, {4, 8})
    run(6, range(7, 13), -1.0, {12})
    second = sorted(tmp_path.glob("events.out.tfevents.*"))[1]
    events = read_events(second)
    assert events[1].step == 7
    assert events[1].session_log.status == events[1].session_log.START
    acc = accumulate(tmp_path)
    expected = [(s, float(s)) for s in range(1, 7)] + [(s, -float(s)) for s in range(7, 13)]
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == expected
    assert [(e.step, e.value) for e in acc.Scalars("val/loss")] == [(4, 1.0), (12, -1.0)]
    # the same second file without the START event: the dead run's validation at 8 shows
    from tensorboard.summary.writer.record_writer import RecordWriter

    with second.open("wb") as out:
        writer = RecordWriter(out)
        for e in events:
            if not e.HasField("session_log"):
                writer.write(e.SerializeToString())
    assert [e.step for e in accumulate(tmp_path).Scalars("val/loss")] == [4, 8, 12]


def test_a_missing_tensorboard_is_named_with_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without tensorboard, TensorBoardLogger raises an ImportError naming bergab[log]; fit
    with log_dir writes its CSV and JSONL logs and no event file."""
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # None: the import fails
    assert not tensorboard_available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'bergab\[log\]'") as info:
        TensorBoardLogger(tmp_path)
    assert isinstance(info.value, ImportError)
    x, y = data()
    fit(model(), (x, y), mse, optimizer="sgd", lr=0.05, max_steps=3, batch_size=4,
        log_dir=tmp_path, progress=False)  # fmt: skip
    assert len(lines(tmp_path / "steps.csv")) == 1 + 3
    assert not list(tmp_path.glob("events.out.tfevents.*"))


# ----------------------------------------------------------------------------- rollback
def test_a_nan_rollback_cuts_the_pending_and_written_lines_of_the_undone_steps(
    tmp_path: Path,
) -> None:
    """Checkpoint at step 4, steps 5-6 logged (pending, or written with flush_secs=0), a NaN
    at step 7: the logs hold steps 1-12 once, those after step 4 with the halved lr (the
    bergab optimizer's effective lr)."""
    calls = {"n": 0}

    def nan_at_7(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return mse(out, t) * (math.nan if calls["n"] == 7 else 1.0)

    x, y = data()
    for flush_secs in (1e9, 0.0):
        calls["n"] = 0
        logs = tmp_path / f"logs{flush_secs}"
        loggers: list[Any] = [CSVLogger(logs, flush_secs=flush_secs),
                              JSONLLogger(logs, flush_secs=flush_secs)]  # fmt: skip
        if tensorboard_available():
            loggers.append(TensorBoardLogger(logs, flush_secs=flush_secs))
        h = fit(model(), (x, y), nan_at_7, optimizer="sgd", lr=0.1, epochs=3, batch_size=4,
                nan_policy="rollback", checkpoint_dir=tmp_path / f"ckpt{flush_secs}",
                checkpoint_every=4, callbacks=loggers, seed=0, progress=False)  # fmt: skip
        assert h.steps["step"] == list(range(1, 13))
        assert h.steps["effective_lr"] == [0.1] * 4 + [0.05] * 8
        rows = [json.loads(s) for s in lines(logs / "steps.jsonl")]
        assert [r["step"] for r in rows] == h.steps["step"]
        assert [r["effective_lr"] for r in rows] == h.steps["effective_lr"]
        assert [r["loss"] for r in rows] == h.steps["loss"]
        with (logs / "steps.csv").open(newline="") as f:
            assert [float(r["loss"]) for r in csv.DictReader(f)] == h.steps["loss"]
        if tensorboard_available():
            acc = accumulate(logs)
            got = [(e.step, e.value) for e in acc.Scalars("lr/effective_lr")]
            assert got == [
                (s, pytest.approx(lr)) for s, lr in enumerate(h.steps["effective_lr"], 1)
            ]
