"""Checkpoint files: atomic writes, the previous file kept, safe loads, every RNG's state.

A checkpoint is a plain nested dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled code is ever executed).
:func:`save_checkpoint` writes it atomically: to a temporary file in the same folder,
flushed and ``fsync``-ed, renamed over the target with ``os.replace`` and the folder
``fsync``-ed. A process killed at any moment (SIGKILL, power loss after the rename)
leaves either the previous complete file or the new complete file, never a torn one.

It also keeps the file it replaces (``keep_last=1``, the default: ``last.pt`` becomes
``last.prev.pt``), so a checkpoint damaged after it was written (a disk that filled up
during a copy, a truncated transfer) still leaves a complete one beside it.
``load_checkpoint(path, fallback=True)`` reads the newest file that loads and warns
when that is not ``path`` itself.

:func:`rng_state` / :func:`set_rng_state` capture and restore torch's CPU (and CUDA)
generators, numpy's global ``RandomState`` and Python's ``random`` as tensors and
plain lists, so they too load with ``weights_only=True``.

Example:
    >>> import tempfile, pathlib, random
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> state = rng_state()
    >>> save_checkpoint({"rng": state, "step": 3}, folder / "ckpt.pt")
    >>> a = random.random()
    >>> set_rng_state(load_checkpoint(folder / "ckpt.pt")["rng"])
    >>> random.random() == a
    True
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bergab._validate import check_int, check_path

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_checkpoints",
    "recover_checkpoint",
    "remove_stale_temporaries",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, damaged, not a checkpoint).

    The message is one line naming the file.
    """


class CheckpointWarning(UserWarning):
    """``load_checkpoint(..., fallback=True)`` read an older kept file instead of ``path``."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _previous(target: Path, i: int) -> Path:
    """The ``i``-th older kept file of ``target``: ``last.prev.pt``, ``last.prev2.pt``, ..."""
    return target.with_name(f"{target.stem}.prev{'' if i == 1 else i}{target.suffix}")


def previous_checkpoints(path: str | os.PathLike[str]) -> list[Path]:
    """The older files :func:`save_checkpoint` kept beside ``path``, newest first.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
        >>> for step in range(3):
        ...     save_checkpoint({"step": step}, p, keep_last=2)
        >>> [q.name for q in previous_checkpoints(p)]
        ['last.prev.pt', 'last.prev2.pt']
    """
    target = Path(path)
    pattern = re.compile(re.escape(target.stem) + r"\.prev(\d*)" + re.escape(target.suffix))
    found: list[tuple[int, Path]] = []
    if target.parent.is_dir():
        for p in target.parent.iterdir():
            match = pattern.fullmatch(p.name)
            if match and p.is_file():
                found.append((int(match.group(1) or 1), p))
    return [p for _, p in sorted(found)]


def _is_whole_zip(path: Path) -> bool:
    """Whether ``path`` is a zip file with its central directory (what ``torch.save``
    writes; a truncated file has lost the directory at its end). Reads only the end."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _link_or_copy(src: Path, dst: Path, *, link: bool = True) -> None:
    """Make ``dst`` hold ``src``'s bytes, atomically: a hard link (no copy) or, where the
    file system has none (or ``link=False``), a copy, made under a temporary name (one
    :func:`remove_stale_temporaries` knows) and then renamed."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _keep_previous(target: Path, keep_last: int) -> None:
    """Shift the kept files one older and keep ``target``'s current file as ``.prev``.

    ``target`` itself stays in place (the newest file is hard-linked, not moved), so at
    every moment ``target`` is a complete checkpoint. A ``target`` that is not a whole
    file (damaged after it was written) is not kept, so it never replaces a good one.
    """
    if keep_last < 1 or not target.is_file() or not _is_whole_zip(target):
        return
    for i in range(keep_last, 1, -1):
        older = _previous(target, i - 1)
        if older.is_file():
            os.replace(older, _previous(target, i))
    _link_or_copy(target, _previous(target, 1))


def save_checkpoint(
    state: Mapping[str, Any], path: str | os.PathLike[str], *, keep_last: int = 1
) -> None:
    """Write ``state`` to ``path`` atomically and durably, keeping the file it replaces.

    The file is written to a temporary name in the same folder, flushed, ``fsync``-ed and
    renamed over ``path`` (``os.replace``); then the folder is ``fsync``-ed. Readers see
    the old file or the new one, never a partial write. Parent folders are created.
    Before the rename, the current ``path`` is kept as ``<stem>.prev<suffix>`` (and older
    ones as ``.prev2``, ...): a process killed at any moment leaves ``path`` complete, and
    a ``path`` damaged later still has a complete predecessor beside it.

    Args:
        state: a dict of tensors, numbers, strings, ``None``, lists, tuples and dicts (what
            ``torch.load(weights_only=True)`` accepts back).
        path: the checkpoint file.
        keep_last: how many replaced files to keep, an int >= 0 (0: none).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.pt"
        >>> save_checkpoint({"w": torch.ones(2)}, p)
        >>> load_checkpoint(p)["w"].tolist(), [f.name for f in p.parent.iterdir()]
        ([1.0, 1.0], ['a.pt'])
        >>> save_checkpoint({"w": torch.zeros(2)}, p)
        >>> sorted(f.name for f in p.parent.iterdir())
        ['a.prev.pt', 'a.pt']
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"state must be a dict (a Mapping of names to tensors and plain values), "
            f"got {type(state).__name__}"
        )
    keep = check_int("keep_last", keep_last, low=0)
    target = check_path("path", path)
    if target.is_dir():
        raise IsADirectoryError(
            f"path: {str(target)!r} is a directory, not a checkpoint file; pass a file path"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise NotADirectoryError(
            f"path: cannot write the checkpoint {str(target)!r}: a part of its folder "
            f"{str(target.parent)!r} is a regular file, not a directory"
        ) from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        # only once the new file is complete: a failed write leaves everything as it was
        _keep_previous(target, keep)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Delete temporary files a killed :func:`save_checkpoint` left beside ``path``.

    Returns:
        The number of files removed.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / ".last.pt.x1.tmp").write_bytes(b"")
        0
        >>> remove_stale_temporaries(d / "last.pt")
        1
    """
    target = Path(path)
    removed = 0
    if target.parent.is_dir():
        names = (target.name, _previous(target, 1).name)
        for tmp in target.parent.iterdir():
            if tmp.name.endswith(".tmp") and tmp.name.startswith(tuple(f".{n}." for n in names)):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed += 1
    return removed


def _why(exc: BaseException) -> str:
    """The first sentence of a loader's error, for a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= 120 else first[:117] + "..."


def _read(target: Path, map_location: Any, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of one file, every failure a one-line error."""
    if target.is_dir():
        raise IsADirectoryError(
            f"checkpoint {str(target)!r} is a directory, not a checkpoint file; pass the "
            "file (e.g. its last.pt)"
        )
    if not target.is_file():
        raise FileNotFoundError(f"checkpoint {str(target)!r} does not exist")
    try:
        out = torch.load(target, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(
            f"checkpoint {str(target)!r} cannot be read ({_why(exc)}): the file is "
            "truncated or damaged, or was not written by torch.save"
        ) from exc
    if not isinstance(out, dict):
        raise CheckpointError(f"checkpoint {str(target)!r} does not hold a dict")
    return out


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    *,
    fallback: bool = False,
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)``.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (default the CPU; ``load_state_dict``
            moves them to the model's device).
        fallback: when ``path`` is missing or unreadable, load the newest readable file
            :func:`save_checkpoint` kept beside it (``last.prev.pt``, ...) and say so with
            a :class:`CheckpointWarning`.
        mmap: map the file's tensors into memory instead of reading them (cheap for a
            large file whose weights are not all needed, e.g. to read its step).

    Returns:
        The dict that was saved.

    Raises:
        FileNotFoundError: ``path`` does not exist (nor, with ``fallback``, a kept file).
        CheckpointError: the file (with ``fallback``: every kept file) cannot be read;
            one line naming it.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.pt"
        >>> save_checkpoint({"step": 7}, p); load_checkpoint(p)
        {'step': 7}
        >>> _ = p.write_bytes(b"PK")  # truncated
        >>> load_checkpoint(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bergab.training.checkpoint.CheckpointError: checkpoint '.../a.pt' cannot be read (...
    """
    target = check_path("path", path)
    if not fallback:
        return _read(target, map_location, mmap)
    used, out, problem = _first_readable(target, map_location, mmap)
    if problem is not None:
        warnings.warn(
            f"{problem}; loaded the previous checkpoint {str(used)!r} instead",
            CheckpointWarning,
            stacklevel=2,
        )
    return out


def load_latest_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """``load_checkpoint(path, map_location, fallback=True)``: the newest readable file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
        >>> save_checkpoint({"step": 1}, p); save_checkpoint({"step": 2}, p)
        >>> _ = p.write_bytes(b"")  # damaged after it was written
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     load_latest_checkpoint(p)
        {'step': 1}
        >>> "loaded the previous checkpoint" in str(caught[0].message)
        True
    """
    return load_checkpoint(path, map_location, fallback=True)


def _first_readable(
    target: Path, map_location: Any, mmap: bool = False
) -> tuple[Path, dict[str, Any], str | None]:
    """``(file, its dict, why target itself was not used or None)``: the newest readable
    one of ``target`` and the files kept beside it."""
    candidates = [target, *previous_checkpoints(target)]
    problems: list[str] = []
    for candidate in candidates:
        try:
            return candidate, _read(candidate, map_location, mmap), next(iter(problems), None)
        except (FileNotFoundError, CheckpointError) as exc:
            problems.append(str(exc))
    if len(candidates) == 1 and not target.exists():
        raise FileNotFoundError(f"checkpoint {str(target)!r} does not exist")
    n = len(candidates) - 1
    also = f" (nor the {n} older one{'s' if n > 1 else ''} kept beside it)" if n else ""
    raise CheckpointError(problems[0] + also)


def recover_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """Put the newest readable kept file in place of an unreadable ``path``.

    For a resume: fit reads ``last.pt``, and a NaN rollback reads it again. When ``path``
    cannot be read (or is missing) and a file kept by :func:`save_checkpoint` can, the
    damaged file is moved aside to ``<name>.damaged`` (not deleted: nothing is lost)
    and the readable one is put at ``path``, atomically.

    Returns:
        A one-line note saying what was done, or ``None`` when ``path`` reads (or neither
        it nor a kept file exists).

    Raises:
        CheckpointError: neither ``path`` nor any kept file can be read.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
        >>> save_checkpoint({"step": 1}, p); save_checkpoint({"step": 2}, p)
        >>> recover_checkpoint(p) is None
        True
        >>> _ = p.write_bytes(p.read_bytes()[:100])  # truncated
        >>> print(recover_checkpoint(p))  # doctest: +ELLIPSIS
        checkpoint '.../last.pt' cannot be read (...; using the previous checkpoint \
'.../last.prev.pt' (the damaged file is kept as last.pt.damaged)
        >>> load_checkpoint(p)
        {'step': 1}
    """
    target = Path(path)
    try:
        used, _, problem = _first_readable(target, "cpu", mmap=True)
    except FileNotFoundError:
        return None
    if problem is None:
        return None
    note = f"{problem}; using the previous checkpoint {str(used)!r}"
    if target.exists():
        damaged = target.with_name(target.name + ".damaged")
        os.replace(target, damaged)
        note += f" (the damaged file is kept as {damaged.name})"
    # a copy, not a link: the two names must not share one file that a later write to
    # either (in place, by another tool) would damage both of
    _link_or_copy(used, target, link=False)
    _fsync_dir(target.parent)
    return note


# ----------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """The state of every global random number generator, as tensors and plain values.

    Covers torch's CPU generator, every CUDA device's generator (when CUDA is
    available), numpy's global ``RandomState`` and Python's ``random`` module.

    Returns:
        A dict that :func:`set_rng_state` restores and ``weights_only`` loading accepts.

    Example:
        >>> s = rng_state(); x = torch.rand(1)
        >>> set_rng_state(s); bool(torch.rand(1) == x)
        True
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, mt, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(mt, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "cuda": [],
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`rng_state`.

    CUDA states are restored only when CUDA is available and the device count matches
    (a checkpoint from a GPU machine still resumes on the CPU).

    Args:
        state: what :func:`rng_state` returned (possibly through a checkpoint).

    Example:
        >>> import random
        >>> s = rng_state(); a = random.random(); set_rng_state(s); random.random() == a
        True
    """
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    py = state["python"]
    random.setstate(
        (int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"])
    )
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([t.to("cpu", torch.uint8) for t in cuda])
