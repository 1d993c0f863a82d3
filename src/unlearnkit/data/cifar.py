"""CIFAR-10 from the official python batches in a folder the user names.

Expected layout (the ``cifar-10-python.tar.gz`` archive, extracted)::

    ROOT/cifar-10-batches-py/        (or ROOT itself)
        batches.meta                 {b'label_names': [10 names], ...}
        data_batch_1 .. data_batch_5 {b'data': uint8 (n, 3072), b'labels': [n ints in 0..9], ...}
        test_batch                   same layout

Each row of ``data`` is 1024 red, then 1024 green, then 1024 blue values of a 32x32 image in
row-major order; we return ``x = data / 255`` shaped (3, 32, 32).

Ids: training rows are numbered 0, 1, ... in the order data_batch_1 .. data_batch_5 (0..49999
for the official files); test rows are 50000 + their row in ``test_batch`` (50000..59999).
``split="all"`` records the test ids as the official test split.

The batches are pickles. They are read with a restricted unpickler that can only rebuild numpy
arrays from bytes present in the file, and plain containers (see
:mod:`unlearnkit.data.safe_pickle` for the bounds and the residual risk); a batch must then hold
``n <= 10000`` rows of 3072 uint8 values and ``n`` labels in 0..9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from unlearnkit.data.arrays import as_ids, build_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.registry import DatasetParams, register_dataset
from unlearnkit.data.safe_pickle import load_restricted_pickle
from unlearnkit.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
SUBDIR = "cifar-10-batches-py"
TEST_ID_OFFSET = 50_000
NUM_CLASSES = 10
ROW_LENGTH = 3 * 32 * 32
BATCH_SIZE = 10_000  # images per official batch file


class CifarParams(DatasetParams):
    root: Path
    split: Literal["train", "test", "all"] = "all"


def _folder(root: Path) -> Path:
    for candidate in (root / SUBDIR, root):
        if (candidate / META_FILE).is_file():
            return candidate
    raise DataError(
        f"no CIFAR-10 python batches under {root}: expected {root / SUBDIR / META_FILE} "
        f"(or {root / META_FILE}) next to data_batch_1..5 and test_batch, as extracted from "
        "the official cifar-10-python.tar.gz"
    )


def _field(obj: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise DataError(f"{path}: missing key b'{key}' (keys present: {sorted(map(str, obj))})")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {path}")
    obj = load_restricted_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    data = _field(obj, "data", path)
    labels = _field(obj, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: b'data' must be a uint8 array (n, {ROW_LENGTH})")
    if data.shape[1] != ROW_LENGTH:
        raise DataError(
            f"{path}: b'data' rows have {data.shape[1]} values, expected {ROW_LENGTH} "
            "(3 x 32 x 32); the batch is truncated or not CIFAR-10"
        )
    if data.shape[0] > BATCH_SIZE:
        raise DataError(
            f"{path}: b'data' has {data.shape[0]} images; a CIFAR-10 batch holds at most "
            f"{BATCH_SIZE}, so the file is not an official batch"
        )
    try:
        labels_arr = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        labels_arr = None
    if labels_arr is None or labels_arr.ndim != 1:
        raise DataError(f"{path}: b'labels' must be a flat list of integers") from None
    if len(labels_arr) != data.shape[0]:
        raise DataError(
            f"{path}: {data.shape[0]} images but {len(labels_arr)} labels; the batch is truncated"
        )
    if len(labels_arr) and (labels_arr.min() < 0 or labels_arr.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}")
    return data, labels_arr


def _class_names(folder: Path) -> tuple[str, ...]:
    path = folder / META_FILE
    obj = load_restricted_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    names = _field(obj, "label_names", path)
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DataError(f"{path}: b'label_names' must be a list of {NUM_CLASSES} names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


@register_dataset(
    "cifar10",
    task="multiclass",
    size=60000,
    input_shape="(3, 32, 32)",
    num_outputs=NUM_CLASSES,
    description="CIFAR-10 from the official python batches in ROOT; params root, split",
    params=CifarParams,
)
def load_cifar10(params: CifarParams) -> ArrayDataset:
    folder = _folder(params.root)
    classes = _class_names(folder)
    xs, ys, ids = [], [], []
    test_ids = np.zeros(0, dtype=np.int64)
    if params.split in ("train", "all"):
        start = 0
        for name in TRAIN_BATCHES:
            data, labels = _read_batch(folder / name)
            xs.append(data)
            ys.append(labels)
            ids.append(np.arange(start, start + len(labels), dtype=np.int64))
            start += len(labels)
        if start > TEST_ID_OFFSET:
            raise DataError(f"{folder}: {start} training images, CIFAR-10 has {TEST_ID_OFFSET}")
    if params.split in ("test", "all"):
        data, labels = _read_batch(folder / TEST_BATCH)
        test_ids = TEST_ID_OFFSET + np.arange(len(labels), dtype=np.int64)
        xs.append(data)
        ys.append(labels)
        ids.append(test_ids)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    meta: dict[str, Any] = {"root": str(folder), "split": params.split}
    if params.split == "all":
        meta["official_test_ids"] = as_ids(test_ids)
    return build_dataset(
        "cifar10", x, np.concatenate(ys), np.concatenate(ids), "multiclass", classes, meta
    )
