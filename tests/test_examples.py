"""Every config in ``examples/`` validates and trains (shortened), so none goes stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

from bergab import config, tasks
from bergab.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_there_is_an_example_for_every_built_in_task() -> None:
    names = {config.load(p).task.name for p in EXAMPLES}
    assert names == set(tasks.names())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_trains_shortened(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / path.stem
    short = ["fit.max_steps=5", "fit.progress=false", "output.plots=false", "lr_find.steps=20"]
    argv = ["train", str(path), "--out", str(run)]
    for item in short:
        argv += ["--set", item]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 5
    assert summary["stop_reason"] == "max_steps"
    # the resolved config is a valid config that says where the run lives
    assert config.load(run / "config.toml").run_dir() == run
