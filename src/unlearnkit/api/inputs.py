"""What the facade accepts: the split every verb works on, built from a data plan or the
user's own data. Nothing here is a second implementation: the split is
:class:`unlearnkit.data.plan.Split`, the user's data go through
:func:`unlearnkit.data.user.as_dataset` (validated at the boundary, streamed when they do not
fit the memory budget), devices through :func:`unlearnkit.training.resolve_device` and the
global RNG guard is :func:`unlearnkit.seeding.preserved_rng_state`.

* :func:`plan`: a registered dataset's split (and forget set) from a
  :class:`~unlearnkit.data.plan.DataPlan`;
* :func:`split_of`: the user's own training data (Dataset, DataLoader, tensors, with ids)
  with forget ids and optional val / test data;
* :func:`as_split`: either of the above, or a Split as is (another forget set when given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from unlearnkit.data.base import DatasetLike
from unlearnkit.data.forget import ids_spec
from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.data.user import as_dataset
from unlearnkit.seeding import preserved_rng_state as preserved_rng
from unlearnkit.training import resolve_device

__all__ = [
    "as_dataset",
    "as_split",
    "ids_spec",
    "plan",
    "preserved_rng",
    "resolve_device",
    "split_of",
]


def plan(
    dataset: str,
    *,
    params: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    forget: str | Sequence[str] | None = None,
    forget_seed: int = 0,
) -> Split:
    """A registered dataset's train / val / test split with its forget set (the Original's
    view: fit to ``train``), materialised from its :class:`DataPlan`. ``forget``: a spec, or
    several applied in order (each drawn with ``forget_seed`` from what the earlier kept)."""
    return DataPlan(
        dataset,
        dict(params or {}),
        val_fraction,
        test_fraction,
        split_seed,
        forget=forget,
        forget_seed=forget_seed,
    ).materialise()


def split_of(
    train: Any,
    *,
    forget_ids: Sequence[int] | torch.Tensor | None = None,
    val: Any = None,
    test: Any = None,
    task: str | None = None,
    classes: Sequence[str] | None = None,
) -> Split:
    """A :class:`Split` over the user's own data (any form :func:`as_dataset` takes; sample
    ids from the data or given there), with ``forget_ids`` as the forget set."""
    tr: DatasetLike = as_dataset(train, task=task, classes=classes, name="train")

    def conv(d: Any, name: str) -> DatasetLike | None:
        return None if d is None else as_dataset(d, task=tr.task, classes=tr.classes, name=name)

    forget = ids_spec(forget_ids) if forget_ids is not None else None
    return Split.from_datasets(tr, forget, val=conv(val, "val"), test=conv(test, "test"))


def as_split(data: Any, forget_ids: Sequence[int] | torch.Tensor | None = None) -> Split:
    """``data`` as a :class:`Split`: a Split (with ``forget_ids`` as its forget set when
    given) or the user's training data."""
    if isinstance(data, Split):
        return data.with_forget(ids_spec(forget_ids)) if forget_ids is not None else data
    return split_of(data, forget_ids=forget_ids)
