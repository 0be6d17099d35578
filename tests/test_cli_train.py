"""``bergab train``, ``resume`` and ``lr-find``: config errors, run directories, exact resume.

The in-process tests drive ``main(argv)``; the end-to-end test runs the installed
``bergab`` executable and interrupts it with a real SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

import bergab.run
from bergab import config, schedules, tasks
from bergab.auto_lr import choose_lr
from bergab.cli import main
from bergab.lr_finder import lr_find
from bergab.training import Callback, fit

BERGAB = Path(sys.executable).with_name("bergab")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


LINREG = """\
    [task]
    name = "linreg"
    standardize = true
    n_train = 200
    n_val = 50

    [optimizer]
    name = "adamw"
    weight_decay = 0.01

    [schedule]
    type = "warmup"
    steps = 5

    [schedule.schedule]
    type = "cosine"
    peak = 0.05
    total_steps = 55

    [fit]
    max_steps = 60
    batch_size = 32
    seed = 3
    progress = false
"""


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        assert torch.equal(value, b[k]), k


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ("train", "bergab train examples/digits.toml"),
        ("resume", "bergab resume runs/digits"),
        ("demo", "bergab demo"),
        ("lr-find", "bergab lr-find examples/digits.toml"),
    ],
)
def test_help_shows_an_example(
    command: str, example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert example in out


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("extra", "argv", "message"),
    [
        ("[fit]\nepochs = 0\n", [], "fit.epochs: must be >= 1, got 0"),
        ("[fit]\nepoch = 3\n", [], "fit.epoch: unknown key (allowed: epochs, max_steps,"),
        ('[fit]\nmax_steps = "10"\n', [], 'fit.max_steps: must be an integer, got "10"'),
        ('[optimizer]\nname = "adamw"\nbetas = 3\n', [], "optimizer"),
        ("", ["--set", "fit.max_steps=0"], "fit.max_steps: must be >= 1, got 0"),
        ("", ["--set", "fit.clip_norm=-1.0"], "fit.clip_norm: must be > 0, got -1.0"),
        ("", ["--set", "lr_find.mode=log"], 'lr_find.mode: must be one of "exp" or "linear"'),
        ("", ["--set", "task.nam=digits"], "task.nam: unknown key for task 'linreg'"),
        ("", ["--set", "fit.max_steps"], "--set: expected KEY.PATH=VALUE"),
        ("[extra]\nx = 1\n", [], "extra: unknown table (allowed: task, optimizer,"),
    ],
)
def test_config_mistakes_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: str,
    argv: list[str],
    message: str,
) -> None:
    cfg = write(tmp_path / "c.toml", '[task]\nname = "linreg"\n' + extra)
    rc = main(["train", str(cfg), "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bergab train: error: " + message)
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_missing_file_and_bad_toml_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    bad = write(tmp_path / "bad.toml", "[task\n")
    assert main(["lr-find", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not valid TOML" in err
    assert main(["resume", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- train


def test_train_writes_the_run_directory_and_equals_a_direct_fit_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "linreg.toml", LINREG)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "final val loss" in out
    assert str(run) in out
    for name in ("config.toml", "model.pt", "summary.json", "history.png"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "logs" / "steps.csv").is_file()
    assert (run / "history.png").read_bytes()[:4] == b"\x89PNG"
    # the resolved config reads back as the same config
    resolved = config.load(run / "config.toml")
    assert resolved.to_dict()["schedule"] == tomllib.loads(cfg.read_text())["schedule"]
    assert resolved.run_dir() == run

    # the same run through the library: bergab.fit with the same settings
    task = tasks.linreg(seed=3, standardize=True, n_train=200, n_val=50)
    sched = schedules.warmup(schedules.cosine(peak=0.05, total_steps=55), steps=5)
    history = fit(
        task.model,
        task.train,
        task.loss_fn,
        val_data=task.val,
        optimizer="adamw",
        optimizer_kwargs={"weight_decay": 0.01},
        lr=sched,
        max_steps=60,
        batch_size=32,
        seed=3,
        metrics=task.metrics,
        progress=False,
    )
    assert_same_weights(state(run / "model.pt"), task.model.state_dict())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 60
    assert summary["final"]["final_val_loss"] == history.last["val_loss"]


def test_a_second_train_into_the_same_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    run = str(tmp_path / "run")
    quick = ["--set", "fit.max_steps=3", "--set", "output.plots=false"]
    assert main(["train", str(cfg), "--out", run, *quick]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", run, *quick]) == 2
    err = capsys.readouterr().err
    assert f"output.dir: {run} already holds a run: continue it with 'bergab resume {run}'" in err
    assert main(["train", str(cfg), "--out", run, *quick, "--set", "output.overwrite=true"]) == 0


def test_lr_auto_resolves_to_a_cosine_peaking_at_the_trials_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = LINREG.split("    [schedule]", maxsplit=1)[0] + textwrap.indent(
        '[schedule]\nlr = "auto"\n\n[lr_find]\nsteps = 40\n\n[fit]\nmax_steps = 30\n'
        "batch_size = 32\nseed = 3\nprogress = false\n",
        "    ",
    )
    cfg = write(tmp_path / "auto.toml", text)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "chosen lr (peak)" in out
    task = tasks.linreg(seed=3, standardize=True, n_train=200, n_val=50)
    # the run's choice is choose_lr's on the task's data, validation data included
    ref = choose_lr(
        task.model,
        task.train,
        task.loss_fn,
        total_steps=30,
        val_data=task.val,
        optimizer="adamw",
        optimizer_kwargs={"weight_decay": 0.01},
        batch_size=32,
        seed=3,
        lr_find_kwargs={"steps": 40},
        warn=False,
    )
    resolved = tomllib.loads((run / "config.toml").read_text())["schedule"]
    assert resolved == {"type": "cosine", "peak": ref.suggestion, "total_steps": 30, "final": 0.0}
    found = json.loads((run / "lr_find.json").read_text())
    assert found["suggestion"] == ref.suggestion
    assert found["lrs"] == ref.to_dict()["lrs"]
    assert found["candidates"] == ref.to_dict()["candidates"]
    assert "trial lr" in out  # the log lists every trial
    assert (run / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    # resume reads the resolved schedule: no new range test
    assert main(["resume", str(run)]) == 0
    assert "range test" not in capsys.readouterr().out


# --------------------------------------------------------------------------- resume


DIGITS = """\
    [task]
    name = "digits"
    hidden = 16
    dropout = 0.2

    [optimizer]
    name = "adamw"

    [schedule]
    type = "cosine"
    peak = 0.01
    total_steps = 60

    [fit]
    max_steps = 60
    batch_size = 64
    seed = 1
    progress = false

    [output]
    plots = false
"""


class SigintAt(Callback):
    """Send this process a real SIGINT right after optimizer step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer: Any, logs: Any) -> None:
        if trainer.step == self.at:
            signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("at", [30, 23])  # mid-epoch, and the last step of epoch 0
def test_ctrl_c_checkpoints_and_resume_is_bitwise_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], at: int
) -> None:
    cfg = write(tmp_path / "digits.toml", DIGITS)
    whole = tmp_path / "whole"
    assert main(["train", str(cfg), "--out", str(whole)]) == 0

    cut = tmp_path / "cut"
    run = config.load(cfg, [f'output.dir="{cut}"'])
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run as a background job
    result = bergab.run.train(run, callbacks=[SigintAt(at)])
    assert result.interrupted
    assert result.steps == at  # the checkpoint is at the step Ctrl-C arrived in
    ckpt = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["fit"]["step"] == at
    assert not (cut / "model.pt").exists()
    assert signal.getsignal(signal.SIGINT) is before  # restored

    capsys.readouterr()
    assert json.loads((cut / "summary.json").read_text())["threads"] == 1
    torch.set_num_threads(2)
    assert main(["resume", str(cut)]) == 0
    assert torch.get_num_threads() == 1  # resume runs on the run's own thread count
    assert_same_weights(state(cut / "model.pt"), state(whole / "model.pt"))
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((cut / "summary.json").read_text())
    assert b["steps"] == a["steps"] == 60
    assert b["final"] == a["final"]


def test_report_says_how_to_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bergab._commands.train import report

    cfg = config.validate({"task": {"name": "linreg"}, "output": {"dir": str(tmp_path)}})
    result = bergab.run.RunResult(
        run_dir=tmp_path,
        config=cfg,
        history=None,
        auto=None,
        steps=7,
        seconds=1.0,
        lr_find_seconds=0.0,
        interrupted=True,
        final={},
    )
    assert report(result) == 130
    captured = capsys.readouterr()
    assert '"auto" (interrupted before the choice finished)' in captured.out
    assert "nothing to resume" in captured.err
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert report(result) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 7" in err
    assert f"bergab resume {tmp_path}" in err


SLOW_TASK = """\
    import time

    import torch
    from bergab import tasks


    class Slow(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if self.training:
                time.sleep(0.005)  # slow enough to be interrupted mid-run
            return self.inner(x)


    def slow_digits(seed=0):
        task = tasks.digits(seed=seed, hidden=16, dropout=0.1)
        task.model = Slow(task.model)
        return task
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "default_out"),
    [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)],  # SIGTERM: cluster preemption
    ids=["sigint", "sigterm"],
)
def test_a_signal_to_the_installed_executable_then_resume_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int, code: int, default_out: bool
) -> None:
    module = f"slow_task_{code}"
    write(tmp_path / f"{module}.py", SLOW_TASK)
    cfg = write(
        tmp_path / "slow.toml",
        f"""\
        [task]
        name = "{module}:slow_digits"

        [schedule]
        type = "cosine"
        peak = 0.01
        total_steps = 200

        [fit]
        max_steps = 200
        batch_size = 64
        progress = false
        """,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a custom task's default folder is runs/<function name>
    run = tmp_path / "runs" / "slow_digits" if default_out else tmp_path / "run"
    argv = [str(BERGAB), "train", str(cfg)] + ([] if default_out else ["--out", str(run)])
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (run / "checkpoints" / "last.pt").exists():  # written when training starts
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert "checkpoint written" in err
    shown = Path("runs") / "slow_digits" if default_out else run
    assert f"bergab resume {shown}" in err
    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["fit"]["step"]
    assert 0 < step < 200

    # resume (in this process: the executable's start-up was tested above) and the
    # uninterrupted run; the task module is importable from the working directory
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["resume", str(run)]) == 0
        whole = config.load(cfg, [f'output.dir="{tmp_path / "whole"}"', "output.plots=false"])
        bergab.run.train(whole)
    finally:
        sys.modules.pop(module, None)
    assert_same_weights(state(run / "model.pt"), state(tmp_path / "whole" / "model.pt"))


# --------------------------------------------------------------------------- lr-find


def test_lr_find_prints_the_suggestions_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    plot = tmp_path / "out" / "lr.png"
    assert main(["lr-find", str(cfg), "--set", "lr_find.steps=50", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    task = tasks.linreg(seed=3, standardize=True, n_train=200, n_val=50)
    ref = lr_find(
        task.model,
        task.train,
        task.loss_fn,
        optimizer="adamw",
        weight_decay=0.01,
        batch_size=32,
        seed=3,
        steps=50,
        warn=False,
    )
    assert f"suggestion: {ref.suggestion:.3g} ({ref.rule}" in out
    for name, lr in ref.suggestions.items():
        assert any(line.split()[:2] == [name, f"{lr:.3g}"] for line in out.splitlines()), name
    assert plot.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(plot.with_suffix(".json").read_text())
    assert data["suggestions"] == ref.suggestions


def test_a_diverging_run_exits_1_and_keeps_its_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(
        tmp_path / "div.toml",
        """\
        [task]
        name = "linreg"
        [optimizer]
        name = "sgd"
        [schedule]
        lr = 1.0
        [fit]
        max_steps = 50
        progress = false
        [output]
        plots = false
        """,
    )
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("training stopped: loss is inf at step")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["error"].startswith("loss is inf at step")
    assert (run / "logs" / "steps.csv").is_file()
    assert not (run / "model.pt").exists()


def test_resume_with_a_larger_max_steps_trains_a_finished_run_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "digits.toml", DIGITS)
    whole, short = tmp_path / "whole", tmp_path / "short"
    assert main(["train", str(cfg), "--out", str(whole)]) == 0
    assert main(["train", str(cfg), "--out", str(short), "--set", "fit.max_steps=25"]) == 0
    assert json.loads((short / "summary.json").read_text())["steps"] == 25
    capsys.readouterr()
    assert main(["resume", str(short)]) == 0  # finished: nothing more to do
    assert "the run already finished at step 25 (max_steps)" in capsys.readouterr().out
    assert json.loads((short / "summary.json").read_text())["steps"] == 25
    assert main(["resume", str(short), "--set", "fit.max_steps=60"]) == 0
    capsys.readouterr()
    assert json.loads((short / "summary.json").read_text())["steps"] == 60
    assert_same_weights(state(short / "model.pt"), state(whole / "model.pt"))
