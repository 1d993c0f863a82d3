"""Accuracy, gaps, retention/RetDev, parameter distance, RTE: hand-computed known answers."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from unlearnkit.errors import DataError, NumericalError, StateMismatchError
from unlearnkit.metrics.accuracy import accuracy, multilabel_accuracy, split_accuracies
from unlearnkit.metrics.distance import (
    flatten_parameters,
    normalized_parameter_distance,
    parameter_distance,
)
from unlearnkit.metrics.efficiency import rte, timed
from unlearnkit.metrics.gaps import avg_gap, deep_unlearn_objectives, delta_acc, gap, sape
from unlearnkit.metrics.retention import retention, retention_deviation, retentions


def test_accuracy_from_logits_and_labels() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    y = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, y) == 0.5  # argmax = [0, 1, 2, 0]: rows 0 and 2 correct
    assert accuracy(np.array([0, 1, 2, 0]), y.numpy()) == 0.5
    with pytest.raises(DataError):
        accuracy(logits, y[:3])


def test_split_accuracies_and_ua() -> None:
    y = np.array([0, 1, 1, 0])
    out = split_accuracies(
        {"retain": (np.array([0, 1, 1, 0]), y), "forget": (np.array([1, 1, 1, 1]), y)}
    )
    assert out == {"RA": 1.0, "FA": 0.5, "UA": 0.5}
    with pytest.raises(DataError):
        split_accuracies({"train": (y, y)})


def test_multilabel_accuracy() -> None:
    scores = np.array([[2.0, -1.0], [-3.0, 0.5]])
    labels = np.array([[1.0, 1.0], [0.0, 1.0]])
    assert multilabel_accuracy(scores, labels) == 0.75


def test_gaps_sape_and_objectives() -> None:
    u = {"RA": 0.90, "FA": 0.88, "VA": 0.80, "TA": 0.76, "UA": 0.12, "MIA": 0.30}
    r = {"RA": 0.96, "FA": 0.80, "VA": 0.83, "TA": 0.80, "UA": 0.20, "MIA": 0.40}
    assert gap(0.9, 0.96) == pytest.approx(0.06)
    # Avg gap over UA, MIA, RA, TA: (0.08 + 0.10 + 0.06 + 0.04) / 4 = 0.07
    assert avg_gap(u, r) == pytest.approx(0.07)
    # ΔAcc = 0.06 + 0.08 + 0.04
    assert delta_acc(u, r) == pytest.approx(0.18)
    assert sape(1.0, 3.0) == 50.0  # 100·2/4
    assert sape(0.0, 0.0) == 0.0
    assert sape(-1.0, 1.0) == 100.0
    obj = deep_unlearn_objectives(u, r, val_indiscernibility=0.8)
    assert obj == pytest.approx((0.02, 0.08 / 3, 0.01, 0.2))
    with pytest.raises(DataError):
        avg_gap({"RA": 1.0}, r)


def test_retention_and_retdev_hand_computed() -> None:
    u = {"RA": 0.90, "FA": 0.88, "TA": 0.76}
    r = {"RA": 0.95, "FA": 0.80, "TA": 0.80}
    ret = retentions(u, r)
    assert ret["RR"] == pytest.approx(0.90 / 0.95)
    assert ret["FR"] == pytest.approx(1.10)
    assert ret["TR"] == pytest.approx(0.95)
    # RetDev = |0.9/0.95 − 1| + |1.1 − 1| + |0.95 − 1| = 0.05/0.95 + 0.10 + 0.05
    assert retention_deviation(u, r) == pytest.approx(0.05 / 0.95 + 0.15)
    assert retention_deviation(r, r) == 0.0


def test_retention_zero_reference() -> None:
    with pytest.raises(NumericalError):
        retention(0.3, 0.0)
    assert math.isnan(retention(0.3, 0.0, on_zero="nan"))


def test_normalized_distance_state_dicts() -> None:
    retrained = {"w": torch.zeros(1, 1), "b": torch.zeros(1), "n": torch.tensor(3)}
    original = {"w": torch.tensor([[3.0]]), "b": torch.tensor([4.0]), "n": torch.tensor(7)}
    unlearned = {"w": torch.tensor([[0.6]]), "b": torch.tensor([0.8]), "n": torch.tensor(1)}
    # Integer buffers are skipped: ‖θ_O − θ_R‖ = 5, ‖θ̂ − θ_R‖ = 1.
    assert parameter_distance(original, retrained) == pytest.approx(5.0)
    assert normalized_parameter_distance(unlearned, retrained, original) == pytest.approx(0.2)
    # A grid of candidates θ_R + t·(θ_O − θ_R) has normalised distance t.
    flat_o = flatten_parameters(original)
    grid = np.stack([t * flat_o for t in (0.0, 0.5, 1.0)])
    assert np.allclose(normalized_parameter_distance(grid, retrained, original), [0, 0.5, 1])
    assert np.allclose(
        normalized_parameter_distance([retrained, original], retrained, original), [0, 1]
    )
    assert original["w"].item() == 3.0  # inputs untouched


def test_distance_modules_and_mismatch() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expect = math.sqrt(
        sum(
            ((p - q) ** 2).sum().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
    )
    assert parameter_distance(a, b) == pytest.approx(expect)
    with pytest.raises(StateMismatchError):
        parameter_distance({"w": torch.ones(2)}, {"v": torch.ones(2)})
    with pytest.raises(StateMismatchError):
        parameter_distance({"w": torch.ones(2)}, {"w": torch.ones(3)})
    with pytest.raises(NumericalError):
        normalized_parameter_distance(np.ones(2), np.zeros(2), np.zeros(2))


def test_rte_and_timer() -> None:
    assert rte(10.0, 2.0) == 5.0
    assert rte([10.0, 20.0], [2.0, 4.0]) == 5.0  # mean 15 / mean 3
    with pytest.raises(NumericalError):
        rte(1.0, 0.0)
    with timed() as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 1.0
