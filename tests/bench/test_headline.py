"""The headline verdicts on hand-made result tables whose answers are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearnkit.bench.experiment_file import load_experiment
from unlearnkit.bench.headline import (
    headline_section,
    rank_difference,
    rank_interval,
    verdict_beats,
    verdict_first,
)
from unlearnkit.bench.results import Record, Results
from unlearnkit.bench.tables import to_csv

SETTINGS = (("d1", "m1"), ("d2", "m2"))
SEEDS = (0, 1, 2)


def _results(retdev: dict[str, list[float] | float], unsupported=()) -> Results:
    """Records with the given RetDev per method (a number, or one per seed; same in every
    setting), Indisc 0.9; ``unsupported``: (method, dataset) pairs with no result."""
    recs = []
    for d, m in SETTINGS:
        for row in ("original", "retrain", *retdev):
            for i, seed in enumerate(SEEDS):
                if (row, d) in unsupported:
                    recs.append(Record(d, m, row, seed, "unsupported"))
                    continue
                v = retdev.get(row, 0.0)
                value = v[i] if isinstance(v, list) else v
                recs.append(Record(d, m, row, seed, "done", {"RetDev": value, "Indisc": 0.9}))
    exp = load_experiment("smoke")
    return Results(Path("."), exp, recs, {}, {}, {}, [], [])


CLEAR = {"msg": 0.01, "ct": 0.02, "scrub": 0.05, "ngplus": 0.1, "ga": 0.3, "srl": 0.4}


def test_reproduced():
    res = _results(CLEAR)
    first, beats = verdict_first(res), verdict_beats(res)
    assert (first.outcome, beats.outcome) == ("reproduced", "reproduced")
    # ranks 1..6 in every setting and seed: hand-computed differences, zero-width intervals
    d, common = rank_difference(res, "ngplus", "srl")
    assert (d.mean, d.half, common) == (-2.0, 0.0, 2)
    assert rank_interval(res, "ct").mean == 2.0


def test_partly_unsupported_and_overlapping():
    # CT is unsupported on d2 (first elsewhere); NG+ beats GA clearly but SRL only on the
    # point: per-seed rank differences vs SRL are -2, +1, -2 -> mean -1, CI includes 0
    res = _results(
        {**CLEAR, "srl": [0.4, 0.08, 0.4], "ngplus": [0.1, 0.1, 0.1]}, unsupported={("ct", "d2")}
    )
    first, beats = verdict_first(res), verdict_beats(res)
    assert first.outcome == "partly"
    assert "CT has no result in d2 / m2 (unsupported)" in first.reason
    assert beats.outcome == "partly"
    d, _ = rank_difference(res, "ngplus", "srl")
    assert d.mean == pytest.approx(-1.0) and d.mean + d.half > 0
    assert "includes 0" in beats.reason and "GA" not in beats.reason


def test_not():
    res = _results({**CLEAR, "scrub": 0.001, "ga": 0.05, "srl": 0.06, "ngplus": 0.2})
    first, beats = verdict_first(res), verdict_beats(res)
    assert first.outcome == "not" and "SCRUB ranks at least as well as MSG" in first.reason
    assert beats.outcome == "not"
    # claimed methods missing everywhere: not, with the reason
    gone = _results({"ga": 0.1, "srl": 0.2})
    assert verdict_first(gone).outcome == "not"
    assert verdict_beats(gone).reason == "NG+ has no result in any setting"


def test_one_seed_is_never_clear():
    res = _results(CLEAR)
    res.records = [r for r in res.records if r.seed == 0]
    assert verdict_first(res).outcome == "partly"  # first on the point, no interval
    assert "one seed" in verdict_first(res).reason


def test_section_renders():
    sec = headline_section(_results(CLEAR))
    assert "reproduced" in sec.text and len(sec.tables) == 2
    assert "MSG and CT rank first,reproduced" in to_csv(sec.tables[0])
