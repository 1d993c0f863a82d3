"""The demo's poisoned-data scenario: seeded relabelling recorded in the data plan, the
forget set = the poisoned ids, option resolution and errors (the end-to-end run is in
tests/cli/test_cli_ssse.py)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.data.plan import DataPlan
from unlearnkit.demo import DEFAULT_POISON, parse_poison, scenario
from unlearnkit.errors import ConfigError, DataError, UnlearnkitError


def test_poison_is_seeded_recorded_and_named_by_the_request():
    split, poisoned, clean = scenario("digits", 0, None, None)
    again, poisoned2, _ = scenario("digits", 0, None, None)
    assert torch.equal(poisoned, poisoned2) and torch.equal(split.train.y, again.train.y)
    # 40 % of the training 7s (Python round), relabelled 1; nothing else changed
    n7 = int((clean.y == 7).sum())
    assert len(poisoned) == round(0.4 * n7) > 0
    changed = split.train.ids[split.train.y != clean.y]
    assert torch.equal(torch.sort(changed).values, poisoned)
    assert bool((clean.subset(poisoned).y == 7).all())
    assert bool((split.train.subset(poisoned).y == 1).all())
    # the request names exactly the poisoned ids; val and test keep their true labels
    assert torch.equal(split.forget.ids, poisoned)
    base = DataPlan("digits").materialise()
    for part in ("val", "test"):
        assert torch.equal(getattr(split, part).y, getattr(base, part).y)
        assert torch.equal(getattr(split, part).ids, getattr(base, part).ids)
    # the plan records it: a reread plan (as a manifest stores it) gives the same labels
    plan = DataPlan.from_dict(split.plan.to_dict())
    assert plan == split.plan and torch.equal(plan.materialise().train.y, split.train.y)
    assert "relabel class_fraction:7:0.4@0->1" in plan.describe()
    # another seed draws other samples
    assert not torch.equal(scenario("digits", 1, None, None)[1], poisoned)


def test_plans_without_relabel_keep_their_form_and_key():
    plan = DataPlan("digits", forget="random:0.1")
    assert "relabel" not in plan.to_dict()
    assert plan.key() == DataPlan.from_dict(plan.to_dict()).key()
    poisoned = DataPlan("digits", forget="random:0.1", relabel={"spec": "class:3", "to": "5"})
    assert poisoned.key() != plan.key() and poisoned.relabel[0].to == 5


def test_forget_option_alone_gives_the_older_clean_demo():
    split, poisoned, clean = scenario("digits", 0, "random:0.1", None)
    assert len(poisoned) == 0 and split.plan.relabel == ()
    assert torch.equal(split.train.y, clean.y)
    assert len(split.forget) == round(0.1 * len(split.train))
    # poison and an explicit forget spec together: poisoned data, the spec's forget set
    split, poisoned, _ = scenario("digits", 0, "class:3", DEFAULT_POISON)
    assert len(poisoned) > 0 and bool((split.forget.y == 3).all())


@pytest.mark.parametrize("text", ["7:1", "7:7:0.4", "7:1:x", "7:1:1.5", "7:1:0", ":1:0.4"])
def test_bad_poison_text_is_refused(text: str):
    with pytest.raises(ConfigError, match="poison"):
        parse_poison(text)


def test_unknown_class_is_a_data_error():
    assert parse_poison("none") is None and parse_poison(" ") is None
    with pytest.raises(DataError):
        scenario("digits", 0, None, "7:12:0.4")
    with pytest.raises(UnlearnkitError):
        DataPlan("digits", relabel={"spec": "class:3"})


def test_cli_refuses_bad_poison_before_writing(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--poison", "7:1"])
    assert r.exit_code == 2 and "error:" in r.output and "SOURCE:TARGET:FRACTION" in r.output
    assert not (tmp_path / "d").exists()


def test_recovered_share_and_verdict_by_hand():
    from unlearnkit.demo_report import recovered, verdict

    def row(acc, dist=0.5):
        return {"poisoned_class_acc": acc, "dist_to_retrain": dist}

    res = {
        "rows": {
            "Original": row(0.5, 1.0),
            "SSSE": row(0.54, 0.99),
            "Retrain": row(0.9, 0.0),
            "SSSE oracle ε": row(0.8),
        },
        "eps": 1e-4,
        "oracle_eps": 0.03,
        "poison_source": "7",
    }
    assert recovered(res) == pytest.approx(0.1)  # (0.54 - 0.5) / (0.9 - 0.5)
    assert recovered(res, "SSSE oracle ε") == pytest.approx(0.75)
    text = verdict(res)
    assert "closes 10 %" in text and "closes 75 %" in text and "barely moves" in text
    res["rows"]["SSSE"]["poisoned_class_acc"] = 0.8
    assert "barely moves" not in verdict(res)
    res["rows"]["Retrain"]["poisoned_class_acc"] = 0.5  # no gap: no share
    assert recovered(res) is None and "distance 0.990" in verdict(res)
