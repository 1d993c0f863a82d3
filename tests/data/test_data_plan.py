"""DataPlan -> Split: the same ids as the split and forget functions it composes, forget
steps drawn from what is still retained, serialisation, verification and refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unlearnkit.data import load_dataset, select_forget, train_val_test_split
from unlearnkit.data.plan import (
    DataPlan,
    ForgetStep,
    Split,
    check_same_plan,
    check_same_split,
)
from unlearnkit.data.records import data_block, split_from_block, split_hashes, verify_split
from unlearnkit.errors import ConfigError, StateMismatchError, UnknownIdsError
from unlearnkit.io import ids_hash


def ids(ds) -> list[int]:
    return ds.ids.tolist()


def test_materialise_equals_the_composed_functions() -> None:
    plan = DataPlan(
        "mnist1d", {"size": 400}, 0.15, 0.25, 7, forget="random:0.1", use_official=False
    )
    split = plan.materialise()
    ref = train_val_test_split(
        load_dataset("mnist1d", size=400), 0.15, 0.25, seed=7, use_official=False
    )
    fs = select_forget(ref.train, "random:0.1", seed=0)
    for part in ("train", "val", "test"):
        assert ids(split.part(part)) == ids(getattr(ref, part))
    assert ids(split.retain) == fs.retain_ids.tolist()
    assert ids(split.forget) == fs.forget_ids.tolist()
    assert len(split.train) == 400 - 100 - 60 and len(split.forget) == 24  # round(0.1 * 240)
    assert split.fit_on is split.train and plan.fit_on == "train"
    assert len(split.full) == 400 and split.plan is plan
    assert ids(plan.retrained().materialise().fit_on) == ids(split.retain)


def test_forget_steps_draw_from_what_is_retained() -> None:
    plan = DataPlan("digits", split_seed=3).forgetting("class:3").forgetting("random:0.5", 4)
    assert plan.fit_on == "retain" and [s.spec for s in plan.forget] == ["class:3", "random:0.5"]
    split = plan.materialise()
    train = train_val_test_split(load_dataset("digits"), seed=3).train
    first = select_forget(train, "class:3")
    retained = first.retain(train)
    second = select_forget(retained, "random:0.5", seed=4)
    assert ids(split.retain) == second.retain_ids.tolist()
    forgotten = sorted(first.forget_ids.tolist() + second.forget_ids.tolist())
    assert ids(split.forget) == forgotten
    assert split.fit_on is split.retain
    assert len(split.retain) + len(split.forget) == len(split.train)
    # seen from the first unlearned model: it was fit to `retained`, then lost `second`
    since = split.since(DataPlan("digits", split_seed=3).forgetting("class:3"))
    assert ids(since.train) == ids(retained) and ids(since.fit_on) == ids(retained)
    assert ids(since.forget) == second.forget_ids.tolist()
    assert ids(since.retain) == ids(split.retain)
    # seen from the original (fit on train, whatever forget steps its plan names)
    whole = split.since(DataPlan("digits", split_seed=3, forget="random:0.3"))
    assert ids(whole.train) == ids(split.train) and ids(whole.forget) == forgotten
    with pytest.raises(StateMismatchError, match="not the first steps"):
        split.since(DataPlan("digits", split_seed=3).forgetting("class:4"))
    with pytest.raises(StateMismatchError, match="not the first steps"):
        split.since(plan)  # a model is not its own original
    with pytest.raises(StateMismatchError, match="split seed"):
        split.since(DataPlan("digits", split_seed=4))
    # an id step naming an already forgotten sample
    three = int(first.forget_ids[0])
    with pytest.raises(UnknownIdsError):
        DataPlan("digits", split_seed=3, forget=["class:3", f"ids:{three}"]).materialise()


def test_round_trips_and_the_older_form() -> None:
    plan = DataPlan(
        "mnist1d", {"size": 300}, split_seed=5, forget={"kind": "class", "label": 2}, forget_seed=9
    )
    assert plan.forget == (ForgetStep("class:2", 9),)
    assert DataPlan.from_dict(plan.to_dict()) == plan
    assert DataPlan.from_dict(plan.retrained().to_dict()).fit_on == "retain"
    old = {
        "dataset": "digits",
        "dataset_params": {},
        "val_fraction": 0.1,
        "test_fraction": 0.2,
        "split_seed": 2,
        "forget": "random:0.1",
        "forget_seed": 1,
    }
    assert DataPlan.from_dict(old) == DataPlan("digits", split_seed=2).forgetting("random:0.1", 1)
    assert DataPlan.from_dict({**old, "forget": None}) == DataPlan("digits", split_seed=2)
    assert dataclasses.replace(plan, split_seed=6).forget == plan.forget
    # positional order: dataset, params, fractions, split seed, forget, forget seed
    assert DataPlan("digits", {}, 0.1, 0.2, 3, "class:3", 5).forget == (ForgetStep("class:3", 5),)
    # unlearning from an original drops the steps it only named; from a retrain it extends
    assert plan.forgetting("class:1").forget == (ForgetStep("class:1", 0),)
    assert plan.retrained().forgetting("class:1").forget == (
        ForgetStep("class:2", 9),
        ForgetStep("class:1", 0),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
        ({"fit_on": "retain"}, "needs a forget set"),
        ({"fit_on": "val"}, "fit_on"),
        ({"forget": "nonsense"}, "no ':'"),
        ({"params": {"x": object()}}, "JSON"),
    ],
)
def test_bad_plans(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DataPlan("digits", **kwargs)


def test_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown data plan keys"):
        DataPlan.from_dict({"dataset": "digits", "sead": 3})


def test_hashes_and_verification() -> None:
    plan = DataPlan("digits", forget="class:1").retrained()
    split = plan.materialise()
    h = split_hashes(split)
    assert h["train_ids_hash"] == ids_hash(split.train.ids)
    assert h["fit_ids_hash"] == ids_hash(split.retain.ids) != h["train_ids_hash"]
    assert h["n_forget"] == int((split.train.y == 1).sum())
    block = data_block(plan, split)
    again_plan, again = split_from_block(block)
    assert again_plan == plan and ids(again.fit_on) == ids(split.fit_on)
    verify_split(split, {})  # nothing recorded: nothing to check
    for key in ("train_ids_hash", "forget_ids_hash", "fit_ids_hash"):
        with pytest.raises(StateMismatchError, match=key):
            verify_split(split, {**h, key: "0" * 64})
    with pytest.raises(StateMismatchError, match="does not name its dataset"):
        split_from_block(None)
    with pytest.raises(ConfigError, match="not materialised from this plan"):
        data_block(plan.split_only(), split)


def test_mismatches_are_named() -> None:
    a = DataPlan("mnist1d", {"size": 300}, split_seed=3, forget="class:3")
    with pytest.raises(StateMismatchError, match="split seed 3 vs 4"):
        check_same_split(a, dataclasses.replace(a, split_seed=4), "the model", "the retrain")
    with pytest.raises(StateMismatchError, match=r"dataset parameters \{'size': 300\} vs"):
        check_same_split(a, dataclasses.replace(a, params={"size": 500}), "a", "b")
    with pytest.raises(StateMismatchError, match=r"dataset 'mnist1d' vs 'digits'"):
        check_same_split(a, dataclasses.replace(a, dataset="digits"), "a", "b")
    check_same_split(a, a.forgetting("random:0.1"), "a", "b")  # forget steps are not compared
    with pytest.raises(StateMismatchError, match="forget set class:3@0 vs class:4@0"):
        check_same_plan(
            a, DataPlan("mnist1d", {"size": 300}, split_seed=3, forget="class:4"), "", ""
        )
    with pytest.raises(StateMismatchError, match="fit on train vs retain"):
        check_same_plan(a, a.retrained(), "a", "b")


def test_split_parts_by_name() -> None:
    split = DataPlan("digits", forget="random:0.2").materialise()
    assert split.part("fit_on") is split.train
    assert torch.equal(split.part("forget").ids, split.forget.ids)
    with pytest.raises(ConfigError, match="unknown split part"):
        split.part("holdout")


def test_plans_have_a_content_key() -> None:
    a = DataPlan("mnist1d", {"size": 300}, forget="class:3")
    b = DataPlan.from_dict(a.to_dict())
    assert a.key() == b.key() and hash(a) == hash(b) and len({a, b}) == 1
    assert a.key() != a.retrained().key() != DataPlan("mnist1d", {"size": 301}).key()


def test_split_of_a_users_datasets(toy) -> None:
    picked = toy.ids[:3].tolist()
    split = Split.from_datasets(toy, f"ids:{','.join(map(str, picked))}")
    assert ids(split.forget) == sorted(picked) and len(split.val) == len(split.test) == 0
    assert sorted(ids(split.retain) + ids(split.forget)) == sorted(ids(toy))
    assert split.fit_on is toy and split.plan is None
    drawn = Split.from_datasets(toy, "class:1", val=toy.subset(picked))
    assert ids(drawn.forget) == sorted(toy.ids[toy.y == 1].tolist()) and len(drawn.val) == 3
    assert len(Split.from_datasets(toy).forget) == 0
