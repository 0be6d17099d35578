"""The bad-input suite of issue #17, command-line side: every ``bergab`` command.

Each row of :data:`CLI_CASES` runs ``bergab.cli.main(argv)`` in this process and requires
exit code 2 and exactly one line on stderr (no traceback, no usage block) that names the
argument, the TOML key path or the file. The signal tests run the installed ``bergab``
executable and interrupt it: SIGINT exits 130 and SIGTERM 143, each after writing a
checkpoint and saying how to resume.

The counts of these tables and the library's (``tests/bad_input_cases.py``) are stated in
``docs/bad-input.md``; :func:`test_the_doc_states_the_counts_of_the_tables` keeps them equal.
"""

# The tables keep one case per line, however long: a row reads as one sentence.
# ruff: noqa: E501

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from bergab.training import Callback
from tests import bad_input_cases as cases
from tests.bad_input_cases import AnyOf

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

BERGAB = Path(sys.executable).with_name("bergab")
DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
NO_CUDA = not torch.cuda.is_available()

#: a small valid run config: linreg, 3 steps, no plots
CONFIG = """\
[task]
name = "linreg"
n_train = 64
n_val = 16

[optimizer]
name = "adamw"

[schedule]
lr = 0.01

[lr_find]
steps = 10

[fit]
max_steps = 3
batch_size = 16
progress = false

[output]
plots = false
"""

SCHEDULE = '{"type": "cosine", "peak": 0.1, "total_steps": 10}'


@dataclass
class CliCtx:
    """What a CLI case's ``argv`` gets: its folder, a valid config, and copies of runs."""

    tmp: Path
    templates: Callable[[str], Path]

    def config(self, extra: str = "", name: str = "c.toml", base: str = CONFIG) -> str:
        path = self.tmp / name
        path.write_text(base + textwrap.dedent(extra), encoding="utf-8")
        return str(path)

    def out(self) -> str:
        return str(self.tmp / "out")

    def file(self, name: str, data: str | bytes = "x") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
        return str(path)

    def dir(self, name: str) -> str:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def run(self, which: str = "finished", name: str = "run") -> Path:
        """A copy of a finished 3-step run, or of a run paused at step 2 of 6."""
        dst = self.tmp / name
        shutil.copytree(self.templates(which), dst)
        return dst


@dataclass(frozen=True)
class CliCase:
    """One bad command line: ``argv(ctx)``; the exit code; what stderr's line must name."""

    id: str
    argv: Callable[[CliCtx], list[str]]
    must_name: cases.Names
    kind: str
    code: int = 2
    skip: str | None = None


def train_set(*sets: str, extra: str = "", out: bool = True) -> Callable[[CliCtx], list[str]]:
    """``bergab train c.toml --out DIR --set ...`` (``out=False``: no ``--out``, which would
    override ``--set output.dir``)."""

    with_out = out

    def argv(c: CliCtx) -> list[str]:
        out = ["train", c.config(extra), *(["--out", c.out()] if with_out else [])]
        for s in sets:
            out += ["--set", s]
        return out

    return argv


def set_case(key: str, value: str, kind: str, *more: str, name: str | None = None) -> CliCase:
    """A ``--set key=value`` case of ``train`` that must name ``key`` (or ``name``)."""
    label = value.replace('"', "").replace(" ", "") or "empty"
    argv = train_set(f"{key}={value}", *more, out=not key.startswith("output."))
    return CliCase(f"train-set-{key}={label}", argv, name or key, kind)


def _resume_truncated(c: CliCtx) -> list[str]:
    run = c.run("paused")
    cases.truncate_all(run / "checkpoints" / "last.pt")
    return ["resume", str(run)]


def _resume_finished_truncated(c: CliCtx) -> list[str]:
    run = c.run("finished")
    cases.truncate_all(run / "checkpoints" / "last.pt")
    return ["resume", str(run), "--set", "fit.max_steps=6"]


def _resume_no_checkpoint(c: CliCtx) -> list[str]:
    run = c.run("paused")
    shutil.rmtree(run / "checkpoints")
    return ["resume", str(run)]


def _resume_corrupt_config(c: CliCtx) -> list[str]:
    run = c.run("paused")
    (run / "config.toml").write_text("[task\n", encoding="utf-8")
    return ["resume", str(run)]


def _resume_config_unknown_key(c: CliCtx) -> list[str]:
    run = c.run("paused")
    path = run / "config.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n[bogus]\nx = 1\n", encoding="utf-8")
    return ["resume", str(run)]


# fmt: off
FIT_SETS: list[CliCase] = [
    set_case("fit.epochs", "0", "range"),
    set_case("fit.epochs", '"3"', "type"),
    set_case("fit.epochs", "1.5", "type"),
    set_case("fit.epochs", "inf", "nan"),
    set_case("fit.max_steps", "0", "range"),
    set_case("fit.max_steps", "-1", "range"),
    set_case("fit.max_steps", "2.5", "type"),
    set_case("fit.max_steps", "nan", "nan"),
    set_case("fit.batch_size", "0", "range"),
    set_case("fit.batch_size", "half", "type"),
    set_case("fit.batch_size", "2.5", "type"),
    set_case("fit.batch_size", "true", "type"),
    set_case("fit.shuffle", "1", "type"),
    set_case("fit.shuffle", "yes", "type"),
    set_case("fit.clip_norm", "0", "range"),
    set_case("fit.clip_norm", "-1.0", "range"),
    set_case("fit.clip_norm", "inf", "nan"),
    set_case("fit.clip_norm", "nan", "nan"),
    set_case("fit.clip_norm", "abc", "type"),
    set_case("fit.clip_value", "-0.5", "range"),
    set_case("fit.clip_value", "nan", "nan"),
    set_case("fit.clip_value", "inf", "nan"),
    set_case("fit.accumulation_steps", "0", "range"),
    set_case("fit.accumulation_steps", "1.5", "type"),
    set_case("fit.precision", "16", "range"),
    set_case("fit.precision", '"fp8"', "range"),
    set_case("fit.device", "tpu", "range"),
    set_case("fit.device", "3", "type"),
    set_case("fit.val_every", "0", "range"),
    set_case("fit.val_every", "nan", "nan"),
    set_case("fit.checkpoint_every", "0", "range"),
    set_case("fit.checkpoint_every", "inf", "nan"),
    set_case("fit.seed", "-1", "range"),
    set_case("fit.seed", "1.5", "type"),
    set_case("fit.seed", "abc", "type"),
    set_case("fit.progress", "1", "type"),
    set_case("fit.progress", "no", "type"),
    set_case("fit.nan_policy", "ignore", "range"),
    set_case("fit.nan_policy", "1", "type"),
    set_case("fit.tol", "0", "range"),
    set_case("fit.tol", "-1e-3", "range"),
    set_case("fit.tol", "nan", "nan"),
    set_case("fit.tol", "inf", "nan"),
    set_case("fit.early_stopping.patience", "-1", "range"),
    set_case("fit.early_stopping.mode", "up", "range"),
    set_case("fit.early_stopping.min_delta", "nan", "nan"),
    set_case("fit.early_stopping.monitor", "5", "type"),
    set_case("fit.early_stopping.patiense", "3", "range"),
    set_case("fit.epoch", "3", "range"),
    set_case("fit.lr", "0.1", "range"),
]
# fmt: on

# fmt: off
LR_FIND_SETS: list[CliCase] = [
    set_case("lr_find.start_lr", "0", "range"),
    set_case("lr_find.start_lr", "-1e-7", "range"),
    set_case("lr_find.start_lr", "nan", "nan"),
    set_case("lr_find.start_lr", "abc", "type"),
    set_case("lr_find.end_lr", "0", "range"),
    set_case("lr_find.end_lr", "inf", "nan"),
    set_case("lr_find.steps", "1", "range"),
    set_case("lr_find.steps", "2", "range", 'schedule.lr="auto"'),
    set_case("lr_find.steps", "2.5", "type"),
    set_case("lr_find.steps", "abc", "type"),
    set_case("lr_find.mode", "log", "range"),
    set_case("lr_find.mode", "1", "type"),
    set_case("lr_find.smoothing", "1.0", "range"),
    set_case("lr_find.smoothing", "-0.1", "range"),
    set_case("lr_find.smoothing", "nan", "nan"),
    set_case("lr_find.diverge_factor", "1.0", "range"),
    set_case("lr_find.diverge_factor", "inf", "nan"),
    set_case("lr_find.stepz", "10", "range"),
    CliCase("train-set-lr_find-start-above-end", train_set("lr_find.start_lr=1.0", "lr_find.end_lr=0.1"), AnyOf(("lr_find.start_lr", "lr_find.end_lr")), "range"),
]
# fmt: on

# fmt: off
OUTPUT_SETS: list[CliCase] = [
    set_case("output.dir", "5", "type"),
    set_case("output.dir", '""', "range"),
    set_case("output.overwrite", "yes", "type"),
    set_case("output.overwrite", "1", "type"),
    set_case("output.plots", "no", "type"),
    set_case("output.plots", "0", "type"),
    set_case("output.plot", "false", "range"),
]
# fmt: on

# fmt: off
OTHER_SETS: list[CliCase] = [
    set_case("task.name", "mnist", "range"),
    set_case("task.n_train", "0", "range"),
    set_case("task.seed", "-1", "range"),
    set_case("task.dtype", "float17", "type"),
    set_case("task.noise", "nan", "nan"),
    set_case("task.n_trian", "10", "range"),
    set_case("optimizer.name", "adamz", "range"),
    set_case("optimizer.lr", "0.1", "range"),
    set_case("optimizer.weight_decay", "-0.1", "range"),
    set_case("optimizer.weight_decay", "nan", "nan"),
    set_case("optimizer.betas", "[0.9]", "range"),
    set_case("optimizer.betas", "[0.9, inf]", "nan"),
    set_case("optimizer.momentm", "0.9", "range"),
    set_case("schedule.lr", "-0.1", "range"),
    set_case("schedule.lr", "nan", "nan"),
    set_case("schedule.lr", "inf", "nan"),
    set_case("schedule.lr", "fast", "range"),
    set_case("schedule.policy", "linear", "range", 'schedule.lr="auto"'),
    set_case("bogus.key", "1", "range", name="bogus"),
    CliCase("train-set-syntax", train_set("fit.max_steps"), "--set", "range"),
    CliCase("train-set-empty-key", train_set("=3"), "--set", "range"),
    CliCase("train-schedule-unknown-type", lambda c: ["train", c.config(base=CONFIG.replace("lr = 0.01", 'type = "cosinus"\npeak = 0.1\ntotal_steps = 10')), "--out", c.out()], "schedule.type", "range"),
    CliCase("train-schedule-missing-arg", lambda c: ["train", c.config(base=CONFIG.replace("lr = 0.01", 'type = "cosine"\npeak = 0.1')), "--out", c.out()], "schedule.total_steps", "range"),
    CliCase("train-schedule-nested-nan", lambda c: ["train", c.config(base=CONFIG.replace("lr = 0.01", 'type = "warmup"\nsteps = 2\n[schedule.schedule]\ntype = "constant"\nlr = nan')), "--out", c.out()], "schedule.schedule.lr", "nan"),
    CliCase("train-schedule-final-above-peak", lambda c: ["train", c.config(base=CONFIG.replace("lr = 0.01", 'type = "cosine"\npeak = 0.1\ntotal_steps = 10\nfinal = 1.0')), "--out", c.out()], "schedule.final", "silent"),
    CliCase("train-device-cuda", train_set("fit.device=cuda"), "fit.device", "range", skip=None if NO_CUDA else "CUDA is available"),
    CliCase("train-device-cuda-lr-auto", train_set("fit.device=cuda", 'schedule.lr="auto"'), "fit.device", "range", skip=None if NO_CUDA else "CUDA is available"),
    CliCase("train-set-several-one-bad", train_set("fit.device=cpu", "fit.precision=bf16", "fit.accumulation_steps=0"), "fit.accumulation_steps", "range"),
]
# fmt: on

# fmt: off
FILES: list[CliCase] = [
    CliCase("train-config-missing", lambda c: ["train", str(c.tmp / "missing.toml")], "missing.toml", "path"),
    CliCase("train-config-is-directory", lambda c: ["train", c.dir("confdir")], "confdir", "path"),
    CliCase("train-config-invalid-toml", lambda c: ["train", c.file("bad.toml", "[task\nname = 1\n")], "bad.toml", "file"),
    CliCase("train-config-binary", lambda c: ["train", c.file("bin.toml", b"\xff\xfe\x00\x01garbage")], "bin.toml", "file"),
    CliCase("train-config-empty", lambda c: ["train", c.file("empty.toml", "")], "task", "file"),
    CliCase("train-config-unknown-table", lambda c: ["train", c.config("\n[extra]\nx = 1\n"), "--out", c.out()], "extra", "range"),
    CliCase("train-config-unknown-fit-key", lambda c: ["train", c.config(base=CONFIG.replace("max_steps = 3", "max_step = 3")), "--out", c.out()], "fit.max_step", "range"),
    CliCase("train-config-table-is-value", lambda c: ["train", c.file("v.toml", 'fit = 3\n[task]\nname = "linreg"\n')], "fit", "type"),
    CliCase("train-out-is-file", lambda c: ["train", c.config(), "--out", c.file("taken")], AnyOf(("--out", "output.dir")), "path"),
    CliCase("train-out-under-file", lambda c: ["train", c.config(), "--out", str(Path(c.file("f.txt")) / "run")], AnyOf(("--out", "output.dir")), "path"),
    CliCase("train-out-holds-run", lambda c: ["train", c.config(), "--out", str(c.run())], "output.dir", "path"),
    CliCase("train-threads-zero", lambda c: ["train", c.config(), "--out", c.out(), "--threads", "0"], "--threads", "range"),
    CliCase("train-threads-str", lambda c: ["train", c.config(), "--threads", "two"], "--threads", "type"),
    CliCase("train-no-config", lambda c: ["train"], "CONFIG.toml", "type"),
    CliCase("train-unknown-option", lambda c: ["train", c.config(), "--epochs", "3"], "--epochs", "type"),
    # lr-find
    CliCase("lr-find-config-missing", lambda c: ["lr-find", str(c.tmp / "missing.toml")], "missing.toml", "path"),
    CliCase("lr-find-config-invalid-toml", lambda c: ["lr-find", c.file("bad.toml", "name = = 1")], "bad.toml", "file"),
    CliCase("lr-find-steps-one", lambda c: ["lr-find", c.config(), "--set", "lr_find.steps=1"], "lr_find.steps", "range"),
    CliCase("lr-find-steps-two", lambda c: ["lr-find", c.config(), "--out", c.out(), "--set", "lr_find.steps=2"], "lr_find.steps", "range"),
    CliCase("lr-find-end_lr-nan", lambda c: ["lr-find", c.config(), "--set", "lr_find.end_lr=nan"], "lr_find.end_lr", "nan"),
    CliCase("lr-find-plot-under-file", lambda c: ["lr-find", c.config(), "--out", c.out(), "--plot", str(Path(c.file("f.txt")) / "lr.png")], "--plot", "path"),
    CliCase("lr-find-plot-is-directory", lambda c: ["lr-find", c.config(), "--out", c.out(), "--plot", c.dir("plotdir")], "--plot", "path"),
    CliCase("lr-find-out-is-file", lambda c: ["lr-find", c.config(), "--out", c.file("taken")], AnyOf(("--out", "output.dir")), "path"),
    CliCase("lr-find-device-cuda", lambda c: ["lr-find", c.config(), "--set", "fit.device=cuda"], "fit.device", "range", skip=None if NO_CUDA else "CUDA is available"),
    CliCase("lr-find-optimizer-unknown", lambda c: ["lr-find", c.config(), "--set", "optimizer.name=adamz"], "optimizer.name", "range"),
    CliCase("lr-find-no-config", lambda c: ["lr-find"], "CONFIG.toml", "type"),
    # resume
    CliCase("resume-missing-dir", lambda c: ["resume", str(c.tmp / "nope")], "nope", "path"),
    CliCase("resume-file-not-dir", lambda c: ["resume", c.file("notadir")], "notadir", "path"),
    CliCase("resume-empty-dir", lambda c: ["resume", c.dir("emptydir")], "emptydir", "path"),
    CliCase("resume-truncated-last.pt", _resume_truncated, "last.pt", "interrupted"),
    CliCase("resume-finished-truncated-last.pt", _resume_finished_truncated, "last.pt", "interrupted"),
    CliCase("resume-no-checkpoint", _resume_no_checkpoint, "last.pt", "interrupted"),
    CliCase("resume-corrupt-config", _resume_corrupt_config, "config.toml", "file"),
    CliCase("resume-config-unknown-table", _resume_config_unknown_key, "bogus", "file"),
    CliCase("resume-set-optimizer-sgd-on-adamw", lambda c: ["resume", str(c.run("paused")), "--set", "optimizer.name=sgd"], "optimizer.name", "interrupted"),
    CliCase("resume-set-task", lambda c: ["resume", str(c.run("paused")), "--set", "task.n_train=32"], "task.n_train", "interrupted"),
    CliCase("resume-finished-set-schedule-lr", lambda c: ["resume", str(c.run("finished")), "--set", "schedule.lr=1e-4"], "schedule.lr", "interrupted"),
    CliCase("resume-set-max_steps-zero", lambda c: ["resume", str(c.run("paused")), "--set", "fit.max_steps=0"], "fit.max_steps", "range"),
    CliCase("resume-set-max_steps-below-done", lambda c: ["resume", str(c.run("paused")), "--set", "fit.max_steps=1"], "fit.max_steps", "interrupted"),
    CliCase("resume-set-syntax", lambda c: ["resume", str(c.run("paused")), "--set", "fit.max_steps"], "--set", "range"),
    CliCase("resume-threads-zero", lambda c: ["resume", str(c.run("paused")), "--threads", "0"], "--threads", "range"),
    CliCase("resume-device-cuda", lambda c: ["resume", str(c.run("paused")), "--set", "fit.device=cuda"], "fit.device", "range", skip=None if NO_CUDA else "CUDA is available"),
    CliCase("resume-no-dir", lambda c: ["resume"], "RUN_DIR", "type"),
    # demo
    CliCase("demo-out-is-file", lambda c: ["demo", "--quick", "--no-progress", "--out", c.file("taken")], AnyOf(("--out", "output.dir")), "path"),
    CliCase("demo-out-under-file", lambda c: ["demo", "--quick", "--no-progress", "--out", str(Path(c.file("f.txt")) / "demo")], AnyOf(("--out", "output.dir")), "path"),
    CliCase("demo-threads-zero", lambda c: ["demo", "--quick", "--threads", "0", "--out", c.out()], "--threads", "range"),
    CliCase("demo-unknown-option", lambda c: ["demo", "--fast"], "--fast", "type"),
    # schedule
    CliCase("schedule-missing-file", lambda c: ["schedule", str(c.tmp / "missing.json"), "--steps", "5"], "missing.json", "path"),
    CliCase("schedule-directory", lambda c: ["schedule", c.dir("scheddir"), "--steps", "5"], "scheddir", "path"),
    CliCase("schedule-invalid-inline-json", lambda c: ["schedule", '{"type": "cosine",', "--steps", "5"], AnyOf(("CONFIG_OR_JSON", "JSON")), "file"),
    CliCase("schedule-invalid-json-file", lambda c: ["schedule", c.file("bad.json", '{"type": '), "--steps", "5"], "bad.json", "file"),
    CliCase("schedule-invalid-toml-file", lambda c: ["schedule", c.file("bad.toml", "[schedule\n"), "--steps", "5"], "bad.toml", "file"),
    CliCase("schedule-json-array", lambda c: ["schedule", c.file("arr.json", "[1, 2]"), "--steps", "5"], "arr.json", "file"),
    CliCase("schedule-unknown-type", lambda c: ["schedule", '{"type": "cosinus", "peak": 0.1}', "--steps", "5"], "cosinus", "range"),
    CliCase("schedule-missing-arg", lambda c: ["schedule", '{"type": "cosine", "peak": 0.1}', "--steps", "5"], "total_steps", "range"),
    CliCase("schedule-bad-arg", lambda c: ["schedule", '{"type": "cosine", "peak": -0.1, "total_steps": 10}', "--steps", "5"], "peak", "range"),
    CliCase("schedule-nan-arg", lambda c: ["schedule", '{"type": "constant", "lr": NaN}', "--steps", "5"], "lr", "nan"),
    CliCase("schedule-steps-zero", lambda c: ["schedule", SCHEDULE, "--steps", "0"], AnyOf(("--steps", "steps")), "range"),
    CliCase("schedule-steps-str", lambda c: ["schedule", SCHEDULE, "--steps", "abc"], "--steps", "type"),
    CliCase("schedule-steps-missing", lambda c: ["schedule", SCHEDULE], "--steps", "type"),
    CliCase("schedule-plot-under-file", lambda c: ["schedule", SCHEDULE, "--steps", "5", "--plot", str(Path(c.file("f.txt")) / "s.png")], "--plot", "path"),
    CliCase("schedule-plot-is-directory", lambda c: ["schedule", SCHEDULE, "--steps", "5", "--plot", c.dir("plotdir")], "--plot", "path"),
    # landscape
    CliCase("landscape-unknown", lambda c: ["landscape", "rosenbrok", "--steps", "5", "--lr", "0.01"], "rosenbrok", "range"),
    CliCase("landscape-steps-zero", lambda c: ["landscape", "saddle", "--steps", "0", "--lr", "0.01"], "--steps", "range"),
    CliCase("landscape-steps-str", lambda c: ["landscape", "saddle", "--steps", "many", "--lr", "0.01"], "--steps", "type"),
    CliCase("landscape-lr-negative", lambda c: ["landscape", "saddle", "--steps", "5", "--lr=-0.1"], "--lr", "range"),
    CliCase("landscape-lr-nan", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "nan"], "--lr", "nan"),
    CliCase("landscape-lr-inf", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "inf"], "--lr", "nan"),
    CliCase("landscape-lr-missing-optimizer", lambda c: ["landscape", "saddle", "--steps", "5", "--optimizers", "sgd,adam", "--lr", "sgd=0.1"], "--lr", "range"),
    CliCase("landscape-optimizer-unknown", lambda c: ["landscape", "saddle", "--steps", "5", "--optimizers", "sgd,adamz", "--lr", "0.01"], "adamz", "range"),
    CliCase("landscape-optimizers-empty", lambda c: ["landscape", "saddle", "--steps", "5", "--optimizers", ",", "--lr", "0.01"], "--optimizers", "range"),
    CliCase("landscape-optimizers-twice", lambda c: ["landscape", "saddle", "--steps", "5", "--optimizers", "sgd,sgd", "--lr", "0.01"], "--optimizers", "range"),
    CliCase("landscape-start-one-number", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--start=1"], "--start", "data"),
    CliCase("landscape-start-nan", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--start=nan,1"], "--start", "nan"),
    CliCase("landscape-start-str", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--start=a,b"], "--start", "type"),
    CliCase("landscape-grid-two-parts", lambda c: ["landscape", "saddle", "--steps", "5", "--grid", "1e-3,1"], "--grid", "range"),
    CliCase("landscape-grid-negative", lambda c: ["landscape", "saddle", "--steps", "5", "--grid=-1,1,3"], "--grid", "range"),
    CliCase("landscape-grid-num-zero", lambda c: ["landscape", "saddle", "--steps", "5", "--grid", "1e-3,1,0"], "--grid", "range"),
    CliCase("landscape-tol-negative", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--tol=-1"], "--tol", "range"),
    CliCase("landscape-tol-nan", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--tol", "nan"], "--tol", "nan"),
    CliCase("landscape-condition-number-small", lambda c: ["landscape", "quadratic", "--steps", "5", "--lr", "0.01", "--condition-number", "0.5"], "--condition-number", "range"),
    CliCase("landscape-condition-number-inf", lambda c: ["landscape", "quadratic", "--steps", "5", "--lr", "0.01", "--condition-number", "inf"], "--condition-number", "nan"),
    CliCase("landscape-condition-number-str", lambda c: ["landscape", "quadratic", "--steps", "5", "--lr", "0.01", "--condition-number", "big"], "--condition-number", "type"),
    CliCase("landscape-noise-negative", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--noise=-1"], "--noise", "range"),
    CliCase("landscape-noise-nan", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--noise", "nan"], "--noise", "nan"),
    CliCase("landscape-seed-negative", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--seed=-1"], "--seed", "range"),
    CliCase("landscape-seed-float", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--seed", "1.5"], "--seed", "type"),
    CliCase("landscape-frames-one", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--frames", "1"], "--frames", "range"),
    CliCase("landscape-gif-without-out", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--gif"], "--gif", "range"),
    CliCase("landscape-out-missing-dir", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--out", str(c.tmp / "nodir" / "x.png")], "--out", "path"),
    CliCase("landscape-out-under-file", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--out", str(Path(c.file("f.txt")) / "x.png")], "--out", "path"),
    CliCase("landscape-out-is-directory", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--out", c.dir("outdir")], "--out", "path"),
    CliCase("landscape-out-unknown-suffix", lambda c: ["landscape", "saddle", "--steps", "5", "--lr", "0.01", "--out", str(c.tmp / "x.xyz")], "--out", "path"),
    CliCase("landscape-no-name", lambda c: ["landscape"], "NAME", "type"),
    # info, no command
    CliCase("info-extra-argument", lambda c: ["info", "now"], "now", "type"),
    CliCase("top-unknown-command", lambda c: ["trian", "x.toml"], "trian", "range"),
    CliCase("top-unknown-option", lambda c: ["--bogus"], "--bogus", "type"),
    CliCase("top-command-option-without-command", lambda c: ["--threads"], "--threads", "type"),
]
# fmt: on

CLI_CASES: list[Any] = [*FIT_SETS, *LR_FIND_SETS, *OUTPUT_SETS, *OTHER_SETS, *FILES]


@dataclass(frozen=True)
class CliCheck:
    """A command line that must work and say something: ``check(ctx, run_main)`` asserts."""

    id: str
    check: Callable[[CliCtx, Callable[[list[str]], tuple[int, str, str]]], None]
    kind: str


def _damaged_last_uses_previous(
    c: CliCtx, run: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    target = c.run("paused")
    last = target / "checkpoints" / "last.pt"
    assert list(last.parent.glob("last.prev*.pt")), "the run keeps no previous checkpoint"
    cases.truncated(last)
    rc, out, err = run(["resume", str(target)])
    assert rc == 0, f"exit {rc}: {err!r}"
    assert "last.pt" in out + err, f"nothing said about the damaged last.pt: {(out + err)[-400:]!r}"


def _finished_run_says_so(c: CliCtx, run: Callable[[list[str]], tuple[int, str, str]]) -> None:
    rc, out, err = run(["resume", str(c.run("finished"))])
    assert rc == 0, f"exit {rc}: {err!r}"
    assert "fit.max_steps" in out + err, f"no hint how to train on: {(out + err)[-400:]!r}"


# fmt: off
CLI_CHECKS: list[CliCheck] = [
    CliCheck("resume-damaged-last.pt-uses-previous-and-says-so", _damaged_last_uses_previous, "interrupted"),
    CliCheck("resume-finished-run-says-how-to-train-on", _finished_run_says_so, "interrupted"),
]
# fmt: on


@dataclass(frozen=True)
class SignalCase:
    """A run of the real ``bergab`` executable interrupted by ``sig``; it must exit ``code``."""

    id: str
    sig: int
    code: int
    kind: str = "interrupted"


SIGNAL_CASES = [
    SignalCase("signal-sigint-130", signal.SIGINT, 130),
    SignalCase("signal-sigterm-143", signal.SIGTERM, 143),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(n)


class _PauseAt(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer: Any, logs: Any) -> None:
        if trainer.step == self.at:
            trainer.stop("paused by the test", checkpoint=True)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Runs built on first use: ``finished`` (3 steps) and ``paused`` (at step 2 of 6)."""
    made: dict[str, Path] = {}

    def get(which: str) -> Path:
        if which not in made:
            import bergab.run
            from bergab import config

            root = tmp_path_factory.mktemp(f"bad-input-{which}")
            path = root / "c.toml"
            path.write_text(CONFIG, encoding="utf-8")
            if which == "finished":
                cfg = config.load(path, [f"output.dir={json.dumps(str(root / 'run'))}"])
                bergab.run.train(cfg, say=lambda s: None)
            else:
                cfg = config.load(
                    path, [f"output.dir={json.dumps(str(root / 'run'))}", "fit.max_steps=6"]
                )
                bergab.run.train(cfg, callbacks=[_PauseAt(2)], say=lambda s: None)
            made[which] = root / "run"
        return made[which]

    return get


# --------------------------------------------------------------------------- the cases


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from bergab.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # main must return its code, never exit itself
        rc = exc.code if isinstance(exc.code, int) else 1
        raise AssertionError(f"UNCLEAR: main() raised SystemExit({exc.code!r})") from None
    except BaseException as exc:
        raise AssertionError(
            f"UNCLEAR: main() raised {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli_bad_input_is_one_line_naming_the_key(
    case: CliCase,
    tmp_path: Path,
    templates: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.skip:
        pytest.skip(case.skip)
    monkeypatch.chdir(tmp_path)  # a run that should not have started writes nothing elsewhere
    ctx = CliCtx(tmp=tmp_path, templates=templates)
    argv = case.argv(ctx)
    rc, err = run_main(argv, capsys)
    lines = err.strip().splitlines()
    if rc == 0:
        raise AssertionError(f"SILENT: exit 0 for {argv}; stderr {err!r}")
    problems = []
    if rc != case.code:
        problems.append(f"exit {rc}, not {case.code}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if "Traceback" in err:
        problems.append("a traceback")
    missing = cases.names_in(err, case.must_name)
    if missing:
        problems.append(f"stderr does not name {missing}")
    assert not problems, f"UNCLEAR: {'; '.join(problems)}: {err[-600:]!r}"


@pytest.mark.parametrize("check", CLI_CHECKS, ids=lambda c: c.id)
def test_cli_recoveries_work_and_say_so(
    check: CliCheck,
    tmp_path: Path,
    templates: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bergab.cli import main

    monkeypatch.chdir(tmp_path)

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            rc = main(argv)
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    check.check(CliCtx(tmp=tmp_path, templates=templates), run)


# --------------------------------------------------------------------------- signals


SIGNAL_CONFIG = """\
[task]
name = "linreg"
n_train = 64
n_val = 16

[optimizer]
name = "adamw"

[schedule]
lr = 0.001

[fit]
max_steps = 2000000
batch_size = 16
checkpoint_every = 50
progress = false

[output]
plots = false
"""


@pytest.mark.slow
@pytest.mark.skipif(not BERGAB.exists(), reason="the bergab executable is not installed")
@pytest.mark.parametrize("case", SIGNAL_CASES, ids=lambda c: c.id)
def test_a_signal_checkpoints_says_how_to_resume_and_exits_with_its_code(
    case: SignalCase, tmp_path: Path
) -> None:
    cfg = tmp_path / "long.toml"
    cfg.write_text(SIGNAL_CONFIG, encoding="utf-8")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(BERGAB), "train", str(cfg), "--out", str(run), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # the signal goes to bergab alone, not to pytest
    )
    try:
        last = run / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 60
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"bergab ended early: {proc.communicate()}"
        assert last.exists(), "no checkpoint after 60 s: training never started"
        time.sleep(0.5)  # some steps past the first checkpoint
        proc.send_signal(case.sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    problems = []
    if proc.returncode != case.code:
        problems.append(f"exit {proc.returncode}, not {case.code}")
    if "Traceback" in err:
        problems.append("a traceback")
    if f"bergab resume {run}" not in err:
        problems.append("no 'bergab resume RUN_DIR' hint")
    m = re.search(r"at step (\d+): checkpoint written", err)
    if m is None:
        problems.append("no 'at step N: checkpoint written'")
    elif torch.load(last, weights_only=True)["fit"]["step"] != int(m.group(1)):
        problems.append("the checkpoint is not at the step the message names")
    if (run / "model.pt").exists():
        problems.append("model.pt written, as if the run had finished")
    assert not problems, f"UNCLEAR: {'; '.join(problems)}: {err[-600:]!r}"


# --------------------------------------------------------------------------- counts


def test_at_least_250_cases() -> None:
    c = cases.counts([*CLI_CASES, *CLI_CHECKS, *SIGNAL_CASES])
    assert c.library + c.cli >= 250, (c.library, c.cli)


def test_the_table_ids_are_unique_and_kinds_known() -> None:
    rows = [
        *cases.LIBRARY_CASES,
        *cases.SILENT_RAISES,
        *cases.SILENT_CHECKS,
        *cases.MUST_WORK,
        *CLI_CASES,
        *CLI_CHECKS,
        *SIGNAL_CASES,
    ]
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert {r.kind for r in rows} <= set(cases.KINDS)


def test_the_doc_states_the_counts_of_the_tables() -> None:
    """docs/bad-input.md's count tables are the tables' own counts (update both together)."""
    c = cases.counts([*CLI_CASES, *CLI_CHECKS, *SIGNAL_CASES])
    text = DOC.read_text(encoding="utf-8")

    def stated(label: str) -> int:
        m = re.search(rf"^\|\s*`?{re.escape(label)}`?\s*\|\s*(\d+)\s*\|", text, re.MULTILINE)
        assert m is not None, f"docs/bad-input.md has no row '| {label} | N |'"
        return int(m.group(1))

    assert stated("library") == c.library
    assert stated("CLI") == c.cli
    assert stated("total") == c.library + c.cli
    for kind, n in c.per_kind.items():
        assert stated(kind) == n, kind
    for label, n in [*c.per_area.items(), *c.per_command.items()]:
        assert stated(label) == n, label
