"""`unlearnkit train / prepare / erase / demo` end to end on scikit-learn's digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import unlearnkit as uk
from unlearnkit.artifacts import load_model, manifest_split
from unlearnkit.cli import app
from unlearnkit.ssse import ErasureState

runner = CliRunner()


def train_ids(manifest: dict) -> list[int]:
    return manifest_split(manifest).fit_on.ids.tolist()


def _labels(manifest: dict):
    fit = manifest_split(manifest).fit_on
    return fit.ids.tolist(), fit.y.tolist()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    r = invoke(
        "train", "--dataset", "digits", "--model", "logreg", "--out", d / "m0", "--epochs", "3"
    )
    assert r.exit_code == 0, r.output
    r = invoke(
        "prepare",
        "--model",
        d / "m0",
        "--out",
        d / "st",
        "--group-size",
        "4",
        "--solver",
        "woodbury",
    )
    assert r.exit_code == 0, r.output
    return d


def test_erase_then_refuse_repeats_unknown_ids_and_wrong_models(trained: Path):
    d = trained
    _, manifest = load_model(d / "m0")
    ids = train_ids(manifest)
    before = (d / "st" / "manifest.json").read_bytes()
    r = invoke(
        "erase",
        "--model",
        d / "m0",
        "--state",
        d / "st",
        "--out",
        d / "m1",
        "--ids",
        ",".join(map(str, ids[:3])),
        "--state-out",
        d / "st1",
    )
    assert r.exit_code == 0, r.output
    assert (
        d / "st" / "manifest.json"
    ).read_bytes() == before  # --state-out left the old state alone
    st1 = ErasureState.load(d / "st1", load_model(d / "m1")[0])
    assert sorted(st1.erased_ids.tolist()) == sorted(ids[:3])
    assert json.loads((d / "m1.json").read_text())["erasure"]["k"] == 3

    for args, message in (
        (["--model", d / "m1", "--state", d / "st1", "--ids", str(ids[1])], "already erased"),
        (["--model", d / "m1", "--state", d / "st1", "--ids", "999999"], "not in"),
        (["--model", d / "m0", "--state", d / "st1", "--ids", str(ids[7])], "not the one"),
        (["--model", d / "m1", "--state", d / "st1"], "exactly one"),
    ):
        snapshot = (d / "st1" / "manifest.json").read_bytes()
        r = invoke("erase", *args, "--out", d / "bad")
        assert r.exit_code == 2, r.output
        assert message in r.output
        assert "Traceback" not in r.output
        assert (d / "st1" / "manifest.json").read_bytes() == snapshot
        assert not (d / "bad.json").exists()


def test_sequence_of_requests_through_the_cli(trained: Path):
    d = trained
    r = invoke(
        "erase",
        "--model",
        d / "m0",
        "--state",
        d / "st",
        "--out",
        d / "a1",
        "--forget",
        "class:2",
        "--state-out",
        d / "sa",
    )
    assert r.exit_code == 0, r.output
    ids = train_ids(load_model(d / "a1")[1])
    y = {int(i): int(c) for i, c in zip(*_labels(load_model(d / "a1")[1]), strict=True)}
    other = next(i for i in ids if y[i] != 2)
    r = invoke(
        "erase", "--model", d / "a1", "--state", d / "sa", "--out", d / "a2", "--ids", str(other)
    )
    assert r.exit_code == 0, r.output
    st = ErasureState.load(d / "sa", load_model(d / "a2")[0])
    assert [e["request"] for e in st.ledger] == [1, 2]
    a1, _ = load_model(d / "a1")
    a2, _ = load_model(d / "a2")
    assert not torch.equal(a1.fc.weight, a2.fc.weight)


def test_malformed_state_is_refused(trained: Path, tmp_path: Path):
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "manifest.json").write_text("{not json")
    r = invoke(
        "erase",
        "--model",
        trained / "m0",
        "--state",
        tmp_path / "st",
        "--out",
        tmp_path / "x",
        "--ids",
        "1",
    )
    assert r.exit_code == 2 and "not valid JSON" in r.output


def test_demo_runs_end_to_end_on_digits(tmp_path: Path):
    r = invoke(
        "demo", "--out", tmp_path, "--dataset", "digits", "--model", "logreg", "--epochs", "3"
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "results.json").read_text())
    rows = res["rows"]
    assert set(rows) == {"Original", "SSSE", "Retrain", "SSSE oracle ε"}
    assert rows["Retrain"]["dist_to_retrain"] == 0.0
    assert rows["Original"]["dist_to_retrain"] == pytest.approx(1.0)
    for png in ("eps_curve.png", "changes.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| SSSE auto ε=" in (tmp_path / "report.md").read_text()
    assert "Original" in r.output and "Retrain" in r.output and "oracle" in r.output
    # the default scenario: 40 % of the training 7s labelled 1, the request names them all
    assert res["poison"] == {"spec": "class_fraction:7:0.4", "to": 1, "seed": 0}
    assert set(res["erased_recorded_labels"]) == {1} and set(res["erased_true_labels"]) == {7}
    # retraining without them recovers class 7 (digits + logreg, 3 epochs: 0.64 -> 0.89)
    assert rows["Retrain"]["poisoned_class_acc"] > rows["Original"]["poisoned_class_acc"] + 0.1
    assert rows["Retrain"]["erased_acc_true"] > rows["Original"]["erased_acc_true"] + 0.1
    assert rows["Retrain"]["erased_as_target"] < rows["Original"]["erased_as_target"]
    # the per-class number is the brute-force accuracy of the saved Retrain on the test 7s
    split = manifest_split(json.loads((tmp_path / "retrain.json").read_text()))
    sevens = split.test.y == 7
    pred = uk.load(tmp_path / "retrain").model(split.test.x[sevens]).argmax(1)
    assert rows["Retrain"]["poisoned_class_acc"] == pytest.approx(float((pred == 7).float().mean()))
    # the oracle row is the grid's ε closest to the Retrain
    curve = res["eps_curve"]
    assert rows["SSSE oracle ε"]["dist_to_retrain"] == min(curve["dist_to_retrain"])
    assert res["oracle_eps"] in curve["eps"]
    # the safe default: eps auto, within the utility budget on retained and held-out data
    assert res["eps_rule"] == "retained_loss"  # eps="auto": the retrain-free rule
    for k in ("retain", "holdout"):
        acc = res["utility"][k]
        assert acc["before"] - acc["after"] <= res["utility_budget"]
    # the table is the evaluation suite's numbers
    assert res["rows"]["SSSE"]["dist_to_retrain"] == res["evaluation"]["distance"]["normalized"]
    assert res["rows"]["SSSE"]["test"] == res["evaluation"]["accuracy"]["unlearned"]["TA"]
    assert res["rows"]["Retrain"]["mia"] == res["evaluation"]["mia"]["retrain"]["test_mia"]
    assert len(res["eps_curve"]["erased"]) == len(res["eps_curve"]["eps"])
    saved = {name: uk.load(tmp_path / name).model for name in ("original", "ssse", "retrain")}
    w = {k: torch.cat([p.flatten() for p in m.parameters()]) for k, m in saved.items()}
    assert not torch.equal(w["ssse"], w["original"])
    # the demo's outputs are a family `unlearnkit evaluate` accepts (plans and lineage match)
    r = invoke("evaluate", tmp_path / "ssse", "--original", tmp_path / "original",
               "--retrain", tmp_path / "retrain")  # fmt: skip
    assert r.exit_code == 0, r.output
    # a second run refuses to replace the first one's outputs without --overwrite
    before = (tmp_path / "results.json").read_bytes()
    r = invoke("demo", "--out", tmp_path, "--dataset", "digits", "--model", "logreg")
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (tmp_path / "results.json").read_bytes() == before


def test_unlearn_accepts_models_from_train(trained: Path):
    d = trained
    r = invoke(
        "unlearn",
        "--method",
        "ssse",
        "--model",
        d / "m0",
        "--forget",
        "random:0.05",
        "--out",
        d / "u1",
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((d / "u1.json").read_text())
    assert manifest["unlearning"]["method"] == "ssse"
