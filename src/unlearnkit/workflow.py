"""The data path shared by the command-line workflows: dataset → split → (forget set).

A trained model's manifest records how its training data was derived (``data`` block:
dataset name and parameters, split fractions and seed, optional forget spec and seed, and
the SHA-256 of the training ids). :func:`data_from_manifest` re-derives exactly those sets and
checks the ids hash, so a state or an unlearning run can never silently use other data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import ForgetSplit, make_forget_spec, select_forget
from unlearnkit.data.splits import train_val_test_split
from unlearnkit.errors import StateMismatchError
from unlearnkit.io import ids_hash


@dataclass(frozen=True)
class DataPlan:
    """Everything that determines a model's training data."""

    dataset: str
    dataset_params: dict[str, Any]
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    forget: str | None = None  # text forget spec: the model was trained on retain only
    forget_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Materialised:
    full: ArrayDataset
    train: ArrayDataset  # the split's training portion (retain ∪ forget)
    val: ArrayDataset
    test: ArrayDataset
    forget_split: ForgetSplit | None
    fit_on: ArrayDataset  # what the model was trained on (train, or retain for a retrain)


def materialise(plan: DataPlan) -> Materialised:
    """Load the dataset and derive the split (and forget set) the plan describes."""
    ds = load_dataset(plan.dataset, **plan.dataset_params)
    sp = train_val_test_split(
        ds, val_fraction=plan.val_fraction, test_fraction=plan.test_fraction, seed=plan.split_seed
    )
    fs = None
    fit_on = sp.train
    if plan.forget is not None:
        fs = select_forget(sp.train, make_forget_spec(plan.forget), seed=plan.forget_seed)
        fit_on = fs.retain(sp.train)
    return Materialised(ds, sp.train, sp.val, sp.test, fs, fit_on)


def data_from_manifest(manifest: dict[str, Any]) -> tuple[DataPlan, Materialised]:
    """Re-derive a model's training data from its manifest and verify the ids hash."""
    block = manifest.get("data")
    if not isinstance(block, dict) or "dataset" not in block:
        raise StateMismatchError(
            "the model's manifest has no 'data' block (dataset and split); models trained with "
            "`unlearnkit train` have one"
        )
    plan = DataPlan(**block["plan"])
    mat = materialise(plan)
    want = block.get("train_ids_sha256")
    if want is not None and ids_hash(mat.fit_on.ids) != want:
        raise StateMismatchError(
            f"the training ids re-derived from {plan.dataset!r} do not match the model's manifest "
            "(the dataset or its files changed since the model was trained)"
        )
    return plan, mat


def data_block(plan: DataPlan, mat: Materialised) -> dict[str, Any]:
    """The manifest ``data`` block for a model trained on ``mat.fit_on``."""
    return {
        "dataset": plan.dataset,
        "plan": plan.to_dict(),
        "train_ids_sha256": ids_hash(mat.fit_on.ids),
        "n_train": len(mat.fit_on),
    }
