"""Issue #17 for the CLI and the run layer: every mistake gets one clear line, no result
is silently wrong, nothing the user had is lost.

Devices, output folders, non-finite values, failed runs, damaged checkpoints, resume
overrides, finished runs, SIGTERM, the test split, keep_best and ``bergab.load_run``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

import bergab
import bergab.run
from bergab import _run_checks, config, tasks
from bergab.cli import main
from bergab.training import Callback, evaluate

BERGAB = Path(sys.executable).with_name("bergab")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


LINREG = """\
    [task]
    name = "linreg"
    standardize = true
    n_train = 200
    n_val = 50

    [schedule]
    lr = 0.05

    [fit]
    max_steps = 12
    batch_size = 32
    seed = 3
    progress = false

    [output]
    plots = false
"""

DIGITS = """\
    [task]
    name = "digits"
    hidden = 16

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


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# --------------------------------------------------------------------------- 1. device
def _absent_device() -> str:
    if not torch.cuda.is_available():
        return "cuda"
    return f"cuda:{torch.cuda.device_count()}"  # one index past the last GPU


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_an_unavailable_device_is_one_line_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    device = _absent_device()
    cfg = write(tmp_path / "c.toml", LINREG.replace("lr = 0.05", 'lr = "auto"'))
    out = tmp_path / "run"
    rc = main([command, str(cfg), "--out", str(out), "--set", f'fit.device="{device}"'])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f'bergab {command}: error: fit.device: "{device}": ')
    assert 'use "cpu" or "auto"' in line or "indices" in line
    assert not out.exists()


def test_config_validation_checks_the_device() -> None:
    with pytest.raises(config.ConfigError, match=r"^fit\.device: .*not available|indices"):
        config.validate({"task": {"name": "linreg"}, "fit": {"device": _absent_device()}})
    with pytest.raises(config.ConfigError, match=r'^fit\.device: "meta": the meta device'):
        config.validate({"task": {"name": "linreg"}, "fit": {"device": "meta"}})


# --------------------------------------------------------------------------- 2. --out
@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_naming_a_file_is_one_line_and_the_file_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    out = blocker if where == "file" else blocker / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(
        f"bergab train: error: output.dir: {'' if where == 'file' else 'cannot'}"
    )
    assert "is a file" in line
    assert "--out" in line
    assert blocker.read_text() == "mine"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 2
    assert "output.dir" in one_line(capsys.readouterr().err)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_run_directory_is_found_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["train", str(cfg), "--out", str(locked)]) == 2
    finally:
        locked.chmod(0o700)
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"bergab train: error: output.dir: {locked} is not a writable")


def test_lr_find_checks_its_plot_path_before_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    blocker = tmp_path / "file"
    blocker.write_text("")

    def no_sweep(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sweep ran before the plot path was checked")

    monkeypatch.setattr(bergab.run, "find_lr", no_sweep)
    assert main(["lr-find", str(cfg), "--plot", str(blocker / "lr.png")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("bergab lr-find: error: --plot: cannot create a folder inside the file")


# --------------------------------------------------------------------------- 8. NaN/inf
def _numeric_keys() -> list[str]:
    """Every numeric key of the config: the schema's, and some of a task's, an
    optimizer's and a schedule's own arguments."""
    keys = [f"lr_find.{n}" for n in config.LRFindSection.model_fields if n != "mode"]
    keys += [f"fit.early_stopping.{n}" for n in ("patience", "min_delta")]
    for name, field in config.FitSection.model_fields.items():
        if name != "early_stopping" and any(
            t in str(field.annotation) for t in ("int", "float", "Any")
        ):
            keys.append(f"fit.{name}")
    keys += ["task.noise", "optimizer.weight_decay", "optimizer.eps", "schedule.lr"]
    return keys


def precheck(data: dict[str, Any]) -> None:
    """What :func:`bergab.run.train` checks before it makes the run directory."""
    cfg = config.validate(data)
    _run_checks.fit_arguments(cfg, config.build_task(cfg))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("key", _numeric_keys())
def test_non_finite_values_name_their_key(key: str, value: str) -> None:
    base = {"task": {"name": "linreg"}, "schedule": {"lr": 0.1}}
    if key.startswith("fit.early_stopping"):
        base["fit"] = {"early_stopping": {}}
    data = config.apply_overrides(base, [f"{key}={value}"])
    if key in ("fit.device", "fit.precision", "fit.nan_policy", "fit.progress", "fit.shuffle"):
        pytest.skip("not a number")
    with pytest.raises(config.ConfigError) as info:  # what a run checks before its folder
        precheck(data)
    assert info.value.path == key, str(info.value)
    assert "\n" not in str(info.value)


def test_clip_norm_inf_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--set", "fit.clip_norm=inf"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == "bergab train: error: fit.clip_norm: must be a finite number, got inf"
    assert not out.exists()


def test_lr_find_range_must_go_up() -> None:
    with pytest.raises(config.ConfigError, match=r"^lr_find\.end_lr: must be > lr_find\.start_lr"):
        config.validate({"task": {"name": "linreg"}, "lr_find": {"start_lr": 1.0, "end_lr": 0.1}})


# --------------------------------------------------------------------------- 9. no command
def test_bergab_without_a_command_prints_usage_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: bergab")
    assert "a command is required" in captured.err


# --------------------------------------------------------------------------- 5. failures
def test_mistakes_fit_would_find_are_found_before_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", DIGITS)
    out = tmp_path / "run"
    for setting, key in [
        ('fit.early_stopping.monitor="val_acc"', "fit.early_stopping.monitor"),
        ('fit.early_stopping.monitor="val_score"', "fit.early_stopping.monitor"),
        ("fit.tol=0.1", None),  # fine with max_steps: must not be refused
    ]:
        rc = main(["train", str(cfg), "--out", str(out), "--set", setting])
        err = capsys.readouterr().err
        if key is None:
            assert rc == 0, err
            continue
        assert rc == 2
        assert one_line(err).startswith(f"bergab train: error: {key}: ")
        assert not out.exists()


FAILING_TASK = """\
    import torch
    from bergab import tasks


    class Breaks(torch.nn.Module):
        calls = 0

        def __init__(self, inner, at):
            super().__init__()
            self.inner, self.at = inner, at

        def forward(self, x):
            if self.training:
                Breaks.calls += 1
                if Breaks.calls == self.at:
                    raise RuntimeError("the model broke")
            return self.inner(x)


    def linreg_breaking(seed=0, at=3):
        Breaks.calls = 0
        task = tasks.linreg(seed=seed, n_train=200, n_val=50, standardize=True)
        task.model = Breaks(task.model, at)
        return task
"""


def test_a_run_that_failed_before_training_is_marked_and_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "failing_task_mod.py", FAILING_TASK)
    monkeypatch.chdir(tmp_path)
    cfg = write(
        tmp_path / "f.toml",
        LINREG.replace('name = "linreg"', 'name = "failing_task_mod:linreg_breaking"')
        .replace("standardize = true\n", "")
        .replace("n_train = 200\n", "")
        .replace("n_val = 50\n", ""),
    )
    out = tmp_path / "run"
    try:
        with pytest.raises(RuntimeError, match="the model broke"):
            bergab.run.train(config.load(cfg, [f'output.dir="{out}"']))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "failed"
        assert summary["error"] == "RuntimeError: the model broke"
        # the same directory takes the run again, without output.overwrite
        assert main(["train", str(cfg), "--out", str(out), "--set", "task.at=1000"]) == 0
        assert "replacing the run" in capsys.readouterr().out
        assert json.loads((out / "summary.json").read_text())["status"] == "finished"
        # a run that failed after it trained (and checkpointed) is kept: resume it
        cut = tmp_path / "cut"
        late = [f'output.dir="{cut}"', "task.at=9", "fit.checkpoint_every=4"]
        with pytest.raises(RuntimeError):
            bergab.run.train(config.load(cfg, late))
        assert json.loads((cut / "summary.json").read_text())["steps"] == 8
        assert main(["train", str(cfg), "--out", str(cut)]) == 2
        assert "already holds a run: continue it with" in capsys.readouterr().err
    finally:
        sys.modules.pop("failing_task_mod", None)


def test_a_run_in_progress_blocks_and_a_dead_one_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("# bergab run config, resolved\n")  # killed at start
    running = {
        "task": "linreg",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    (out / "summary.json").write_text(json.dumps(running))
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    assert "in use by a run in progress" in capsys.readouterr().err
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (out / "summary.json").write_text(json.dumps({**running, "pid": int(dead.stdout)}))
    assert main(["train", str(cfg), "--out", str(out)]) == 0  # killed before training


def test_files_bergab_did_not_write_are_never_replaced_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "config.toml", LINREG)  # the user's own config, in the --out folder
    mine = {"config.toml": cfg.read_text(), "summary.json": '{"accuracy": 0.9}'}
    (tmp_path / "summary.json").write_text(mine["summary.json"])
    assert main(["train", str(cfg), "--out", str(tmp_path)]) == 2
    assert "already holds a run" in one_line(capsys.readouterr().err)
    assert {n: (tmp_path / n).read_text() for n in mine} == mine


# --------------------------------------------------------------------------- 3. damaged
class StopAt(Callback):
    """Pause the run (a checkpoint, as Ctrl-C does) right after step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer: Any, logs: Any) -> None:
        if trainer.step == self.at:
            trainer.stop("interrupted", checkpoint=True)


def test_resume_of_a_truncated_checkpoint_uses_the_previous_one_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "d.toml", DIGITS)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", str(cfg), "--out", str(whole)]) == 0
    bergab.run.train(config.load(cfg, [f'output.dir="{cut}"']), callbacks=[StopAt(30)])
    last = cut / "checkpoints" / "last.pt"
    torn = last.read_bytes()[:4096]
    last.write_bytes(torn)  # the newest is damaged (epoch 1's checkpoint, step 23, is not)
    capsys.readouterr()
    assert main(["resume", str(cut)]) == 0
    out = capsys.readouterr().out
    assert "warning: checkpoint" in out
    assert "using the previous checkpoint" in out
    assert (cut / "checkpoints" / "last.pt.damaged").read_bytes() == torn
    assert_same(weights(cut / "model.pt"), weights(whole / "model.pt"))


def test_resume_with_no_readable_checkpoint_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    for path in (out / "checkpoints").glob("last*.pt"):
        path.write_bytes(b"PK\x03\x04")
    capsys.readouterr()
    assert main(["resume", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"bergab resume: error: checkpoint '{out / 'checkpoints' / 'last.pt'}'")
    assert "cannot be read" in line


# --------------------------------------------------------------------------- 4. overrides
@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ('optimizer.name="sgd"', "optimizer.name"),
        ("optimizer.weight_decay=0.5", "optimizer.weight_decay"),
        ("task.n_train=100", "task.n_train"),
        ("fit.batch_size=16", "fit.batch_size"),
        ("fit.seed=4", "fit.seed"),
        ("lr_find.steps=10", "lr_find.steps"),
        ("output.overwrite=true", "output.overwrite"),
    ],
)
def test_resume_refuses_overrides_the_checkpoint_cannot_continue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, key: str
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["resume", str(out), "--set", setting, "--set", "fit.max_steps=20"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"bergab resume: error: {key}: cannot change when resuming")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_allowed_overrides_are_written_to_the_config_and_kept_by_a_later_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    more = ["fit.max_steps=20", "fit.progress=false", 'optimizer.name="adamw"']  # same name
    result = bergab.run.resume(out, more, callbacks=[StopAt(15)])
    assert result.steps == 15
    assert config.load(out / "config.toml").fit.max_steps == 20
    assert "# changed by bergab resume --set" in (out / "config.toml").read_text()
    assert main(["resume", str(out)]) == 0  # plain: goes on to the max_steps set above
    assert json.loads((out / "summary.json").read_text())["steps"] == 20


def test_a_moved_run_resumes_and_its_config_names_its_new_folder(tmp_path: Path) -> None:
    import shutil

    cfg = write(tmp_path / "c.toml", LINREG)
    out, moved = tmp_path / "run", tmp_path / "moved"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    shutil.move(out, moved)
    assert bergab.run.resume(moved).steps == 12
    text = (moved / "config.toml").read_text()
    assert text.splitlines()[0].endswith(f"continue with: bergab resume {moved}")
    assert "changed by bergab resume" not in text
    assert config.load(moved / "config.toml").run_dir() == moved


def test_every_resumable_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## `bergab resume RUN_DIR`", 1)[1].split("\n## ", 1)[0]
    for key in _run_checks.RESUMABLE_KEYS:
        assert f"`{key}`" in section, key


# --------------------------------------------------------------------------- 7. finished
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("schedule.lr=1e-4", "schedule.lr: the run already finished at step 12, so this --set"),
        ("fit.max_steps=5", "fit.max_steps: 5 trains nothing: the run has done 12 steps"),
    ],
)
def test_a_finished_run_refuses_unused_overrides_and_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, words: str
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["resume", str(out), "--set", setting]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"bergab resume: error: {words}")
    assert main(["resume", str(out), "--set", "fit.progress=true"]) == 0  # changes nothing
    assert "the run already finished at step 12" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_without_a_checkpoint_is_refused_not_started_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    capsys.readouterr()
    assert main(["resume", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "last.pt does not exist: nothing to resume" in line
    assert json.loads((out / "summary.json").read_text())["status"] == "paused"


# early stopping that never stops but restores the best weights, which (with this lr)
# are those of step 3, not of the last step: model.pt holds weights the checkpoint has not
RESTORES_BEST = ["schedule.lr=1.0", "fit.val_every=1", "fit.early_stopping.patience=100"]


def test_a_finished_run_keeps_its_best_weights_when_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    sets = [a for s in RESTORES_BEST for a in ("--set", s)]
    assert main(["train", str(cfg), "--out", str(out), *sets]) == 0
    best = weights(out / "model.pt")
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(best[k], last[k]) for k in best)
    assert main(["resume", str(out)]) == 0  # finished: model.pt must stay the best weights
    assert_same(weights(out / "model.pt"), best)
    (out / "model.pt").unlink()  # the process died between its last checkpoint and model.pt
    assert main(["resume", str(out)]) == 0
    assert_same(weights(out / "model.pt"), best)


# --------------------------------------------------------------------------- 6. SIGTERM
class SignalAt(Callback):
    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum = at, signum

    def on_batch_end(self, trainer: Any, logs: Any) -> None:
        if trainer.step == self.at:
            signal.raise_signal(self.signum)


def test_sigterm_checkpoints_like_ctrl_c_and_exits_143(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bergab._commands.train import report

    cfg = write(tmp_path / "d.toml", DIGITS)
    cut = tmp_path / "cut"
    before = signal.getsignal(signal.SIGTERM)
    result = bergab.run.train(
        config.load(cfg, [f'output.dir="{cut}"']), callbacks=[SignalAt(30, signal.SIGTERM)]
    )
    assert signal.getsignal(signal.SIGTERM) is before
    assert result.interrupted
    assert result.signal == "SIGTERM"
    assert torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["fit"]["step"] == 30
    assert json.loads((cut / "summary.json").read_text())["status"] == "terminated"
    capsys.readouterr()
    assert report(result) == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM) at step 30: checkpoint written" in err
    assert f"bergab resume {cut}" in err


# SIGTERM to the installed executable, then an exact resume: tests/test_cli_train.py
# (test_a_signal_to_the_installed_executable_then_resume_is_exact).


def test_sigterm_during_the_range_test_exits_143_with_nothing_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bergab.auto_lr

    real = bergab.auto_lr.auto_schedule

    def terminated(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the CLI's handler is set
        return real(*args, **kwargs)

    monkeypatch.setattr(bergab.auto_lr, "auto_schedule", terminated)
    cfg = write(tmp_path / "c.toml", LINREG.replace("lr = 0.05", 'lr = "auto"'))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 143
    assert "terminated (SIGTERM) before training started" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["status"] == "terminated"
    monkeypatch.undo()
    assert main(["train", str(cfg), "--out", str(out)]) == 0  # nothing was trained: reusable


# --------------------------------------------------------------------------- 12. test split
def test_the_test_split_is_evaluated_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    task = tasks.linreg(seed=3, standardize=True, n_train=200, n_val=50)
    assert task.test is not None
    task.model.load_state_dict(weights(out / "model.pt"))
    expected = evaluate(task.model, task.test, task.loss_fn, metrics=task.metrics, batch_size=32)
    final = json.loads((out / "summary.json").read_text())["final"]
    assert final["test_loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert final["test_mse"] == pytest.approx(expected["mse"], rel=1e-6)
    assert "test loss" in printed


def test_keep_best_keeps_the_best_evaluation(tmp_path: Path) -> None:
    cfg = write(tmp_path / "d.toml", DIGITS)
    out = tmp_path / "run"
    settings = [
        f'output.dir="{out}"',
        "output.keep_best=true",
        'fit.early_stopping.monitor="val_accuracy"',
        "fit.early_stopping.patience=50",
    ]
    result = bergab.run.train(config.load(cfg, settings))
    summary = json.loads((out / "summary.json").read_text())
    best = out / summary["best_checkpoint"]
    assert best.parent == out / "checkpoints"
    assert best.name.startswith("best-step")
    saved = torch.load(best, weights_only=True)
    records = [r for r in result.history.records if r.get("val_accuracy") is not None]
    top = max(r["val_accuracy"] for r in records)
    assert saved["value"] == top
    assert saved["step"] == min(r["step"] for r in records if r["val_accuracy"] == top)
    loaded = bergab.load_run(out, best=True)
    assert_same(loaded.model.state_dict(), saved["model"])


def test_early_stopping_mode_defaults_to_auto() -> None:
    cfg = config.validate(
        {"task": {"name": "digits"}, "fit": {"early_stopping": {"monitor": "val_accuracy"}}}
    )
    assert cfg.fit.early_stopping.mode == "auto"
    args = _run_checks.fit_arguments(cfg, config.build_task(cfg))
    assert args["early_stopping"].mode == "max"


# --------------------------------------------------------------------------- 11. load_run
def test_load_run_rebuilds_the_model_with_its_weights(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    loaded = bergab.load_run(out)
    assert loaded.weights == "model.pt"
    assert loaded.note is None
    assert not loaded.model.training
    assert_same(loaded.model.state_dict(), weights(out / "model.pt"))
    assert len(loaded.history) == 12
    assert loaded.config.fit.max_steps == 12
    assert loaded.summary["status"] == "finished"
    x, _ = loaded.task.val[:4]
    with torch.no_grad():
        assert loaded.model(x).shape == (4, 1)
    assert "LoadedRun(" in repr(loaded)


def test_load_run_of_an_unfinished_run_uses_the_last_checkpoint_with_a_note(
    tmp_path: Path,
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    assert not (out / "model.pt").exists()  # a pause (a callback's stop with a checkpoint)
    assert json.loads((out / "summary.json").read_text())["status"] == "paused"
    with pytest.warns(UserWarning, match=r"model\.pt is missing .*status: paused.* step 5"):
        loaded = bergab.load_run(out)
    assert loaded.weights == "checkpoints/last.pt"
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert_same(loaded.model.state_dict(), ckpt["model"])


def test_load_run_of_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a run directory: no such folder"):
        bergab.load_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"is not a run directory: it has no config\.toml"):
        bergab.load_run(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(FileNotFoundError, match="it is a file"):
        bergab.load_run(tmp_path / "f")
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    with pytest.raises(FileNotFoundError, match="kept no best weights"):
        bergab.load_run(out, best=True)


def test_load_run_works_without_the_device_the_run_trained_on(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    text = (out / "config.toml").read_text().replace('device = "auto"', 'device = "cuda:7"')
    (out / "config.toml").write_text(text)
    loaded = bergab.load_run(out)
    assert loaded.config.fit.device == "cuda:7"  # the run's own config, as written
    assert next(loaded.model.parameters()).device.type == "cpu"


# --------------------------------------------------------------------------- 15. the rest
def test_resume_refuses_another_output_dir_instead_of_ignoring_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", LINREG)
    out = tmp_path / "run"
    bergab.run.train(config.load(cfg, [f'output.dir="{out}"']), callbacks=[StopAt(5)])
    capsys.readouterr()
    assert main(["resume", str(out), "--set", f'output.dir="{tmp_path / "other"}"']) == 2
    assert one_line(capsys.readouterr().err).startswith(
        "bergab resume: error: output.dir: cannot change when resuming"
    )
    assert not (tmp_path / "other").exists()


def test_a_task_module_that_fails_to_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_task_mod.py").write_text("def task(:\n")
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "c.toml", '[task]\nname = "broken_task_mod:task"\n')
    assert main(["train", str(cfg)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("bergab train: error: task.name: importing 'broken_task_mod' failed:")
    assert "SyntaxError" in line


def test_a_config_path_that_is_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path)]) == 2
    assert "is a directory, not a config file" in one_line(capsys.readouterr().err)


def test_an_empty_output_dir_is_refused() -> None:
    with pytest.raises(config.ConfigError, match=r'^output\.dir: must not be empty, got ""$'):
        config.validate({"task": {"name": "linreg"}, "output": {"dir": ""}})


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["train"], "bergab train: error: the following arguments are required: CONFIG.toml"),
        (["resume", "--threads", "two"], "bergab resume: error: argument --threads: invalid"),
        (["trian"], "bergab: error: argument COMMAND: invalid choice: 'trian'"),
    ],
)
def test_argument_mistakes_are_one_line_without_the_usage_block(
    capsys: pytest.CaptureFixture[str], argv: list[str], start: str
) -> None:
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(start)
    assert line.endswith("--help')")


def test_schedule_checks_its_plot_path_naming_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = '{"type": "constant", "lr": 0.1}'
    (tmp_path / "f").write_text("")
    for plot, words in [
        (tmp_path / "f" / "s.png", ": cannot create a folder inside the file"),
        (tmp_path, " must be a file path, got the folder"),
    ]:
        assert main(["schedule", spec, "--steps", "3", "--plot", str(plot)]) == 2
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"bergab schedule: error: --plot{words}")


def test_output_dir_expands_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.validate({"task": {"name": "linreg"}, "output": {"dir": "~/runs/x"}})
    assert cfg.run_dir() == tmp_path / "runs" / "x"


def test_train_and_find_lr_refuse_a_dict_config_naming_cfg() -> None:
    for fn in (bergab.run.train, bergab.run.find_lr):
        with pytest.raises(TypeError, match=r"cfg must be a bergab.config.RunConfig.*validate"):
            fn({"task": {"name": "linreg"}})  # type: ignore[arg-type]


def test_resume_refuses_a_lone_string_of_overrides(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="overrides must be a list"):
        bergab.run.resume(tmp_path, "fit.max_steps=5")  # type: ignore[arg-type]
