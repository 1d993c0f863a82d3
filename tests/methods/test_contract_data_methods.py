"""What every data-driven method (FT ... IU) promises: input untouched, seeded determinism,
early refusal of data it cannot handle, search spaces that fit the config, registration, CUDA when present."""

from __future__ import annotations

import dataclasses

import optuna.distributions as od
import pytest
import torch
from blob_mlp_fixtures import multilabel_like, original, states_equal, tiny_data

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods import METHODS
from unlearnkit.methods.toolkit.search_space import nest_params

FAST = {
    "ft": dict(batch_size=16, num_epochs=2),
    "ga": dict(batch_size=8, num_epochs=2),
    "srl": dict(batch_size=16, num_epochs=2),
    "ngplus": dict(batch_size=16, num_epochs=2, l2_weight=0.1),
    "bt": dict(batch_size=16, num_epochs=2),
    # faithful: on this easy data every forget error is 0, so the corrected selection returns O
    "scrub": dict(sgda_num_epochs=2, msteps=1, sgda_learning_rate=0.05, faithful=True),
    "salun": dict(batch_size=16, num_epochs=2, weight_decay=1e-3),
    "ff": dict(batch_size=16),
    "iu": dict(num_samples=20),
}
STOCHASTIC = set(FAST)  # every method draws from the seed (IU: its random retain subset)


def test_all_part_a_methods_are_registered():
    assert set(FAST) <= set(METHODS.names())


@pytest.mark.parametrize("name", sorted(FAST))
def test_input_untouched_seeded_and_effective(name):
    method, data = METHODS.get(name)(), tiny_data()
    model = original()
    a = method.unlearn(model, data, FAST[name], seed=1)
    assert states_equal(model, original())  # the input model is unchanged
    assert not states_equal(a.model, model)  # and the method did something
    assert a.seconds > 0
    b = method.unlearn(original(), data, FAST[name], seed=1)
    assert states_equal(a.model, b.model)  # same seed, same result
    c = method.unlearn(original(), data, FAST[name], seed=2)
    assert (not states_equal(a.model, c.model)) == (name in STOCHASTIC)


@pytest.mark.parametrize("name", sorted(FAST))
def test_refuses_multilabel_data_before_work(name):
    method, data = METHODS.get(name)(), tiny_data()
    bad = _with(data, {s: multilabel_like(getattr(data, s)) for s in method.uses})
    model = original()
    with pytest.raises(UnsupportedError, match="multiclass"):
        method.unlearn(model, bad, FAST[name])
    assert states_equal(model, original())


def _with(data, changes):
    return dataclasses.replace(data, **changes)


def _sample(dist: od.BaseDistribution):
    if isinstance(dist, od.CategoricalDistribution):
        return [dist.choices[0], dist.choices[-1]]
    return [max(dist.low, 1e-3) if isinstance(dist, od.FloatDistribution) else dist.low, dist.high]


@pytest.mark.parametrize("name", sorted(FAST))
def test_search_space_fits_the_config(name):
    method = METHODS.get(name)()
    space = method.search_space(max_epochs=7)
    assert space, f"{name} has an empty search space"
    for i in (0, 1):
        params = {k: _sample(d)[i] for k, d in space.items()}
        cfg = method.Config(**nest_params(params))
        assert all(getattr(cfg, k) == v for k, v in params.items() if "." not in k)
    epochs = [d for k, d in space.items() if "epoch" in k or k == "msteps"]
    assert all(d.high == 7 for d in epochs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(FAST))
def test_runs_on_cuda(name):
    method, data = METHODS.get(name)(), tiny_data()
    model = original()
    out = method.unlearn(model, data, FAST[name], device="cuda").model
    assert all(p.device.type == "cuda" for p in out.parameters())
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert states_equal(model, original())
