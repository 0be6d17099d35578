"""History.plot (the history.png of a run): the validation metrics on a panel of their own,
a title that sums the run up, the path checked before drawing; best_by on a missing key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bergab.training import History

pytest.importorskip("matplotlib")


def _history(metrics: bool = True) -> History:
    h = History()
    for step in range(1, 21):
        h.add_step({"step": step, "epoch": (step - 1) // 10, "loss": 1.0 / step, "lr": 0.1})
        if step % 10 == 0:
            record = {"step": step, "epoch": step // 10 - 1, "loss": 1.0 / step}
            record["val_loss"] = 0.5 if step == 10 else 0.3
            if metrics:
                record["val_accuracy"] = 0.8 if step == 10 else 0.9
                record["train_accuracy"] = 0.85 if step == 10 else 0.95
            h.add_record(record)
    h.stop_reason = "epochs"
    return h


def test_validation_metrics_get_their_own_panel() -> None:
    fig = _history().plot()
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "metric", "learning rate"]
        lines = {line.get_label(): line for line in fig.axes[1].lines}
        assert set(lines) == {"val_accuracy", "train_accuracy"}
        assert list(lines["val_accuracy"].get_ydata()) == [0.8, 0.9]
        assert list(lines["val_accuracy"].get_xdata()) == [10, 20]
        assert lines["train_accuracy"].get_linestyle() == "--"
        # the loss panel keeps the losses only
        assert {line.get_label() for line in fig.axes[0].lines} == {
            "train loss (step)",
            "train loss",
            "val loss",
        }
    finally:
        fig.clf()


def test_the_title_sums_the_run_up() -> None:
    fig = _history().plot()
    title = fig._suptitle.get_text()
    assert title == (
        "training history: 20 steps; best val_loss 0.3 at step 20, val_accuracy 0.9; "
        "stopped: epochs"
    )
    fig.clf()
    fig = _history().plot(title="digits, AdamW")
    assert fig._suptitle.get_text() == "digits, AdamW"
    fig.clf()


def test_without_metrics_there_are_two_panels() -> None:
    fig = _history(metrics=False).plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "learning rate"]
    assert "val_accuracy" not in fig._suptitle.get_text()
    fig.clf()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("h.xyz", "path must end in a file extension matplotlib writes"),
        ("f.txt/h.png", "path: cannot create a folder inside the file"),
        ("", "path must be a file path, got the folder"),
    ],
)
def test_the_path_is_checked_before_drawing(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match=match):
        _history().plot(tmp_path / name if name else tmp_path)


def test_saving_creates_folders_and_closes_the_figure(tmp_path: Path) -> None:
    out = tmp_path / "run" / "plots" / "history.png"
    _history().plot(out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_other_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="log_loss must be True or False"):
        _history().plot(log_loss="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="title must be a str"):
        _history().plot(title=3)  # type: ignore[arg-type]


def test_best_by_a_key_no_record_has_is_an_error() -> None:
    # a misspelt key used to give None, as if nothing had been measured
    h = _history()
    with pytest.raises(ValueError, match=r"key 'val_acc' is in no record; .*val_accuracy"):
        h.best_by("val_acc", mode="max")
    assert h.best_by("val_accuracy", mode="max")["step"] == 20
    assert History().best_by("val_acc") is None  # nothing recorded yet
    only_val = History()
    only_val.add_record({"step": 1, "val_loss": float("nan")})
    assert only_val.best is None  # nothing finite to rank by, and no error
