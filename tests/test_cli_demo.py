"""``bergab demo``: the digits task with lr="auto" end to end, summary and plots."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from bergab import config, tasks
from bergab._commands.demo import demo_config
from bergab.auto_lr import choose_lr
from bergab.cli import main

ROOT = Path(__file__).resolve().parents[1]
BERGAB = Path(sys.executable).with_name("bergab")
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def rows(out: str) -> dict[str, str]:
    table = {}
    for line in out.splitlines():
        key, sep, value = line.partition("  ")
        if sep and key and not key.startswith(" "):
            table[key.strip()] = value.strip()
    return table


def test_quick_demo_prints_the_summary_and_writes_the_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    table = rows(capsys.readouterr().out)
    for key in ("chosen lr (peak)", "steps", "final val loss", "final val accuracy", "time"):
        assert key in table, table
    assert table["steps"] == "46"  # 2 epochs of ceil(1438 / 64) = 23 batches
    for name in ("lr_find.png", "history.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    # the chosen lr is choose_lr's on the same task, data, optimizer and seed
    task = tasks.digits(seed=0, hidden=64)
    ref = choose_lr(
        task.model,
        task.train,
        task.loss_fn,
        total_steps=46,
        val_data=task.val,
        optimizer="adamw",
        optimizer_kwargs={"weight_decay": 0.01},
        batch_size=64,
        seed=0,
        lr_find_kwargs={"steps": 30},
        warn=False,
    )
    assert table["chosen lr (peak)"].startswith(f"{ref.suggestion:.3g} ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["auto_lr"]["peak"] == ref.suggestion
    assert summary["final"]["final_val_accuracy"] > 0.8
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["schedule"] == {
        "type": "cosine",
        "peak": ref.suggestion,
        "total_steps": 46,
        "final": 0.0,
    }
    # run again: the demo replaces its own output directory
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0


def test_the_demo_is_examples_digits_toml() -> None:
    demo = config.validate(demo_config()).to_dict()
    example = config.load(ROOT / "examples" / "digits.toml").to_dict()
    for section in ("task", "optimizer", "schedule", "lr_find", "fit"):
        assert demo[section] == example[section], section


@pytest.mark.slow
def test_the_real_demo_through_the_installed_executable(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(BERGAB), "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    table = rows(done.stdout)
    assert table["steps"] == "460"
    assert float(table["final val accuracy"]) >= 0.96
    for name in ("lr_find.png", "history.png", "config.toml", "model.pt"):
        assert (tmp_path / "demo" / name).is_file(), name
    print(f"bergab demo: {wall:.1f} s wall, {table['time']}")  # shown with pytest -s
