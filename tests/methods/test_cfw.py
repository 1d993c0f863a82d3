"""CFW: conv noise (stem only when faithful), class-weighted fine-tuning, weaken."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import TinyConvNoBN, changed, dataset, model, one_thread, state  # noqa: F401

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.cfw import CFW, balanced_class_weights

FROZEN = {"learning_rate": 0.0, "weight_decay": 0.0, "momentum": 0.0}


def _data() -> UnlearnData:
    return UnlearnData(dataset("retain", 12, 1), dataset("forget", 4, 2, 100))


@pytest.mark.parametrize("faithful", [True, False])
def test_noise_placement(faithful: bool) -> None:
    m = model(c=16)
    before = state(m)
    cfg = {**FROZEN, "num_epochs": 1, "start_confuser_std": 0.3, "faithful": faithful}
    out = CFW().unlearn(m, _data(), cfg).model
    params = {n for n, _ in m.named_parameters()}
    diff = changed(before, out) & params
    convs = {n for n in params if "conv" in n and n.endswith("weight")}
    assert diff == ({"conv1.weight"} if faithful else convs)
    big = "conv1.weight" if faithful else "layer1.0.conv.weight"
    noise = out.state_dict()[big] - before[big]
    assert abs(noise.std().item() / 0.3 - 1) < 0.15 and abs(noise.mean().item()) < 0.1


@pytest.mark.parametrize(("epochs", "noised"), [(1, False), (2, True), (3, True)])
def test_weaken_step_once_before_the_last_epoch(epochs: int, noised: bool) -> None:
    m = model(c=16)
    before = state(m)
    cfg = {**FROZEN, "num_epochs": epochs, "start_confuser_std": 0.0, "final_confuser_std": 0.05}
    out = CFW().unlearn(m, _data(), cfg).model.state_dict()
    noise = out["layer1.0.conv.weight"] - before["layer1.0.conv.weight"]
    if not noised:
        assert torch.equal(noise, torch.zeros_like(noise))
    else:  # applied exactly once: std σ_final, not σ_final·√2
        assert abs(noise.std().item() / 0.05 - 1) < 0.1


def test_balanced_weights() -> None:
    ds = ArrayDataset(
        "r",
        torch.zeros(4, 1),
        torch.tensor([0, 0, 0, 1]),
        torch.arange(4),
        "multiclass",
        ("a", "b", "c"),
    )
    assert torch.allclose(balanced_class_weights(ds), torch.tensor([4 / 6, 2.0, 1.0]))


@pytest.mark.parametrize("faithful", [False, True])
def test_class_weighted_loss_step(faithful: bool) -> None:
    """One SGD step (one batch, no noise): per-sample weights, or the faithful batch product."""
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0])
    retain = ArrayDataset(
        "r", dataset("x", 8, 5).x, y, torch.arange(8), "multiclass", ("a", "b", "c")
    )
    d = UnlearnData(retain, dataset("forget", 4, 2, 100))
    w = torch.tensor([8 / (3 * 5), 8 / (3 * 2), 8 / (3 * 1)])
    torch.manual_seed(0)
    ref = TinyConvNoBN()
    per = F.cross_entropy(ref(retain.x), y, reduction="none")
    loss = per.mean() * w[y].mean() if faithful else (w[y] * per).mean()
    loss.backward()
    cfg = {
        "num_epochs": 1,
        "batch_size": 64,
        "learning_rate": 0.3,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "start_confuser_std": 0.0,
        "faithful": faithful,
    }
    torch.manual_seed(0)
    out = dict(CFW().unlearn(TinyConvNoBN(), d, cfg).model.named_parameters())
    for n, p in ref.named_parameters():
        assert torch.allclose(out[n], p.detach() - 0.3 * p.grad, atol=1e-6), n
    per = per.detach()
    assert not math.isclose(
        float(per.mean() * w[y].mean()), float((w[y] * per).mean()), rel_tol=1e-3
    )
