"""The on-disk format of an erasure state: a folder written atomically and verified on load.

Files: ``inverse.safetensors`` (F⁻¹, :meth:`BlockDiagonalInverse.state_dict`),
``state.safetensors`` (ids, ledger mask, θ_F, row bookkeeping, exact-mode rows) and
``manifest.json`` (config, fingerprint, counts, ledger, SHA-256 of both tensor files,
versions). The folder is written to a temporary sibling and renamed into place, so a crash
leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unlearnkit._version import __version__
from unlearnkit.curvature.block_inverse import BlockDiagonalInverse
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import StateMismatchError
from unlearnkit.io import atomic_write_json, load_tensors, save_tensors

FORMAT = "unlearnkit.ssse-state"
FORMAT_VERSION = 1


def layout_dict(layout: ParamLayout) -> dict[str, Any]:
    """The layout as manifest JSON (names and shapes; offsets are derived)."""
    return {"names": list(layout.names), "shapes": [list(s) for s in layout.shapes]}


def layout_from_dict(data: dict[str, Any]) -> ParamLayout:
    """Inverse of :func:`layout_dict`."""
    return ParamLayout.from_names_shapes(data["names"], data["shapes"])


def write_state_folder(
    path: str | Path,
    inverse: BlockDiagonalInverse,
    tensors: dict[str, Tensor],
    manifest: dict[str, Any],
) -> Path:
    """Write the three files to ``path`` atomically; ``manifest`` gets the format, versions,
    checksums and time added."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        inv_sha = save_tensors(tmp / "inverse.safetensors", inverse.state_dict())
        st_sha = save_tensors(tmp / "state.safetensors", tensors)
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "unlearnkit_version": __version__,
            "torch_version": torch.__version__,
            **manifest,
            "checksums": {"inverse.safetensors": inv_sha, "state.safetensors": st_sha},
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }
        atomic_write_json(tmp / "manifest.json", full)
        old = path.with_name(f".{path.name}.old-{time.time_ns()}")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_state_folder(
    path: str | Path,
) -> tuple[dict[str, Any], BlockDiagonalInverse, dict[str, Tensor]]:
    """(manifest, inverse, state tensors) of a saved state; checksums and format verified
    (:class:`StateMismatchError` otherwise)."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.exists():
        raise StateMismatchError(f"{path} is not an erasure state (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise StateMismatchError(f"{mpath} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise StateMismatchError(f"{mpath} is not an unlearnkit SSSE state manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StateMismatchError(
            f"state format version {manifest.get('format_version')} is not supported "
            f"(this unlearnkit reads version {FORMAT_VERSION})"
        )
    sums = manifest["checksums"]
    inverse = BlockDiagonalInverse.from_state_dict(
        load_tensors(path / "inverse.safetensors", sums["inverse.safetensors"])
    )
    tensors = load_tensors(path / "state.safetensors", sums["state.safetensors"])
    return manifest, inverse, tensors
