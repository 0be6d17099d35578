"""The run directory: claimed for one run, checked before any work, marked in its summary.

:func:`prepare_run_dir` makes the folder (``output.dir``, ``--out``) and checks that a
file can be written there before any work starts; a new run refuses a folder holding
another run's work (a finished or resumable run, or one still in progress) unless
``output.overwrite``, and replaces, without being asked, a run that stopped before it
trained a step. A resume gets a readable ``checkpoints/last.pt``
(:func:`bergab.training.checkpoint.recover_checkpoint`). :func:`mark` updates
``summary.json`` (``"running"`` with the process id, ``"failed"``, ...) keeping what it
held; :func:`write_config` and :func:`write_plots` write the resolved config and plots.

Example:
    >>> import tempfile
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> mark(World(), run_dir, status="failed"); read_summary(run_dir)
    {'status': 'failed'}
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bergab import config
from bergab._config_errors import nested_keys
from bergab._toml import dumps_toml
from bergab.training import History, World, load_checkpoint
from bergab.training.checkpoint import previous_checkpoints, recover_checkpoint

__all__ = [
    "LAST",
    "RUN_DIRS",
    "RUN_FILES",
    "mark",
    "prepare_run_dir",
    "read_summary",
    "started",
    "write_config",
    "write_plots",
]

#: Files a run directory holds (relative names); ``output.overwrite`` removes exactly these.
RUN_FILES = (
    "config.toml",
    "lr_find.json",
    "lr_find.png",
    "history.png",
    "model.pt",
    "summary.json",
)
#: Folders a run directory holds.
RUN_DIRS = ("checkpoints", "logs")
#: The resumable checkpoint, relative to the run directory.
LAST = Path("checkpoints") / "last.pt"


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json`` as a dict (``{}`` when missing or unreadable)."""
    try:
        data = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(summary: Mapping[str, Any]) -> bool:
    """Whether the process a ``"running"`` summary names may still be running: it does
    on this host, or it ran on another host (which cannot be asked). A summary without a
    process id (an older bergab) or a process that is gone: no."""
    pid, host = summary.get("pid"), summary.get("host")
    if not isinstance(pid, int):
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def _written_by_bergab(run_dir: Path, summary: Mapping[str, Any]) -> bool:
    """Whether the run files in ``run_dir`` are a bergab run's (a summary with its task
    and status, a config with bergab's header), and not, say, the user's own
    ``config.toml`` in a folder passed as ``--out``: only those are replaced unasked."""
    if "status" not in summary or "task" not in summary:
        return False
    config_file = run_dir / config.CONFIG_NAME
    if not config_file.exists():
        return True
    try:
        with config_file.open(encoding="utf-8") as f:
            return f.readline().startswith("# bergab run config")
    except (OSError, UnicodeDecodeError):
        return False


def _kept_work(run_dir: Path) -> str | None:
    """What in ``run_dir`` a new run would destroy, or ``None`` when nothing was trained.

    A run that stopped before it trained a step (a config error fit found, a range test
    killed) leaves a config, a summary and perhaps a step-0 checkpoint: nothing to keep.
    """
    summary = read_summary(run_dir)
    if summary.get("status") == "running" and _alive(summary):
        return f"is in use by a run in progress (process {summary.get('pid')})"
    if not _written_by_bergab(run_dir, summary) or (run_dir / "model.pt").exists():
        return "already holds a run"
    last = run_dir / LAST
    for path in [last, *previous_checkpoints(last)]:
        if path.exists():
            try:
                step = int(load_checkpoint(path, mmap=True)["fit"]["step"])
            except (OSError, ValueError, KeyError, TypeError):
                return "already holds a run"  # unreadable: let the user decide
            if step > 0:
                return "already holds a run"
    return None


def _clear(run_dir: Path) -> None:
    """Remove a run's own files (and only those) from ``run_dir``."""
    for name in RUN_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


def _make_writable_dir(world: World, run_dir: Path) -> None:
    """Create ``run_dir`` and check a file can be written there; one line naming
    ``output.dir`` (``--out``) if not."""
    key = "output.dir"
    if run_dir.exists() and not run_dir.is_dir():
        raise config.ConfigError(key, f"{run_dir} is a file, not a directory (--out DIR)")
    blocker = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise config.ConfigError(key, f"cannot create {run_dir}: {blocker} is a file (--out DIR)")
    try:
        world.mkdir(run_dir)
        if world.is_main:
            with tempfile.TemporaryFile(dir=run_dir):
                pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise config.ConfigError(key, f"{run_dir} is not a writable directory: {why}") from None


def prepare_run_dir(
    world: World, run_dir: Path, cfg: config.RunConfig, resume: bool, tell: Callable[[str], None]
) -> None:
    """Claim ``run_dir`` for this run: made and writable; a new run must not destroy
    another's work (a finished or resumable run, or one in progress) unless
    ``output.overwrite``; a resume gets a readable ``last.pt`` (see ``recover_checkpoint``)."""
    if resume:
        last = run_dir / LAST
        if not last.exists() and not previous_checkpoints(last):
            # fit would start from scratch: not what "resume" promises
            raise FileNotFoundError(
                f"{last} does not exist: nothing to resume (the run stopped before its "
                f"first checkpoint); start it again with bergab train CONFIG --out {run_dir}"
            )
        _make_writable_dir(world, run_dir)
        if world.is_main:
            note = recover_checkpoint(last)
            if note is not None:
                tell(f"warning: {note}")
        world.barrier()
        return
    holds = any((run_dir / n).exists() for n in (config.CONFIG_NAME, "checkpoints", "summary.json"))
    if holds and run_dir.is_dir():
        kept = None if cfg.output.overwrite else _kept_work(run_dir)
        if kept is not None:
            hint = (
                ""
                if kept.startswith("is in use")
                else f"continue it with 'bergab resume {run_dir}', or "
            )
            raise config.ConfigError(
                "output.dir",
                f"{run_dir} {kept}: {hint}pass --out DIR or --set output.overwrite=true",
            )
        if world.is_main:
            if not cfg.output.overwrite:
                status = read_summary(run_dir).get("status", "unknown")
                tell(f"replacing the run in {run_dir}: it stopped before training ({status})")
            _clear(run_dir)
    _make_writable_dir(world, run_dir)


def started(task_name: str) -> dict[str, Any]:
    """The fields a summary gets when a run starts: who runs it, on how many threads."""
    return {
        "task": task_name,
        "status": "running",
        "threads": torch.get_num_threads(),  # bergab resume uses the same by default
        "pid": os.getpid(),  # a new run into this folder waits while this one lives
        "host": socket.gethostname(),
    }


def mark(world: World, run_dir: Path, **fields: Any) -> None:
    """Update ``summary.json`` with ``fields``, keeping what it held."""
    data = {**read_summary(run_dir), **fields}
    world.write_text(run_dir / "summary.json", json.dumps(data, indent=1) + "\n")


def write_config(
    world: World, run_dir: Path, resolved: config.RunConfig, auto: Any, resumed: bool
) -> None:
    """The resolved ``config.toml``: at the start of a run, and again when a resume with
    ``--set`` changed it, or the run folder moved (so the file always says what the run
    trains on and where it is; a later plain ``bergab resume`` goes on with the same)."""
    from bergab._version import __version__

    path = run_dir / config.CONFIG_NAME
    first = (
        f"bergab run config, resolved (bergab {__version__}); continue with: "
        f"bergab resume {run_dir}"
    )
    if resumed:
        try:
            text = path.read_text(encoding="utf-8")
            before = dict(nested_keys(tomllib.loads(text)))
        except (OSError, ValueError):
            text, before = "", {}
        after = dict(nested_keys(resolved.to_dict()))
        if before == after:
            return
        kept = [ln[2:] for ln in text.splitlines() if ln.startswith("# ")][1:]  # not line 1
        note = "changed by bergab resume --set (the checkpoint holds the run's state)"
        moved_only = {k for k in {*before, *after} if before.get(k) != after.get(k)} == {
            "output.dir"
        }
        if not moved_only and note not in kept:
            kept.append(note)
        header = "\n".join([first, *kept])
    else:
        header = first
        if auto is not None:
            header += f"\n{auto.describe()} (range test curve: lr_find.json)"
            world.write_text(
                run_dir / "lr_find.json", json.dumps(auto.result.to_dict(), indent=1) + "\n"
            )
    world.write_text(path, dumps_toml(resolved.to_dict(), header))


def write_plots(
    world: World, run_dir: Path, history: History, auto: Any, say: Callable[[str], None]
) -> list[str]:
    """``lr_find.png`` (with ``lr = "auto"``) and ``history.png``, on rank 0; without
    matplotlib a note says they were skipped. Returns the names written."""
    from bergab._validate import MissingDependencyError

    written: list[str] = []
    if not world.is_main:
        return written
    try:
        from bergab.plotting import pyplot

        plt = pyplot()
        if auto is not None:
            plt.close(auto.result.plot(run_dir / "lr_find.png"))
            written.append("lr_find.png")
        if len(history) or history.records:
            history.plot(run_dir / "history.png")
            written.append("history.png")
    except MissingDependencyError as exc:
        say(f"plots skipped: {exc}")
    return written
