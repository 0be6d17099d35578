"""``bergab train --nproc-per-node N``: torch's launcher (torchrun) from the command line.

End to end on the CPU with gloo, two processes: the launcher trains like ``torchrun -m
bergab train`` (bitwise), rank 0 alone writes, a process killed by SIGKILL under
``--max-restarts`` is restarted with the others and the run resumes from its last
checkpoint (bitwise equal to an uninterrupted run), two "nodes" on one machine meet at a
c10d endpoint; and the launcher's bad options are one line, exit 2, before any process
starts.

The run is a user task (``killer:linreg``, the file :data:`KILLER` written next to the
config): ``linreg`` whose loss function SIGKILLs rank 1 of the first attempt at the
``KILL_AT``-th training step when that variable is set, and writes how many training
steps each process ran to ``$CALLS_LOG`` when it exits. Without ``KILL_AT`` it is
``linreg``.
"""

# The table keeps one case per line, however long: a row reads as one sentence.
# ruff: noqa: E501

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.importorskip("pydantic")
pytest.importorskip("sklearn")

from bergab.cli import main
from bergab.training.strategy import usable_cores

if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

# under CI (which sets CI) a machine without them fails these tests instead of skipping
TWO_CORES = pytest.mark.skipif(
    usable_cores() < 2 and not os.environ.get("CI"), reason="needs 2 CPU cores (gloo, 2 processes)"
)

#: 40 steps of 2 processes x 16 examples (7 batches an epoch), a checkpoint every 5
CONFIG = """\
[task]
name = "killer:linreg"
standardize = true
n_train = 200
n_val = 50

[optimizer]
name = "adamw"

[schedule]
lr = 0.05

[fit]
max_steps = 40
batch_size = 16
checkpoint_every = 5
progress = false

[output]
plots = false
"""

KILLER = """\
import atexit, os, signal

import torch

from bergab import tasks


def linreg(**kwargs):
    task = tasks.linreg(**kwargs)
    at = int(os.environ.get("KILL_AT", "0"))
    rank = os.environ.get("RANK", "-")
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "-")
    inner, calls = task.loss_fn, [0]

    def record():
        if os.environ.get("CALLS_LOG"):
            with open(os.environ["CALLS_LOG"], "a") as f:
                f.write(f"{attempt} {rank} {calls[0]}\\n")

    atexit.register(record)

    def loss_fn(out, y):
        if torch.is_grad_enabled():  # a training step (validation runs without grad)
            calls[0] += 1
            if at and calls[0] == at and rank == "1" and attempt == "0":
                record()
                os.kill(os.getpid(), signal.SIGKILL)
        return inner(out, y)

    task.loss_fn = loss_fn
    return task
"""

#: what a run directory of this config holds (rank 0's files, once)
RUN_FILES = {"checkpoints", "config.toml", "logs", "model.pt", "summary.json"}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the config and the task module; the runs' working directory."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "c.toml").write_text(CONFIG, encoding="utf-8")
    (root / "killer.py").write_text(KILLER, encoding="utf-8")
    return root


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TORCHELASTIC_", "MASTER_", "PET_"))
        and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "KILL_AT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def bergab(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``bergab ARGS`` in ``work``; on a timeout its workers are killed with it."""
    return _run_cmd([sys.executable, "-m", "bergab", *args], work, **env)


def _run_cmd(cmd: list[str], work: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        cmd, cwd=work, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def assert_bitwise(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key}: {a} and {b} differ"


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill a launcher and the processes it started (a test that failed must not leave
    them training: SIGKILL to the launcher alone would), and close its pipes (left open,
    they would be reported against whichever test runs when they are collected)."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def reference(work: Path) -> Path:
    """``bergab train c.toml --nproc-per-node 2``, uninterrupted: the weights to match."""
    p = bergab(work, "train", "c.toml", "--nproc-per-node", "2", "--out", "ref", "--threads", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("run directory") == 2, p.stdout  # the first line and the table: rank 0
    (work / "ref.out").write_text(p.stdout, encoding="utf-8")
    return work / "ref"


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@TWO_CORES
def test_the_launcher_trains_as_torchrun_does_and_only_rank_0_writes(
    work: Path, reference: Path
) -> None:
    assert {p.name for p in reference.iterdir()} == RUN_FILES
    summary = json.loads((reference / "summary.json").read_text(encoding="utf-8"))
    assert (summary["status"], summary["steps"]) == ("finished", 40)
    # one writer: each step logged once, one TensorBoard file (when tensorboard is there)
    steps = (reference / "logs" / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(s)["step"] for s in steps] == list(range(1, 41))
    assert len(list((reference / "logs").glob("events.out.tfevents.*"))) <= 1
    assert not (work / "runs").exists()  # no process wrote to the default folder
    # the summary table once (rank 1 reports nothing)
    assert (work / "ref.out").read_text(encoding="utf-8").count("final val loss") == 1

    direct = _run_cmd(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
         "bergab", "train", "c.toml", "--out", "direct", "--threads", "1"], work,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert direct.stdout.count("final val loss") == 1
    assert {p.name for p in (work / "direct").iterdir()} == RUN_FILES
    assert_bitwise(reference / "model.pt", work / "direct" / "model.pt")


@pytest.mark.slow
@TWO_CORES
def test_a_killed_process_restarts_the_group_which_resumes_exactly(
    work: Path, reference: Path
) -> None:
    log = work / "calls-restart.log"
    p = bergab(
        work, "train", "c.toml", "--nproc-per-node", "2", "--max-restarts", "1",
        "--out", "restarted", "--threads", "1", KILL_AT="23", CALLS_LOG=str(log),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [line.split() for line in log.read_text().splitlines()]
    calls = [tuple(map(int, x)) for x in lines if "-" not in x]  # "-": the launcher's check
    assert (0, 1, 23) in calls  # rank 1 of the first attempt was killed at step 23
    assert "torchrun restarted the processes (restart 1 of 1): resuming" in p.stdout
    # the second attempt continued from the checkpoint of step 20: 20 steps, not 40
    second = sorted((rank, n) for attempt, rank, n in calls if attempt == 1 and n > 0)
    assert second == [(0, 20), (1, 20)], calls
    summary = json.loads((work / "restarted" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["status"], summary["steps"]) == ("finished", 40)
    steps = (work / "restarted" / "logs" / "steps.jsonl").read_text(encoding="utf-8")
    assert [json.loads(s)["step"] for s in steps.splitlines()] == list(range(1, 41))
    assert_bitwise(reference / "model.pt", work / "restarted" / "model.pt")


@pytest.mark.slow
@TWO_CORES
def test_a_killed_process_without_restarts_ends_the_launch_with_its_signal(work: Path) -> None:
    p = bergab(
        work, "train", "c.toml", "--nproc-per-node", "2", "--out", "killed", "--threads", "1",
        KILL_AT="3",
    )  # fmt: skip
    assert p.returncode == 128 + 9, p.stderr[-3000:]
    lines = [s for s in p.stderr.splitlines() if s.startswith("bergab train:")]
    assert len(lines) == 1, p.stderr[-3000:]
    assert re.search(r"process rank 1 \(pid \d+\) was killed by SIGKILL$", lines[0]), lines
    assert "restarted" not in p.stdout


@pytest.mark.slow
@TWO_CORES
def test_two_nodes_on_one_machine_train_as_one_node_with_two_processes(
    work: Path, reference: Path
) -> None:
    """Two launches, one process each, meeting at a c10d endpoint: the same two ranks,
    the same shards, the same all-reduce of two gradients (a + b is b + a in floating
    point), so the weights are bitwise those of one node with two processes."""
    endpoint = f"127.0.0.1:{free_port()}"
    common = ["train", "c.toml", "--nproc-per-node", "1", "--nnodes", "2"]
    common += ["--rdzv-endpoint", endpoint, "--out", "nodes", "--threads", "1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bergab", *common, "--node-rank", str(rank)],
            cwd=work,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its processes can be killed together
        )
        for rank in (0, 1)
    ]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                _kill_group(proc)
    # global rank 0 (on either node: c10d numbers the nodes itself) wrote and reported
    assert sum(out.count("final val loss") for out in outs) == 1, outs
    assert {p.name for p in (work / "nodes").iterdir()} == RUN_FILES
    assert_bitwise(reference / "model.pt", work / "nodes" / "model.pt")


def _worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the process of ``rank`` that the launcher (torchrun in ``launcher``) started."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return None
    for pid in map(int, children):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


@pytest.mark.slow
@TWO_CORES
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_signal_to_one_process_stops_every_process_at_one_step(work: Path) -> None:
    """SIGTERM reaches one process (a scheduler, or Ctrl-C arriving at its own moment in
    each): the processes agree on the stop at a step boundary, so all of them write (and
    wait for) the same checkpoint and end; none is left waiting in a barrier."""
    import signal
    import time

    run = work / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bergab", "train", "c.toml", "--nproc-per-node", "2",
         "--out", "stopped", "--threads", "1", "--set", "fit.max_steps=1000000"],
        cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # well inside the run
        pid = _worker_pid(proc.pid, rank=1)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert proc.returncode in (130, 143), err[-3000:]
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] in ("interrupted", "terminated")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["fit"]["step"] == summary["steps"] > 5


# --------------------------------------------------------------------------- in this process


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    linreg = CONFIG.replace('"killer:linreg"', '"linreg"')  # no user module in this process
    (tmp_path / "c.toml").write_text(linreg, encoding="utf-8")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "KILL_AT", "CALLS_LOG"):
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith("TORCHELASTIC_")]:
        monkeypatch.delenv(key)
    n = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(n)


def _no_launch(args: object) -> None:
    raise AssertionError("torchrun was started")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _fsdp_optimizer() -> list[str]:
    return ["--set", 'fit.strategy="fsdp"', "--set", 'optimizer.name="lars"']


#: (id, extra argv after ``train c.toml``, what the line must name)
BAD_LAUNCHES = [
    ("nproc-zero", ["--nproc-per-node", "0"], "--nproc-per-node"),
    ("nproc-negative", ["--nproc-per-node", "-2"], "--nproc-per-node"),
    ("nproc-str", ["--nproc-per-node", "two"], "--nproc-per-node"),
    ("nproc-float", ["--nproc-per-node", "1.5"], "--nproc-per-node"),
    ("nproc-above-cores", ["--nproc-per-node", str(usable_cores() + 1)], "--nproc-per-node"),
    ("nnodes-zero", ["--nproc-per-node", "1", "--nnodes", "0"], "--nnodes"),
    ("nnodes-without-endpoint", ["--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "0"], "--rdzv-endpoint"),
    ("node-rank-equal-nnodes", ["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:29400"], "--node-rank"),
    ("node-rank-negative", ["--nnodes", "2", "--node-rank", "-1", "--rdzv-endpoint", "h:29400"], "--node-rank"),
    ("node-rank-one-node", ["--nproc-per-node", "1", "--node-rank", "1"], "--node-rank"),
    ("endpoint-no-port", ["--nproc-per-node", "1", "--rdzv-endpoint", "node0"], "--rdzv-endpoint"),
    ("endpoint-port-str", ["--nproc-per-node", "1", "--rdzv-endpoint", "node0:http"], "--rdzv-endpoint"),
    ("endpoint-port-range", ["--nproc-per-node", "1", "--rdzv-endpoint", "node0:70000"], "--rdzv-endpoint"),
    ("endpoint-no-host", ["--nproc-per-node", "1", "--rdzv-endpoint", ":29400"], "--rdzv-endpoint"),
    ("endpoint-ipv6-bare", ["--nproc-per-node", "1", "--rdzv-endpoint", "::1:29400"], "--rdzv-endpoint"),
    ("max-restarts-negative", ["--nproc-per-node", "1", "--max-restarts", "-1"], "--max-restarts"),
    ("strategy-none", ["--nproc-per-node", "2", "--set", 'fit.strategy="none"'], "fit.strategy"),
    ("strategy-none-two-nodes", ["--nnodes", "2", "--rdzv-endpoint", "h:29400", "--set", 'fit.strategy="none"'], "fit.strategy"),
    ("fsdp-lars", ["--nproc-per-node", "2", *_fsdp_optimizer()], "fit.strategy"),
    ("shard-prodigy", ["--nproc-per-node", "2", "--set", "fit.shard_optimizer=true", "--set", 'optimizer.name="prodigy"'], "fit.shard_optimizer"),
    ("config-error", ["--nproc-per-node", "2", "--set", "fit.max_steps=0"], "fit.max_steps"),
    ("out-is-file", ["--nproc-per-node", "2", "--out", "c.toml"], "output.dir"),
    ("out-holds-run", ["--nproc-per-node", "2", "--out", "taken"], "output.dir"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "names"), [c[1:] for c in BAD_LAUNCHES], ids=[c[0] for c in BAD_LAUNCHES]
)
def test_a_bad_launch_is_one_line_exit_2_before_any_process(
    argv: list[str], names: str, here: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import torch.distributed.run as torchrun

    monkeypatch.setattr(torchrun, "run", _no_launch)
    (here / "taken").mkdir()
    (here / "taken" / "config.toml").write_text("# the user's own file\n", encoding="utf-8")
    rc, out, err = run_main(["train", "c.toml", *argv], capsys)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert names in lines[0], lines[0]
    assert not (here / "runs").exists()
    assert out == ""


def test_launcher_options_under_torchrun_train_in_this_process(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process torchrun started never launches again (``torchrun -m bergab train ...
    --nproc-per-node 2`` trains, saying the option is not used)."""
    import torch.distributed.run as torchrun

    monkeypatch.setattr(torchrun, "run", _no_launch)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    argv = ["train", "c.toml", "--out", "run", "--threads", "1", "--set", "fit.max_steps=4"]
    rc, out, err = run_main([*argv, "--nproc-per-node", "2"], capsys)
    assert rc == 0, err
    assert err.strip() == "note: started by torchrun already: --nproc-per-node not used"
    assert (here / "run" / "model.pt").is_file()
    assert out.count("final val loss") == 1


def test_a_restart_resumes_the_run_of_its_config_and_a_first_attempt_never_does(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process under torchrun's environment: the first attempt refuses a folder that
    holds a run (as ``bergab train`` does); a restart (``TORCHELASTIC_RESTART_COUNT`` 1)
    continues the run of this config there, and refuses one of another config."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    argv = ["train", "c.toml", "--out", "run", "--threads", "1", "--set", "fit.max_steps=6"]
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert run_main(argv, capsys)[0] == 0
    rc, out, err = run_main(argv, capsys)  # a first attempt into a finished run: refused
    assert rc == 2, err
    assert "output.dir: run already holds a run" in err

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    assert "torchrun restarted the processes (restart 1 of 3): resuming run" in out
    assert "the run already finished at step 6" in out

    other = [*argv, "--set", "optimizer.weight_decay=0.5"]  # not this run: not continued
    rc, out, err = run_main(other, capsys)
    assert rc == 2, err
    assert "output.dir: run already holds a run" in err
    assert "resuming" not in out


def test_an_endpoint_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    """Node 0 hosts the rendezvous at ``--rdzv-endpoint``: a port another program holds
    is one line naming the option (torch's own error, without its traceback)."""
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "killer.py").write_text(KILLER, encoding="utf-8")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        endpoint = f"127.0.0.1:{held.getsockname()[1]}"
        p = bergab(
            tmp_path, "train", "c.toml", "--nproc-per-node", "1", "--rdzv-endpoint", endpoint
        )
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(
        f"bergab train: error: --rdzv-endpoint: the processes could not meet at {endpoint}"
    )
    assert "address already in use" in p.stderr
    assert not (tmp_path / "runs").exists()


class _Recorder:
    def __init__(self) -> None:
        self.stops: list[str] = []

    def stop(self, reason: str, checkpoint: bool = False) -> None:
        self.stops.append(reason)


def test_a_signal_landing_during_the_agreement_stops_no_process_alone() -> None:
    """The signal reaches this process between reading its flag and the reduction (the
    other process saw nothing): this hook stops nobody, the next one stops everyone. A
    process stopping on its own flag here would wait in the checkpoint barrier while the
    other trains on (the hang this test was written for)."""
    import signal

    from bergab.run import _Interrupt

    interrupt = _Interrupt()
    trainer = _Recorder()

    class World:
        size = 2

        def __init__(self) -> None:
            self.calls = 0

        def all_reduce_max(self, value: int) -> int:
            self.calls += 1
            if self.calls == 1:  # the signal lands while the processes agree
                interrupt.handler(signal.SIGTERM, None)
                return value  # the other process had no signal either
            return max(value, 0)

    trainer.world = World()  # type: ignore[attr-defined]
    interrupt.on_batch_end(trainer, {})
    assert trainer.stops == []  # the other process does not stop at this hook
    interrupt.on_batch_end(trainer, {})
    assert trainer.stops == ["interrupted"]
    assert interrupt.signal == "SIGTERM"
