"""Per-example signals against direct float64 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics.signals import (
    challenge_confidence,
    correctness,
    cross_entropy,
    entropy,
    logit_scale,
    logit_scaled_confidence,
    modified_entropy,
    true_class_confidence,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_phi_equals_logit_of_true_class_probability() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 5)) * 3
    y = rng.integers(0, 5, size=20)
    p = _softmax(z)[np.arange(20), y]
    expect = np.log(p / (1 - p))
    assert np.allclose(logit_scaled_confidence(z, y), expect, atol=1e-10)
    assert np.allclose(challenge_confidence(z, y), expect, atol=1e-10)
    assert np.allclose(
        logit_scaled_confidence(torch.tensor(z), torch.tensor(y)), expect, atol=1e-10
    )
    assert np.allclose(true_class_confidence(z, y), p)
    assert np.allclose(cross_entropy(z, y), -np.log(p))
    assert np.allclose(logit_scale(p), expect, atol=1e-8)


def test_phi_is_stable_where_the_challenge_form_saturates() -> None:
    z = np.array([[1000.0, 0.0, 0.0]])
    y = np.array([0])
    assert logit_scaled_confidence(z, y)[0] == pytest.approx(1000.0 - math.log(2.0))
    # The challenge numerics: p_wrong underflows to 0, φ = log(1) − log(1e-45).
    assert challenge_confidence(z, y)[0] == pytest.approx(-math.log(1e-45))


def test_entropy_and_modified_entropy_by_hand() -> None:
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    y = np.array([0, 0])
    assert np.allclose(entropy(p, probabilities=True), [math.log(2), 0.0])
    # Mentr([.5,.5], y=0) = −.5 log .5 − .5 log(1 − .5) = log 2; a confident correct row -> 0.
    assert np.allclose(modified_entropy(p, y, probabilities=True), [math.log(2), 0.0])
    z = np.log(np.array([[0.2, 0.8]]))
    assert entropy(z)[0] == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)))
    assert np.array_equal(correctness(z, np.array([1])), [1.0])


def test_signal_errors() -> None:
    with pytest.raises(DataError):
        logit_scaled_confidence(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(NumericalError):
        cross_entropy(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(DataError):
        logit_scale(np.array([1.5]))
