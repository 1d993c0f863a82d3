"""Saved models: ``<name>.safetensors`` (weights) + ``<name>.json`` (manifest).

The manifest holds what the caller passes (dataset, split, ids hash, recipe, seed, metrics, ...)
plus what this module records itself:

- ``model``: the :class:`~unlearnkit.models.registry.ModelSpec` (name, input shape, outputs,
  init seed, options), so :func:`load_model` rebuilds the architecture through the registry;
- ``weights``: file name, SHA-256 of the file, :func:`~unlearnkit.io.model_fingerprint` of the
  state dict, dtype;
- ``versions``: python, torch, numpy, safetensors, unlearnkit; ``format`` and ``created``.

Both files are written atomically (temporary file, then rename), weights first. Nothing is ever
unpickled. :func:`load_model` verifies the checksum and the fingerprint and raises
:class:`~unlearnkit.errors.StateMismatchError` on any disagreement.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from pydantic import ValidationError
from torch import nn

import unlearnkit
from unlearnkit.errors import ConfigError, StateMismatchError
from unlearnkit.io import atomic_write_json, load_tensors, model_fingerprint, save_tensors
from unlearnkit.models.registry import ModelSpec, build_from_spec, spec_of

FORMAT = "unlearnkit.model/1"
DEFAULT_NAME = "model"
_RESERVED = ("format", "model", "weights", "versions", "created")


def artifact_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, manifest)`` paths for a directory, a prefix, or either file's path.

    A directory ``d`` (existing, or written with a trailing slash) gives ``d/model.*``;
    ``runs/orig`` or ``runs/orig.json`` or ``runs/orig.safetensors`` give ``runs/orig.*``.
    """
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", "\\")):
        p = p / DEFAULT_NAME
    elif p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def versions() -> dict[str, str]:
    """Versions of the software that produced an artifact."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "unlearnkit": unlearnkit.__version__,
    }


def save_model(
    path: str | Path,
    model: nn.Module,
    manifest: dict[str, Any] | None = None,
    spec: ModelSpec | None = None,
) -> Path:
    """Write ``model``'s weights and manifest; return the manifest path.

    ``spec`` defaults to ``model.build_spec`` (set by ``build_model``). ``manifest`` keys must
    not collide with the recorded ones (``format``, ``model``, ``weights``, ``versions``,
    ``created``). The model is not modified.
    """
    manifest = dict(manifest or {})
    clash = sorted(set(manifest) & set(_RESERVED))
    if clash:
        raise ConfigError(f"manifest keys {clash} are reserved (recorded by save_model)")
    spec = spec or spec_of(model)
    try:
        json.dumps(manifest, default=str)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"manifest is not JSON-serialisable: {e}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    dtypes = {str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()}
    weights_path, manifest_path = artifact_paths(path)
    digest = save_tensors(weights_path, state)
    manifest.update(
        {
            "format": FORMAT,
            "model": spec.model_dump(mode="json"),
            "weights": {
                "file": weights_path.name,
                "sha256": digest,
                "fingerprint": model_fingerprint(model),
                "dtype": dtypes.pop() if len(dtypes) == 1 else "mixed",
            },
            "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    atomic_write_json(manifest_path, manifest)
    return manifest_path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact at ``path`` (see :func:`artifact_paths`)."""
    _, manifest_path = artifact_paths(path)
    if not manifest_path.exists():
        raise StateMismatchError(f"no model manifest at {manifest_path}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise StateMismatchError(f"{manifest_path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateMismatchError(f"{manifest_path} is not an unlearnkit model manifest ({FORMAT})")
    return manifest


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model through the registry, load and verify its weights; eval mode.

    Raises :class:`StateMismatchError` if the manifest is missing or malformed, the weights'
    SHA-256 differs from the manifest's, the tensors do not fit the architecture, or the loaded
    state's fingerprint differs from the recorded one.
    """
    manifest = read_manifest(path)
    weights_path, manifest_path = artifact_paths(path)
    try:
        spec = ModelSpec(**manifest["model"])
        expected = manifest["weights"]["sha256"]
        fingerprint = manifest["weights"]["fingerprint"]
    except (KeyError, TypeError, ValidationError) as e:
        raise StateMismatchError(f"{manifest_path}: malformed model/weights entry ({e})") from None
    state = load_tensors(weights_path, expected)
    model = build_from_spec(spec)
    dtype = getattr(torch, str(manifest["weights"].get("dtype", "")), None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        model = model.to(dtype)
    own = model.state_dict()
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise StateMismatchError(
            f"{weights_path} does not fit a {spec.name!r} model for input {spec.input_shape} and "
            f"{spec.num_outputs} outputs (missing {missing[:5]}, unexpected {extra[:5]}, "
            "or shapes differ)"
        )
    model.load_state_dict(state, strict=True)
    if model_fingerprint(model) != fingerprint:
        raise StateMismatchError(
            f"{weights_path}: loaded weights do not match the recorded fingerprint"
        )
    return model.eval(), manifest
