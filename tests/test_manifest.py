"""THE manifest: data plan + provenance on every saved model, upgrades of the two older
formats, and check_reference refusing an original or a retrain that does not fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from unlearnkit.artifacts import (
    Provenance,
    check_reference,
    load_model,
    manifest_plan,
    manifest_split,
    read_manifest,
    save_model,
)
from unlearnkit.data import load_dataset, select_forget, train_val_test_split
from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.data.records import verify_split
from unlearnkit.data.user import as_dataset
from unlearnkit.errors import ConfigError, StateMismatchError
from unlearnkit.io import ids_hash
from unlearnkit.models import build_model

#: a non-default split seed and a dataset parameter
BASE = DataPlan("mnist1d", {"size": 300}, 0.1, 0.2, split_seed=3)


def _reference_train_ids(size: int = 300, seed: int = 3) -> list[int]:
    """The training ids computed without the plan, from the functions it composes."""
    ds = load_dataset("mnist1d", size=size)
    return train_val_test_split(ds, 0.1, 0.2, seed=seed).train.ids.tolist()


def _save(
    path: Path, plan: DataPlan, prov: Provenance | None, seed: int, **extra: Any
) -> dict[str, Any]:
    split = plan.materialise()
    model = build_model("linear", split.train.input_shape, split.train.num_outputs, seed=seed)
    save_model(path, model, extra, data=split, provenance=prov)
    return read_manifest(path)


def _as_v1(path: Path, legacy: dict[str, Any]) -> None:
    """Rewrite a saved manifest as an older unlearnkit wrote it (same weights)."""
    man = json.loads(path.with_suffix(".json").read_text())
    for key in ("format_version", "data", "provenance"):
        man.pop(key, None)
    man["format"] = "unlearnkit.model/1"
    man.update(legacy)
    path.with_suffix(".json").write_text(json.dumps(man))


def test_plan_chains_through_save_and_load(tmp_path: Path) -> None:
    orig = _save(tmp_path / "orig", BASE, Provenance.train(seed=0, method="sgd"), seed=0)
    model, manifest = load_model(tmp_path / "orig")
    assert manifest["format_version"] == 2 and manifest["provenance"]["kind"] == "train"
    plan = manifest_plan(manifest)
    assert plan == BASE and plan.params == {"size": 300} and plan.split_seed == 3
    split = manifest_split(manifest)
    assert split.fit_on.ids.tolist() == _reference_train_ids()
    assert split.fit_on.ids.tolist() != _reference_train_ids(seed=0)  # the seed matters
    # an unlearned child: plan + forget step, provenance pointing at the original
    child_plan = plan.forgetting("class:3", 0)
    child = _save(
        tmp_path / "u",
        child_plan,
        Provenance.derived("unlearn", orig, method="ft", config={"num_epochs": 1}, seed=5),
        seed=1,
    )
    assert child["provenance"]["parent"] == orig["weights"]["fingerprint"]
    assert child["provenance"]["ancestors"] == [orig["weights"]["fingerprint"]]
    train = train_val_test_split(load_dataset("mnist1d", size=300), 0.1, 0.2, seed=3).train
    retain = select_forget(train, "class:3").retain_ids.tolist()
    assert manifest_split(load_model(tmp_path / "u")[1]).fit_on.ids.tolist() == retain
    check_reference(child, orig, "original")
    # the right retrain passes; one trained on another forget set is refused, naming it
    good = _save(tmp_path / "r", child_plan.retrained(), Provenance.train(seed=0), seed=2)
    check_reference(child, good, "retrain")
    other = _save(tmp_path / "r4", BASE.forgetting("class:4"), Provenance.train(seed=0), seed=3)
    with pytest.raises(
        StateMismatchError,
        match="another forget set: it removed class:4@0, the model removed class:3@0",
    ):
        check_reference(child, other, "retrain")


def test_check_reference_refusals(tmp_path: Path) -> None:
    orig = _save(tmp_path / "o", BASE, Provenance.train(seed=0), seed=0)
    plan = BASE.forgetting("class:3")
    child = _save(tmp_path / "u", plan, Provenance.derived("unlearn", orig, method="ft"), seed=1)
    # the original passed as the retrain: an ancestor; without lineage: fit to the whole train
    with pytest.raises(StateMismatchError, match="ancestor of the model"):
        check_reference(child, orig, "retrain")
    with pytest.raises(StateMismatchError, match="whole training split"):
        check_reference({**child, "provenance": None}, orig, "retrain")
    with pytest.raises(StateMismatchError, match="model itself"):
        check_reference(child, child, "retrain")
    # another split seed or dataset parameter: named
    seed4 = DataPlan("mnist1d", {"size": 300}, split_seed=4, forget="class:3", fit_on="retain")
    r = _save(tmp_path / "s4", seed4, Provenance.train(seed=0), seed=2)
    with pytest.raises(StateMismatchError, match="split seed 3 vs 4"):
        check_reference(child, r, "retrain")
    size = DataPlan("mnist1d", {"size": 400}, split_seed=3, forget="class:3", fit_on="retain")
    r = _save(tmp_path / "p", size, Provenance.train(seed=0), seed=2)
    with pytest.raises(
        StateMismatchError, match=r"dataset parameters \{'size': 300\} vs \{'size': 400\}"
    ):
        check_reference(child, r, "retrain")
    # a model unlearned with another method is not a retrain; `unlearn --method retrain` is
    ft = _save(tmp_path / "ft", plan, Provenance.derived("unlearn", orig, method="ft"), seed=3)
    with pytest.raises(StateMismatchError, match=r"produced by unlearn \(ft\)"):
        check_reference(child, ft, "retrain")
    rt = _save(tmp_path / "rt", plan, Provenance.derived("unlearn", orig, method="retrain"), seed=4)
    with pytest.raises(StateMismatchError, match="ancestor"):
        check_reference(child, rt, "original")  # a sibling is not the original
    check_reference(child, {**rt, "provenance": {**rt["provenance"], "ancestors": []}}, "retrain")
    # an original that is not an ancestor, or one that removed as much as the model
    stranger = _save(tmp_path / "x", BASE, Provenance.train(seed=1), seed=5)
    with pytest.raises(StateMismatchError, match="not an ancestor"):
        check_reference(child, stranger, "original")
    with pytest.raises(StateMismatchError, match="does not precede the model"):
        check_reference({**child, "provenance": None}, rt, "original")
    # no plan at all
    bare = build_model("linear", (1, 40), 10, seed=0)
    save_model(tmp_path / "bare", bare, {})
    with pytest.raises(StateMismatchError, match="does not name its dataset"):
        check_reference(child, read_manifest(tmp_path / "bare"), "retrain")
    with pytest.raises(ConfigError, match="role"):
        check_reference(child, orig, "oracle")  # type: ignore[arg-type]


def test_upgrade_of_the_workflow_format(tmp_path: Path) -> None:
    plan = DataPlan("digits", split_seed=2).forgetting("class:3", 0)
    _save(tmp_path / "w", plan, None, seed=0)
    train = train_val_test_split(load_dataset("digits"), seed=2).train
    retain = select_forget(train, "class:3").retain(train)
    old_plan = {
        "dataset": "digits",
        "dataset_params": {},
        "val_fraction": 0.1,
        "test_fraction": 0.2,
        "split_seed": 2,
        "forget": "class:3",
        "forget_seed": 0,
    }
    legacy = {
        "data": {
            "dataset": "digits",
            "plan": old_plan,
            "train_ids_sha256": ids_hash(retain.ids),
            "n_train": len(retain),
        },
        "recipe": {"name": "sgd", "epochs": 2},
        "seed": 7,
        "role": "retrain",
    }
    _as_v1(tmp_path / "w", legacy)
    _, man = load_model(tmp_path / "w")
    assert man["format"] == "unlearnkit.model" and man["format_version"] == 2
    assert manifest_plan(man) == plan and man["data"]["fit_ids_hash"] == ids_hash(retain.ids)
    assert manifest_split(man).fit_on.ids.tolist() == retain.ids.tolist()
    prov = man["provenance"]
    assert (prov["kind"], prov["method"], prov["seed"]) == ("train", "sgd", 7)
    assert man["recipe"] == legacy["recipe"]  # other keys are kept
    legacy["data"]["train_ids_sha256"] = "0" * 64
    _as_v1(tmp_path / "w", legacy)
    with pytest.raises(StateMismatchError, match="fit_ids_hash differs"):
        manifest_split(read_manifest(tmp_path / "w"))


def test_upgrade_of_the_unlearn_command_format(tmp_path: Path) -> None:
    plan = BASE.forgetting("random:0.1", 1)
    _save(tmp_path / "c", plan, None, seed=0)
    split = plan.materialise()
    legacy = {
        "dataset": {"name": "mnist1d", "params": {"size": 300}},
        "split": {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 3},
        "unlearn": {
            "method": "ft",
            "config": {"num_epochs": 1},
            "seed": 5,
            "forget": "random:0.1",
            "forget_seed": 1,
            "forget_ids_hash": ids_hash(split.forget.ids),
            "source": {"fingerprint": "f" * 64},
        },
    }
    legacy["split"]["train_ids_hash"] = ids_hash(split.train.ids)
    _as_v1(tmp_path / "c", legacy)
    man = read_manifest(tmp_path / "c")
    assert "dataset" not in man and "split" not in man and man["unlearn"]["seed"] == 5
    assert manifest_plan(man) == plan
    assert man["data"]["train_ids_hash"] == ids_hash(split.train.ids)
    assert manifest_split(man).forget.ids.tolist() == split.forget.ids.tolist()
    prov = man["provenance"]
    assert (prov["kind"], prov["method"], prov["seed"], prov["parent"]) == (
        "unlearn",
        "ft",
        5,
        "f" * 64,
    )
    legacy["unlearn"]["forget_ids_hash"] = "0" * 64
    _as_v1(tmp_path / "c", legacy)
    with pytest.raises(StateMismatchError, match="forget_ids_hash differs"):
        manifest_split(read_manifest(tmp_path / "c"))
    # a trained model of that format: no forget step, provenance from its recipe and seed
    _as_v1(tmp_path / "c", {**legacy, "unlearn": None, "recipe": {"name": "sgd"}, "seed": 123})
    man = read_manifest(tmp_path / "c")
    assert manifest_plan(man) == BASE and man["provenance"]["seed"] == 123


def test_legacy_keys_given_to_save_model_are_upgraded(tmp_path: Path) -> None:
    model = build_model("linear", (64,), 10, seed=0)
    save_model(tmp_path / "e", model, {"role": "ssse", "ssse": {"eps": 0.5}, "data": None})
    man = read_manifest(tmp_path / "e")
    assert man["provenance"]["kind"] == "erase" and man["provenance"]["eps"] == 0.5
    with pytest.raises(ConfigError, match="either as an argument or as a manifest key"):
        save_model(tmp_path / "f", model, {"data": None}, data=DataPlan("digits").materialise())
    with pytest.raises(ConfigError, match="malformed provenance"):
        save_model(tmp_path / "f", model, {"provenance": {"kind": "guess"}})
    assert not list(tmp_path.glob("f*"))


def test_a_users_split_records_its_ids_but_no_plan(tmp_path: Path) -> None:
    x = torch.randn(12, 4)
    y = torch.arange(12) % 3
    data = as_dataset((x, y), ids=torch.arange(12) * 7)
    split = Split.from_datasets(data, "class:2")
    save_model(tmp_path / "m", nn.Linear(4, 3), {}, data=split, provenance=Provenance.train(0))
    man = read_manifest(tmp_path / "m")
    assert man["data"]["plan"] is None and man["data"]["n_forget"] == 4
    verify_split(split, man["data"])
    other = Split.from_datasets(data, "class:1")
    with pytest.raises(StateMismatchError, match="forget_ids_hash differs"):
        verify_split(other, man["data"])
    with pytest.raises(StateMismatchError, match="does not name its dataset"):
        manifest_plan(man)
