"""Issue 13: the paper's statistics on a hand-made results table, range-respecting
intervals, the do-nothing flag, CSV/LaTeX export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _bench_helpers import tiny_config

from unlearnkit.bench import parse_experiment
from unlearnkit.bench.pruning import indistinguishable
from unlearnkit.bench.ranks import original_flags, rank_summary, rank_table, setting_ranks
from unlearnkit.bench.results import Record, Results
from unlearnkit.bench.stats import average_ranks, mean_ci
from unlearnkit.bench.tables import Table, export_tables, to_csv, to_latex

SETTINGS = [("d1", "mlp"), ("d2", "mlp"), ("d1", "cnn")]
# (RetDev, Indisc) per setting and method, the same for both seeds
TABLE = {
    ("d1", "mlp"): {"a": (0.1, 0.9), "b": (0.2, 0.9), "c": (0.3, 0.5)},
    ("d2", "mlp"): {"a": (0.3, 0.9), "b": (0.1, 0.8), "c": (0.1, 0.8)},  # b, c tie
    ("d1", "cnn"): {"a": (0.2, 0.7), "b": (0.2, 0.9), "c": (0.5, 0.5)},  # Indisc breaks it
}


def _results(extra: list[Record] | None = None) -> Results:
    records = []
    for (d, m), rows in TABLE.items():
        for row, (ret, ind) in rows.items():
            for seed in (0, 1):
                records.append(Record(d, m, row, seed, "done", {"RetDev": ret, "Indisc": ind}))
    exp = parse_experiment(tiny_config())
    return Results(Path("."), exp, records + (extra or []), {}, {}, {}, [], [])


def test_ranks_within_settings_and_their_means_by_hand():
    res = _results()
    assert setting_ranks(res) == {
        "d1 / mlp": {"a": 1.0, "b": 2.0, "c": 3.0},
        "d2 / mlp": {"a": 3.0, "b": 1.5, "c": 1.5},
        "d1 / cnn": {"a": 2.0, "b": 1.0, "c": 3.0},
    }
    summary = {o["row"]: o for o in rank_summary(res)}
    # a: (1 + 3 + 2) / 3 = 2; b: (2 + 1.5 + 1) / 3 = 1.5; c: (3 + 1.5 + 3) / 3 = 2.5
    assert [o["row"] for o in rank_summary(res)] == ["b", "a", "c"]
    assert summary["b"]["mean"] == pytest.approx(1.5)
    assert summary["a"]["by_model"] == pytest.approx({"mlp": 2.0, "cnn": 2.0})
    assert summary["c"]["by_model"] == pytest.approx({"mlp": 2.25, "cnn": 3.0})
    t = rank_table(res)
    assert t.headers[-2:] == ["mean rank", "settings"]
    assert t.rows[0] == ["b", "2", "1.5", "1", "1.75", "1", "1.5", "3/3"]


def test_a_method_missing_in_a_setting_is_averaged_over_the_rest():
    res = _results([Record("d1", "mlp", "e", 0, "unsupported")])
    ranks = setting_ranks(res)
    assert math.isnan(ranks["d1 / mlp"]["e"])
    e = next(o for o in rank_summary(res) if o["row"] == "e")
    assert e["covered"] == 0 and math.isnan(e["mean"])
    assert rank_table(res).rows[-1][:2] == ["e", "unsupported"]


def test_average_ranks_ties_and_non_finite():
    assert average_ranks({"x": 2.0, "y": 1.0, "z": 2.0, "w": 3.0}) == {
        "x": 2.5,
        "y": 1.0,
        "z": 2.5,
        "w": 4.0,
    }
    r = average_ranks({"x": (1.0, 0.0), "y": (1.0, -1.0), "z": (math.nan, 0.0)})
    assert r["y"] == 1.0 and r["x"] == 2.0 and math.isnan(r["z"])


def test_intervals_stay_in_the_metric_range():
    # 0.9, 1.0, 1.0: mean 29/30, s = sqrt(1/300), t(0.975, 2) = 4.302652729911275
    est = mean_ci([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    half = 4.302652729911275 * math.sqrt(1 / 300) / math.sqrt(3)
    assert est.half == pytest.approx(half)
    assert est.low == pytest.approx(29 / 30 - half) and est.high == 1.0
    assert est.clipped and est.fmt(3) == f"0.967 [{29 / 30 - half:.3f}, 1.000]"
    inside = mean_ci([0.4, 0.5, 0.6], bounds=(0.0, 1.0))
    assert not inside.clipped and inside.high == pytest.approx(0.5 + inside.half)
    res = _results([Record("d1", "mlp", "a", 2, "done", {"RetDev": 0.1, "Indisc": 0.2})])
    ind = res.estimate("d1 / mlp", "a", "Indisc")
    assert 0.0 <= ind.low and ind.high <= 1.0 and ind.clipped


def _seed_values(ra, fa, va, mia, **more):
    return {"RA": ra, "FA": fa, "VA": va, "val_mia": mia, **more}


def test_a_do_nothing_configuration_is_flagged():
    retrain = {s: _seed_values(0.95, 0.90, 0.90, 0.50, l2_to_retrain=0.0) for s in (0, 1)}
    original = {s: _seed_values(1.00, 1.00, 0.91, 0.60, l2_to_retrain=2.0) for s in (0, 1)}
    same = {s: _seed_values(1.00, 1.00, 0.91, 0.60, l2_to_original=0.0) for s in (0, 1)}
    f = indistinguishable(same, original, retrain)
    assert f.flagged and f.max_objective_gap == 0.0 and f.basis == "objectives + ρ"
    # same accuracies but moved 10 % of the way to Retrain: not flagged
    moved = {s: {**same[s], "l2_to_original": 0.2} for s in (0, 1)}
    g = indistinguishable(moved, original, retrain)
    assert not g.flagged and g.movement == pytest.approx(0.1)
    # forgot: FA 1.0 -> 0.9 is a gap of 0.1 / 3 in o_fa
    forgot = {s: {**same[s], "FA": 0.90} for s in (0, 1)}
    h = indistinguishable(forgot, original, retrain)
    assert not h.flagged and h.max_objective_gap == pytest.approx(0.1 / 3)
    # no movement metric: |D − 1| from dist_to_retrain
    d = {s: _seed_values(1.00, 1.00, 0.91, 0.60, dist_to_retrain=0.998) for s in (0, 1)}
    k = indistinguishable(d, original, retrain)
    assert k.flagged and k.basis == "objectives + |D − 1|"
    assert k.movement == pytest.approx(0.002)
    # and through the results: the report flags it
    recs = [Record("d", "m", "original", s, "done", original[s]) for s in (0, 1)]
    recs += [Record("d", "m", "retrain", s, "done", retrain[s]) for s in (0, 1)]
    recs += [Record("d", "m", "noop", s, "done", same[s]) for s in (0, 1)]
    recs += [Record("d", "m", "ft", s, "done", forgot[s]) for s in (0, 1)]
    res = Results(Path("."), parse_experiment(tiny_config()), recs, {}, {}, {}, [], [])
    flags = original_flags(res)
    assert flags[("d / m", "noop")].flagged and not flags[("d / m", "ft")].flagged


def test_csv_and_latex_export(tmp_path: Path):
    t = Table("Table 9. A & B_1", ["method", "RA"], [["ft", "0.9 ± 0.1"], ["a,b", "50%"]], "n")
    assert to_csv(t) == 'method,RA\nft,0.9 ± 0.1\n"a,b",50%\n'
    tex = to_latex(t)
    assert r"\caption{Table 9. A \& B\_1}" in tex
    assert r"ft & 0.9 $\pm$ 0.1 \\" in tex and r"a,b & 50\% \\" in tex
    assert r"\begin{tabular}{lr}" in tex and tex.count(r"\\") == 3
    paths = export_tables([t, Table("x", ["a"], [])], tmp_path)
    assert [p.name for p in paths] == [
        "01-table-9-a-b-1.csv",
        "01-table-9-a-b-1.tex",
        "02-x.csv",
        "02-x.tex",
    ]
    assert paths[0].read_text() == to_csv(t)
