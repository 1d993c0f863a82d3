"""Streamed Kronecker sums equal `accumulate` / `scale_sums` on the same data (fp64), whatever
the source (DataLoader, a streaming dataset, in-memory tensors) and the batch sizes; the batch
size follows the memory budget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from kfac_reference import conv_norm_model, image_data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.curvature.kfac import accumulate, scale_sums
from unlearnkit.curvature.kfac.stream import (
    choose_batch_size,
    per_sample_bytes,
    stream_curvature,
    stream_sums,
    sums_bytes,
)
from unlearnkit.errors import DataError, MemoryBudgetError

TOL = dict(rtol=1e-12, atol=1e-13)


def _model() -> nn.Sequential:
    return conv_norm_model()


def _data(n: int = 11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return image_data(n, 50)


class Streamed:
    """Only ``batches`` (and length): reading all inputs at once is impossible."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> None:
        self._x, self._y, self._ids, self.sizes = x, y, ids, []

    def __len__(self) -> int:
        return int(self._x.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for s in range(0, len(self), batch_size):
            self.sizes.append(min(batch_size, len(self) - s))
            yield (
                self._x[s : s + batch_size],
                self._y[s : s + batch_size],
                self._ids[s : s + batch_size],
            )


def _close(a, b, exact: bool) -> None:
    check = torch.equal if exact else (lambda u, v: torch.allclose(u, v, **TOL))
    assert check(a.count, b.count)
    for k in a.layers:
        assert check(a.layers[k].a_sum, b.layers[k].a_sum)
        assert check(a.layers[k].g_sum, b.layers[k].g_sum)
        assert check(a.layers[k].positions, b.layers[k].positions)
    for k in a.diag:
        assert check(a.diag[k], b.diag[k])


@pytest.mark.parametrize("mode", ["empirical", "true", "ggn"])
@pytest.mark.parametrize("loader_bs,ref_bs", [(4, 4), (3, 11), (11, 2)])
def test_dataloader_stream_equals_accumulate(mode: str, loader_bs: int, ref_bs: int) -> None:
    model = _model()
    x, y, _ = _data()
    samples = 2 if mode == "true" else 1
    opts = dict(mode=mode, seed=5, samples=samples)
    want = accumulate(model, x, y, "multiclass", batch_size=ref_bs, **opts)
    loader = DataLoader(TensorDataset(x, y), batch_size=loader_bs)  # no ids: positions
    got = stream_sums(model, loader, "multiclass", progress=False, **opts)
    # same batches and one column per sample: bit for bit; otherwise up to rounding
    _close(got, want, exact=loader_bs == ref_bs and mode == "empirical")


def test_a_dataloader_with_a_sampler_streams_what_the_sampler_picks() -> None:
    """A loader over a subset (a sampler, as a DistributedSampler's shard is) or with
    drop_last: the sums of exactly the samples it yields."""
    model = _model()
    x, y, _ = _data()
    pick = [5, 1, 7, 2, 9, 0]
    ids = torch.arange(len(x))
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=4, sampler=pick)
    got = stream_sums(model, loader, "multiclass", progress=False)
    want = accumulate(model, x[pick], y[pick], "multiclass", ids=ids[pick])
    _close(got, want, exact=False)
    dropped = DataLoader(TensorDataset(x, y, ids), batch_size=4, drop_last=True)
    n = (len(x) // 4) * 4
    got = stream_sums(model, dropped, "multiclass", progress=False)
    _close(got, accumulate(model, x[:n], y[:n], "multiclass", ids=ids[:n]), exact=False)


def test_streamed_dataset_and_ekfac_scales_equal_in_memory() -> None:
    model = _model()
    x, y, ids = _data()
    data = Streamed(x, y, ids)
    sums, scales = stream_curvature(
        model, data, "multiclass", ekfac=True, mode="ggn", batch_size=3, progress=False
    )
    assert data.sizes and max(data.sizes) == 3  # read in batches, twice (factors, scales)
    assert sum(data.sizes) == 2 * len(data)
    want = accumulate(model, x, y, "multiclass", ids=ids, mode="ggn")
    _close(sums, want, exact=False)
    assert scales is not None and scales.n == len(data)
    # the bases are eigenbases of the factors (A has a degenerate null space here, so they are
    # compared through the matrices they give), and the scale sums those of `scale_sums` in them
    fac = want.factors()
    for k, e in scales.bases.items():
        torch.testing.assert_close(e.UA @ torch.diag(e.alpha) @ e.UA.T, fac.layers[k].A, **TOL)
        torch.testing.assert_close(e.UG @ torch.diag(e.gamma) @ e.UG.T, fac.layers[k].G, **TOL)
    want_s = scale_sums(model, x, y, "multiclass", scales.bases, ids=ids, mode="ggn")
    for k, v in want_s.sums.items():
        torch.testing.assert_close(scales.sums[k], v, **TOL)


def test_batch_size_follows_the_memory_budget() -> None:
    model = _model()
    x, y, ids = _data()
    per, pos = per_sample_bytes(model, x[:1], columns=1)
    # the Conv2d sees 16 output pixels, the Linear one position
    assert pos == {"0": 16, "4": 1}
    # hand count: conv P=16, d_in=10, d_out=2; linear P=1, d_in=33, d_out=3; LayerNorm diag
    # (64 params) 3 Jacobian copies; input 16 values 4x; fp64 model: item 8
    want = 4 * 16 * 8 + 16 * 12 * (2 * 8 + 8) + 36 * (2 * 8 + 8) + 3 * 64 * 8
    assert per == want
    kept = 2 * sums_bytes(model)
    assert kept == 2 * 8 * (10**2 + 2**2 + 33**2 + 3**2 + 64)
    assert choose_batch_size(model, x[:1], kept + 5 * per, 1) == 5
    data = Streamed(x, y, ids)
    stream_sums(model, data, "multiclass", memory_budget_bytes=kept + 5 * per, progress=False)
    assert max(data.sizes[1:]) == 5  # (the first entry is the one-sample probe)
    with pytest.raises(MemoryBudgetError, match="memory budget"):
        stream_sums(model, data, "multiclass", memory_budget_bytes=kept + per - 1)


def test_bad_streams_are_refused() -> None:
    model = _model()
    x, y, ids = _data()
    twice = [(x[:3], y[:3], ids[:3]), (x[:3], y[:3], ids[:3])]
    with pytest.raises(DataError, match="repeat"):
        stream_sums(model, twice, "multiclass", progress=False)
    with pytest.raises(DataError, match="no samples"):
        stream_sums(model, [], "multiclass", batch_size=2, progress=False)
    with pytest.raises(DataError, match="labels"):
        stream_sums(model, [(x[:3], y[:2])], "multiclass", batch_size=2, progress=False)
