"""Memorisation scores on a hand-worked inclusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit.metrics.memorisation import memorisation_scores, most_memorised


def test_hand_worked_scores():
    inside = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)
    stat = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    # x0: IN models 0, 2 -> 1, 1; OUT 1, 3 -> 0, 0: mem = 1
    # x1: IN 1, 2 -> 1, 1; OUT 0, 3 -> 0, 1: mem = 0.5
    # x2: IN 0, 1 -> 1, 1; OUT 2, 3 -> 0, 1: mem = 0.5
    assert np.allclose(memorisation_scores(stat, inside), [1.0, 0.5, 0.5])
    assert most_memorised(np.array([10, 11, 12]), np.array([1.0, 0.5, 0.5]), 2).tolist() == [10, 11]


def test_never_out_is_refused():
    with pytest.raises(DataError, match="never IN or never OUT"):
        memorisation_scores(np.ones((2, 2)), np.array([[1, 0], [1, 1]], dtype=bool))
