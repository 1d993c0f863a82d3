"""U-LiRA per-example Gaussian fits and likelihood-ratio attack: known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from unlearnkit.errors import DataError
from unlearnkit.metrics.ulira import (
    DEEP_UNLEARN_COMPAT,
    LiraFitConfig,
    evaluate_ulira,
    fit_gaussians,
    lira_scores,
    membership_probability,
)


def _population(shift: float, n_models: int = 160, n_ex: int = 60, seed: int = 0):
    """φ ~ N(μ_x + shift·IN, 1), per-example centres μ_x ∈ U(−5, 5), IN w.p. 1/2."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-5, 5, size=n_ex)
    is_in = rng.random((n_models, n_ex)) < 0.5
    stat = mu[None, :] + shift * is_in + rng.normal(size=(n_models, n_ex))
    return stat, is_in


def test_fit_by_hand() -> None:
    stat = np.array([[1.0, 0.0], [2.0, 4.0], [3.0, 8.0], [10.0, 1.0], [20.0, 3.0]])
    in_mask = np.array([[1, 1], [1, 1], [1, 0], [0, 0], [0, 0]], dtype=bool)
    cfg = LiraFitConfig(variance="per_example")
    f = fit_gaussians(stat, in_mask, config=cfg)
    # Example 0: IN {1,2,3} -> median 2, std √(2/3); OUT {10,20} -> median 15, std 5.
    # Example 1: IN {0,4} -> median 2, std 2; OUT {8,1,3} -> median 3, mean 4,
    #   deviations 4, −3, −1 -> std √(26/3).
    assert np.allclose(f.mu_in, [2, 2]) and np.allclose(f.mu_out, [15, 3])
    assert np.allclose(f.sd_in, [math.sqrt(2 / 3), 2.0])
    assert np.allclose(f.sd_out, [5.0, math.sqrt(26 / 3)])
    g = fit_gaussians(stat, in_mask, config=LiraFitConfig(variance="global"))
    # Pooled IN: squared deviations from per-example means: (1+0+1) + (4+4) = 10 over 5.
    assert np.allclose(g.sd_in, math.sqrt(10 / 5))
    # Pooled OUT: (25 + 25) + 26 = 76 over 5 entries.
    assert np.allclose(g.sd_out, math.sqrt(76 / 5))
    h = fit_gaussians(stat, in_mask, config=LiraFitConfig(variance="global", global_std="in_pool"))
    assert np.allclose(h.sd_out, np.std([1.0, 2.0, 3.0, 0.0, 4.0]))
    x = np.array([2.5, 1.0])
    expect = norm.logpdf(x, f.mu_in, f.sd_in) - norm.logpdf(x, f.mu_out, f.sd_out)
    assert np.allclose(lira_scores(x, f), expect)
    assert np.allclose(lira_scores(x, f, "offline"), norm.logcdf(x, f.mu_out, f.sd_out))
    assert membership_probability(np.array([0.0]))[0] == 0.5


def test_auto_variance_and_floor() -> None:
    stat, is_in = _population(0.0, n_models=20, n_ex=5)
    assert not fit_gaussians(stat, is_in).per_example_variance  # < 32 models per side
    assert fit_gaussians(
        stat, is_in, config=LiraFitConfig(min_models_per_side=3)
    ).per_example_variance
    const = np.ones((6, 2))  # 0/1 statistics: σ = 0 -> floored, finite scores
    f = fit_gaussians(
        const,
        np.array([[1, 1], [1, 1], [1, 1], [0, 0], [0, 0], [0, 0]]),
        config=DEEP_UNLEARN_COMPAT,
    )
    assert np.all(f.sd_in == 1e-3) and np.all(np.isfinite(lira_scores(const[0], f)))


def test_identical_distributions_are_at_chance() -> None:
    stat, is_in = _population(0.0)
    res = evaluate_ulira(stat, is_in, target_models=range(120, 160))
    assert abs(res.metrics.balanced_accuracy - 0.5) < 0.05
    assert abs(res.metrics.auc - 0.5) < 0.05
    assert res.metrics.n_pos + res.metrics.n_neg == 40 * 60


def test_per_example_attack_matches_bayes_accuracy() -> None:
    # IN = OUT + 3 with σ = 1: the optimal test has accuracy Φ(1.5) ≈ 0.933 and AUC
    # Φ(3/√2) ≈ 0.983. A single population threshold on raw φ does much worse, because
    # the example centres spread over [−5, 5].
    stat, is_in = _population(3.0, seed=1)
    t = np.arange(120, 160)
    res = evaluate_ulira(stat, is_in, target_models=t)
    assert res.metrics.balanced_accuracy == pytest.approx(norm.cdf(1.5), abs=0.03)
    assert res.metrics.auc == pytest.approx(norm.cdf(3 / math.sqrt(2)), abs=0.02)
    assert res.metrics.tpr_at_fpr[0.01] > 0.3
    population_auc = roc_auc_score(is_in[t].ravel(), stat[t].ravel())
    assert population_auc < 0.8
    off = evaluate_ulira(stat, is_in, target_models=t, mode="offline")
    assert off.metrics.auc == pytest.approx(norm.cdf(3 / math.sqrt(2)), abs=0.02)
    assert math.isnan(off.metrics.balanced_accuracy)


def test_entries_outside_both_masks_are_ignored() -> None:
    stat, is_in = _population(3.0, seed=2)
    # Examples 0–4 sat in the retain set of 3 in 4 models that did not forget them: those
    # entries are neither IN nor OUT and must not be scored.
    neither = (np.arange(160)[:, None] % 4 != 0) & (np.arange(60)[None, :] < 5) & ~is_in
    out = ~is_in & ~neither
    res = evaluate_ulira(stat, is_in, out, target_models=range(140, 160))
    trial = (is_in | out)[140:]
    assert np.isnan(res.scores[~trial]).all() and np.isfinite(res.scores[trial]).all()


def test_errors_leave_inputs_untouched() -> None:
    stat, is_in = _population(0.0, n_models=10, n_ex=3)
    before = stat.copy()
    with pytest.raises(DataError):
        fit_gaussians(stat, is_in, is_in)  # overlapping masks
    with pytest.raises(DataError):
        fit_gaussians(stat, np.zeros_like(is_in))  # no IN models
    with pytest.raises(DataError):
        evaluate_ulira(stat, is_in, target_models=[10])
    assert np.array_equal(stat, before)
