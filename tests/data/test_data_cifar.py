"""CIFAR-10 python batches: fixtures in the official format, ids, layout, refused inputs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset, train_val_test_split
from unlearnkit.errors import DataError

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
         b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


def write_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    obj = {
        b"batch_label": b"fixture",
        b"labels": labels,
        b"data": data,
        b"filenames": [b"img%d.png" % i for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official files are protocol 2


def write_cifar(root: Path, per_batch: int = 3, n_test: int = 4) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": NAMES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    rng = np.random.default_rng(0)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        write_batch(folder / name, data, labels)
        arrays[name] = data
        arrays[name + "_labels"] = np.array(labels)
    return arrays


def test_load_all_ids_and_layout(tmp_path):
    arrays = write_cifar(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert ds.x.shape == (19, 3, 32, 32) and ds.x.dtype == torch.float32
    assert ds.ids.tolist() == list(range(15)) + [50000, 50001, 50002, 50003]
    assert ds.meta["official_test_ids"].tolist() == [50000, 50001, 50002, 50003]
    # id 4 = row 1 of data_batch_2; channel c, pixel (i, j) = data[c*1024 + i*32 + j]
    row = arrays["data_batch_2"][1]
    x = ds.subset([4]).x[0]
    assert float(x[0, 0, 0]) == pytest.approx(row[0] / 255)
    assert float(x[1, 0, 1]) == pytest.approx(row[1024 + 1] / 255)
    assert float(x[2, 3, 5]) == pytest.approx(row[2048 + 3 * 32 + 5] / 255)
    assert int(ds.subset([50002]).y[0]) == arrays["test_batch_labels"][2]
    again = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py")  # the folder itself
    assert torch.equal(again.ids, ds.ids) and torch.equal(again.x, ds.x)


def test_split_parameter_and_official_test(tmp_path):
    write_cifar(tmp_path)
    train = load_dataset("cifar10", root=tmp_path, split="train")
    test = load_dataset("cifar10", root=tmp_path, split="test")
    assert train.ids.tolist() == list(range(15)) and "official_test_ids" not in train.meta
    assert test.ids.tolist() == [50000, 50001, 50002, 50003]
    s = train_val_test_split(load_dataset("cifar10", root=tmp_path), 0.2, 0.5, stratify=False)
    assert s.official and s.test.ids.tolist() == test.ids.tolist() and len(s.val) == 3


def test_missing_folder_and_batch(tmp_path):
    with pytest.raises(DataError, match="batches.meta"):
        load_dataset("cifar10", root=tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, split="train")
    assert len(load_dataset("cifar10", root=tmp_path, split="test")) == 4


@pytest.mark.parametrize(
    ("data", "labels", "message"),
    [
        (np.zeros((3, 3000), np.uint8), [0, 1, 2], "3000 values, expected 3072"),
        (np.zeros((3, 3072), np.uint8), [0, 1], "3 images but 2 labels"),
        (np.zeros((3, 3072), np.float32), [0, 1, 2], "uint8"),
        (np.zeros((3, 3072), np.uint8), [0, 1, 10], "0..9"),
    ],
)
def test_malformed_batch(tmp_path, data, labels, message):
    write_cifar(tmp_path)
    write_batch(tmp_path / "cifar-10-batches-py" / "test_batch", data, labels)
    with pytest.raises(DataError, match=message):
        load_dataset("cifar10", root=tmp_path, split="test")


def test_truncated_file_and_missing_key(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="test_batch is not a readable"):
        load_dataset("cifar10", root=tmp_path, split="test")
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataError, match="missing key b'labels'"):
        load_dataset("cifar10", root=tmp_path, split="test")


class Payload:
    """A pickle that would call a function on load."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_refuses_arbitrary_globals(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="posix.getcwd is not allowed|getcwd is not allowed"):
        load_dataset("cifar10", root=tmp_path, split="test")
