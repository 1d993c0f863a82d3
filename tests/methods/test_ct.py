"""CT: every Conv2d kernel transposed, then plain fine-tuning on retain."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import data, model, one_thread, state  # noqa: F401
from torch import nn

from unlearnkit.methods.ct import CT, transpose_kernels


def test_zero_epochs_gives_exactly_the_transposed_kernels() -> None:
    m = model()
    before = state(m)
    out = CT().unlearn(m, data(), {"num_epochs": 0}).model
    after = out.state_dict()
    convs = {f"{n}.weight" for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)}
    assert len(convs) == 4
    for k, v in before.items():
        if k in convs:
            # W'[o, i, a, b] = W[o, i, b, a], entry by entry
            for a in range(3):
                for b in range(3):
                    assert torch.equal(after[k][:, :, a, b], v[:, :, b, a])
            assert not torch.equal(after[k], v)
        else:
            assert torch.equal(after[k], v), k


def test_one_by_one_kernels_are_unchanged() -> None:
    conv = nn.Conv2d(2, 3, 1)
    w = conv.weight.detach().clone()
    transpose_kernels(nn.Sequential(conv))
    assert torch.equal(conv.weight, w)


def test_fine_tuning_is_one_sgd_step_on_the_transposed_model() -> None:
    """E=1 with one batch covering retain: θ = θᵀ − lr·(∇CE(θᵀ) + wd·θᵀ) (momentum buffer = g)."""
    d = data()
    cfg = {"num_epochs": 1, "batch_size": 64, "learning_rate": 0.05, "weight_decay": 1e-3}
    ref = CT().unlearn(model(), d, {**cfg, "num_epochs": 0}).model  # transposed, untrained
    ref.train()
    ref.zero_grad()
    F.cross_entropy(ref(d.retain.x), d.retain.y).backward()
    expected = {
        n: p.detach() - 0.05 * (p.grad + 1e-3 * p.detach()) for n, p in ref.named_parameters()
    }
    out = CT().unlearn(model(), d, cfg).model
    for n, p in out.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6), n
    # train mode: BN running statistics were updated by the pass
    assert not torch.equal(out.bn1.running_mean, model().bn1.running_mean)
