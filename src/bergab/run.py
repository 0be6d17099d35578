"""Runs: one configured training from start to end, stoppable and resumable.

This is the layer ``bergab train``, ``resume``, ``lr-find`` and ``demo`` call, and the
one hyperparameter search calls for each trial. :func:`train` takes a validated
:class:`bergab.config.RunConfig` and does the whole run in its run directory:

1. build the task, the optimizer factory and the schedule (with ``lr = "auto"``, the
   range test picks it, and its curve goes to ``lr_find.json``);
2. write the resolved config (the schedule actually used) to ``config.toml``;
3. :func:`bergab.fit` with checkpoints in ``checkpoints/`` and logs in ``logs/``;
4. write ``model.pt``, ``summary.json`` and the plots.

:func:`resume` continues a run from its last checkpoint. Ctrl-C (SIGINT) during a run
asks the trainer to stop at the end of the step with a checkpoint there
(:meth:`bergab.training.Trainer.stop` with ``checkpoint=True``), so a resume continues
exactly. Every file is written through :class:`bergab.training.World`: under several
processes only rank 0 writes.

Example:
    >>> from bergab import config, run
    >>> cfg = config.validate({"task": {"name": "linreg"}, "schedule": {"lr": 0.1}})
    >>> cfg.run_dir().as_posix()  # where run.train(cfg) writes; run.resume continues it
    'runs/linreg'
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bergab import config, schedules
from bergab._toml import dumps_toml, toml_string
from bergab.training import Callback, History, NonFiniteError, World, fit, load_checkpoint

__all__ = ["RunResult", "find_lr", "resume", "train"]

# files a run directory holds (relative names); `output.overwrite` removes exactly these
_RUN_FILES = (
    "config.toml",
    "lr_find.json",
    "lr_find.png",
    "history.png",
    "model.pt",
    "summary.json",
)
_RUN_DIRS = ("checkpoints", "logs")


@dataclass
class RunResult:
    """What :func:`train` (``bergab train``/``resume``/``demo``) did.

    Attributes:
        run_dir: the run directory.
        config: the resolved config (with ``lr = "auto"`` replaced by the schedule used).
        history: the :class:`bergab.training.History` of ``fit``.
        auto: what ``lr = "auto"`` chose (``None`` otherwise).
        steps: optimizer steps done in all (including before a resume).
        seconds: wall time of this call; ``lr_find_seconds`` of it was the range test.
        interrupted: stopped by Ctrl-C (a checkpoint was written).
        final: the last values of each logged quantity (``loss``, ``val_loss``, metrics).
        files: the files written, relative to ``run_dir``.
        error: why training stopped early on a NaN/inf (``nan_policy = "stop"``), else
            ``None``; the history up to that step is kept and plotted.

    Example:
        >>> cfg = config.validate({"task": {"name": "linreg"}, "schedule": {"lr": 0.1}})
        >>> r = RunResult(Path("runs/x"), cfg, None, None, steps=10, seconds=1.5,
        ...               lr_find_seconds=0.0, interrupted=False, final={"final_val_loss": 0.25})
        >>> print(r.summary_table())
        task            linreg
        optimizer       adamw
        schedule        constant(lr=0.1)
        steps           10
        final val loss  0.25
        time            1.5 s
        run directory   runs/x
    """

    @property
    def resumable(self) -> bool:
        """Whether ``bergab resume run_dir`` can continue this run."""
        return (self.run_dir / config.CONFIG_NAME).is_file() and (
            self.run_dir / "checkpoints" / "last.pt"
        ).is_file()

    run_dir: Path
    config: config.RunConfig
    history: Any
    auto: Any
    steps: int
    seconds: float
    lr_find_seconds: float
    interrupted: bool
    final: dict[str, float]
    files: list[str] = field(default_factory=list)
    error: str | None = None

    def summary_table(self) -> str:
        """A short two-column summary: chosen lr, steps, final losses and metrics, time."""
        rows: list[tuple[str, str]] = [("task", self.config.task.name)]
        rows.append(("optimizer", self.config.optimizer.name))
        if self.auto is not None:
            rows.append(
                (
                    "chosen lr (peak)",
                    f"{self.auto.peak:.3g}  (range test: rule {self.auto.result.rule}, "
                    f"confidence {self.auto.result.confidence:.2f}; {self.auto.policy} schedule)",
                )
            )
        elif self.config.auto:
            rows.append(("lr", '"auto" (interrupted before the range test finished)'))
        else:
            rows.append(("schedule", repr(config.build_schedule(self.config.schedule))))
        rows.append(("steps", str(self.steps)))
        for key, value in self.final.items():
            rows.append((key.replace("_", " "), f"{value:.4g}"))
        took = f"{self.seconds:.1f} s"
        if self.auto is not None and self.lr_find_seconds > 0:
            took += f" (range test {self.lr_find_seconds:.1f} s)"
        rows.append(("time", took))
        rows.append(("run directory", str(self.run_dir)))
        if self.interrupted:
            rows.append(("status", "interrupted"))
        if self.error is not None:
            rows.append(("status", "stopped: non-finite loss or gradient"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def find_lr(cfg: config.RunConfig) -> Any:
    """Run the range test of ``bergab lr-find`` on the config's task and optimizer.

    Uses ``[lr_find]`` for the sweep and ``fit.batch_size``, ``fit.seed``,
    ``fit.accumulation_steps`` and ``fit.device`` for the data; the model is restored.

    Returns:
        The :class:`bergab.lr_finder.LRFindResult`.

    Example:
        >>> from bergab import config
        >>> cfg = config.validate({"task": {"name": "linreg", "standardize": True},
        ...                        "lr_find": {"steps": 30}, "fit": {"batch_size": 100}})
        >>> res = find_lr(cfg)
        >>> len(res.lrs) <= 30, res.suggestion > 0
        (True, True)
    """
    from bergab.lr_finder import lr_find

    task = config.build_task(cfg)
    return lr_find(
        task.model,
        task.train,
        task.loss_fn,
        optimizer=config.optimizer_factory(cfg),
        batch_size=config.sweep_batch_size(cfg, task),
        accumulation_steps=cfg.fit.accumulation_steps,
        device=config.resolve_device(cfg, task.model),
        seed=cfg.fit.seed,
        warn=False,
        **cfg.lr_find.model_dump(),
    )


class _Interrupt(Callback):
    """Ctrl-C during a run: stop at the end of the step, with a checkpoint there.

    The first SIGINT only sets a flag; the next hook of the trainer turns it into
    ``trainer.stop("interrupted", checkpoint=True)``, so the run ends at a step boundary
    with a checkpoint a resume continues from exactly. A second SIGINT interrupts at
    once (``KeyboardInterrupt``; the last regular checkpoint stays the resume point).
    """

    def __init__(self) -> None:
        self.requested = False
        self.trainer: Any = None

    def _poll(self, trainer: Any) -> None:
        if self.requested:
            trainer.stop("interrupted", checkpoint=True)

    def on_fit_start(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_epoch_start(self, trainer: Any) -> None:
        self._poll(trainer)

    def on_batch_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
        self._poll(trainer)

    def on_validation_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
        self._poll(trainer)

    def on_epoch_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
        self._poll(trainer)

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nCtrl-C: finishing this step and writing a checkpoint "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _prepare_run_dir(world: World, run_dir: Path, cfg: config.RunConfig, resume: bool) -> None:
    if resume:
        if not (run_dir / config.CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{str(run_dir)!r} is not a run directory (no {config.CONFIG_NAME})"
            )
        return
    if (run_dir / config.CONFIG_NAME).exists() or (run_dir / "checkpoints").exists():
        if not cfg.output.overwrite:
            raise config.ConfigError(
                "output.dir",
                f"{run_dir} already holds a run: continue it with 'bergab resume {run_dir}', "
                "or pass --out DIR or --set output.overwrite=true",
            )
        if world.is_main:
            for name in _RUN_DIRS:
                shutil.rmtree(run_dir / name, ignore_errors=True)
            for name in _RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
    world.mkdir(run_dir)


def _finished_run(run_dir: Path, total: int) -> tuple[History, dict[str, Any]] | None:
    """The History and model weights of a run that has nothing left to do, else ``None``.

    A run is finished when its checkpoint reached the planned number of steps or was
    stopped for good (early stopping, ``tol``). ``fit(resume=True)`` on such a run would
    return at once but still rewrite ``last.pt`` with the process's current random state,
    which would break an exact continuation with a larger ``max_steps`` later.
    """
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    state = ckpt["fit"]
    if int(state["step"]) < total and not state.get("should_stop"):
        return None
    history = History()
    history.load_state_dict(ckpt["history"])
    return history, ckpt["model"]


def _finished_message(history: History) -> str:
    stopped = history.stop_reason
    hint = (
        "; to train on, pass e.g. --set fit.max_steps=N with a larger N"
        if stopped in ("max_steps", "epochs")
        else ""
    )
    return f"the run already finished at step {len(history)} ({stopped}){hint}"


def _final_values(history: History) -> dict[str, float]:
    out: dict[str, float] = {}
    last = history.last or {}
    if isinstance(last.get("loss"), float):
        out["final_train_loss"] = last["loss"]
    elif history.steps.get("loss"):
        out["final_train_loss"] = float(history.steps["loss"][-1])
    for key, value in last.items():
        if key.startswith("val_") and isinstance(value, (int, float)):
            out[f"final_{key}"] = float(value)
    return out


def _write_plots(
    world: World, run_dir: Path, history: History, auto: Any, say: Callable[[str], None]
) -> list[str]:
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


def _range_test(cfg: config.RunConfig, task: Any, total: int, tell: Callable[[str], None]) -> Any:
    """``lr = "auto"``: the range test and the schedule it picks (``AutoSchedule``)."""
    from bergab.auto_lr import auto_schedule

    tell(
        f"range test: {cfg.lr_find.steps} steps, lr {cfg.lr_find.start_lr:g} .. "
        f"{cfg.lr_find.end_lr:g}"
    )
    auto = auto_schedule(
        task.model,
        task.train,
        task.loss_fn,
        total_steps=total,
        optimizer=config.optimizer_factory(cfg),
        policy=cfg.schedule.get("policy", "cosine"),
        warmup_steps=cfg.schedule.get("warmup_steps", 0),
        batch_size=config.sweep_batch_size(cfg, task),
        accumulation_steps=cfg.fit.accumulation_steps,
        device=config.resolve_device(cfg, task.model),
        seed=cfg.fit.seed,
        lr_find_kwargs=cfg.lr_find.model_dump(),
        warn=False,
    )
    tell(auto.describe())
    for reason in auto.result.reasons:
        tell(f"  note: {reason}")
    return auto


def _write_start(
    world: World, run_dir: Path, resolved: config.RunConfig, task: Any, auto: Any
) -> None:
    """A new run's resolved ``config.toml`` and a first ``summary.json``."""
    from bergab._version import __version__

    header = (
        f"bergab run config, resolved (bergab {__version__}); continue with: "
        f"bergab resume {run_dir}"
    )
    if auto is not None:
        header += f"\n{auto.describe()} (range test curve: lr_find.json)"
        world.write_text(
            run_dir / "lr_find.json", json.dumps(auto.result.to_dict(), indent=1) + "\n"
        )
    world.write_text(run_dir / config.CONFIG_NAME, dumps_toml(resolved.to_dict(), header))
    # written again at the end; the thread count is needed by a resume after a crash
    started = {"task": task.name, "status": "running", "threads": torch.get_num_threads()}
    world.write_text(run_dir / "summary.json", json.dumps(started) + "\n")


@dataclass
class _Outcome:
    """How the fit part of a run ended."""

    history: History
    interrupted: bool = False
    error: str | None = None


def _run_fit(
    cfg: config.RunConfig,
    task: Any,
    schedule: Any,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[Any],
) -> _Outcome:
    """``fit`` on the config, with Ctrl-C turned into a stop with a checkpoint."""
    interrupt = _Interrupt()
    es = cfg.fit.early_stopping
    options = cfg.fit.model_dump(exclude={"early_stopping"})
    options["batch_size"] = config.batch_size(cfg, task)
    with interrupt.installed():
        try:
            history = fit(
                task.model,
                task.train,
                task.loss_fn,
                val_data=task.val,
                optimizer=config.optimizer_factory(cfg),
                lr=schedule,
                metrics=task.metrics,
                callbacks=[*callbacks, interrupt],
                early_stopping=None if es is None else es.model_dump(),
                checkpoint_dir=run_dir / "checkpoints",
                log_dir=run_dir / "logs",
                resume=resume,
                **options,
            )
        except KeyboardInterrupt:  # a second Ctrl-C: at once, no checkpoint here
            trainer = interrupt.trainer
            return _Outcome(History() if trainer is None else trainer.history, interrupted=True)
        except NonFiniteError as exc:  # nan_policy = "stop": a result with its history
            return _Outcome(exc.history, error=str(exc))
    return _Outcome(history, interrupted=interrupt.requested)


def _summary(result: RunResult, task_name: str) -> dict[str, Any]:
    """``summary.json``: what the run did, for people and for ``bergab resume``."""
    auto, history = result.auto, result.history
    return {
        "task": task_name,
        "optimizer": result.config.optimizer.name,
        "schedule": result.config.schedule,
        "auto_lr": None
        if auto is None
        else {
            "peak": auto.peak,
            "policy": auto.policy,
            "total_steps": auto.total_steps,
            "rule": auto.result.rule,
            "confidence": auto.result.confidence,
            "suggestions": auto.result.suggestions,
        },
        "status": "interrupted" if result.interrupted else "failed" if result.error else "finished",
        "steps": result.steps,
        "stop_reason": history.stop_reason,
        "interrupted": result.interrupted,
        "error": result.error,
        "final": result.final,
        "best": history.best,
        "seconds": result.seconds,
        "lr_find_seconds": result.lr_find_seconds,
        "threads": torch.get_num_threads(),  # bergab resume uses the same by default
    }


def train(
    cfg: config.RunConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a config: the library call behind ``bergab train``, ``resume`` and ``demo``.

    See the module docstring for the steps and files. Ctrl-C (SIGINT, when called from
    the main thread) finishes the current step, writes a checkpoint there and returns
    with ``interrupted=True``; ``bergab resume RUN_DIR`` then continues exactly.

    Args:
        cfg: a validated config (:func:`bergab.config.load` or ``validate``).
        resume: continue the run in ``cfg.run_dir()`` instead of starting one.
        callbacks: extra :class:`bergab.training.Callback` objects for ``fit``.
        say: where progress messages go (e.g. ``print``); ``None``: nowhere.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the run directory already holds a run (and ``output.overwrite`` is
            false), or the config is invalid.

    Example:
        >>> import tempfile
        >>> from bergab import config
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> cfg = config.validate({"task": {"name": "linreg", "standardize": True},
        ...     "schedule": {"lr": 0.1}, "fit": {"max_steps": 20, "progress": False},
        ...     "output": {"dir": str(out), "plots": False}})
        >>> result = train(cfg)
        >>> result.steps, result.interrupted, (out / "model.pt").is_file()
        (20, False, True)
    """
    t0 = time.perf_counter()
    world = World.current()
    tell: Callable[[str], None] = lambda msg: world.say(say, msg)  # noqa: E731
    run_dir = cfg.run_dir()
    _prepare_run_dir(world, run_dir, cfg, resume)
    task = config.build_task(cfg)
    total = config.planned_steps(cfg, task)
    tell(
        f"task {task.name}: {len(task.train)} train / {len(task.val)} val examples; "
        f"optimizer {cfg.optimizer.name}; {total} steps; run directory {run_dir}"
    )
    auto = None
    find_seconds = 0.0
    resolved = cfg.model_copy(
        update={"output": cfg.output.model_copy(update={"dir": str(run_dir)})}
    )
    if cfg.auto:
        t1 = time.perf_counter()
        try:
            auto = _range_test(cfg, task, total, tell)
        except KeyboardInterrupt:  # nothing trained, nothing to resume
            return RunResult(
                run_dir=run_dir,
                config=cfg,
                history=History(),
                auto=None,
                steps=0,
                seconds=time.perf_counter() - t0,
                lr_find_seconds=time.perf_counter() - t1,
                interrupted=True,
                final={},
            )
        find_seconds = time.perf_counter() - t1
        schedule = auto.schedule
        resolved = resolved.model_copy(update={"schedule": schedules.to_config(schedule)})
    else:
        schedule = config.build_schedule(cfg.schedule)
    if not resume:
        _write_start(world, run_dir, resolved, task, auto)

    finished = _finished_run(run_dir, total) if resume else None
    if finished is not None:  # nothing left to train: don't let fit rewrite the checkpoint
        outcome = _Outcome(finished[0])
        task.model.load_state_dict(finished[1])
        tell(_finished_message(outcome.history))
    else:
        outcome = _run_fit(cfg, task, schedule, run_dir, resume, callbacks)
    history = outcome.history
    if not outcome.interrupted and outcome.error is None:
        world.save(task.model.state_dict(), run_dir / "model.pt")
    files = _write_plots(world, run_dir, history, auto, tell) if cfg.output.plots else []
    result = RunResult(
        run_dir=run_dir,
        config=resolved,
        history=history,
        auto=auto,
        steps=int(history.steps["step"][-1]) if history.steps.get("step") else 0,
        seconds=time.perf_counter() - t0,
        lr_find_seconds=find_seconds,
        interrupted=outcome.interrupted,
        final=_final_values(history),
        error=outcome.error,
        files=files,
    )
    world.write_text(
        run_dir / "summary.json", json.dumps(_summary(result, task.name), indent=1) + "\n"
    )
    result.files = sorted(p.name for p in run_dir.iterdir())
    return result


def resume(
    run_dir: str | Path,
    overrides: Iterable[str] = (),
    *,
    callbacks: Sequence[Any] = (),
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint (``bergab resume``).

    Reads ``run_dir/config.toml`` (with ``lr = "auto"`` already resolved to the schedule
    used, so no new range test), applies ``overrides`` (e.g. ``fit.max_steps=5000`` to
    train on), and calls :func:`train` with ``resume=True``. Without overrides the final
    weights equal, bit for bit on the CPU, those of a run that was never interrupted.

    Args:
        run_dir: a directory written by :func:`train`.
        overrides: ``KEY.PATH=VALUE`` strings.
        callbacks: extra callbacks for ``fit``.
        say: where progress messages go.

    Returns:
        The :class:`RunResult` (see :func:`train` for an example).

    Example:
        >>> resume("no/such/run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: 'no/such/run' is not a run directory: it has no config.toml ...
    """
    path = Path(run_dir)
    if not (path / config.CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a run directory: it has no {config.CONFIG_NAME} "
            "(bergab train writes one)"
        )
    cfg = config.load(
        path / config.CONFIG_NAME, [*overrides, f"output.dir={toml_string(str(path))}"]
    )
    return train(cfg, resume=True, callbacks=callbacks, say=say)
