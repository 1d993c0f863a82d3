"""Safe I/O: atomic writes, SHA-256 checksums, safetensors weights with a JSON manifest.

Never unpickles anything: weights are safetensors, metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unlearnkit.errors import ConfigError, StateMismatchError


def _temp_prefix(path: Path, pid: int | str) -> str:
    return f".{path.name}.{pid}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries that a killed writer of ``path`` left beside it.

    Temporaries are named ``.<name>.<pid>.<random>.tmp`` by the writer with that pid; a file
    whose writer no longer runs (on this host) is stale. A live writer's file is never touched,
    so two writers never race on each other's temporaries. Returns the files removed.
    """
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _mkstemp_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    return tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path, os.getpid()), suffix=".tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename.

    Temporaries left by a killed earlier writer of the same path are removed first
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    fd, tmp = _mkstemp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: the largest user text file read whole (ids files, manifests): a bigger file, a device
#: (``/dev/zero``) or a pipe is refused rather than read into memory without end
MAX_TEXT_FILE_BYTES = 256 * 2**20


def read_text_file(
    path: str | Path,
    what: str = "file",
    limit: int = MAX_TEXT_FILE_BYTES,
    error: type[Exception] = ConfigError,
) -> str:
    """The UTF-8 text of a user's file: a regular file of at most ``limit`` bytes. Anything
    else (missing, a folder, a device, too big, binary) raises ``error`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {path} does not exist")
    if not path.is_file():
        raise error(f"{what} {path} is not a regular file (a folder, device or pipe)")
    data = b""
    try:
        too_big = path.stat().st_size > limit
        if not too_big:
            with path.open("rb") as f:  # at most the cap, also if the file grows meanwhile
                data = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if too_big or len(data) > limit:
        raise error(f"{what} {path} is larger than {limit / 2**20:g} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ids_hash(ids: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of the sorted int64 ids: names a set of samples independently of order."""
    arr = np.sort(np.asarray(ids, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, shapes, dtypes and bytes of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Fingerprint of a model's parameters and buffers (see :func:`tensors_fingerprint`)."""
    return tensors_fingerprint(dict(model.state_dict()))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically save tensors as safetensors; return the file's SHA-256 (stale temporaries
    of ``path`` are removed first, as in :func:`atomic_write_bytes`)."""
    path = Path(path)
    fd, tmp = _mkstemp_beside(path)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        with open(tmp, "rb") as f:  # on disk before the rename names it (power loss)
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def load_tensors(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load safetensors, verifying the checksum when one is given."""
    path = Path(path)
    if not path.exists():
        raise StateMismatchError(f"missing tensor file {path}")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise StateMismatchError(
            f"checksum mismatch for {path}: the file was modified or corrupted"
        )
    return load_file(str(path))
