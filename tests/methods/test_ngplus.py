"""NG+: α·[CE_r + (λ/2)‖θ−θ_O‖²] − (1−α)·CE_f, eval mode, no schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blob_mlp_fixtures import original, tiny_data

from unlearnkit.methods.ngplus import NegGradPlus


def _hand_steps(model, data, alpha, lam, lr, wd, steps):
    """Plain SGD (momentum 0) on the NG+ loss with full batches, in eval mode."""
    model.eval()  # dropout off: the method must train in eval mode to match
    anchor = [p.detach().clone() for p in model.parameters()]
    for _ in range(steps):
        params = list(model.parameters())
        l2 = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
        loss = alpha * (F.cross_entropy(model(data.retain.x), data.retain.y) + lam / 2 * l2)
        loss = loss - (1 - alpha) * F.cross_entropy(model(data.forget.x), data.forget.y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= lr * (g + wd * p)
    return model


def test_ngplus_matches_hand_computed_steps():
    data = tiny_data()
    cfg = dict(alpha=0.7, l2_weight=0.5, learning_rate=0.2, weight_decay=1e-3, momentum=0.0)
    out = (
        NegGradPlus()
        .unlearn(original(dropout=0.5), data, {**cfg, "batch_size": 200, "num_epochs": 3})
        .model
    )
    ref = _hand_steps(original(dropout=0.5), data, 0.7, 0.5, 0.2, 1e-3, steps=3)
    no_l2 = _hand_steps(original(dropout=0.5), data, 0.7, 0.0, 0.2, 1e-3, steps=3)
    for p, q in zip(out.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    pairs = zip(ref.parameters(), no_l2.parameters(), strict=True)
    assert any(not torch.allclose(q, r) for q, r in pairs)  # λ changes the result


def test_faithful_forces_l2_to_zero():
    data = tiny_data()
    base = dict(alpha=0.7, learning_rate=0.2, momentum=0.0, batch_size=200, num_epochs=3)
    out = NegGradPlus().unlearn(original(), data, {**base, "l2_weight": 0.5, "faithful": True})
    ref = _hand_steps(original(), data, 0.7, 0.0, 0.2, 0.0, steps=3)
    for p, q in zip(out.model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_alpha_one_is_pure_retain_descent_and_alpha_zero_pure_ascent():
    data = tiny_data()
    for alpha in (0.0, 1.0):
        cfg = dict(alpha=alpha, learning_rate=0.1, momentum=0.0, batch_size=200, num_epochs=1)
        out = NegGradPlus().unlearn(original(), data, cfg).model
        ref = original()
        split = data.retain if alpha == 1.0 else data.forget
        sign = 1.0 if alpha == 1.0 else -1.0
        grads = torch.autograd.grad(
            sign * F.cross_entropy(ref(split.x), split.y), list(ref.parameters())
        )
        for p, p0, g in zip(out.parameters(), ref.parameters(), grads, strict=True):
            torch.testing.assert_close(p, p0.detach() - 0.1 * g)


ALTERNATIVES = {
    "learning_rate": 0.05,
    "momentum": 0.0,
    "weight_decay": 1e-2,
    "batch_size": 16,
    "num_epochs": 3,
    "alpha": 0.5,
    "l2_weight": 0.5,
}


@pytest.mark.parametrize("faithful", [False, True])
def test_every_sampled_key_changes_the_model_and_the_unsampled_one_does_not(faithful):
    space = NegGradPlus().search_space_for(5, faithful=faithful)
    assert ("l2_weight" in space) is not faithful
    assert set(space) | {"l2_weight"} == set(ALTERNATIVES)
    data = tiny_data()
    base = {"num_epochs": 2, "faithful": faithful}  # full batches: 2 steps, so λ can act

    def run(**kw):
        return list(NegGradPlus().unlearn(original(), data, {**base, **kw}).model.parameters())

    ref = run()
    for key, value in ALTERNATIVES.items():
        other = run(**{key: value})
        same = all(torch.equal(p, q) for p, q in zip(ref, other, strict=True))
        assert same is (key not in space), key
