"""train_val_test_split: exact sizes, disjointness, determinism, stratification, official splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.splits import train_val_test_split
from unlearnkit.errors import ConfigError, DataError


def id_sets(splits) -> tuple[set[int], set[int], set[int]]:
    parts = (splits.train, splits.val, splits.test)
    for p in parts:
        assert torch.equal(p.ids, torch.sort(p.ids).values)
    return tuple(set(p.ids.tolist()) for p in parts)


def test_sizes_disjoint_union():
    ds = load_dataset("digits")
    s = train_val_test_split(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    train, val, test = id_sets(s)
    assert len(test) == 359 and len(val) == 180  # round(359.4), round(179.7)
    assert len(train) == 1797 - 359 - 180
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(1797))
    assert not s.official
    # rows travel with their ids
    pos = ds.positions(s.test.ids)
    assert torch.equal(s.test.x, ds.x[pos]) and torch.equal(s.test.y, ds.y[pos])
    assert s.train.name == "digits:train"


def test_stratified_class_proportions():
    ds = load_dataset("digits")
    s = train_val_test_split(ds, 0.1, 0.2, seed=3)
    total = torch.bincount(ds.y, minlength=10).numpy()
    for part, frac in ((s.test, 0.2), (s.val, 0.1)):
        counts = torch.bincount(part.y, minlength=10).numpy()
        assert np.all(np.abs(counts - frac * total) <= 1.5)


def test_deterministic_and_row_order_free(toy, permute):
    a = train_val_test_split(toy, 0.2, 0.25, seed=4)
    b = train_val_test_split(permute(toy), 0.2, 0.25, seed=4)
    c = train_val_test_split(toy, 0.2, 0.25, seed=5)
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(x.ids, y.ids)
    assert not torch.equal(a.test.ids, c.test.ids)
    assert (len(a.train), len(a.val), len(a.test)) == (22, 8, 10)


def test_multilabel_unstratified(toyml):
    s = train_val_test_split(toyml, 0.25, 0.25, seed=0)
    train, val, test = id_sets(s)
    assert (len(train), len(val), len(test)) == (20, 10, 10)
    assert train | val | test == set(toyml.ids.tolist())


def test_zero_val_fraction(toy):
    s = train_val_test_split(toy, 0.0, 0.5, seed=0)
    assert len(s.val) == 0 and s.val.x.shape == (0, 3) and len(s.test) == 20


def with_meta(ds: ArrayDataset, **meta) -> ArrayDataset:
    return ArrayDataset(ds.name, ds.x, ds.y, ds.ids, ds.task, ds.classes, meta)


def test_official_test_split_honoured(toy):
    official = torch.tensor([7, 17, 27, 137, 397])
    ds = with_meta(toy, official_test_ids=official)
    s = train_val_test_split(ds, val_fraction=0.2, test_fraction=0.5, seed=0)
    assert s.official
    assert s.test.ids.tolist() == official.tolist()
    assert len(s.val) == round(0.2 * 35)
    assert not set(s.val.ids.tolist()) & set(official.tolist())
    ignored = train_val_test_split(ds, 0.2, 0.5, seed=0, use_official=False)
    assert len(ignored.test) == 20 and not ignored.official


def test_official_val_and_stale_ids(toy):
    ds = with_meta(
        toy,
        official_test_ids=torch.tensor([7, 17, 99999]),  # 99999 is not in the dataset
        official_val_ids=torch.tensor([27, 37]),
    )
    s = train_val_test_split(ds, 0.3, 0.3, seed=0)
    assert s.test.ids.tolist() == [7, 17] and s.val.ids.tolist() == [27, 37]
    assert len(s.train) == 36


def test_official_split_of_generated_data():
    ds = load_dataset("mnist1d", size=100, seed=0)
    s = train_val_test_split(ds, 0.1, 0.3, seed=0, stratify=False)  # 8 val < 10 classes
    assert s.test.ids.tolist() == list(range(80, 100)) and len(s.val) == 8


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.2, 1.0), (0.5, 0.5)])
def test_bad_fractions(toy, val, test):
    with pytest.raises(ConfigError):
        train_val_test_split(toy, val, test)


def test_stratify_impossible(make_toy):
    ds = make_toy((10, 1))  # one sample of class 1 cannot be stratified
    with pytest.raises(DataError, match="stratify=False"):
        train_val_test_split(ds, 0.2, 0.3, seed=0)
    s = train_val_test_split(ds, 0.2, 0.3, seed=0, stratify=False)
    assert (len(s.train), len(s.val), len(s.test)) == (6, 2, 3)
