"""Saved models seen through the facade: where outputs may go, what a manifest says its data is.

* :func:`check_output`: the writing conventions every verb that writes follows: an existing
  output is replaced only with ``overwrite=True``; an output that names one of the inputs, or
  lies inside an erasure-state folder, is refused whatever ``overwrite`` says.
* :class:`Saved`: a loaded artifact (model, manifest) and the :class:`~.inputs.Split` its
  manifest records, re-derived and checked against the recorded ids hash. Two manifest forms
  are read: the data-plan block written by ``unlearnkit train`` (``"data"``), and the older
  ``"dataset"`` + ``"split"`` entries (``train_val_test_split``'s arguments).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from unlearnkit.api.inputs import Split
from unlearnkit.artifacts import artifact_paths, load_model, save_model
from unlearnkit.data import load_dataset, train_val_test_split
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import OverwriteError, StateMismatchError
from unlearnkit.io import atomic_write_json, ids_hash
from unlearnkit.workflow import DataPlan, data_from_manifest

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
    state folder inside another state folder."""
    p = Path(out)
    for parent in p.resolve().parents:
        if _is_state_dir(parent):
            raise OverwriteError(f"{out} lies inside the erasure state folder {parent}")
    if p.exists() and not overwrite:
        what = "an erasure state (its ledger would be lost)" if _is_state_dir(p) else "a path"
        raise OverwriteError(f"{out} already exists: {what}; pass --overwrite to replace it")


class LegacySplit(BaseModel):
    """The ``split`` entry of older manifests (train_val_test_split's arguments)."""

    model_config = ConfigDict(extra="ignore")

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    stratify: bool = True
    use_official: bool = True
    train_ids_hash: str | None = None


def _legacy_split(manifest: dict[str, Any]) -> Split:
    """The split of a manifest with ``"dataset"`` + ``"split"`` entries (verified by hash)."""
    record = manifest.get("dataset")
    if isinstance(record, str):
        name, params = record, {}
    elif isinstance(record, dict) and isinstance(record.get("name"), str):
        name, params = record["name"], dict(record.get("params") or {})
    else:
        raise StateMismatchError(
            'the model manifest does not name its dataset (expected "dataset": NAME or '
            '{"name": NAME, "params": {...}}); save the model with `unlearnkit train` or '
            "unlearnkit.save(model, path, split=...)"
        )
    raw = manifest.get("split")
    if not isinstance(raw, dict):
        raise StateMismatchError(
            'the model manifest has no "split" entry (train_val_test_split\'s arguments: '
            "val_fraction, test_fraction, seed, ...)"
        )
    try:
        rec = LegacySplit(**raw)
    except ValidationError as e:
        raise StateMismatchError(f'malformed "split" entry in the model manifest: {e}') from None
    parts = train_val_test_split(
        load_dataset(name, **params),
        val_fraction=rec.val_fraction,
        test_fraction=rec.test_fraction,
        seed=rec.seed,
        stratify=rec.stratify,
        use_official=rec.use_official,
    )
    if rec.train_ids_hash is not None and ids_hash(parts.train.ids) != rec.train_ids_hash:
        raise StateMismatchError(
            f"the train split rebuilt from dataset {name!r} does not match the one the model "
            "was trained on (train_ids_hash differs)"
        )
    plan = None
    if rec.stratify and rec.use_official:
        plan = DataPlan(name, params, rec.val_fraction, rec.test_fraction, rec.seed)
    return Split(parts.train, parts.val, parts.test, plan=plan)


def unlearn_record(manifest: dict[str, Any]) -> dict[str, Any]:
    rec = manifest.get("unlearn")
    return rec if isinstance(rec, dict) else {}


@dataclass
class Saved:
    """A saved model: the model (eval mode), its manifest and where it was read from."""

    model: nn.Module
    manifest: dict[str, Any]
    path: Path

    @cached_property
    def _data(self) -> tuple[Split, ArrayDataset]:
        m = self.manifest
        if "data" in m:
            plan, mat = data_from_manifest(m)
            base = DataPlan(**{**plan.to_dict(), "forget": None, "forget_seed": 0})
            split = Split(mat.train, mat.val, mat.test, plan=base)
            if plan.forget is not None:
                split = split.with_forget(plan.forget, plan.forget_seed)
            return split, mat.fit_on
        split = _legacy_split(m)
        return split, split.train

    @property
    def split(self) -> Split:
        """The model's data; its forget set is the one the manifest records (if any)."""
        split, _ = self._data
        rec = unlearn_record(self.manifest)
        if isinstance(rec.get("forget"), str):
            split = split.with_forget(rec["forget"], int(rec.get("forget_seed", 0)))
        return split

    @property
    def fit_on(self) -> ArrayDataset:
        """What the model was trained on (the retain set for a retrained model)."""
        return self._data[1]

    @property
    def role(self) -> str:
        if unlearn_record(self.manifest):
            return "unlearned"
        return str(self.manifest.get("role", "original"))

    @property
    def seconds(self) -> float | None:
        """Unlearning (or training) seconds recorded in the manifest."""
        for v in (unlearn_record(self.manifest).get("seconds"), self.manifest.get("seconds")):
            if isinstance(v, int | float):
                return float(v)
        return None

    def data_record(self) -> dict[str, Any]:
        """The manifest's data entries, to repeat in a model derived from this one."""
        return {k: self.manifest[k] for k in ("data", "dataset", "split") if k in self.manifest}


def data_record(split: Split | None, on: str = "train") -> dict[str, Any]:
    """The manifest's ``data`` block for a model trained on ``split.train`` (or its retain
    set, ``on="retain"``): the data plan and the SHA-256 of the training ids."""
    if split is None or split.plan is None:
        return {}
    plan = split.plan
    fit_on = split.train
    if on == "retain":
        plan = DataPlan(
            **{**plan.to_dict(), "forget": split.forget_spec, "forget_seed": split.forget_seed}
        )
        fit_on = split.retain
    return {
        "data": {
            "dataset": plan.dataset,
            "plan": plan.to_dict(),
            "train_ids_sha256": ids_hash(fit_on.ids),
            "n_train": len(fit_on),
        }
    }


def save(
    model: Any,
    path: str | Path,
    *,
    parent: Saved | None = None,
    manifest: dict[str, Any] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a model (an nn.Module or a verb's result) and its manifest; return its path.

    The manifest holds the result's own record (data plan, provenance: train / unlearn /
    erase), then ``parent``'s data entries and path when the model derives from a saved one,
    then ``manifest``. Existing outputs need ``overwrite=True``; an output naming one of
    ``inputs`` (or ``parent``) or lying inside a state folder is refused.
    """
    inputs = [*inputs, *([parent.path] if parent is not None else [])]
    check_output(path, overwrite=overwrite, inputs=inputs)
    body: dict[str, Any] = {}
    if parent is not None:
        body.update(parent.data_record())
        body["parent"] = str(parent.path)
    own = model.manifest() if callable(getattr(model, "manifest", None)) else {}
    body.update(own)
    body.update(manifest or {})
    net = model if isinstance(model, nn.Module) else model.model
    return save_model(path, net, body)


def load(path: str | Path) -> Saved:
    """Load and verify a saved model (:func:`unlearnkit.artifacts.load_model`)."""
    model, manifest = load_model(path)
    return Saved(model, manifest, Path(path))


def write_json(path: str | Path, obj: Any) -> None:
    """Write a report as JSON, atomically."""
    atomic_write_json(path, obj)
