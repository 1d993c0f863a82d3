"""`unlearnkit prepare --structure kfac|auto` then `erase`, end to end on digits / logreg."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from unlearnkit.artifacts import load_model, manifest_split
from unlearnkit.cli import app
from unlearnkit.ssse import KroneckerState, load_state

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_prepare_kfac_then_erase_twice(tmp_path: Path):
    r = invoke(
        "train",
        "--dataset",
        "digits",
        "--model",
        "logreg",
        "--out",
        tmp_path / "m0",
        "--epochs",
        "2",
    )
    assert r.exit_code == 0, r.output
    r = invoke(
        "prepare", "--model", tmp_path / "m0", "--out", tmp_path / "st", "--structure", "kfac"
    )
    assert r.exit_code == 0, r.output
    assert "structure=kfac" in r.output and "kfac linear" in r.output
    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert manifest["structure"] == "kfac" and manifest["kronecker"]["ekfac"] is False
    _, model_manifest = load_model(tmp_path / "m0")
    ids = manifest_split(model_manifest).fit_on.ids.tolist()
    n = len(ids)
    r = invoke(
        "erase",
        "--model",
        tmp_path / "m0",
        "--state",
        tmp_path / "st",
        "--out",
        tmp_path / "m1",
        "--ids",
        ",".join(map(str, ids[:3])),
    )
    assert r.exit_code == 0, r.output
    assert f"{n - 3} remain" in r.output and "auto: retained_loss" in r.output
    r = invoke(
        "erase",
        "--model",
        tmp_path / "m1",
        "--state",
        tmp_path / "st",
        "--out",
        tmp_path / "m2",
        "--ids",
        str(ids[10]),
        "--eps",
        "1",
    )
    assert r.exit_code == 0, r.output
    m2, _ = load_model(tmp_path / "m2")
    state = load_state(tmp_path / "st", m2)
    assert isinstance(state, KroneckerState) and state.sums.n == n - 4
    assert [(e["structure"], e["scales_basis"]) for e in state.ledger] == [("kfac", "none")] * 2
    assert torch.equal(
        torch.sort(state.erased_ids).values, torch.sort(torch.tensor(ids[:3] + [ids[10]])).values
    )
    # a repeated id is refused with a one-line error, the state unchanged
    before = (tmp_path / "st" / "manifest.json").read_bytes()
    r = invoke(
        "erase",
        "--model",
        tmp_path / "m2",
        "--state",
        tmp_path / "st",
        "--out",
        tmp_path / "m3",
        "--ids",
        str(ids[0]),
        "--eps",
        "1",
    )
    assert r.exit_code == 2 and "already erased" in r.output
    assert (tmp_path / "st" / "manifest.json").read_bytes() == before
    # auto on this small model keeps the exact rows and says why
    r = invoke(
        "prepare", "--model", tmp_path / "m0", "--out", tmp_path / "st2", "--structure", "auto"
    )
    assert r.exit_code == 0, r.output
    assert "chosen by auto" in r.output and "structure=rows" in r.output
    r = invoke(
        "prepare", "--model", tmp_path / "m0", "--out", tmp_path / "st3", "--structure", "diag"
    )
    assert r.exit_code == 2 and "structure" in r.output
