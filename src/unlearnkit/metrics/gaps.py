"""Gaps to the retrained model, SAPE, ΔAcc, Avg. Gap and Deep Unlearn's HPO objectives.

Source: docs/evaluation.md The reference for every gap is the retrained model θ_r;
direction: *smaller gap is better* (0 = matches retrain).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from unlearnkit.errors import DataError, NumericalError


def gap(value: float, reference: float) -> float:
    """Δ_X = |X(θ_u) − X(θ_r)|. Smaller is better; 0 means the method matches retrain."""
    return abs(float(value) - float(reference))


def avg_gap(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    keys: Iterable[str] = ("UA", "MIA", "RA", "TA"),
) -> float:
    """Avg. Gap (SalUn / Sparse tables) = mean over keys of |X_u − X_r|.

    The default keys are {UA, MIA-efficacy (key ``"MIA"``), RA, TA}; use the same units
    (fractions or percent) for both dictionaries. Smaller is better.
    """
    keys = list(keys)
    missing = [k for k in keys if k not in unlearned or k not in retrained]
    if missing:
        raise DataError(f"avg_gap needs {missing} in both the unlearned and retrained metrics")
    return float(np.mean([gap(unlearned[k], retrained[k]) for k in keys]))


def delta_acc(unlearned: Mapping[str, float], retrained: Mapping[str, float]) -> float:
    """ΔAcc (torchunlearn) = |ΔRA| + |ΔFA| + |ΔTA|. Smaller is better."""
    return float(sum(gap(unlearned[k], retrained[k]) for k in ("RA", "FA", "TA")))


def sape(a: float, b: float) -> float:
    """Symmetric absolute percentage error SAPE(a, b) = 100·|b − a| / (|a| + |b|).

    In [0, 100]; 0 when a = b. SAPE(0, 0) is defined as 0 (the two values agree).
    Source: Deep Unlearn helper (docs/evaluation.md).
    """
    a, b = float(a), float(b)
    den = abs(a) + abs(b)
    if den == 0.0:
        return 0.0
    return 100.0 * abs(b - a) / den


def deep_unlearn_objectives(
    unlearned: Mapping[str, float], retrained: Mapping[str, float], val_indiscernibility: float
) -> tuple[float, float, float, float]:
    """Deep Unlearn's multi-objective HPO target (all four minimised).

    (⅓|RA_u − RA_r|, ⅓|FA_u − FA_r|, ⅓|VA_u − VA_r|, 1 − Indisc_val), where Indisc_val is
    the indiscernibility of the population MIA against the *validation* set
    (:func:`unlearnkit.metrics.mia.indiscernibility`). Source: docs/evaluation.md
    """
    if not 0.0 <= val_indiscernibility <= 1.0:
        raise NumericalError(f"indiscernibility must be in [0, 1], got {val_indiscernibility}")
    return (
        gap(unlearned["RA"], retrained["RA"]) / 3.0,
        gap(unlearned["FA"], retrained["FA"]) / 3.0,
        gap(unlearned["VA"], retrained["VA"]) / 3.0,
        1.0 - float(val_indiscernibility),
    )
