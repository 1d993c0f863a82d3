"""Saved models: ``<name>.safetensors`` (weights) + ``<name>.json`` (THE manifest).

Every manifest (``format`` ``"unlearnkit.model"``, ``format_version`` :data:`FORMAT_VERSION`)
records, besides what the caller adds (recipe, metrics, accuracies, ...):

- ``model``: the :class:`~unlearnkit.models.registry.ModelSpec` (name, input shape, outputs,
  init seed, options) so :func:`load_model` rebuilds the architecture, or ``null`` for a user's
  own ``nn.Module`` (then ``load_model(path, model=an_instance)``);
- ``weights``: file name, SHA-256 of the file, :func:`~unlearnkit.io.model_fingerprint` of the
  state dict, dtype;
- ``data``: the :class:`~unlearnkit.data.plan.DataPlan` (``plan``) and the SHA-256 of the
  train / fit / forget ids (:func:`~unlearnkit.data.records.split_hashes`), or ``null`` when the
  model's data is unknown;
- ``provenance``: :class:`Provenance` (train / unlearn / erase, parent fingerprint and
  ancestors, method, config, seed or ε, time), or ``null`` when unknown;
- ``versions`` (python, torch, numpy, safetensors, unlearnkit) and ``created``.

Older manifests are upgraded when read (:mod:`unlearnkit.manifest`). Both files are
written atomically (temporary file, then rename), weights first. Nothing is ever unpickled.
:func:`load_model` verifies the checksum and the fingerprint; :func:`check_reference` refuses
an original or a retrain whose data plan does not fit the model's.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors
import torch
from torch import nn

from unlearnkit._version import __version__
from unlearnkit.artifact_checks import (
    FLOAT_DTYPES,
    check_finite,
    check_fits,
    manifest_entries,
    weights_header,
)
from unlearnkit.data.plan import DataPlan, Split, check_prefix, check_same_split
from unlearnkit.data.records import data_block, plan_from_block, split_from_block
from unlearnkit.errors import ConfigError, StateMismatchError, UnsupportedError
from unlearnkit.io import (
    atomic_write_json,
    load_tensors,
    model_fingerprint,
    read_text_file,
    save_tensors,
)
from unlearnkit.manifest import (
    FORMAT,
    FORMAT_VERSION,
    Provenance,
    ancestors_of,
    upgrade_manifest,
)
from unlearnkit.models.registry import ModelSpec, build_from_spec, build_on_meta

#: a model manifest is a few KiB; a larger file is refused before it is read
MAX_MANIFEST_BYTES = 16 * 2**20

DEFAULT_NAME = "model"
_RESERVED = ("format", "format_version", "model", "weights", "versions", "created")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Provenance",
    "artifact_paths",
    "check_finite",
    "check_reference",
    "load_model",
    "manifest_plan",
    "manifest_split",
    "read_manifest",
    "save_model",
    "versions",
    "weights_header",
]


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
        "unlearnkit": __version__,
    }


def save_model(
    path: str | Path,
    model: nn.Module,
    manifest: dict[str, Any] | None = None,
    spec: ModelSpec | None = None,
    *,
    data: Split | None = None,
    provenance: Provenance | None = None,
) -> Path:
    """Write ``model``'s weights and manifest; return the manifest path.

    ``spec`` defaults to ``model.build_spec`` (set by ``build_model``); a model without one is
    saved with ``"model": null``. ``data`` is the split the model belongs to: its plan (when
    materialised from a :class:`DataPlan`) and its id hashes are recorded. ``provenance`` says
    how the model was made. ``manifest`` holds further keys; they must not collide with the recorded
    ones (``format``, ``format_version``, ``model``, ``weights``, ``versions``, ``created``).
    Keys of older writers (``dataset``/``split``, ``role``, ``unlearn``, ``ssse``) are upgraded
    as on reading. A parameter or buffer holding NaN or Inf raises :class:`NumericalError`
    (:func:`check_finite`). The model is not modified; nothing is written on error.
    """
    manifest = dict(manifest or {})
    clash = sorted(set(manifest) & set(_RESERVED))
    if clash:
        raise ConfigError(f"manifest keys {clash} are reserved (recorded by save_model)")
    for key, value in (("data", data), ("provenance", provenance)):
        if value is not None and key in manifest:
            raise ConfigError(f"give {key!r} either as an argument or as a manifest key, not both")
    if data is not None:  # a user's own split has no plan, but its ids are fingerprinted
        manifest["data"] = data_block(data.plan, data)
    if provenance is not None:
        manifest["provenance"] = provenance.to_dict()
    spec = spec or getattr(model, "build_spec", None)
    if spec is not None and not isinstance(spec, ModelSpec):
        raise ConfigError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    try:
        raw = json.loads(json.dumps(manifest, default=str))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"manifest is not JSON-serialisable: {e}") from None
    try:
        manifest = upgrade_manifest(raw, created=_now())
    except StateMismatchError as e:
        raise ConfigError(f"manifest: {e}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_finite(state)
    dtypes = {str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()}
    weights_path, manifest_path = artifact_paths(path)
    # two files cannot be replaced at once: retire the old manifest first, so that a crash
    # between the two renames leaves no artifact (weights without a manifest), never new
    # weights under an old manifest; the manifest, written last, completes the artifact
    manifest_path.unlink(missing_ok=True)
    digest = save_tensors(weights_path, state)
    manifest.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": spec.model_dump(mode="json") if spec is not None else None,
            "weights": {
                "file": weights_path.name,
                "sha256": digest,
                "fingerprint": model_fingerprint(model),
                "dtype": dtypes.pop() if len(dtypes) == 1 else "mixed",
            },
            "versions": versions(),
            "created": _now(),
        }
    )
    atomic_write_json(manifest_path, manifest)
    return manifest_path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact at ``path`` (see :func:`artifact_paths`), upgraded to
    :data:`FORMAT_VERSION` when it was written by an older unlearnkit."""
    _, manifest_path = artifact_paths(path)
    if not manifest_path.exists():
        raise StateMismatchError(f"no model manifest at {manifest_path}")
    text = read_text_file(manifest_path, "model manifest", MAX_MANIFEST_BYTES, StateMismatchError)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise StateMismatchError(f"{manifest_path} is not valid JSON: {e}") from None
    try:
        return upgrade_manifest(manifest)
    except (StateMismatchError, ConfigError) as e:
        raise StateMismatchError(f"{manifest_path}: {e}") from None


def load_model(
    path: str | Path, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model, load and verify its weights; eval mode. Returns ``(model, manifest)``.

    The architecture comes from the manifest's build spec, or from ``model`` (an instance of the
    architecture, for models not built by :func:`~unlearnkit.models.build_model`; it is copied,
    never modified). Nothing the manifest says is trusted before it is checked against the
    weights file's header (:func:`weights_header`): the spec's model is first built on the meta
    device (:func:`~unlearnkit.models.registry.build_on_meta`, no memory) and its tensor names
    and shapes compared with the header's, so an edited manifest cannot make the loader
    allocate more than the weights file holds. Raises :class:`StateMismatchError` if the
    manifest is missing or malformed (the key named), the header does not fit the architecture
    or the manifest's dtype, the weights' SHA-256 differs from the manifest's, or the loaded
    state's fingerprint differs from the recorded one.
    """
    manifest = read_manifest(path)
    weights_path, manifest_path = artifact_paths(path)
    spec, expected, fingerprint, dtype_name = manifest_entries(manifest, manifest_path)
    if model is None and spec is None:
        raise ConfigError(
            f"{manifest_path}: the model was not built by unlearnkit.models.build_model, so its "
            "architecture is unknown; pass load_model(path, model=an instance of it)"
        )
    header = weights_header(weights_path)
    floats = {FLOAT_DTYPES[d] for _, d in header.values() if d in FLOAT_DTYPES}
    if dtype_name not in (None, "mixed") and floats and floats != {dtype_name}:
        held = sorted(k for k, v in FLOAT_DTYPES.items() if v in floats)
        raise StateMismatchError(
            f"{manifest_path} records dtype {dtype_name} but the weights file holds {held}"
        )
    if model is not None:
        template, what = model, f"a {type(model).__name__}"
    else:
        assert spec is not None
        what = f"a {spec.name!r} model for input {spec.input_shape} and {spec.num_outputs} outputs"
        try:
            template = build_on_meta(spec, max_tensors=len(header))
        except (ConfigError, UnsupportedError) as e:
            raise StateMismatchError(f"{manifest_path}: key 'model': {e}") from None
    check_fits(
        {k: tuple(v.shape) for k, v in template.state_dict().items()}, header, weights_path, what
    )
    net = copy.deepcopy(model) if model is not None else build_from_spec(spec)  # type: ignore[arg-type]
    state = load_tensors(weights_path, expected)
    dtype = getattr(torch, str(dtype_name or ""), None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        net = net.to(dtype)
    try:  # the header was checked; this catches a file replaced while it was read
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise StateMismatchError(f"{weights_path} does not fit {what} ({e})") from None
    if model_fingerprint(net) != fingerprint:
        raise StateMismatchError(
            f"{weights_path}: loaded weights do not match the recorded fingerprint"
        )
    return net.eval(), manifest


# --------------------------------------------------------------------------- data of a model


def manifest_plan(manifest: Mapping[str, Any], what: str = "the model") -> DataPlan:
    """The :class:`DataPlan` a (read, hence upgraded) manifest records; raises
    :class:`StateMismatchError` when it records none."""
    return plan_from_block(manifest.get("data"), what)


def manifest_split(manifest: Mapping[str, Any], what: str = "the model") -> Split:
    """Re-derive the split of a manifest's data plan and verify the recorded id hashes."""
    return split_from_block(manifest.get("data"), what)[1]


def _fingerprint(manifest: Mapping[str, Any]) -> str | None:
    weights = manifest.get("weights")
    return weights.get("fingerprint") if isinstance(weights, Mapping) else None


def check_reference(
    model_manifest: Mapping[str, Any],
    ref_manifest: Mapping[str, Any],
    role: Literal["retrain", "original"] = "retrain",
) -> None:
    """Refuse a reference model that does not belong to ``model_manifest``'s model.

    Both: the same dataset, parameters and split (every difference named) and not the model
    itself. ``original``: the model's recorded ancestors (when known) include it, and the forget
    steps it had removed are the first of the model's. ``retrain``: fit to the retain set of
    the same forget set (steps, or the recorded fit-ids hash), trained rather than unlearned,
    and not an ancestor of the model (the original passed as the retrain).
    Raises :class:`StateMismatchError`; returns nothing.
    """
    if role not in ("retrain", "original"):
        raise ConfigError(f"role must be 'retrain' or 'original', got {role!r}")
    model_plan = manifest_plan(model_manifest, "the model")
    ref_plan = manifest_plan(ref_manifest, f"the {role}")
    ref_fp = _fingerprint(ref_manifest)
    if ref_fp is not None and ref_fp == _fingerprint(model_manifest):
        raise StateMismatchError(f"the {role} is the model itself (same weights fingerprint)")
    check_same_split(model_plan, ref_plan, "the model", f"the {role}")
    lineage = ancestors_of(model_manifest)
    if role == "original":
        if lineage and ref_fp not in lineage:
            raise StateMismatchError(
                "the original is not an ancestor of the model (its fingerprint is not among "
                "those the model's provenance records)"
            )
        try:
            check_prefix(ref_plan, model_plan)
        except StateMismatchError as err:
            raise StateMismatchError(f"the original does not precede the model: {err}") from None
        return
    if not model_plan.removed:
        raise StateMismatchError(
            "the model's data plan removes no forget set, so it has no retrain reference"
        )
    if ref_fp is not None and ref_fp in lineage:
        raise StateMismatchError(
            "the model passed as the retrain is an ancestor of the model (its original), not a "
            "model retrained without the forget set"
        )
    prov = ref_manifest.get("provenance")
    if isinstance(prov, Mapping) and prov.get("kind") in ("unlearn", "erase"):
        if prov.get("method") != "retrain":
            raise StateMismatchError(
                f"the retrain was produced by {prov.get('kind')} "
                f"({prov.get('method') or 'ssse'}), not trained on the retain set"
            )
    if not ref_plan.removed:
        raise StateMismatchError(
            "the model passed as the retrain was fit to the whole training split (an "
            "original), not to the retain set"
        )
    if ref_plan.removed != model_plan.removed:
        ours = model_manifest["data"].get("fit_ids_hash")
        theirs = ref_manifest["data"].get("fit_ids_hash")
        if ours is None or ours != theirs:
            a = "; ".join(f"{s.spec}@{s.seed}" for s in model_plan.removed)
            b = "; ".join(f"{s.spec}@{s.seed}" for s in ref_plan.removed)
            raise StateMismatchError(
                f"the retrain was trained without another forget set: it removed {b}, the "
                f"model removed {a}"
            )
