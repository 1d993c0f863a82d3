"""SalUn: forget-gradient saliency mask + masked random-label training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blob_mlp_fixtures import original, tiny_data

from unlearnkit.methods.salun import SalUn, forget_gradient, saliency_mask


def test_forget_gradient_is_the_sum_of_batch_gradients_of_negative_ce():
    data, model = tiny_data(), original()
    got = forget_gradient(model, data.forget, batch_size=5)  # batches of 5, 5, 2
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for start in range(0, 12, 5):
        x, y = data.forget.x[start : start + 5], data.forget.y[start : start + 5]
        grads = torch.autograd.grad(-F.cross_entropy(model(x), y), list(model.parameters()))
        for e, g in zip(expected, grads, strict=True):
            e += g
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 1.0])
def test_mask_keeps_the_fraction_with_largest_abs_gradient(threshold):
    grads = forget_gradient(original(), tiny_data().forget, 256)
    masks = saliency_mask(grads, threshold)
    scores = torch.cat([g.abs().flatten() for g in grads])
    flat = torch.cat([m.flatten() for m in masks])
    assert [m.shape for m in masks] == [g.shape for g in grads]
    assert int(flat.sum()) == int(scores.numel() * threshold)
    if 0 < threshold < 1:
        assert scores[flat].min() >= scores[~flat].max()


def _masks_and_change(cfg):
    data = tiny_data()
    masks = saliency_mask(forget_gradient(original(), data.forget, 16), cfg["threshold"])
    out = SalUn().unlearn(original(), data, {"batch_size": 16, "num_epochs": 3, **cfg}).model
    return masks, list(out.parameters()), list(original().parameters())


def test_corrected_mode_changes_only_masked_entries():
    cfg = {"threshold": 0.3, "momentum": 0.9, "weight_decay": 0.01, "learning_rate": 0.1}
    masks, new, old = _masks_and_change(cfg)
    moved = 0
    for m, p, q in zip(masks, new, old, strict=True):
        assert torch.equal(p[~m], q[~m])  # bit-identical outside the mask
        moved += int((p[m] != q[m]).sum())
    assert moved > 0.9 * sum(int(m.sum()) for m in masks)


def test_faithful_mode_lets_weight_decay_move_unmasked_entries():
    cfg = {"threshold": 0.3, "momentum": 0.9, "weight_decay": 0.01, "faithful": True}
    masks, new, old = _masks_and_change(cfg)
    assert any(not torch.equal(p[~m], q[~m]) for m, p, q in zip(masks, new, old, strict=True))
    # without weight decay the masked gradient alone leaves them alone
    masks, new, old = _masks_and_change({"threshold": 0.3, "faithful": True})
    assert all(torch.equal(p[~m], q[~m]) for m, p, q in zip(masks, new, old, strict=True))
