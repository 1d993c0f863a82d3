"""Losses against hand-written formulas."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.losses import LOSSES, mean_loss, per_sample_loss, predict


def test_registry_has_both_tasks() -> None:
    assert LOSSES.names() == ["multiclass", "multilabel"]
    with pytest.raises(ConfigError, match="unknown task"):
        per_sample_loss("regression", torch.zeros(1, 2), torch.zeros(1))


def test_multiclass_is_logsumexp_minus_target_logit() -> None:
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    expected = [
        math.log(math.e + math.e**2 + math.e**3) - 1.0,
        math.log(3.0),
    ]
    got = per_sample_loss("multiclass", z, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(mean_loss("multiclass", z, y), got.mean())
    assert predict("multiclass", z).tolist() == [2, 0]


def test_multilabel_sums_bce_over_attributes() -> None:
    z = torch.tensor([[0.0, 2.0], [-1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)

    def sig(t: float) -> float:
        return 1 / (1 + math.exp(-t))

    expected = [
        -math.log(sig(0.0)) - math.log(1 - sig(2.0)),
        -math.log(1 - sig(-1.0)) - math.log(sig(3.0)),
    ]
    got = per_sample_loss("multilabel", z, y)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(mean_loss("multilabel", z, y), got.mean())
    assert predict("multilabel", z).tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_bad_targets_are_refused() -> None:
    with pytest.raises(DataError, match="int64"):
        per_sample_loss("multiclass", torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(DataError, match="float matrix"):
        per_sample_loss("multilabel", torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(DataError, match="float matrix"):
        per_sample_loss("multilabel", torch.zeros(2, 3), torch.zeros(2, 2))
