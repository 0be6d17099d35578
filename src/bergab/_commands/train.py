"""``bergab train CONFIG.toml``: train from a config file into a run directory.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="bergab"); sub = p.add_subparsers()
    >>> register(sub)
    >>> args = p.parse_args(["train", "c.toml", "--set", "fit.max_steps=5", "--out", "runs/x"])
    >>> args.config, args.set, args.out
    ('c.toml', ['fit.max_steps=5'], 'runs/x')
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bergab._toml import toml_string

__all__ = [
    "Launch",
    "add_common_arguments",
    "add_launcher_arguments",
    "add_threads_argument",
    "check_endpoint",
    "check_launch",
    "launch_options",
    "overrides",
    "register",
    "report",
    "set_threads",
    "under_torchrun",
    "worker_argv",
]

_EPILOG = """\
examples:
  bergab train examples/digits.toml
  bergab train examples/charlm.toml --set fit.max_steps=200 --out runs/charlm-short
  bergab train my.toml --set optimizer.weight_decay=0.1 --set 'schedule.lr="auto"'

The config has the tables [task], [optimizer], [schedule], [lr_find], [fit] and
[output] (docs/cli.md lists every key). The run directory gets config.toml (the
resolved config), lr_find.json/.png (with lr = "auto"), logs/, checkpoints/,
history.png, model.pt and summary.json.

Ctrl-C (or SIGTERM, what cluster schedulers send before preempting a job) writes a
checkpoint, prints how to continue (bergab resume RUN_DIR) and exits with code 130
(143 for SIGTERM). A config mistake prints one line naming the key and exits with
code 2; it is found before the run directory is made.
A NaN/inf loss (with fit.nan_policy = "stop") keeps the logs and plots, says at which
step and exits with code 1.

several processes (torch's own launcher, torchrun, with c10d rendezvous):
  bergab train my.toml --nproc-per-node 4
  bergab train my.toml --nproc-per-node 4 --max-restarts 3
  bergab train my.toml --nproc-per-node 8 --nnodes 2 --node-rank 0 --rdzv-endpoint host0:29400
  bergab train my.toml --nproc-per-node 8 --nnodes 2 --node-rank 1 --rdzv-endpoint host0:29400
  torchrun --nproc-per-node 4 -m bergab train my.toml   # the same as the first line

Each process runs bergab train CONFIG with fit.strategy "auto" -> "ddp" (or the
config's "ddp"/"fsdp"); fit.batch_size is per process. Only global rank 0 writes the
run directory and the summary (give every node the same --out, on a shared filesystem to
resume or restart). The options and the config are checked before any process starts
(one line, exit 2); on the CPU, at most one process per core. --max-restarts K: when a
process dies, torchrun restarts them all (at most K times) and they resume from the
run's last checkpoint. The exit code is that of the process that failed first (one
killed by a signal: 128 + its number, e.g. 137 for SIGKILL). A run stopped for good
continues with: torchrun --nproc-per-node N -m bergab resume RUN_DIR
"""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--set KEY.PATH=VALUE`` (repeatable) and ``--out DIR``, shared by config commands."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (a TOML value, e.g. fit.max_steps=5); repeatable",
    )
    p.add_argument("--out", metavar="DIR", default=None, help="the run directory (output.dir)")
    add_threads_argument(p, default=None)


def add_threads_argument(p: argparse.ArgumentParser, default: int | None) -> None:
    """``--threads N``: torch's intra-op CPU threads (``torch.set_num_threads``)."""
    shown = "torch's default" if default is None else str(default)
    p.add_argument(
        "--threads",
        type=int,
        default=default,
        metavar="N",
        help=f"CPU threads for torch (default: {shown}); small models run fastest with 1",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (checked: an int >= 1)."""
    n = getattr(args, "threads", None)
    if n is not None:
        import torch

        from bergab._validate import check_int

        torch.set_num_threads(check_int("--threads", n, low=1))


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, plus ``--out`` as ``output.dir``."""
    out = list(args.set or [])
    if getattr(args, "out", None):
        out.append(f"output.dir={toml_string(args.out)}")
    return out


def register(subparsers: Any) -> None:
    """Add the ``train`` command to the ``bergab`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "train",
        help="train from a TOML config into a run directory",
        description='Train the config\'s task with its optimizer and schedule (lr = "auto"\n'
        "runs a range test first), validate, and write logs, checkpoints and plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the run config")
    add_common_arguments(p)
    add_launcher_arguments(p)
    p.set_defaults(func=_run)


def add_launcher_arguments(p: argparse.ArgumentParser) -> None:
    """torchrun's options that ``bergab train`` passes on: several processes, nodes, restarts."""
    g = p.add_argument_group(
        "several processes",
        "start the run under torch's launcher (torchrun, c10d rendezvous); see below",
    )
    g.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        metavar="N",
        help="processes on this machine (on the CPU at most one per core; on CUDA one per GPU)",
    )
    g.add_argument(
        "--nnodes",
        type=int,
        default=None,
        metavar="M",
        help="machines taking part (default 1); > 1 needs --rdzv-endpoint",
    )
    g.add_argument(
        "--node-rank",
        type=int,
        default=None,
        metavar="R",
        help="this machine's index, 0 .. M-1 (default 0); node 0 hosts the rendezvous",
    )
    g.add_argument(
        "--rdzv-endpoint",
        default=None,
        metavar="HOST:PORT",
        help="where the nodes meet: node 0's address and a free port",
    )
    g.add_argument(
        "--max-restarts",
        type=int,
        default=None,
        metavar="K",
        help="restart every process when one dies, at most K times, resuming from the last "
        "checkpoint (default 0)",
    )


def report(result: Any, *, quiet: bool = False) -> int:
    """Print a run's summary (or how to resume it) and return the exit code: 0 done,
    1 stopped on a NaN/inf, 130 interrupted by Ctrl-C, 143 by SIGTERM. ``quiet``: print
    nothing (a process other than rank 0 of several: rank 0 reports)."""
    from bergab._interrupts import exit_code

    if quiet:
        if result.error is not None:
            return 1
        return exit_code(name=getattr(result, "signal", None)) if result.interrupted else 0
    print(result.summary_table())
    if result.error is not None:
        print(f"training stopped: {result.error}", file=sys.stderr)
        return 1
    if not result.interrupted:
        return 0
    signal = getattr(result, "signal", None)
    what = "terminated (SIGTERM)" if signal == "SIGTERM" else "interrupted"
    if not result.resumable:
        print(f"{what} before training started: nothing to resume", file=sys.stderr)
    elif getattr(result, "at_once", False):
        print(
            f"{what} at step {result.steps} at once, without a checkpoint there; continue "
            f"from the last checkpoint with:\n  bergab resume {result.run_dir}",
            file=sys.stderr,
        )
    else:
        print(
            f"{what} at step {result.steps}: checkpoint written; continue with:\n"
            f"  bergab resume {result.run_dir}",
            file=sys.stderr,
        )
    return exit_code(name=signal)


def _run(args: argparse.Namespace) -> int:
    from bergab import config, run

    if under_torchrun():  # a process torchrun started: train (never launch again)
        given = [k for k in _LAUNCH_ARGS if getattr(args, k, None) is not None]
        if given and os.environ.get("RANK", "0") == "0":
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            print(f"note: started by torchrun already: {names} not used", file=sys.stderr)
        cfg = config.load(args.config, overrides(args))
        set_threads(args)
        return _run_launched(cfg)
    launch = launch_options(args)  # the options alone, before the config is read
    cfg = config.load(args.config, overrides(args))
    set_threads(args)
    if launch is None:
        return report(run.train(cfg, say=print))
    check_launch(cfg, launch)
    return _launch(args, launch)


# --------------------------------------------------------------------------- several processes

_LAUNCH_ARGS = ("nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint", "max_restarts")


def under_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (or another launcher that sets
    ``RANK`` and ``WORLD_SIZE``): it trains, and never launches processes itself.

    Example:
        >>> under_torchrun({}), under_torchrun({"RANK": "1", "WORLD_SIZE": "2"})
        (False, True)
        >>> under_torchrun({"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "1"})
        True
    """
    env = os.environ if env is None else env
    return "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "WORLD_SIZE" in env)


@dataclass(frozen=True)
class Launch:
    """The checked launcher options of ``bergab train``: how torchrun is started.

    Example:
        >>> launch = Launch(nproc_per_node=2)
        >>> launch.world_size, launch.torchrun_argv(["train", "c.toml"])[:5]
        (2, ['--nproc-per-node', '2', '--max-restarts', '0', '--standalone'])
        >>> Launch(nproc_per_node=1, nnodes=2, node_rank=1, rdzv_endpoint="h:29400"
        ...        ).torchrun_argv(["train", "c.toml"])  # doctest: +NORMALIZE_WHITESPACE
        ['--nproc-per-node', '1', '--max-restarts', '0', '--nnodes', '2', '--rdzv-backend',
         'c10d', '--rdzv-endpoint', 'h:29400', '--rdzv-id', 'bergab-train', '--rdzv-conf',
         'is_host=false', '--module', 'bergab', 'train', 'c.toml']
    """

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    max_restarts: int = 0

    @property
    def world_size(self) -> int:
        """The processes on every node together."""
        return self.nproc_per_node * self.nnodes

    def torchrun_argv(self, worker: list[str]) -> list[str]:
        """torchrun's command line (without ``torchrun`` itself) that starts ``bergab
        <worker>`` in every process: c10d rendezvous, torchrun's standalone mode (a free
        local port) for one node without an endpoint; node 0 hosts the rendezvous store."""
        argv = ["--nproc-per-node", str(self.nproc_per_node)]
        argv += ["--max-restarts", str(self.max_restarts)]
        if self.nnodes == 1 and self.rdzv_endpoint is None:
            argv.append("--standalone")
        else:
            host = "true" if self.node_rank == 0 else "false"
            argv += ["--nnodes", str(self.nnodes), "--rdzv-backend", "c10d"]
            argv += ["--rdzv-endpoint", str(self.rdzv_endpoint), "--rdzv-id", "bergab-train"]
            argv += ["--rdzv-conf", f"is_host={host}"]
        return [*argv, "--module", "bergab", *worker]


def check_endpoint(value: str) -> str:
    """``--rdzv-endpoint``: ``HOST:PORT`` (an IPv6 host in brackets), port in 1..65535.

    Example:
        >>> check_endpoint("10.0.0.1:29400"), check_endpoint("[::1]:29400")
        ('10.0.0.1:29400', '[::1]:29400')
        >>> check_endpoint("node0")
        Traceback (most recent call last):
        ...
        ValueError: --rdzv-endpoint must be HOST:PORT (e.g. node0:29400), got 'node0'
    """
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    ok = (
        bool(sep)
        and bool(host)
        and not any(c.isspace() for c in value)
        and (":" not in host or bracketed)
        and port.isdigit()
        and 1 <= int(port) <= 65535
    )
    if not ok:
        raise ValueError(f"--rdzv-endpoint must be HOST:PORT (e.g. node0:29400), got {value!r}")
    return value


def launch_options(args: argparse.Namespace) -> Launch | None:
    """The launcher options, checked (``None`` when none was given: train in this process).

    Raises:
        ValueError, TypeError: one line naming the option.
    """
    from bergab._validate import check_int

    given = {k: getattr(args, k, None) for k in _LAUNCH_ARGS}
    if all(v is None for v in given.values()):
        return None

    def default(key: str, value: int) -> Any:
        return value if given[key] is None else given[key]

    nproc = check_int("--nproc-per-node", default("nproc_per_node", 1), low=1)
    nnodes = check_int("--nnodes", default("nnodes", 1), low=1)
    rank = default("node_rank", 0)
    if not isinstance(rank, int) or not 0 <= rank < nnodes:
        raise ValueError(
            f"--node-rank must be in [0, {nnodes}) with --nnodes {nnodes} (node 0 .. "
            f"{nnodes - 1}), got {rank!r}"
        )
    restarts = check_int("--max-restarts", default("max_restarts", 0), low=0)
    endpoint = given["rdzv_endpoint"]
    if endpoint is not None:
        check_endpoint(endpoint)
    elif nnodes > 1:
        raise ValueError(
            f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address and a free "
            "port, the same on every node)"
        )
    return Launch(nproc, nnodes, rank, endpoint, restarts)


def check_launch(cfg: Any, launch: Launch) -> None:
    """Check, before any process starts, what the processes would find wrong at once:
    the config as ``bergab train`` checks it, the strategy for ``launch.world_size``
    processes, the processes this machine can run, and (on node 0) the run directory.

    Raises:
        ConfigError, ValueError: one line naming the key or the option.
    """
    import torch

    from bergab import config, run
    from bergab.training import strategy

    world = launch.world_size
    if cfg.fit.strategy == "none" and world > 1:
        raise config.ConfigError(
            "fit.strategy",
            f'"none" trains in one process, and the launcher options start {world}: remove '
            'the key (it defaults to "auto": DDP) or set "ddp" or "fsdp"',
        )
    plan = run._Plan.make(cfg, ())  # the checks run.train makes before its run directory
    model = plan.task.model
    device = config.resolve_device(cfg, model)
    n = launch.nproc_per_node
    if device.type == "cpu" and n > strategy.usable_cores():
        cores = strategy.usable_cores()
        raise ValueError(
            f"--nproc-per-node {n}: training on the CPU takes a core per process, and this "
            f"machine has {cores} for them: use at most {cores}"
        )
    if device.type == "cuda" and device.index is None and n > torch.cuda.device_count():
        raise ValueError(
            f"--nproc-per-node {n}: one process per GPU, and this machine has "
            f"{torch.cuda.device_count()}"
        )
    if world > 1 and device.type not in ("cpu", "cuda"):
        raise config.ConfigError(
            "fit.device",
            f"several processes train on the CPU (gloo) or on CUDA GPUs (nccl); the device is "
            f'{device.type!r}: set "cpu" or "cuda", or train in one process',
        )
    env = {"WORLD_SIZE": str(world), "RANK": "0"}
    try:
        chosen = strategy.resolve_strategy(cfg.fit.strategy, model, env=env)
    except ValueError as exc:
        raise config.ConfigError("fit.strategy", str(exc)) from None
    if chosen != "none" and (chosen == "fsdp" or (cfg.fit.shard_optimizer and world > 1)):
        optimizer = config.optimizer_factory(cfg)(list(model.parameters()))
        try:
            strategy.check_shardable(optimizer, chosen, cfg.fit.shard_optimizer and world > 1)
        except ValueError as exc:
            key = "fit.strategy" if str(exc).startswith("strategy=") else "fit.shard_optimizer"
            raise config.ConfigError(key, str(exc)) from None
    _check_run_dir(cfg, launch)


def _check_run_dir(cfg: Any, launch: Launch) -> None:
    """What the processes would refuse of the run directory, checked without writing."""
    from bergab import config
    from bergab._run_dir import _kept_work

    run_dir = cfg.run_dir()
    if run_dir.exists() and not run_dir.is_dir():
        raise config.ConfigError("output.dir", f"{run_dir} is a file, not a directory (--out DIR)")
    blocker = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise config.ConfigError(
            "output.dir", f"cannot create {run_dir}: {blocker} is a file (--out DIR)"
        )
    if launch.node_rank != 0 or cfg.output.overwrite or not run_dir.is_dir():
        return  # node 0's processes claim the folder; the others may find it in use
    if any((run_dir / n).exists() for n in (config.CONFIG_NAME, "checkpoints", "summary.json")):
        kept = _kept_work(run_dir)
        if kept is not None:
            resume = f"continue it with 'bergab resume {run_dir}', or "
            hint = "" if kept.startswith("is in use") else resume
            raise config.ConfigError(
                "output.dir",
                f"{run_dir} {kept}: {hint}pass --out DIR or --set output.overwrite=true",
            )


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``bergab`` arguments every process gets: ``train CONFIG`` and ``--set``,
    ``--out``, ``--threads`` (no launcher option: the processes train)."""
    path = str(args.config)
    out = ["train", os.path.join(".", path) if path.startswith("-") else path]
    out += [f"--set={s}" for s in args.set or []]
    if args.out:
        out.append(f"--out={args.out}")
    if args.threads is not None:
        out.append(f"--threads={args.threads}")
    return out


def _launch(args: argparse.Namespace, launch: Launch) -> int:
    """Run torch's launcher (``torch.distributed.run``, what ``torchrun`` runs) with
    ``launch``'s options and ``bergab train ...`` as the module every process runs; the
    exit code is the first failed process's (128 + N for one killed by signal N)."""
    import signal

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError

    from bergab._interrupts import exit_code
    from bergab.cli import UsageError

    if launch.nproc_per_node > 1 and "OMP_NUM_THREADS" not in os.environ:
        # torchrun sets 1 with a warning box; --threads sets torch's count in each process
        os.environ["OMP_NUM_THREADS"] = str(args.threads or 1)
    if launch.max_restarts > 0:
        # torchrun's agent shares its rendezvous store with the processes by default, and
        # a restarted group then reads the dead group's addresses from it and cannot
        # start (pytorch/pytorch#135712): a store of their own, new on each restart
        os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    argv = launch.torchrun_argv(worker_argv(args))
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        return _failed(exc, launch)
    except SignalException as exc:  # Ctrl-C or SIGTERM: torchrun passed it on and waited
        return exit_code(name=signal.Signals(exc.sigval).name)
    except RendezvousError as exc:
        why = [
            (str(e).strip().splitlines() or [type(e).__name__])[0]
            for e in (exc, exc.__cause__)
            if e
        ]
        text = "; ".join(why).replace(" See inner exception for details.", "")
        where = launch.rdzv_endpoint or "this machine"
        raise UsageError(
            f"--rdzv-endpoint: the processes could not meet at {where}: {text}"
        ) from None
    return 0


def _failed(exc: Any, launch: Launch) -> int:
    """The exit code of the launch whose processes failed (``ChildFailedError``), with one
    line when no process said why itself (killed by a signal, an unusual code)."""
    import signal

    failures = exc.failures

    def cause(r: int) -> tuple[int, int, int]:
        # the root cause first: killed by a signal (SIGKILL, SIGSEGV...), then a process
        # that exited with its own code; last those torchrun stopped with SIGTERM once
        # the first had failed (its timestamps are whole seconds: they do not tell)
        code = failures[r].exitcode
        order = 2 if code == -signal.SIGTERM else 0 if code < 0 else 1
        return order, failures[r].timestamp, r

    rank = min(failures, key=cause)
    failure = failures[rank]
    code = int(failure.exitcode)
    after = f" (after {launch.max_restarts} restarts)" if launch.max_restarts else ""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        print(
            f"bergab train: error: process rank {rank} (pid {failure.pid}) was killed by "
            f"{name}{after}",
            file=sys.stderr,
        )
        return 128 - code
    if code not in (1, 2, 130, 143):  # those printed why themselves
        print(
            f"bergab train: error: process rank {rank} (pid {failure.pid}) exited with code "
            f"{code}{after}",
            file=sys.stderr,
        )
    return code


def _resumable(cfg: Any) -> bool:
    """Whether ``cfg``'s run directory holds a checkpoint of a run of this very config
    (``config.toml`` equal to it but for ``output.dir``, and with ``lr = "auto"`` the
    schedule chosen): what torchrun's restarted processes continue."""
    from bergab import config
    from bergab._run_dir import LAST
    from bergab.training.checkpoint import previous_checkpoints

    run_dir = cfg.run_dir()
    last = run_dir / LAST
    if not (run_dir / config.CONFIG_NAME).is_file():
        return False
    if not last.is_file() and not previous_checkpoints(last):
        return False
    try:
        theirs = config.load(run_dir / config.CONFIG_NAME).model_dump(mode="json")
    except (ValueError, TypeError, OSError):
        return False
    mine = cfg.model_dump(mode="json")
    for d in (mine, theirs):
        d.get("output", {}).pop("dir", None)
        if cfg.auto:
            d.pop("schedule", None)
    return bool(mine == theirs)


def _run_launched(cfg: Any) -> int:
    """``bergab train`` in a process torchrun started: train (rank 0 writes and reports).

    After torchrun restarted the processes (``TORCHELASTIC_RESTART_COUNT`` > 0 in any of
    them, once one died under ``--max-restarts``), the run the first attempt started
    continues from its last checkpoint (as ``bergab resume`` would); without a checkpoint
    yet, it starts again. Every process takes the same decision: the restart counts are
    torchrun's per node (a node restarted for another's failure may count 0), so they
    are reduced, and rank 0 looks at the run directory for all.
    """
    from bergab import config, run
    from bergab.training import World

    env = os.environ
    rank = int(env.get("RANK", "0") or 0)
    size = int(env.get("WORLD_SIZE", "1") or 1)
    if size > 1 and cfg.fit.strategy == "none":
        raise config.ConfigError(
            "fit.strategy",
            f'"none" trains in one process, and torchrun started {size} processes: remove '
            'the key (it defaults to "auto": DDP) or set "ddp" or "fsdp"',
        )
    task = config.build_task(cfg)
    restarts = int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    run._join_processes(cfg, task.model)  # the process group run.train starts, started now
    world = World.current()
    restarted = world.all_reduce_max(int(restarts > 0)) > 0
    resume = restarted and world.broadcast_int(int(world.is_main and _resumable(cfg))) > 0
    if resume:
        run_dir = cfg.run_dir()
        if rank == 0:
            print(
                f"torchrun restarted the processes (restart {restarts} of "
                f"{env.get('TORCHELASTIC_MAX_RESTARTS', '?')}): resuming {run_dir} from its "
                "last checkpoint",
                flush=True,
            )
        result = run.resume(Path(run_dir), say=print)
    else:
        result = run.train(cfg, say=print, task=task)
    return report(result, quiet=rank != 0)
