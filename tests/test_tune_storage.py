"""The storage of a search (bergab.tuning.storage) with real parts: Optuna workers in separate
processes, a real PostgreSQL server (tests/_postgres.py), a journal file, SIGKILL.

Each multi-process test starts one *victim* worker, whose objective blocks, and the other
workers, which wait (after their imports) until the victim's trial is RUNNING; once they run
trials too, the victim is killed with SIGKILL mid-trial. The other workers stop when the
study has ``N`` COMPLETE trials. Every worker writes the numbers of the trials it finished to
its own file: each must be COMPLETE in the storage exactly once, and every COMPLETE trial
must be in some file (none duplicated, none lost).

* PostgreSQL (heartbeats on): the surviving workers fail the killed trial once its heartbeat
  is older than the grace period and run a copy of it (``system_attrs["failed_trial"]``).
* Journal file (no heartbeats in Optuna): the killed trial stays RUNNING while the others run;
  ``fail_orphaned_trials`` on the next start fails it and queues the copy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from bergab.tuning.storage import (  # noqa: E402
    SCHEMES,
    close_storage,
    create_study,
    fail_orphaned_trials,
    open_storage,
)
from tests._postgres import postgres_url  # noqa: E402, F401  (a pytest fixture)

HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 2}  # seconds; the defaults are 5 and 15
SLEEP = 0.3  # seconds per trial of a surviving worker

# One worker process: argv = storage URL ("-": the journal), study dir, study name, N,
# the file that receives the numbers of its finished trials, role ("victim" blocks in its
# first trial; the others start when the file `go` exists).
_WORKER = f"""
import os, sys, time
from pathlib import Path
import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from bergab.tuning.storage import open_storage

url, study_dir, name, n, record, role = sys.argv[1:]
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(None if url == "-" else url, Path(study_dir), **{HEARTBEAT!r})
study = optuna.load_study(study_name=name, storage=storage,
                          sampler=optuna.samplers.RandomSampler())
while role != "victim" and not os.path.exists("go"):
    time.sleep(0.01)

def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    trial.set_user_attr("pid", os.getpid())
    time.sleep(600 if role == "victim" else {SLEEP})
    return (x - 0.25) ** 2

def record_finished(study, trial):
    if trial.state == TrialState.COMPLETE:
        with open(record, "a") as f:
            f.write(f"{{trial.number}}\\n")

stop = MaxTrialsCallback(int(n), states=(TrialState.COMPLETE,))
study.optimize(objective, callbacks=[stop, record_finished])
"""


class _Workers:
    """Worker processes of one study, their stderr and their record files in ``tmp``."""

    def __init__(self, url: str | None, tmp: Path, name: str, n: int) -> None:
        self.url, self.tmp, self.name, self.n = url, tmp, name, n
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, role: str) -> subprocess.Popen[bytes]:
        i = len(self.procs)
        with (self.tmp / f"worker{i}.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER, self.url or "-", str(self.tmp / "study"),
                 self.name, str(self.n), str(self.tmp / f"worker{i}.done"), role],
                stdout=subprocess.DEVNULL, stderr=err, cwd=self.tmp,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stderr(self) -> str:
        return "\n".join(
            f"--- worker{i}:\n{(self.tmp / f'worker{i}.err').read_text()}"
            for i in range(len(self.procs))
        )

    def recorded(self) -> list[int]:
        """The trial numbers the workers say they finished, from all record files."""
        numbers: list[int] = []
        for f in sorted(self.tmp.glob("worker*.done")):
            numbers += [int(line) for line in f.read_text().split()]
        return numbers

    def wait_for(self, what: str, cond: Any, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = cond()
            if found is not None:
                return found
            dead = [p.args for p in self.procs if p.poll() not in (None, -signal.SIGKILL)]
            if dead:
                pytest.fail(f"a worker exited while waiting for {what}:\n{self.stderr()}")
            time.sleep(0.02)
        pytest.fail(f"timed out waiting for {what}:\n{self.stderr()}")

    def finish(self, timeout: float = 120.0) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                pytest.fail(f"a worker did not stop:\n{self.stderr()}")
        codes = [p.returncode for p in self.procs]
        assert all(c in (0, -signal.SIGKILL) for c in codes), f"{codes}\n{self.stderr()}"
        assert "Traceback" not in self.stderr(), self.stderr()

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _running_trial_of(study: Any, pid: int) -> int | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("pid") == pid:
            return int(t.number)
    return None


def _trial_of_another(study: Any, pid: int) -> int | None:
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("pid") not in (None, pid):
            return int(t.number)
    return None


def _kill_one_mid_trial(workers: _Workers, study: Any, others: int) -> int:
    """Start the victim and ``others`` workers; SIGKILL the victim in its first trial.

    The others start their trials once the victim's trial runs. Returns the number of the
    killed trial.
    """
    victim = workers.spawn("victim")
    for _ in range(others):
        workers.spawn("worker")
    killed = workers.wait_for(
        "the victim's RUNNING trial", lambda: _running_trial_of(study, victim.pid)
    )
    (workers.tmp / "go").touch()
    workers.wait_for("another worker's trial", lambda: _trial_of_another(study, victim.pid))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    return int(killed)


def _check_finished_trials(workers: _Workers, study: Any, n: int, max_extra: int) -> list[Any]:
    """At least ``n`` COMPLETE trials; each recorded once by a worker, none unrecorded."""
    trials = study.get_trials(deepcopy=False)
    complete = sorted(t.number for t in trials if t.state == TrialState.COMPLETE)
    recorded = workers.recorded()
    assert n <= len(complete) <= n + max_extra, complete
    assert len(recorded) == len(set(recorded)), f"a finished trial recorded twice: {recorded}"
    assert sorted(recorded) == complete, "the workers' finished trials are not the COMPLETE ones"
    return trials


def _check_retry(trials: list[Any], killed: int) -> Any:
    """The killed trial is FAIL and exactly one copy with its parameters names it."""
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL
    copies = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(copies) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    copy = copies[0]
    assert copy.number > killed
    assert copy.params == by_number[killed].params
    assert copy.system_attrs["retry_history"] == [killed]
    return copy


# ----------------------------------------------------------------------------- PostgreSQL
@pytest.mark.slow
def test_postgres_workers_share_a_study_and_retry_a_killed_workers_trial(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    pytest.importorskip("psycopg")
    # the killed trial is stale at most grace (2 s) after the kill and retried at the next
    # trial start; two survivors finish at most 2 / SLEEP = 6.7 trials a second
    n = 24
    name = f"pg-{uuid.uuid4().hex[:8]}"
    storage = open_storage(postgres_url, tmp_path / "study", **HEARTBEAT)
    study = create_study(storage, name, direction="minimize")
    workers = _Workers(postgres_url, tmp_path, name, n)
    try:
        killed = _kill_one_mid_trial(workers, study, others=2)
        done_at_kill = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        assert done_at_kill <= n - 17, f"{done_at_kill} done: the survivors may stop too soon"
        workers.finish()
        trials = _check_finished_trials(workers, study, n, max_extra=1)
        copy = _check_retry(trials, killed)
        assert copy.state == TrialState.COMPLETE, "a survivor ran the killed trial again"
        assert not [t for t in trials if not t.state.is_finished()]
        assert fail_orphaned_trials(study) == []  # nothing stale is left
    finally:
        workers.kill_all()
        close_storage(storage)


# ----------------------------------------------------------------------------- journal file
@pytest.mark.slow
def test_journal_workers_share_a_study_and_the_next_start_retries_a_killed_trial(
    tmp_path: Path,
) -> None:
    n = 8
    name = "journal"
    storage = open_storage(None, tmp_path / "study")
    study = create_study(storage, name, direction="minimize")
    workers = _Workers(None, tmp_path, name, n)
    try:
        killed = _kill_one_mid_trial(workers, study, others=1)
        workers.finish()
    finally:
        workers.kill_all()
    assert (tmp_path / "study" / "study.journal").is_file()

    trials = _check_finished_trials(workers, study, n, max_extra=0)
    # Optuna's journal storage has no heartbeats: nobody fails the killed worker's trial
    assert study.trials[killed].state == TrialState.RUNNING

    # the next start (no worker running) fails it and queues a copy, which the next worker runs
    again = create_study(open_storage(None, tmp_path / "study"), name, direction="minimize")
    assert fail_orphaned_trials(again) == [killed]
    assert fail_orphaned_trials(again) == []
    copy = _check_retry(again.get_trials(deepcopy=False), killed)
    assert copy.state == TrialState.WAITING
    again.optimize(lambda t: (t.suggest_float("x", -1.0, 1.0) - 0.25) ** 2, n_trials=1)
    copy = _check_retry(again.get_trials(deepcopy=False), killed)
    assert copy.state == TrialState.COMPLETE
    assert copy.values == [(trials[killed].params["x"] - 0.25) ** 2]


# ----------------------------------------------------------------------------- bad URLs
def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_error(url: str, tmp_path: Path, **kwargs: Any) -> tuple[str, float]:
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"^storage: ") as err:
        open_storage(url, tmp_path, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert "s3cret" not in msg, msg
    return msg, time.monotonic() - t0


def test_an_unreachable_server_fails_at_once_in_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    port = _closed_port()
    for scheme in ("postgresql", "postgresql+psycopg"):
        msg, seconds = _open_error(f"{scheme}://ann:s3cret@127.0.0.1:{port}/hp", tmp_path)
        assert msg.startswith(f"storage: cannot open {scheme}://ann:***@127.0.0.1:{port}/hp: ")
        assert seconds < 5, seconds


def test_a_server_that_does_not_answer_fails_after_the_connect_timeout(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    # a TCP server that accepts connections and never answers
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        url = f"postgresql://ann:s3cret@127.0.0.1:{port}/hp"
        msg, seconds = _open_error(url, tmp_path, connect_timeout=2)
    assert msg.startswith(f"storage: cannot open postgresql://ann:***@127.0.0.1:{port}/hp: ")
    assert 1.5 < seconds < 10, seconds


def test_a_malformed_or_unknown_url_is_named_without_the_password(tmp_path: Path) -> None:
    msg, _ = _open_error("postgresql://ann:s3cret@127.0.0.1:notaport/hp", tmp_path)
    assert msg.startswith("storage: cannot open postgresql://ann:***@127.0.0.1:notaport/hp: ")
    assert "malformed URL" in msg

    msg, _ = _open_error(f"sqlite:///{tmp_path}/no/such/dir/study.db", tmp_path)
    assert msg == (
        f"storage: cannot open sqlite:///{tmp_path}/no/such/dir/study.db: "
        "unable to open database file"
    )

    for url, what in (
        ("mysql://ann:s3cret@db.example/hp", "unknown scheme 'mysql'"),
        ("study.db", "no scheme"),
    ):
        msg, _ = _open_error(url, tmp_path)
        assert msg.startswith(f"storage: {what} in "), msg
        assert all(f"{s}://" in msg for s in SCHEMES), msg


def test_heartbeat_settings_are_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/study.db"  # checked before any connection is made
    with pytest.raises(ValueError, match=r"grace_period \(5 s\) must exceed heartbeat_interval"):
        open_storage(url, tmp_path, heartbeat_interval=5, grace_period=5)
    with pytest.raises(ValueError, match="heartbeat_interval must be a whole number"):
        open_storage(url, tmp_path, heartbeat_interval=0)


def test_an_existing_study_keeps_its_direction(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", tmp_path)
    try:
        create_study(storage, "s", direction="maximize")
        with pytest.raises(ValueError, match="exists with direction 'maximize', not 'minimize'"):
            create_study(storage, "s", direction="minimize")
    finally:
        close_storage(storage)
