"""Run every script of ``examples/`` (its ``main()``) and check its numbers.

Each example trains a model nobody here wrote, erases 20 samples by id with ε = auto, retrains
with the user's loop, evaluates and audits. Known facts: the 20 ids leave the state's
remaining set; the erased model stays within the utility budget on test data; the audit's
rates are rates; the original is a usable classifier.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

import unlearnkit as uk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N_TRAIN = int(0.7 * 1797)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "min_accuracy"), [("user_cnn_dataloader", 0.9), ("hf_transformer", 0.7)]
)
def test_example_runs_and_its_numbers_make_sense(name: str, min_accuracy: float) -> None:
    if name == "hf_transformer":
        pytest.importorskip("transformers")
    out = _load(name).main()
    assert out["original_test"] >= min_accuracy
    assert out["retrain_test"] >= min_accuracy - 0.05
    assert out["original_test"] - out["erased_test"] <= uk.DEFAULT_UTILITY_BUDGET + 0.02
    assert out["remaining"] == N_TRAIN - 20
    assert out["eps"] > 0
    for key in ("original_forget", "erased_forget", "retrain_forget"):
        assert 0.0 <= out[key] <= 1.0
    assert math.isfinite(out["normalized_distance"]) and out["normalized_distance"] >= 0
    assert 0.0 <= out["audit_auc"] <= 1.0 and 0.0 <= out["audit_balanced_accuracy"] <= 1.0
