"""``bergab schedule``: the table, the plot, the example configs, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bergab import schedules as sch
from bergab.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "schedules"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table(out: str) -> dict[int, float]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            rows[int(parts[0])] = float(parts[1])
    return rows


def test_prints_values_at_key_steps(capsys: pytest.CaptureFixture[str]) -> None:
    config = {
        "type": "warmup",
        "steps": 100,
        "schedule": {"type": "cosine", "peak": 0.003, "total_steps": 900, "final": 3e-5},
    }
    assert main(["schedule", json.dumps(config), "--steps", "1000"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == repr(sch.from_config(config))
    rows = table(out)
    assert sorted(rows) == [0, 100, 999]  # step 0, the warmup boundary, the last step
    sched = sch.from_config(config)
    for t, v in rows.items():
        assert v == pytest.approx(sched(t), rel=1e-5)


def test_long_tables_are_cut(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "schedule",
                '{"type": "step_decay", "initial": 1, "gamma": 0.9, "step_size": 3}',
                "--steps",
                "1000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = table(out)
    assert "..." in out
    assert {0, 3, 996, 999} <= set(rows)
    assert len(rows) <= 26


def test_writes_png_and_creates_parent_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "demo" / "schedule.png"
    assert (
        main(
            [
                "schedule",
                str(EXAMPLES / "warmup_cosine.json"),
                "--steps",
                "1000",
                "--plot",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_configs_load_and_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sched = sch.from_config(json.loads(path.read_text()))
    assert main(["schedule", str(path), "--steps", "1000"]) == 0
    rows = table(capsys.readouterr().out)
    assert rows[0] == pytest.approx(sched(0), rel=1e-5)
    assert rows[999] == pytest.approx(sched(999), rel=1e-5)


def test_example_configs_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.json")} >= {"warmup_cosine.json", "wsd.json"}


def test_reads_toml_with_a_schedule_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.toml"
    path.write_text(
        'epochs = 3\n[schedule]\ntype = "linear"\nstart = 1.0\nend = 0.0\ntotal_steps = 10\n'
    )
    assert main(["schedule", str(path), "--steps", "20"]) == 0
    assert table(capsys.readouterr().out) == {0: 1.0, 10: 0.0, 19: 0.0}


@pytest.mark.parametrize(
    ("arg", "steps", "message"),
    [
        ('{"type": "cosine", "peak": 0.1,', "10", "invalid JSON"),
        ('{"type": "cosine", "peak": -0.1, "total_steps": 10}', "10", "peak must be in"),
        ('{"type": "cosine_decay"}', "10", "type must be one of"),
        ('{"type": "cosine", "peak": 0.1, "total_steps": 10}', "0", "--steps"),
        ("no/such/file.json", "10", "not a file"),
        ("[1, 2]", "10", "not a file"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    arg: str, steps: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", arg, "--steps", steps]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
    assert lines[0].startswith("bergab schedule: error:")


def test_bad_json_file_and_non_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["schedule", str(bad), "--steps", "5"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    arr = tmp_path / "arr.json"
    arr.write_text("[1]")
    assert main(["schedule", str(arr), "--steps", "5"]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "--help"]) == 0
    assert "bergab schedule examples/schedules/warmup_cosine.json" in capsys.readouterr().out


# --------------------------------------------------------------------------- run configs
RUN_CONFIG = '[task]\nname = "linreg"\n\n[fit]\nmax_steps = 100\n'


@pytest.mark.parametrize(
    ("schedule", "rows"),
    [
        ("[schedule]\nlr = 0.05\n", {0: 0.05, 9: 0.05}),
        (
            '[schedule]\ntype = "warmup"\nsteps = 2\n\n[schedule.schedule]\ntype = "constant"\n'
            "lr = 0.1\n",
            {0: 0.0333333, 2: 0.1, 9: 0.1},  # warmup starts at lr / (steps + 1)
        ),
    ],
)
def test_a_run_config_gives_its_schedule_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schedule: str, rows: dict[int, float]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(RUN_CONFIG + schedule)
    assert main(["schedule", str(path), "--steps", "10"]) == 0
    assert table(capsys.readouterr().out) == rows


@pytest.mark.parametrize("schedule", ['[schedule]\nlr = "auto"\n', ""])
def test_a_run_config_with_lr_auto_points_to_lr_find(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schedule: str
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(RUN_CONFIG + schedule)  # no [schedule] table: lr = "auto" too
    assert main(["schedule", str(path), "--steps", "10"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('bergab schedule: error: schedule.lr: "auto"')
    assert f"bergab lr-find {path}" in lines[0]


def test_a_run_config_schedule_error_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        RUN_CONFIG + '[schedule]\ntype = "warmup"\nsteps = 2\n\n[schedule.schedule]\n'
        'type = "constant"\nlr = -1.0\n'
    )
    assert main(["schedule", str(path), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bergab schedule: error: schedule.schedule.lr: must be in [0, inf)")
