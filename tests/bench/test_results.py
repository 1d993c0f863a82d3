import math
from pathlib import Path

import pytest
from _bench_helpers import tiny_config

from unlearnkit.bench import parse_experiment
from unlearnkit.bench.report import outlier_references
from unlearnkit.bench.results import Record, Results, derive
from unlearnkit.bench.stats import mean_ci


def test_derived_metrics_known_answer():
    u = {"RA": 0.9, "FA": 0.8, "VA": 0.7, "TA": 0.85, "test_mia": 0.6, "val_mia": 0.45}
    r = {"RA": 0.95, "FA": 0.9, "VA": 0.7, "TA": 0.8}
    d = derive(u, r)
    assert d["RR"] == pytest.approx(0.9 / 0.95)
    assert d["FR"] == pytest.approx(0.8 / 0.9)
    assert d["TR"] == pytest.approx(0.85 / 0.8)
    assert d["RetDev"] == pytest.approx(abs(0.9 / 0.95 - 1) + abs(0.8 / 0.9 - 1) + 0.0625)
    assert d["Indisc"] == pytest.approx(0.8)  # 1 - |2 * 0.6 - 1|
    assert d["val_indisc"] == pytest.approx(0.9)
    assert "RetDev" not in derive(u, None)
    assert math.isnan(derive({**u, "FA": 0.3}, {**r, "FA": 0.0})["FR"])  # undefined ratio


def _results(records):
    exp = parse_experiment(tiny_config(methods=["ft", "ga"]))
    return Results(Path("."), exp, records, {}, {}, {}, [], [])


def _rec(setting, row, seed, retdev, indisc, seconds=None):
    d, m = setting
    return Record(d, m, row, seed, "done", {"RetDev": retdev, "Indisc": indisc, "TA": 0.5}, seconds)


def test_ranking_averages_settings_per_seed_then_seeds():
    s1, s2 = ("d1", "m"), ("d2", "m")
    recs = []
    for seed in range(3):
        recs += [
            _rec(s1, "ft", seed, 0.1 + seed * 0.01, 0.9),
            _rec(s2, "ft", seed, 0.25, 0.8),
            _rec(s1, "ga", seed, 0.2, 0.99),
            _rec(s2, "ga", seed, 0.2, 0.97),
            _rec(s1, "retrain", seed, 0.0, 0.95),
        ]
    ranking = _results(recs).ranking()
    assert [o["row"] for o in ranking] == ["ft", "ga", "retrain"]
    ft = ranking[0]
    want = mean_ci([(0.1 + s * 0.01 + 0.25) / 2 for s in range(3)])
    assert ft["RetDev"].mean == pytest.approx(want.mean)
    assert ft["RetDev"].half == pytest.approx(want.half)
    assert ft["Indisc"].mean == pytest.approx(0.85)
    assert (ft["rank"], ranking[1]["rank"], ranking[2]["rank"]) == (1, 2, None)
    assert ranking[2]["covered"] == 1 and ranking[2]["settings"] == 2


def test_ties_in_retdev_break_on_indiscernibility():
    s = ("d", "m")
    recs = [_rec(s, "ft", 0, 0.1, 0.8), _rec(s, "ga", 0, 0.1, 0.9)]
    assert [o["row"] for o in _results(recs).ranking()] == ["ga", "ft"]


def test_rte_is_the_ratio_of_mean_times():
    s = ("d", "m")
    recs = [
        _rec(s, "retrain", 0, 0.0, 1.0, seconds=10.0),
        _rec(s, "retrain", 1, 0.0, 1.0, seconds=14.0),
        _rec(s, "ft", 0, 0.1, 1.0, seconds=1.0),
        _rec(s, "ft", 1, 0.1, 1.0, seconds=3.0),
        _rec(s, "original", 0, 0.1, 1.0),
    ]
    res = _results(recs)
    assert res.rte("d / m", "ft") == pytest.approx(12.0 / 2.0)
    assert res.rte("d / m", "retrain") == pytest.approx(1.0)
    assert math.isnan(res.rte("d / m", "original"))
    assert res.seconds("d / m", "ft").mean == pytest.approx(2.0)


def test_reference_models_that_did_not_train_are_flagged():
    s = ("d", "m")
    recs = [
        Record("d", "m", "retrain", seed, "done", {"TA": ta})
        for seed, ta in enumerate([0.9, 0.92, 0.1, 0.91])
    ]
    recs.append(Record("d", "m", "original", 0, "done", {"TA": 0.95}))
    recs.append(_rec(s, "ft", 0, 0.1, 0.9))  # methods are not references: never flagged
    assert outlier_references(_results(recs)) == [["d / m", "retrain", "2", "0.100", "0.910"]]
