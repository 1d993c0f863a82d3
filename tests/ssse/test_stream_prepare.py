"""Preparing and erasing from a dataset that only streams (no ``x``) gives the state and the
erasure of the in-memory dataset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from unlearnkit.curvature.layout import flat_params
from unlearnkit.data.base import ArrayDataset
from unlearnkit.ssse import ErasureConfig, ErasureState


class Streamed:
    """The streaming-dataset interface (ids, y, task, classes, len, subset, batches) and no
    ``x``: any attempt to read all inputs at once fails. Batches hold at most 7 samples."""

    def __init__(self, base: ArrayDataset, log: list[int]) -> None:
        self._base, self._log = base, log
        self.ids, self.y, self.task, self.classes = base.ids, base.y, base.task, base.classes

    def __len__(self) -> int:
        return len(self._base)

    def subset(self, ids: torch.Tensor) -> Streamed:
        return Streamed(self._base.subset(ids), self._log)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        size = min(batch_size, 7)
        for s in range(0, len(self), size):
            self._log.append(min(size, len(self) - s))
            b = self._base
            yield b.x[s : s + size], b.y[s : s + size], b.ids[s : s + size]


@pytest.mark.parametrize(
    "cfg",
    [
        ErasureConfig(blocks="per_layer", solver="woodbury", damping=5e-2, group_size=4),
        ErasureConfig(blocks="full", solver="dense", damping=1e-2, group_size=1, curvature="ggn"),
    ],
)
def test_streamed_prepare_and_erase_equal_in_memory(blobs, mlp, cfg):
    log: list[int] = []
    stream = Streamed(blobs, log)
    a = ErasureState.prepare(mlp, blobs, cfg)
    b = ErasureState.prepare(mlp, stream, cfg)
    assert log and max(log) <= 7  # read in batches
    assert torch.equal(a.sample_ids, b.sample_ids) and torch.equal(a.group_members, b.group_members)
    v = torch.randn(a.layout.d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.inverse.solve(v), a.inverse.solve(v), rtol=1e-5, atol=1e-7)
    model_a, model_b, sa, sb = mlp, mlp, a, b
    for idx in ([2, 3, 17], [4, 18, 40]):  # the second request recomputes rows at θ_F
        forget = blobs.subset(blobs.ids[idx])
        model_a, sa = sa.erase(model_a, forget, eps=1.0)
        model_b, sb = sb.erase(model_b, stream.subset(forget.ids), eps=1.0)
        torch.testing.assert_close(
            flat_params(model_b, sb.layout), flat_params(model_a, sa.layout), rtol=1e-5, atol=1e-6
        )
        assert torch.equal(sa.group_sizes, sb.group_sizes)
