"""``unlearnkit methods list`` and ``unlearnkit unlearn`` end to end (typer's CliRunner).

The model artifact is a small MLP trained for 2 epochs on scikit-learn's 8x8 digits; its
manifest records the dataset, the split and the SGD recipe, as ``unlearnkit train`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import unlearnkit.methods  # noqa: F401
from unlearnkit.artifacts import load_model, save_model
from unlearnkit.cli import app
from unlearnkit.cli.methods import parse_config
from unlearnkit.data import load_dataset, select_forget, train_val_test_split
from unlearnkit.errors import ConfigError
from unlearnkit.io import ids_hash, model_fingerprint, sha256_file
from unlearnkit.methods import METHODS
from unlearnkit.models import build_from_spec, build_model, spec_of
from unlearnkit.training import SGDRecipe, evaluate_accuracy, train

runner = CliRunner()
SPLIT = {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
RECIPE = SGDRecipe(epochs=2, batch_size=64, lr=0.05)


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


# ----------------------------------------------------------------------------- methods list


def test_methods_list_json_has_all_21_rows() -> None:
    res = invoke("methods", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert sorted(r["key"] for r in rows) == METHODS.names()
    assert len(rows) == 21
    for r in rows:
        cls = METHODS.get(r["key"])
        assert r["abbreviation"] == cls.abbreviation and r["name"] == cls.name
        for field in ("name", "abbreviation", "paper", "family"):
            assert r[field].strip() not in ("", "-"), (r["key"], field)
        assert r["requires_text"].strip()
        assert r["uses"] or r["key"] == "original"
        assert set(r["search_space"]) == set(cls().search_space(10))
    by_key = {r["key"]: r for r in rows}
    assert by_key["kde"]["uses"] == ["retain", "val (unlabelled)"]
    assert by_key["msg"]["requires"] == ["multiclass", "convnd"]
    assert by_key["ssse"]["requires"] == []


def test_methods_list_table_shows_every_method() -> None:
    res = invoke("methods", "list")
    assert res.exit_code == 0, res.output
    assert "unlearnkit methods (21)" in res.output
    for key, cls in METHODS.items():
        assert key in res.output and cls.abbreviation in res.output
    assert "num_epochs=5" in res.output  # FT's default, one key=value per line


def test_parse_config_inline_file_and_dotted(tmp_path: Path) -> None:
    assert parse_config(None) == {}
    dotted = '{"retain_optimizer.learning_rate": 0.01, "num_epochs": 2}'
    assert parse_config(dotted) == {"retain_optimizer": {"learning_rate": 0.01}, "num_epochs": 2}
    f = tmp_path / "cfg.json"
    f.write_text('{"alpha": 0.3}')
    assert parse_config(str(f)) == {"alpha": 0.3}
    for bad in ("[1, 2]", "{oops", str(tmp_path / "missing.json")):
        with pytest.raises(ConfigError):
            parse_config(bad)


# ----------------------------------------------------------------------------- unlearn


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch MLP on digits, saved with dataset, split, recipe and seed in its manifest."""
    ds = load_dataset("digits")
    train_set = train_val_test_split(ds, **SPLIT).train
    model = build_model("mlp", ds.input_shape, ds.num_outputs, seed=0, width=32, depth=1)
    trained = train(model, train_set, RECIPE, seed=123).model
    path = tmp_path_factory.mktemp("artifacts") / "orig"
    split = {**SPLIT, "train_ids_hash": ids_hash(train_set.ids)}
    manifest = {"dataset": "digits", "split": split, "recipe": RECIPE.model_dump(), "seed": 123}
    save_model(path, trained, manifest)
    return path


def _splits() -> dict[str, Any]:
    ds = load_dataset("digits")
    s = train_val_test_split(ds, **SPLIT)
    fs = select_forget(s.train, "random:0.1", seed=0)
    return {
        "retain": fs.retain(s.train),
        "forget": fs.forget(s.train),
        "val": s.val,
        "test": s.test,
        "forget_ids": fs.forget_ids,
    }


def _files(path: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(path.parent.glob(path.name + ".*"))}


def test_unlearn_ft_end_to_end(original: Path, tmp_path: Path) -> None:
    before = _files(original)
    out = tmp_path / "ft"
    res = invoke(
        "unlearn",
        "--method",
        "FT",
        "--model",
        str(original),
        "--forget",
        "random:0.1",
        "--out",
        str(out),
        "--config",
        '{"num_epochs": 1}',
        "--seed",
        "5",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert _files(original) == before  # the input artifact is untouched
    model, manifest = load_model(out)
    orig_model, _ = load_model(original)
    parts = _splits()
    rec = manifest["unlearning"]
    assert rec["method"] == "ft" and rec["seed"] == 5 and rec["seconds"] > 0
    assert rec["config"] == {**METHODS.get("ft").Config().model_dump(), "num_epochs": 1}
    assert rec["forget_ids_hash"] == ids_hash(parts["forget_ids"])
    assert (
        rec["n_forget"]
        == len(parts["forget"])
        == round(0.1 * (len(parts["retain"]) + len(parts["forget"])))
    )
    assert manifest["provenance"]["parent"] == model_fingerprint(orig_model)
    assert manifest["provenance"]["kind"] == "unlearn" and manifest["provenance"]["seed"] == 5
    plan = manifest["data"]["plan"]
    assert plan["dataset"] == "digits" and plan["split_seed"] == 0
    for split in ("retain", "forget", "val", "test"):
        acc = evaluate_accuracy(model, parts[split])
        assert manifest["accuracy"][split] == pytest.approx(acc, abs=1e-12)
        assert f"{acc:.4f}" in res.output
    assert model_fingerprint(model) != model_fingerprint(orig_model)
    # same seed, same result: the direct library call gives the identical weights
    direct = METHODS.get("ft")().unlearn(orig_model, _udata(parts), {"num_epochs": 1}, seed=5).model
    assert model_fingerprint(direct) == model_fingerprint(model)


def _udata(parts: dict[str, Any]) -> Any:
    from unlearnkit.methods import UnlearnData

    return UnlearnData(parts["retain"], parts["forget"], parts["val"])


def test_unlearn_original_is_identity(original: Path, tmp_path: Path) -> None:
    res = invoke(
        "unlearn",
        "--method",
        "original",
        "--model",
        str(original),
        "--forget",
        "class:3",
        "--out",
        str(tmp_path / "o"),
    )
    assert res.exit_code == 0, res.output
    model, manifest = load_model(tmp_path / "o")
    orig_model, _ = load_model(original)
    assert model_fingerprint(model) == model_fingerprint(orig_model)
    assert [s["spec"] for s in manifest["data"]["plan"]["forget"]] == ["class:3"]


def test_unlearn_retrain_reuses_the_recorded_recipe(original: Path, tmp_path: Path) -> None:
    res = invoke(
        "unlearn",
        "--method",
        "retrain",
        "--model",
        str(original),
        "--forget",
        "random:0.1",
        "--out",
        str(tmp_path / "r"),
        "--config",
        '{"epochs": 1}',
    )
    assert res.exit_code == 0, res.output
    model, manifest = load_model(tmp_path / "r")
    cfg = manifest["unlearning"]["config"]
    assert cfg == {
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "train_seed": 123,
    }
    # Retrain = the recorded recipe (epochs overridden) from the initial weights, on retain
    orig_model, _ = load_model(original)
    init = build_from_spec(spec_of(orig_model))
    recipe = RECIPE.model_copy(update={"epochs": 1})
    expected = train(init, _splits()["retain"], recipe, seed=123).model
    assert torch.equal(
        torch.cat([p.flatten() for p in model.parameters()]),
        torch.cat([p.flatten() for p in expected.parameters()]),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "nope"], "unknown unlearning method 'nope'"),
        (["--method", "msg"], "MSG needs a model with Conv1d/Conv2d/Conv3d layers"),
        (["--config", "{bad"], "--config is not valid JSON"),
        (["--config", "[1]"], "must be a JSON object"),
        (["--config", '{"num_epochs": -1}'], "bad configuration for FT"),
        (["--config", '{"no_such_field": 1}'], "bad configuration for FT"),
        (["--forget", "random"], "forget spec 'random' has no ':'"),
        (["--forget", "ids:999999"], "999999"),
        (
            ["--device", "cuda:7"] if not torch.cuda.is_available() else ["--method", "nope"],
            "CUDA is not available" if not torch.cuda.is_available() else "unknown",
        ),
    ],
)
def test_unlearn_bad_inputs_exit_2(
    original: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {
        "--method": "ft",
        "--model": str(original),
        "--forget": "random:0.1",
        "--out": str(tmp_path / "u"),
    }
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    before = _files(original)
    res = invoke("unlearn", *argv)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert _files(original) == before
    assert not list(tmp_path.glob("u.*"))


def test_unlearn_refuses_to_overwrite(original: Path, tmp_path: Path) -> None:
    res = invoke(
        "unlearn",
        "--method",
        "ft",
        "--model",
        str(original),
        "--forget",
        "class:1",
        "--out",
        str(original),
    )
    assert res.exit_code == 2 and "names the input model" in " ".join(res.output.split())
    (tmp_path / "u.json").write_text("{}")
    args = [
        "unlearn",
        "--method",
        "original",
        "--model",
        str(original),
        "--forget",
        "class:1",
        "--out",
        str(tmp_path / "u"),
    ]
    res = invoke(*args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert invoke(*args, "--overwrite").exit_code == 0


def test_unlearn_needs_the_data_in_the_manifest(tmp_path: Path) -> None:
    model = build_model("logreg", (1, 8, 8), 10, seed=0)
    save_model(tmp_path / "bare", model, {"split": SPLIT})
    res = invoke(
        "unlearn",
        "--method",
        "ft",
        "--model",
        str(tmp_path / "bare"),
        "--forget",
        "random:0.1",
        "--out",
        str(tmp_path / "u"),
    )
    assert res.exit_code == 2 and "does not name its dataset" in " ".join(res.output.split())
    save_model(
        tmp_path / "moved",
        model,
        {"dataset": "digits", "split": {**SPLIT, "train_ids_hash": "0" * 64}},
    )
    res = invoke(
        "unlearn",
        "--method",
        "ft",
        "--model",
        str(tmp_path / "moved"),
        "--forget",
        "random:0.1",
        "--out",
        str(tmp_path / "u"),
    )
    assert res.exit_code == 2 and "train_ids_hash differs" in " ".join(res.output.split())
