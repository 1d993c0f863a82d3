"""Saved models: round trips through the registry, checksums, tampering, path forms."""

from __future__ import annotations

import json
import time
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


def _edit(path: Path, edit) -> None:
    man = json.loads(path.read_text())
    edit(man)
    path.write_text(json.dumps(man))


def _peak_rss_growth(fn) -> int | None:
    """Bytes the process's peak RSS grew by while ``fn`` ran (None where Linux's peak reset via
    /proc/self/clear_refs is unavailable)."""

    def hwm() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM"))

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = hwm()
    except (OSError, StopIteration):
        fn()
        return None
    fn()
    return hwm() - before


@pytest.mark.parametrize(
    ("edit", "match"),
    [  # the saved model: mlp (6,) -> 3, width 4, depth 2: 6 tensors; width 300000: 360 GB
        (
            lambda m: m["options"].update(width=300000),
            r"body.0.bias: shape \(300000,\) for the model, \(4,\) in the file",
        ),
        (
            lambda m: m["options"].update(width=300000, depth=0),
            r"unexpected in the file \['body.0.bias'",
        ),
        (
            lambda m: m["options"].update(depth=50),
            r"more than 76 parameter and buffer tensors; the weights hold 6",
        ),
        (
            lambda m: m.update(input_shape=[60000]),
            r"body.0.weight: shape \(4, 60000\) for the model, \(4, 6\) in the file",
        ),
        (
            lambda m: m["options"].update(width=5),
            r"does not fit .*body.0.bias: shape \(5,\) for the model, \(4,\)",
        ),
    ],
    ids=["width-360GB", "width-unused", "depth", "input", "width-5"],
)
def test_edited_manifest_is_checked_against_the_weights_header_before_building(
    tmp_path: Path, edit, match: str
) -> None:
    save_model(tmp_path / "m", build_model("mlp", (6,), 3, seed=0, width=4), {})
    _edit(tmp_path / "m.json", lambda man: edit(man["model"]))
    start = time.perf_counter()

    def load() -> None:
        with pytest.raises(StateMismatchError, match=match):
            load_model(tmp_path / "m")

    grew = _peak_rss_growth(load)
    assert time.perf_counter() - start < 2.0
    assert grew is None or grew < 100 << 20, f"peak RSS grew by {grew} bytes"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("weights"), r"key 'weights' is missing"),
        (lambda m: m["weights"].pop("fingerprint"), r"key 'weights.fingerprint' is missing"),
        (lambda m: m["weights"].update(sha256=5), r"'weights.sha256' must be .*got int"),
        (lambda m: m["weights"].update(dtype=["float32"]), r"'weights.dtype' must be"),
        (lambda m: m.update(model=[1, 2]), r"'model' must be a mapping"),
        (lambda m: m["model"].pop("num_outputs"), r"'model'.*num_outputs"),
        (lambda m: m["model"].update(input_shape="abc"), r"'model'.*input_shape"),
        (lambda m: m["model"].update(name="nosuch"), r"'model'.*nosuch"),
        (lambda m: m["weights"].update(dtype="float64"), r"dtype float64 but the weights file holds \['F32'\]"),
    ],
    ids=["weights", "fingerprint", "sha-type", "dtype-type", "model-type", "num_outputs",
         "input_shape", "name", "dtype"],
)  # fmt: skip
def test_malformed_manifest_keys_are_named(tmp_path: Path, edit, match: str) -> None:
    save_model(tmp_path / "m", build_model("mlp", (6,), 3, seed=0, width=4), {})
    _edit(tmp_path / "m.json", edit)
    with pytest.raises(StateMismatchError, match=match):
        load_model(tmp_path / "m")


def test_weights_that_are_not_safetensors_are_refused(tmp_path: Path) -> None:
    save_model(tmp_path / "m", build_model("mlp", (6,), 3, seed=0, width=4), {})
    w = tmp_path / "m.safetensors"
    w.write_bytes((2**40).to_bytes(8, "little") + b"{}")  # header length past the end
    _edit(tmp_path / "m.json", lambda m: m["weights"].update(sha256=sha256_file(w)))
    with pytest.raises(StateMismatchError, match="not a readable safetensors file"):
        load_model(tmp_path / "m")
