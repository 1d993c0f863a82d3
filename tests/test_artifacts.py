"""Saved models: round trips through the registry, checksums, tampering, path forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from unlearnkit.artifacts import artifact_paths, load_model, read_manifest, save_model
from unlearnkit.errors import ConfigError, NumericalError, StateMismatchError
from unlearnkit.io import model_fingerprint, sha256_file
from unlearnkit.models import build_model, spec_of


def test_round_trip_restores_weights_spec_and_manifest(tmp_path: Path) -> None:
    model = build_model("cnn", (3, 8, 8), 4, seed=3, channels=(4, 8))
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    extra = {"note": "toy", "parts": {"train": 4}, "seed": 123, "metrics": {"test_acc": 0.5}}
    manifest_path = save_model(tmp_path / "orig", model, extra)
    assert manifest_path == tmp_path / "orig.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.json", "orig.safetensors"]
    loaded, manifest = load_model(tmp_path / "orig")
    assert model_fingerprint(loaded) == model_fingerprint(model)
    assert spec_of(loaded) == spec_of(model)
    assert not loaded.training
    assert {k: manifest[k] for k in extra} == extra
    assert manifest["model"]["name"] == "cnn"
    assert manifest["model"]["options"]["channels"] == [4, 8]
    assert manifest["weights"]["sha256"] == sha256_file(tmp_path / "orig.safetensors")
    assert manifest["weights"]["dtype"] == "float32"
    assert set(manifest["versions"]) >= {"python", "torch", "unlearnkit"}
    assert manifest["format"] == "unlearnkit.model" and manifest["format_version"] == 2
    assert manifest["data"] is None and manifest["provenance"] is None  # nothing was said
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_round_trip_restores_batchnorm_buffers(tmp_path: Path) -> None:
    model = build_model("resnet20", (3, 8, 8), 4, seed=3, shortcut="B")
    with torch.no_grad():
        model(torch.randn(4, 3, 8, 8))  # train mode: running statistics move
    save_model(tmp_path / "bn", model, {})
    loaded, _ = load_model(tmp_path / "bn")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert int(loaded.bn1.num_batches_tracked) == 1


def test_path_forms_and_float64(tmp_path: Path) -> None:
    model = build_model("linear", (5,), 2, seed=0).double()
    save_model(tmp_path, model, {})  # an existing directory -> model.*
    assert artifact_paths(tmp_path) == (tmp_path / "model.safetensors", tmp_path / "model.json")
    for form in (tmp_path, tmp_path / "model.json", tmp_path / "model.safetensors"):
        loaded, _ = load_model(form)
        assert loaded.fc.weight.dtype == torch.float64
        assert torch.equal(loaded.fc.weight, model.fc.weight)
    assert read_manifest(tmp_path)["weights"]["dtype"] == "float64"


def test_tampered_weights_are_detected(tmp_path: Path) -> None:
    save_model(tmp_path / "m", build_model("mlp", (6,), 3, seed=0, width=4), {})
    w = tmp_path / "m.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0xFF  # flip the last byte of the tensor data
    w.write_bytes(bytes(raw))
    with pytest.raises(StateMismatchError, match="checksum"):
        load_model(tmp_path / "m")


def test_swapped_weights_with_updated_checksum_fail_the_fingerprint(tmp_path: Path) -> None:
    a = build_model("mlp", (6,), 3, seed=0, width=4)
    b = build_model("mlp", (6,), 3, seed=1, width=4)
    save_model(tmp_path / "m", a, {})
    save_file(dict(b.state_dict()), str(tmp_path / "m.safetensors"))
    man = json.loads((tmp_path / "m.json").read_text())
    man["weights"]["sha256"] = sha256_file(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps(man))
    with pytest.raises(StateMismatchError, match="fingerprint"):
        load_model(tmp_path / "m")


def test_edited_architecture_does_not_fit_the_weights(tmp_path: Path) -> None:
    save_model(tmp_path / "m", build_model("cnn", (1, 8, 8), 10, seed=0), {})
    man = json.loads((tmp_path / "m.json").read_text())
    man["model"]["num_outputs"] = 7
    (tmp_path / "m.json").write_text(json.dumps(man))
    with pytest.raises(StateMismatchError, match="does not fit"):
        load_model(tmp_path / "m")


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(StateMismatchError, match="no model manifest"):
        load_model(tmp_path / "missing")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(StateMismatchError, match="not valid JSON"):
        load_model(tmp_path / "junk")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StateMismatchError, match="not an unlearnkit model manifest"):
        load_model(tmp_path / "other")
    model = build_model("logreg", (3,), 2, seed=0)
    with pytest.raises(ConfigError, match="reserved"):
        save_model(tmp_path / "r", model, {"weights": 1})
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        save_model(tmp_path / "r", model, {"x": float("nan"), "loop": _loop()})
    assert not list(tmp_path.glob("r*"))  # nothing written on error
    (tmp_path / "new.json").write_text(
        json.dumps({"format": "unlearnkit.model", "format_version": 3})
    )
    with pytest.raises(StateMismatchError, match="newer than this unlearnkit reads"):
        read_manifest(tmp_path / "new")


def _loop() -> list:
    loop: list = []
    loop.append(loop)
    return loop


def test_a_users_module_is_saved_without_spec_and_loaded_into_an_instance(tmp_path: Path) -> None:
    user = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    save_model(tmp_path / "u", user, {})
    assert read_manifest(tmp_path / "u")["model"] is None
    with pytest.raises(ConfigError, match="not built by"):
        load_model(tmp_path / "u")
    blank = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = model_fingerprint(blank)
    loaded, _ = load_model(tmp_path / "u", model=blank)
    assert model_fingerprint(loaded) == model_fingerprint(user) != before
    assert model_fingerprint(blank) == before  # the instance given is not modified
    with pytest.raises(StateMismatchError, match="does not fit a Linear"):
        load_model(tmp_path / "u", model=nn.Linear(3, 2))


@pytest.mark.parametrize(
    ("tensor", "value"),
    [("fc.weight", float("nan")), ("bn1.running_var", float("inf")), ("fc.bias", -float("inf"))],
)
def test_non_finite_weights_are_never_written(tmp_path: Path, tensor: str, value: float) -> None:
    good = build_model("resnet20", (3, 8, 8), 4, seed=0)
    save_model(tmp_path / "m", good, {"note": "good"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad = build_model("resnet20", (3, 8, 8), 4, seed=1)
    with torch.no_grad():
        bad.state_dict()[tensor].view(-1)[1] = value
    with pytest.raises(NumericalError, match=rf"{tensor} .*1 non-finite"):
        save_model(tmp_path / "m", bad, {"note": "bad"})  # over an existing model
    with pytest.raises(NumericalError, match=tensor):
        save_model(tmp_path / "sub" / "new", bad, {})  # to a new path
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing changed
