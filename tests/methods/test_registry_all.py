"""Registry-wide contract of the 21 zoo rows (18 Deep Unlearn methods, SSSE, Retrain, Original).

For every registered method:

- its search space's values (low bound, high bound, one random draw) validate against its
  ``Config`` and land in the field the dotted name points to;
- ``unlearn`` leaves the input model bit-identical, returns a new module, and is deterministic
  given its seed (two runs give bit-identical weights);
- every method but Original (and SCRUB, which may select O) changes the weights; Original
  returns them unchanged;
- ``unlearn`` leaves the caller's global RNG state (torch, numpy, random) as it found it.

Conv methods run on a tiny ``cnn``, the others on a tiny ``mlp`` (both from ``build_model``, so
Retrain can rebuild the initial weights), on 8x8 digits; configs are cut to one epoch/step.
"""

from __future__ import annotations

import random
import subprocess
import sys
from functools import lru_cache
from typing import Any

import numpy as np
import optuna.distributions as od
import pytest
import torch
from torch import nn

from unlearnkit.data import load_dataset
from unlearnkit.data.base import concat
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.methods.describe import flatten
from unlearnkit.methods.toolkit.search_space import nest_params
from unlearnkit.models import build_model
from unlearnkit.training import SGDRecipe, train

EXPECTED = {
    "ft",
    "ga",
    "srl",
    "ngplus",
    "bt",
    "scrub",
    "salun",
    "ff",
    "iu",
    "cfk",
    "euk",
    "fcs",
    "msg",
    "cfw",
    "prmq",
    "ct",
    "kde",
    "rni",
    "ssse",
    "retrain",
    "original",
}
CONV_REQUIREMENTS = {"conv", "conv2d", "convnd", "square_conv2d"}

# Cut every epoch/step count (and IU's sample and CG budgets) to keep the whole file fast.
FAST = {
    "num_epochs": 1,
    "epochs": 1,
    "sgda_num_epochs": 1,
    "retain_num_epochs": 1,
    "fine_num_epochs": 1,
    "reset_num_epochs": 0,
    "msteps": 1,
    "num_samples": 16,
    "cg_max_iter": 100,
    "batch_size": 32,
    "retain_batch_size": 32,
    "forget_batch_size": 16,
}


def test_the_21_built_in_rows_are_registered_by_importing_the_package() -> None:
    # ``import unlearnkit.methods`` registered the 21 built-in rows without any other import;
    # a method added as a new module of the package is registered (and tested below) too.
    assert EXPECTED <= set(METHODS.names())
    assert all(METHODS.get(k).__module__.startswith("unlearnkit.methods.") for k in EXPECTED)
    abbreviations = [METHODS.get(k).abbreviation for k in METHODS.names()]
    assert len(set(abbreviations)) == len(abbreviations)


def test_a_fresh_interpreter_sees_every_method_after_importing_only_the_registry() -> None:
    code = "from unlearnkit.methods.base import METHODS; print(len(METHODS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(EXPECTED)


# ----------------------------------------------------------------------------- search spaces


def _values(dist: od.BaseDistribution, rng: np.random.Generator) -> list[Any]:
    """Low bound, high bound and one draw of ``dist`` (Deep Unlearn's distributions)."""
    if isinstance(dist, od.CategoricalDistribution):
        return [dist.choices[0], dist.choices[-1], dist.choices[rng.integers(len(dist.choices))]]
    if isinstance(dist, od.IntDistribution):
        return [dist.low, dist.high, int(rng.integers(dist.low, dist.high + 1))]
    if isinstance(dist, od.FloatDistribution):
        if dist.log:
            draw = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
        else:
            draw = float(rng.uniform(dist.low, dist.high))
        return [dist.low, dist.high, draw]
    raise AssertionError(f"unexpected distribution {dist!r}")


def _check_space(key: str, max_epochs: int, picks: tuple[int, ...]) -> None:
    """Values ``picks`` of :func:`_values` validate and land in the named config fields."""
    method = METHODS.get(key)()
    space = method.search_space(max_epochs)
    rng = np.random.default_rng(0)
    for name, dist in space.items():
        assert isinstance(dist, od.BaseDistribution), name
        if "epoch" in name and isinstance(dist, (od.IntDistribution, od.FloatDistribution)):
            assert dist.high == max_epochs, f"{key}.{name}: E* must bound the epochs"
    for pick in picks:
        params = {name: _values(dist, rng)[pick] for name, dist in space.items()}
        for name, value in params.items():
            dist = space[name]
            assert dist._contains(dist.to_internal_repr(value)), (key, name, value)
        cfg = method.make_config(nest_params(params))
        got = flatten(cfg.model_dump())
        for name, value in params.items():
            assert got[name] == pytest.approx(value), (key, name)


@pytest.mark.parametrize("key", METHODS.names())
@pytest.mark.parametrize("max_epochs", [3, 10])
def test_search_space_draws_and_high_bounds_validate(key: str, max_epochs: int) -> None:
    _check_space(key, max_epochs, picks=(1, 2))


@pytest.mark.parametrize("key", METHODS.names())
def test_search_space_low_bounds_validate(key: str) -> None:
    _check_space(key, 10, picks=(0,))


# ----------------------------------------------------------------------------- unlearning


@lru_cache(maxsize=1)
def _data() -> UnlearnData:
    ds = load_dataset("digits")
    ids = ds.ids[torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))]
    return UnlearnData(
        retain=ds.subset(ids[:120].sort().values, name="retain"),
        forget=ds.subset(ids[120:150].sort().values, name="forget"),
        val=ds.subset(ids[150:180].sort().values, name="val"),
    )


@lru_cache(maxsize=2)
def _trained(kind: str) -> nn.Module:
    data = _data()
    options: dict[str, Any] = (
        {"channels": (4,), "pool_output": 2} if kind == "cnn" else {"width": 16, "depth": 1}
    )
    model = build_model(kind, (1, 8, 8), 10, seed=0, **options)
    both = concat([data.retain, data.forget])  # the Original saw retain + forget
    return train(model, both, SGDRecipe(epochs=2, batch_size=32, lr=0.05), seed=1).model


def _fast_config(key: str) -> dict[str, Any]:
    defaults = METHODS.get(key).Config().model_dump()
    return {k: v for k, v in FAST.items() if k in defaults}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key", METHODS.names())
def test_unlearn_keeps_input_and_is_deterministic(key: str) -> None:
    cls = METHODS.get(key)
    kind = "cnn" if CONV_REQUIREMENTS & set(cls.requires) else "mlp"
    model = _trained(kind)
    before = _state(model)
    flags = [p.requires_grad for p in model.parameters()]
    method, data, cfg = cls(), _data(), _fast_config(key)

    first = method.unlearn(model, data, cfg, seed=7)
    assert _same(_state(model), before), f"{key} modified its input model"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert first.model is not model
    assert first.seconds > 0
    second = method.unlearn(model, data, cfg, seed=7)
    assert _same(_state(first.model), _state(second.model)), f"{key} is not deterministic"
    out = _state(first.model)
    assert all(torch.isfinite(v).all() for v in out.values() if v.is_floating_point())
    if key == "original":
        assert _same(out, before)
    elif key != "scrub":  # SCRUB may select epoch 0, i.e. O itself, by design
        assert not _same(out, before), f"{key} left the weights unchanged"


def _global_draws() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.rand(4), np.random.rand(4), random.random()


def _seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@pytest.mark.parametrize("key", METHODS.names())
def test_unlearn_leaves_the_callers_global_rng_state_as_found(key: str) -> None:
    cls = METHODS.get(key)
    kind = "cnn" if CONV_REQUIREMENTS & set(cls.requires) else "mlp"
    model, data, cfg = _trained(kind), _data(), _fast_config(key)
    _seed_globals(2024)
    want = _global_draws()
    _seed_globals(2024)
    cls().unlearn(model, data, cfg, seed=7)
    got = _global_draws()
    assert torch.equal(got[0], want[0]), f"{key} moved torch's global generator"
    assert np.array_equal(got[1], want[1]), f"{key} moved numpy's global generator"
    assert got[2] == want[2], f"{key} moved python's random"
