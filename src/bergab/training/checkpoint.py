"""Checkpoint files: atomic writes, safe loads, and every random number generator's state.

A checkpoint is a plain nested dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled code is ever executed).
:func:`save_checkpoint` writes it atomically: to a temporary file in the same folder,
flushed and ``fsync``-ed, renamed over the target with ``os.replace`` and the folder
``fsync``-ed. A process killed at any moment (SIGKILL, power loss after the rename)
leaves either the previous complete file or the new complete file, never a torn one.

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
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "load_checkpoint",
    "remove_stale_temporaries",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


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


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` to ``path`` atomically and durably.

    The file is written to a temporary name in the same folder, flushed, ``fsync``-ed and
    renamed over ``path`` (``os.replace``); then the folder is ``fsync``-ed. Readers see
    the old file or the new one, never a partial write. Parent folders are created.

    Args:
        state: a dict of tensors, numbers, strings, ``None``, lists, tuples and dicts (what
            ``torch.load(weights_only=True)`` accepts back).
        path: the checkpoint file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.pt"
        >>> save_checkpoint({"w": torch.ones(2)}, p)
        >>> load_checkpoint(p)["w"].tolist(), [f.name for f in p.parent.iterdir()]
        ([1.0, 1.0], ['a.pt'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
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
        for tmp in target.parent.glob(f".{target.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    return removed


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)``.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (default the CPU; ``load_state_dict``
            moves them to the model's device).

    Returns:
        The dict that was saved.

    Raises:
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.pt"
        >>> save_checkpoint({"step": 7}, p); load_checkpoint(p)
        {'step': 7}
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"checkpoint {str(target)!r} does not exist")
    out = torch.load(target, map_location=map_location, weights_only=True)
    if not isinstance(out, dict):
        raise ValueError(f"checkpoint {str(target)!r} does not hold a dict")
    return out


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
