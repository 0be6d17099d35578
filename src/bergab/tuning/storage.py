"""Where a hyperparameter search keeps its trials: one file on one machine, a database for many.

:func:`open_storage` turns the ``storage`` setting of a search into an Optuna storage:

* no URL: Optuna's journal file ``study.journal`` in the study directory. It is Optuna's own
  advice for several worker processes on one machine: appends under a file lock, no
  ``database is locked`` as with SQLite.
* ``sqlite:///PATH``: one SQLite file (a single worker, or a few on a local disk).
* ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (driver psycopg 3; ``postgresql+psycopg://``
  says so explicitly): workers on many machines share one study.

The database storages record a heartbeat of every running trial every
:data:`HEARTBEAT_INTERVAL` seconds. A trial whose heartbeat is older than
:data:`GRACE_PERIOD` seconds (its worker was killed, its machine lost) is failed by the next
worker that starts a trial, and a copy with the same hyperparameters is queued in its place
(at most :data:`MAX_RETRY` times per original trial); the copy's ``system_attrs`` name the
failed trial (``failed_trial``: the original number, ``retry_history``: every number tried).

The journal storage has no heartbeats in Optuna (up to 5.1 at least): ``JournalStorage`` does
not implement Optuna's ``BaseHeartbeat``, so ``optuna.storages.fail_stale_trials`` returns
without doing anything and a killed worker's trial stays ``RUNNING`` forever; no other worker
fails or retries it. :func:`fail_orphaned_trials` does it on the next start, when no worker of
the study runs: it fails the trials left running and queues their retries as the heartbeat
would have.

:func:`create_study` creates the study once (or loads it), in the parent process before any
worker starts: Optuna creates the tables of a database storage on first use, and several
workers doing that at once can collide.

Example:
    >>> import pathlib, tempfile
    >>> from bergab.tuning.storage import create_study, open_storage
    >>> study_dir = pathlib.Path(tempfile.mkdtemp())
    >>> study = create_study(open_storage(None, study_dir), "demo", direction="minimize")
    >>> sorted(p.name for p in study_dir.iterdir())
    ['study.journal']
    >>> again = create_study(open_storage(None, study_dir), "demo", direction="minimize")
    >>> again.study_name, len(again.trials)
    ('demo', 0)
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bergab._validate import require

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CONNECT_TIMEOUT",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "JOURNAL_FILE",
    "MAX_RETRY",
    "SCHEMES",
    "close_storage",
    "create_study",
    "fail_orphaned_trials",
    "open_storage",
]

#: Seconds between two heartbeats of a running trial (database storages).
HEARTBEAT_INTERVAL = 5
#: Seconds without a heartbeat after which a running trial counts as lost: three missed
#: heartbeats, so a slow database round trip does not fail a live trial.
GRACE_PERIOD = 15
#: How many times a lost trial is queued again (per original trial) before it stays failed.
MAX_RETRY = 3
#: Seconds to wait for a database server to answer before giving up.
CONNECT_TIMEOUT = 5
#: The journal file in the study directory when no storage URL is given.
JOURNAL_FILE = "study.journal"
#: The URL schemes :func:`open_storage` accepts.
SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _redact(url: str) -> str:
    """The URL with the password of its user part replaced by ``***``.

    Works on the text, so on URLs that do not parse as well.

    Example:
        >>> _redact("postgresql://ann:s3cr/et@db.example:5432/hp")
        'postgresql://ann:***@db.example:5432/hp'
        >>> _redact("sqlite:///runs/study.db")
        'sqlite:///runs/study.db'
    """
    m = _SCHEME.match(url)
    if m is None:
        return url
    rest = url[m.end() :]
    authority_end = len(rest)
    for sep in "?#":
        i = rest.find(sep)
        if i != -1:
            authority_end = min(authority_end, i)
    at = rest.rfind("@", 0, authority_end)
    if at == -1:
        return url
    user, colon, _ = rest[:at].partition(":")
    return m.group(0) + user + (":***" if colon else "") + rest[at:]


def _one_line(exc: BaseException) -> str:
    """The first line of an error, the driver's own when SQLAlchemy wraps it."""
    inner = getattr(exc, "orig", None)
    text = str(inner if isinstance(inner, BaseException) else exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Optuna marks heartbeats and the retry callback experimental; we chose them knowingly."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _retry_callback(max_retry: int | None) -> tuple[str, Any]:
    """The keyword and the callback that queue a lost trial again, for this Optuna version.

    Optuna 4.9 renamed ``RetryFailedTrialCallback`` / ``failed_trial_callback`` to
    ``RetryHeartbeatStaleTrialCallback`` / ``heartbeat_stale_trial_callback`` (the old names
    warn); older versions only know the old ones.
    """
    import optuna

    new = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if new is not None:
        return "heartbeat_stale_trial_callback", new(max_retry=max_retry)
    return "failed_trial_callback", optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)


def _journal(study_dir: Path) -> optuna.storages.BaseStorage:
    import optuna

    path = Path(study_dir) / JOURNAL_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # Optuna < 4.0
            backend: Any = optuna.storages.JournalFileStorage(str(path))
        else:
            backend = JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    except (OSError, ValueError) as exc:
        raise ValueError(f"storage: cannot open {path}: {_one_line(exc)}") from None


def open_storage(
    url: str | None,
    study_dir: Path,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
    max_retry: int | None = MAX_RETRY,
    connect_timeout: int = CONNECT_TIMEOUT,
) -> optuna.storages.BaseStorage:
    """Open the storage of a search: the journal file in ``study_dir``, or a database.

    Args:
        url: ``None`` for Optuna's journal file ``study_dir / "study.journal"`` (several
            workers on one machine); ``sqlite:///PATH``; ``postgresql://USER:PASSWORD@HOST:PORT/DB``
            (workers on many machines; psycopg 3 is the driver when it is installed, which
            ``pip install 'bergab[tune]'`` does) or ``postgresql+psycopg://...``.
        study_dir: the search's directory; only the journal file lives there.
        heartbeat_interval: seconds between heartbeats of a running trial (databases only).
        grace_period: seconds without a heartbeat after which a running trial is failed and
            queued again; more than ``heartbeat_interval``.
        max_retry: how often a lost trial is queued again; ``None``: without limit.
        connect_timeout: seconds to wait for a database server.

    Returns:
        An Optuna storage, to give to :func:`create_study` or ``optuna.load_study``.

    Raises:
        ValueError: an unknown scheme (the message lists :data:`SCHEMES`), or a storage that
            cannot be opened: ``storage: cannot open URL: REASON`` on one line, with the
            URL's password shown as ``***``. A database is connected to here, so a wrong
            address fails before any trial starts, within ``connect_timeout`` seconds.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> type(open_storage(None, d)).__name__
        'JournalStorage'
        >>> type(open_storage(f"sqlite:///{d}/study.db", d)).__name__
        'RDBStorage'
        >>> open_storage(f"sqlite:///{d}/no/such/dir/study.db", d)
        Traceback (most recent call last):
        ...
        ValueError: storage: cannot open sqlite:///.../no/such/dir/study.db: unable to open database file
        >>> open_storage("mysql://ann:s3cret@db.example/hp", d)
        Traceback (most recent call last):
        ...
        ValueError: storage: unknown scheme 'mysql' in mysql://ann:***@db.example/hp; use sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DB (or postgresql+psycopg://...), or no URL for the journal file in the study directory
    """  # noqa: E501
    require("optuna", "tune")
    if url is None:
        return _journal(study_dir)

    shown = _redact(url)
    m = _SCHEME.match(url)
    scheme = m.group(1).lower() if m else None
    if scheme not in SCHEMES:
        what = f"unknown scheme {scheme!r}" if scheme else "no scheme"
        raise ValueError(
            f"storage: {what} in {shown}; use sqlite:///PATH, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB (or postgresql+psycopg://...), "
            "or no URL for the journal file in the study directory"
        )
    for name, value in (
        ("heartbeat_interval", heartbeat_interval),
        ("grace_period", grace_period),
        ("connect_timeout", connect_timeout),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"storage: {name} must be a whole number of seconds >= 1, not {value!r}"
            )
    if grace_period <= heartbeat_interval:
        raise ValueError(
            f"storage: grace_period ({grace_period} s) must exceed heartbeat_interval "
            f"({heartbeat_interval} s), or live trials would be failed"
        )
    if max_retry is not None and (isinstance(max_retry, bool) or max_retry < 0):
        raise ValueError(f"storage: max_retry must be None or >= 0, not {max_retry!r}")

    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    def cannot(reason: str) -> ValueError:
        return ValueError(f"storage: cannot open {shown}: {reason}")

    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise cannot(f"malformed URL ({_one_line(exc)})") from None
    password = parsed.password

    connect_args: dict[str, Any]
    if scheme == "sqlite":
        # how long a worker waits for another's write lock before "database is locked"
        connect_args = {"timeout": 30}
    else:
        if scheme == "postgresql" and importlib.util.find_spec("psycopg") is not None:
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args = {"connect_timeout": connect_timeout}
    try:
        with _quiet_experimental():
            keyword, callback = _retry_callback(max_retry)
            return optuna.storages.RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs={"pool_pre_ping": True, "connect_args": connect_args},
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **{keyword: callback},
            )
    except ImportError:
        raise cannot(
            "no PostgreSQL driver; install psycopg with: pip install 'bergab[tune]'"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, OSError) as exc:
        reason = _one_line(exc)
        if password and len(password) >= 3:
            reason = reason.replace(password, "***")
        raise cannot(reason) from None


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close a database storage's connections (the journal file has none to close).

    A process that is done with a storage calls it, rather than leaving the open
    connections to the garbage collector (which warns about each).

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> close_storage(open_storage(f"sqlite:///{d}/study.db", d))
        >>> close_storage(open_storage(None, d))
    """
    backend = getattr(storage, "_backend", storage)  # an RDBStorage in Optuna's cache
    engine = getattr(backend, "engine", None)
    if engine is None:
        return
    backend.remove_session()
    engine.dispose()


def create_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    direction: str,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study ``name`` in ``storage``, or load it when it exists.

    Call it once in the parent process, before any worker starts (the workers then
    ``optuna.load_study`` it): Optuna creates a database's tables on first use, and workers
    doing that at the same moment can collide.

    Args:
        storage: from :func:`open_storage`.
        name: the study's name.
        direction: ``"minimize"`` or ``"maximize"``; an existing study must have the same.
        sampler: Optuna's sampler for this process (Optuna's default when ``None``).
        pruner: Optuna's pruner for this process (Optuna's default when ``None``).

    Raises:
        ValueError: the study exists with the other direction.

    Example:
        >>> import pathlib, tempfile
        >>> storage = open_storage(None, pathlib.Path(tempfile.mkdtemp()))
        >>> create_study(storage, "s", direction="maximize").direction.name
        'MAXIMIZE'
        >>> create_study(storage, "s", direction="minimize")
        Traceback (most recent call last):
        ...
        ValueError: storage: study 's' exists with direction 'maximize', not 'minimize'
    """
    require("optuna", "tune")
    import optuna

    if direction not in ("minimize", "maximize"):
        raise ValueError(f"storage: direction must be 'minimize' or 'maximize', not {direction!r}")
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=optuna.study.StudyDirection[direction.upper()],
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    have = study.direction.name.lower()
    if have != direction:
        raise ValueError(
            f"storage: study {name!r} exists with direction {have!r}, not {direction!r}"
        )
    return study


def fail_orphaned_trials(study: optuna.Study, *, max_retry: int | None = MAX_RETRY) -> list[int]:
    """Fail the trials a killed worker left running, and queue each again; return their numbers.

    With a database storage (heartbeats on) only trials whose heartbeat is older than the
    grace period are failed and queued again (by the storage's retry callback, which also
    does this by itself whenever a worker starts a trial); live trials of other workers are
    left alone, so this is safe at any time.

    The journal storage (any storage without heartbeats) cannot tell a running trial of a
    killed worker from a live one: *every* ``RUNNING`` trial is failed and queued again (at
    most ``max_retry`` times per original trial, with ``failed_trial`` and ``retry_history``
    in the copy's ``system_attrs``, as a database storage does). Call it only when no worker
    of this study runs, e.g. in the parent process before it starts its workers.

    Args:
        study: a study of a storage from :func:`open_storage`.
        max_retry: for storages without heartbeats; a database storage keeps the
            ``max_retry`` it was opened with.

    Returns:
        The numbers of the trials it failed, in order.

    Example:
        >>> import pathlib, tempfile
        >>> import optuna
        >>> study = create_study(open_storage(None, pathlib.Path(tempfile.mkdtemp())), "s",
        ...                      direction="minimize")
        >>> lost = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # then killed
        >>> fail_orphaned_trials(study)
        [0]
        >>> [(t.number, t.state.name, t.system_attrs.get("failed_trial")) for t in study.trials]
        [(0, 'FAIL', None), (1, 'WAITING', 0)]
    """
    require("optuna", "tune")
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    def running() -> dict[int, int]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return {t._trial_id: t.number for t in trials}

    storage = study._storage
    if is_heartbeat_enabled(storage):
        import optuna

        before = running()
        with _quiet_experimental():
            optuna.storages.fail_stale_trials(study)
        now = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
        return sorted(n for i, n in before.items() if now.get(i) == TrialState.FAIL)

    from optuna.exceptions import UpdateFinishedTrialError

    with _quiet_experimental():
        _, retry = _retry_callback(max_retry)
    failed = []
    for trial_id, number in sorted(running().items(), key=lambda kv: kv[1]):
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # it finished meanwhile
            continue
        retry(study, storage.get_trial(trial_id))
        failed.append(number)
    return failed
