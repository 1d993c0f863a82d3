"""Population loss-LR MIA, indiscernibility, SVC MIA-efficacy, entropy-LR: known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit

from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics.mia import (
    entropy_lr_member_rate,
    indiscernibility,
    population_mia,
    population_mia_folds,
    svc_mia_efficacy,
    val_test_mia,
)


def test_same_loss_distribution_is_chance() -> None:
    rng = np.random.default_rng(1)
    forget, val, test = (rng.exponential(size=k) for k in (500, 300, 800))
    both = val_test_mia(forget, val, test)  # Deep Unlearn's "Val MIA" and "Test MIA"
    assert abs(both["val_mia"] - 0.5) < 0.07 and abs(both["test_mia"] - 0.5) < 0.07


def test_overfit_original_is_detected() -> None:
    rng = np.random.default_rng(2)
    forget = rng.uniform(0, 0.01, size=300)  # memorised: near-zero losses
    test = 0.5 + rng.exponential(size=400)
    assert population_mia(forget, test) > 0.9


def test_procedure_matches_a_step_by_step_reimplementation() -> None:
    rng = np.random.default_rng(3)
    forget, hold = rng.exponential(0.5, size=60), rng.exponential(1.0, size=45)
    f0, h0 = forget.copy(), hold.copy()
    # By hand: shuffle with the seeded legacy RNG (forget, then hold-out), keep m = 45 each.
    r = np.random.RandomState(123)
    f, h = forget.copy(), hold.copy()
    r.shuffle(f)
    r.shuffle(h)
    x = np.concatenate([h[:45], f[:45]])[:, None]
    y = np.array([0] * 45 + [1] * 45)
    accs = []
    for tr, te in StratifiedShuffleSplit(n_splits=10, random_state=123).split(x, y):
        accs.append(LogisticRegression().fit(x[tr], y[tr]).score(x[te], y[te]))
    assert np.allclose(population_mia_folds(forget, hold), accs)
    assert np.array_equal(forget, f0) and np.array_equal(hold, h0)  # inputs not shuffled


def test_indiscernibility() -> None:
    assert indiscernibility(0.5) == 1.0
    assert indiscernibility(0.75) == 0.5
    assert indiscernibility(0.25) == 0.5  # over-forgetting penalised alike
    assert indiscernibility(1.0) == 0.0
    with pytest.raises(NumericalError):
        indiscernibility(1.2)
    with pytest.raises(DataError):
        population_mia(np.ones(3), np.ones(3))


def test_svc_mia_efficacy_known_answers() -> None:
    rng = np.random.default_rng(4)
    retain = rng.uniform(0.9, 1.0, size=150)  # members: confident
    test = rng.uniform(0.0, 0.6, size=100)  # non-members
    assert svc_mia_efficacy(retain, test, rng.uniform(0.9, 1.0, size=50)) < 0.05
    assert svc_mia_efficacy(retain, test, rng.uniform(0.0, 0.6, size=50)) > 0.95


def test_entropy_lr_member_rate_known_answers() -> None:
    rng = np.random.default_rng(5)
    retain = rng.uniform(0.0, 0.2, size=200)  # members: low entropy
    test = rng.uniform(0.8, 2.0, size=100)
    assert entropy_lr_member_rate(retain, test, rng.uniform(0.0, 0.2, size=50)) > 0.95
    assert entropy_lr_member_rate(retain, test, rng.uniform(0.8, 2.0, size=50)) < 0.05
