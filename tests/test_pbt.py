"""Population-based training (``bergab.tune.pbt``): selection, exploration, exact
exploits, determinism, the exported schedule, a killed worker, and bad settings."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("optuna")
pytest.importorskip("sklearn")

from bergab import config
from bergab.tuning import _pbt as pbt_module
from bergab.tuning._pbt import PBTResult, explore, pbt, truncation
from bergab.tuning.space import SearchSpace

LR = {"schedule.lr": {"loguniform": [1e-3, 0.3]}}


def _cfg(steps: int = 12) -> dict[str, Any]:
    return {
        "task": {"name": "linreg", "standardize": True, "n_train": 200, "n_val": 50},
        "optimizer": {"name": "momentum"},
        "schedule": {"lr": 0.05},
        "fit": {"max_steps": steps, "batch_size": 16, "progress": False},
        "output": {"plots": False},
    }


# ----------------------------------------------------------------------------- the rules
def test_the_first_population_is_a_latin_hypercube() -> None:
    """Each parameter's distribution is cut into one stratum per member, each stratum
    holding one member; with as many members as choices, every choice is taken."""
    from bergab.tuning._pbt import initial_population

    space = SearchSpace.from_mapping({
        "schedule.lr": {"loguniform": [1e-4, 1e-1]},
        "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
        "fit.batch_size": {"choice": [8, 16, 32, 64]},
    })  # fmt: skip
    for seed in range(5):
        members = initial_population(space, 4, random.Random(seed))
        lr = sorted(int((math.log10(m["schedule.lr"]) + 4) / 0.75) for m in members)
        wd = sorted(int(m["optimizer.weight_decay"] / 0.025) for m in members)
        assert lr == wd == [0, 1, 2, 3]
        assert sorted(m["fit.batch_size"] for m in members) == [8, 16, 32, 64]
    a = initial_population(space, 4, random.Random(0))
    assert a == initial_population(space, 4, random.Random(0))
    assert a != initial_population(space, 4, random.Random(1))


def test_truncation_selects_the_bottom_to_copy_the_top() -> None:
    values = {m: float(m) for m in range(8)}  # member 0 best (minimize)
    assert truncation(values, 7, 0.25) == [0, 1]
    assert truncation(values, 6, 0.25) == [0, 1]
    assert truncation(values, 5, 0.25) is None
    assert truncation(values, 0, 0.25) is None
    assert truncation(values, 0, 0.25, maximize=True) == [7, 6]
    assert truncation({0: 1.0}, 0, 0.5) is None  # alone: nobody to copy
    assert truncation({0: 1.0, 1: 2.0}, 1, 0.5) == [0]
    assert truncation({0: 1.0, 1: 1.0, 2: 5.0}, 2, 0.25) == [0]  # ties: by member


def test_explore_perturbs_by_the_factors_and_resamples_on_a_seed() -> None:
    space = SearchSpace.from_mapping({
        "schedule.lr": {"loguniform": [1e-4, 1.0]},
        "fit.batch_size": {"int": [8, 64]},
        "optimizer.name": {"choice": ["sgd", "momentum", "adamw"]},
    })  # fmt: skip
    hp = {"schedule.lr": 0.1, "fit.batch_size": 32, "optimizer.name": "momentum"}
    seen_lr, seen_bs, seen_name = set(), set(), set()
    for seed in range(40):
        new = explore(hp, space, random.Random(seed), (0.8, 1.2), 0.0)
        seen_lr.add(round(new["schedule.lr"], 12))
        seen_bs.add(new["fit.batch_size"])
        seen_name.add(new["optimizer.name"])
    assert seen_lr == {0.08, 0.12}
    assert seen_bs == {26, 38}  # 32 x 0.8 and x 1.2, rounded
    assert seen_name == {"sgd", "adamw"}  # a neighbour, never itself
    assert explore(hp, space, random.Random(3), (0.8, 1.2), 0.0) == explore(
        hp, space, random.Random(3), (0.8, 1.2), 0.0
    )
    # clamped to the range
    top = explore({**hp, "schedule.lr": 1.0}, space, random.Random(1), (1.5, 1.5), 0.0)
    assert top["schedule.lr"] == 1.0
    # resampled: within the distribution, and not a factor of the old value
    drawn = [explore(hp, space, random.Random(s), (0.8, 1.2), 1.0) for s in range(20)]
    assert all(1e-4 <= d["schedule.lr"] <= 1.0 for d in drawn)
    assert len({round(d["schedule.lr"], 12) for d in drawn}) > 10
    assert all(8 <= d["fit.batch_size"] <= 64 for d in drawn)


# ----------------------------------------------------------------------------- runs
def test_an_exploit_copies_weights_optimizer_state_and_step_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two members and quantile 0.5 the worse one copies the better at every report:
    at the start of its next segment it holds the donor's snapshot exactly."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    original = pbt_module._Adopt.on_fit_start

    def spy(self: Any, trainer: Any) -> None:
        member = int(trainer.checkpoint_dir.parent.name.split("-")[1])
        seen[(member, trainer.step)] = {
            "model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),  # steps change it
        }
        original(self, trainer)

    monkeypatch.setattr(pbt_module._Adopt, "on_fit_start", spy)
    res = pbt(_cfg(), LR, population=2, interval=4, quantile=0.5, out=tmp_path, seed=1)
    exploits = [s for s in res.segments if s["event"] == "exploit"]
    assert exploits
    for s in exploits:
        donor, donor_seg = s["parent"]
        snap = torch.load(
            tmp_path / "pbt" / f"member-{donor}" / "snapshots" / f"segment-{donor_seg}.pt",
            weights_only=False,
        )
        assert s["start"] == snap["fit"]["step"]  # the donor's step
        got = seen[(s["member"], s["start"])]
        for key, value in snap["model"].items():
            assert torch.equal(got["model"][key], value), key
        for pid, state in snap["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(got["optimizer"]["state"][pid][key]),
                                   torch.as_tensor(value)), key  # fmt: skip
        assert s["hparams"] != next(
            d["hparams"] for d in res.segments if [d["member"], d["segment"]] == s["parent"]
        )  # explored after the copy


@pytest.mark.parametrize("seed", [0, 1])
def test_at_each_step_the_bottom_of_the_whole_population_copies(tmp_path: Path, seed: int) -> None:
    """With one worker every member is ranked among all the reports of its step (the
    decision waits for the claim of its next segment): at each step the members that
    copy are exactly the worst ceil(quantile x population), whichever order they
    reported in (decided at its own report, the first member would be ranked alone)."""
    res = pbt(_cfg(24), {"schedule.lr": {"loguniform": [1e-3, 1.0]}}, population=4,
              interval=4, quantile=0.25, out=tmp_path, seed=seed)  # fmt: skip
    by_key = {(s["member"], s["segment"]): s for s in res.segments}
    for step in range(4, 24, 4):
        reports = {s["member"]: s["value"] for s in res.segments if s["end"] == step}
        assert len(reports) == 4
        worst = sorted(reports, key=lambda m: (reports[m], m))[-1]
        copied = {s["member"] for s in res.segments if s["start"] == step
                  and s["event"] == "exploit"}  # fmt: skip
        assert copied == {worst}, (step, reports)
        for s in res.segments:
            if s["start"] == step and s["event"] == "exploit":
                parent = by_key[tuple(s["parent"])]
                assert parent["member"] != worst
                assert parent["end"] == step
                assert reports[parent["member"]] == min(reports.values())


def test_two_members_copying_one_state_explore_apart(tmp_path: Path) -> None:
    """Half the population copies the top half at every step: members that copied the
    same donor's state never end up with the same hyperparameters (two identical
    members would waste one)."""
    res = pbt(_cfg(24), {"schedule.lr": {"loguniform": [1e-3, 1.0]}}, population=6,
              interval=4, quantile=0.5, resample_probability=0.0, out=tmp_path, seed=3)  # fmt: skip
    exploits = [s for s in res.segments if s["event"] == "exploit"]
    pairs = [(s["start"], tuple(s["parent"])) for s in exploits]
    assert len(set(pairs)) < len(pairs)  # some members did copy one state
    seen = [(s["start"], tuple(s["parent"]), s["hparams"]["schedule.lr"]) for s in exploits]
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("where", ["before the decision", "during the copy", "after the copy"])
def test_a_segment_stopped_while_its_member_decides_continues_the_same_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The worker stops (Ctrl-C; a SIGKILLed one's segment is queued again with the same
    stored attributes) before the decision is stored, while the member takes over the
    donor's state, or after that but before it is marked done: the search continued by a
    second call ends exactly as one that was never stopped."""
    clean = pbt(_cfg(), LR, population=3, interval=4, quantile=0.34, out=tmp_path / "a", seed=4)
    assert any(s["event"] == "exploit" for s in clean.segments)
    original_open, original_adopt = pbt_module._open, pbt_module._adopt_files
    fired = []

    def stop_once() -> None:
        if not fired:
            fired.append(where)
            raise KeyboardInterrupt

    def adopt(*args: Any) -> None:
        if where == "during the copy":
            stop_once()
        original_adopt(*args)

    def open_study(settings: Any) -> Any:
        study = original_open(settings)
        storage = study._storage
        setter = storage.set_trial_user_attr

        def set_attr(trial_id: int, key: str, value: Any) -> None:
            if (key, where) in (("decision", "before the decision"), ("copied", "after the copy")):
                stop_once()
            setter(trial_id, key, value)

        storage.set_trial_user_attr = set_attr
        return study

    monkeypatch.setattr(pbt_module, "_open", open_study)
    monkeypatch.setattr(pbt_module, "_adopt_files", adopt)
    with pytest.raises(KeyboardInterrupt):
        pbt(_cfg(), LR, population=3, interval=4, quantile=0.34, out=tmp_path / "b", seed=4)
    assert fired
    again = pbt(_cfg(), LR, population=3, interval=4, quantile=0.34, out=tmp_path / "b", seed=4)
    keys = ("member", "segment", "start", "end", "hparams", "value", "event", "parent")

    def strip(res: PBTResult) -> list[dict[str, Any]]:
        rows = [{k: s[k] for k in keys} for s in res.segments]
        return sorted(rows, key=lambda r: (r["member"], r["segment"]))

    assert strip(again) == strip(clean)


def test_a_segment_killed_after_queueing_the_next_queues_no_second_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dies after queueing the member's next segment but before its own is told
    finished: the segment is retried, and the retry queues no second next segment (two
    would train one member's folder at once)."""
    import optuna

    clean = pbt(_cfg(), LR, population=2, interval=4, out=tmp_path / "a", seed=1)
    tell = optuna.study.Study.tell
    fired: list[int] = []

    def die_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(1)
            raise SystemExit("killed")  # leaves the segment RUNNING, as SIGKILL does
        return tell(self, *args, **kwargs)

    monkeypatch.setattr(optuna.study.Study, "tell", die_once)
    with pytest.raises(SystemExit):
        pbt(_cfg(), LR, population=2, interval=4, out=tmp_path / "b", seed=1, grace_period=0.2)
    time.sleep(0.5)  # its heartbeat is older than the grace period: the segment is lost
    again = pbt(_cfg(), LR, population=2, interval=4, out=tmp_path / "b", seed=1,
                grace_period=0.2)  # fmt: skip
    pairs = [(s["member"], s["segment"]) for s in again.segments]
    assert len(pairs) == len(set(pairs))
    keys = ("member", "segment", "start", "end", "hparams", "value", "event", "parent")
    rows = sorted(({k: s[k] for k in keys} for s in again.segments),
                  key=lambda r: (r["member"], r["segment"]))  # fmt: skip
    assert rows == sorted(({k: s[k] for k in keys} for s in clean.segments),
                          key=lambda r: (r["member"], r["segment"]))  # fmt: skip


def test_one_worker_with_a_seed_is_deterministic(tmp_path: Path) -> None:
    a = pbt(_cfg(), LR, population=3, interval=4, out=tmp_path / "a", seed=5)
    b = pbt(_cfg(), LR, population=3, interval=4, out=tmp_path / "b", seed=5)
    c = pbt(_cfg(), LR, population=3, interval=4, out=tmp_path / "c", seed=6)
    strip = [{k: s[k] for k in ("member", "segment", "start", "end", "hparams", "value",
                                "event", "parent")} for s in a.segments]  # fmt: skip
    assert strip == [{k: s[k] for k in strip[0]} for s in b.segments]
    assert [s["hparams"] for s in a.segments] != [s["hparams"] for s in c.segments]
    assert (a.best_member, a.best_value) == (b.best_member, b.best_value)
    files = json.loads((tmp_path / "a" / "pbt" / "pbt.json").read_text())
    assert files["best_member"] == a.best_member


def test_the_exported_schedule_replays_the_lineage_lr_per_step(tmp_path: Path) -> None:
    res = pbt(_cfg(), LR, population=2, interval=4, quantile=0.5, out=tmp_path, seed=2)
    chain = res.lineage()
    assert [s["start"] for s in chain] == [0, 4, 8]  # a chain over the whole run
    assert chain[-1]["member"] == res.best_member
    exported = json.loads((tmp_path / "pbt" / "pbt_schedule.json").read_text())
    assert exported == res.schedule()
    sched = config.build_schedule(exported)
    for s in chain:
        for t in range(s["start"], s["end"]):
            assert float(sched(t)) == pytest.approx(s["hparams"]["schedule.lr"], rel=1e-12)
    # one ordinary run with the replay config trains at those lrs, step by step
    from bergab import run

    replay = config.validate({**res.best_config(), "output": {"dir": str(tmp_path / "replay"),
                                                              "plots": False}})  # fmt: skip
    hist = run.train(replay).history
    lrs = hist.steps["lr"]
    assert len(lrs) == 12
    assert lrs == pytest.approx([float(sched(t)) for t in range(12)], rel=1e-12)
    # the lineage was one run with copies in between: the replay ends where it ended
    assert hist.records[-1]["val_loss"] == pytest.approx(res.best_value, rel=1e-9)


def test_a_searched_cosine_peak_exports_the_lineage_on_the_run_clock(tmp_path: Path) -> None:
    """PBT of a cosine's peak: each member's lr is its peak times the cosine at the step;
    the export is a join of the lineage's cosines, each shifted to its segment's start,
    which gives every step the lr it trained with, and its replay ends at the winner."""
    from bergab import run
    from bergab.tuning.space import apply

    base = _cfg(24)
    base["schedule"] = {"type": "cosine", "peak": 0.05, "total_steps": 24}
    res = pbt(base, {"schedule.peak": {"loguniform": [1e-3, 1.0]}}, population=4, interval=4,
              out=tmp_path, seed=0)  # fmt: skip
    chain = res.lineage()
    assert any(s["event"] == "exploit" for s in chain)  # the lineage changes peak
    exported = res.schedule()
    assert exported is not None
    assert exported == json.loads((tmp_path / "pbt" / "pbt_schedule.json").read_text())
    assert {p.get("type") for p in exported["schedules"][1:]} == {"shift"}
    sched = config.build_schedule(exported)
    replay = config.validate({**res.best_config(), "output": {"dir": str(tmp_path / "replay"),
                                                              "plots": False}})  # fmt: skip
    hist = run.train(replay).history
    for s in chain:
        own = config.build_schedule(apply(base, s["hparams"])["schedule"])
        for t in range(s["start"], s["end"]):
            assert float(sched(t)) == pytest.approx(float(own(t)), rel=1e-12)
            assert hist.steps["lr"][t] == pytest.approx(float(own(t)), rel=1e-12)
    assert hist.records[-1]["val_loss"] == pytest.approx(res.best_value, rel=1e-9)


def test_the_budget_caps_the_steps_trained(tmp_path: Path) -> None:
    res = pbt(_cfg(), LR, population=3, interval=4, budget_steps=24, out=tmp_path, seed=0)
    assert sum(s["end"] - s["start"] for s in res.segments) <= 24
    assert all(s["start"] == 0 or s["start"] % 4 == 0 for s in res.segments)
    exploits = [s for s in res.segments if s["event"] == "exploit"]
    for s in exploits:  # a copy is of the same step: never back in time
        parent = next(d for d in res.segments if [d["member"], d["segment"]] == s["parent"])
        assert parent["end"] == s["start"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_killed_worker_loses_no_member(tmp_path: Path) -> None:
    """Two workers; one is SIGKILLed while it trains a segment: the other takes the
    segment over once its heartbeat stops, resumes it from the member's last checkpoint,
    and every member reaches the end of the run."""
    import optuna

    cfg = _cfg(steps=60)
    cfg["fit"]["checkpoint_every"] = 2
    script = (
        "import json, sys; from bergab.tuning import pbt\n"
        f"r = pbt(json.loads(sys.argv[1]), {LR!r}, population=3, interval=20, workers=2, "
        f"grace_period=3, out=sys.argv[2], seed=0)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(cfg), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    journal = tmp_path / "pbt" / "study.journal"

    def study() -> Any:
        backend = optuna.storages.journal.JournalFileBackend(str(journal))
        return optuna.load_study(study_name="pbt", storage=optuna.storages.JournalStorage(backend))

    try:
        deadline, victim = time.monotonic() + 120, None
        while victim is None:  # a segment being trained, after a first one finished
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
            if not list((tmp_path / "pbt").glob("member-*/snapshots/segment-0.pt")):
                continue
            running = [t for t in study().trials
                       if t.state.name == "RUNNING" and "worker" in t.user_attrs]  # fmt: skip
            victim = running[0] if running else None
        assert victim is not None
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()  # closes the pipes
    assert proc.returncode == 0, err[-3000:]
    trials = {t.number: t for t in study().trials if "member" in t.user_attrs}
    if trials[victim.number].state.name == "COMPLETE":  # it finished before the signal came
        pytest.skip("the segment ended between the look and the kill; nothing was lost")
    assert trials[victim.number].state.name == "FAIL"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
    assert [t.state.name for t in retries] == ["COMPLETE"]  # queued again, finished
    finished = {t.user_attrs["member"] for t in trials.values()
                if t.state.name == "COMPLETE" and t.user_attrs["end"] == 60}  # fmt: skip
    assert finished == {0, 1, 2}


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quantile": 0.0}, ValueError, "quantile"),
        ({"quantile": 0.6}, ValueError, "quantile"),
        ({"population": 1}, ValueError, "population"),
        ({"perturb": (0.0, 1.2)}, ValueError, r"perturb\[0\]"),
        ({"perturb": 1.2}, TypeError, "perturb"),
        ({"interval": 13}, ValueError, "interval"),
        ({"budget_steps": 5}, ValueError, "budget_steps"),
        ({"resample_probability": 1.5}, ValueError, "resample_probability"),
        ({"workers": 0}, ValueError, "workers"),
        ({"hyperparams": {}}, ValueError, "hyperparams"),
        ({"hyperparams": {"schedule.lrr": {"uniform": [0, 1]}}}, ValueError, "schedule.lrr"),
    ],
)
def test_bad_settings_are_refused_naming_them(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"hyperparams": LR, "population": 2, "interval": 4, **kwargs}
    with pytest.raises(error, match=match):
        pbt(_cfg(), args.pop("hyperparams"), out=tmp_path, **args)
    assert not list(tmp_path.glob("*/member-*"))  # refused before anything trained


def test_the_pbt_table_holds_the_settings(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg["pbt"] = {"population": 2, "interval": 6, "seed": 3, "hyperparams": LR}
    res = pbt(cfg, out=tmp_path)
    assert {s["member"] for s in res.segments} == {0, 1}
    assert {s["end"] for s in res.segments} == {6, 12}
    cfg["pbt"]["quantil"] = 0.2
    with pytest.raises(ValueError, match=r"pbt\.quantil: unknown key"):
        pbt(cfg, out=tmp_path)


def test_a_result_without_a_searched_lr_exports_no_schedule() -> None:
    r = PBTResult("s", Path("."), "val_loss", False, 0, 1.0, segments=[
        {"member": 0, "segment": 0, "start": 0, "end": 4, "value": 1.0, "parent": None,
         "hparams": {"optimizer.weight_decay": 0.1}, "event": "start"}])  # fmt: skip
    assert r.schedule() is None


def test_a_member_that_diverges_ranks_last_and_copies_a_better_one(tmp_path: Path) -> None:
    space = {"schedule.lr": {"choice": [0.05, 1e6]}}
    res = pbt(_cfg(), space, population=4, interval=4, quantile=0.5, out=tmp_path, seed=0)
    diverged = [s for s in res.segments if s["value"] == float("inf")]
    assert diverged  # lr 1e6: a NaN loss, ranked worst instead of stopping the search
    lost = [[s["member"], s["segment"]] for s in diverged]
    rescued = [t for t in res.segments
               if t["event"] == "exploit" and [t["member"], t["segment"] - 1] in lost]  # fmt: skip
    assert rescued  # a diverged member took over a better one's state
    assert all(t["hparams"]["schedule.lr"] in (0.05, 1e6) for t in res.segments)
    assert res.best_value < float("inf")
    assert {s["member"] for s in res.segments if s["end"] == 12} == {0, 1, 2, 3}


# ----------------------------------------------------------------------------- PostgreSQL
from tests._postgres import postgres_url  # noqa: E402, F401 - the fixture


@pytest.mark.slow
def test_two_workers_share_a_population_in_a_real_postgresql(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811 - the fixture
) -> None:
    """Segments as trials in a database: two worker processes train one population (as
    workers on two machines sharing the database and the folder would)."""
    res = pbt(_cfg(), LR, population=3, interval=4, workers=2, storage=postgres_url,
              study="pg-pbt", out=tmp_path, seed=0)  # fmt: skip
    assert {s["member"] for s in res.segments if s["end"] == 12} == {0, 1, 2}
    assert len(res.lineage()) == 3
