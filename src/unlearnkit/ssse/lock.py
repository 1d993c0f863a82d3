"""An exclusive lock on an erasure state folder, held from load to save.

``with state_lock(path): load → erase → save`` makes concurrent requests on one state
serialise: a second process waits (up to ``timeout`` seconds, then
:class:`~unlearnkit.errors.StateBusyError`, nothing read or written) and then loads the state
the first one saved. The lock is ``flock`` on ``<state>/.lock`` (released by the kernel when
the process dies, so a crashed run never leaves the state locked); it is re-entrant within a
process, so :func:`~unlearnkit.ssse.persistence.write_state_folder` takes it too and a plain
``state.save(path)`` is serialised with a running ``erase``. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unlearnkit.errors import StateBusyError, StateMismatchError

LOCK_NAME = ".lock"
#: seconds a request waits for another one on the same state before giving up
DEFAULT_TIMEOUT_S = 300.0
_POLL_S = 0.05

_held: dict[Path, int] = {}  # resolved state folder -> depth held by this process


@contextmanager
def state_lock(path: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive lock of the state folder ``path``; a folder that does not exist
    (yet) is not locked: there is nothing to protect and nothing is created."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        yield
        return
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StateMismatchError(
            f"cannot lock the erasure state {path} ({e.strerror}); its folder must be writable"
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateBusyError(
                        f"the erasure state {path} is in use by another process (waited "
                        f"{timeout:g} s); run the command again when it has finished"
                    ) from None
                time.sleep(_POLL_S)
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds_lock(path: str | Path) -> bool:
    """Whether this process holds the lock of ``path``."""
    return Path(path).resolve() in _held
