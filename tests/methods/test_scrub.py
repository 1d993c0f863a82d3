"""SCRUB: max steps on forget, min steps on retain, forget-error selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blob_mlp_fixtures import TinyMLP, original, states_equal, tiny_data
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods import scrub
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.scrub import SCRUB, select_index
from unlearnkit.methods.toolkit.optim import step_decay_factor


def test_step_decay_schedule():
    # E = 5: D = [2, 4, 4] (equal milestones both count, as np.sum over the list does)
    assert [step_decay_factor(e, 5, 0.1) for e in range(1, 6)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.001]
    )
    # E = 10: D = [5, 8, 9]
    assert [step_decay_factor(e, 10, 0.5) for e in (5, 6, 9, 10)] == pytest.approx(
        [1, 0.5, 0.25, 0.125]
    )


def test_select_index_is_first_argmin_of_gap():
    assert select_index([0.0, 0.3, 0.1, 0.25], 0.2) == 3
    assert select_index([0.25, 0.75, 0.75], 0.5) == 0  # three-way tie: the first
    assert select_index([0.5, 0.125, 0.375], 0.25) == 1


class Spy(nn.Module):
    """TinyMLP that logs (training, grad enabled, split tag) per forward; tag = x[0, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyMLP()
        self.log: list[tuple[bool, bool, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.training, torch.is_grad_enabled(), int(x[0, 3])))
        return self.net(x)


def test_alternates_max_steps_on_forget_and_min_steps_on_retain():
    data = tiny_data()  # retain 45, forget 12, val 15
    for ds, tag in ((data.retain, 0), (data.forget, 10), (data.val, 20)):
        ds.x[:, 3] = tag
    cfg = dict(sgda_num_epochs=3, msteps=2, retain_batch_size=16, forget_batch_size=5)
    out = SCRUB().unlearn(Spy(), data, cfg).model
    evals_f = [(False, False, 10)] * 3  # error on forget: eval mode, no grad, 3 batches
    max_step = [(True, True, 10)] * 3
    min_step = [(True, True, 0)] * 3
    expected = (
        (evals_f + max_step + min_step) * 2
        + evals_f
        + min_step
        + evals_f
        + [(False, False, 20)] * 3
    )
    assert out.log == expected


def _kl_t(s_logits, t_logits, t):
    p_t = torch.softmax(t_logits / t, 1)
    log_s = torch.log_softmax(s_logits / t, 1)
    return t * t * (p_t * (p_t.log() - log_s)).sum() / s_logits.shape[0]


def _error(model, ds):
    with torch.no_grad():
        return float((model(ds.x).argmax(1) != ds.y).float().mean())


def test_matches_hand_computed_min_max_epochs(monkeypatch):
    data = tiny_data()
    gamma, alpha, t, lr0, rate = 0.8, 0.6, 2.0, 0.3, 0.5
    cfg = dict(
        gamma=gamma,
        alpha=alpha,
        kd_T=t,
        sgda_learning_rate=lr0,
        lr_decay_rate=rate,
        sgda_num_epochs=2,
        msteps=2,
        sgda_momentum=0.0,
        sgda_weight_decay=0.0,
        retain_batch_size=500,
        forget_batch_size=500,
    )
    seen = {}

    def pick_last(errors, fv):
        seen.update(errors=errors, fv=fv)
        return len(errors) - 1

    monkeypatch.setattr(scrub, "select_index", pick_last)
    out = SCRUB().unlearn(original(), data, cfg).model

    teacher, s = original(), original()
    errors = []
    for factor in (1.0, rate**3):  # E = 2: D = [1, 1, 1], so epoch 2 runs at lr0·r³
        errors.append(_error(s, data.forget))
        for split, loss_of in (
            (data.forget, lambda z, y: -_kl_t(z, teacher(data.forget.x).detach(), t)),
            (
                data.retain,
                lambda z, y: (
                    gamma * F.cross_entropy(z, y)
                    + alpha * _kl_t(z, teacher(data.retain.x).detach(), t)
                ),
            ),
        ):
            grads = torch.autograd.grad(loss_of(s(split.x), split.y), list(s.parameters()))
            with torch.no_grad():
                for p, g in zip(s.parameters(), grads, strict=True):
                    p -= lr0 * factor * g
    errors.append(_error(s, data.forget))
    for p, q in zip(out.parameters(), s.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert seen["errors"] == pytest.approx(errors)
    assert seen["fv"] == pytest.approx(_error(s, data.val))
    assert not states_equal(out, original())


@pytest.mark.parametrize("faithful", [False, True])
def test_index_zero_returns_original_unless_faithful(monkeypatch, faithful):
    data = tiny_data()
    cfg = dict(sgda_num_epochs=2, msteps=1, sgda_learning_rate=0.1, faithful=faithful)
    monkeypatch.setattr(scrub, "select_index", lambda errors, fv: len(errors) - 1)
    final = SCRUB().unlearn(original(), data, cfg).model
    monkeypatch.setattr(scrub, "select_index", lambda errors, fv: 0)
    out = SCRUB().unlearn(original(), data, cfg).model
    assert states_equal(out, final if faithful else original())
    assert not states_equal(final, original())


def test_forget_val_is_val_restricted_to_forget_classes():
    data = tiny_data()
    only_class_1 = data.forget.subset(data.forget.ids[data.forget.y == 1])
    pos = scrub.forget_val_subset(UnlearnData(data.retain, only_class_1, data.val))
    assert torch.equal(pos, (data.val.y == 1).nonzero().flatten())


def test_scrub_needs_val():
    data = tiny_data()
    with pytest.raises(UnsupportedError, match="val"):
        SCRUB().unlearn(original(), UnlearnData(data.retain, data.forget, None))
