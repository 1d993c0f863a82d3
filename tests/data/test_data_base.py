"""ArrayDataset.batches: consecutive (x, y, ids) slices covering the dataset once, in order."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError


def test_batches_cover_the_dataset_in_order(toy: ArrayDataset) -> None:
    got = list(toy.batches(7))  # 40 samples: five batches of 7, one of 5
    assert [len(x) for x, _, _ in got] == [7, 7, 7, 7, 7, 5]
    torch.testing.assert_close(torch.cat([x for x, _, _ in got]), toy.x)
    assert torch.equal(torch.cat([y for _, y, _ in got]), toy.y)
    assert torch.equal(torch.cat([i for _, _, i in got]), toy.ids)
    assert torch.equal(got[1][2], toy.ids[7:14])


def test_batches_edge_cases(toy: ArrayDataset) -> None:
    assert len(list(toy.batches(len(toy)))) == 1
    assert len(list(toy.batches(1000))) == 1
    assert list(toy.subset([], name="empty").batches(4)) == []
    with pytest.raises(DataError, match="batch_size"):
        list(toy.batches(0))
