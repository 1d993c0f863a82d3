"""Small synthetic datasets shared by the data tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data.base import ArrayDataset


def make_multiclass(counts: tuple[int, ...] = (12, 7, 21), seed: int = 0) -> ArrayDataset:
    """Classes with the given sizes, non-contiguous ids (10 * k + 7), rows shuffled."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    ids = 10 * np.arange(len(y)) + 7
    perm = rng.permutation(len(y))
    return ArrayDataset(
        name="toy",
        x=torch.from_numpy(rng.normal(size=(len(y), 3)).astype(np.float32))[perm],
        y=torch.from_numpy(y[perm]),
        ids=torch.from_numpy(ids[perm]),
        task="multiclass",
        classes=tuple(f"c{i}" for i in range(len(counts))),
    )


def make_multilabel(n: int = 40, seed: int = 1) -> ArrayDataset:
    """Three attributes with frequencies 1/4, 1/2 and 0 (the last never present)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 3), dtype=np.float32)
    y[: n // 4, 0] = 1
    y[::2, 1] = 1
    ids = 3 * np.arange(n) + 100
    perm = rng.permutation(n)
    return ArrayDataset(
        name="toyml",
        x=torch.zeros(n, 2)[perm],
        y=torch.from_numpy(y[perm]),
        ids=torch.from_numpy(ids[perm]),
        task="multilabel",
        classes=("rare", "half", "absent"),
    )


def permuted(ds: ArrayDataset, seed: int = 5) -> ArrayDataset:
    """The same samples in another row order."""
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(ds)))
    return ArrayDataset(ds.name, ds.x[perm], ds.y[perm], ds.ids[perm], ds.task, ds.classes, ds.meta)


@pytest.fixture
def toy() -> ArrayDataset:
    return make_multiclass()


@pytest.fixture
def toyml() -> ArrayDataset:
    return make_multilabel()


@pytest.fixture
def make_toy():
    return make_multiclass


@pytest.fixture
def permute():
    return permuted
