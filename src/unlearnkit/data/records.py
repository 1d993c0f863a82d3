"""A split as a manifest records it: the data plan plus SHA-256 hashes of the id sets.

:func:`data_block` writes the manifest's ``data`` block, :func:`split_from_block` re-derives the
split of a recorded plan and :func:`verify_split` checks the hashes, so a changed dataset file
or code path is detected instead of silently training or evaluating on other data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.errors import ConfigError, StateMismatchError
from unlearnkit.io import ids_hash


def split_hashes(split: Split) -> dict[str, Any]:
    """What a manifest records to re-check a split: SHA-256 of the train, fit and forget ids
    (:func:`~unlearnkit.io.ids_hash`) and their sizes."""
    return {
        "train_ids_hash": ids_hash(split.train.ids),
        "fit_ids_hash": ids_hash(split.fit_on.ids),
        "forget_ids_hash": ids_hash(split.forget.ids),
        "n_train": len(split.train),
        "n_fit": len(split.fit_on),
        "n_forget": len(split.forget),
    }


def verify_split(split: Split, recorded: Mapping[str, Any], what: str = "the model") -> None:
    """Raise :class:`StateMismatchError` when a recorded id hash differs from ``split``'s.

    ``recorded`` holds any of ``train_ids_hash``, ``fit_ids_hash``, ``forget_ids_hash``.
    """
    plan = split.plan.describe() if split.plan is not None else "the split"
    now = split_hashes(split)
    for key, meaning in (
        ("train_ids_hash", "training split"),
        ("forget_ids_hash", "forget set"),
        ("fit_ids_hash", "samples the model was fit to"),
    ):
        want = recorded.get(key)
        if want is not None and want != now[key]:
            raise StateMismatchError(
                f"the {meaning} re-derived from {plan} does not match {what}'s manifest "
                f"({key} differs): the dataset, its parameters or its files changed since the "
                "model was saved, or the manifest belongs to other data"
            )


# --------------------------------------------------------------------------- manifest blocks


def data_block(plan: DataPlan | None, split: Split) -> dict[str, Any]:
    """The manifest ``data`` block: ``plan`` (None for a user's own split) and the id hashes
    of ``split`` (which must be ``plan.materialise()``)."""
    if plan is not None and split.plan is not None and split.plan != plan:
        raise ConfigError("data_block: the split was not materialised from this plan")
    return {"plan": plan.to_dict() if plan is not None else None, **split_hashes(split)}


def plan_from_block(block: Any, what: str = "the model") -> DataPlan:
    """The plan of a manifest ``data`` block; :class:`StateMismatchError` when it has none."""
    if not isinstance(block, Mapping) or not isinstance(block.get("plan"), Mapping):
        raise StateMismatchError(
            f"{what}'s manifest does not name its dataset (no data plan); save models with a "
            "DataPlan (unlearnkit train, or save_model(..., data=split))"
        )
    try:
        return DataPlan.from_dict(block["plan"])
    except ConfigError as err:
        raise StateMismatchError(f"{what}'s manifest has a malformed data plan: {err}") from None


def split_from_block(block: Any, what: str = "the model") -> tuple[DataPlan, Split]:
    """Re-derive the split a manifest ``data`` block records and verify its id hashes."""
    plan = plan_from_block(block, what)
    split = plan.materialise()
    verify_split(split, block, what)
    return plan, split
