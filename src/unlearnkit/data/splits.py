"""Deterministic train / validation / test splits by sample id.

``train_val_test_split`` works on the ids in increasing order, so the result depends only on
the set of samples, the fractions and the seed, never on the row order of the dataset.

Sizes (``round`` is Python's, half to even):

* No official split: ``n_test = round(test_fraction * n)``, ``n_val = round(val_fraction * n)``,
  train gets the rest. Test is drawn first from all samples, then val from the remainder, both
  with :func:`sklearn.model_selection.train_test_split` (``random_state=seed``), stratified by
  class when ``stratify`` and the task is multi-class.
* Official split (``meta["official_test_ids"]`` present, ``use_official=True`` and some of those
  ids in the dataset): test = those ids and ``test_fraction`` is ignored. Validation =
  ``meta["official_val_ids"]`` when present, else ``round(val_fraction * n_rest)`` samples drawn
  from the remaining ``n_rest`` samples as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class Splits:
    """Disjoint train / val / test subsets (ids sorted); ``official`` if the source's test
    split was used."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    official: bool = False


def _draw(
    ids: np.ndarray, labels: np.ndarray | None, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, drawn): ``count`` of ``ids`` drawn by sklearn, stratified on ``labels`` if given."""
    if count == 0:
        return ids, ids[:0]
    if count >= len(ids):
        raise ConfigError(f"cannot hold out {count} of {len(ids)} samples and keep a train set")
    try:
        kept, drawn = train_test_split(ids, test_size=count, random_state=seed, stratify=labels)
    except ValueError as err:
        raise DataError(
            f"stratified split impossible ({err}); pass stratify=False or use larger fractions"
        ) from None
    return np.asarray(kept), np.asarray(drawn)


def _official(dataset: ArrayDataset, key: str, ids: np.ndarray) -> np.ndarray | None:
    value = dataset.meta.get(key)
    if value is None:
        return None
    present = np.intersect1d(np.asarray(value, dtype=np.int64), ids)
    return present if len(present) else None


def train_val_test_split(
    dataset: ArrayDataset,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    use_official: bool = True,
) -> Splits:
    """Split ``dataset`` into train / val / test (see the module docstring for the sizes)."""
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{label} must lie in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("val_fraction + test_fraction must be below 1 to leave a train set")
    if len(dataset) == 0:
        raise DataError(f"dataset {dataset.name!r} is empty")

    order = torch.argsort(dataset.ids).numpy()
    ids = dataset.ids.numpy()[order]
    strat = stratify and dataset.task == "multiclass"
    y = dataset.y.numpy()[order] if strat else None

    def labels(subset: np.ndarray) -> np.ndarray | None:
        return y[np.searchsorted(ids, subset)] if y is not None else None

    official_test = _official(dataset, "official_test_ids", ids) if use_official else None
    if official_test is not None:
        test = official_test
        rest = np.setdiff1d(ids, test)
        official_val = _official(dataset, "official_val_ids", rest)
        if official_val is not None:
            val = official_val
            train = np.setdiff1d(rest, val)
        else:
            train, val = _draw(rest, labels(rest), round(val_fraction * len(rest)), seed)
    else:
        n = len(ids)
        rest, test = _draw(ids, y, round(test_fraction * n), seed)
        rest = np.sort(rest)
        train, val = _draw(rest, labels(rest), round(val_fraction * n), seed)
    if len(train) == 0:
        raise DataError(f"dataset {dataset.name!r}: the split leaves no training sample")

    def part(part_ids: np.ndarray, suffix: str) -> ArrayDataset:
        return dataset.subset(np.sort(part_ids), name=f"{dataset.name}:{suffix}")

    return Splits(
        part(train, "train"), part(val, "val"), part(test, "test"), official_test is not None
    )
