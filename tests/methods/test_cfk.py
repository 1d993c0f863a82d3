"""CF-k: only the last k blocks + classifier train, in eval mode, with an L2 anchor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import TinyMLP, changed, data, model, one_thread, state  # noqa: F401
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.cfk import CFk
from unlearnkit.methods.toolkit.layout import model_layout


@pytest.mark.parametrize(
    ("k", "trained"), [(0, {"fc"}), (1, {"layer2", "fc"}), (10, {"layer1", "layer2", "fc"})]
)
def test_only_last_k_blocks_and_classifier_change(k: int, trained: set[str]) -> None:
    m = model()
    before = state(m)
    cfg = {"num_blocks": k, "num_epochs": 2, "batch_size": 8, "learning_rate": 0.1}
    out = CFk().unlearn(m, data(), cfg).model
    diff = changed(before, out)
    params = {n for n, _ in m.named_parameters()}
    # eval mode: no buffer moves; frozen parameters are bit-identical
    assert diff <= params
    assert {n.split(".")[0] for n in diff} == trained
    assert all(n in diff for n in params if n.split(".")[0] in trained)


def test_two_steps_match_hand_computed_anchor_loss() -> None:
    """θ1 = θ0 − lr∇CE(θ0);  θ2 = θ1 − lr(∇CE(θ1) + λ(θ1 − θ0)), eval mode, layer2 + fc only."""
    d = data()
    lr, lam = 0.2, 0.7
    cfg = {
        "num_blocks": 1,
        "num_epochs": 2,
        "batch_size": 64,
        "learning_rate": lr,
        "sgda_weight_decay": lam,
        "sgda_decay_rate": 0.5,
    }
    ref = model().eval()
    names = [n for n, _ in ref.named_parameters() if n.startswith(("layer2", "fc"))]
    params = dict(ref.named_parameters())
    theta0 = {n: params[n].detach().clone() for n in names}
    for _ in range(2):  # E=2: milestones [1, 1, 1], no decay at e = 0, 1
        ref.zero_grad()
        loss = F.cross_entropy(ref(d.retain.x), d.retain.y)
        loss = loss + 0.5 * lam * sum(((params[n] - theta0[n]) ** 2).sum() for n in names)
        loss.backward()
        with torch.no_grad():
            for n in names:
                params[n] -= lr * params[n].grad
    out = dict(CFk().unlearn(model(), d, cfg).model.named_parameters())
    for n in params:
        assert torch.allclose(out[n], params[n], atol=1e-6), n


def test_step_decay_applies_from_the_milestones() -> None:
    """E=3 (milestones [1, 2, 2]): lr·r at e=2. Zero λ, one batch: compare with hand SGD."""
    d = data()
    cfg = {
        "num_blocks": 0,
        "num_epochs": 3,
        "batch_size": 64,
        "learning_rate": 0.3,
        "sgda_weight_decay": 0.0,
        "sgda_decay_rate": 0.1,
    }
    ref = model().eval()
    for lr in (0.3, 0.3, 0.03):
        ref.zero_grad()
        F.cross_entropy(ref(d.retain.x), d.retain.y).backward()
        with torch.no_grad():
            for p in ref.fc.parameters():
                p -= lr * p.grad
    out = CFk().unlearn(model(), d, cfg).model
    assert torch.allclose(out.fc.weight, ref.fc.weight, atol=1e-6)


def test_layouts() -> None:
    lay = model_layout(model())
    assert lay.kind == "resnet"
    assert [n for n, _ in lay.blocks] == ["layer1", "layer2"]
    assert [n for n, _ in lay.stem] == ["conv1", "bn1"]
    assert lay.classifier[0] == "fc"
    assert [n for n, _ in lay.last_blocks(5)] == ["layer1", "layer2"]
    mlp = model_layout(TinyMLP())
    assert (mlp.kind, [n for n, _ in mlp.blocks], mlp.stem) == ("generic", ["body"], ())

    class ViTLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 4, 2)
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(4)])
            self.head = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 3))

    vit = model_layout(ViTLike())
    assert vit.kind == "tinyvit"
    assert [n for n, _ in vit.blocks] == ["layers.1", "layers.2", "layers.3"]
    assert [n for n, _ in vit.stem] == ["patch_embed", "layers.0"]
    assert vit.classifier[0] == "head"
    with pytest.raises(UnsupportedError):  # no Linear layer: no classifier head
        model_layout(nn.Sequential(nn.Conv2d(2, 2, 1)))
    # any head name: the last Linear, or the one named; its top-level holder is the classifier
    seq = model_layout(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)))
    assert seq.classifier[0] == "2" and [n for n, _ in seq.blocks] == ["0"]
    named = model_layout(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 5)), head="0")
    assert named.classifier[0] == "0" and [n for n, _ in named.blocks] == ["2"]
