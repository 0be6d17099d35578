"""Population-based training (Jaderberg et al. 2017) on bergab's runs and tuning storages.

A population of ``population`` members trains a run config, each with its own
hyperparameters (and the run's seed: the same data and first weights). Every member
trains ``interval`` steps (a *segment*), reports its validation metric, and then (when
its next segment is claimed, which waits for the others of the step while other
segments wait before it), if it ranks
in the bottom ``quantile`` of the reports made at that step, **exploits** a random
member of the top ``quantile``: it takes over that member's checkpoint of the step
(weights, optimizer state, schedule position, random state) and hyperparameters, and
**explores** them: each is multiplied by a factor of
``perturb`` (chosen at random), or with probability ``resample_probability`` drawn anew
from its distribution (a ``choice`` moves to a neighbouring value). So the population
finds a *schedule*, not a constant: the winner's ancestors' hyperparameters over the
steps (its lineage) are exported as a bergab schedule config that replays as one run.

Members are independent between their reports, so the search is asynchronous: segments
are Optuna trials in the study's storage (the journal file in ``<out>/<study>/`` for
workers on one machine, a PostgreSQL URL for many), claimed by whichever worker is free.
A running segment beats a heartbeat into its trial; a segment whose worker died (SIGKILL)
is queued again by the next worker that looks, and resumes from the member's last
checkpoint. Each member is a folder ``member-<m>/`` with its checkpoints, logs and the
snapshots of its segment ends (what other members copy).

Example:
    >>> import tempfile
    >>> from bergab.tuning import pbt
    >>> cfg = {"task": {"name": "linreg", "standardize": True}, "schedule": {"lr": 0.05},
    ...        "fit": {"max_steps": 12, "progress": False}, "output": {"plots": False}}
    >>> res = pbt(cfg, {"schedule.lr": {"loguniform": [1e-3, 0.3]}}, population=2, interval=4,
    ...           out=tempfile.mkdtemp(), seed=0)
    >>> res.best_member in (0, 1), len(res.lineage()) == 3
    (True, True)
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bergab._validate import check_int, check_real, require
from bergab.training import Callback

__all__ = ["PBTResult", "explore", "pbt", "truncation"]

#: seconds between a running segment's heartbeats; a segment silent for ``GRACE`` is lost
BEAT = 2.0
GRACE = 20.0
#: segment snapshots a member keeps (others may be copying the newest ones)
KEEP_SNAPSHOTS = 3


# =========================================================================== the rules


def truncation(
    values: Mapping[int, float], member: int, quantile: float, maximize: bool = False
) -> list[int] | None:
    """Truncation selection: the members ``member`` may copy, or ``None`` when it stays.

    ``values`` holds each member's latest reported metric. ``member`` exploits when it is
    among the worst ``ceil(quantile · n)`` of the ``n`` members that reported; it may then
    copy any of the best ``ceil(quantile · n)`` (itself excluded).

    Example:
        >>> truncation({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, 3, 0.25)
        [0]
        >>> truncation({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, 1, 0.25) is None
        True
    """
    n = len(values)
    if n < 2 or member not in values:
        return None
    k = max(1, math.ceil(quantile * n))
    ranked = sorted(values, key=lambda m: (-values[m] if maximize else values[m], m))
    if member not in ranked[n - k :]:
        return None
    top = [m for m in ranked[:k] if m != member]
    return top or None


def explore(
    hparams: Mapping[str, Any],
    space: Any,
    rng: random.Random,
    perturb: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25,
) -> dict[str, Any]:
    """New hyperparameters from ``hparams``: each resampled from its distribution with
    ``resample_probability``, else a number multiplied by one of ``perturb`` (kept in its
    range; an ``int`` rounded) and a ``choice`` moved to a neighbouring value.

    Example:
        >>> from bergab.tuning.space import SearchSpace
        >>> space = SearchSpace.from_mapping({"schedule.lr": {"loguniform": [1e-4, 1.0]}})
        >>> explore({"schedule.lr": 0.1}, space, random.Random(0), resample_probability=0.0)
        {'schedule.lr': 0.12}
    """
    out = dict(hparams)
    for p in space:
        value = hparams[p.path]
        if rng.random() < resample_probability:
            out[p.path] = _sample(p, rng)
        elif p.kind == "choice":
            choices = list(p.choices or ())
            i = choices.index(value) if value in choices else 0
            j = min(max(i + rng.choice((-1, 1)), 0), len(choices) - 1)
            out[p.path] = choices[j]
        else:
            moved = value * rng.choice(tuple(perturb))
            moved = min(max(moved, p.low), p.high)
            out[p.path] = round(moved) if p.kind == "int" else float(moved)
    return out


def _sample(p: Any, rng: random.Random, u: float | None = None) -> Any:
    """A value of parameter ``p`` drawn from its distribution, at the quantile ``u`` in
    [0, 1) of it when given (a stratified draw), else at random."""
    u = rng.random() if u is None else u
    if p.kind == "choice":
        choices = list(p.choices or ())
        return choices[min(int(u * len(choices)), len(choices) - 1)]
    if p.kind == "int":
        if p.log:
            return round(math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low))))
        step = p.step or 1
        n = (p.high - p.low) // step + 1
        return int(p.low + step * min(int(u * n), n - 1))
    if p.kind == "loguniform":
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    if p.step:
        n = round((p.high - p.low) / p.step) + 1
        return float(p.low + p.step * min(int(u * n), n - 1))
    return p.low + u * (p.high - p.low)


def initial_population(space: Any, population: int, rng: random.Random) -> list[dict[str, Any]]:
    """The members' first hyperparameters: a Latin hypercube over ``space``.

    Each parameter's distribution is cut into ``population`` equally likely strata and
    every stratum gets one member (a random point inside it; the strata are matched to
    members by a random permutation per parameter). Eight members of a loguniform lr over
    three decades then lie one in each eighth of the decades, never bunched in one: a
    small population covers the range like a grid, and exploits refine from there.

    Example:
        >>> from bergab.tuning.space import SearchSpace
        >>> space = SearchSpace.from_mapping({"schedule.lr": {"loguniform": [1e-4, 1.0]}})
        >>> lrs = sorted(m["schedule.lr"] for m in initial_population(space, 4, random.Random(0)))
        >>> [math.floor(math.log10(lr)) for lr in lrs]  # one in each decade
        [-4, -3, -2, -1]
    """
    members: list[dict[str, Any]] = [{} for _ in range(population)]
    for p in space:
        strata = list(range(population))
        rng.shuffle(strata)
        for m, k in enumerate(strata):
            members[m][p.path] = _sample(p, rng, (k + rng.random()) / population)
    return members


# =========================================================================== settings

#: The defaults of :func:`pbt`'s settings (``[pbt]`` keys), where it has one.
_DEFAULTS: dict[str, Any] = {
    "population": 8,
    "quantile": 0.25,
    "perturb": (0.8, 1.2),
    "resample_probability": 0.25,
    "metric": "val_loss",
    "workers": 1,
    "seed": 0,
    "grace_period": GRACE,
}


@dataclass(frozen=True)
class _Settings:
    """One search's settings, as every worker needs them (picklable)."""

    base: dict[str, Any]
    space: dict[str, Any]
    population: int
    interval: int
    max_steps: int
    budget_steps: int
    quantile: float
    perturb: tuple[float, float]
    resample_probability: float
    metric: str
    maximize: bool
    seed: int
    directory: str
    storage: str | None
    study: str
    grace: float = GRACE

    @property
    def dir(self) -> Path:
        return Path(self.directory)

    def member_dir(self, m: int) -> Path:
        return self.dir / f"member-{m}"


def _check(
    population: Any,
    interval: Any,
    quantile: Any,
    perturb: Any,
    resample_probability: Any,
    budget_steps: Any,
    max_steps: int,
    workers: Any,
) -> tuple[int, int, float, tuple[float, float], float, int, int]:
    population = check_int("population", population, low=2)
    interval = check_int("interval", interval, low=1)
    quantile = check_real("quantile", quantile, low=0.0, high=0.5, low_open=True)
    if not isinstance(perturb, Sequence) or isinstance(perturb, str) or len(perturb) != 2:
        raise TypeError(f"perturb must be a pair of factors such as (0.8, 1.2), got {perturb!r}")
    factors = tuple(
        check_real(f"perturb[{i}]", f, low=0.0, low_open=True) for i, f in enumerate(perturb)
    )
    resample_probability = check_real(
        "resample_probability", resample_probability, low=0.0, high=1.0
    )
    if interval > max_steps:
        raise ValueError(
            f"interval must be at most the run's length (fit.max_steps = {max_steps}), got "
            f"{interval}: a member would never report before it ends"
        )
    budget = population * max_steps if budget_steps is None else budget_steps
    budget = check_int("budget_steps", budget, low=1)
    if budget < population * interval:
        raise ValueError(
            f"budget_steps must allow every member one interval ({population} x {interval} "
            f"= {population * interval} steps), got {budget}"
        )
    workers = check_int("workers", workers, low=1)
    return (
        population,
        interval,
        quantile,
        (factors[0], factors[1]),
        resample_probability,
        budget,
        workers,
    )


# =========================================================================== the result


@dataclass
class PBTResult:
    """What a population-based search found.

    Attributes:
        study: the study's name; directory: ``<out>/<study>``.
        metric: the metric ranked; maximize: whether higher is better.
        best_member: the member with the best final report; best_value its value.
        segments: every segment trained, as dicts: ``member``, ``segment``, ``start``,
            ``end``, ``hparams``, ``value``, ``event`` (``"start"``, ``"continue"``,
            ``"exploit"``), ``parent`` (``[member, segment]`` it continued from).
    """

    study: str
    directory: Path
    metric: str
    maximize: bool
    best_member: int
    best_value: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    base_config: dict[str, Any] = field(default_factory=dict)

    def lineage(self, member: int | None = None) -> list[dict[str, Any]]:
        """The segments the final state of ``member`` (default: the best) came from,
        first to last: each one's start is the previous one's end.

        Example:
            >>> r = PBTResult("s", Path("."), "val_loss", False, 1, 0.5, segments=[
            ...     {"member": 0, "segment": 0, "start": 0, "end": 4, "value": 1.0, "parent": None},
            ...     {"member": 1, "segment": 0, "start": 0, "end": 4, "value": 2.0, "parent": None},
            ...     {"member": 1, "segment": 1, "start": 4, "end": 8, "value": 0.5,
            ...      "parent": [0, 0]}])
            >>> [(s["member"], s["segment"]) for s in r.lineage()]
            [(0, 0), (1, 1)]
        """
        member = self.best_member if member is None else member
        by_key = {
            (s["member"], s["segment"]): s for s in self.segments if s.get("value") is not None
        }
        mine = [s for s in by_key.values() if s["member"] == member]
        if not mine:
            return []
        chain = [max(mine, key=lambda s: s["segment"])]
        while chain[-1].get("parent") is not None:
            chain.append(by_key[tuple(chain[-1]["parent"])])
        return chain[::-1]

    def schedule(self, member: int | None = None) -> dict[str, Any] | None:
        """The lineage's learning rate over the steps as a bergab schedule config, or
        ``None`` when no ``schedule.*`` key was searched.

        A searched constant lr (``schedule.lr``) gives a ``join`` of ``constant`` pieces;
        any other searched schedule argument (a cosine's ``peak``, a decay's ``final``)
        gives a ``join`` of the segments' schedules, each ``shift``-ed onto the run's
        clock, so the piece from step ``b`` on is the member's schedule at step ``b``.
        Consecutive segments with one schedule are one piece.

        Example:
            >>> r = PBTResult("s", Path("."), "val_loss", False, 0, 0.5, segments=[
            ...     {"member": 0, "segment": 0, "start": 0, "end": 4, "value": 1.0,
            ...      "parent": None, "hparams": {"schedule.lr": 0.1}},
            ...     {"member": 0, "segment": 1, "start": 4, "end": 8, "value": 0.5,
            ...      "parent": [0, 0], "hparams": {"schedule.lr": 0.05}}],
            ...     base_config={"schedule": {"lr": 0.01}})
            >>> r.schedule()["boundaries"]
            [4]
        """
        from bergab import config
        from bergab.tuning.space import apply

        chain = self.lineage(member)
        if not chain or not any(k.startswith("schedule.") for k in chain[0]["hparams"]):
            return None
        pieces: list[dict[str, Any]] = []
        boundaries: list[int] = []
        last: Any = None
        for s in chain:
            sched = apply(self.base_config, s["hparams"]).get("schedule")
            if not isinstance(sched, dict):
                return None
            if sched.get("type", "constant") == "constant" and set(sched) <= {"type", "lr"}:
                piece: dict[str, Any] = {"type": "constant", "lr": float(sched["lr"])}
                own = piece
            else:  # the member's schedule as it stood from this segment's start on
                try:
                    stateful = config.build_schedule(sched).stateful
                except (ValueError, TypeError):
                    return None
                if stateful:  # a plateau's state lives in the run, not in a config
                    return None
                own = sched
                piece = (
                    sched
                    if s["start"] == 0
                    else {"type": "shift", "schedule": sched, "steps": int(s["start"])}
                )
            if own == last:
                continue
            if pieces:
                boundaries.append(int(s["start"]))
            pieces.append(piece)
            last = own
        if len(pieces) == 1:
            return pieces[0]
        return {"type": "join", "schedules": pieces, "boundaries": boundaries}

    def best_config(self) -> dict[str, Any]:
        """The run config that replays the best lineage as one ordinary run: the final
        hyperparameters, and the lr schedule of :meth:`schedule` (when the lr was searched)."""
        from bergab.tuning.space import apply

        chain = self.lineage()
        cfg = (
            apply(self.base_config, chain[-1]["hparams"])
            if chain
            else copy.deepcopy(self.base_config)
        )
        sched = self.schedule()
        if sched is not None:
            cfg["schedule"] = sched
        cfg.setdefault("output", {}).pop("dir", None)
        return cfg

    def _lr_curve(self, segment: Mapping[str, Any]) -> tuple[list[int], list[float]] | None:
        """The lr of a segment's schedule over its steps (``None`` when no schedule
        argument was searched, or the schedule is decided by a range test)."""
        from bergab import config
        from bergab.tuning.space import apply

        if not any(k.startswith("schedule.") for k in segment["hparams"]):
            return None
        table = apply(self.base_config, segment["hparams"]).get("schedule")
        if not isinstance(table, dict):
            return None
        try:
            sched = config.build_schedule(table)
        except (ValueError, TypeError):
            return None
        a, b = int(segment["start"]), int(segment["end"])
        steps = sorted({*range(a, b, max(1, (b - a) // 50)), b})  # to the next one's start
        return steps, [float(sched(t)) for t in steps]

    def plot(self, path: str | Path | None = None) -> Any:
        """Three panels: the population's metric over the steps with exploit events, each
        member's lr over the steps, and the winning lineage's lr schedule; saved to
        ``path`` when given. Returns the matplotlib figure."""
        from bergab.plotting import pyplot

        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        ax_m, ax_lr, ax_sched = axes
        members = sorted({s["member"] for s in self.segments})
        done = [s for s in self.segments if s.get("value") is not None]
        for m in members:
            segs = sorted((s for s in done if s["member"] == m), key=lambda s: s["segment"])
            if not segs:
                continue
            line = ax_m.plot([s["end"] for s in segs], [s["value"] for s in segs], marker=".",
                             label=f"member {m}")[0]  # fmt: skip
            for s in segs:
                if s["event"] == "exploit":
                    ax_m.axvline(s["start"], color=line.get_color(), alpha=0.25, lw=0.8)
                curve = self._lr_curve(s)
                if curve is not None:
                    ax_lr.plot(*curve, color=line.get_color())
        ax_m.set(xlabel="step", ylabel=self.metric, title="population (lines: exploits)")
        shown = [s["value"] for s in done if math.isfinite(s["value"])]
        if shown and min(shown) > 0:
            ax_m.set_yscale("log")  # early losses are often orders above the late ones
        ax_lr.set(xlabel="step", ylabel="lr", yscale="log", title="each member's lr")
        for s in self.lineage():
            curve = self._lr_curve(s)
            if curve is not None:
                ax_sched.plot(*curve, color="black")
        ax_sched.set(xlabel="step", ylabel="lr", yscale="log",
                     title=f"winner's lineage (member {self.best_member})")  # fmt: skip
        if len(members) <= 10:
            ax_m.legend(fontsize="small")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


# =========================================================================== storage


def _open(settings: _Settings) -> Any:
    from bergab.tuning.storage import create_study, open_storage

    storage = open_storage(settings.storage, settings.dir)
    direction = "maximize" if settings.maximize else "minimize"
    return create_study(storage, settings.study, direction=direction)


def _segments(study: Any) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if "member" in t.user_attrs]


def _enqueue(study: Any, attrs: Mapping[str, Any]) -> None:
    study.enqueue_trial({}, user_attrs=dict(attrs))


def _claim(study: Any) -> Any | None:
    """Take a waiting segment (the earliest) for this worker, or ``None``."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    waiting = [t for t in waiting if "member" in t.user_attrs]
    for t in sorted(
        waiting, key=lambda t: (t.user_attrs["start"], t.user_attrs["member"], t.number)
    ):
        with contextlib.suppress(Exception):  # another worker took it first
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                study._storage.set_trial_user_attr(t._trial_id, "beat", time.time())
                # which process trains it (on which machine): for people and for the tests
                worker = f"{socket.gethostname()}:{os.getpid()}"
                study._storage.set_trial_user_attr(t._trial_id, "worker", worker)
                return study._storage.get_trial(t._trial_id)
    return None


def _requeue_lost(study: Any, grace: float) -> int:
    """Fail the running segments whose heartbeat stopped (a killed worker) and queue each
    again; how many."""
    from optuna.trial import TrialState

    now, lost = time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "member" in t.user_attrs and now - float(t.user_attrs.get("beat", now)) > grace:
            with contextlib.suppress(Exception):
                if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    attrs = {k: v for k, v in t.user_attrs.items() if k not in ("beat", "worker")}
                    attrs["retry_of"] = t.number
                    _enqueue(study, attrs)
                    lost += 1
    return lost


@contextlib.contextmanager
def _heartbeat(study: Any, trial_id: int) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT):
            with contextlib.suppress(Exception):
                study._storage.set_trial_user_attr(trial_id, "beat", time.time())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# =========================================================================== a segment


class _Adopt(Callback):
    """After a resume, the segment's hyperparameters replace what the checkpoint's
    optimizer held (its param groups' values, a constant lr)."""

    def __init__(self, groups: Mapping[str, Any], lr: float | None) -> None:
        self.groups = dict(groups)
        self.lr = lr

    def on_fit_start(self, trainer: Any) -> None:
        from bergab.training._lr import core, sync_zero

        for g in core(trainer.optimizer).param_groups:
            for key, value in self.groups.items():
                if key in g:
                    g[key] = value
        sync_zero(trainer.optimizer)
        if self.lr is not None:  # under fit's lr factor (rollbacks, plateau cuts) in force
            trainer._lr.set_base_lr(self.lr)


def _replace_file(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` whole (a reader never sees half of it)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _train_segment(settings: _Settings, attrs: Mapping[str, Any]) -> float:
    """Train one segment of a member; its metric at the end."""
    from bergab import config
    from bergab._run_checks import fit_arguments
    from bergab.training import fit
    from bergab.tuning.space import apply

    m, end = int(attrs["member"]), int(attrs["end"])
    hp = dict(attrs["hparams"])
    data = apply(settings.base, hp)
    # every member has the run's seed: the same data, split and first weights (a task
    # takes its seed from fit.seed), so reports compare and a copied state fits; the
    # members differ by their hyperparameters
    cfg = config.validate(data)
    task = config.build_task(cfg)
    args = fit_arguments(cfg, task)
    args.update(max_steps=end, epochs=None, progress=False)
    schedule = config.build_schedule(cfg.schedule)
    ckpt_dir = settings.member_dir(m) / "checkpoints"
    lr = hp.get("schedule.lr")
    groups = {
        k.split(".", 1)[1]: v
        for k, v in hp.items()
        if k.startswith("optimizer.") and k != "optimizer.name"
    }
    adopt = _Adopt(groups, float(lr) if isinstance(lr, float | int) else None)
    from bergab.training import NonFiniteError

    try:
        history = fit(
            task.model,
            task.train,
            task.loss_fn,
            optimizer=config.optimizer_factory(cfg),
            lr=schedule,
            checkpoint_dir=ckpt_dir,
            log_dir=settings.member_dir(m) / "logs",
            resume=True,
            callbacks=[adopt],
            **args,
        )
    except NonFiniteError:  # the member diverged: it ranks last and copies a better one
        return -math.inf if settings.maximize else math.inf
    record = next(
        (r for r in reversed(history.records) if r.get(settings.metric) is not None), None
    )
    if record is None:
        raise ValueError(
            f"metric: the run logs no {settings.metric!r} (it has "
            f"{sorted(k for k in history.records[-1] if k not in ('step', 'epoch', 'time'))})"
        )
    return float(record[settings.metric])


def _snapshot(settings: _Settings, m: int, segment: int) -> Path:
    """Keep the member's checkpoint of this segment's end for others to copy."""
    path = _snapshot_path(settings, m, segment)
    snaps = path.parent
    _replace_file(settings.member_dir(m) / "checkpoints" / "last.pt", path)
    old = sorted(snaps.glob("segment-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for p in old[:-KEEP_SNAPSHOTS]:
        with contextlib.suppress(OSError):
            p.unlink()
    return path


def _next(settings: _Settings, study: Any, attrs: Mapping[str, Any], value: float) -> None:
    """After a segment: queue the member's next one, its exploit-or-continue decision
    left to the worker that claims it (:func:`_decide`).

    Deciding at the claim instead of at the report ranks the member among every report
    of its step that exists by then: the waiting segment that starts earliest is claimed
    first, so a member that reported early waits for the others of its step while there
    is other work (with one worker it is ranked among the whole population; decided at
    its own report, the first member of a step would be ranked alone and never copy). No
    segment is queued past the run's length or beyond ``budget_steps`` (counting every
    segment trained, training or queued).
    """
    from optuna.trial import TrialState

    m, seg, end = int(attrs["member"]), int(attrs["segment"]), int(attrs["end"])
    live = [t for t in _segments(study) if t.state != TrialState.FAIL]
    if any(int(t.user_attrs["member"]) == m and int(t.user_attrs["segment"]) == seg + 1
           for t in live):  # fmt: skip
        return  # queued by an earlier try of this segment (killed before it was told)
    planned = sum(int(t.user_attrs["end"]) - int(t.user_attrs["start"]) for t in live)
    length = min(settings.interval, settings.max_steps - end)
    if length <= 0 or planned + length > settings.budget_steps:
        return
    _enqueue(study, {"member": m, "segment": seg + 1, "start": end, "end": end + length,
                     "hparams": dict(attrs["hparams"]), "parent": [m, seg],
                     "event": "pending", "reported": value})  # fmt: skip


def _decide(settings: _Settings, study: Any, trial: Any) -> dict[str, Any]:
    """A claimed segment's attributes once its member has decided: continue with its own
    hyperparameters, or (ranked in the bottom ``quantile`` of the reports at its step)
    copy a random top member's state of that step and explore from its hyperparameters.

    Safe against a worker killed at any point, whose segment is retried with the trial's
    attributes: the donor's snapshot is first copied into the member's folder (the donor
    may prune it meanwhile), then the decision is stored in one attribute (``decision``,
    written at once: a retry either decides again or finds all of it), then the member
    takes over the copy and ``copied`` marks that done.
    """
    from optuna.trial import TrialState

    attrs = dict(trial.user_attrs)
    storage = study._storage
    m, seg, start = int(attrs["member"]), int(attrs["segment"]), int(attrs["start"])
    adopted = settings.member_dir(m) / "snapshots" / f"adopted-{seg}.pt"
    decision = attrs.get("decision")
    if attrs.get("event") == "pending" and decision is None:
        here: dict[int, Any] = {}  # each other member's report at this step
        for t in _segments(study):
            if t.state == TrialState.COMPLETE and int(t.user_attrs["end"]) == start:
                k = int(t.user_attrs["member"])
                if k != m and (k not in here or t.number > here[k].number):
                    here[k] = t
        values = {k: float(t.value) for k, t in here.items()}
        values[m] = float(attrs["reported"])
        rng = random.Random(f"{settings.seed}/{m}/{seg - 1}")
        top = truncation(values, m, settings.quantile, settings.maximize)
        decision = {"event": "continue"}
        if top is not None:
            decision = _exploit(settings, study, start, here, top, rng, adopted)
        storage.set_trial_user_attr(trial._trial_id, "decision", decision)
    if decision is not None:  # (again, for a retry) the keys every reader looks at
        for key, value in decision.items():
            storage.set_trial_user_attr(trial._trial_id, key, value)
        attrs.update(decision, decision=decision)
    if attrs["event"] == "exploit" and not attrs.get("copied"):
        d = int(attrs["parent"][0])
        _adopt_files(settings, d, adopted, m)
        storage.set_trial_user_attr(trial._trial_id, "copied", True)
        attrs["copied"] = True
    with contextlib.suppress(OSError):
        adopted.unlink()
    return attrs


def _exploit(
    settings: _Settings,
    study: Any,
    start: int,
    here: Mapping[int, Any],
    top: Sequence[int],
    rng: random.Random,
    adopted: Path,
) -> dict[str, Any]:
    """The decision to copy a random top member's state at ``start`` and explore from
    its hyperparameters (``continue`` when no donor's snapshot is left).

    A state plus hyperparameters that another member already holds at this step (the
    donor itself, or a member that copied it) would make a second copy of one member, a
    wasted member: the donor and the exploration are drawn again, and after 8 draws the
    hyperparameters are drawn anew from the space. (With several workers, two members
    deciding at the same moment do not see each other's choice and may still coincide.)
    The chosen donor's snapshot is copied to ``adopted``.
    """
    from bergab.tuning.space import SearchSpace

    space = SearchSpace.from_mapping(settings.space)
    held = [(t.user_attrs.get("parent"), t.user_attrs["hparams"]) for t in _segments(study)
            if int(t.user_attrs["start"]) == start]  # fmt: skip
    choice: dict[str, Any] | None = None
    for attempt in range(9):
        donor = here[rng.choice(top)]
        d, d_seg = int(donor.user_attrs["member"]), int(donor.user_attrs["segment"])
        if not _snapshot_path(settings, d, d_seg).is_file():
            continue  # copied over since (far behind a fast population): try another
        resample = 1.0 if attempt == 8 else settings.resample_probability
        hp = explore(donor.user_attrs["hparams"], space, rng, settings.perturb, resample)
        choice = {"event": "exploit", "parent": [d, d_seg], "hparams": hp}
        if ([d, d_seg], hp) not in held:
            break
    if choice is None:
        return {"event": "continue"}
    d, d_seg = choice["parent"]
    try:  # the member's own copy of the donor's state, kept until it has taken it over
        _replace_file(_snapshot_path(settings, d, d_seg), adopted)
    except FileNotFoundError:  # pruned since it was looked at
        return {"event": "continue"}
    return choice


def _snapshot_path(settings: _Settings, m: int, segment: int) -> Path:
    return settings.member_dir(m) / "snapshots" / f"segment-{segment}.pt"


def _adopt_files(settings: _Settings, donor: int, snapshot: Path, member: int) -> None:
    """The member takes over the donor's state: its checkpoint, and its logs (the
    checkpoint holds the logs' lengths, which a resume cuts the files back to)."""
    logs = settings.member_dir(donor) / "logs"
    if logs.is_dir():
        shutil.copytree(logs, settings.member_dir(member) / "logs", dirs_exist_ok=True)
    _replace_file(snapshot, settings.member_dir(member) / "checkpoints" / "last.pt")


def _work(settings: _Settings) -> None:
    """A worker: claim waiting segments and train them until none is left anywhere."""

    from bergab.tuning.storage import close_storage

    study = _open(settings)
    try:
        _work_in(settings, study)
    finally:
        close_storage(study._storage)  # a database's connections, not left to the collector


def _work_in(settings: _Settings, study: Any) -> None:
    from optuna.trial import TrialState

    while True:
        trial = _claim(study)
        if trial is None:
            running = [t for t in _segments(study) if t.state == TrialState.RUNNING]
            if not running:
                return
            if not _requeue_lost(study, settings.grace):
                time.sleep(0.2)  # others are training: their next segments come soon
            continue
        with _heartbeat(study, trial._trial_id):
            try:
                attrs = _decide(settings, study, trial)
                value = _train_segment(settings, attrs)
            except BaseException as exc:
                study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                if isinstance(exc, KeyboardInterrupt):  # continued by the next run of pbt
                    # as stored (a decision made, a copy done), not as this worker saw it
                    stored = study._storage.get_trial(trial._trial_id).user_attrs
                    again = {k: v for k, v in stored.items() if k not in ("beat", "worker")}
                    _enqueue(study, {**again, "retry_of": trial.number})
                raise
            _snapshot(settings, int(attrs["member"]), int(attrs["segment"]))
            _next(settings, study, attrs, value)
        study.tell(trial.number, value)


def _worker_main(settings: _Settings) -> None:  # pragma: no cover - runs in a child
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study loaded" lines a worker
    _work(settings)


# =========================================================================== pbt


def pbt(
    config: str | Path | Mapping[str, Any],
    hyperparams: Mapping[str, Any] | None = None,
    *,
    population: int | None = None,
    interval: int | None = None,
    quantile: float | None = None,
    perturb: Sequence[float] | None = None,
    resample_probability: float | None = None,
    budget_steps: int | None = None,
    metric: str | None = None,
    direction: str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = None,
    grace_period: float | None = None,
    out: str | Path = "runs",
) -> PBTResult:
    """Population-based training of a run config (see the module docstring).

    Args:
        config: a run config (TOML path or dict); its ``[pbt]`` table may hold every
            argument below (arguments given here win), ``[pbt.hyperparams]`` the space.
        hyperparams: ``{key path: distribution}`` as in ``[tune.space]`` (loguniform,
            uniform, int, choice), e.g. ``{"schedule.lr": {"loguniform": [1e-4, 1e-1]},
            "optimizer.weight_decay": {"uniform": [0, 0.1]}}``: each member starts with a
            draw; explored by ``perturb`` and ``resample_probability``.
        population: members, >= 2 (default 8).
        interval: steps between a member's reports, <= the run's ``fit.max_steps``
            (default: a tenth of it).
        quantile: the bottom fraction that copies the top fraction, in (0, 0.5]
            (default 0.25).
        perturb: the two factors a number is multiplied by (each > 0; default (0.8, 1.2)).
        resample_probability: the chance a hyperparameter is drawn anew, in [0, 1]
            (default 0.25).
        budget_steps: training steps for the whole population (default: ``population``
            full runs); no segment starts beyond it.
        metric: what ranks the members (default ``val_loss``; ``val_<metric>``, ``loss``).
        direction: ``"minimize"``/``"maximize"``; default from the metric's name.
        workers: processes training members at once on this machine (default 1).
        storage: ``None`` (the journal file in the study directory) or a database URL.
        study: the study's name (default: the config file's stem, or ``"pbt"``).
        seed: the seed of every random choice (draws, selection, perturbation; default 0).
        grace_period: seconds without a heartbeat after which a segment's worker is taken
            for dead and the segment queued again (default 20).
        out: the folder that holds the study directory.

    Returns:
        A :class:`PBTResult`.

    Example:
        See the module docstring.
    """
    require("optuna", "tune")
    from bergab import config as config_module
    from bergab.tuning._tune import _direction, _read_config
    from bergab.tuning.space import SearchSpace, apply

    base, default_name = _read_config(config)
    table = dict(base.pop("pbt", None) or {})
    base.pop("tune", None)
    allowed = {*_DEFAULTS, "hyperparams", "storage", "study", "interval", "budget_steps",
               "direction"}  # fmt: skip
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(
            f"pbt.{unknown[0]}: unknown key of [pbt]; allowed: {', '.join(sorted(allowed))}"
        )

    def setting(name: str, given: Any) -> Any:  # the argument, else [pbt]'s, else the default
        return given if given is not None else table.get(name, _DEFAULTS.get(name))

    population = setting("population", population)
    interval = setting("interval", interval)
    quantile = setting("quantile", quantile)
    perturb = setting("perturb", perturb)
    resample_probability = setting("resample_probability", resample_probability)
    budget_steps = setting("budget_steps", budget_steps)
    metric = str(setting("metric", metric))
    direction = setting("direction", direction)
    workers = setting("workers", workers)
    storage = setting("storage", storage)
    study = setting("study", study)
    seed = check_int("seed", setting("seed", seed), low=0)
    grace = check_real(
        "grace_period", setting("grace_period", grace_period), low=0.0, low_open=True
    )
    space_map = hyperparams if hyperparams is not None else table.get("hyperparams")
    if not space_map:
        raise ValueError(
            "hyperparams: give the space to search, e.g. "
            "{'schedule.lr': {'loguniform': [1e-4, 0.1]}}"
        )
    try:
        space = SearchSpace.from_mapping(space_map)
        space.check_paths(base, config_module.validate)
    except (ValueError, TypeError) as exc:  # named as the [pbt] table's key
        raise type(exc)(str(exc).replace("tune.space", "pbt.hyperparams")) from None
    cfg = config_module.validate(apply(base, {p.path: p.representative for p in space}))
    if cfg.fit.max_steps is None:
        raise ValueError("fit.max_steps: population-based training needs the run's length in steps")
    max_steps = int(cfg.fit.max_steps)
    interval = max(1, max_steps // 10) if interval is None else interval
    population, interval, quantile, factors, resample_probability, budget, workers = _check(
        population,
        interval,
        quantile,
        perturb,
        resample_probability,
        budget_steps,
        max_steps,
        workers,
    )
    maximize = _direction(metric, direction) == "maximize"
    name = study if study is not None else ("pbt" if default_name == "study" else default_name)
    directory = Path(out) / str(name)
    directory.mkdir(parents=True, exist_ok=True)
    settings = _Settings(
        base=base, space=space.to_dict(), population=population, interval=interval,
        max_steps=max_steps, budget_steps=budget, quantile=quantile, perturb=factors,
        resample_probability=resample_probability, metric=metric, maximize=maximize,
        seed=int(seed), directory=str(directory), storage=storage, study=str(name),
        grace=grace,
    )  # fmt: skip
    from bergab.tuning.storage import close_storage

    st = _open(settings)
    try:
        return _run(settings, st, space, population, interval, workers, seed)
    finally:
        close_storage(st._storage)


def _run(
    settings: _Settings,
    st: Any,
    space: Any,
    population: int,
    interval: int,
    workers: int,
    seed: int,
) -> PBTResult:
    """:func:`pbt` once its settings are checked and its study is open."""
    if not _segments(st):  # a new search: every member's first segment, drawn from the space
        first = initial_population(space, population, random.Random(f"{seed}/draw"))
        for m, hp in enumerate(first):
            _enqueue(st, {"member": m, "segment": 0, "start": 0, "end": interval,
                          "hparams": hp, "parent": None, "event": "start"})  # fmt: skip
    else:  # a study continued: segments of workers that died are queued again
        _requeue_lost(st, settings.grace)
    if workers == 1:
        _work(settings)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(settings,)) for _ in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        _check_workers(st, [p.exitcode for p in procs])
    return _result(settings, st)


def _check_workers(study: Any, codes: list[int | None]) -> None:
    """After the workers: raise when segments are left undone because workers failed (a
    worker killed while the others finished its segment is no failure)."""
    from optuna.trial import TrialState

    left = [t for t in _segments(study) if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    bad = [c for c in codes if c != 0]
    if left and bad:
        raise RuntimeError(
            f"pbt: {len(bad)} of {len(codes)} workers failed (exit codes {bad}) and "
            f"{len(left)} segments are left; their errors are above. Run pbt again with the "
            "same study to continue"
        )


def _result(settings: _Settings, study: Any) -> PBTResult:
    from optuna.trial import TrialState

    segs = []
    for t in sorted(_segments(study), key=lambda t: t.number):
        if t.state != TrialState.COMPLETE:
            continue
        a = t.user_attrs
        segs.append({"member": a["member"], "segment": a["segment"], "start": a["start"],
                     "end": a["end"], "hparams": a["hparams"], "value": t.value,
                     "event": a["event"], "parent": a["parent"]})  # fmt: skip
    if not segs:
        raise ValueError("pbt: no segment finished")
    latest: dict[int, dict[str, Any]] = {}
    for s in segs:
        if s["member"] not in latest or s["segment"] > latest[s["member"]]["segment"]:
            latest[s["member"]] = s
    # the winner: the best report among the members that went furthest (the run's end)
    furthest = max(s["end"] for s in latest.values())
    finalists = [s for s in latest.values() if s["end"] == furthest]
    pick = max if settings.maximize else min
    best = pick(finalists, key=lambda s: s["value"])
    result = PBTResult(
        settings.study,
        settings.dir,
        settings.metric,
        settings.maximize,
        int(best["member"]),
        float(best["value"]),
        segs,
        copy.deepcopy(settings.base),
    )
    (settings.dir / "pbt.json").write_text(
        json.dumps(
            {"best_member": result.best_member, "best_value": result.best_value, "segments": segs},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    sched = result.schedule()
    if sched is not None:
        (settings.dir / "pbt_schedule.json").write_text(
            json.dumps(sched, indent=1) + "\n", encoding="utf-8"
        )
    return result
