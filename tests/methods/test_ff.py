"""FF: noise with the clamped inverse diagonal Fisher as variance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blob_mlp_fixtures import TinyMLP, original, tiny_data
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.ff import (
    FisherForgetting,
    classifier_flags,
    diag_fisher,
    noise_variance,
)
from unlearnkit.seeding import seed_everything


def _grad(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [p.grad.detach().double().clone() for p in model.parameters()]


def brute_force_fisher(model, ds, batch_size):
    """Σ_batches Σ_y mean_b(p_y)·(∇ mean_b CE(·, y))² / #batches, gradients of batch means built
    from single-sample gradients."""
    model.eval()
    n = len(ds)
    starts = range(0, n, batch_size)
    total = [torch.zeros_like(p, dtype=torch.float64) for p in model.parameters()]
    for s in starts:
        xb = ds.x[s : s + batch_size]
        with torch.no_grad():
            p = torch.softmax(model(xb), 1).double()
        for y in range(3):
            per_sample = [_grad(model, xb[i : i + 1], torch.tensor([y])) for i in range(len(xb))]
            mean_g = [sum(gs) / len(xb) for gs in zip(*per_sample, strict=True)]
            for t, g in zip(total, mean_g, strict=True):
                t += p[:, y].mean() * g**2
    return [t / len(starts) for t in total]


def test_batch_size_one_gives_the_true_fisher_diagonal():
    """(1/n)·Σ_i Σ_y p_y(x_i)·(∇ℓ(x_i, y))², written out directly."""
    model, ds = original(), tiny_data(n_retain=3).retain
    true = [torch.zeros_like(p, dtype=torch.float64) for p in model.parameters()]
    for i in range(len(ds)):
        with torch.no_grad():
            p = torch.softmax(model(ds.x[i : i + 1]), 1)[0].double()
        for y in range(3):
            for t, g in zip(true, _grad(model, ds.x[i : i + 1], torch.tensor([y])), strict=True):
                t += p[y] * g**2 / len(ds)
    for a, b in zip(diag_fisher(model, ds, 1, 3), true, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-9)


def test_batched_fisher_matches_brute_force():
    model, ds = original(), tiny_data(n_retain=3).retain  # 9 samples, batches 4, 4, 1
    for a, b in zip(diag_fisher(model, ds, 4, 3), brute_force_fisher(model, ds, 4), strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-9)


def test_noise_variance_rule_by_hand():
    fisher = torch.tensor([[0.0, 1.0], [0.5, 1e-4], [2.0, 4.0]])
    # 1/(F + 1e-8) clamped at 1e3: [[1e3, 1], [2, 1e3], [0.5, 0.25]]
    # classifier: clamp at 1e2 -> [[100, 1], [2, 100], [.5, .25]]; α = 0.5; row means; × 10
    cls = noise_variance(fisher, True, 0.5)
    expected = 10 * 0.5 * torch.tensor([[50.5, 50.5], [51.0, 51.0], [0.375, 0.375]])
    torch.testing.assert_close(cls, expected)
    # not classifier, 2-D: no 1e2 clamp, no ×10
    hidden = noise_variance(fisher, False, 0.5)
    expected = 0.5 * torch.tensor([[500.5, 500.5], [501.0, 501.0], [0.375, 0.375]])
    torch.testing.assert_close(hidden, expected)
    # 1-D tensors get ×10 but no row mean
    bias = noise_variance(torch.tensor([0.0, 0.25]), False, 0.2)
    torch.testing.assert_close(bias, 10 * 0.2 * torch.tensor([1e3, 4.0]))


def test_run_adds_sqrt_variance_times_seeded_normal_noise():
    data, model, seed, alpha = tiny_data(n_retain=3), original(), 11, 0.3
    out = FisherForgetting().unlearn(model, data, {"batch_size": 4, "alpha": alpha}, seed=seed)
    fisher = brute_force_fisher(model, data.retain, 4)
    g = seed_everything(seed)
    names = [n for n, _ in model.named_parameters()]
    for name, p, p0, f in zip(
        names, out.model.parameters(), model.parameters(), fisher, strict=True
    ):
        v = noise_variance(f.float(), name.startswith("fc."), alpha)
        eps = torch.randn(p0.shape, generator=g)
        torch.testing.assert_close(p, p0 + v.sqrt() * eps, rtol=1e-4, atol=1e-5)


def test_classifier_detection_corrected_vs_faithful():
    model = TinyMLP(hidden=3)  # hidden width = C: its Linear's weight and bias have dim 0 == C
    assert classifier_flags(model, 3, faithful=False) == [False, False, True, True]
    assert classifier_flags(model, 3, faithful=True) == [True, True, True, True]


def test_corrected_mode_needs_a_linear_head_of_any_name():
    data = tiny_data(n_retain=2, n_forget=1)
    no_head = nn.Sequential(nn.Conv1d(1, 1, 1), nn.Flatten())
    with pytest.raises(UnsupportedError, match="no torch.nn.Linear layer"):
        FisherForgetting().unlearn(no_head, UnlearnData(data.retain, data.forget))
    model = nn.Sequential(nn.Linear(4, 3))  # a head named "0", found without being named
    assert classifier_flags(model, 3, faithful=False) == [True, True]
    FisherForgetting().unlearn(model, UnlearnData(data.retain, data.forget))
    FisherForgetting().unlearn(model, UnlearnData(data.retain, data.forget), {"faithful": True})
