"""RNI: head reset, noise on random tensors, partial then full fine-tuning."""

from __future__ import annotations

import pydantic
import pytest
import torch
from tiny_resnet_fixtures import changed, data, model, one_thread, state  # noqa: F401
from torch import nn

import unlearnkit.methods.rni as rni
from unlearnkit.methods.rni import (
    RNI,
    RNIConfig,
    draw_selection,
    noise_plan,
    noised_per_epoch,
    norm_param_names,
)

STILL = {
    "learning_rate": 0.0,
    "weight_decay": 0.0,
    "momentum": 0.0,
    "fine_optimizer": {"learning_rate": 0.0, "weight_decay": 0.0, "momentum": 0.0},
}


def _spy_plans(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []

    def spy(*args: object, **kw: object) -> list:
        plans = noise_plan(*args, **kw)  # type: ignore[arg-type]
        seen.append(plans)
        return plans

    monkeypatch.setattr(rni, "noise_plan", spy)
    return seen


def test_plan_rules() -> None:
    cfg = RNIConfig(
        num_epochs=6, fine_num_epochs=2, reset_num_epochs=2, num_random_tensors=3, noise_ratio=0.7
    )
    others = [f"t{i}" for i in range(6)]
    plans = noise_plan(["bn.w", "bn.b"], others, cfg, torch.Generator().manual_seed(0))
    assert [p.fine for p in plans] == [False] * 4 + [True] * 2
    noised_all: list[str] = []
    for e, p in enumerate(plans[:4]):
        chosen = p.trainable[2:]
        assert p.trainable[:2] == ("bn.w", "bn.b") and len(set(chosen)) == 3
        assert set(p.noised) <= set(chosen) and len(p.noised) <= 2  # ⌊0.7·3⌋ = 2
        if e < 2:
            assert p.noised == ()
        noised_all += p.noised
    assert len(noised_all) == len(set(noised_all)) > 0  # each tensor noised at most once


def test_head_reset_and_noise_on_the_planned_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_plans(monkeypatch)
    m = model()
    before = state(m)
    cfg = {
        **STILL,
        "num_epochs": 3,
        "fine_num_epochs": 0,
        "reset_num_epochs": 1,
        "num_random_tensors": 4,
        "noise_ratio": 1.0,
        "origin_noise": 0.5,
        "batch_size": 8,
    }
    out = RNI().unlearn(m, data(), cfg).model
    (plans,) = seen
    noised = {n for p in plans for n in p.noised}
    assert plans[0].noised == () and len(plans[1].noised) >= 1
    params = {n for n, _ in m.named_parameters()}
    diff = changed(before, out) & params
    assert diff == noised | {"fc.weight", "fc.bias"}
    for n in noised - {"fc.weight", "fc.bias"}:
        assert (out.state_dict()[n] != before[n]).all(), n


def test_noisy_phase_trains_only_norm_and_chosen_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_plans(monkeypatch)
    m = model()
    before = state(m)
    cfg = {
        "num_epochs": 1,
        "fine_num_epochs": 0,
        "num_random_tensors": 2,
        "noise_ratio": 0.0,
        "learning_rate": 0.1,
        "batch_size": 8,
    }
    out = RNI().unlearn(m, data(), cfg).model
    (plans,) = seen
    params = {n for n, _ in m.named_parameters()}
    diff = changed(before, out) & params
    assert diff <= set(plans[0].trainable) | {"fc.weight", "fc.bias"}
    assert {n for n in params if ".bn" in n or n.startswith("bn1")} <= diff


def test_fine_phase_trains_everything_with_per_epoch_lrs() -> None:
    m = model()
    before = state(m)
    cfg = {
        "num_epochs": 2,
        "fine_num_epochs": 2,
        "batch_size": 8,
        "fine_optimizer": {"learning_rate": [0.0, 0.05]},
    }
    out = RNI().unlearn(m, data(), cfg).model
    assert changed(before, out) >= {n for n, _ in m.named_parameters()}


def test_norm_tensors_by_type_or_by_name() -> None:
    net = nn.Module()
    net.bn1 = nn.BatchNorm2d(2)
    net.downsample = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    assert norm_param_names(net, faithful=False) == {
        "bn1.weight",
        "bn1.bias",
        "downsample.1.weight",
        "downsample.1.bias",
    }
    assert norm_param_names(net, faithful=True) == {"bn1.weight", "bn1.bias"}


def test_fine_lr_list_must_cover_the_fine_epochs() -> None:
    with pytest.raises(pydantic.ValidationError):
        RNIConfig(fine_num_epochs=7, num_epochs=9)
    assert RNIConfig(fine_num_epochs=7, num_epochs=9, fine_optimizer={"learning_rate": 1e-3})


# A hand-worked selection: epoch 0 is before E_reset (nothing picked), epoch 4 is a fine epoch.
HAND_DRAWS = [
    (("A", "B"), ()),
    (("B", "C"), ("B", "C")),
    (("C", "D"), ("C", "D")),
    (("A", "E"), ("A",)),
    None,
]


def test_official_rule_skips_tensors_trained_in_an_earlier_epoch() -> None:
    # e1: B was trained in e0 -> skipped; C is new -> noised.
    # e2: C was trained in e1 -> skipped; D -> noised.  e3: A was trained in e0 -> skipped.
    assert noised_per_epoch(HAND_DRAWS, "selected_before") == [(), ("C",), ("D",), (), ()]


def test_corrected_rule_skips_only_tensors_noised_before() -> None:
    # e1: B, C never noised -> both.  e2: C noised in e1 -> skipped; D.  e3: A never noised.
    assert noised_per_epoch(HAND_DRAWS, "noised_before") == [(), ("B", "C"), ("D",), ("A",), ()]


def test_skip_rule_defaults_to_the_mode_and_can_be_named() -> None:
    assert RNIConfig().skip_rule() == "noised_before"
    assert RNIConfig(faithful=True).skip_rule() == "selected_before"
    assert RNIConfig(faithful=True, noise_skip="noised_before").skip_rule() == "noised_before"
    with pytest.raises(pydantic.ValidationError):
        RNIConfig(noise_skip="never")


@pytest.mark.parametrize("seed", range(5))
def test_seeded_plans_follow_each_rule(seed: int) -> None:
    others = [f"t{i}" for i in range(12)]
    cfg = RNIConfig(num_epochs=8, fine_num_epochs=2, num_random_tensors=4, noise_ratio=1.0)
    draws = draw_selection(others, cfg, torch.Generator().manual_seed(seed))
    total = {}
    for rule in ("selected_before", "noised_before"):
        plans = noise_plan(
            [],
            others,
            cfg.model_copy(update={"noise_skip": rule}),
            torch.Generator().manual_seed(seed),
        )
        assert [p.trainable for p in plans[:6]] == [d[0] for d in draws[:6]]
        for e, p in enumerate(plans[:6]):
            earlier = {
                n
                for q in plans[:e]
                for n in (q.trainable if rule == "selected_before" else q.noised)
            }
            assert set(p.noised) == set(draws[e][1]) - earlier
        total[rule] = sum(len(p.noised) for p in plans)
    assert total["selected_before"] <= total["noised_before"]


A, B, C, D = "conv1.weight", "layer1.0.conv.weight", "layer2.0.conv.weight", "layer2.1.conv.weight"


@pytest.mark.parametrize(("faithful", "noised"), [(True, {C}), (False, {B, C})])
def test_injected_selection_noises_what_the_rule_says(
    monkeypatch: pytest.MonkeyPatch, faithful: bool, noised: set[str]
) -> None:
    # e0 trains A, B (before E_reset); e1 trains B, C and picks both; e2 trains C, D, picks C.
    # Official: B (trained in e0) and C in e2 (trained in e1) are skipped -> only C, once.
    # Ours: B and C in e1; C in e2 was noised in e1 -> skipped.  D is never picked.
    draws = [((A, B), ()), ((B, C), (B, C)), ((C, D), (C,))]
    monkeypatch.setattr(rni, "draw_selection", lambda *a, **k: draws)
    m = model()
    before = state(m)
    cfg = {**STILL, "num_epochs": 3, "fine_num_epochs": 0, "faithful": faithful, "batch_size": 8}
    out = RNI().unlearn(m, data(), cfg).model
    params = {n for n, _ in m.named_parameters()}
    assert changed(before, out) & params == noised | {"fc.weight", "fc.bias"}
