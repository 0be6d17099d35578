"""``bergab.tune``: a hyperparameter search on Optuna over run configs or a function.

A **run config** (a TOML path or a dict, as ``bergab train`` takes) is tuned by running
it once per trial with the trial's parameters put in at their key paths
(:func:`bergab.tuning.space.apply`); each trial is a normal run in
``<out>/<study>/trial-<n>/``, and every validation of a trial reports ``metric`` to
Optuna so a pruner can stop it. A **function** ``objective(params, report) -> float``
is for users with their own loop: ``report(value, step)`` reports an intermediate value
(and raises ``optuna.TrialPruned`` when the pruner says so).

The study lives in a storage (:mod:`bergab.tuning.storage`): by default Optuna's journal
file in ``<out>/<study>/``, which several worker processes on one machine share; a
``postgresql://`` URL for many machines. Re-running a study continues it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import multiprocessing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bergab._validate import check_choice, check_int, check_real, require
from bergab.training import Callback

__all__ = ["PRUNERS", "SAMPLERS", "TuneResult", "tune"]

#: The samplers ``tune`` knows: ``grid`` (the product of listed values), ``random``,
#: ``qmc`` (quasi-random, Sobol), ``tpe`` (Bayesian, tree-structured Parzen), ``gp``
#: (Bayesian, Gaussian process), ``cmaes`` (evolution strategy; needs the cmaes package).
SAMPLERS = ("grid", "random", "qmc", "tpe", "gp", "cmaes")
#: The pruners: ``asha`` (asynchronous successive halving), ``hyperband``, ``median``,
#: ``wilcoxon`` (for cross-validation folds), ``none``.
PRUNERS = ("asha", "hyperband", "median", "wilcoxon", "none")

Objective = Callable[[dict[str, Any], Callable[[float, int], None]], float]


# =========================================================================== pieces


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's ``ExperimentalWarning`` (on its GP sampler, Wilcoxon pruner, matplotlib
    plots) silenced: bergab chose those parts, the user did not."""
    optuna = require("optuna", "tune")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _sampler(name: str, space: Any, seed: int) -> Any:
    optuna = require("optuna", "tune")
    s = optuna.samplers
    if name == "grid":
        return s.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "qmc":
        return s.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "tpe":
        return s.TPESampler(seed=seed)
    if name == "gp":
        return s.GPSampler(seed=seed)
    require("cmaes", "tune")
    return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _pruner(name: str) -> Any:
    p = require("optuna", "tune").pruners
    return {
        "asha": p.SuccessiveHalvingPruner,
        "hyperband": p.HyperbandPruner,
        "median": p.MedianPruner,
        "wilcoxon": p.WilcoxonPruner,
        "none": p.NopPruner,
    }[name]()


def _direction(metric: str, direction: str | None) -> str:
    """``"minimize"``/``"maximize"``: given, or inferred from the metric's name as
    :class:`bergab.training.EarlyStopping` infers its mode."""
    if direction is not None:
        return str(check_choice("direction", direction, ("minimize", "maximize")))
    from bergab.training.callbacks import infer_mode

    mode = infer_mode(metric)
    if mode is None:
        raise ValueError(
            f"direction: cannot tell whether metric {metric!r} improves by going up or "
            "down; pass direction='minimize' or 'maximize'"
        )
    return "maximize" if mode == "max" else "minimize"


def _read_config(config: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The run config as a dict and a default study name (the file's stem)."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), "study"
    from bergab.config import read_toml

    return read_toml(config), Path(config).stem


# =========================================================================== result


@dataclass
class TuneResult:
    """What a search found.

    Attributes:
        study: the study's name.
        directory: the study directory (``<out>/<study>``): trial runs, the journal.
        metric: the metric optimized, and ``direction`` (``"minimize"``/``"maximize"``).
        best_params: the best complete trial's parameters (key path -> value).
        best_value: its metric value.
        trials: one record per trial: ``number``, ``state``, ``value``, ``params``,
            ``seconds``, ``run_dir`` (config objectives), ``intermediate`` values.
        base_config: the run config tuned (``None`` for a function objective).
        interrupted: the search was stopped by Ctrl-C (or SIGTERM); the finished trials
            are kept, and running the search again continues the study.

    Example:
        >>> r = TuneResult("s", Path("runs/s"), "val_loss", "minimize", {"schedule.lr": 0.1},
        ...                0.5, [], {"task": {"name": "linreg"}})
        >>> r.best_config()["schedule"]
        {'lr': 0.1}
    """

    study: str
    directory: Path
    metric: str
    direction: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    base_config: dict[str, Any] | None = None
    _study: Any = field(default=None, repr=False)
    interrupted: bool = False

    def best_config(self) -> dict[str, Any]:
        """The base run config with the best parameters in it: ``bergab train`` on it
        (written with ``bergab study best --out best.toml``) reproduces the winner."""
        if self.base_config is None:
            raise ValueError("best_config: the search tuned a function, not a run config")
        from bergab.tuning.space import apply

        out = apply(self.base_config, self.best_params)
        out.pop("tune", None)
        out.get("output", {}).pop("dir", None)
        return out

    def to_dataframe(self) -> Any:
        """The trials as a pandas DataFrame (one row per trial, a column per parameter)."""
        pd = require("pandas", "data")
        rows = [
            {k: v for k, v in t.items() if k not in ("params", "intermediate")} | t["params"]
            for t in self.trials
        ]
        return pd.DataFrame(rows)

    def importance(self) -> dict[str, float]:
        """Each parameter's share of the metric's variance (Optuna's fANOVA evaluator)."""
        optuna = require("optuna", "tune")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(self._study, evaluator=evaluator))

    def plot(self, kind: str = "history", path: str | Path | None = None, **kwargs: Any) -> Any:
        """A figure of the search (matplotlib): ``"history"`` (value per trial and the
        best so far), ``"parallel"`` (parallel coordinates), ``"slice"`` (the metric
        against each parameter; ``params=["schedule.lr"]``), ``"contour"`` (two
        parameters, ``params=["schedule.lr", "optimizer.weight_decay"]``), or
        ``"importance"``. ``path`` saves it."""
        from bergab.plotting import pyplot

        pyplot()
        vis = require("optuna.visualization.matplotlib", "tune")
        kind = check_choice("kind", kind, ("history", "parallel", "slice", "contour", "importance"))
        fn = {
            "history": vis.plot_optimization_history,
            "parallel": vis.plot_parallel_coordinate,
            "slice": vis.plot_slice,
            "contour": vis.plot_contour,
            "importance": vis.plot_param_importances,
        }[kind]
        with _quiet():
            ax = fn(self._study, **kwargs)
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig


def _records(study: Any) -> list[dict[str, Any]]:
    out = []
    for t in study.get_trials(deepcopy=False):
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        run_dir = t.user_attrs.get("run_dir")
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": dict(t.params),
                "seconds": seconds,
                "run_dir": run_dir,
                "intermediate": dict(t.intermediate_values),
            }
        )
    return out


def _result(study: Any, name: str, directory: Path, metric: str, base: Any) -> TuneResult:
    optuna = require("optuna", "tune")
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    best_params: dict[str, Any] = dict(study.best_trial.params) if done else {}
    best_value = float(study.best_value) if done else math.nan
    direction = (
        "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
    )
    return TuneResult(name, directory, metric, direction, best_params, best_value,
                      _records(study), base, study)  # fmt: skip


# =========================================================================== objectives


class _ConfigObjective:
    """One trial of a run config: suggest, put the values in, run, report validations.

    Picklable (worker processes get their own copy): the config is a dict."""

    def __init__(self, base: dict[str, Any], space: Any, metric: str, directory: Path,
                 cv_folds: int | None) -> None:  # fmt: skip
        self.base, self.space, self.metric = base, space, metric
        self.directory, self.cv_folds = directory, cv_folds

    def __call__(self, trial: Any) -> float:
        from bergab import config as _config
        from bergab.tuning.space import apply

        params = self.space.suggest(trial, base=self.base)
        data = apply(self.base, params)
        # a retried trial (its worker was killed) carries the killed one's user attributes:
        # its run continues from that run's checkpoint, exactly, instead of starting over
        earlier = trial.user_attrs.get("run_dir")
        resume = bool(earlier) and not self.cv_folds and _resumable(Path(str(earlier)))
        run_dir = Path(str(earlier)) if resume else self.directory / f"trial-{trial.number}"
        data.setdefault("output", {}).update({"dir": str(run_dir), "overwrite": True})
        data.setdefault("fit", {})["progress"] = False
        cfg = _config.validate(data)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("resumed", resume)
        if self.cv_folds:
            return self._cross_validate(trial, cfg, run_dir)
        reporter = _Reporter(trial, self.metric)
        result = _run(cfg, [reporter], resume=resume)
        if reporter.pruned:
            raise require("optuna", "tune").TrialPruned(reporter.pruned)
        return _final(result, self.metric)

    def _cross_validate(self, trial: Any, cfg: Any, run_dir: Path) -> float:
        from bergab import config as _config

        optuna = require("optuna", "tune")
        task = _config.build_task(cfg)
        values = []
        for i, fold in enumerate(_folds(task, self.cv_folds or 0, seed=trial.number)):
            fold_cfg = cfg.model_copy(update={
                "output": cfg.output.model_copy(update={"dir": str(run_dir / f"fold-{i}")})
            })  # fmt: skip
            values.append(_final(_run(fold_cfg, [], task=fold), self.metric))
            trial.report(values[-1], i)  # each fold a step: Wilcoxon compares fold by fold
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {i}")
        return float(sum(values) / len(values))


def _resumable(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.pt").is_file()


def _run(cfg: Any, callbacks: list[Any], task: Any = None, resume: bool = False) -> Any:
    from bergab.run import train

    result = train(cfg, callbacks=callbacks, task=task, resume=resume)
    if result.interrupted:
        raise KeyboardInterrupt
    return result


def _final(result: Any, metric: str) -> float:
    key = f"final_{metric}"
    if key not in result.final:
        known = ", ".join(k.removeprefix("final_") for k in result.final)
        raise ValueError(f"metric: the runs do not log {metric!r}; they log {known}")
    return float(result.final[key])


class _Reporter(Callback):
    """A fit callback reporting ``metric`` at every validation; asks fit to stop when the
    pruner says so (the trial is then marked pruned)."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric, self.pruned = trial, metric, ""

    def on_validation_end(self, trainer: Any, logs: Mapping[str, Any]) -> None:
        value = logs.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        step = int(trainer.step)
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned = f"pruned at step {step} ({self.metric} {float(value):.4g})"
            trainer.stop(self.pruned)


def _folds(task: Any, k: int, seed: int) -> list[Any]:
    """``k`` tasks, fold ``i`` validating on the ``i``-th part of ``task.train`` and training
    on the rest; stratified by class when the targets are class indices."""
    import dataclasses

    import torch
    from torch.utils.data import Subset

    n = len(task.train)
    gen = torch.Generator().manual_seed(seed)
    targets = task.train.tensors[-1] if hasattr(task.train, "tensors") else None
    order = torch.randperm(n, generator=gen)
    if targets is not None and not targets.is_floating_point() and targets.ndim == 1:
        # stratified: each class's examples dealt round-robin over the folds
        order = order[torch.argsort(targets[order], stable=True)]
    parts = [order[i::k] for i in range(k)]
    out = []
    for i in range(k):
        rest = torch.cat([p for j, p in enumerate(parts) if j != i])
        train, val = Subset(task.train, rest.tolist()), Subset(task.train, parts[i].tolist())
        out.append(dataclasses.replace(task, train=train, val=val, test=None))
    return out


class _FunctionObjective:
    def __init__(self, fn: Objective, space: Any) -> None:
        self.fn, self.space = fn, space

    def __call__(self, trial: Any) -> float:
        optuna = require("optuna", "tune")
        params = self.space.suggest(trial)

        def report(value: float, step: int) -> None:
            trial.report(float(value), int(step))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        return float(self.fn(params, report))


# =========================================================================== tune


def _worker(storage_url: str | None, directory: str, name: str, objective: Any,
            trials: int | None, timeout: float | None) -> None:  # fmt: skip
    """One worker process: load the study and optimize until the study has ``trials``
    complete trials (or ``timeout`` passes)."""
    optuna = require("optuna", "tune")
    from bergab.tuning.storage import close_storage, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage_url, Path(directory))
    study = optuna.load_study(study_name=name, storage=store)
    callbacks = []
    if trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(
            trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ))  # fmt: skip
    try:
        with _quiet():
            study.optimize(objective, timeout=timeout, callbacks=callbacks, catch=())
    finally:
        close_storage(store)


def tune(
    config: str | Path | Mapping[str, Any] | Objective,
    space: Mapping[str, Any] | Any = None,
    *,
    sampler: str = "tpe",
    pruner: str = "asha",
    trials: int | None = None,
    timeout: float | None = None,
    metric: str = "val_loss",
    direction: str | None = None,
    cv_folds: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    seed: int = 0,
    out: str | Path = "runs",
    progress: bool = False,
) -> TuneResult:
    """Search hyperparameters of a run config (or a function) with Optuna.

    Args:
        config: a run config (TOML path or dict, as ``bergab train`` takes; its
            ``[tune]`` table may hold every argument below and ``[tune.space]`` the
            space), or ``objective(params, report) -> float``.
        space: the search space (``[tune.space]``'s form, see
            :mod:`bergab.tuning.space`); ``None``: the config's ``[tune.space]``.
        sampler: one of :data:`SAMPLERS`; ``"grid"`` stops when the grid is exhausted.
        pruner: one of :data:`PRUNERS`.
        trials: stop when the study has this many finished (complete or pruned) trials,
            counting those of earlier runs of the study; ``None``: until ``timeout``.
        timeout: stop starting trials after this many seconds.
        metric: what a config's trials are judged by (a logged quantity:
            ``val_loss``, ``val_accuracy``, ...).
        direction: ``"minimize"`` or ``"maximize"``; ``None`` infers it from ``metric``
            (accuracy-like names are maximized, loss-like ones minimized).
        cv_folds: ``k`` >= 2: each trial trains on k splits of the training data, its
            value is the mean validation metric over the folds, each fold a reported step.
        storage: ``None`` (a journal file in the study directory, shared by workers on
            one machine), or a database URL (``postgresql://...``, ``sqlite:///...``).
        study: the study's name (default: the config file's name, or ``"study"``).
        workers: worker processes on this machine, each running trials.
        seed: seeds the sampler (one worker: the same seed gives the same trials).
        out: where the study directory ``<out>/<study>/`` is made.
        progress: show a bar over the trials with the best value so far (one worker).

    Returns:
        A :class:`TuneResult`.

    Example:
        >>> import tempfile
        >>> res = tune(lambda p, report: (p["x"] - 2) ** 2, {"x": {"uniform": [-5, 5]}},
        ...            sampler="random", trials=20, out=tempfile.mkdtemp())
        >>> len(res.trials), abs(res.best_params["x"] - 2) < 1.5
        (20, True)
    """
    optuna = require("optuna", "tune")
    from bergab.tuning.space import SearchSpace
    from bergab.tuning.storage import (
        close_storage,
        create_study,
        fail_orphaned_trials,
        open_storage,
    )

    settings: dict[str, Any] = {}
    base: dict[str, Any] | None = None
    name_default = "study"
    if not callable(config):
        base, name_default = _read_config(config)
        settings = dict(base.pop("tune", {}) or {})
        if space is None:
            space = settings.pop("space", None)
        settings.pop("space", None)
    args = _settings(settings, sampler=sampler, pruner=pruner, trials=trials, timeout=timeout,
                     metric=metric, direction=direction, cv_folds=cv_folds, storage=storage,
                     study=study, workers=workers, seed=seed)  # fmt: skip
    if space is None:
        raise ValueError("space: give the search space, or a [tune.space] table in the config")
    space = space if isinstance(space, SearchSpace) else SearchSpace.from_mapping(space)
    if base is not None:
        from bergab import config as _config

        space.check_paths(base, _config.validate)
    elif args["cv_folds"]:
        raise ValueError("cv_folds: cross-validation needs a run config, not a function")
    name = args["study"] or name_default
    directory = Path(out) / name
    directory.mkdir(parents=True, exist_ok=True)
    store = open_storage(args["storage"], directory)
    with _quiet():
        the_study = create_study(
            store, name, direction=_direction(args["metric"], args["direction"]),
            sampler=_sampler(args["sampler"], space, args["seed"]),
            pruner=_pruner(args["pruner"]),
        )  # fmt: skip
    _remember(the_study, name, base, space, args["metric"])
    # trials a killed worker left running are failed and queued again (with a database,
    # only those whose heartbeat stopped; with the journal file, which has no heartbeat,
    # every running one: one `tune` per journal study at a time, with --workers)
    fail_orphaned_trials(the_study)
    objective: Any = (
        _FunctionObjective(config, space) if base is None  # type: ignore[arg-type]
        else _ConfigObjective(base, space, args["metric"], directory, args["cv_folds"])
    )  # fmt: skip
    try:
        if args["workers"] == 1:
            _worker_in_process(the_study, objective, args["trials"], args["timeout"], progress)
        else:
            _spawn(args, name, directory, objective)
        interrupted = False
    except KeyboardInterrupt:  # finished trials are in the storage: say what there is
        interrupted = True
    try:
        the_study = optuna.load_study(study_name=name, storage=store)
        result = _result(the_study, name, directory, args["metric"], base)
        result.interrupted = interrupted
        return result
    finally:
        close_storage(store)


def _remember(study: Any, name: str, base: Any, space: Any, metric: str) -> None:
    """Keep the search's base config, space and metric in the study itself (so ``bergab
    study best`` can rebuild the winner's config from any machine); a study that already
    holds a different space is refused."""
    attrs = study.user_attrs
    mine = space.to_dict()
    if "space" in attrs and attrs["space"] != mine:
        raise ValueError(
            f"study: {name!r} already holds a search over another space "
            f"({', '.join(sorted(attrs['space']))}); name a new study or use the same space"
        )
    if "space" not in attrs:
        study.set_user_attr("space", mine)
        study.set_user_attr("metric", metric)
        study.set_user_attr("base_config", base)


def _worker_in_process(
    study: Any, objective: Any, trials: int | None, timeout: float | None, progress: bool
) -> None:
    """The search in this process; with ``progress``, a bar over the trials with the best
    value so far (Optuna's, which replaces its log line per trial)."""
    optuna = require("optuna", "tune")
    callbacks = []
    n_trials = None
    if trials is not None:
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=finished))
        # queued trials (retries of a killed worker's) run even when the count is reached
        waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if done >= trials:
            if not waiting:
                return
            n_trials = waiting
        else:
            callbacks.append(optuna.study.MaxTrialsCallback(trials, states=finished))
            n_trials = max(trials - done, waiting)  # no other process runs trials: exact
    bar = progress and (n_trials is not None or timeout is not None)
    level = optuna.logging.get_verbosity()
    if bar:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with _quiet():
            study.optimize(objective, n_trials=n_trials, timeout=timeout,
                           callbacks=callbacks, catch=(), show_progress_bar=bar)  # fmt: skip
    finally:
        optuna.logging.set_verbosity(level)


def _spawn(args: dict[str, Any], name: str, directory: Path, objective: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    work = (args["storage"], str(directory), name, objective, args["trials"], args["timeout"])
    procs = [ctx.Process(target=_worker, args=work) for _ in range(args["workers"])]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise


def _settings(table: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The search's settings: the keyword arguments, where ``[tune]`` does not set them;
    each checked, naming the argument (or ``tune.<key>``)."""
    allowed = set(given)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(
            f"tune.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))}, space)"
        )
    defaults = {"sampler": "tpe", "pruner": "asha", "metric": "val_loss", "workers": 1, "seed": 0}
    # a keyword left at its default gives way to the [tune] table
    args = dict(given) | {
        key: value
        for key, value in table.items()
        if given[key] is None or given[key] == defaults.get(key)
    }
    args["sampler"] = check_choice("sampler", args["sampler"], SAMPLERS)
    args["pruner"] = check_choice("pruner", args["pruner"], PRUNERS)
    if args["trials"] is not None:
        args["trials"] = check_int("trials", args["trials"], low=1)
    if args["timeout"] is not None:
        args["timeout"] = check_real("timeout", args["timeout"], low=0.0, low_open=True)
    if args["cv_folds"] is not None:
        args["cv_folds"] = check_int("cv_folds", args["cv_folds"], low=2)
    args["workers"] = check_int("workers", args["workers"], low=1)
    args["seed"] = check_int("seed", args["seed"], low=0)
    if args["trials"] is None and args["timeout"] is None and args["sampler"] != "grid":
        raise ValueError("trials: give trials or timeout (only a grid search ends by itself)")
    if not isinstance(args["metric"], str) or not args["metric"]:
        raise TypeError(f"metric must be a logged quantity's name, got {args['metric']!r}")
    return args
