"""One writer per folder: an exclusive, non-blocking ``flock`` on ``<folder>/.lock``.

The lock belongs to the open file, so it ends with the process that holds it, however it ends
(``kill -9`` included): there is no stale lock to clean. The file itself stays (removing it
would let two processes lock two different files of the same name); it holds the pid of the
last holder, for people. Spawned workers do not inherit the descriptor (Python opens it
non-inheritable). On systems without :mod:`fcntl` the lock is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unlearnkit.errors import OverwriteError

try:
    import fcntl
except ImportError:  # pragma: no cover  (not POSIX)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


@contextmanager
def folder_lock(folder: str | Path, what: str = "benchmark") -> Iterator[Path]:
    """Hold ``folder``'s lock (the folder is created) for the ``with`` block.

    Raises :class:`~unlearnkit.errors.OverwriteError` at once, without waiting, if another
    process holds it: "another <what> is running in <folder>".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OverwriteError(
                    f"another {what} is running in {folder}; wait for it to finish (or stop "
                    "it), then run the same command to resume"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock
