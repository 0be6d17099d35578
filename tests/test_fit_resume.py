"""Exact resume: a run killed (SIGKILL, or an exception) and resumed ends bit for bit like a
run never interrupted: weights, optimizer state, history, logs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bergab import schedules
from bergab.training import (
    CHECKPOINT_FORMAT,
    Callback,
    History,
    ReduceLROnPlateau,
    Trainer,
    fit,
    load_checkpoint,
)

WORKER = Path(__file__).with_name("_resume_worker.py")
mse = nn.functional.mse_loss


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_resume_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("time", None)
    return rows


def assert_same_tensors(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_tensors(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


def strip_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def assert_same_history(a: History, b: History) -> None:
    assert {k: v for k, v in a.steps.items() if k != "time"} == {
        k: v for k, v in b.steps.items() if k != "time"
    }
    assert strip_time(a.records) == strip_time(b.records)
    assert a.stop_reason == b.stop_reason


# ----------------------------------------------------------------------------- SIGKILL
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(
    tmp_path: Path, one_thread: None
) -> None:
    worker = load_worker()
    ref = worker.train(tmp_path / "ref", tmp_path / "ref_logs")

    ckpt, logs = tmp_path / "run", tmp_path / "run_logs"
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(ckpt), str(logs), "--slow", "0.03"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the worker never reached step 15"
            try:
                state = load_checkpoint(ckpt / "last.pt")["fit"]
            except (FileNotFoundError, RuntimeError, EOFError):
                state = None
            if state is not None and state["step"] >= 15:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed = load_checkpoint(ckpt / "last.pt")["fit"]
    assert 0 < killed["batch_in_epoch"] < worker.STEPS_PER_EPOCH  # killed mid-epoch
    assert killed["step"] < worker.EPOCHS * worker.STEPS_PER_EPOCH

    resumed = worker.train(ckpt, logs)
    for p, q in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(ckpt / "last.pt")
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["optimizer"], b["optimizer"])
    assert_same_tensors(a["callbacks"][0]["state"], b["callbacks"][0]["state"])  # early stopping
    assert csv_rows(tmp_path / "ref_logs" / "steps.csv") == csv_rows(logs / "steps.csv")
    assert csv_rows(tmp_path / "ref_logs" / "records.csv") == csv_rows(logs / "records.csv")
    assert len(csv_rows(logs / "steps.csv")) == worker.EPOCHS * worker.STEPS_PER_EPOCH


# ----------------------------------------------------------------------------- in-process crashes
class CrashError(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Trainer, logs: Any) -> None:
        if logs["step"] == self.step:
            raise CrashError


def data(n: int = 40, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, torch.tanh(x @ torch.randn(d, 1, generator=g))


def mlp(d: int = 4) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))


class Pairs(Dataset[Any]):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def config(name: str) -> tuple[Callable[[], dict[str, Any]], int]:  # noqa: PLR0911
    """fit kwargs (built fresh for every run) and the step to crash at."""
    x, y = data()
    xv, yv = data(n=16, seed=1)

    def base(**kw: Any) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            model = mlp()
            out = {
                "model": model,
                "train_data": (x, y),
                "loss_fn": mse,
                "val_data": (xv, yv),
                "optimizer": "momentum",
                "lr": 0.05,
                "epochs": 4,
                "batch_size": 8,
                "checkpoint_every": 2,
                "seed": 0,
            }
            for key, value in kw.items():
                out[key] = value(model) if callable(value) and key in ("optimizer",) else value
            return out

        return make

    if name == "tensors":
        return base(), 7
    if name == "loader_generator":

        def loader() -> DataLoader[Any]:
            return DataLoader(
                TensorDataset(x, y), batch_size=6, shuffle=True,
                generator=torch.Generator().manual_seed(5),
            )  # fmt: skip

        make = base(accumulation_steps=2, batch_size=None)

        def make_loader() -> dict[str, Any]:
            kw = make()
            kw["train_data"] = loader()
            return kw

        return make_loader, 5
    if name == "dataset_epoch_checkpoints":
        return base(train_data=Pairs(x, y), checkpoint_every=None), 13
    if name == "schedulefree":
        return base(optimizer="schedulefree_adamw", lr=5e-3, val_every=3), 8
    if name == "torch_adam_schedule_plateau":
        sched = schedules.warmup(schedules.cosine(1e-2, 20), steps=4)
        make = base(optimizer=lambda m: torch.optim.Adam(m.parameters()), lr=sched, clip_norm=0.5)

        def with_plateau() -> dict[str, Any]:
            kw = make()
            kw["callbacks"] = [ReduceLROnPlateau(patience=0, factor=0.5)]
            return kw

        return with_plateau, 11
    if name == "metric_driven_schedule":
        make = base(optimizer="sgd")

        def fresh_schedule() -> dict[str, Any]:  # the schedule holds state: one per run
            kw = make()
            kw["lr"] = schedules.warmup(schedules.ReduceOnPlateau(0.05, patience=0), steps=3)
            return kw

        return fresh_schedule, 9
    if name == "train_metrics":  # the metric sums of the epoch are in the checkpoint
        mae = lambda out, t: (out - t).abs().mean()  # noqa: E731
        return base(metrics={"mae": mae}, train_metrics=True), 7
    if name == "two_groups_torch_plateau":  # fit's schedule keeps the groups' ratio
        make = base(
            optimizer=lambda m: torch.optim.SGD(
                [{"params": m[0].parameters()}, {"params": m[3].parameters(), "lr": 0.3}], lr=0.1
            )
        )

        def two_groups() -> dict[str, Any]:
            kw = make()
            kw["lr"] = schedules.warmup(schedules.ReduceOnPlateau(0.05, patience=0), steps=3)
            return kw

        return two_groups, 9
    if name == "bf16":
        return base(precision="bf16"), 6
    if name == "fp16_scaler":
        return base(precision="fp16", optimizer="adam", lr=1e-2), 6
    raise AssertionError(name)


CONFIGS = [
    "tensors",
    "loader_generator",
    "dataset_epoch_checkpoints",
    "schedulefree",
    "torch_adam_schedule_plateau",
    "metric_driven_schedule",
    "train_metrics",
    "two_groups_torch_plateau",
    "bf16",
    "fp16_scaler",
]


@pytest.mark.parametrize("name", CONFIGS)
def test_crash_and_resume_is_bitwise_identical(name: str, tmp_path: Path) -> None:
    make, crash = config(name)
    ref_kw = make()
    h_ref = fit(**ref_kw, checkpoint_dir=tmp_path / "ref", log_dir=tmp_path / "ref_logs",
                progress=False)  # fmt: skip

    kw = make()
    with pytest.raises(CrashError):
        fit(**{**kw, "callbacks": [*kw.get("callbacks", []), CrashAt(crash)]},
            checkpoint_dir=tmp_path / "run", log_dir=tmp_path / "logs", progress=False)  # fmt: skip
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["fit"]
    assert saved["step"] < crash
    kw = make()
    h = fit(**{**kw, "callbacks": [*kw.get("callbacks", []), CrashAt(-1)]},
            checkpoint_dir=tmp_path / "run", log_dir=tmp_path / "logs", resume=True,
            progress=False)  # fmt: skip

    for p, q in zip(
        ref_kw["model"].state_dict().values(), kw["model"].state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)
    a, b = (
        load_checkpoint(tmp_path / "ref" / "last.pt"),
        load_checkpoint(tmp_path / "run" / "last.pt"),
    )
    assert_same_tensors(a["optimizer"], b["optimizer"])
    assert_same_tensors(a["scaler"], b["scaler"])
    assert_same_tensors(a["scheduler"], b["scheduler"])
    assert_same_tensors(a["schedules"], b["schedules"])
    assert_same_history(h_ref, h)
    assert csv_rows(tmp_path / "ref_logs" / "steps.csv") == csv_rows(
        tmp_path / "logs" / "steps.csv"
    )
    ref_lines = [
        json.loads(s) for s in (tmp_path / "ref_logs" / "records.jsonl").read_text().splitlines()
    ]
    lines = [json.loads(s) for s in (tmp_path / "logs" / "records.jsonl").read_text().splitlines()]
    assert strip_time(ref_lines) == strip_time(lines)
    if name == "tensors":  # TensorBoard: the undone steps are purged on resume
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ref_acc, acc = (
            EventAccumulator(str(tmp_path / "ref_logs")),
            EventAccumulator(str(tmp_path / "logs")),
        )
        ref_acc.Reload()
        acc.Reload()
        assert len(list((tmp_path / "logs").glob("events.out.tfevents.*"))) == 2
        for tag in ("train/loss", "lr/lr", "val/loss"):
            got = [(e.step, e.value) for e in acc.Scalars(tag)]
            assert got == [(e.step, e.value) for e in ref_acc.Scalars(tag)]


def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_stays_finished(
    tmp_path: Path,
) -> None:
    x, y = data()
    m1, m2 = mlp(), mlp()
    kw = {"epochs": 2, "batch_size": 8, "seed": 0, "progress": False}
    fit(m1, (x, y), mse, **kw)
    h = fit(m2, (x, y), mse, checkpoint_dir=tmp_path, resume=True, **kw)
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
    m3 = mlp()
    h3 = fit(m3, (x, y), mse, checkpoint_dir=tmp_path, resume=True, **kw)
    assert len(h3) == len(h)
    for p, q in zip(m2.parameters(), m3.parameters(), strict=True):
        assert torch.equal(p, q)
    # resume from an explicit file into a longer run continues from its position
    m4 = mlp()
    h4 = fit(m4, (x, y), mse, resume=tmp_path / "last.pt", **{**kw, "epochs": 3})
    assert len(h) == 10
    assert len(h4) == 15
    assert h4.steps["loss"][:10] == h.steps["loss"]
    m5 = mlp()
    h5 = fit(m5, (x, y), mse, **{**kw, "epochs": 3})
    assert h5.steps["loss"][:10] == h.steps["loss"]


def test_a_finished_run_resumed_again_keeps_its_checkpoint_and_extends_exactly(
    tmp_path: Path,
) -> None:
    x, y = data()
    kw: dict[str, Any] = {"batch_size": 8, "seed": 0, "val_data": (x, y), "progress": False}
    fit(mlp(), (x, y), mse, max_steps=7, checkpoint_dir=tmp_path, **kw)  # stops mid-epoch
    first = load_checkpoint(tmp_path / "last.pt")
    torch.rand(5)  # the caller's RNG moves on
    fit(mlp(), (x, y), mse, max_steps=7, checkpoint_dir=tmp_path, resume=True, **kw)
    again = load_checkpoint(tmp_path / "last.pt")
    assert_same_tensors(first["rng"], again["rng"])
    assert_same_tensors(first["model"], again["model"])
    m_long, m_ext = mlp(), mlp()
    fit(m_long, (x, y), mse, max_steps=13, **kw)
    fit(m_ext, (x, y), mse, max_steps=13, checkpoint_dir=tmp_path, resume=True, **kw)
    for p, q in zip(m_long.parameters(), m_ext.parameters(), strict=True):
        assert torch.equal(p, q)


def test_checkpoint_loads_with_weights_only_and_holds_everything(tmp_path: Path) -> None:
    x, y = data()
    fit(mlp(), (x, y), mse, val_data=(x, y), epochs=1, batch_size=8, precision="fp16", seed=0,
        checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert {
        "model",
        "optimizer",
        "scaler",
        "scheduler",
        "callbacks",
        "history",
        "fit",
        "rng",
    } <= set(ckpt)
    assert set(ckpt["rng"]) == {"torch", "numpy", "python", "cuda"}
    assert ckpt["scaler"]["scale"] > 0
    assert ckpt["fit"]["epoch"] == 1
    assert ckpt["fit"]["step"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_with_a_different_setup_fails_clearly(tmp_path: Path) -> None:
    x, y = data()
    fit(mlp(), (x, y), mse, optimizer="sgd", lr=0.1, max_steps=3, checkpoint_dir=tmp_path,
        progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="resume with the same optimizer"):
        fit(mlp(), (x, y), mse, optimizer=torch.optim.SGD, lr=0.1, max_steps=6,
            checkpoint_dir=tmp_path, resume=True, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="resume: the checkpoint's model state does not fit"):
        fit(nn.Linear(4, 1), (x, y), mse, optimizer="sgd", lr=0.1, max_steps=6,
            checkpoint_dir=tmp_path, resume=True, progress=False)  # fmt: skip


def test_resume_refuses_what_is_not_a_fit_checkpoint(tmp_path: Path) -> None:
    x, y = data()
    weights = tmp_path / "weights.pt"
    torch.save(mlp().state_dict(), weights)
    with pytest.raises(ValueError, match=r"resume: .*weights.pt' is not a bergab fit checkpoint"):
        fit(mlp(), (x, y), mse, resume=weights, max_steps=2, progress=False)
    folder = tmp_path / "runs"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"resume: .*runs' is a directory, not a"):
        fit(mlp(), (x, y), mse, resume=folder, max_steps=2, progress=False)
    (folder / "last.pt").mkdir()  # resume=True with last.pt a folder: not "start fresh"
    with pytest.raises(IsADirectoryError, match=r"last.pt' is a directory"):
        fit(mlp(), (x, y), mse, resume=True, checkpoint_dir=folder, max_steps=2,
            progress=False)  # fmt: skip


def test_resume_with_another_optimizer_says_so_before_loading(tmp_path: Path) -> None:
    x, y = data()
    fit(mlp(), (x, y), mse, optimizer="adamw", lr=0.01, max_steps=2, checkpoint_dir=tmp_path,
        progress=False)  # fmt: skip
    last = tmp_path / "last.pt"
    assert load_checkpoint(last)["optimizer_class"].endswith(".AdamW")
    with pytest.raises(ValueError, match=r"resume: the checkpoint's optimizer is .*AdamW.*SGD"):
        fit(mlp(), (x, y), mse, optimizer="sgd", lr=0.1, resume=last, max_steps=4,
            progress=False)  # fmt: skip
    # an older checkpoint without the class: the param groups' settings tell
    ckpt = load_checkpoint(last)
    del ckpt["optimizer_class"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="resume: the checkpoint's optimizer differs"):
        fit(mlp(), (x, y), mse, optimizer="sgd", lr=0.1, resume=tmp_path / "old.pt",
            max_steps=4, progress=False)  # fmt: skip
    h = fit(mlp(), (x, y), mse, optimizer="adamw", lr=0.01, resume=tmp_path / "old.pt",
            max_steps=4, progress=False)  # fmt: skip
    assert len(h) == 4
