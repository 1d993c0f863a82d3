"""MSG: re-initialise the smallest-|G| conv entries, scale the others' gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import TinyConvNoBN, data, model, one_thread, state  # noqa: F401
from torch import nn

from unlearnkit.methods.msg import MSG, MSGConfig, reinit_small_gradients, triangular_factor


def _hand_gradient(m: nn.Module, d) -> dict[str, torch.Tensor]:
    """G = ∇CE(retain) − ∇CE(forget): R′ = all of retain when |retain| = |forget|, one batch each."""
    m.zero_grad()
    (
        F.cross_entropy(m(d.retain.x), d.retain.y) - F.cross_entropy(m(d.forget.x), d.forget.y)
    ).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def test_reinitialises_exactly_the_smallest_gradient_entries() -> None:
    d = data(n_retain=8, n_forget=8)
    torch.manual_seed(0)
    m = TinyConvNoBN()
    g = _hand_gradient(m, d)
    before = state(m)
    cfg = {"num_epochs": 0, "init_rate": 0.3, "batch_size": 64, "subset_batch_size": 64}
    out = MSG().unlearn(m, d, cfg).model.state_dict()
    for name in ("conv1.weight", "conv2.weight"):
        n = before[name].numel()
        k = round(0.3 * n)
        smallest = set(torch.argsort(g[name].abs().flatten())[:k].tolist())
        diff = (out[name] != before[name]).flatten().nonzero().flatten().tolist()
        assert set(diff) == smallest and len(diff) == k == 16
    assert not torch.equal(out["conv1.bias"], before["conv1.bias"])  # conv bias redrawn
    bound = 1 / math.sqrt(3 * 9)
    assert out["conv1.bias"].abs().max() <= bound
    for name in ("fc.weight", "fc.bias"):
        assert torch.equal(out[name], before[name])


def test_kept_entries_get_a_tenth_of_the_gradient() -> None:
    """One SGD step (momentum 0, wd 0, one batch): Δ = −lr·M⊙∇CE, M = 1 on S, 0.1 elsewhere."""
    d = data(n_retain=8, n_forget=8)
    cfg = {
        "init_rate": 0.3,
        "batch_size": 64,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "learning_rate": 0.5,
    }
    torch.manual_seed(0)
    m = TinyConvNoBN()
    g = _hand_gradient(m, d)
    start = MSG().unlearn(m, d, {**cfg, "num_epochs": 0}).model
    start.zero_grad()
    F.cross_entropy(start(d.retain.x), d.retain.y).backward()
    out = MSG().unlearn(m, d, {**cfg, "num_epochs": 1}).model
    for name, p in start.named_parameters():
        mult = torch.ones_like(p)
        if name in ("conv1.weight", "conv2.weight"):
            k = round(0.3 * p.numel())
            mult = torch.full((p.numel(),), 0.1)
            mult[torch.argsort(g[name].abs().flatten())[:k]] = 1.0
            mult = mult.view_as(p)
        expected = p.detach() - 0.5 * mult * p.grad  # triangular factor for E=1 is 1
        assert torch.allclose(dict(out.named_parameters())[name], expected, atol=1e-6), name


def test_fresh_values_are_kaiming_normal_fan_out() -> None:
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 32, 3, bias=False)
    mult = reinit_small_gradients(
        conv, torch.zeros_like(conv.weight), MSGConfig(init_rate=1.0), gen
    )
    std = math.sqrt(2 / (32 * 9))
    assert abs(conv.weight.std().item() / std - 1) < 0.06
    assert abs(conv.weight.mean().item()) < 0.1 * std
    assert torch.equal(mult, torch.ones_like(mult))


@pytest.mark.parametrize(("faithful", "bn_changes"), [(False, False), (True, True)])
def test_gradient_pass_bn_side_effect_only_when_faithful(faithful: bool, bn_changes: bool) -> None:
    m = model()
    before = state(m)
    out = MSG().unlearn(m, data(), {"num_epochs": 0, "faithful": faithful}).model.state_dict()
    stats = [k for k in before if "running_" in k]
    assert stats
    assert any(not torch.equal(out[k], before[k]) for k in stats) == bn_changes
    for k in before:
        if k.endswith("num_batches_tracked"):
            assert torch.equal(out[k], before[k]) != bn_changes


def test_triangular_schedule() -> None:
    assert [triangular_factor(e, 5) for e in range(1, 6)] == pytest.approx(
        [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3]
    )
    assert [triangular_factor(e, 2) for e in (1, 2)] == pytest.approx([1.0, 0.5])


class _Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 3, 5, padding=2, bias=False)
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv1(x.flatten(2)[:, :2])).mean(dim=2))


def test_conv1d_layers_are_handled_too() -> None:
    m = _Conv1dNet()
    before = state(m)
    out = MSG().unlearn(m, data(), {"num_epochs": 0, "init_rate": 0.3}).model.state_dict()
    assert int((out["conv1.weight"] != before["conv1.weight"]).sum()) == 9  # round(0.3·30)
    assert torch.equal(out["fc.weight"], before["fc.weight"])
