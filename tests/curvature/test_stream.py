"""Rows read from batches equal the rows of the in-memory engine (same samples, same order)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.curvature.rows import curvature_rows, curvature_rows_stream
from unlearnkit.errors import DataError

F64 = {"compute_dtype": torch.float64, "out_dtype": torch.float64}


def _mlp(out: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, out)).double().eval()


def _data(n: int = 23, task: str = "multiclass") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if task == "multiclass":
        y = torch.randint(0, 3, (n,), generator=g)
    else:
        y = (torch.rand(n, 3, generator=g) < 0.5).double()
    return x, y, torch.arange(100, 100 + n, dtype=torch.int64) * 7


def _batches(x, y, ids, size: int):
    for s in range(0, x.shape[0], size):
        yield x[s : s + size], y[s : s + size], ids[s : s + size]


@pytest.mark.parametrize(
    ("kind", "task", "g", "backend"),
    [
        ("empirical", "multiclass", 1, "func"),
        ("empirical", "multiclass", 4, "func"),  # 23 = 5·4 + 3: the last group is smaller
        ("empirical", "multilabel", 5, "hooks"),
        ("ggn", "multiclass", 1, "func"),
        ("ggn", "multilabel", 1, "hooks"),
        ("true", "multiclass", 1, "func"),
    ],
)
def test_streamed_rows_equal_in_memory_rows(kind, task, g, backend) -> None:
    model = _mlp()
    x, y, ids = _data(task=task)
    want = curvature_rows(
        kind, model, x, y, task, ids=ids, group_size=g, seed=3, backend=backend, **F64
    )
    for size in (1, 5, 23):
        got = curvature_rows_stream(
            kind,
            model,
            _batches(x, y, ids, size),
            23,
            task,
            group_size=g,
            seed=3,
            chunk_size=2,
            backend=backend,
            **F64,
        )
        torch.testing.assert_close(got.G, want.G, rtol=1e-12, atol=1e-13)
        for name in ("row_group", "row_output", "group_members", "group_sizes", "sample_ids"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_bad_streams_are_refused() -> None:
    model = _mlp()
    x, y, ids = _data()
    with pytest.raises(DataError, match="more than the 20"):
        curvature_rows_stream("empirical", model, _batches(x, y, ids, 5), 20, "multiclass")
    with pytest.raises(DataError, match="held 23 samples, expected 30"):
        curvature_rows_stream("empirical", model, _batches(x, y, ids, 5), 30, "multiclass")
    dup = ids.clone()
    dup[3] = dup[4]
    with pytest.raises(DataError, match="not unique"):
        curvature_rows_stream("empirical", model, _batches(x, y, dup, 5), 23, "multiclass")
