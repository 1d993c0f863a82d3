"""Memorisation scores from a shadow pool (Feldman 2020; margin form as in Georgiev et al. 2024).

A shadow pool trains models on random subsets of D, so each example is IN (trained on) for
some models and OUT for the others. With the 0/1 inclusion matrix ``inside`` (models × n)
and a per-model, per-example statistic s (correctness or margin), the leave-out estimate is

    mem(x) = mean_{models with x IN} s(x) − mean_{models with x OUT} s(x)

Direction: higher = more memorised (the model does better on x only when it trained on x).
A memorisation-stratified forget set takes the examples with the largest scores.
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import DataError


def memorisation_scores(stat: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """mem(x) for statistics ``stat`` (models, n) and inclusion ``inside`` (models, n), bool.

    Every example must be IN for at least one model and OUT for at least one.
    """
    s = np.asarray(stat, dtype=np.float64)
    m = np.asarray(inside, dtype=bool)
    if s.shape != m.shape or s.ndim != 2:
        raise DataError(
            f"stat and inside must be (models, n) of one shape, got {s.shape}, {m.shape}"
        )
    n_in, n_out = m.sum(axis=0), (~m).sum(axis=0)
    if (n_in == 0).any() or (n_out == 0).any():
        raise DataError(
            f"{int(((n_in == 0) | (n_out == 0)).sum())} example(s) are never IN or never OUT; "
            "use more shadow models"
        )
    return (s * m).sum(axis=0) / n_in - (s * ~m).sum(axis=0) / n_out


def most_memorised(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The ids of the ``k`` examples with the largest scores (ties: the smaller id first)."""
    if not 0 < k <= len(ids):
        raise DataError(f"k must be in 1..{len(ids)}, got {k}")
    order = np.lexsort((np.asarray(ids), -np.asarray(scores)))
    return np.asarray(ids)[order[:k]]
