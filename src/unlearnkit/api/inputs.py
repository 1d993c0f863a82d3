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
* :func:`as_split`: either of the above, or a Split as is (another forget set when given);
* :func:`sample_ids`: sample ids as given by the user (list, array, tensor) as a 1-D int64
  tensor, refusing non-integers and values outside int64 with a ConfigError (``torch`` would
  truncate ``1.5`` to 1 and overflow on ``2**63``).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

from unlearnkit.data.base import DatasetLike
from unlearnkit.data.forget import ids_spec as _ids_spec
from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.data.user import as_dataset
from unlearnkit.errors import ConfigError
from unlearnkit.seeding import preserved_rng_state as preserved_rng
from unlearnkit.training import resolve_device

__all__ = [
    "as_dataset",
    "as_split",
    "ids_spec",
    "plan",
    "preserved_rng",
    "resolve_device",
    "sample_ids",
    "split_of",
]


_INT64 = np.iinfo(np.int64)


def sample_ids(ids: Any, what: str = "sample ids") -> torch.Tensor:
    """``ids`` (an int, a sequence of ints, an integer array or tensor) as a 1-D int64 tensor.

    Refused with :class:`ConfigError`: floats, booleans, strings and other non-integers (an
    id is never rounded), values outside the int64 range of sample ids, ragged nestings.
    """
    if isinstance(ids, torch.Tensor):
        if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
            raise ConfigError(f"{what} must be integers, got a {ids.dtype} tensor")
        if ids.dtype == torch.int64:
            return ids.detach().reshape(-1).cpu()
        ids = ids.detach().cpu().numpy()
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"{what} must be a flat sequence of integers ({e})") from None
    if arr.size == 0:
        return torch.zeros(0, dtype=torch.int64)
    if arr.dtype.kind == "O":
        flat = arr.reshape(-1).tolist()
        bad = next(
            (v for v in flat if isinstance(v, bool) or not isinstance(v, Integral)),
            None,
        )
        if bad is not None:
            raise ConfigError(f"{what} must be integers, got {bad!r}")
        values = [int(v) for v in flat]
        out = next((v for v in values if not _INT64.min <= v <= _INT64.max), None)
        if out is not None:
            raise ConfigError(f"sample id {out} is outside the int64 range of sample ids")
        return torch.tensor(values, dtype=torch.int64)
    if arr.dtype.kind not in "iu":
        raise ConfigError(f"{what} must be integers, got values of type {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64.max:
        raise ConfigError(f"sample id {int(arr.max())} is outside the int64 range of sample ids")
    return torch.from_numpy(arr.astype(np.int64).reshape(-1))


def ids_spec(ids: Any) -> str:
    """The forget spec naming exactly these sample ids (``ids:3,17``); ids are checked by
    :func:`sample_ids` first."""
    return _ids_spec(sample_ids(ids))


def plan(
    dataset: str,
    *,
    params: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    forget: str | Sequence[str] | None = None,
    forget_seed: int = 0,
    relabel: Any = (),
) -> Split:
    """A registered dataset's train / val / test split with its forget set (the Original's
    view: fit to ``train``), materialised from its :class:`DataPlan`. ``forget``: a spec, or
    several applied in order (each drawn with ``forget_seed`` from what the earlier kept).
    ``relabel``: label corruption of the training part before the forget steps (e.g.
    ``[{"spec": "class_fraction:7:0.4", "seed": 0, "to": 1}]``, :mod:`unlearnkit.data.relabel`;
    :func:`~unlearnkit.data.relabel.relabelled_ids` gives the corrupted ids to erase, as in
    ``make demo``)."""
    return DataPlan(
        dataset,
        dict(params or {}),
        val_fraction,
        test_fraction,
        split_seed,
        forget=forget,
        forget_seed=forget_seed,
        relabel=relabel,
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
