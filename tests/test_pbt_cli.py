"""``bergab pbt CONFIG``: a population trained in-process, its summary, the files it writes
(pbt.json, pbt_schedule.json, pbt.png, pbt_best.toml) and the winner replayed with
``bergab train``; bad settings are one line on stderr and exit 2."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("pydantic")

from bergab import config
from bergab._commands.pbt import lineage_lines
from bergab.cli import main

TINY = """\
    [task]
    name = "linreg"
    standardize = true
    n_train = 200
    n_val = 50

    [optimizer]
    name = "momentum"

    [schedule]
    lr = 0.05

    [fit]
    max_steps = 12
    batch_size = 32
    progress = false

    [output]
    plots = false

    [pbt]
    population = 2
    interval = 4
    seed = 0

    [pbt.hyperparams]
    "schedule.lr" = {loguniform = [1e-3, 0.3]}
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(path: Path, text: str = TINY) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_pbt_writes_the_study_files_and_its_best_config_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "tiny.toml")
    runs = tmp_path / "runs"
    assert main(["pbt", str(cfg), "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    study = runs / "tiny"  # the study is named after the file
    record = json.loads((study / "pbt.json").read_text())
    n = len(record["segments"])
    assert n >= 6  # 2 members x 12 steps / 4, and the exploits'
    exploits = sum(s["event"] == "exploit" for s in record["segments"])
    noun = "exploit" if exploits == 1 else "exploits"
    assert f"study tiny: 2 members, {n} segments ({exploits} {noun}), val_loss minimized" in out
    assert f"folder {study}" in out
    assert "best member " in out
    lineage = [line for line in out.splitlines() if line.startswith("  steps ")]
    assert lineage
    assert lineage[0].startswith("  steps 0-")
    assert all("schedule.lr=" in line for line in lineage)
    assert f"bergab train {study / 'pbt_best.toml'}" in out

    assert record["best_member"] in (0, 1)
    assert f"best member {record['best_member']}: val_loss" in out
    assert not (study / "pbt.png").exists()  # output.plots = false

    best = study / "pbt_best.toml"
    data = tomllib.loads(best.read_text())
    assert "pbt" not in data
    assert "dir" not in data.get("output", {})
    schedule = json.loads((study / "pbt_schedule.json").read_text())
    assert data["schedule"] == schedule  # the winner's lineage of lrs
    loaded = config.load(best)
    assert loaded.fit.max_steps == 12

    assert main(["train", str(best), "--out", str(tmp_path / "replay")]) == 0
    assert (tmp_path / "replay" / "summary.json").is_file()
    # the exported schedule alone replays in the original config
    replay2 = tmp_path / "replay2"
    argv = ["train", str(cfg), "--set", f"schedule=@{study / 'pbt_schedule.json'}"]
    assert main([*argv, "--out", str(replay2)]) == 0
    summary = json.loads((replay2 / "summary.json").read_text())
    assert summary["schedule"] == schedule


def test_options_override_the_pbt_table_and_plots_are_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    cfg = write(tmp_path / "tiny.toml", TINY.replace("plots = false", "plots = true"))
    runs = tmp_path / "runs"
    argv = ["pbt", str(cfg), "--out", str(runs), "--population", "3", "--interval", "6",
            "--study", "other", "--seed", "1", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    study = runs / "other"
    assert "study other: 3 members" in out
    segments = json.loads((study / "pbt.json").read_text())["segments"]
    assert {s["member"] for s in segments} == {0, 1, 2}
    assert {s["end"] for s in segments} <= {6, 12}
    assert (study / "pbt.png").stat().st_size > 0
    assert (study / "pbt_best.toml").is_file()
    assert not (runs / "tiny").exists()


@pytest.mark.parametrize(
    ("argv", "edit", "message"),
    [
        (["--population", "1"], None, "population must be an integer in [2, inf)"),
        (["--interval", "0"], None, "interval must be an integer in [1, inf)"),
        (["--interval", "13"], None, "interval must be at most the run's length"),
        (["--workers", "0"], None, "workers must be an integer in [1, inf)"),
        ([], ("interval = 4", "interval = 4\npopulaton = 3"), "pbt.populaton: unknown key"),
        ([], ("interval = 4", "interval = 4\nquantile = 0.75"), "quantile must be in (0, 0.5]"),
        ([], ("interval = 4", "interval = 4\nquantile = 0"), "quantile must be in (0, 0.5]"),
        ([], ("interval = 4", "interval = 4\nperturb = [0.0, 1.2]"), "perturb[0] must be"),
        ([], ("interval = 4", "interval = 4\nperturb = [0.8, -1]"), "perturb[1] must be"),
        ([], ('"schedule.lr" = {loguniform = [1e-3, 0.3]}', ""), "hyperparams: give the space"),
        ([], ("max_steps = 12", "epochs = 1"), "fit.max_steps"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    edit: tuple[str, str] | None,
    message: str,
) -> None:
    text = TINY if edit is None else TINY.replace(edit[0], edit[1])
    assert text != TINY or edit is None
    cfg = write(tmp_path / "bad.toml", textwrap.dedent(text))
    runs = tmp_path / "runs"
    assert main(["pbt", str(cfg), "--out", str(runs), *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith("bergab pbt: error: ")
    assert message in err[0]
    assert captured.out == ""
    assert not runs.exists()  # refused before any study folder or member


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pbt", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bergab pbt examples/linreg_pbt.toml" in out
    assert "[pbt.hyperparams]" in out


def test_lineage_lines_merge_continued_stretches() -> None:
    a, b = {"schedule.lr": 0.1}, {"schedule.lr": 0.08}
    segs = [
        {"member": 1, "start": 0, "end": 10, "event": "start", "hparams": a},
        {"member": 1, "start": 10, "end": 20, "event": "continue", "hparams": a},
        {"member": 0, "start": 20, "end": 30, "event": "exploit", "hparams": b},
        {"member": 0, "start": 30, "end": 40, "event": "continue", "hparams": b},
    ]
    lines = lineage_lines(segs)
    assert len(lines) == 2
    assert lines[0].startswith("steps 0-20 ")
    assert "member 1" in lines[0]
    assert lines[1].startswith("steps 20-40 ")
    assert "schedule.lr=0.08" in lines[1]
    assert "(copied from member 1)" in lines[1]
    assert lineage_lines([]) == []
