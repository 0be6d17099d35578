"""fit's logs written in batches: the vectorized TensorBoard checksum against the plain
one, when buffered lines reach the files, and that nothing is lost when a run ends by an
exception."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bergab.training import CSVLogger, JSONLLogger, LambdaCallback, TensorBoardLogger, fit
from bergab.training.loggers import masked_crc32c, masked_crc32c_many, tensorboard_available
from tests.fit_helpers import data, model, mse


def record(step: int) -> dict[str, Any]:
    return {"step": step, "epoch": 0, "loss": 1.0 / step, "grad_norm": 2.0 * step, "lr": 0.1,
            "skipped": False, "time": 0.01 * step}  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# ----------------------------------------------------------------------------- checksums
def test_vectorized_crc_equals_the_plain_one_and_tensorboards() -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    g = torch.Generator().manual_seed(0)
    # lengths with every remainder mod 4; counts below and above the vectorized threshold
    sizes = [(0, 3), (1, 60), (3, 5), (4, 100), (7, 49), (8, 48), (90, 300), (91, 47), (201, 64)]
    messages = [
        bytes(torch.randint(0, 256, (length,), generator=g).tolist())
        for length, count in sizes
        for _ in range(count)
    ]
    order = torch.randperm(len(messages), generator=g).tolist()  # lengths interleaved
    messages = [messages[i] for i in order]
    got = masked_crc32c_many(messages)
    assert got == [masked_crc32c(m) for m in messages]
    assert got == [reference(m) for m in messages]
    assert masked_crc32c_many([]) == []
    assert masked_crc32c_many([b"\xff" * 12] * 50) == [reference(b"\xff" * 12)] * 50


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


@pytest.mark.parametrize("cls", [CSVLogger, JSONLLogger, TensorBoardLogger])
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
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5]
        assert [e.step for e in acc.Scalars("epoch/loss")] == [4]


def test_tensorboard_values_beyond_float32_are_infinite(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = TensorBoardLogger(tmp_path)
    log.on_fit_start(SimpleNamespace(resumed=False, step=0))
    for step, gn in [(1, 1e39), (2, -1e39), (3, math.nan), (4, 3.0)]:
        log.on_batch_end(None, {**record(step), "grad_norm": gn})
    log.write_record({"step": 4, "epoch": 0, "loss": 0.5, "val_loss": 0.25})
    log.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    values = [e.value for e in acc.Scalars("train/grad_norm")]
    assert values[:2] == [math.inf, -math.inf]
    assert math.isnan(values[2])
    assert values[3] == 3.0
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [(e.step, e.value) for e in acc.Scalars("val/loss")] == [(4, 0.25)]
    wall = [e.wall_time for e in acc.Scalars("train/loss")]
    assert wall == sorted(wall)  # each step's own wall time
    assert wall[0] > 1e9


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


# ----------------------------------------------------------------------------- TensorBoard bytes
def test_tensorboard_events_encoded_as_a_matrix_equal_the_one_by_one_bytes(tmp_path: Path) -> None:
    from bergab.training.loggers import _EventFile

    g = torch.Generator().manual_seed(0)
    f = _EventFile(tmp_path)
    tags = ["train/loss", "train/grad_norm", "lr/lr", "lr/effective_lr"]
    specials = [math.nan, math.inf, -math.inf, 1e39, -1e39, 3.4028235e38, 1e-46, -0.0]
    for first, n in [(1, 60), (100, 28), (128, 200), (16000, 384), (2**21, 50)]:
        steps = list(range(first, first + n))
        values = torch.randn(n, len(tags), generator=g, dtype=torch.float64) * 1e3
        values[::7, 1] = torch.tensor(specials * (len(values[::7]) // len(specials) + 1))[
            : len(values[::7])
        ]
        walls = (1.7e9 + torch.rand(n, generator=g, dtype=torch.float64) * 1e6).tolist()
        one_by_one = [
            f.scalars_event(w, s, list(zip(tags, row, strict=True)))
            for w, s, row in zip(walls, steps, values.tolist(), strict=True)
        ]
        if ((first + n - 1).bit_length() + 6) // 7 != (first.bit_length() + 6) // 7:
            with pytest.raises(ValueError, match="varints of one length"):
                f.scalar_rows(walls, steps, tags, values.numpy())
            continue
        assert f.scalar_rows(walls, steps, tags, values.numpy()) == f.frame(one_by_one)
    f.close()


def test_tensorboard_runs_with_missing_values_and_step_widths_read_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("train/grad_norm")]
    assert got == [(r["step"], pytest.approx(r["grad_norm"], rel=1e-7)) for r in expected]
    eff = [(e.step, e.value) for e in acc.Scalars("lr/effective_lr")]
    assert [s for s, _ in eff] == [r["step"] for r in expected if r["effective_lr"] is not None]
    assert [e.step for e in acc.Scalars("epoch/loss")] == [100, 200, 300]


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
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            acc = EventAccumulator(str(logs))
            acc.Reload()
            got = [(e.step, e.value) for e in acc.Scalars("lr/effective_lr")]
            assert got == [
                (s, pytest.approx(lr)) for s, lr in enumerate(h.steps["effective_lr"], 1)
            ]
