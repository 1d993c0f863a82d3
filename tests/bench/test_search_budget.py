"""Issue 13: sampler seeds per study, proposals that depend on the objectives, pruning."""

from __future__ import annotations

import hashlib
import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from unlearnkit.bench.config import SearchConfig
from unlearnkit.bench.pruning import PruneRule, constant_accuracy, objectives
from unlearnkit.bench.search import open_study, run_study, sampler_seed, select_best

SPACE = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}
CFG = SearchConfig(trials=12, population_size=4)


def _near(p):  # objectives minimised near (0.2, 0.8)
    return (abs(p["x"] - 0.2), abs(p["y"] - 0.8), p["x"] * p["y"], 0.0), {}


def _far(p):  # objectives minimised near (0.9, 0.1)
    return (abs(p["x"] - 0.9), abs(p["y"] - 0.1), (1 - p["x"]) * p["y"], 0.0), {}


def _proposals(objective, seed: int, name: str) -> list[tuple[float, float]]:
    study = open_study(name, optuna.storages.InMemoryStorage(), CFG, seed)
    run_study(study, SPACE, objective, CFG.trials, max_failed=0)
    return [(t.params["x"], t.params["y"]) for t in study.trials]


def test_sampler_seed_is_the_hash_of_the_study_key():
    want = int(hashlib.sha256(b"unlearnkit-study|digits|mlp|ft|0").hexdigest()[:8], 16)
    assert sampler_seed("digits", "mlp", "ft", 0) == want
    keys = [
        ("digits", "mlp", "ft", 0),
        ("digits", "mlp", "ft", 1),
        ("digits", "mlp", "ga", 0),
        ("digits", "cnn", "ft", 0),
        ("mnist1d", "mlp", "ft", 0),
    ]
    seeds = [sampler_seed(*k) for k in keys]
    assert len(set(seeds)) == len(keys)  # every component of the key changes the seed
    assert all(0 <= s < 2**32 for s in seeds)
    assert sampler_seed(*keys[0]) == seeds[0]  # a pure function: a study resumes its stream


def test_two_studies_with_different_objectives_propose_different_trials():
    # two methods searched with the same search seed (0) in the same setting
    a = _proposals(_near, sampler_seed("digits", "mlp", "ft", 0), "a")
    b = _proposals(_far, sampler_seed("digits", "mlp", "ga", 0), "b")
    assert len(a) == len(b) == 12
    assert all(pa != pb for pa, pb in zip(a, b, strict=True))
    assert len(set(a) & set(b)) == 0


def test_proposals_after_the_first_generation_follow_the_objectives():
    # same sampler seed: the first generation (population 4) is the same random draw, the
    # next ones are bred from parents chosen by the objectives, so they differ
    seed = sampler_seed("digits", "mlp", "ft", 0)
    a, b = _proposals(_near, seed, "a"), _proposals(_far, seed, "b")
    assert a[:4] == b[:4]
    assert a[4:] != b[4:]
    assert a == _proposals(_near, seed, "c")  # and a study is reproducible


def test_prune_rule_on_hand_values():
    o = (0.01, 0.05, 0.0, 0.4)  # the Original's objectives
    rule = PruneRule(original=o, constant_accuracy=0.3)
    ok = {"RA": 0.9, "FA": 0.8, "VA": 0.7, "val_mia": 0.6}
    assert rule((0.02, 0.01, 0.0, 0.3), ok) is None  # better on FA and Indisc
    assert rule((0.01, 0.05, 0.0, 0.4), ok) == "dominated by the Original"  # a do-nothing
    assert rule((0.02, 0.06, 0.01, 0.5), ok) == "dominated by the Original"
    assert rule((0.02, 0.01, 0.0, 0.3), {**ok, "RA": 0.3}) == "collapsed"
    assert rule((math.nan, 0.0, 0.0, 0.0), ok) == "non-finite"
    assert rule((0.0, 0.0, 0.0, 0.0), {**ok, "val_mia": math.inf}) == "non-finite"
    assert PruneRule()((0.5, 0.5, 0.5, 0.5), ok) is None
    assert constant_accuracy([0, 1, 1, 2, 1]) == pytest.approx(3 / 5)
    # objectives against the Retrain: ⅓|ΔRA|, ⅓|ΔFA|, ⅓|ΔVA|, 1 − (1 − |2·0.6 − 1|)
    r = {"RA": 0.6, "FA": 0.5, "VA": 0.7}
    assert objectives(ok, r) == pytest.approx((0.1, 0.1, 0.0, 0.2))


def test_pruned_trials_fill_the_budget_and_are_never_selected():
    study = optuna.create_study(
        directions=["minimize"] * 4, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    original = (0.1, 0.1, 0.1, 0.1)

    def objective(p):  # x < 0.5: the Original's vector (score 0.2, the lowest); else 0.28
        values = (0.1, 0.1, 0.1, 0.1) if p["x"] < 0.5 else (0.0, 0.0, 0.2, 0.2)
        return values, {"RA": 0.9}

    counts = run_study(study, SPACE, objective, 10, max_failed=0, prune=PruneRule(original))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert counts["complete"] + counts["pruned"] == 10 == counts["ran"]
    assert counts["pruned"] == len(pruned) > 0 and counts["complete"] > 0
    assert all(t.user_attrs["pruned"] == "dominated by the Original" for t in pruned)
    assert all(t.user_attrs["values"] == [0.1, 0.1, 0.1, 0.1] for t in pruned)
    best = select_best([study.trials], 10)
    assert best is not None and best.params["x"] >= 0.5
    assert best.score == pytest.approx(math.sqrt(0.08))


def test_all_pruned_falls_back_to_the_best_pruned_trial():
    study = optuna.create_study(directions=["minimize"] * 4)
    rule = PruneRule(original=(0.0, 0.0, 0.0, 0.0))  # dominates everything

    def objective(p):
        return (p["x"], 0.0, 0.0, 0.0), {}

    run_study(study, SPACE, objective, 5, max_failed=0, prune=rule)
    assert all(t.state == TrialState.PRUNED for t in study.trials)
    best = select_best([study.trials], 5)
    assert best is not None
    assert best.score == min(t.params["x"] for t in study.trials)
