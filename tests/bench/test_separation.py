""" "Something to forget?": the Original and the Retrain are separated on a forget-set measure
exactly when their intervals are disjoint; hand-computed t-intervals on synthetic records, and
the KLoM / U-LiRA intervals read back from a real run's klom stage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from _bench_helpers import tiny_config
from scipy import stats

from unlearnkit.bench import parse_experiment
from unlearnkit.bench.results import Record, Results
from unlearnkit.bench.separation import Interval, separated, separation, separation_section

FA = {
    ("a", "original"): [1.0, 1.0, 0.98, 1.0, 0.99],
    ("a", "retrain"): [0.60, 0.55, 0.62, 0.58, 0.60],
    ("b", "original"): [0.90, 0.95, 0.93, 0.91, 0.96],
    ("b", "retrain"): [0.92, 0.89, 0.94, 0.90, 0.93],
}


def _t_interval(x: list[float]) -> tuple[float, float, float]:
    a = np.asarray(x)
    h = stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size)
    return float(a.mean()), max(0.0, a.mean() - h), min(1.0, a.mean() + h)


def _results(tmp_path: Path) -> Results:
    exp = parse_experiment(tiny_config(metrics=["accuracy"]))
    records = [
        Record(dataset, "mlp", row, seed, "done", {"FA": v})
        for (dataset, row), vals in FA.items()
        for seed, v in enumerate(vals)
    ]
    return Results(tmp_path, exp, records, {}, {}, {}, [], [])


def test_disjoint_intervals_and_only_those_are_separated():
    assert separated(Interval(0.9, 0.8, 1.0), Interval(0.5, 0.4, 0.79))
    assert not separated(Interval(0.9, 0.8, 1.0), Interval(0.5, 0.4, 0.8))  # touching
    assert not separated(Interval(0.9, 0.8, 1.0), Interval(0.5, math.nan, math.nan))


def test_forget_accuracy_intervals_are_the_t_intervals_over_seeds(tmp_path: Path):
    sep = separation(_results(tmp_path))
    for setting, expected in (("a / mlp", True), ("b / mlp", False)):
        o, r, yes = sep[setting]["forget accuracy"]
        for got, row in ((o, "original"), (r, "retrain")):
            mean, lo, hi = _t_interval(FA[(setting[0], row)])
            assert math.isclose(got.mean, mean, rel_tol=1e-12)
            assert math.isclose(got.low, lo, rel_tol=1e-12, abs_tol=1e-15)
            assert math.isclose(got.high, hi, rel_tol=1e-12)
        assert yes is expected
        # no test_mia values and no oracle pools: undefined, never "separated"
        assert sep[setting]["T-MIA"][2] is False and sep[setting]["forget KLoM"][2] is False
    text = separation_section(_results(tmp_path)).text
    assert "a / mlp: separated on forget accuracy" in text
    assert "b / mlp: NOT separated on any measure" in text
    one_seed = _results(tmp_path)
    one_seed.records = [r for r in one_seed.records if r.dataset == "a" and r.seed == 0]
    assert "a / mlp: no intervals yet" in separation_section(one_seed).text


def test_klom_and_ulira_intervals_come_from_the_klom_stage(tmp_path: Path):
    from test_oracles import _config

    from unlearnkit.bench import run_benchmark
    from unlearnkit.bench.context import make_context
    from unlearnkit.bench.oracles import klom_key
    from unlearnkit.bench.results import collect
    from unlearnkit.jobs.store import Store

    exp = parse_experiment(_config())
    assert run_benchmark(exp, tmp_path, show_progress=False, report=False).failed == 0
    res = collect(tmp_path)
    ((setting, measures),) = separation(res).items()
    with Store(tmp_path, create=False) as store:
        ctx = make_context(exp, tmp_path, store)
        ((d, m),) = ctx.settings()
        for i, row in enumerate(("original", "retrain")):
            vals = store.metrics(klom_key(ctx, d, m, row))
            k = measures["forget KLoM"][i]
            assert (k.mean, k.low, k.high) == (
                vals["forget.klom_mean"],
                vals["forget.klom_mean_lo"],
                vals["forget.klom_mean_hi"],
            )
            assert measures["U-LiRA AUC"][i].mean == vals["ulira.auc_seed_mean"]
    assert "Original against Retrain on the forget set" in str(
        separation_section(res).tables[0].title
    )
