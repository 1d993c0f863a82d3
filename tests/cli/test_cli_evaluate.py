"""``unlearnkit evaluate`` and ``unlearnkit audit`` end to end (typer's CliRunner).

The artifacts are made the way a user makes them: an MLP trained on digits and saved with its
dataset / split / recipe, then ``unlearnkit unlearn`` for FT and for Retrain. Known answers:
evaluating Retrain against itself gives retention 1, RetDev 0 and normalised distance 0;
evaluating the Original gives normalised distance 1 and the Original's own MIA values; every
reported number equals the direct library computation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from unlearnkit.artifacts import load_model, save_model
from unlearnkit.cli import app
from unlearnkit.cli.evaluate import parse_assignments
from unlearnkit.data import load_dataset, select_forget, train_val_test_split
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation.report_eval import evaluate_unlearned
from unlearnkit.io import ids_hash
from unlearnkit.metrics.mia import population_mia
from unlearnkit.metrics.signals import cross_entropy
from unlearnkit.models import build_model
from unlearnkit.training import SGDRecipe, evaluate_accuracy, predict_logits, train

runner = CliRunner()
SPLIT = {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
RECIPE = SGDRecipe(epochs=3, batch_size=64, lr=0.05)


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """original (trained), ft and retrain (both through ``unlearnkit unlearn``)."""
    root = tmp_path_factory.mktemp("eval")
    ds = load_dataset("digits")
    train_set = train_val_test_split(ds, **SPLIT).train
    model = build_model("mlp", ds.input_shape, ds.num_outputs, seed=0, width=32, depth=1)
    trained = train(model, train_set, RECIPE, seed=123).model
    split = {**SPLIT, "train_ids_hash": ids_hash(train_set.ids)}
    save_model(
        root / "orig",
        trained,
        {"dataset": "digits", "split": split, "recipe": RECIPE.model_dump(), "seed": 123},
    )
    paths = {"orig": root / "orig"}
    for name, cfg in (("ft", '{"num_epochs": 1}'), ("retrain", "{}")):
        res = invoke(
            "unlearn",
            "--method",
            name,
            "--model",
            str(root / "orig"),
            "--forget",
            "random:0.1",
            "--out",
            str(root / name),
            "--config",
            cfg,
        )
        assert res.exit_code == 0, res.output
        paths[name] = root / name
    return paths


def _parts() -> dict[str, Any]:
    s = train_val_test_split(load_dataset("digits"), **SPLIT)
    fs = select_forget(s.train, "random:0.1", seed=0)
    return {
        "retain": fs.retain(s.train),
        "forget": fs.forget(s.train),
        "val": s.val,
        "test": s.test,
    }


def _evaluate(artifacts: dict[str, Path], unlearned: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{unlearned}.json"
    res = invoke(
        "evaluate",
        str(artifacts[unlearned]),
        "--original",
        str(artifacts["orig"]),
        "--retrain",
        str(artifacts["retrain"]),
        "--json",
        str(out),
        *extra,
    )
    assert res.exit_code == 0, res.output
    assert "RetDev" in res.output and "val_mia" in res.output
    return json.loads(out.read_text())


def test_evaluate_ft_matches_the_library(artifacts: dict[str, Path], tmp_path: Path) -> None:
    rep = _evaluate(artifacts, "ft", tmp_path)
    parts = _parts()
    u, _ = load_model(artifacts["ft"])
    r, r_man = load_model(artifacts["retrain"])
    for split, key in (("retain", "RA"), ("forget", "FA"), ("val", "VA"), ("test", "TA")):
        acc_u, acc_r = evaluate_accuracy(u, parts[split]), evaluate_accuracy(r, parts[split])
        assert rep["accuracy"]["unlearned"][key] == pytest.approx(acc_u)
        assert rep["accuracy"]["retrain"][key] == pytest.approx(acc_r)
    acc_u, acc_r = rep["accuracy"]["unlearned"], rep["accuracy"]["retrain"]
    assert rep["retention"]["FR"] == pytest.approx(acc_u["FA"] / acc_r["FA"])
    dev = sum(abs(acc_u[a] / acc_r[a] - 1) for a in ("RA", "FA", "TA"))
    assert rep["retention"]["RetDev"] == pytest.approx(dev)
    loss = {k: cross_entropy(predict_logits(u, parts[k]), parts[k].y) for k in ("forget", "val")}
    assert rep["mia"]["unlearned"]["val_mia"] == pytest.approx(
        population_mia(loss["forget"], loss["val"])
    )
    assert rep["mia"]["unlearned"]["val_indisc"] == pytest.approx(
        1 - abs(2 * rep["mia"]["unlearned"]["val_mia"] - 1)
    )
    assert 0.0 <= rep["mia"]["unlearned"]["svc_mia_efficacy"] <= 1.0
    # times default to the manifests' unlearning seconds: RTE = T_retrain / T_ft
    t_r = r_man["unlearning"]["seconds"]
    t_u = load_model(artifacts["ft"])[1]["unlearning"]["seconds"]
    assert rep["rte"] == pytest.approx(t_r / t_u)


def test_evaluate_known_answers_for_retrain_and_original(
    artifacts: dict[str, Path], tmp_path: Path
) -> None:
    o, _ = load_model(artifacts["orig"])
    r, _ = load_model(artifacts["retrain"])
    # the retrain scored against itself (library call: the CLI refuses a model as its own
    # retrain, checked below)
    rep = evaluate_unlearned(r, o, r, _parts(), method_seconds=2.0, retrain_seconds=10.0)
    assert rep["retention"] == pytest.approx({"RR": 1.0, "FR": 1.0, "TR": 1.0, "RetDev": 0.0})
    assert rep["distance"]["normalized"] == 0.0 and rep["distance"]["unlearned_to_retrain"] == 0
    assert rep["rte"] == pytest.approx(5.0)
    assert rep["mia"]["unlearned"] == rep["mia"]["retrain"]
    res = invoke(
        "evaluate",
        str(artifacts["retrain"]),
        "--original",
        str(artifacts["orig"]),
        "--retrain",
        str(artifacts["retrain"]),
    )
    assert res.exit_code == 2 and "the model itself" in res.output, res.output
    # the Original as "unlearned" (library call: its manifest records no forget set)
    lib = evaluate_unlearned(o, o, r, _parts())
    assert lib["distance"]["normalized"] == pytest.approx(1.0)
    assert lib["mia"]["unlearned"] == lib["mia"]["original"]
    assert lib["rte"] is None and lib["notes"] == []


def test_evaluate_refuses_mismatched_models(artifacts: dict[str, Path], tmp_path: Path) -> None:
    res = invoke(
        "evaluate",
        str(artifacts["ft"]),
        "--original",
        str(artifacts["retrain"]),
        "--retrain",
        str(artifacts["retrain"]),
    )
    assert res.exit_code == 2 and "not an ancestor" in res.output, res.output
    other = tmp_path / "retrain_other"
    res = invoke("unlearn", "--method", "retrain", "--model", str(artifacts["orig"]),
                 "--forget", "random:0.2", "--out", str(other))  # fmt: skip
    assert res.exit_code == 0, res.output
    res = invoke(
        "evaluate",
        str(artifacts["ft"]),
        "--original",
        str(artifacts["orig"]),
        "--retrain",
        str(other),
    )
    assert res.exit_code == 2 and "another forget set" in res.output, res.output
    res = invoke(
        "evaluate",
        str(artifacts["orig"]),
        "--original",
        str(artifacts["orig"]),
        "--retrain",
        str(artifacts["retrain"]),
    )
    assert res.exit_code == 2 and "the model itself" in res.output, res.output
    with pytest.raises(DataError):
        o, _ = load_model(artifacts["orig"])
        evaluate_unlearned(o, o, o, {"retain": _parts()["retain"]})


def test_parse_assignments() -> None:
    assert parse_assignments(["size=500", "name=x", "f=0.5", "l=[1,2]"], "--p") == {
        "size": 500,
        "name": "x",
        "f": 0.5,
        "l": [1, 2],
    }
    with pytest.raises(ConfigError):
        parse_assignments(["novalue"], "--p")


def test_audit_command_writes_table_plot_and_reuses_pools(tmp_path: Path) -> None:
    args = [
        "audit",
        "--method",
        "original",
        "--method",
        "ft",
        "--method-config",
        'ft={"num_epochs": 1}',
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--model-option",
        "width=16",
        "--model-option",
        "depth=1",
        "--shadows",
        "4",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--target-fraction",
        "0.3",
        "--cache",
        str(tmp_path / "cache"),
    ]
    res = invoke(*args, "--out", str(tmp_path / "a"))
    assert res.exit_code == 0, res.output
    for f in ("table.md", "results.json", "roc.png", "ft/per_example.csv"):
        assert (tmp_path / "a" / f).exists()
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [r["method"] for r in data["results"]] == ["original", "ft"]
    assert data["results"][1]["pools"][0]["trained"] == 4
    res = invoke(*args, "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert all(p["trained"] == 0 for r in again["results"] for p in r["pools"])
    assert again["results"][1]["metrics"] == data["results"][1]["metrics"]


def test_audit_command_errors(tmp_path: Path) -> None:
    res = invoke(
        "audit",
        "--method",
        "nope",
        "--dataset",
        "digits",
        "--shadows",
        "4",
        "--out",
        str(tmp_path),
        "--cache",
        str(tmp_path / "c"),
    )
    assert res.exit_code == 2 and "unknown unlearning method" in res.output
    res = invoke("audit", "--method", "ft", "--method-config", "ga={}", "--out", str(tmp_path))
    assert res.exit_code == 2 and "METHOD=JSON" in res.output
    res = invoke("audit", "--method", "ft", "--scheme", "nope", "--out", str(tmp_path))
    assert res.exit_code == 2 and "split scheme" in res.output
