"""The CLI's writing conventions, one test each, and the chained workflow.

Conventions: ``--version``; errors as one plain line (no markup, no emoji codes), exit 2;
``--overwrite`` on every command that writes; ``--out`` naming an input or lying inside a
state folder refused; ``prepare`` never replaces a state silently; ``--device cuda`` without a
GPU refused; ``--json`` listings; piped output not wrapped; ``erase`` defaults to ε = auto,
prints retained / held-out accuracy before and after and refuses a step over the budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import unlearnkit
from unlearnkit.cli import app
from unlearnkit.io import sha256_file

runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def _state_files(d: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("conv")
    r = invoke("train", "--dataset", "digits", "--model", "logreg", "--out", d / "m0",
               "--epochs", "3")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke("prepare", "--model", d / "m0", "--out", d / "st", "--group-size", "4")
    assert r.exit_code == 0, r.output
    return d


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"unlearnkit {unlearnkit.__version__}"


def test_errors_are_one_plain_line_without_markup_or_emoji(tmp_path: Path) -> None:
    odd = tmp_path / "a[/x]b[bold]c"
    r = invoke("unlearn", "--method", "ft", "--model", odd, "--forget", "random:0.1",
               "--out", tmp_path / "u")  # fmt: skip
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(odd) in lines[0]
    r = invoke("train", "--dataset", ":train:", "--model", "logreg", "--out", tmp_path / "m")
    assert r.exit_code == 2 and ":train:" in r.output and "🚆" not in r.output
    assert "Traceback" not in r.output


def test_listings_as_json() -> None:
    r = invoke("data", "list", "--json")
    assert r.exit_code == 0, r.output
    names = {row["name"] for row in json.loads(r.output)}
    assert {"digits", "mnist1d"} <= names
    r = invoke("methods", "list", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)) == 21


def test_train_needs_overwrite_and_checks_the_device(work: Path) -> None:
    args = ["train", "--dataset", "digits", "--model", "logreg", "--out", work / "m0",
            "--epochs", "1"]  # fmt: skip
    before = sha256_file(work / "m0.safetensors")
    r = invoke(*args)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert sha256_file(work / "m0.safetensors") == before
    if not torch.cuda.is_available():
        r = invoke(*args[:-4], "--out", work / "gpu", "--device", "cuda")
        assert r.exit_code == 2 and "CUDA is not available" in r.output
        assert not (work / "gpu.json").exists()


def test_prepare_never_replaces_a_state_silently(work: Path) -> None:
    before = _state_files(work / "st")
    r = invoke("prepare", "--model", work / "m0", "--out", work / "st")
    assert r.exit_code == 2 and "ledger would be lost" in r.output and "--overwrite" in r.output
    assert _state_files(work / "st") == before
    r = invoke("prepare", "--model", work / "m0", "--out", work / "st" / "inner")
    assert r.exit_code == 2 and "inside the erasure state folder" in r.output


def test_out_naming_an_input_or_inside_a_state_is_refused(work: Path) -> None:
    before = _state_files(work / "st")
    for out, message in (
        (work / "m0", "names the input model"),
        (work / "st" / "model", "inside the erasure state folder"),
    ):
        r = invoke("erase", "--model", work / "m0", "--state", work / "st", "--out", out,
                   "--ids", "1", "--overwrite")  # fmt: skip
        assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    assert _state_files(work / "st") == before


def test_erase_defaults_to_auto_eps_and_reports_utility(work: Path) -> None:
    r = invoke("erase", "--model", work / "m0", "--state", work / "st", "--out", work / "e1",
               "--forget", "random:0.02", "--state-out", work / "st1")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "auto: retained_loss" in r.output
    for name in ("retained", "held-out", "erased"):
        assert f"accuracy on the {name} samples:" in r.output
    manifest = json.loads((work / "e1.json").read_text())
    assert manifest["provenance"]["kind"] == "erase" and manifest["provenance"]["method"] == "ssse"
    assert manifest["erasure"]["eps_rule"] == "retained_loss"
    assert manifest["data"]["plan"]["dataset"] == "digits"
    r = invoke("erase", "--model", work / "m0", "--state", work / "st", "--out", work / "e2",
               "--forget", "random:0.02", "--state-out", work / "st1")  # fmt: skip
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_erase_refuses_a_step_over_the_utility_budget(work: Path) -> None:
    before = _state_files(work / "st")
    r = invoke("erase", "--model", work / "m0", "--state", work / "st", "--out", work / "big",
               "--forget", "class:3", "--eps", "10000")  # fmt: skip
    assert r.exit_code == 2 and "utility budget" in r.output
    assert _state_files(work / "st") == before and not (work / "big.json").exists()


def test_piped_output_is_not_wrapped(tmp_path: Path) -> None:
    out = tmp_path / ("a-rather-long-folder-name-" * 4) / "model-with-a-long-name"
    r = invoke("train", "--dataset", "digits", "--model", "logreg", "--out", out,
               "--epochs", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"saved {out}.json" in r.output


def test_evaluate_json_needs_overwrite(work: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("{}")
    r = invoke("evaluate", work / "m0", "--original", work / "m0", "--retrain", work / "m0",
               "--json", target)  # fmt: skip
    assert r.exit_code == 2 and "--overwrite" in r.output and target.read_text() == "{}"


def test_chain_with_split_seed_and_dataset_parameter(tmp_path: Path) -> None:
    """train -> unlearn -> unlearn -> evaluate -> prepare -> erase on one data plan."""
    d = tmp_path
    common = ["--dataset", "mnist1d", "--dataset-param", "size=600", "--split-seed", "3",
              "--model", "logreg", "--epochs", "2"]  # fmt: skip
    assert invoke("train", *common, "--out", d / "orig").exit_code == 0
    r = invoke("unlearn", "--method", "ft", "--model", d / "orig", "--forget", "random:0.1",
               "--out", d / "u1", "--config", '{"num_epochs": 1}')  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke("unlearn", "--method", "ga", "--model", d / "u1", "--forget", "class:2",
               "--out", d / "u2", "--config", '{"num_epochs": 1}')  # fmt: skip
    assert r.exit_code == 0, r.output
    u2 = json.loads((d / "u2.json").read_text())
    assert u2["data"]["plan"]["split_seed"] == 3
    assert u2["data"]["plan"]["params"] == {"size": 600}
    assert [s["spec"] for s in u2["data"]["plan"]["forget"]] == ["random:0.1", "class:2"]
    # the retrain of u2: trained without both forget sets, in order
    retrain_steps = ["--forget", "random:0.1", "--forget", "class:2"]
    r = invoke("train", *common, *retrain_steps, "--out", d / "retrain")
    assert r.exit_code == 0, r.output
    r = invoke("evaluate", d / "u2", "--original", d / "u1", "--retrain", d / "retrain")
    assert r.exit_code == 0, r.output
    # mismatches exit 2 and name what differs
    bad = [c if c != "3" else "0" for c in common]
    assert invoke("train", *bad, *retrain_steps, "--out", d / "r0").exit_code == 0
    r = invoke("evaluate", d / "u2", "--original", d / "u1", "--retrain", d / "r0")
    assert r.exit_code == 2 and "split seed" in r.output, r.output
    r = invoke("evaluate", d / "u2", "--original", d / "u1", "--retrain", d / "orig")
    assert r.exit_code == 2 and "ancestor" in r.output, r.output
    r = invoke("train", *common, "--forget", "class:2", "--out", d / "r1")
    assert r.exit_code == 0, r.output
    r = invoke("evaluate", d / "u2", "--original", d / "u1", "--retrain", d / "r1")
    assert r.exit_code == 2 and "another forget set" in r.output, r.output
    r = invoke("prepare", "--model", d / "u2", "--out", d / "st")
    assert r.exit_code == 0, r.output
    r = invoke("erase", "--model", d / "u2", "--state", d / "st", "--out", d / "e",
               "--forget", "class_fraction:5:0.1")  # fmt: skip
    assert r.exit_code == 0, r.output
