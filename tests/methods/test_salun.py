"""SalUn: forget-gradient saliency mask + masked random-label training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blob_mlp_fixtures import original, tiny_data
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.salun import (
    SalUn,
    SalUnConfig,
    accumulated_gradient,
    forget_gradient,
    saliency_mask,
)


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


def _linear_fp64() -> nn.Linear:
    lin = nn.Linear(4, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.arange(12, dtype=torch.float64).view(3, 4).sin())
        lin.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    return lin


def _closed_form_grad(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """∇(−mean CE) of a linear model: −(1/B)·(softmax(z) − onehot(y))ᵀ x and −mean(softmax − 1_y)."""
    with torch.no_grad():
        r = torch.softmax(x @ lin.weight.T + lin.bias, dim=1) - F.one_hot(y, 3).double()
    return [-(r.T @ x) / len(y), -r.mean(dim=0)]


def _forget_fp64() -> ArrayDataset:
    f = tiny_data().forget  # 12 samples -> batches of 5, 5, 2
    return ArrayDataset("forget", f.x.double(), f.y, f.ids, "multiclass", f.classes)


def test_cumulative_sum_weights_batch_j_by_n_minus_j_plus_1():
    lin, f = _linear_fp64(), _forget_fp64()
    batches = [(f.x[s], f.y[s]) for s in (slice(5, 10), slice(0, 5), slice(10, 12))]
    g = [_closed_form_grad(lin, x, y) for x, y in batches]
    want = [3 * g[0][k] + 2 * g[1][k] + 1 * g[2][k] for k in range(2)]  # N = 3
    got = accumulated_gradient(lin, batches, "cumulative")
    plain = accumulated_gradient(lin, batches, "plain")
    for k in range(2):
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(plain[k], g[0][k] + g[1][k] + g[2][k], rtol=1e-12, atol=1e-14)


def test_cumulative_saliency_reads_the_forget_batches_in_the_generators_order():
    lin, f = _linear_fp64(), _forget_fp64()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(7))  # make_loader's order
    chunks = [perm[:5], perm[5:10], perm[10:]]
    g = [_closed_form_grad(lin, f.x[i], f.y[i]) for i in chunks]
    want = [3 * g[0][k] + 2 * g[1][k] + g[2][k] for k in range(2)]
    got = forget_gradient(lin, f, 5, "cumulative", torch.Generator().manual_seed(7))
    for k in range(2):
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14)


def test_saliency_rule_defaults_to_the_mode_and_can_be_named():
    assert SalUnConfig().saliency_rule() == "plain"
    assert SalUnConfig(faithful=True).saliency_rule() == "cumulative"
    assert SalUnConfig(faithful=True, saliency_sum="plain").saliency_rule() == "plain"


def test_faithful_run_masks_with_the_cumulative_saliency():
    data, bs = tiny_data(), 4  # 12 forget samples -> 3 batches
    cfg = {"threshold": 0.3, "faithful": True, "batch_size": bs, "num_epochs": 2}
    out = SalUn().unlearn(original(), data, cfg, seed=123).model
    gen = torch.Generator().manual_seed(123)  # the run's generator; the mask pass draws first
    cum = saliency_mask(forget_gradient(original(), data.forget, bs, "cumulative", gen), 0.3)
    plain = saliency_mask(forget_gradient(original(), data.forget, bs), 0.3)
    moved = [
        p.detach() != q for p, q in zip(out.parameters(), original().parameters(), strict=True)
    ]
    assert all(not (mv & ~m).any() for mv, m in zip(moved, cum, strict=True))
    assert any((mv & ~m).any() for mv, m in zip(moved, plain, strict=True))
