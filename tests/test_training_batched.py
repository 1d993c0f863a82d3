"""The batched trainer against training each model alone (same seeds, fp64)."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import UnsupportedError
from unlearnkit.models import build_model
from unlearnkit.training import SGDRecipe, train
from unlearnkit.training.batched import train_many


@pytest.fixture
def blobs() -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    n = 90
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + torch.nn.functional.one_hot(y, 6).float() * 2
    return ArrayDataset(
        "blobs", x.double(), y, torch.arange(100, 100 + n), "multiclass", tuple("abc")
    )


def factory(seed: int) -> torch.nn.Module:
    return build_model("mlp", (6,), 3, seed=seed, width=8, depth=1).double()


@pytest.mark.parametrize("nesterov", [False, True])
def test_each_copy_equals_the_model_trained_alone(blobs, nesterov):
    """Copies with different seeds, subset sizes (so different steps per epoch) and orders."""
    ids = blobs.ids
    subsets = [ids[:90], ids[10:70], ids[::2], ids[5:40]]
    seeds = [3, 4, 5, 6]
    recipe = SGDRecipe(
        epochs=3, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=nesterov
    )
    fit = train_many(factory, blobs, subsets, seeds, recipe)
    for model, sub, seed in zip(fit.models, subsets, seeds, strict=True):
        alone = train(factory(seed), blobs.subset(sub), recipe, seed).model
        for (n, p), q in zip(model.named_parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=n)
    assert fit.losses.shape == (3, 4) and bool((fit.losses[-1] < fit.losses[0]).all())


def test_batchnorm_is_refused(blobs):
    def bn(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3)
        )

    with pytest.raises(UnsupportedError, match="BatchNorm"):
        train_many(bn, blobs, [blobs.ids], [0], SGDRecipe(epochs=1))
