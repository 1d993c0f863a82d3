"""NeurIPS 2023 challenge ε / forget score: hand-computed cases and brute-force rule families."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.epsilon_score import (
    DELTA,
    EPSILON_CAP,
    bucket_points,
    challenge_score,
    example_epsilon,
    forget_score_from_confidences,
    max_epsilon,
    per_example_epsilons,
    rule_epsilons,
)

MODES = ("exact", "grid")


def _eps_scalar(fpr: float, fnr: float) -> float:
    """ε of one rule written straight from spec §3.3 (NaN = discarded)."""
    if fpr == 0 and fnr == 0:
        return math.inf
    if fpr == 0 or fnr == 0:
        return math.nan
    terms = []
    if 1 - DELTA - fpr > 0:
        terms.append(math.log(1 - DELTA - fpr) - math.log(fnr))
    if 1 - DELTA - fnr > 0:
        terms.append(math.log(1 - DELTA - fnr) - math.log(fpr))
    return max(0.0, max(terms)) if terms else math.nan


def _finish(eps_values: list[float]) -> float:
    if any(math.isinf(e) for e in eps_values):
        return EPSILON_CAP
    kept = [e for e in eps_values if not math.isnan(e)]
    return min(EPSILON_CAP, max(kept)) if kept else 0.0


def _split(
    u: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    a, b = (neg, pos) if np.ptp(pos) >= np.ptp(neg) else (pos, neg)
    return pos, neg, a, b, float(np.ptp(a))


def test_rule_epsilon_cases() -> None:
    e = rule_epsilons(np.array([0.0, 0.0, 0.25, 1.0, 0.5]), np.array([0.0, 0.5, 0.25, 1.0, 0.5]))
    assert math.isinf(e[0]) and math.isnan(e[1]) and math.isnan(e[3])
    assert e[2] == pytest.approx(math.log((0.75 - DELTA) / 0.25))
    assert e[4] == 0.0  # log((0.5 − δ)/0.5) < 0, clipped to 0


@pytest.mark.parametrize("mode", MODES)
def test_hand_built_forget_and_final_score(mode: str) -> None:
    # Example 0: unlearned {0,1,2,3}, retrained {1.5,2.5,3.5,4.5}; medians 1.5 < 3 -> positive
    # = retrained. Single threshold t ∈ (2, 2.5]: TPR = 3/4 (2.5, 3.5, 4.5), FPR = 1/4 (3):
    #   ε = log(1 − δ − 1/4) − log(1/4) = log(2.99996) ≈ 1.0986, the best rule. Example:
    #   t ∈ (1.5, 2] gives FPR 2/4, FNR 1/4 -> log((0.5−δ)/0.25) ≈ 0.693; FPR = 0 or FNR = 0
    #   rules are discarded. The window family (peakier = unlearned on the tie of ranges 3 = 3)
    #   tops out at [0, 2]: FNR 1/4, FPR 1/4, the same value.
    # Example 1: identical pools -> every surviving rule has FNR = 1 − FPR -> ε = 0.
    u = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0], [3.0, 8.0]])
    r = np.array([[1.5, 5.0], [2.5, 6.0], [3.5, 7.0], [4.5, 8.0]])
    eps = per_example_epsilons(u, r, mode=mode)
    assert eps == pytest.approx([math.log((0.75 - 1e-5) / 0.25), 0.0])
    # N = 4: E_max = ⌈ln 3⌉ = 2; ε0 ≈ 1.0986 ∈ [1, 1.5) -> 2^-2 = 0.25; ε1 = 0 -> 1 point.
    res = forget_score_from_confidences(u, r, mode=mode)
    assert res.max_epsilon == 2
    assert res.points == pytest.approx([0.25, 1.0])
    assert res.forget_score == pytest.approx(0.625)
    # Final = 0.625 · (0.9 / 0.95) · (0.8 / 0.85), with per-model accuracy means.
    final = challenge_score(res.forget_score, [0.9, 0.9], [0.94, 0.96], [0.8], [0.85])
    assert final == pytest.approx(0.625 * 0.9 / 0.95 * 0.8 / 0.85)


@pytest.mark.parametrize("mode", MODES)
def test_identical_pools_give_zero_epsilon(mode: str) -> None:
    pool = np.random.default_rng(0).normal(size=(24, 4))
    eps = per_example_epsilons(pool, pool.copy(), mode=mode)
    assert np.all(eps == 0.0)
    assert forget_score_from_confidences(pool, pool.copy(), mode=mode).forget_score == 1.0


@pytest.mark.parametrize("mode", MODES)
def test_separated_pools_reach_the_cap(mode: str) -> None:
    rng = np.random.default_rng(1)
    u, r = rng.normal(size=(24, 3)), 10 + rng.normal(size=(24, 3))
    assert np.all(per_example_epsilons(u, r, mode=mode) == EPSILON_CAP)
    assert forget_score_from_confidences(u, r, mode=mode).forget_score == 0.0


def test_degenerate_pools() -> None:
    spread = np.linspace(0.0, 1.0, 8)
    assert example_epsilon(np.full(8, 0.5), spread) == EPSILON_CAP  # peaky: range ratio 0
    assert example_epsilon(np.full(8, 0.5), np.full(8, 0.5)) == 0.0
    assert example_epsilon(np.full(8, 0.5), np.full(8, 0.7)) == EPSILON_CAP


def _eps_vec(fpr: np.ndarray, fnr: np.ndarray) -> list[float]:
    return [_eps_scalar(f, n) for f, n in set(zip(fpr.tolist(), fnr.tolist(), strict=True))]


def _window_rates(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Predict pool A iff lo ≤ φ ≤ hi, by dense comparison over all models: (FPR, FNR)."""
    lo, hi = lo.ravel()[:, None], hi.ravel()[:, None]
    fpr = ((lo <= b[None, :]) & (b[None, :] <= hi)).mean(axis=1)
    fnr = 1.0 - ((lo <= a[None, :]) & (a[None, :] <= hi)).mean(axis=1)
    return fpr, fnr


def _single_rates(pos: np.ndarray, neg: np.ndarray, ts: np.ndarray):
    return (neg[None, :] >= ts[:, None]).mean(axis=1), (pos[None, :] < ts[:, None]).mean(axis=1)


def test_grid_mode_matches_dense_reference_rules() -> None:
    """The grid mode equals direct comparisons over the challenge's full grids."""
    rng = np.random.default_rng(2)
    for _ in range(3):
        u, r = rng.normal(size=7), rng.normal(0.7, 1.3, size=7)
        pos, neg, a, b, w = _split(u, r)
        allv = np.concatenate([pos, neg])
        single = np.linspace(allv.min(), allv.max(), int(np.ceil(np.ptp(allv) * 100)))
        eps = _eps_vec(*_single_rates(pos, neg, single))
        lo, hi = a.min() + w - 2, a.max() + 2
        right = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
        left = np.stack([np.linspace(t - w - 2, t - w + 2, 400) for t in right])
        eps += _eps_vec(*_window_rates(a, b, left, np.repeat(right[:, None], 400, axis=1)))
        assert example_epsilon(u, r, mode="grid") == pytest.approx(_finish(eps), abs=1e-12)


def test_exact_mode_equals_brute_force_continuous_family() -> None:
    """On quarter-lattice data, a 1/16 lattice of thresholds realises every rule."""
    rng = np.random.default_rng(3)
    step = 1 / 16
    cases = [(rng.integers(0, 12, size=6) / 4, rng.integers(3, 16, size=6) / 4) for _ in range(5)]
    # A case where the window-width limits bind. Retrained is positive (median 4.125 > 2.75)
    # and peakier (range 2.25 < 9.25), so windows have width ≤ 2.25 + 2. The best rule is the
    # single threshold t = 3.5: FNR 1/6, FPR 2/6 (8.25, 9.75) -> ε = log((1 − δ − 1/3)·6).
    # The window [3.5, 8.25] (FNR 1/6, FPR 1/6 -> log 5) is 4.75 wide, outside the family.
    cases.append(
        (np.array([0.5, 1.25, 2.75, 8.25, 9.75, 2.75]), np.array([3.5, 5.0, 2.75, 4.25, 4.25, 4.0]))
    )
    for u, r in cases:
        pos, neg, a, b, w = _split(u, r)
        allv = np.concatenate([pos, neg])
        ts = np.arange(allv.min() - 1, allv.max() + 1 + step, step)
        eps = _eps_vec(*_single_rates(pos, neg, ts))
        rs = np.arange(a.min() + w - 2, a.max() + 2 + step / 2, step)
        widths = np.arange(w - 2, w + 2 + step / 2, step)
        hi = np.repeat(rs[:, None], widths.size, axis=1)
        eps += _eps_vec(*_window_rates(a, b, hi - widths[None, :], hi))
        assert example_epsilon(u, r, mode="exact") == pytest.approx(_finish(eps), abs=1e-12)
    assert example_epsilon(*cases[-1]) == pytest.approx(math.log((1 - DELTA - 1 / 3) * 6))


def test_exact_is_at_least_grid() -> None:
    rng = np.random.default_rng(4)
    u, r = rng.normal(size=(16, 6)), rng.normal(0.5, 1.5, size=(16, 6))
    assert np.all(per_example_epsilons(u, r) >= per_example_epsilons(u, r, mode="grid") - 1e-12)


def test_bucket_points() -> None:
    assert max_epsilon(512) == 7
    eps = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 6.99, 7.0, 50.0])
    expect = [1, 1, 0.5, 0.5, 0.25, 2.0**-13, 0, 0]
    assert np.allclose(bucket_points(eps, 512), expect)


def test_input_errors() -> None:
    with pytest.raises(DataError):
        per_example_epsilons(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(DataError):
        per_example_epsilons(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ConfigError):
        per_example_epsilons(np.zeros((4, 3)), np.zeros((4, 3)), mode="dense")
