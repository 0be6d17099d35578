"""One module per ``bergab`` command; each exposes ``register(subparsers)``.

This package module holds what several commands share: :func:`check_writable_file`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["check_writable_file"]


def check_writable_file(path: Path, key: str) -> None:
    """Make ``path``'s folder and check a file can be written there, so that a bad
    ``--plot``/``output.dir`` is reported (naming ``key``) before the work, not after it.

    Example:
        >>> import tempfile
        >>> blocker = Path(tempfile.mkdtemp()) / "file"; _ = blocker.write_text("")
        >>> check_writable_file(blocker / "lr.png", "--plot")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --plot: cannot write .../file/lr.png: .../file is a file, not a folder
    """
    folder = path.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{key}: cannot write {path}: {blocker} is a file, not a folder")
    if path.is_dir():
        raise ValueError(f"{key}: {path} is a folder; name a file such as plot.png")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{key}: cannot write in {folder}: {exc.strerror or exc}") from None
