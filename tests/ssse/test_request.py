"""Safe erasure by default: ε = "auto" (guarded loss matching), the utility budget, and the
ledger entry that records both."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unlearnkit.curvature.layout import flat_params
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UtilityBudgetError
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.ssse.eps import (
    guard_sample,
    loss_matching_rule,
    matched_holdout,
    retained_loss_rule,
)
from unlearnkit.ssse.request import _other_kind
from unlearnkit.training import evaluate_accuracy

CFG = ErasureConfig(blocks="per_layer", solver="dense", damping=1e-2, group_size=1)
GRID = [0.01, 0.1, 1.0, 10.0]


@pytest.fixture
def split(blobs: ArrayDataset) -> tuple[ArrayDataset, ArrayDataset]:
    """(train: the first 45 samples, holdout: the last 15)."""
    return blobs.subset(blobs.ids[:45]), blobs.subset(blobs.ids[45:])


@pytest.fixture
def trained(mlp: nn.Module, split: tuple[ArrayDataset, ArrayDataset]) -> nn.Module:
    train = split[0]
    model = copy.deepcopy(mlp).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.x), train.y).backward()
        opt.step()
    return model.eval()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_auto_is_the_default_and_is_the_guarded_retained_loss_choice(trained, split):
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[[0, 4, 8]])
    retain = train.subset(train.ids[~torch.isin(train.ids, forget.ids)])
    new, st = state.erase(trained, forget, holdout=holdout, retain_sample=retain, grid=GRID)
    req = state.request(trained, forget)
    want = retained_loss_rule(req, guard_sample(retain, 1000), _other_kind(forget, holdout), GRID)
    entry = st.ledger[-1]
    assert entry["eps_rule"] == "retained_loss" and entry["eps"] == pytest.approx(want.eps)
    assert torch.equal(flat_params(new, st.layout), flat_params(req.apply(entry["eps"]), st.layout))


def test_auto_rule_loss_matching_is_the_guarded_ks_choice(trained, split, tmp_path):
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[[0, 4, 8]])
    retain = train.subset(train.ids[~torch.isin(train.ids, forget.ids)])
    new, st = state.erase(
        trained, forget, holdout=holdout, retain_sample=retain, grid=GRID,
        auto_rule="loss_matching",
    )  # fmt: skip

    req = state.request(trained, forget)
    want = loss_matching_rule(
        req, forget, matched_holdout(forget, holdout), GRID, guard_sample(retain, 1000), 0.02
    )
    entry = st.ledger[-1]
    assert entry["eps"] == want.eps and entry["eps_rule"] == "loss_matching"
    search = entry["eps_search"]
    assert (search["grid_min"], search["grid_max"], search["grid"]) == (0.01, 10.0, GRID)
    assert [s if s is not None else float("nan") for s in search["scores"]] == pytest.approx(
        want.scores, nan_ok=True
    )
    assert torch.equal(flat_params(new, st.layout), flat_params(req.apply(want.eps), st.layout))
    util = entry["utility"]
    assert util["retain"]["before"] == evaluate_accuracy(trained, retain)
    assert util["retain"]["after"] == evaluate_accuracy(new, retain)
    assert util["holdout"]["after"] == evaluate_accuracy(new, holdout)
    assert util["retain"]["before"] - util["retain"]["after"] <= 0.02
    assert entry["utility_budget"] == 0.02 and entry["allow_utility_loss"] is False
    st.save(tmp_path / "st")  # the entry is plain JSON and survives a round trip
    assert ErasureState.load(tmp_path / "st", new).ledger[-1]["eps_search"]["grid"] == GRID
    with pytest.raises(ConfigError, match="finite number or 'auto'"):
        state.erase(trained, forget, eps="bogus")  # type: ignore[arg-type]


def test_auto_without_held_out_or_retained_data_is_a_clear_error(trained, split):
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[[1]])
    with pytest.raises(ConfigError, match="Missing: holdout, retain_sample.*fixed eps"):
        state.erase(trained, forget)
    with pytest.raises(ConfigError, match="Missing: retain_sample"):
        state.request(trained, forget).commit(holdout=holdout)
    with pytest.raises(ConfigError, match="same kind"):  # holdout without the erased class
        state.erase(
            trained,
            forget,
            holdout=holdout.subset(holdout.ids[holdout.y != forget.y[0]]),
            retain_sample=train,
            auto_rule="loss_matching",  # (retained_loss guards with the other classes instead)
        )
    assert state.ledger == () and not bool(state.erased.any())


def _damaging_eps(req, retain: ArrayDataset, budget: float) -> float:
    before = evaluate_accuracy(req.model, retain)
    for eps in (1e2, -1e2, 1e3, -1e3, 1e4, -1e4, 1e5, -1e5, 1e6, -1e6):
        if before - evaluate_accuracy(req.apply(eps), retain) > budget + 0.05:
            return eps
    raise AssertionError("no damaging ε found")


def test_utility_budget_refusal_leaves_model_and_state_byte_identical(trained, split, tmp_path):
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[[2, 5]])
    retain = train.subset(train.ids[~torch.isin(train.ids, forget.ids)])
    bad = _damaging_eps(state.request(trained, forget), retain, 0.02)
    params = _snapshot(trained)
    state.save(tmp_path / "before")

    with pytest.raises(UtilityBudgetError, match="utility budget of 0.02") as err:
        state.erase(trained, forget, eps=bad, retain_sample=retain, holdout=holdout)
    assert err.value.utility["retain"]["before"] - err.value.utility["retain"]["after"] > 0.02
    after = _snapshot(trained)
    assert params.keys() == after.keys() and all(torch.equal(params[k], after[k]) for k in params)
    state.save(tmp_path / "after")
    for name in ("inverse.safetensors", "state.safetensors"):
        assert (tmp_path / "before" / name).read_bytes() == (tmp_path / "after" / name).read_bytes()

    # the same step is allowed when asked for, and recorded as such
    new, st = state.erase(
        trained, forget, eps=bad, retain_sample=retain, holdout=holdout, allow_utility_loss=True
    )
    entry = st.ledger[-1]
    assert entry["eps"] == bad and entry["eps_rule"] == "fixed" and entry["eps_search"] is None
    assert entry["allow_utility_loss"] is True
    assert entry["utility"]["retain"]["before"] - entry["utility"]["retain"]["after"] > 0.02


def test_auto_refuses_when_no_grid_point_keeps_the_budget(trained, split):
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[[3, 6]])
    retain = train.subset(train.ids[~torch.isin(train.ids, forget.ids)])
    bad = _damaging_eps(state.request(trained, forget), retain, 0.02)
    # refused by the rule's own guard or by the utility budget after it: nothing changes
    for rule in ("retained_loss", "loss_matching"):
        with pytest.raises(UtilityBudgetError, match="(?i)nothing was changed"):
            state.erase(
                trained, forget, holdout=holdout, retain_sample=retain, grid=[bad], auto_rule=rule
            )
    new, st = state.erase(
        trained, forget, holdout=holdout, retain_sample=retain, grid=[bad], allow_utility_loss=True
    )
    assert st.ledger[-1]["eps"] == bad


def test_fixed_eps_checks_held_out_accuracy_on_the_other_classes(trained, split):
    """Removing class 0: held-out accuracy is reported on all of the held-out data and checked
    on the held-out samples of the other classes (the erased class is meant to be lost)."""
    train, holdout = split
    state = ErasureState.prepare(trained, train, CFG)
    forget = train.subset(train.ids[train.y == 0][:3])
    new, st = state.erase(trained, forget, eps=0.5, holdout=holdout, allow_utility_loss=True)
    util = st.ledger[-1]["utility"]
    other = holdout.subset(holdout.ids[holdout.y != 0])
    assert set(util) == {"holdout", "holdout_other"}
    assert util["holdout_other"]["n"] == len(other)
    assert util["holdout_other"]["after"] == evaluate_accuracy(new, other)
    # a fixed ε with no data to measure: recorded as not measured
    _, st2 = state.erase(trained, forget, eps=0.5)
    assert st2.ledger[-1]["utility"] is None and st2.ledger[-1]["eps_rule"] == "fixed"
