"""The on-disk format of an erasure state: a folder switched atomically and verified on load.

A state folder holds ``manifest.json`` (config, layout, fingerprint, counts, ledger, the names
and SHA-256 of the two tensor files, its own SHA-256, versions) and the tensor files it names,
``inverse.<rev>.safetensors`` (F⁻¹, :meth:`BlockDiagonalInverse.state_dict`; for a Kronecker
state — ``config.structure`` kfac / ekfac — the factor sums, :mod:`unlearnkit.ssse.kronecker`)
and ``state.<rev>.safetensors`` (ids, ledger mask, θ_F, row bookkeeping, exact-mode rows);
``inverse.safetensors`` and ``state.safetensors`` are symbolic links to the current ones.

Saving (under the folder's lock, :mod:`unlearnkit.ssse.lock`): the new tensor files are written
beside the old ones under new names, then ``manifest.json`` — the pointer — is replaced with
one ``os.replace``: that is the switch. A crash before it leaves the old state, after it the
new one; never neither. Files of older revisions and temporaries of crashed runs are removed
by the next save or load (:func:`recover`). ``manifest_sha256`` covers every other manifest key, so an edited ledger,
config, layout or fingerprint is refused on load (integrity against corruption and careless
edits; anyone can recompute a SHA-256, so it is not a signature). Version 1 folders (fixed
file names, no manifest digest) are read and upgraded by the next save.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from unlearnkit._version import __version__
from unlearnkit.curvature.block_inverse import BlockDiagonalInverse
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import StateBusyError, StateMismatchError
from unlearnkit.io import atomic_write_json, load_tensors, save_tensors, sha256_bytes
from unlearnkit.ssse.lock import LOCK_NAME, state_lock

FORMAT = "unlearnkit.ssse-state"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
TENSOR_FILES = ("inverse.safetensors", "state.safetensors")
DIGEST_KEY = "manifest_sha256"


def layout_dict(layout: ParamLayout) -> dict[str, Any]:
    """The layout as manifest JSON (names and shapes; offsets are derived)."""
    return {"names": list(layout.names), "shapes": [list(s) for s in layout.shapes]}


def layout_from_dict(data: dict[str, Any]) -> ParamLayout:
    """Inverse of :func:`layout_dict`."""
    return ParamLayout.from_names_shapes(data["names"], data["shapes"])


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of every key but the digest."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def tensor_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Logical tensor file name -> the file that holds it (version 1: the same name)."""
    return dict(manifest.get("files") or {f: f for f in TENSOR_FILES})


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of the folder ``path``, or None when there is none."""
    mpath = Path(path) / MANIFEST
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StateMismatchError(f"{mpath} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateMismatchError(f"{mpath} is not an unlearnkit SSSE state manifest")
    return manifest


class HasStateDict(Protocol):
    """What goes into ``inverse.safetensors``: a :class:`BlockDiagonalInverse` (exact rows) or
    the Kronecker sums (:class:`~unlearnkit.ssse.kronecker.KroneckerTensors`)."""

    def state_dict(self) -> dict[str, Tensor]: ...


def state_structure(manifest: dict[str, Any]) -> str:
    """The curvature structure a manifest's config states (``rows`` for folders written before
    structures existed)."""
    config = manifest.get("config")
    structure = config.get("structure", "rows") if isinstance(config, dict) else "rows"
    return str(structure)


def write_state_folder(
    path: str | Path,
    inverse: HasStateDict,
    tensors: dict[str, Tensor],
    manifest: dict[str, Any],
    check: Callable[[dict[str, Any] | None], None] | None = None,
) -> Path:
    """Write a new revision of the state folder ``path`` and switch to it atomically.

    ``manifest`` gets the format, versions, file names, checksums, revision, time and its own
    digest added. ``check(on_disk)`` is called under the lock with the manifest on disk (None
    when there is no readable one) and may refuse the save by raising (compare-and-swap).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        path.unlink()  # the caller decided to replace it (see api.check_state_output)
    path.mkdir(parents=True, exist_ok=True)
    with state_lock(path):
        try:
            old = read_manifest(path)
        except StateMismatchError:
            old = None  # a corrupt state is replaced only when ``check`` allows it
        if check is not None:
            check(old)
        clean_stale(path, old)
        revision = int(old.get("revision", 0)) + 1 if old else 1
        tag = f"{revision}.{secrets.token_hex(4)}"
        names = {f: f"{f.removesuffix('.safetensors')}.{tag}.safetensors" for f in TENSOR_FILES}
        parts = {"inverse.safetensors": inverse.state_dict(), "state.safetensors": tensors}
        sums = {f: save_tensors(path / names[f], parts[f]) for f in TENSOR_FILES}
        for f in TENSOR_FILES:  # on disk before the manifest names them
            _fsync(path / names[f])
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "unlearnkit_version": __version__,
            "torch_version": torch.__version__,
            **manifest,
            "revision": revision,
            "files": names,
            "checksums": sums,
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }
        full = json.loads(json.dumps(full, default=str))  # the digest covers what is read back
        full[DIGEST_KEY] = manifest_digest(full)
        atomic_write_json(path / MANIFEST, full)  # the switch
        _fsync(path, directory=True)
        _link_current(path, names)
        clean_stale(path, full)
    _remove_old_format_siblings(path)
    return path


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file's data (or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_current(path: Path, names: dict[str, str]) -> None:
    """Point ``inverse.safetensors`` / ``state.safetensors`` at the current files (each with
    one ``os.replace``; loading never goes through these links)."""
    for f, target in names.items():
        tmp = path / f".{f}.link-{secrets.token_hex(4)}.tmp"
        try:
            os.symlink(target, tmp)
            os.replace(tmp, path / f)
        except OSError:  # no symbolic links here: the manifest still names the files
            tmp.unlink(missing_ok=True)


def clean_stale(path: str | Path, manifest: dict[str, Any] | None) -> list[Path]:
    """Remove what crashed or earlier saves left in the state folder: temporaries and tensor
    files that ``manifest`` (the current one) does not name. Call under the folder's lock."""
    path = Path(path)
    keep = set(tensor_files(manifest).values()) if manifest else set()
    removed = []
    for p in path.iterdir():
        name = p.name
        if name in (MANIFEST, LOCK_NAME) or name in keep:
            continue
        ours = name.endswith(".tmp") or (
            name.endswith(".safetensors") and name.split(".", 1)[0] in ("inverse", "state")
        )
        if not ours or (p.is_symlink() and name in TENSOR_FILES and manifest is not None):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def interrupted_first_save(path: str | Path) -> bool:
    """Whether the folder ``path`` is what a first save killed before its switch left: the
    writer's lock, no ``manifest.json``, nothing but tensor files and temporaries, and no
    process holding the lock (a save still running is not interrupted). It holds no state
    (no ledger to lose), so a new save may take it without ``--overwrite``; the save removes
    the leftovers (:func:`clean_stale`)."""
    path = Path(path)
    if path.is_symlink() or not (path / LOCK_NAME).is_file() or (path / MANIFEST).exists():
        return False
    for p in path.iterdir():
        name = p.name
        ours = (
            name in (LOCK_NAME, *TENSOR_FILES)
            or name.endswith(".tmp")
            or (name.endswith(".safetensors") and name.split(".", 1)[0] in ("inverse", "state"))
        )
        if not ours:
            return False
    try:
        with state_lock(path, timeout=0):
            return not (path / MANIFEST).exists()
    except (StateBusyError, StateMismatchError):
        return False


def recover(path: str | Path) -> None:
    """Finish or undo an interrupted save when no other process holds the folder's lock:
    the manifest on disk wins (it names complete files only); temporaries and unnamed files
    are removed and the links repointed. Does nothing when the folder is busy or read-only."""
    path = Path(path)
    try:
        with state_lock(path, timeout=0):
            manifest = read_manifest(path)  # read again under the lock: a save may have run
            if manifest is None:
                return
            clean_stale(path, manifest)
            if manifest.get("files"):
                _link_current(path, tensor_files(manifest))
    except (StateBusyError, StateMismatchError, OSError):
        return


def _remove_old_format_siblings(path: Path) -> None:
    """Temporary folders the version-1 writer left beside ``path`` when it crashed."""
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*"):
        for p in path.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def read_state_folder(
    path: str | Path,
) -> tuple[dict[str, Any], BlockDiagonalInverse, dict[str, Tensor]]:
    """(manifest, inverse, state tensors) of a saved exact-rows state; format, manifest digest
    and tensor checksums verified (:class:`StateMismatchError` naming what failed otherwise;
    also for a Kronecker state, which :func:`unlearnkit.ssse.structure.load_state` reads)."""
    manifest, inv_t, tensors = read_state_tensors(path)
    structure = state_structure(manifest)
    if structure != "rows":
        raise StateMismatchError(
            f"{Path(path)} holds a {structure!r} (Kronecker) erasure state, not exact rows; "
            "load it with unlearnkit.ssse.load_state (the API and CLI do)"
        )
    return manifest, BlockDiagonalInverse.from_state_dict(inv_t), tensors


def read_state_tensors(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Tensor]]:
    """(manifest, tensors of ``inverse.safetensors``, tensors of ``state.safetensors``) of any
    saved state, verified as :func:`read_state_folder` says."""
    path = Path(path)
    _recover_old_format(path)
    mpath = path / MANIFEST
    manifest = read_manifest(path)
    if manifest is None:
        raise StateMismatchError(f"{path} is not an erasure state (no manifest.json)")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise StateMismatchError(
            f"state format version {version} is not supported "
            f"(this unlearnkit reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    if version >= 2 and manifest.get(DIGEST_KEY) != manifest_digest(manifest):
        raise StateMismatchError(
            f"{mpath} was modified or corrupted: its SHA-256 does not match {DIGEST_KEY} "
            "(the ledger, config, layout and fingerprint it states cannot be trusted)"
        )
    if version >= 2:
        recover(path)
    try:
        files, sums = tensor_files(manifest), manifest["checksums"]
        inv_t = load_tensors(path / files["inverse.safetensors"], sums["inverse.safetensors"])
        tensors = load_tensors(path / files["state.safetensors"], sums["state.safetensors"])
    except (KeyError, TypeError, AttributeError) as e:
        raise StateMismatchError(
            f"{mpath} lacks the tensor files' names or checksums: {e}"
        ) from None
    return manifest, inv_t, tensors


def check_stated_facts(manifest: dict[str, Any], sample_ids: Tensor, erased: Tensor) -> None:
    """The facts a manifest states agree with the state's tensors: the counts, the ledger's
    ids (their union is exactly the erased mask, none twice), its request numbers 1, 2, …
    and its chain of model fingerprints (each request starts from the model the previous one
    made; the last made ``model_fingerprint``). :class:`StateMismatchError` otherwise."""

    def refuse(what: str) -> None:
        raise StateMismatchError(f"the erasure state is inconsistent: {what}")

    n = int(sample_ids.numel())
    if erased.shape != (n,):
        refuse(f"erased mask has shape {tuple(erased.shape)}, not ({n},)")
    remaining = n - int(erased.sum())
    if manifest.get("n") != n or manifest.get("n_remaining") != remaining:
        refuse(
            f"manifest states n={manifest.get('n')}, {manifest.get('n_remaining')} remaining; "
            f"the tensors hold n={n}, {remaining} remaining"
        )
    ids: list[int] = []
    made = None
    for i, entry in enumerate(manifest.get("ledger") or [], 1):
        if not isinstance(entry, dict) or entry.get("request") != i:
            refuse(f"ledger entry {i} is not request {i}")
        ids += [int(x) for x in entry.get("ids") or []]
        if made is not None and entry.get("model_before") != made:
            refuse(f"ledger entry {i} does not start from the model entry {i - 1} made")
        made = entry.get("model_after")
    if made is not None and made != manifest.get("model_fingerprint"):
        refuse("the model fingerprint is not the one the last ledger entry made")
    gone = sorted(sample_ids[erased].tolist())
    if len(set(ids)) != len(ids) or sorted(ids) != gone:
        refuse(
            f"the ledger's {len(ids)} id(s) are not the {len(gone)} erased sample(s) of the "
            "state's mask"
        )


def _recover_old_format(path: Path) -> None:
    """A version-1 save that crashed between its two renames left the old state in
    ``.<name>.old-*`` and no ``path``: put the newest complete one back."""
    if path.exists():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*"))
    for old in reversed(olds):
        if (old / MANIFEST).is_file():
            old.rename(path)
            return
