"""Bring your own data: as_dataset on tensors, Datasets, DataLoaders; ids; validation;
streaming equal to materialising; the memory budget decides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from unlearnkit.data import select_forget
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.user import StreamingDataset, as_dataset
from unlearnkit.errors import DataError, UnknownIdsError

N, SHAPE = 10, (2, 3)


def _x() -> torch.Tensor:
    return torch.arange(N * 6, dtype=torch.float32).reshape(N, *SHAPE) / 7


def _y() -> torch.Tensor:
    return torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])


class Items(Dataset):
    """Items (x, y, id) or dicts, with ids 100 + 3k; counts reads."""

    def __init__(self, kind: str = "tuple", ids: bool = True) -> None:
        self.x, self.y, self.kind, self.with_ids, self.reads = _x(), _y(), kind, ids, 0

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> Any:
        self.reads += 1
        sid = 100 + 3 * i
        if self.kind == "dict":
            return {"pixel_values": self.x[i], "labels": int(self.y[i]), "id": sid}
        return (self.x[i], self.y[i], sid) if self.with_ids else (self.x[i], self.y[i])


def test_tensor_dataset_and_tensors_use_positions_as_ids() -> None:
    for data in (TensorDataset(_x(), _y()), (_x(), _y()), (_x().numpy(), _y().numpy())):
        ds = as_dataset(data)
        assert isinstance(ds, ArrayDataset)
        assert torch.equal(ds.x, _x()) and torch.equal(ds.y, _y())
        assert ds.ids.tolist() == list(range(N)) and ds.ids.dtype == torch.int64
        assert ds.task == "multiclass" and ds.classes == ("0", "1", "2")
        assert ds.input_shape == SHAPE and ds.num_outputs == 3 and ds.name == "user"
    three = as_dataset(TensorDataset(_x(), _y(), torch.arange(N) * 5))
    assert three.ids.tolist() == [5 * i for i in range(N)]


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_custom_dataset_carries_its_ids(kind: str) -> None:
    ds = as_dataset(Items(kind), classes=["a", "b", "c", "d"], name="mine")
    assert ds.ids.tolist() == [100 + 3 * i for i in range(N)]
    assert torch.equal(ds.x, _x()) and torch.equal(ds.y, _y())
    assert ds.classes == ("a", "b", "c", "d") and ds.name == "mine"


def test_dataloader_is_read_through_its_dataset() -> None:
    loader = DataLoader(Items(), batch_size=3, shuffle=True)
    ds = as_dataset(loader)
    assert ds.ids.tolist() == [100 + 3 * i for i in range(N)]  # order of the dataset
    assert torch.equal(ds.x, _x())


def test_explicit_ids_and_the_ids_attribute() -> None:
    explicit = np.arange(N)[::-1] * 2
    assert as_dataset((_x(), _y()), ids=explicit).ids.tolist() == explicit.tolist()
    plain = Items(ids=False)
    plain.ids = torch.arange(N) + 50  # type: ignore[attr-defined]
    assert as_dataset(plain).ids.tolist() == list(range(50, 50 + N))
    with pytest.raises(DataError, match="ids and item ids name different sample ids"):
        as_dataset(Items(), ids=np.arange(N))
    same = as_dataset(Items(), ids=[100 + 3 * i for i in range(N)])
    assert same.ids.tolist()[:2] == [100, 103]
    arr = as_dataset((_x(), _y()))
    assert as_dataset(arr) is arr
    assert as_dataset(arr, ids=np.arange(N) + 7).ids.tolist()[0] == 7


def test_multilabel() -> None:
    y = (torch.arange(N * 2).reshape(N, 2) % 3 == 0).int()
    ds = as_dataset((_x(), y), classes=["p", "q"])
    assert ds.task == "multilabel" and ds.y.dtype == torch.float32 and ds.classes == ("p", "q")
    assert torch.equal(ds.y, y.float())


class NotFloat(Items):
    def __getitem__(self, i: int) -> Any:
        return (torch.ones(SHAPE, dtype=torch.int64), 0) if i == 4 else super().__getitem__(i)[:2]


class Ragged(Items):
    def __getitem__(self, i: int) -> Any:
        return (torch.ones(3), 0) if i == 6 else super().__getitem__(i)[:2]


class Stream(IterableDataset):
    def __iter__(self):
        yield from ()


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        ((_x(), _y()[:9]), {}, r"disagree in length \(10 vs 9\)"),
        ((_x(), _y()), {"ids": np.arange(9)}, "9 ids for 10 samples"),
        ((_x(), _y()), {"ids": np.zeros(N, dtype=int)}, "not unique"),
        ((_x(), _y()), {"ids": np.arange(N) + 0.5}, "must be integers"),
        ((_x(), _y()), {"classes": ["a", "b"]}, r"must lie in \[0, 2\); found 0..2"),
        ((_x(), _y() - 1), {}, r"must lie in \[0, 2\); found -1..1"),
        ((_x(), _y().float()), {}, "cannot tell the task"),
        ((_x(), _y().float()), {"task": "multiclass"}, "integer class indices"),
        ((_x(), torch.full((N, 2), 2)), {"task": "multilabel"}, "values other than 0 and 1"),
        ((_x(), torch.ones(N, 2)), {"task": "multilabel", "classes": ["a"]}, "1 attribute names"),
        ((_x().long(), _y()), {}, "floating point"),
        ((_x()[:0], _y()[:0]), {}, "empty"),
        ((_x(), _y()), {"task": "regression"}, "unknown task"),
        (NotFloat(), {}, "item 4 has torch.int64"),
        (Ragged(), {}, r"item 6 is \(3,\), not \(2, 3\)"),
        (Stream(), {}, "IterableDataset"),
        ("digits", {}, "cannot use str"),
    ],
)
def test_validation_errors(data: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(DataError, match=match):
        as_dataset(data, **kwargs)


def test_streaming_batches_equal_the_materialised_ones() -> None:
    full = as_dataset(Items())
    source = Items()
    streamed = as_dataset(source, memory_budget_bytes=0)
    assert isinstance(streamed, StreamingDataset) and isinstance(full, ArrayDataset)
    assert len(streamed) == N and streamed.input_shape == SHAPE and streamed.num_outputs == 3
    assert torch.equal(streamed.ids, full.ids) and torch.equal(streamed.y, full.y)
    for bs in (1, 4, N, 50):
        got, want = list(streamed.batches(bs)), list(full.batches(bs))
        assert len(got) == len(want)
        for (xa, ya, ia), (xb, yb, ib) in zip(got, want, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    # one batch reads only its own items (nothing is concatenated up front)
    source.reads = 0
    next(streamed.batches(4))
    assert source.reads == 4
    # subsets and forget selection behave as on the materialised data
    pick = [127, 100, 109]
    sub, ref = streamed.subset(pick), full.subset(pick)
    assert isinstance(sub, StreamingDataset)
    x, y, ids = next(sub.batches(8))
    assert torch.equal(x, ref.x) and torch.equal(y, ref.y) and ids.tolist() == pick
    assert torch.equal(sub.to_array().x, ref.x)
    a, b = select_forget(streamed, "class:2"), select_forget(full, "class:2")
    assert torch.equal(a.forget_ids, b.forget_ids) and torch.equal(a.retain_ids, b.retain_ids)
    with pytest.raises(UnknownIdsError):
        streamed.subset([1])


def test_the_memory_budget_decides() -> None:
    need = N * 6 * 4  # float32 inputs of 6 values
    assert isinstance(as_dataset(Items(), memory_budget_bytes=need), ArrayDataset)
    assert isinstance(as_dataset(Items(), memory_budget_bytes=need - 1), StreamingDataset)
    assert isinstance(as_dataset(Items()), ArrayDataset)  # default budget: 1 GiB
