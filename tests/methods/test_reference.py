"""Original and Retrain: Retrain with the user's training function and any model."""

from __future__ import annotations

import copy

import pytest
import torch
from blob_mlp_fixtures import TinyMLP, tiny_data
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError
from unlearnkit.io import model_fingerprint
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.reference import Original, Retrain
from unlearnkit.models import build_from_spec, build_model
from unlearnkit.training import SGDRecipe, train

CALLS: list[tuple[int, int]] = []


def my_train(factory, dataset: ArrayDataset, seed: int) -> nn.Module:
    """A plain PyTorch loop: full-batch gradient descent, 5 steps, seeded by ``seed``."""
    CALLS.append((len(dataset), seed))
    torch.manual_seed(seed)  # a user loop may touch the global RNG; Retrain restores it
    model = factory()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(dataset.x), dataset.y).backward()
        opt.step()
    return model


def _init() -> TinyMLP:
    torch.manual_seed(3)
    return TinyMLP()


def test_retrain_with_a_user_train_fn_and_a_model_factory() -> None:
    data = tiny_data()
    original = my_train(_init, data.retain, 0)  # any nn.Module, not built by build_model
    CALLS.clear()
    out = Retrain(train_fn=my_train, model_factory=_init).unlearn(
        original, data, {"train_seed": 11}
    )
    assert CALLS == [(len(data.retain), 11)]  # retain only, with the Original's seed
    want = my_train(_init, data.retain, 11)
    assert model_fingerprint(out.model) == model_fingerprint(want)
    assert not out.model.training and out.info["train_fn"] == "user"


def test_retrain_from_initial_weights_with_the_config_recipe() -> None:
    data = tiny_data()
    init = _init()
    before = model_fingerprint(init)
    out = Retrain(initial_model=init).unlearn(init, data, {"epochs": 2, "train_seed": 4})
    want = train(init, data.retain, SGDRecipe(epochs=2, device="cpu"), seed=4).model
    assert model_fingerprint(out.model) == model_fingerprint(want)
    assert model_fingerprint(init) == before  # the initial model is copied, never trained


def test_retrain_falls_back_to_the_build_spec() -> None:
    data = tiny_data()
    model = build_model("mlp", (4,), 3, seed=5, width=8, depth=1)
    trained = train(model, data.retain, SGDRecipe(epochs=1, device="cpu"), seed=0).model
    out = Retrain().unlearn(trained, data, {"epochs": 2, "train_seed": 9})
    init = build_from_spec(model.build_spec)
    want = train(init, data.retain, SGDRecipe(epochs=2, device="cpu"), seed=9).model
    assert model_fingerprint(out.model) == model_fingerprint(want)


def test_retrain_without_initial_weights_says_what_to_pass() -> None:
    data = tiny_data()
    with pytest.raises(ConfigError, match="model_factory=.*initial_model=.*train_fn="):
        Retrain(train_fn=my_train).unlearn(TinyMLP(), data)
    with pytest.raises(ConfigError, match="not both"):
        Retrain(model_factory=_init, initial_model=_init())


def test_original_returns_an_unchanged_copy() -> None:
    data = tiny_data()
    model = _init()
    out = Original().unlearn(model, UnlearnData(data.retain, data.forget)).model
    assert out is not model and model_fingerprint(out) == model_fingerprint(copy.deepcopy(model))
