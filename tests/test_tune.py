"""bergab.tune: searches over a function and over run configs, CV, grids, studies, CLI."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

optuna = pytest.importorskip("optuna")
pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

from bergab import config, run  # noqa: E402
from bergab.cli import main  # noqa: E402
from bergab.tuning import tune  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _quadratic(params: dict[str, Any], report: Any) -> float:
    return (params["x"] - 2.0) ** 2 + (0.0 if params.get("flag", True) else 1.0)


def _base(tmp_path: Path, **space: Any) -> dict[str, Any]:
    """A tiny linreg run config with a [tune] table."""
    return {
        "task": {"name": "linreg", "standardize": True, "n_train": 200, "n_val": 50},
        "optimizer": {"name": "sgd"},
        "schedule": {"lr": 0.01},
        "fit": {"max_steps": 20, "batch_size": 50, "seed": 0, "val_every": 10},
        "output": {"plots": False},
        "tune": {"space": space or {"schedule.lr": {"loguniform": [1e-3, 0.5]}}},
    }


# ----------------------------------------------------------------------------- functions
def test_a_function_is_minimized_and_the_result_records_every_trial(tmp_path: Path) -> None:
    res = tune(_quadratic, {"x": {"uniform": [-5, 5]}}, sampler="tpe", trials=25,
               out=tmp_path, study="q")  # fmt: skip
    assert len(res.trials) == 25
    assert all(t["state"] == "COMPLETE" for t in res.trials)
    assert abs(res.best_params["x"] - 2.0) < 1.0
    assert res.best_value == min(t["value"] for t in res.trials)
    assert res.direction == "minimize"
    assert (tmp_path / "q").is_dir()


def test_one_worker_with_the_same_seed_draws_the_same_parameters(tmp_path: Path) -> None:
    def params(where: str, seed: int) -> list[float]:
        res = tune(_quadratic, {"x": {"uniform": [-5, 5]}}, sampler="tpe", trials=12,
                   seed=seed, out=tmp_path / where)  # fmt: skip
        return [t["params"]["x"] for t in res.trials]

    assert params("a", 3) == params("b", 3)
    assert params("a2", 3) != params("c", 4)


def test_reported_values_let_a_pruner_stop_trials(tmp_path: Path) -> None:
    def curve(params: dict[str, Any], report: Any) -> float:
        value = 0.0
        for step in range(10):
            value = abs(params["x"]) + 1.0 / (step + 1)
            report(value, step)
        return value

    res = tune(curve, {"x": {"uniform": [-5, 5]}}, sampler="random", pruner="median",
               trials=30, out=tmp_path)  # fmt: skip
    states = {t["state"] for t in res.trials}
    assert "PRUNED" in states
    pruned = [t for t in res.trials if t["state"] == "PRUNED"]
    assert all(len(t["intermediate"]) < 10 for t in pruned)


def test_a_grid_search_ends_when_the_grid_is_exhausted(tmp_path: Path) -> None:
    space = {"x": {"choice": [0.0, 1.0, 2.0, 3.0]}, "flag": {"choice": [True, False]}}
    res = tune(_quadratic, space, sampler="grid", pruner="none", out=tmp_path)
    assert len(res.trials) == 8
    assert res.best_params == {"x": 2.0, "flag": True}
    assert sorted((t["params"]["x"], t["params"]["flag"]) for t in res.trials) == sorted(
        (x, f) for x in (0.0, 1.0, 2.0, 3.0) for f in (True, False)
    )


def test_running_a_study_again_continues_it(tmp_path: Path) -> None:
    space = {"x": {"uniform": [-5, 5]}}
    tune(_quadratic, space, sampler="random", trials=4, out=tmp_path, study="s")
    res = tune(_quadratic, space, sampler="random", trials=7, out=tmp_path, study="s")
    assert len(res.trials) == 7
    # the study remembers its space: another one under the same name is refused
    with pytest.raises(ValueError, match=r"study: 's' already holds a search over another"):
        tune(_quadratic, {"y": {"uniform": [0, 1]}}, trials=2, out=tmp_path, study="s")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "bayes"}, r"sampler must be one of .*'tpe'"),
        ({"pruner": "sha"}, r"pruner must be one of .*'asha'"),
        ({"trials": 0}, r"trials must be an integer in \[1, inf\)"),
        ({"trials": None}, "trials: give trials or timeout"),
        ({"timeout": -1.0}, r"timeout must be in \(0, inf\)"),
        ({"workers": 0}, r"workers must be an integer in \[1, inf\)"),
        ({"cv_folds": 3}, "cv_folds: cross-validation needs a run config"),
        ({"direction": "down"}, r"direction must be one of"),
    ],
)
def test_bad_arguments_are_refused_before_any_trial(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    calls: list[int] = []

    def objective(params: dict[str, Any], report: Any) -> float:
        calls.append(1)
        return 0.0

    args: dict[str, Any] = {"trials": 3, "out": tmp_path} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        tune(objective, {"x": {"uniform": [0, 1]}}, **args)
    assert calls == []


def test_a_metric_whose_direction_is_unclear_needs_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="direction: cannot tell whether metric 'score'"):
        tune(_quadratic, {"x": {"uniform": [0, 1]}}, trials=2, metric="score", out=tmp_path)
    res = tune(_quadratic, {"x": {"uniform": [0, 1]}}, trials=2, metric="val_accuracy",
               out=tmp_path, study="acc")  # fmt: skip
    assert res.direction == "maximize"


# ----------------------------------------------------------------------------- run configs
def test_a_run_config_is_tuned_and_its_best_config_reproduces_the_winner(tmp_path: Path) -> None:
    res = tune(_base(tmp_path), sampler="random", trials=3, out=tmp_path, study="lin")
    assert len(res.trials) == 3
    for t in res.trials:
        run_dir = Path(t["run_dir"])
        assert run_dir == tmp_path / "lin" / f"trial-{t['number']}"
        assert (run_dir / "summary.json").is_file()
        assert 1e-3 <= t["params"]["schedule.lr"] <= 0.5
    best = res.best_config()
    assert "tune" not in best
    assert best["schedule"]["lr"] == res.best_params["schedule.lr"]
    best.setdefault("output", {})["dir"] = str(tmp_path / "again")
    again = run.train(config.validate(best))
    assert again.final["final_val_loss"] == pytest.approx(res.best_value, rel=1e-6)
    # every validation was reported to Optuna (val_every=10 over 20 steps); a trial the
    # pruner stopped has fewer
    for t in res.trials:
        expected = [10, 20] if t["state"] == "COMPLETE" else [10]
        assert sorted(t["intermediate"]) == expected, t


def test_cross_validation_reports_each_fold_and_averages_them(tmp_path: Path) -> None:
    res = tune(_base(tmp_path), sampler="random", pruner="none", trials=2, cv_folds=3,
               out=tmp_path, study="cv")  # fmt: skip
    for t in res.trials:
        assert sorted(t["intermediate"]) == [0, 1, 2]
        folds = list(t["intermediate"].values())
        assert t["value"] == pytest.approx(sum(folds) / 3)
        assert all((Path(t["run_dir"]) / f"fold-{i}" / "summary.json").is_file()
                   for i in range(3))  # fmt: skip


def test_a_config_space_with_an_unknown_key_path_is_refused(tmp_path: Path) -> None:
    base = _base(tmp_path, **{"fit.epoch": {"choice": [1, 2]}})
    with pytest.raises(ValueError, match=r'tune.space."fit.epoch"'):
        tune(base, trials=2, out=tmp_path)
    base = _base(tmp_path)
    base["tune"]["sampler"] = "bayes"
    with pytest.raises(ValueError, match="sampler must be one of"):
        tune(base, trials=2, out=tmp_path)
    base = _base(tmp_path)
    base["tune"]["trails"] = 3
    with pytest.raises(ValueError, match=r"tune.trails: unknown key"):
        tune(base, out=tmp_path)


def test_a_metric_the_runs_do_not_log_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric: the runs do not log 'val_f1'"):
        tune(_base(tmp_path), trials=1, metric="val_f1", direction="maximize", out=tmp_path)


# ----------------------------------------------------------------------------- workers
@pytest.mark.slow
def test_two_workers_share_the_journal_file_and_reach_the_count(tmp_path: Path) -> None:
    res = tune(_quadratic_importable, {"x": {"uniform": [-5, 5]}}, sampler="random",
               trials=10, workers=2, out=tmp_path, study="w")  # fmt: skip
    complete = [t for t in res.trials if t["state"] == "COMPLETE"]
    assert len(complete) >= 10
    assert len({t["number"] for t in res.trials}) == len(res.trials)


def _quadratic_importable(params: dict[str, Any], report: Any) -> float:
    return (params["x"] - 2.0) ** 2


# ----------------------------------------------------------------------------- CLI
def _write(path: Path, data: dict[str, Any]) -> Path:
    from bergab._toml import dumps_toml

    path.write_text(dumps_toml(data), encoding="utf-8")
    return path


def test_the_cli_tunes_shows_exports_and_writes_the_best_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _base(tmp_path)
    base["tune"].update({"sampler": "random", "trials": 2})
    cfg = _write(tmp_path / "lin.toml", base)
    assert main(["tune", str(cfg), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "study lin: 2 trials (2 complete)" in out
    assert "schedule.lr = " in out
    study_dir = tmp_path / "runs" / "lin"
    assert main(["study", "show", str(study_dir)]) == 0
    shown = capsys.readouterr().out
    assert shown.count("COMPLETE") == 2
    best = tmp_path / "best.toml"
    assert main(["study", "best", str(study_dir), "--out", str(best)]) == 0
    data = tomllib.loads(best.read_text())
    assert "tune" not in data
    assert data["schedule"]["lr"] > 0
    assert main(["study", "export", str(study_dir), "--out", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().count("\n") == 3  # header + 2 trials
    # running it again continues the study
    assert main(["tune", str(cfg), "--out", str(tmp_path / "runs"), "--trials", "3"]) == 0
    assert "study lin: 3 trials" in capsys.readouterr().out


def test_cli_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _base(tmp_path)
    base["tune"]["space"] = {"schedule.lr": {"loguniform": [0.0, 1.0]}}
    base["tune"]["trials"] = 2
    cfg = _write(tmp_path / "bad.toml", base)
    assert main(["tune", str(cfg), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith('bergab tune: error: tune.space."schedule.lr"')
    assert main(["tune", str(cfg), "--sampler", "bayes"]) == 2
    assert "sampler must be one of" in capsys.readouterr().err
    assert main(["study", "show", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


def test_importance_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    space = {"x": {"uniform": [-5, 5]}, "y": {"uniform": [-5, 5]}}
    res = tune(lambda p, r: (p["x"] - 2) ** 2 + 0.01 * p["y"], space, sampler="random",
               trials=20, out=tmp_path)  # fmt: skip
    imp = res.importance()
    assert set(imp) == {"x", "y"}
    assert imp["x"] > imp["y"]
    for kind in ("history", "parallel", "slice", "importance"):
        fig = res.plot(kind, tmp_path / f"{kind}.png")
        assert (tmp_path / f"{kind}.png").read_bytes()[:4] == b"\x89PNG", kind
        assert fig is not None
    res.plot("contour", tmp_path / "contour.png", params=["x", "y"])
    assert math.isfinite(res.best_value)


# ----------------------------------------------------------------------------- PostgreSQL
from tests._postgres import postgres_url  # noqa: E402, F401 - the fixture


@pytest.mark.slow
def test_workers_share_a_study_in_a_real_postgresql(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811 - the fixture
) -> None:
    # two processes of `tune` and a second `tune` call later: one study in the database
    space = {"x": {"uniform": [-5, 5]}}
    first = tune(_quadratic_importable, space, sampler="random", trials=6, workers=2,
                 storage=postgres_url, study="pg", out=tmp_path)  # fmt: skip
    assert len([t for t in first.trials if t["state"] == "COMPLETE"]) >= 6
    more = tune(_quadratic_importable, space, sampler="random", trials=9,
                storage=postgres_url, study="pg", out=tmp_path)  # fmt: skip
    numbers = [t["number"] for t in more.trials]
    assert len(numbers) == len(set(numbers)) >= 9
    assert more.best_value <= first.best_value


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe", "gp", "cmaes"])
@pytest.mark.parametrize("pruner", ["asha", "hyperband", "median", "wilcoxon", "none"])
def test_every_sampler_and_pruner_runs(tmp_path: Path, sampler: str, pruner: str) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes")

    def curve(params: dict[str, Any], report: Any) -> float:
        value = 0.0
        for step in range(3):
            value = (params["x"] - 1) ** 2 + (params["y"] + 1) ** 2 + 1.0 / (step + 1)
            report(value, step)
        return value

    space = {"x": {"uniform": [-3, 3]}, "y": {"uniform": [-3, 3]}}
    res = tune(curve, space, sampler=sampler, pruner=pruner, trials=6, out=tmp_path)
    assert len(res.trials) == 6
    assert any(t["state"] == "COMPLETE" for t in res.trials)


def test_cross_validation_folds_are_stratified_and_partition_the_data() -> None:
    from bergab import tasks
    from bergab.tuning._tune import _folds

    task = tasks.digits(seed=0)
    folds = _folds(task, 4, seed=0)
    y = task.train.tensors[1]
    seen: list[int] = []
    for fold in folds:
        seen += fold.val.indices
        assert set(fold.val.indices).isdisjoint(fold.train.indices)
        assert len(fold.val.indices) + len(fold.train.indices) == len(y)
        # every class is in every fold in about its share
        counts = torch.bincount(y[fold.val.indices], minlength=10).float()
        share = torch.bincount(y, minlength=10).float() / 4
        assert torch.all((counts - share).abs() <= 1.0)
    assert sorted(seen) == list(range(len(y)))


def test_a_retried_trial_continues_the_killed_runs_checkpoint(tmp_path: Path) -> None:
    # a worker killed mid-trial leaves a checkpoint; the retried copy of its trial (same
    # params and user attributes, as Optuna's retry callback makes it) resumes that run
    from bergab.training import Callback

    base = _base(tmp_path)
    base["fit"]["max_steps"] = 30
    lr = 0.05

    class Kill(Callback):
        def on_batch_end(self, trainer: Any, logs: Any) -> None:
            if trainer.step == 12:
                trainer.stop("killed", checkpoint=True)

    cut = dict(base, schedule={"lr": lr}, output={"dir": str(tmp_path / "killed"), "plots": False})
    cut.pop("tune")
    first = run.train(config.validate(cut), callbacks=[Kill()])
    assert first.steps == 12
    whole = dict(cut, output={"dir": str(tmp_path / "whole"), "plots": False})
    expected = run.train(config.validate(whole)).final["final_val_loss"]
    from bergab.tuning.storage import close_storage, create_study, open_storage

    store = open_storage(None, tmp_path / "retry")
    study = create_study(store, "retry", direction="minimize")
    study.enqueue_trial({"schedule.lr": lr}, user_attrs={"run_dir": str(tmp_path / "killed")})
    close_storage(store)
    space = {"schedule.lr": {"choice": [lr]}}
    res = tune(base, space, sampler="random", pruner="none", trials=1, out=tmp_path,
               study="retry")  # fmt: skip
    (t,) = res.trials
    assert t["run_dir"] == str(tmp_path / "killed")
    assert t["value"] == pytest.approx(expected, rel=1e-12)
    # continued, not restarted: only the validations after the checkpoint (step 12) ran
    assert sorted(t["intermediate"]) == [20, 30]


def test_the_dashboard_needs_its_extra_or_serves_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tune(_quadratic, {"x": {"uniform": [0, 1]}}, trials=2, out=tmp_path, study="d")
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        assert main(["study", "dashboard", str(tmp_path / "d")]) == 2
        assert "pip install 'bergab[dashboard]'" in capsys.readouterr().err
        return
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bergab", "study", "dashboard",
                             str(tmp_path / "d"), "--port", str(port)])  # fmt: skip
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as r:
                    assert b"d" in r.read()
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the dashboard never answered")
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_unreachable_storage_is_refused_before_any_trial(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls: list[int] = []

    def objective(params: dict[str, Any], report: Any) -> float:
        calls.append(1)
        return 0.0

    url = f"postgresql://me:secret@127.0.0.1:{port}/db"
    with pytest.raises(ValueError, match=r"storage: cannot open postgresql.*\*\*\*") as err:
        tune(objective, {"x": {"uniform": [0, 1]}}, trials=2, storage=url, out=tmp_path)
    assert "secret" not in str(err.value)
    assert calls == []


_OBJECTIVE = """
import json, os, time

def objective(params, report):
    with open(os.environ["TRIAL_LOG"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "t": time.time()}) + "\\n")
    time.sleep(0.5)
    return (params["x"] - 1.0) ** 2
"""


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing_and_its_trial_is_retried(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811 - the fixture
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from bergab.tuning import storage as st

    (tmp_path / "objmod.py").write_text(_OBJECTIVE)
    log = tmp_path / "trials.log"
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]); import objmod\n"
        "from bergab.tuning import tune\n"
        "tune(objmod.objective, {'x': {'uniform': [-3, 3]}}, sampler='random', trials=12,\n"
        "     workers=3, storage=sys.argv[2], study='kill', out=sys.argv[1])\n"
    )
    env = dict(os.environ, TRIAL_LOG=str(log), PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path), postgres_url],
                            env=env)  # fmt: skip
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline:  # the first worker seen in a trial
        if log.exists():
            lines = [json.loads(x) for x in log.read_text().splitlines() if x]
            pids = [x["pid"] for x in lines]
            if len(set(pids)) >= 2:
                victim = pids[-1]
        time.sleep(0.05)
    assert victim is not None, "no worker started a trial"
    os.kill(victim, signal.SIGKILL)  # within its 0.5 s trial
    assert proc.wait(120) == 0
    # the killed trial's heartbeat stops; once it is stale, the next start retries it
    time.sleep(st.GRACE_PERIOD + 1)
    res = tune(_quadratic_importable, {"x": {"uniform": [-3, 3]}}, sampler="random",
               trials=13, storage=postgres_url, study="kill", out=tmp_path)  # fmt: skip
    states = {t["number"]: t["state"] for t in res.trials}
    failed = [n for n, s in states.items() if s == "FAIL"]
    assert len(failed) == 1
    store = st.open_storage(postgres_url, tmp_path / "kill")
    try:
        import optuna

        trials = optuna.load_study(study_name="kill", storage=store).get_trials()
    finally:
        st.close_storage(store)
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0]]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE"
    assert sum(s == "COMPLETE" for s in states.values()) >= 13
    assert "RUNNING" not in states.values()


def test_ctrl_c_stops_the_cli_search_and_keeps_the_finished_trials(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    base = _base(tmp_path)
    base["fit"]["max_steps"] = 200
    base["tune"].update({"sampler": "random", "pruner": "none", "trials": 500})
    cfg = _write(tmp_path / "long.toml", base)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bergab", "tune", str(cfg), "--out", str(runs), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (runs / "long" / "trial-2" / "summary.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted:" in out
    assert "run the same command again" in out
    # the finished trials are kept: the study continues from them
    res = tune(cfg, trials=1, out=runs, study="long")
    assert sum(t["state"] == "COMPLETE" for t in res.trials) >= 2
