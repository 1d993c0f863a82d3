"""Saved models seen through the facade: where outputs may go, what a manifest says its data is.

* :func:`check_output`: the writing conventions every verb that writes follows: an existing
  output is replaced only with ``overwrite=True``; an output that names one of the inputs, or
  lies inside an erasure-state folder, is refused whatever ``overwrite`` says.
* :class:`Saved`: a loaded artifact (model, manifest) and the
  :class:`~unlearnkit.data.plan.Split` its manifest records, re-derived from the data plan and
  checked against the recorded id hashes (:func:`unlearnkit.artifacts.manifest_split`; older
  manifests are upgraded on read by :mod:`unlearnkit.manifest`).
* :func:`save`: the one manifest (:func:`unlearnkit.artifacts.save_model`): the model's data
  plan and provenance (train / unlearn / erase, parent fingerprint), plus the verb's record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from unlearnkit.artifacts import artifact_paths, load_model, manifest_split, save_model
from unlearnkit.data.base import DatasetLike
from unlearnkit.data.plan import Split
from unlearnkit.errors import OverwriteError
from unlearnkit.io import atomic_write_json, model_fingerprint
from unlearnkit.manifest import Provenance, ancestors_of
from unlearnkit.ssse.persistence import interrupted_first_save

STATE_FILES = ("inverse.safetensors", "state.safetensors")


def _is_state_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in STATE_FILES)


def check_output(
    out: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    artifact: bool = True,
) -> None:
    """Refuse an output that exists (without ``overwrite``), names an input, or lies in a state.

    ``artifact``: ``out`` is a model artifact (its ``.safetensors`` and ``.json`` files are
    checked); otherwise a file or a folder path as given.
    """
    targets = list(artifact_paths(out)) if artifact else [Path(out)]
    resolved = {t.resolve() for t in targets}
    for t in targets:
        for parent in t.resolve().parents:
            if _is_state_dir(parent):
                raise OverwriteError(
                    f"the output {out} lies inside the erasure state folder {parent}; "
                    "write models outside state folders"
                )
    for item in inputs:
        p = Path(item)
        named = set(artifact_paths(p)) | {p}
        if resolved & {q.resolve() for q in named} or Path(out).resolve() == p.resolve():
            raise OverwriteError(
                f"the output {out} names the input model or state {item}; write it elsewhere"
            )
    if not overwrite:
        for t in targets:
            if t.exists():
                raise OverwriteError(f"{t} already exists; pass --overwrite to replace it")


def check_state_output(out: str | Path, *, overwrite: bool = False) -> None:
    """Refuse to replace an existing erasure state (or any path) without ``overwrite``, and a
    state folder inside another state folder. A folder that a killed first save left (no
    manifest yet, only the save's own files, no live writer) holds no ledger: writing there
    needs no ``overwrite`` (the save cleans it)."""
    p = Path(out)
    for parent in p.resolve().parents:
        if _is_state_dir(parent):
            raise OverwriteError(f"{out} lies inside the erasure state folder {parent}")
    if p.exists() and not overwrite and not interrupted_first_save(p):
        what = "an erasure state (its ledger would be lost)" if _is_state_dir(p) else "a path"
        raise OverwriteError(f"{out} already exists: {what}; pass --overwrite to replace it")


@dataclass
class Saved:
    """A saved model: the model (eval mode), its (upgraded) manifest and where it was read from."""

    model: nn.Module
    manifest: dict[str, Any]
    path: Path

    @cached_property
    def split(self) -> Split:
        """The split the manifest's data plan records, re-derived and verified: its ``fit_on``
        is what the model was trained on, its ``forget`` what was (or is to be) removed."""
        return manifest_split(self.manifest, str(self.path))

    @property
    def fit_on(self) -> DatasetLike:
        """What the model was trained on (the retain set for a retrained or unlearned model)."""
        return self.split.fit_on

    @property
    def provenance(self) -> dict[str, Any]:
        prov = self.manifest.get("provenance")
        return prov if isinstance(prov, dict) else {}

    @property
    def role(self) -> str:
        """``original`` (trained on the whole train split), ``retrain``, ``unlearned`` or
        ``erased``."""
        kind = self.provenance.get("kind")
        if kind in ("unlearn", "erase"):
            return "erased" if kind == "erase" else "unlearned"
        plan = self.split.plan
        return "retrain" if plan is not None and plan.removed else "original"

    @property
    def seconds(self) -> float | None:
        """Unlearning (or training) seconds recorded in the manifest."""
        v = self.manifest.get("seconds")
        return float(v) if isinstance(v, int | float) else None


def derived_provenance(
    kind: str,
    parent: nn.Module | Saved,
    *,
    method: str | None = None,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
    eps: float | None = None,
) -> Provenance:
    """Provenance of a model made from ``parent`` (a saved model's lineage is kept)."""
    if isinstance(parent, Saved):
        return Provenance.derived(
            kind, parent.manifest, method=method, config=config, seed=seed, eps=eps
        )  # type: ignore[arg-type]
    fp = model_fingerprint(parent)
    return Provenance(
        kind=kind, parent=fp, ancestors=(fp,), method=method, config=config, seed=seed, eps=eps
    )  # type: ignore[arg-type]


def save(
    model: Any,
    path: str | Path,
    *,
    manifest: dict[str, Any] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a model (an nn.Module or a verb's result) with THE manifest; return its path.

    A verb's result records its data (the split of the model's plan) and its provenance
    (:meth:`save_args`); ``manifest`` adds keys. Existing outputs need ``overwrite=True``; an
    output naming one of ``inputs`` or lying inside a state folder is refused.
    """
    extra: dict[str, Any] = {}
    data = provenance = None
    if callable(getattr(model, "save_args", None)):
        data, provenance, extra, parent_path = model.save_args()
        if parent_path is not None:
            inputs = [*inputs, parent_path]
    check_output(path, overwrite=overwrite, inputs=inputs)
    net = model if isinstance(model, nn.Module) else model.model
    return save_model(path, net, {**extra, **(manifest or {})}, data=data, provenance=provenance)


def load(path: str | Path, model: nn.Module | None = None) -> Saved:
    """Load and verify a saved model (:func:`unlearnkit.artifacts.load_model`); ``model``: an
    instance of the architecture for a model not built by the registry."""
    net, manifest = load_model(path, model)
    return Saved(net, manifest, Path(path))


def lineage(saved: Saved) -> tuple[str, ...]:
    """Fingerprints of the models ``saved`` descends from (oldest first)."""
    return ancestors_of(saved.manifest)


def write_json(path: str | Path, obj: Any) -> None:
    """Write a report as JSON, atomically."""
    atomic_write_json(path, obj)
