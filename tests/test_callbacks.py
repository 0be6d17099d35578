"""Callbacks: EarlyStopping (Keras rules, best weights restored whatever ended the run),
ReduceLROnPlateau (torch's rules, composing with schedules), ModelCheckpoint, loggers,
the progress bar."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from bergab import schedules
from bergab.training import (
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteError,
    ProgressBar,
    ReduceLROnPlateau,
    fit,
)
from bergab.training import _fit as fit_module
from tests.fit_helpers import data, model, mse


def scripted(values: list[float]) -> Callable[[Any, Any], float]:
    """A validation metric returning the given values in turn."""
    it: Iterator[float] = iter(values)
    return lambda out, y: next(it)


class FakeTrainer(SimpleNamespace):
    def stop(self, reason: str) -> None:
        self.should_stop = True
        self.stop_reason = reason


# ----------------------------------------------------------------------------- EarlyStopping
def keras_stop_index(values: list[float], patience: int, min_delta: float, mode: str) -> int | None:
    """Keras' EarlyStopping written plainly: the index of the evaluation that stops."""
    best = math.inf if mode == "min" else -math.inf
    wait = 0
    for i, v in enumerate(values):
        better = v < best - min_delta if mode == "min" else v > best + min_delta
        if better:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience:
                return i
    return None


@pytest.mark.parametrize(
    ("values", "patience", "min_delta", "mode"),
    [
        ([5, 4, 4.5, 4.2, 3.9, 4, 4.1, 4.2], 2, 0.0, "min"),
        ([5, 4, 3.95, 3.9, 3.85, 3.8], 1, 0.1, "min"),
        ([0.1, 0.5, 0.4, 0.6, 0.6, 0.55, 0.5], 3, 0.0, "max"),
        ([1.0, float("nan"), float("nan"), 0.5], 2, 0.0, "min"),
        ([3, 2, 1], 0, 0.0, "min"),
    ],
)
def test_early_stopping_follows_keras_rules(
    values: list[float], patience: int, min_delta: float, mode: str
) -> None:
    x, y = data()
    es = EarlyStopping("val_score", patience=patience, min_delta=min_delta, mode=mode)
    h = fit(model(), (x, y), mse, val_data=(x, y), metrics={"score": scripted(values)},
            optimizer="sgd", lr=0.01, epochs=len(values), batch_size="full",
            callbacks=[es], progress=False)  # fmt: skip
    expected = keras_stop_index(values, patience, min_delta, mode)
    if expected is None:
        assert h.stop_reason == "epochs"
        assert len(h.records) == len(values)
    else:
        assert h.stop_reason.startswith("early stopping: val_score did not improve")
        assert len(h.records) == expected + 1


def weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("ending", ["max_steps", "early_stopping", "nan"])
def test_early_stopping_restores_the_best_weights_whatever_ended_the_run(ending: str) -> None:
    x, y = data()
    values = [3.0, 2.0, 1.0, 1.5, 2.5, 2.6, 2.7, 2.8]
    snapshots: dict[int, list[torch.Tensor]] = {}
    snap = LambdaCallback(
        on_validation_end=lambda t, logs: snapshots.update({t.step: weights(t.model)})
    )
    calls = {"n": 0}

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls["n"] += out.requires_grad  # count training calls only
        loss = mse(out, t)
        return loss * math.nan if ending == "nan" and calls["n"] == 6 else loss

    m = model()
    kw: dict[str, Any] = {"max_steps": 5} if ending == "max_steps" else {"epochs": 8}
    patience = 2 if ending == "early_stopping" else 10
    es = EarlyStopping("val_score", patience=patience, mode="min")
    run = lambda: fit(m, (x, y), loss_fn, val_data=(x, y), metrics={"score": scripted(values)},  # noqa: E731
                      optimizer="sgd", lr=0.05, batch_size="full", callbacks=[es, snap],
                      progress=False, **kw)  # fmt: skip
    if ending == "nan":
        with pytest.raises(NonFiniteError):
            run()
    else:
        h = run()
        assert h.best_by("val_score")["step"] == 3
    assert es.best_step == 3
    assert all(torch.equal(p, q) for p, q in zip(weights(m), snapshots[3], strict=True))
    last = max(snapshots)
    assert last > 3
    assert not all(torch.equal(p, q) for p, q in zip(snapshots[last], snapshots[3], strict=True))


def test_ctrl_c_ends_the_run_cleanly_and_restores_the_best_weights(tmp_path: Path) -> None:
    x, y = data()
    values = [2.0, 1.0, 3.0, 4.0]
    snapshots: dict[int, list[torch.Tensor]] = {}

    def on_val(t: Any, logs: Any) -> None:
        snapshots[t.step] = weights(t.model)
        if t.step == 4:
            raise KeyboardInterrupt

    m = model()
    es = EarlyStopping("val_score", patience=10, mode="min")
    with pytest.raises(KeyboardInterrupt):
        fit(m, (x, y), mse, val_data=(x, y), metrics={"score": scripted(values)},
            optimizer="sgd", lr=0.05, epochs=8, batch_size="full", log_dir=tmp_path,
            callbacks=[es, LambdaCallback(on_validation_end=on_val)], progress=False)  # fmt: skip
    assert es.best_step == 2
    assert all(torch.equal(p, q) for p, q in zip(weights(m), snapshots[2], strict=True))
    lines = (tmp_path / "steps.csv").read_text().splitlines()
    assert len(lines) == 1 + 4  # the files were flushed and closed


def test_early_stopping_validates_and_needs_validation() -> None:
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'min', 'max'"):
        EarlyStopping(mode="up")
    x, y = data()
    with pytest.raises(ValueError, match="monitors 'val_loss', but fit\\(\\) has no val_data"):
        fit(model(), (x, y), mse, early_stopping={"patience": 2}, progress=False)
    with pytest.raises(ValueError, match="monitor 'val_acc' is not logged; available here: "):
        fit(model(), (x, y), mse, val_data=(x, y), early_stopping=EarlyStopping("val_acc"),
            progress=False)  # fmt: skip


def test_early_stopping_on_training_loss_at_epoch_ends() -> None:
    es = EarlyStopping("loss", patience=1)
    t = FakeTrainer(
        step=0, should_stop=False, stop_reason=None, model=model(), has_validation=False
    )
    es.on_fit_start(t)  # type: ignore[arg-type]
    es.on_validation_end(t, {"val_loss": 0.0})  # type: ignore[arg-type]  # ignored: not monitored
    for step, loss in enumerate([1.0, 0.5, 0.7], start=1):
        t.step = step
        es.on_epoch_end(t, {"loss": loss})  # type: ignore[arg-type]
    assert t.should_stop
    assert es.best_step == 2


# ----------------------------------------------------------------------------- ReduceLROnPlateau
@pytest.mark.parametrize(
    "kwargs",
    [
        {"factor": 0.5, "patience": 1},
        {"factor": 0.1, "patience": 0, "cooldown": 2},
        {"factor": 0.5, "patience": 0, "threshold": 0.1, "threshold_mode": "abs", "min_scale": 0.2},
        {"factor": 0.5, "patience": 1, "mode": "max"},
    ],
)
def test_reduce_lr_on_plateau_matches_torch(kwargs: dict[str, Any]) -> None:
    x, y = data()
    values = [1.0, 0.9, 0.95, 0.93, 0.92, 0.97, 0.85, 0.86, 0.9, 0.91, 0.95, 0.99]
    cb = ReduceLROnPlateau("val_score", **{"mode": "min", **kwargs})
    h = fit(model(), (x, y), mse, val_data=(x, y), metrics={"score": scripted(values)},
            optimizer=torch.optim.SGD, lr=0.1, epochs=len(values), batch_size="full",
            callbacks=[cb], progress=False)  # fmt: skip
    # torch's ReduceLROnPlateau on the same metrics
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    torch_kw = {k: v for k, v in kwargs.items() if k != "min_scale"}
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, min_lr=0.1 * kwargs.get("min_scale", 0.0), eps=0.0, **torch_kw
    )
    expected = []
    for v in values:
        expected.append(opt.param_groups[0]["lr"])
        ref.step(v)
    assert h.steps["lr"] == pytest.approx(expected, rel=1e-12)


def test_reduce_lr_on_plateau_composes_with_warmup_on_a_bergab_optimizer() -> None:
    x, y = data()
    values = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    sched = schedules.warmup(schedules.constant(0.1), steps=4)
    cb = ReduceLROnPlateau("val_score", factor=0.5, patience=0, mode="min")
    h = fit(model(), (x, y), mse, val_data=(x, y), metrics={"score": scripted(values)},
            optimizer="sgd", lr=sched, epochs=8, batch_size="full", callbacks=[cb],
            progress=False)  # fmt: skip
    factors = [1.0, 1.0, 0.5, 0.25, 0.125, 0.125, 0.0625, 0.03125]
    assert h.steps["lr"] == pytest.approx([sched(t) for t in range(8)])  # the schedule runs on
    assert h.steps["effective_lr"] == pytest.approx([sched(t) * f for t, f in enumerate(factors)])


# ----------------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_keeps_the_k_best(tmp_path: Path) -> None:
    x, y = data()
    values = [3.0, 1.0, 2.0, 0.5, 4.0, 0.7]
    snapshots: dict[int, list[torch.Tensor]] = {}
    snap = LambdaCallback(
        on_validation_end=lambda t, logs: snapshots.update({t.step: weights(t.model)})
    )
    mc = ModelCheckpoint(monitor="val_score", mode="min", keep=2)
    fit(model(), (x, y), mse, val_data=(x, y), metrics={"score": scripted(values)},
        optimizer="sgd", lr=0.05, epochs=6, batch_size="full", checkpoint_dir=tmp_path,
        callbacks=[mc, snap], progress=False)  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == ["best-step4-val_score=0.5.pt", "best-step6-val_score=0.7.pt"]
    assert mc.best_path == str(tmp_path / "models" / "best-step4-val_score=0.5.pt")
    saved = torch.load(mc.best_path, weights_only=True)
    assert saved["step"] == 4
    assert saved["value"] == 0.5
    assert all(
        torch.equal(a, b) for a, b in zip(saved["model"].values(), snapshots[4], strict=True)
    )


def test_model_checkpoint_last_keeps_the_newest(tmp_path: Path) -> None:
    x, y = data()
    mc = ModelCheckpoint(tmp_path / "m", save="last", keep=2)
    fit(model(), (x, y), mse, epochs=4, batch_size=8, callbacks=[mc], progress=False)
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["epoch2-step6.pt", "epoch3-step8.pt"]
    with pytest.raises(ValueError, match="ModelCheckpoint needs a folder"):
        fit(model(), (x, y), mse, callbacks=[ModelCheckpoint(save="last")], progress=False)
    with pytest.raises(ValueError, match="keep must be an integer in"):
        ModelCheckpoint(keep=0)


def test_lambda_callback_checks_hook_names() -> None:
    with pytest.raises(ValueError, match="hook must be one of 'on_fit_start'"):
        LambdaCallback(on_step=print)
    with pytest.raises(TypeError, match="on_fit_end must be callable"):
        LambdaCallback(on_fit_end=3)


# ----------------------------------------------------------------------------- loggers, progress
def test_csv_and_jsonl_logs_hold_every_step_and_record(tmp_path: Path) -> None:
    x, y = data()
    h = fit(model(), (x, y), mse, val_data=(x, y), optimizer="sgd", lr=0.05, epochs=2,
            batch_size=4, log_dir=tmp_path, progress=False)  # fmt: skip
    steps = [json.loads(s) for s in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["loss"] for s in steps] == h.steps["loss"]
    assert [s["lr"] for s in steps] == [0.05] * 8
    assert [s["grad_norm"] for s in steps] == h.steps["grad_norm"]
    records = [json.loads(s) for s in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert records == h.records
    lines = (tmp_path / "steps.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,loss,grad_norm,lr,effective_lr,skipped,time"
    assert len(lines) == 9
    assert float(lines[1].split(",")[2]) == h.steps["loss"][0]


def test_multiple_param_groups_log_every_lr(tmp_path: Path) -> None:
    x, y = data()
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)).double()
    opt = torch.optim.SGD(
        [{"params": m[0].parameters(), "lr": 0.1}, {"params": m[1].parameters()}], lr=0.01
    )
    h = fit(m, (x, y), mse, optimizer=opt, max_steps=2, log_dir=tmp_path, progress=False)
    assert h.steps["lr_0"] == [0.1, 0.1]
    assert h.steps["lr_1"] == [0.01, 0.01]
    assert (
        (tmp_path / "steps.csv")
        .read_text()
        .splitlines()[0]
        .startswith("step,epoch,loss,grad_norm,lr_0,lr_1")
    )


def test_tensorboard_event_file_holds_the_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = data()
    h = fit(model(), (x, y), mse, val_data=(x, y), optimizer="sgd", lr=0.05, epochs=2,
            batch_size=8, log_dir=tmp_path, progress=False)  # fmt: skip
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "lr/lr", "val/loss"} <= tags
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(h.steps["loss"], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/loss")] == [2, 4]


def test_event_file_crc_matches_tensorboards() -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from bergab.training.loggers import masked_crc32c

    g = torch.Generator().manual_seed(0)
    for n in [0, 1, 3, 4, 7, 8, 9, 63, 64, 200]:
        data = bytes(torch.randint(0, 256, (n,), generator=g).tolist())
        assert masked_crc32c(data) == reference(data)


def test_progress_bar_shows_loss_lr_and_speed() -> None:
    pytest.importorskip("tqdm")
    x, y = data()
    buf = io.StringIO()
    fit(model(), (x, y), mse, optimizer="sgd", lr=0.05, epochs=2, batch_size=4,
        callbacks=[ProgressBar(file=buf, min_interval=0.0)])  # fmt: skip
    out = buf.getvalue()
    assert "8/8" in out
    assert "loss=" in out
    assert "lr=0.05" in out
    assert "step/s" in out


def test_progress_true_without_tqdm_trains_silently(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from bergab.training import progress

    monkeypatch.setattr(progress, "tqdm_available", lambda: False)
    x, y = data()
    h = fit(model(), (x, y), mse, max_steps=3, progress=True)
    assert len(h) == 3
    assert capsys.readouterr().err == ""
    assert fit_module.Trainer  # the module stays importable without tqdm


def test_folders_of_callbacks_and_loggers_must_be_paths() -> None:
    from bergab.training import CSVLogger, JSONLLogger, TensorBoardLogger

    with pytest.raises(TypeError, match=r"dirpath must be a path .*got int"):
        ModelCheckpoint(5)  # type: ignore[arg-type]
    for cls in (CSVLogger, JSONLLogger, TensorBoardLogger):
        with pytest.raises(TypeError, match=r"log_dir must be a path .*got NoneType"):
            cls(None)  # type: ignore[arg-type]
    assert ModelCheckpoint("runs/m").dirpath == Path("runs/m")
