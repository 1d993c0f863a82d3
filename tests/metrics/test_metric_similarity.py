"""SSSE's similarity ratio γ_S on a hand-computed example."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit.metrics.similarity import (
    attribute_aucs,
    auc_distance,
    similarity_ratio,
    similarity_ratio_grid,
)

# 4 samples in S, 3 attributes; attribute 3 is absent (no positive).
LABELS = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
S_HAT = np.array([[0.9, 0.6, 0.1], [0.1, 0.4, 0.2], [0.8, 0.5, 0.3], [0.2, 0.3, 0.4]])
S_ORIG = np.array([[0.9, 1.0, 0.5], [0.8, 0.9, 0.5], [0.7, 0.0, 0.5], [0.1, 0.1, 0.5]])
S_RETR = np.array([[0.1, 0.5, 0.9], [0.9, 0.5, 0.8], [0.2, 0.5, 0.7], [0.8, 0.5, 0.6]])


def test_attribute_aucs_by_hand() -> None:
    # Attribute 1, θ*: positives {0.9, 0.7}, negatives {0.8, 0.1}: 3 of 4 pairs ordered -> 0.75.
    # Attribute 2, θ̂: positives {0.6, 0.4}, negatives {0.5, 0.3}: 3 of 4 -> 0.75.
    # Attribute 2, θ*_{-S}: all scores tie -> 0.5. Absent attribute 3 -> 0.
    assert np.allclose(attribute_aucs(S_HAT, LABELS), [1.0, 0.75, 0.0])
    assert np.allclose(attribute_aucs(S_ORIG, LABELS), [0.75, 1.0, 0.0])
    assert np.allclose(attribute_aucs(S_RETR, LABELS), [0.0, 0.5, 0.0])


def test_gamma_hand_computed() -> None:
    # D(θ̂, θ*) = |1 − .75| + |.75 − 1| = 0.5; D(θ̂, θ*_{-S}) = |1 − 0| + |.75 − .5| = 1.25
    # γ = 0.5 / (0.5 + 1.25) = 2/7
    assert auc_distance([1.0, 0.75, 0.0], [0.75, 1.0, 0.0]) == pytest.approx(0.5)
    assert similarity_ratio(S_HAT, S_ORIG, S_RETR, LABELS) == pytest.approx(2 / 7)
    grid = similarity_ratio_grid([S_ORIG, S_RETR, S_HAT], S_ORIG, S_RETR, LABELS)
    assert np.allclose(grid, [0.0, 1.0, 2 / 7])


def test_all_one_attribute_is_absent_and_zero_over_zero() -> None:
    labels = np.array([[1, 1], [1, 0], [1, 1], [1, 0]])  # attribute 1: no negative
    s = np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8], [0.3, 0.2]])
    assert np.allclose(attribute_aucs(s, labels), [0.0, 1.0])
    # θ̂ = θ* = θ*_{-S}: both distances 0 -> γ = 0.5 by convention.
    assert similarity_ratio(s, s, s, labels) == 0.5


# Two score vectors whose AUCs are both exactly 27/40 (counted by hand over the 5 × 4 pairs:
# 13 ordered pairs + 1 tie of 20 -> 27/40); scikit-learn's trapezoid sums round them to
# 0.6749999999999999 and 0.675, one unit apart.
TIE_LABELS = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1])[:, None]
TIE_A = np.array([0.0, 0.0, 4.0, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0])[:, None]
TIE_B = np.array([0.0, 1.0, 2.0, 1.0, 3.0, 3.0, 2.0, 2.0, 3.0])[:, None]


def _pair_count_auc(y: np.ndarray, s: np.ndarray) -> Fraction:
    pos, neg = s[y == 1], s[y == 0]
    twice = sum(2 * int(p > n) + int(p == n) for p in pos for n in neg)
    return Fraction(twice, 2 * len(pos) * len(neg))


def test_equal_true_aucs_are_equal_floats_and_the_tie_gives_one_half() -> None:
    assert _pair_count_auc(TIE_LABELS[:, 0], TIE_A[:, 0]) == Fraction(27, 40)
    assert _pair_count_auc(TIE_LABELS[:, 0], TIE_B[:, 0]) == Fraction(27, 40)
    a = attribute_aucs(TIE_A, TIE_LABELS)
    b = attribute_aucs(TIE_B, TIE_LABELS)
    assert a[0] == b[0] == 27 / 40
    # θ̂ = θ* = A and θ*_{-S} = B: all three AUCs are 27/40, so γ is the 0/0 value 0.5
    # (unsnapped it was 0.0: D(θ̂, θ*) = 0 and D(θ̂, θ*_{-S}) = one rounding unit).
    assert similarity_ratio(TIE_A, TIE_A, TIE_B, TIE_LABELS) == 0.5
    assert similarity_ratio(TIE_B, TIE_A, TIE_B, TIE_LABELS) == 0.5


def test_snapped_aucs_equal_the_pair_count_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = np.array([0, 1] + list(rng.integers(0, 2, 10)))
        s = rng.integers(0, 5, 12).astype(np.float64)
        exact = _pair_count_auc(y, s)
        assert attribute_aucs(s[:, None], y[:, None])[0] == float(exact)


def test_shape_errors() -> None:
    with pytest.raises(DataError):
        attribute_aucs(S_HAT[:, :2], LABELS)
    with pytest.raises(DataError):
        similarity_ratio_grid([], S_ORIG, S_RETR, LABELS)
