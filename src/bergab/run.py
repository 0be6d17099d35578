"""Runs: one configured training from start to end, stoppable and resumable.

This is the layer ``bergab train``, ``resume``, ``lr-find`` and ``demo`` call, and the
one hyperparameter search calls for each trial. :func:`train` takes a validated
:class:`bergab.config.RunConfig` and does the whole run in its run directory:

1. build the task, the optimizer factory and the schedule (with ``lr = "auto"``, a range
   test and short trials choose it; the curve and the trials go to ``lr_find.json``);
2. write the resolved config (the schedule actually used) to ``config.toml``;
3. :func:`bergab.fit` with checkpoints in ``checkpoints/`` and logs in ``logs/``;
4. write ``model.pt``, the test split's loss and metrics (when the task has a test
   split), ``summary.json`` and the plots.

Everything that can be checked is checked before the run directory is made (the task
is built, fit's options go through fit's own checks, the directory must be writable);
a run that fails anyway is marked ``"failed"`` in ``summary.json``, and one that failed
before it trained a step does not keep its directory from a new run.

:func:`resume` continues a run from its last checkpoint (the previous one when the last
is unreadable). Ctrl-C (SIGINT) or SIGTERM (what schedulers send before preempting a
job) during a run asks the trainer to stop at the end of the step with a checkpoint
there (:meth:`bergab.training.Trainer.stop` with ``checkpoint=True``), so a resume
continues exactly. Every file is written through :class:`bergab.training.World`: under
several processes only rank 0 writes.

Example:
    >>> from bergab import config, run
    >>> cfg = config.validate({"task": {"name": "linreg"}, "schedule": {"lr": 0.1}})
    >>> cfg.run_dir().as_posix()  # where run.train(cfg) writes; run.resume continues it
    'runs/linreg'
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bergab import _run_checks, config, schedules
from bergab._config_errors import nested_keys, show
from bergab._interrupts import Terminated, handling
from bergab._run_dir import (
    LAST,
    mark,
    prepare_run_dir,
    read_summary,
    started,
    write_config,
    write_plots,
)
from bergab._toml import toml_string
from bergab.training import (
    Callback,
    History,
    ModelCheckpoint,
    NonFiniteError,
    World,
    fit,
    load_checkpoint,
    strategy,
)
from bergab.training.checkpoint import previous_checkpoints

__all__ = ["RunResult", "find_lr", "resume", "train"]


@dataclass
class RunResult:
    """What :func:`train` (``bergab train``/``resume``/``demo``) did.

    Attributes:
        run_dir: the run directory.
        config: the resolved config (with ``lr = "auto"`` replaced by the schedule used).
        history: the :class:`bergab.training.History` of ``fit``.
        auto: what ``lr = "auto"`` chose (``None`` otherwise).
        steps: optimizer steps done in all (including before a resume).
        seconds: wall time of this call; ``lr_find_seconds`` of it was ``lr = "auto"``'s
            choice (the range test and the trials).
        interrupted: stopped by Ctrl-C or SIGTERM (a checkpoint was written, unless
            ``at_once``).
        final: the last values of each logged quantity (``final_train_loss``,
            ``final_val_loss``, metrics) and, when the task has a test split, its
            ``test_loss`` and ``test_<metric>``.
        files: the files written, relative to ``run_dir``.
        error: why training stopped early on a NaN/inf (``nan_policy = "stop"``), else
            ``None``; the history up to that step is kept and plotted.
        signal: ``"SIGINT"`` or ``"SIGTERM"`` when ``interrupted`` by one.
        at_once: a second signal stopped the run without a checkpoint at ``steps``
            (the last regular checkpoint is the resume point).

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
            (self.run_dir / LAST).is_file() or bool(previous_checkpoints(self.run_dir / LAST))
        )

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
    signal: str | None = None
    at_once: bool = False

    def summary_table(self) -> str:
        """A short two-column summary: chosen lr, steps, final losses and metrics, time."""
        rows: list[tuple[str, str]] = [("task", self.config.task.name)]
        rows.append(("optimizer", self.config.optimizer.name))
        if self.auto is not None:
            rows.append(
                (
                    "chosen lr (peak)",
                    f"{self.auto.peak:.3g}  ({_how_chosen(self.auto.result)}; "
                    f"{self.auto.policy} schedule)",
                )
            )
        elif self.config.auto:
            rows.append(("lr", '"auto" (interrupted before the choice finished)'))
        else:
            rows.append(("schedule", repr(config.build_schedule(self.config.schedule))))
        rows.append(("steps", str(self.steps)))
        for key, value in self.final.items():
            rows.append((key.replace("_", " "), f"{value:.4g}"))
        took = f"{self.seconds:.1f} s"
        if self.auto is not None and self.lr_find_seconds > 0:
            took += f" (choosing the lr {self.lr_find_seconds:.1f} s)"
        rows.append(("time", took))
        rows.append(("run directory", str(self.run_dir)))
        if self.interrupted:
            rows.append(("status", "terminated" if self.signal == "SIGTERM" else "interrupted"))
        if self.error is not None:
            rows.append(("status", "stopped: non-finite loss or gradient"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _check_cfg(cfg: Any) -> None:
    if not isinstance(cfg, config.RunConfig):
        raise TypeError(
            f"cfg must be a bergab.config.RunConfig, got {type(cfg).__name__}; build one with "
            "bergab.config.validate(dict) or bergab.config.load(path)"
        )


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

    _check_cfg(cfg)
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
    """Ctrl-C or SIGTERM during a run: stop at the end of the step, with a checkpoint.

    The first signal only sets a flag; the next hook of the trainer turns it into
    ``trainer.stop("interrupted", checkpoint=True)``, so the run ends at a step boundary
    with a checkpoint a resume continues from exactly. A second signal interrupts at
    once (``KeyboardInterrupt``, or :class:`~bergab._interrupts.Terminated` for SIGTERM;
    the last regular checkpoint stays the resume point). SIGTERM is what cluster
    schedulers send before they preempt a job: handled like Ctrl-C, it leaves a run that
    resumes where it stopped.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None
        self.trainer: Any = None

    def _poll(self, trainer: Any) -> None:
        world = getattr(trainer, "world", None)
        if world is not None and world.size > 1:
            # each process gets the signal at its own moment (or alone): they agree at the
            # same hook, so all of them stop at one step and write (and wait for) one
            # checkpoint, as interrupted by the signal one of them got (SIGTERM first). Only
            # the agreed value decides: a signal landing in this process between reading
            # its flag and the reduction is taken up at the next hook, by all of them.
            mine = {None: 0, "SIGINT": 1, "SIGTERM": 2}[self.signal if self.requested else None]
            agreed = world.all_reduce_max(mine)
            if not agreed:
                return
            if not self.requested:
                self.requested, self.signal = True, ("SIGINT", "SIGTERM")[agreed - 1]
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
        term = signum == signal.SIGTERM
        if self.requested:
            self.signal = "SIGTERM" if term else "SIGINT"
            raise Terminated if term else KeyboardInterrupt
        self.requested = True
        self.signal = "SIGTERM" if term else "SIGINT"
        what, again = ("SIGTERM", "send it again") if term else ("Ctrl-C", "press Ctrl-C again")
        print(
            f"\n{what}: finishing this step and writing a checkpoint ({again} to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def installed(self) -> contextlib.AbstractContextManager[None]:
        return handling(dict.fromkeys(self.SIGNALS, self.handler))


def _finished_run(run_dir: Path, total: int) -> dict[str, Any] | None:
    """The last checkpoint of a run that has nothing left to do, else ``None``.

    A run is finished when its checkpoint reached the planned number of steps or was
    stopped for good (early stopping, ``tol``). ``fit(resume=True)`` on such a run would
    return at once but still rewrite ``last.pt`` with the process's current random state,
    which would break an exact continuation with a larger ``max_steps`` later.
    """
    path = run_dir / LAST
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path, mmap=True)  # the weights are read only when needed
    state = ckpt["fit"]
    if int(state["step"]) < total and not state.get("should_stop"):
        return None
    return ckpt


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


def _how_chosen(result: Any) -> str:
    """How ``lr = "auto"`` chose, for the summary table."""
    if result.candidates:
        kind = "FALLBACK to the optimizer's default" if result.fallback else "chosen"
        return f"{kind} by {len(result.candidates)} trials after a range test"
    return f"range test: rule {result.rule}, confidence {result.confidence:.2f}"


def _range_test(cfg: config.RunConfig, task: Any, total: int, tell: Callable[[str], None]) -> Any:
    """``lr = "auto"``: the range test and the schedule it picks (``AutoSchedule``)."""
    from bergab.auto_lr import auto_schedule

    sweep = cfg.lr_find.model_dump(exclude_unset=True)  # unset: sized to the run
    tell("lr = \"auto\": a range test brackets the lr, short trials scored on the "
         "validation loss choose it")  # fmt: skip
    auto = auto_schedule(
        task.model,
        task.train,
        task.loss_fn,
        total_steps=total,
        val_data=task.val,
        optimizer=config.optimizer_factory(cfg),
        policy=cfg.schedule.get("policy", "cosine"),
        warmup_steps=cfg.schedule.get("warmup_steps", 0),
        batch_size=config.sweep_batch_size(cfg, task),
        accumulation_steps=cfg.fit.accumulation_steps,
        device=config.resolve_device(cfg, task.model),
        seed=cfg.fit.seed,
        lr_find_kwargs=sweep,
        warn=False,
    )
    tell(auto.describe())
    if auto.result.fallback:
        tell(f"  warning: {auto.result.choice}")
    for c in auto.result.candidates:
        tell(f"  trial lr {c['lr']:.3g}: validation loss {c['score']:.4g}")
    return auto


@dataclass
class _Outcome:
    """How the fit part of a run ended."""

    history: History
    interrupted: bool = False
    error: str | None = None
    signal: str | None = None
    at_once: bool = False


def _best_keeper(
    cfg: config.RunConfig, task: Any, arguments: Mapping[str, Any], run_dir: Path
) -> list[Any]:
    """``output.keep_best``: a :class:`~bergab.training.ModelCheckpoint` keeping the best
    weights in ``checkpoints/`` by the early-stopping monitor (else ``val_loss``)."""
    if not cfg.output.keep_best:
        return []
    es = arguments.get("early_stopping")
    if es is not None:
        monitor, mode = es.monitor, es.mode
    else:
        monitor, mode = ("val_loss" if getattr(task, "val", None) is not None else "loss"), "min"
    return [ModelCheckpoint(run_dir / "checkpoints", monitor=monitor, mode=mode, keep=1)]


@dataclass
class _Plan:
    """A run checked before it starts: the config, its built task, its length in steps,
    fit's arguments from ``[fit]`` and the task, and the callbacks (the caller's, and
    the ``keep_best`` one)."""

    cfg: config.RunConfig
    task: Any
    total: int
    arguments: dict[str, Any]
    callbacks: list[Any]

    @classmethod
    def make(cls, cfg: config.RunConfig, callbacks: Sequence[Any], task: Any = None) -> _Plan:
        """Build the task (unless given) and check everything fit will be given; no file
        is written."""
        task = config.build_task(cfg) if task is None else task
        total = config.planned_steps(cfg, task)
        arguments = _run_checks.fit_arguments(cfg, task, more_logged=bool(callbacks))
        keeper = _best_keeper(cfg, task, arguments, cfg.run_dir())
        return cls(cfg, task, total, arguments, [*callbacks, *keeper])

    def describe(self, run_dir: Path) -> str:
        """The first line a run prints: the data, the optimizer, the length, the folder."""
        splits = [f"{len(self.task.train)} train"]
        for name in ("val", "test"):
            data = getattr(self.task, name, None)
            if data is not None:
                splits.append(f"{len(data)} {name}")
        return (
            f"task {self.task.name}: {' / '.join(splits)} examples; optimizer "
            f"{self.cfg.optimizer.name}; {self.total} steps; run directory {run_dir}"
        )


def _run_fit(
    plan: _Plan, schedule: Any, run_dir: Path, resume: bool, interrupt: _Interrupt
) -> _Outcome:
    """``fit`` on the config, with Ctrl-C/SIGTERM turned into a stop with a checkpoint."""
    cfg, task = plan.cfg, plan.task
    with interrupt.installed():
        try:
            history = fit(
                task.model,
                task.train,
                task.loss_fn,
                optimizer=config.optimizer_factory(cfg),
                lr=schedule,
                callbacks=[*plan.callbacks, interrupt],
                checkpoint_dir=run_dir / "checkpoints",
                log_dir=run_dir / "logs",
                resume=resume,
                **plan.arguments,
            )
        except KeyboardInterrupt as exc:  # a second signal: at once, no checkpoint here
            trainer = interrupt.trainer
            return _Outcome(
                History() if trainer is None else trainer.history,
                interrupted=True,
                signal="SIGTERM" if isinstance(exc, Terminated) else "SIGINT",
                at_once=True,
            )
        except NonFiniteError as exc:  # nan_policy = "stop": a result with its history
            return _Outcome(exc.history, error=str(exc))
    return _Outcome(history, interrupted=interrupt.requested, signal=interrupt.signal)


def _test_values(plan: _Plan) -> dict[str, float]:
    """The task's test split (when it has one) evaluated with the final weights, as
    ``test_loss`` and ``test_<metric>``; the test split is seen by nothing else."""
    task = plan.task
    test = getattr(task, "test", None)
    if test is None:
        return {}
    from bergab.training import evaluate

    values = evaluate(
        task.model,
        test,
        task.loss_fn,
        metrics=task.metrics,
        batch_size=config.sweep_batch_size(plan.cfg, task),
        device=str(config.resolve_device(plan.cfg, task.model)),
    )
    return {f"test_{key}": float(value) for key, value in values.items()}


def _summary(result: RunResult, plan: _Plan, earlier: Mapping[str, Any]) -> dict[str, Any]:
    """``summary.json``: what the run did, for people and for ``bergab resume``
    (``earlier``: the summary before a resume, whose range test this run still uses)."""
    auto, history = result.auto, result.history
    auto_lr = earlier.get("auto_lr")
    if auto is not None:
        auto_lr = {
            "peak": auto.peak,
            "policy": auto.policy,
            "total_steps": auto.total_steps,
            "rule": auto.result.rule,
            "confidence": auto.result.confidence,
            "suggestions": auto.result.suggestions,
        }
    status = "finished"
    if result.interrupted:
        status = {"SIGTERM": "terminated", "SIGINT": "interrupted"}.get(
            result.signal or "", "paused"
        )
    elif result.error:
        status = "failed"
    keeper = next((c for c in plan.callbacks if isinstance(c, ModelCheckpoint)), None)
    best_file = None if keeper is None else keeper.best_path
    return {
        "task": plan.task.name,
        "optimizer": result.config.optimizer.name,
        "schedule": result.config.schedule,
        "auto_lr": auto_lr,
        "status": status,
        "steps": result.steps,
        "stop_reason": history.stop_reason,
        "interrupted": result.interrupted,
        "signal": result.signal,
        "error": result.error,
        "final": result.final,
        "best": history.best,
        # kept in checkpoints/ (the path the keeper holds may be spelled another way)
        "best_checkpoint": None if best_file is None else f"checkpoints/{Path(best_file).name}",
        "seconds": result.seconds,
        "lr_find_seconds": result.lr_find_seconds or earlier.get("lr_find_seconds", 0.0),
        "threads": torch.get_num_threads(),  # bergab resume uses the same by default
    }


def _final_weights(ckpt: Mapping[str, Any], cfg: config.RunConfig) -> dict[str, Any]:
    """The weights a finished run ended with: early stopping's best when it restores
    them (what ``model.pt`` got), else the checkpoint's last."""
    es = cfg.fit.early_stopping
    if es is not None and es.restore_best:
        for entry in ckpt.get("callbacks", []):
            if str(entry.get("key", "")).startswith("EarlyStopping#"):
                best = (entry.get("state") or {}).get("best_weights")
                if best is not None:
                    return dict(best)
    return dict(ckpt["model"])


def _steps_of(history: History) -> int:
    return int(history.steps["step"][-1]) if history.steps.get("step") else 0


def _finished_result(
    plan: _Plan, ckpt: Mapping[str, Any], run_dir: Path, world: World
) -> tuple[RunResult, str]:
    """A resume of a run with nothing left to do: its files stay as they are (only a
    missing ``model.pt`` is written), and the result is read from them."""
    history = History()
    history.load_state_dict(ckpt["history"])
    if not (run_dir / "model.pt").exists():  # the run stopped between its last two files
        plan.task.model.load_state_dict(_final_weights(ckpt, plan.cfg))
        world.save(plan.task.model.state_dict(), run_dir / "model.pt")
    earlier = read_summary(run_dir)
    final = earlier.get("final") if isinstance(earlier.get("final"), dict) else None
    result = RunResult(
        run_dir=run_dir,
        config=plan.cfg,
        history=history,
        auto=None,
        steps=_steps_of(history),
        seconds=0.0,
        lr_find_seconds=0.0,
        interrupted=False,
        final=final or _final_values(history),
    )
    return result, _finished_message(history)


def _schedule(plan: _Plan, tell: Callable[[str], None]) -> tuple[Any, Any]:
    """``(schedule, auto)``: the config's schedule, or with ``lr = "auto"`` the one the
    range test chose and what it chose (``auto`` is ``None`` otherwise)."""
    if plan.cfg.auto:
        auto = _range_test(plan.cfg, plan.task, plan.total, tell)
        return auto.schedule, auto
    return config.build_schedule(plan.cfg.schedule), None


#: What a finished run may be resumed with: settings that change nothing it would do
#: (``output.dir`` is where the run is now: a run folder may be moved or copied).
_NO_EFFECT = ("fit.progress", "fit.device", "output.plots", "output.dir")


def _refuse_unused(run_dir: Path, resolved: config.RunConfig, ckpt: Mapping[str, Any]) -> None:
    """A resume with nothing left to train refuses ``--set`` values it would not use
    (they would be neither trained with nor written anywhere), naming the first.

    Raises:
        ConfigError: e.g. ``schedule.lr: the run already finished at step 12, ...``.
    """
    try:
        before = tomllib.loads((run_dir / config.CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    was, now = dict(nested_keys(before)), dict(nested_keys(resolved.to_dict()))
    missing = object()
    changed = [
        k
        for k in [*was, *(k for k in now if k not in was)]
        if was.get(k, missing) != now.get(k, missing) and k not in _NO_EFFECT
    ]
    if not changed:
        return
    key, state = changed[0], ckpt["fit"]
    step = int(state["step"])
    if state.get("should_stop"):
        why = f"the run stopped for good at step {step} ({state.get('stop_reason')})"
        raise config.ConfigError(key, f"{why}: nothing is left to train, so this --set is not used")
    if key in ("fit.max_steps", "fit.epochs"):
        raise config.ConfigError(
            key,
            f"{show(now.get(key))} trains nothing: the run has done {step} steps already; "
            "set a larger value to train it on",
        )
    raise config.ConfigError(
        key,
        f"the run already finished at step {step}, so this --set would not be used; to "
        "train on with it, also raise fit.max_steps (or fit.epochs)",
    )


def train(
    cfg: config.RunConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    say: Callable[[str], None] | None = None,
    task: Any = None,
) -> RunResult:
    """Run a config: the library call behind ``bergab train``, ``resume`` and ``demo``.

    See the module docstring for the steps and files. Ctrl-C (SIGINT) or SIGTERM, when
    called from the main thread, finishes the current step, writes a checkpoint there
    and returns with ``interrupted=True``; ``bergab resume RUN_DIR`` then continues
    exactly. An exception marks the run ``"failed"`` in ``summary.json`` and is raised.

    Args:
        cfg: a validated config (:func:`bergab.config.load` or ``validate``).
        resume: continue the run in ``cfg.run_dir()`` instead of starting one.
        callbacks: extra :class:`bergab.training.Callback` objects for ``fit``.
        say: where progress messages go (e.g. ``print``); ``None``: nowhere.
        task: a :class:`bergab.tasks.Task` to train instead of the one ``[task]`` builds
            (cross-validation trains each fold's split of it); ``[task]`` still names it.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the run directory already holds a run (and ``output.overwrite`` is
            false), cannot be written, or the config is invalid (checked before the
            directory is made).

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
    _check_cfg(cfg)
    t0 = time.perf_counter()
    run_dir = cfg.run_dir()
    plan = _Plan.make(cfg, callbacks, task)  # every check that needs no file, before the folder
    _join_processes(cfg, plan.task.model)
    world = World.current()
    tell: Callable[[str], None] = lambda msg: world.say(say, msg)  # noqa: E731
    earlier = read_summary(run_dir) if resume else {}
    prepare_run_dir(world, run_dir, cfg, resume, tell)
    tell(plan.describe(run_dir))
    interrupt = _Interrupt()
    claimed = [False]  # whether this call marked the run "running" (then it marks failures)
    try:
        return _train_in(plan, world, run_dir, resume, earlier, interrupt, claimed, tell, t0)
    except (Exception, KeyboardInterrupt) as exc:  # the summary must not stay "running"
        if claimed[0]:
            trainer = interrupt.trainer
            steps = 0 if trainer is None else int(trainer.step)
            if isinstance(exc, KeyboardInterrupt):  # a signal outside fit (plots, test split)
                name = "terminated" if isinstance(exc, Terminated) else "interrupted"
                mark(world, run_dir, status=name, steps=steps)
            else:
                mark(
                    world,
                    run_dir,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    steps=steps,
                )
        raise


def _join_processes(cfg: config.RunConfig, model: torch.nn.Module) -> None:
    """Under torchrun (or with ``fit.strategy`` ``"ddp"``/``"fsdp"``): start the process
    group before anything is written (only rank 0 writes, and it must know it is rank 0),
    and check that every process was given the same config."""
    try:
        chosen = strategy.resolve_strategy(cfg.fit.strategy, model)
    except ValueError as exc:
        raise config.ConfigError("fit.strategy", str(exc)) from None
    if chosen == "none":
        return
    try:
        device = strategy.device_of_rank(config.resolve_device(cfg, model), cfg.fit.device)
    except ValueError as exc:
        raise config.ConfigError("fit.device", str(exc)) from None
    try:
        strategy.ensure_process_group(device)
    except ValueError as exc:
        raise config.ConfigError("fit.strategy", str(exc)) from None
    world = World.current()
    mine = cfg.model_dump(mode="json")
    for rank, theirs in enumerate(world.gather_objects(mine)):
        if theirs != mine:
            key = _first_difference(mine, theirs)
            raise config.ConfigError(
                key,
                f"differs between the processes (rank {world.rank} and rank {rank}): start "
                "every process with the same config and --set options",
            )


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """The key path of the first value that differs between two config dicts."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path


def _train_in(
    plan: _Plan,
    world: World,
    run_dir: Path,
    resume: bool,
    earlier: Mapping[str, Any],
    interrupt: _Interrupt,
    claimed: list[bool],
    tell: Callable[[str], None],
    t0: float,
) -> RunResult:
    """:func:`train` once the run directory is claimed."""
    cfg, task = plan.cfg, plan.task
    resolved = cfg.model_copy(
        update={"output": cfg.output.model_copy(update={"dir": str(run_dir)})}
    )
    if resume:
        ckpt = _finished_run(run_dir, plan.total)
        if ckpt is not None:  # nothing to train: no file is rewritten, not even the summary
            _refuse_unused(run_dir, resolved, ckpt)
            result, message = _finished_result(plan, ckpt, run_dir, world)
            tell(message)
            result.seconds = time.perf_counter() - t0
            result.files = sorted(p.name for p in run_dir.iterdir())
            return result
    if resume:
        mark(world, run_dir, **started(task.name))
    else:
        world.write_text(run_dir / "summary.json", json.dumps(started(task.name)) + "\n")
    claimed[0] = True
    t1 = time.perf_counter()
    try:
        schedule, auto = _schedule(plan, tell)
    except KeyboardInterrupt as exc:  # in the range test: nothing trained, nothing to resume
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        mark(world, run_dir, status="terminated" if name == "SIGTERM" else "interrupted", steps=0)
        return RunResult(
            run_dir=run_dir, config=cfg, history=History(), auto=None, steps=0,
            seconds=time.perf_counter() - t0, lr_find_seconds=time.perf_counter() - t1,
            interrupted=True, final={}, signal=name,
        )  # fmt: skip
    find_seconds = time.perf_counter() - t1 if auto is not None else 0.0
    if auto is not None:
        resolved = resolved.model_copy(update={"schedule": schedules.to_config(schedule)})
    write_config(world, run_dir, resolved, auto, resume)
    outcome = _run_fit(plan, schedule, run_dir, resume, interrupt)
    if not outcome.interrupted and outcome.error is None and not _finished_run(run_dir, plan.total):
        # a callback stopped fit with a checkpoint (Trainer.stop(checkpoint=True)) before
        # the end: a pause a resume continues, not a finished run (no model.pt)
        outcome.interrupted = True
    history = outcome.history
    final = _final_values(history)
    if not outcome.interrupted and outcome.error is None:
        world.save(task.model.state_dict(), run_dir / "model.pt")
        final.update(_test_values(plan))
    files = write_plots(world, run_dir, history, auto, tell) if cfg.output.plots else []
    result = RunResult(
        run_dir=run_dir,
        config=resolved,
        history=history,
        auto=auto,
        steps=_steps_of(history),
        seconds=time.perf_counter() - t0,
        lr_find_seconds=find_seconds,
        interrupted=outcome.interrupted,
        final=final,
        error=outcome.error,
        files=files,
        signal=outcome.signal,
        at_once=outcome.at_once,
    )
    world.write_text(
        run_dir / "summary.json", json.dumps(_summary(result, plan, earlier), indent=1) + "\n"
    )
    result.files = sorted(p.name for p in run_dir.iterdir())
    return result


def _device_override(overrides: Iterable[str]) -> list[str]:
    """The overrides of ``fit.device`` among ``overrides`` (a resume may move a run)."""
    return [o for o in overrides if config.parse_override(o)[0] == ["fit", "device"]]


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
    Overrides that the checkpoint cannot continue with (the optimizer, the task, the
    batch size, ...: see :data:`bergab._run_checks.RESUMABLE_KEYS`) are refused; the
    others are written to ``config.toml`` once the run trains on.

    Args:
        run_dir: a directory written by :func:`train`.
        overrides: ``KEY.PATH=VALUE`` strings.
        callbacks: extra callbacks for ``fit``.
        say: where progress messages go.

    Returns:
        The :class:`RunResult` (see :func:`train` for an example).

    Raises:
        ConfigError: an override the run cannot continue with (naming its key).

    Example:
        >>> resume("no/such/run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: 'no/such/run' is not a run directory: it has no config.toml ...
    """
    overrides = config._override_list(overrides)
    path = Path(run_dir)
    if not (path / config.CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a run directory: it has no {config.CONFIG_NAME} "
            "(bergab train writes one)"
        )
    here = f"output.dir={toml_string(str(path))}"
    if overrides:
        # the run's own config, made valid on this machine (its device may be absent
        # here): only the keys the overrides change are compared
        old = config.load(path / config.CONFIG_NAME, [here, *_device_override(overrides)])
        # here first: an output.dir among the overrides then differs, and is refused
        cfg = config.load(path / config.CONFIG_NAME, [here, *overrides])
        _run_checks.check_resume_changes(old, cfg)
    else:
        cfg = config.load(path / config.CONFIG_NAME, [here])
    return train(cfg, resume=True, callbacks=callbacks, say=say)
