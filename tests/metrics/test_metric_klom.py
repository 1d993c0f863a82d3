"""KLoM on hand-computed histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnkit.errors import DataError
from unlearnkit.metrics.klom import binned_kl, klom, klom_summary, margins


def test_margins_by_hand():
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([0, 2])
    # 2 − log(e^0 + e^0) = 2 − log 2;   1 − log(e^0 + e^1)
    want = torch.tensor([2 - math.log(2), 1 - math.log(1 + math.e)])
    torch.testing.assert_close(margins(z, y), want)


def test_binned_kl_hand_computed_with_and_without_the_upper_edge():
    p = [0.0, 0.0, 0.0, 0.0, 2.0]
    q = [0.0, 0.0, 2.0, 2.0, 2.0]
    # range [0, 2], 20 bins. Counting the upper edge: P = (0.8 in bin 0, 0.2 in bin 19),
    # Q = (0.4, 0.6): KL = 0.8 ln 2 + 0.2 ln(1/3)
    assert binned_kl(p, q, include_upper_edge=True) == pytest.approx(
        0.8 * math.log(2) + 0.2 * math.log(1 / 3), abs=1e-12
    )
    # the reference code's digitize drops samples equal to the upper edge: P = Q = (1 in bin 0)
    assert binned_kl(p, q) == pytest.approx(0.0, abs=1e-12)


def test_empty_oracle_bin_uses_eps():
    # P all in bin 0, Q all in bin 19 (upper edge counted): KL = log(1 / q̃_0) with q̃ renormalised
    p, q = [0.0, 0.0], [1.0, 1.0]
    qs = np.zeros(20)
    qs[19] = 1.0
    qs[0] = 1e-5
    qs /= qs.sum()
    assert binned_kl(p, q, include_upper_edge=True) == pytest.approx(math.log(1 / qs[0]), rel=1e-12)


def test_identical_sets_give_zero_and_clipping_applies():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(16, 5))
    assert np.allclose(klom(u, u.copy()), 0.0)
    # values beyond ±100 are clipped to the same edge: indistinguishable
    assert binned_kl([500.0, 0.0], [300.0, 0.0], include_upper_edge=True) == pytest.approx(0.0)
    s = klom_summary(np.arange(101, dtype=float))
    assert s == {"klom_p95": 95.0, "klom_median": 50.0}


def test_shape_errors():
    with pytest.raises(DataError):
        klom(np.zeros((3, 4)), np.zeros((3, 5)))
