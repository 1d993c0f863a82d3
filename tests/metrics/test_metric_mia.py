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
    population_mia_sample,
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


def _legacy_shuffle_permutation(raw: list[int], n: int) -> list[int]:
    """NumPy's legacy ``RandomState.shuffle`` by hand: Fisher-Yates from the top, each index
    j in [0, i] drawn from the raw 32-bit MT19937 outputs masked to the smallest all-ones
    value >= i, a draw above i rejected (``random_interval``). ``raw`` is consumed."""
    perm = list(range(n))
    for i in reversed(range(1, n)):
        mask = i
        for s in (1, 2, 4, 8, 16):
            mask |= mask >> s
        j = raw.pop(0) & mask
        while j > i:
            j = raw.pop(0) & mask
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def _raw_stream(seed: int, k: int) -> list[int]:
    bg = np.random.MT19937()
    bg.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.random.RandomState(seed).get_state()[1], "pos": 624},
    }
    return [int(v) for v in bg.random_raw(k)]


def test_faithful_sample_hand_worked() -> None:
    # 5 forget losses, 7 hold-out losses: m = 5. The released code shuffles the hold-out
    # losses first, then the forget losses, on one stream seeded 123.
    forget = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    hold = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
    raw = _raw_stream(123, 64)
    perm_h = _legacy_shuffle_permutation(raw, 7)
    perm_f = _legacy_shuffle_permutation(raw, 5)
    assert perm_h == [1, 3, 4, 0, 2, 5, 6] and perm_f == [0, 4, 2, 3, 1]
    x, y = population_mia_sample(forget, hold)
    # forget first, labelled 0; hold-out (first 5 after its shuffle) labelled 1
    assert x[:, 0].tolist() == [0.0, 0.4, 0.2, 0.3, 0.1, 1.1, 1.3, 1.4, 1.0, 1.2]
    assert y.tolist() == [0] * 5 + [1] * 5
    # the earlier order: forget shuffled first (same two permutations, other arrays)
    raw = _raw_stream(123, 64)
    pf, ph = _legacy_shuffle_permutation(raw, 5), _legacy_shuffle_permutation(raw, 7)
    x2, y2 = population_mia_sample(forget, hold, faithful=False)
    assert x2[:, 0].tolist() == [*hold[ph][:5], *forget[pf]]
    assert y2.tolist() == [0] * 5 + [1] * 5
    assert forget.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]  # inputs not shuffled in place


def _released_attack(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Deep Unlearn's ``evaluate_mia_on_pointwise_losses(first, second)`` step by step (global
    RNG, in-place shuffles, its variable names), called as (hold-out, forget)."""
    np.random.shuffle(first)
    np.random.shuffle(second)
    m = min(len(first), len(second))
    named_forget, named_test = first[:m], second[:m]
    x = np.concatenate((named_test, named_forget)).reshape((-1, 1))
    y = np.concatenate((np.zeros(m, dtype=int), np.ones(m, dtype=int)))
    cv = StratifiedShuffleSplit(n_splits=10, random_state=123)
    return np.array(
        [LogisticRegression().fit(x[a], y[a]).score(x[b], y[b]) for a, b in cv.split(x, y)]
    )


def test_faithful_mode_matches_the_released_evaluation() -> None:
    rng = np.random.default_rng(3)
    forget = rng.exponential(0.5, size=60)
    val, test = rng.exponential(1.0, size=45), rng.exponential(0.8, size=70)
    saved = np.random.get_state()
    try:
        np.random.seed(123)  # their setup_seed(random_state), once per evaluation
        want_val = _released_attack(val.copy(), forget.copy())
        want_test = _released_attack(test.copy(), forget.copy())  # the stream goes on
    finally:
        np.random.set_state(saved)
    assert np.array_equal(population_mia_folds(forget, val), want_val)
    both = val_test_mia(forget, val, test)
    assert both["val_mia"] == float(np.mean(want_val))
    assert both["test_mia"] == float(np.mean(want_test))
    # the earlier order is a different draw of the same attack: the folds differ
    assert not np.array_equal(population_mia_folds(forget, val, faithful=False), want_val)


def test_unfaithful_procedure_matches_a_step_by_step_reimplementation() -> None:
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
    assert np.allclose(population_mia_folds(forget, hold, faithful=False), accs)
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
