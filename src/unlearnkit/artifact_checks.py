"""Checks a saved model passes before anything is written or allocated (:mod:`unlearnkit.artifacts`).

- :func:`check_finite`: :func:`~unlearnkit.artifacts.save_model` refuses NaN/Inf weights;
- :func:`manifest_entries`: the manifest's ``model`` and ``weights`` keys, each type checked and
  named when missing or malformed;
- :func:`weights_header` and :func:`check_fits`: the safetensors header (names, shapes, dtypes;
  no tensor read) against the architecture, so that
  :func:`~unlearnkit.artifacts.load_model` allocates nothing the weights file does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from pydantic import ValidationError

from unlearnkit.errors import NumericalError, StateMismatchError
from unlearnkit.models.registry import ModelSpec

__all__ = ["FLOAT_DTYPES", "check_finite", "check_fits", "manifest_entries", "weights_header"]


def check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`NumericalError` naming the first parameter or buffer holding NaN or Inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise NumericalError(
                    f"model tensor {name} has {bad} non-finite value(s) (NaN or Inf) out of "
                    f"{tensor.numel()}; the model was not saved and nothing was written. The "
                    "step that produced it diverged: use a smaller learning rate, epsilon or "
                    "noise, or check the inputs"
                )


FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
_HEX = frozenset("0123456789abcdef")


def _hex_digest(weights: Mapping[str, Any], key: str, manifest_path: Path) -> str:
    value = weights.get(key)
    if value is None:
        raise StateMismatchError(f"{manifest_path}: key 'weights.{key}' is missing")
    if not (isinstance(value, str) and len(value) == 64 and set(value) <= _HEX):
        raise StateMismatchError(
            f"{manifest_path}: key 'weights.{key}' must be a 64-digit hex SHA-256, got "
            f"{type(value).__name__} {str(value)[:20]!r}"
        )
    return value


def manifest_entries(
    manifest: Mapping[str, Any], manifest_path: Path
) -> tuple[ModelSpec | None, str, str, str | None]:
    """``(spec, sha256, fingerprint, dtype)`` of a read manifest, each key's type checked."""
    weights = manifest.get("weights")
    if weights is None:
        raise StateMismatchError(f"{manifest_path}: key 'weights' is missing")
    if not isinstance(weights, Mapping):
        raise StateMismatchError(
            f"{manifest_path}: key 'weights' must be a mapping, got {type(weights).__name__}"
        )
    sha = _hex_digest(weights, "sha256", manifest_path)
    fingerprint = _hex_digest(weights, "fingerprint", manifest_path)
    dtype = weights.get("dtype")
    if dtype is not None and dtype not in (*FLOAT_DTYPES.values(), "mixed"):
        raise StateMismatchError(
            f"{manifest_path}: key 'weights.dtype' must be one of "
            f"{sorted(FLOAT_DTYPES.values())} or 'mixed', got {str(dtype)[:40]!r}"
        )
    entry = manifest.get("model")
    if entry is None:
        return None, sha, fingerprint, dtype
    if not isinstance(entry, Mapping):
        raise StateMismatchError(
            f"{manifest_path}: key 'model' must be a mapping or null, got {type(entry).__name__}"
        )
    try:
        return ModelSpec.model_validate(dict(entry)), sha, fingerprint, dtype
    except ValidationError as e:
        errors = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise StateMismatchError(f"{manifest_path}: key 'model' is malformed ({errors})") from None


def weights_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` from a safetensors file's header; no tensor is read.

    safetensors checks that the header's offsets lie within the file, so the shapes are backed
    by bytes on disk.
    """
    if not path.is_file():
        raise StateMismatchError(f"missing tensor file {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return {
                k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype()))
                for k in f.keys()  # noqa: SIM118 - safe_open is not a mapping
            }
    except Exception as err:  # noqa: BLE001 - SafetensorError and OSError
        raise StateMismatchError(f"{path} is not a readable safetensors file ({err})") from None


def check_fits(
    own: Mapping[str, tuple[int, ...]],
    header: Mapping[str, tuple[tuple[int, ...], str]],
    weights_path: Path,
    what: str,
) -> None:
    missing, extra = sorted(set(own) - set(header)), sorted(set(header) - set(own))
    differ = [k for k in sorted(own) if k in header and tuple(own[k]) != header[k][0]]
    parts = [f"missing from the file {missing[:5]}"] if missing else []
    parts += [f"unexpected in the file {extra[:5]}"] if extra else []
    if differ:
        k = differ[0]
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        parts.append(f"{k}: shape {tuple(own[k])} for the model, {header[k][0]} in the file{more}")
    if parts:
        raise StateMismatchError(f"{weights_path} does not fit {what}: " + "; ".join(parts))
