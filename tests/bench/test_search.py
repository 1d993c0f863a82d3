import itertools
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from unlearnkit.bench.search import first_complete, run_study, score, select_best
from unlearnkit.bench.trials import merge_config, trial_config
from unlearnkit.errors import NumericalError

SPACE = {"x": FloatDistribution(0.0, 1.0)}


def _study(values_list, states=None):
    study = optuna.create_study(directions=["minimize"] * 4)
    for i, values in enumerate(values_list):
        state = states[i] if states else TrialState.COMPLETE
        study.add_trial(
            create_trial(
                params={"x": i / 10},
                distributions=SPACE,
                values=values if state == TrialState.COMPLETE else None,
                state=state,
            )
        )
    return study.get_trials(deepcopy=False)


def test_min_l2_selection_matches_brute_force():
    rng = np.random.default_rng(0)
    studies = [_study(rng.uniform(0, 1, size=(6, 4)).tolist()) for _ in range(3)]
    n = 4  # only the first 4 COMPLETE trials of each study count
    best = select_best(studies, n)
    candidates = [
        (float(np.linalg.norm(t.values)), i, t.number)
        for i, trials in enumerate(studies)
        for t in trials[:n]
    ]
    want = min(candidates)
    assert best is not None
    assert (best.score, best.study, best.trial) == pytest.approx(want)
    assert best.params == {"x": want[2] / 10}


def test_only_complete_trials_in_number_order_count():
    trials = _study(
        [[0.0] * 4, [0.5] * 4, [0.1] * 4, [0.2] * 4],
        [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.COMPLETE],
    )
    assert [t.number for t in first_complete(trials, 2)] == [1, 2]
    best = select_best([trials], 2)
    assert best is not None and best.trial == 2 and best.score == pytest.approx(0.2)
    assert select_best([[]], 5) is None
    assert score([3.0, 4.0, 0.0, 0.0]) == 5.0 and score([math.inf, 0, 0, 0]) == math.inf


def test_dotted_params_nest_into_the_fixed_config():
    fixed = {"retain_optimizer": {"momentum": 0.9, "learning_rate": 1.0}, "num_epochs": 3}
    params = {"retain_optimizer.learning_rate": 0.01, "batch_size": 64}
    assert trial_config(fixed, params) == {
        "retain_optimizer": {"momentum": 0.9, "learning_rate": 0.01},
        "num_epochs": 3,
        "batch_size": 64,
    }
    assert merge_config({"a": {"b": 1}}, {"a": 2}) == {"a": 2}


def test_run_study_reaches_the_budget_and_records_failures():
    study = optuna.create_study(
        directions=["minimize"] * 4, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    calls = itertools.count()

    def objective(params):
        if next(calls) % 3 == 1:
            raise NumericalError("diverged")
        return (params["x"], 1 - params["x"], 0.0, 0.0), {"RA": 0.5}

    counts = run_study(study, SPACE, objective, trials=5, max_failed=10)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert counts["complete"] == len(complete) == 5
    assert counts["failed"] == len(failed) == 2  # calls 1 and 4 of 7
    assert counts["ran"] == 7
    assert all(t.user_attrs["RA"] == 0.5 and "seconds" in t.user_attrs for t in complete)
    assert all(t.user_attrs["error"] == "diverged" for t in failed)
    # resuming with the same budget runs nothing
    assert run_study(study, SPACE, objective, trials=5, max_failed=10)["ran"] == 0


def test_stale_running_trials_are_failed_and_failures_are_bounded():
    study = optuna.create_study(directions=["minimize"] * 4)
    stale = study.ask(SPACE)  # left RUNNING, as by a crash

    def ok(params):
        return (0.0, 0.0, 0.0, 0.0), {}

    counts = run_study(study, SPACE, ok, trials=1, max_failed=0)
    assert counts["stale"] == 1
    assert study.trials[stale.number].state == TrialState.FAIL

    def bad(params):
        raise NumericalError("nan")

    with pytest.raises(NumericalError, match="3 trials failed"):
        run_study(study, SPACE, bad, trials=2, max_failed=2)

    def bug(params):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_study(study, SPACE, bug, trials=2, max_failed=5)
    assert study.trials[-1].state == TrialState.FAIL
