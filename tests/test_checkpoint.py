"""Checkpoint files (atomic, weights-only), RNG states, and History's state and plots."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bergab._validate import MissingDependencyError
from bergab.training import History, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bergab.training.checkpoint import remove_stale_temporaries


def test_save_is_atomic_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.arange(3)}, path)
    with pytest.raises(Exception, match=r"pickle|lambda|Can.t"):
        save_checkpoint({"step": 2, "bad": lambda: 0}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_torn_temporary_is_ignored_and_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    torn = tmp_path / ".last.pt.abc123.tmp"
    torn.write_bytes(b"PK\x03\x04 half a zip")  # what a SIGKILL during a write leaves
    assert load_checkpoint(path) == {"step": 1}
    assert remove_stale_temporaries(path) == 1
    assert not torn.exists()


def test_load_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"obj": Path("x")}, path)  # an arbitrary class: refused by weights_only
    with pytest.raises(Exception, match=r"Weights only load failed|weights_only"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip_through_a_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0.0, 1.0)  # and in Python's
    save_checkpoint({"rng": rng_state()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.normal(size=3), random.gauss(0.0, 1.0), random.random())
    torch.rand(10)
    np.random.rand(10)
    random.random()
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.normal(size=3), random.gauss(0.0, 1.0), random.random())
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


def test_history_state_dict_round_trips_every_kind_of_value(tmp_path: Path) -> None:
    h = History()
    h.add_step({"step": 1, "loss": 0.5, "skipped": False, "lr": 0.1})
    h.add_step({"step": 2, "loss": math.nan, "skipped": True, "lr": 0.1, "loss_scale": 8.0})
    h.add_record({"step": 2, "epoch": 0, "loss": None, "val_loss": 0.25})
    h.add_event({"event": "skip", "step": 2, "reason": "loss is nan"})
    h.info["auto_lr"] = {"peak": 0.1}
    h.stop_reason = "epochs"
    save_checkpoint({"h": h.state_dict()}, tmp_path / "h.pt")
    g = History()
    g.load_state_dict(load_checkpoint(tmp_path / "h.pt")["h"])
    assert g.steps["step"] == [1, 2]
    assert g.steps["skipped"] == [False, True]
    assert g.steps["loss_scale"] == [None, 8.0]
    assert g.steps["loss"][0] == 0.5
    assert math.isnan(g.steps["loss"][1])
    assert g.records == h.records
    assert g.events == h.events
    assert g.info == h.info
    assert g.stop_reason == "epochs"
    assert len(g) == 2
    assert g.step_records()[1]["loss_scale"] == 8.0


def test_history_best_and_plot(tmp_path: Path) -> None:
    h = History()
    assert h.best is None
    for s in range(1, 21):
        h.add_step({"step": s, "loss": 10.0 / s**2, "lr": 0.1 / s, "effective_lr": 0.05 / s})
        if s % 5 == 0:
            h.add_record({"step": s, "loss": 10.0 / s**2, "val_loss": abs(s - 10) + 1.0})
    h.add_event({"event": "rollback", "step": 12})
    assert h.best["step"] == 10
    assert h.best_by("val_loss", mode="max")["step"] == 20
    assert "best val_loss=1 at step 10" in repr(h)
    fig = h.plot(tmp_path / "sub" / "history.png")
    assert (tmp_path / "sub" / "history.png").stat().st_size > 1000
    ax_loss, ax_lr = fig.axes
    assert ax_loss.get_yscale() == "log"  # losses span 4 decades
    labels = [line.get_label() for line in ax_loss.lines]
    assert labels[:3] == ["train loss (step)", "train loss", "val loss"]
    assert list(ax_loss.lines[3].get_xdata()) == [12, 12]  # the rollback is marked
    assert {line.get_label() for line in ax_lr.lines} >= {"lr", "effective_lr"}
    with pytest.raises(ValueError, match="the history is empty"):
        History().plot()


def test_history_to_dataframe() -> None:
    h = History()
    h.add_step({"step": 1, "loss": 1.0})
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"pip install 'bergab\[data\]'"):
            h.to_dataframe()
    else:
        assert h.to_dataframe("steps").shape == (1, 2)
    with pytest.raises(ValueError, match="kind must be one of 'records', 'steps'"):
        h.to_dataframe("rows")
