"""The NeurIPS 2023 machine-unlearning challenge score (Triantafillou et al. 2024).

Follows docs/evaluation.md, which restates ``google-deepmind/unlearning_evaluation``
(``metric.py`` / ``main.py``).

Inputs: for every forget example i, N_u values of the logit-scaled confidence φ_i under
independently unlearned models and N_r values under retrained models
(:func:`unlearnkit.metrics.signals.challenge_confidence`).

**Per-example ε.** Positive class = the pool with the larger median (the retrained pool only
if its median is strictly larger, as in the reference).
  * Both pools constant: ε = 0 if they hold the same value, else the cap. The reference
    crashes or returns the cap in these cases.
  * Range ratio min/max < 1 % (one pool is extremely peaky): ε = cap.
  * Otherwise ε = max over decision rules of
        ε(rule) = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR),
    clipped below at 0, with δ = 1e-5. FPR = FNR = 0 gives ε = ∞. A rule with exactly one of
    FPR, FNR equal to 0 is discarded. If every rule is discarded, ε = 0 by convention (the
    reference fails an assertion). The result is clipped to [0, 50].
  * Rule families:
      - single threshold: predict "positive" iff φ ≥ t;
      - double threshold: the "peakier" pool (smaller range; on a tie, the non-positive
        one) is predicted iff l ≤ φ ≤ r. Here r ∈ [A_min + w − 2, A_max + 2] and
        r − l ∈ [w − 2, w + 2], where A is the peakier pool and w its range.

**Modes** (registry :data:`EPSILON_MODES`):
  * ``"grid"``: the challenge's dense grids. Single: ⌈100·range⌉ thresholds spanning the
    pooled values. Double: ⌈100·(r_max − r_min)⌉ right ends × 400 left ends. The result
    matches the reference scorer up to floating-point ties: rates here are exact counts/N in
    float64, the reference uses float32.
  * ``"exact"``: the same two rule families with *continuous* thresholds, enumerated
    exactly at the sorted data values (open/closed interval ends handled). Every grid rule
    belongs to this family, so ε_exact ≥ ε_grid. The cost is O(M²) per example with
    M ≤ N_u + N_r distinct values (done in row blocks), and it needs no GPU.

**Forget score.** E_max = ⌈ln(N_u − 1)⌉. An ε in bucket k = ⌊ε / 0.5⌋ earns 2^(−k) points if
ε < E_max, and 0 points otherwise. ForgetScore = mean of the points.
**Final score** = ForgetScore · (mean RA_u / mean RA_r) · (mean TA_u / mean TA_r).

Directions: ε *lower is better* (0 = unlearned indistinguishable from retrained);
forget score and final score *higher is better* (at most 1 when utilities match).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics._arrays import as_float
from unlearnkit.registry import Registry

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0
PEAKY_RATIO = 0.01
BUCKET_WIDTH = 0.5
_BLOCK = 1 << 20  # max matrix entries per block in the exact double-threshold family


def rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε(rule) for arrays of (FPR, FNR): NaN = discarded rule, +∞ = perfect separation.

    ε = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), clipped below at 0.
    A term whose log argument is negative (rate = 1) is ignored, as ``np.nanmax`` does in
    the reference.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(1.0 - delta - fpr) - np.log(fnr)
        e2 = np.log(1.0 - delta - fnr) - np.log(fpr)
        eps = np.fmax(e1, e2)
    eps = np.where(np.isnan(eps), np.nan, np.maximum(eps, 0.0))
    both_zero = (fpr == 0) & (fnr == 0)
    one_zero = (fpr == 0) ^ (fnr == 0)
    eps = np.where(one_zero, np.nan, eps)
    return np.where(both_zero, np.inf, eps)


def _count_ge(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return sorted_x.size - np.searchsorted(sorted_x, t, side="left")


def _count_in(sorted_x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    n = np.searchsorted(sorted_x, hi, side="right") - np.searchsorted(sorted_x, lo, side="left")
    return np.maximum(n, 0)


def _single_rates(
    pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rule "positive iff φ ≥ t": FPR = #neg ≥ t / N_neg, FNR = #pos < t / N_pos."""
    sp, sn = np.sort(pos), np.sort(neg)
    fpr = _count_ge(sn, thresholds) / sn.size
    fnr = (sp.size - _count_ge(sp, thresholds)) / sp.size
    return fpr, fnr


def _peaky_split(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, B, w): A is the peakier pool (predicted inside the window), w its range."""
    dp, dn = float(np.ptp(pos)), float(np.ptp(neg))
    if dp >= dn:
        return neg, pos, dn
    return pos, neg, dp


def _grid_single(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([pos, neg])
    lo, hi = float(both.min()), float(both.max())
    num = int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
    return _single_rates(pos, neg, np.linspace(lo, hi, num))


def _grid_double(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, w = _peaky_split(pos, neg)
    r_lo, r_hi = float(a.min()) + w - BUFFER, float(a.max()) + BUFFER
    right = np.linspace(r_lo, r_hi, int(np.ceil((r_hi - r_lo) * THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
    left = np.linspace(right - w - BUFFER, right - w + BUFFER, n_left, axis=1)
    right2 = np.broadcast_to(right[:, None], left.shape)
    sa, sb = np.sort(a), np.sort(b)
    in_a = _count_in(sa, left, right2).ravel()
    in_b = _count_in(sb, left, right2).ravel()
    return in_b / sb.size, (sa.size - in_a) / sa.size


def _exact_single(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every t ∈ [min, max] behaves like the smallest data value ≥ t: enumerate those."""
    return _single_rates(pos, neg, np.unique(np.concatenate([pos, neg])))


def _exact_double_eps(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    """Max ε over the continuous double-threshold family (windows between data values).

    A window [u_i, u_j] of the distinct sorted values u is realised by l ∈ (u_{i−1}, u_i] and
    r ∈ [u_j, u_{j+1}). It belongs to the family iff such l, r satisfy
    R_lo ≤ r ≤ R_hi and w − 2 ≤ r − l ≤ w + 2.
    """
    a, b, w = _peaky_split(pos, neg)
    sa, sb = np.sort(a), np.sort(b)
    u = np.unique(np.concatenate([a, b]))
    m = u.size
    r_bound_lo, r_bound_hi = float(a.min()) + w - BUFFER, float(a.max()) + BUFFER
    prev = np.concatenate([[-np.inf], u[:-1]])
    nxt = np.concatenate([u[1:], [np.inf]])
    r_min = np.maximum(u, r_bound_lo)  # per column j
    r_open = nxt <= r_bound_hi
    r_max = np.where(r_open, nxt, r_bound_hi)
    col_ok = np.where(r_open, r_min < r_max, r_min <= r_max)
    a_le, a_lt = np.searchsorted(sa, u, "right"), np.searchsorted(sa, u, "left")
    b_le, b_lt = np.searchsorted(sb, u, "right"), np.searchsorted(sb, u, "left")
    best = -np.inf
    rows = max(1, _BLOCK // m)
    for start in range(0, m, rows):
        i = np.arange(start, min(m, start + rows))[:, None]
        j = np.arange(m)[None, :]
        feasible = (
            (j >= i)
            & col_ok[None, :]
            & (r_min[None, :] - u[i] <= w + BUFFER)
            & (r_max[None, :] - prev[i] > w - BUFFER)
        )
        if not feasible.any():
            continue
        ii, jj = np.nonzero(feasible)
        ii = ii + start
        in_a = a_le[jj] - a_lt[ii]
        in_b = b_le[jj] - b_lt[ii]
        eps = rule_epsilons(in_b / sb.size, (sa.size - in_a) / sa.size, delta)
        if np.isinf(eps).any():
            return np.inf
        if not np.all(np.isnan(eps)):
            best = max(best, float(np.nanmax(eps)))
    return best


def _max_eps(rates: tuple[np.ndarray, np.ndarray], delta: float) -> float:
    eps = rule_epsilons(rates[0], rates[1], delta)
    if np.isinf(eps).any():
        return np.inf
    return float(np.nanmax(eps)) if not np.all(np.isnan(eps)) else -np.inf


def _grid_mode_eps(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    return max(_max_eps(_grid_double(pos, neg), delta), _max_eps(_grid_single(pos, neg), delta))


def _exact_mode_eps(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    return max(_exact_double_eps(pos, neg, delta), _max_eps(_exact_single(pos, neg), delta))


#: mode name -> f(pos, neg, delta) -> max ε over surviving rules (−∞ if none survive).
EPSILON_MODES: Registry[Callable[[np.ndarray, np.ndarray, float], float]] = Registry("epsilon mode")
EPSILON_MODES.register("grid")(_grid_mode_eps)
EPSILON_MODES.register("exact")(_exact_mode_eps)


def example_epsilon(
    unlearned: Any,
    retrained: Any,
    *,
    mode: str = "exact",
    delta: float = DELTA,
    cap: float = EPSILON_CAP,
) -> float:
    """ε_i ∈ [0, cap] for one example from its pools (N_u,) and (N_r,) of φ values."""
    u = as_float(unlearned, "unlearned", ndim=1, min_size=2)
    r = as_float(retrained, "retrained", ndim=1, min_size=2)
    best = EPSILON_MODES.get(mode)
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    dp, dn = float(np.ptp(pos)), float(np.ptp(neg))
    largest, smallest = max(dp, dn), min(dp, dn)
    if largest == 0.0:
        return 0.0 if pos[0] == neg[0] else float(cap)
    if smallest / largest < PEAKY_RATIO:
        return float(cap)
    eps = best(pos, neg, delta)
    if not np.isfinite(eps):
        return float(cap) if eps > 0 else 0.0
    return float(np.clip(eps, 0.0, cap))


def per_example_epsilons(
    unlearned: Any,
    retrained: Any,
    *,
    mode: str = "exact",
    delta: float = DELTA,
    cap: float = EPSILON_CAP,
) -> np.ndarray:
    """ε for every forget example from pools of shape (N_u, n) and (N_r, n) -> (n,).

    ``mode`` is ``"exact"`` (continuous thresholds, ε ≥ grid) or ``"grid"`` (the
    challenge scorer's grids). Lower is better.
    """
    u = as_float(unlearned, "unlearned", ndim=2)
    r = as_float(retrained, "retrained", ndim=2)
    if u.shape[1] != r.shape[1]:
        raise DataError(f"pools cover different examples: {u.shape[1]} vs {r.shape[1]} columns")
    if u.shape[0] < 2 or r.shape[0] < 2:
        raise DataError("each pool needs at least 2 models (the challenge uses 512)")
    EPSILON_MODES.get(mode)
    return np.array(
        [
            example_epsilon(u[:, i], r[:, i], mode=mode, delta=delta, cap=cap)
            for i in range(u.shape[1])
        ]
    )


def max_epsilon(n_models: int) -> int:
    """E_max = ⌈ln(N − 1)⌉ (7 for N = 512): the largest ε that N models can resolve."""
    if n_models < 2:
        raise DataError("the forget score needs at least 2 unlearned models")
    return int(np.ceil(np.log(n_models - 1)))


def bucket_points(epsilons: Any, n_models: int) -> np.ndarray:
    """Points per example: 2^(−⌊ε/0.5⌋) if ε < E_max, else 0 (first bucket [0, 0.5) = 1)."""
    eps = as_float(epsilons, "epsilons", finite=False)
    if np.any(np.isnan(eps)) or np.any(eps < 0):
        raise NumericalError("epsilons must be non-negative numbers")
    e_max = max_epsilon(n_models)
    k = np.floor(np.minimum(eps, 2.0 * e_max + 2) / BUCKET_WIDTH)
    return np.where(eps < e_max, 0.5**k, 0.0)


def forget_score(epsilons: Any, n_models: int) -> float:
    """ForgetScore = (1/|D_f|) Σ_i points(ε_i) ∈ [0, 1]. Higher is better."""
    return float(np.mean(bucket_points(epsilons, n_models)))


@dataclass(frozen=True)
class ForgetScoreResult:
    """Per-example ε, their points, E_max and the forget score (higher is better)."""

    epsilons: np.ndarray
    points: np.ndarray
    max_epsilon: int
    forget_score: float
    mode: str


def forget_score_from_confidences(
    unlearned: Any, retrained: Any, *, mode: str = "exact", delta: float = DELTA
) -> ForgetScoreResult:
    """The challenge's ``compute_forget_score_from_confs``: pools (N_u, n), (N_r, n) -> score.

    E_max uses N_u, the number of unlearned models, as the reference does.
    """
    eps = per_example_epsilons(unlearned, retrained, mode=mode, delta=delta)
    n_models = as_float(unlearned, "unlearned", ndim=2).shape[0]
    pts = bucket_points(eps, n_models)
    return ForgetScoreResult(eps, pts, max_epsilon(n_models), float(pts.mean()), mode)


def challenge_score(
    forget: float,
    ra_unlearned: Sequence[float],
    ra_retrained: Sequence[float],
    ta_unlearned: Sequence[float],
    ta_retrained: Sequence[float],
) -> float:
    """Score = F · (mean_k RA(θ_u^k) / mean_k RA(θ_r^k)) · (mean_k TA(θ_u^k) / mean_k TA(θ_r^k)).

    Higher is better. The accuracies are per model (one per unlearning or retraining run).
    """
    ra_u = float(np.mean(as_float(ra_unlearned, "ra_unlearned")))
    ra_r = float(np.mean(as_float(ra_retrained, "ra_retrained")))
    ta_u = float(np.mean(as_float(ta_unlearned, "ta_unlearned")))
    ta_r = float(np.mean(as_float(ta_retrained, "ta_retrained")))
    if ra_r == 0.0 or ta_r == 0.0:
        raise NumericalError("retrained accuracies are 0; the utility ratios are undefined")
    return float(forget) * (ra_u / ra_r) * (ta_u / ta_r)
