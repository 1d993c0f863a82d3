"""GA: SGD on −CE over the forget set only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from blob_mlp_fixtures import mean_ce, original, states_equal, tiny_data

from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.ga import GradientAscent


def test_ga_raises_forget_loss():
    data = tiny_data()
    model = original()
    out = GradientAscent().unlearn(model, data, {"batch_size": 4, "num_epochs": 3}).model
    assert mean_ce(out, data.forget) > 1.3 * mean_ce(model, data.forget)


def test_ga_one_step_is_an_ascent_step_on_forget_and_ignores_retain():
    """One full batch: θ1 = θ0 − lr·(∇(−CE_f) + wd·θ0) (first SGD step: momentum buffer = grad)."""
    data = tiny_data()
    nan_retain = data.retain.__class__(
        "retain",
        torch.full_like(data.retain.x, float("nan")),
        data.retain.y,
        data.retain.ids,
        "multiclass",
        data.retain.classes,
    )
    lr, wd = 0.05, 1e-3
    cfg = {"batch_size": 100, "num_epochs": 1, "learning_rate": lr, "weight_decay": wd}
    out = GradientAscent().unlearn(original(), UnlearnData(nan_retain, data.forget), cfg).model

    ref = original()
    loss = -F.cross_entropy(ref(data.forget.x), data.forget.y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for p, p0, g in zip(out.parameters(), ref.parameters(), grads, strict=True):
        torch.testing.assert_close(p, p0.detach() - lr * (g + wd * p0.detach()))
    assert not states_equal(out, ref)
