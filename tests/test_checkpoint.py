"""Checkpoint files (atomic, weights-only), RNG states, and History's state and plots."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bergab._validate import MissingDependencyError
from bergab.training import History, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bergab.training.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    load_latest_checkpoint,
    previous_checkpoints,
    recover_checkpoint,
    remove_stale_temporaries,
)


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


# ----------------------------------------------------------------------------- keep_last
def test_save_and_load_name_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state must be a dict .*got list"):
        save_checkpoint([1, 2], tmp_path / "x.pt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"path must be a path .*got int"):
        save_checkpoint({"a": 1}, 5)  # type: ignore[arg-type]
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"path: cannot write the checkpoint .*f.txt"):
        save_checkpoint({"a": 1}, tmp_path / "f.txt" / "x.pt")
    with pytest.raises(IsADirectoryError, match=r"path: .* is a directory, not a checkpoint"):
        save_checkpoint({"a": 1}, tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path, fallback=True)
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_keeps_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for step in range(4):
        save_checkpoint({"step": step}, path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.prev.pt",
        "last.prev2.pt",
        "last.pt",
    ]
    assert [load_checkpoint(p)["step"] for p in previous_checkpoints(path)] == [2, 1]
    assert load_checkpoint(path)["step"] == 3
    save_checkpoint({"step": 4}, tmp_path / "plain.pt", keep_last=0)
    save_checkpoint({"step": 5}, tmp_path / "plain.pt", keep_last=0)
    assert not previous_checkpoints(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="keep_last must be an integer in"):
        save_checkpoint({"step": 6}, path, keep_last=-1)


def test_a_damaged_file_is_not_kept_over_a_good_one(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    save_checkpoint({"step": 2}, path)
    path.write_bytes(path.read_bytes()[:50])  # damaged after it was written
    save_checkpoint({"step": 3}, path)
    assert load_checkpoint(tmp_path / "last.prev.pt") == {"step": 1}  # not the torn one
    assert load_checkpoint(path) == {"step": 3}


def test_an_unreadable_checkpoint_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"checkpoint {str(path)!r} cannot be read" in message
    assert "truncated or damaged" in message


def test_fallback_loads_the_previous_checkpoint_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    save_checkpoint({"step": 2}, path)
    path.write_bytes(b"")
    with pytest.warns(CheckpointWarning, match=r"cannot be read .* loaded the previous"):
        assert load_checkpoint(path, fallback=True) == {"step": 1}
    with pytest.warns(CheckpointWarning):
        assert load_latest_checkpoint(path) == {"step": 1}
    path.unlink()  # missing: the kept file still loads
    with pytest.warns(CheckpointWarning, match="does not exist"):
        assert load_checkpoint(path, fallback=True) == {"step": 1}
    (tmp_path / "last.prev.pt").write_bytes(b"PK")
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.pt' cannot be read .*nor the 1 older one"):
        load_checkpoint(path, fallback=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt", fallback=True)


def test_recover_moves_the_damaged_file_aside_and_restores_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)
    assert recover_checkpoint(path) is None  # readable: nothing to do
    assert recover_checkpoint(tmp_path / "none.pt") is None
    save_checkpoint({"step": 2}, path)
    torn = path.read_bytes()[:80]
    path.write_bytes(torn)
    note = recover_checkpoint(path)
    assert note is not None
    assert "last.prev.pt" in note
    assert "last.pt.damaged" in note
    assert load_checkpoint(path) == {"step": 1}
    assert (tmp_path / "last.pt.damaged").read_bytes() == torn  # nothing is lost
    # the restored file is a copy: damaging one name leaves the other whole
    path.write_bytes(b"")
    assert load_checkpoint(tmp_path / "last.prev.pt") == {"step": 1}
    (tmp_path / "last.prev.pt").write_bytes(b"")
    with pytest.raises(CheckpointError):
        recover_checkpoint(path)


# A process that forks writers and SIGKILLs each at a random moment of a write: after
# every kill, last.pt itself must load whole (no fallback needed) and hold what one
# complete write put there. Forking (not a new interpreter per kill) makes 60 kills
# cheap; the writers only call torch.save, no thread pool is involved.
_KILL_LOOP = """
import os, random, signal, sys, time
import torch
torch.set_num_threads(1)
from bergab.training.checkpoint import load_checkpoint, previous_checkpoints, save_checkpoint

path = os.path.join(sys.argv[1], "last.pt")
rounds = int(sys.argv[2])
weights = torch.arange(500_000, dtype=torch.float32)  # 2 MB: a write takes a while
t = time.perf_counter()
for step in range(3):
    save_checkpoint({"step": step, "w": weights, "tag": torch.tensor([step])}, path)
cycle = (time.perf_counter() - t) / 3
rng = random.Random(1)
step = 3
for _ in range(rounds):
    pid = os.fork()
    if pid == 0:  # the writer: checkpoints as fast as it can until it is killed
        s = step
        while True:
            save_checkpoint({"step": s, "w": weights, "tag": torch.tensor([s])}, path)
            s += 1
    time.sleep(rng.uniform(0.0, 2.5 * cycle))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    ckpt = load_checkpoint(path)
    assert int(ckpt["tag"]) == ckpt["step"] and torch.equal(ckpt["w"], weights), ckpt["step"]
    older = previous_checkpoints(path)  # equal to last.pt when killed between link and rename
    assert older and load_checkpoint(older[0])["step"] <= ckpt["step"]
    step = ckpt["step"] + 1
print("ok", rounds, step)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_write_killed_at_any_moment_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_LOOP, str(tmp_path), "60"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok 60")
    remove_stale_temporaries(tmp_path / "last.pt")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last.prev.pt", "last.pt"]
