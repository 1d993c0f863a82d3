"""EU-k: re-initialise the last k blocks + classifier, train them on augmented retain."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import changed, data, model, one_thread, state  # noqa: F401

from unlearnkit.methods.euk import EUk
from unlearnkit.training.augmentation import AUGMENTATIONS, auto_pipeline, hflip, random_crop

CALLS: list[torch.Size] = []


@AUGMENTATIONS.register("test-euk-spy")
def _spy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    CALLS.append(x.shape)
    return x


@pytest.mark.parametrize("faithful", [False, True])
def test_zero_epochs_reinitialises_exactly_last_block_and_head(faithful: bool) -> None:
    m = model()
    with torch.no_grad():  # make O's BN statistics recognisable
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.fill_(0.3)
                mod.running_var.fill_(2.0)
    before = state(m)
    out = EUk().unlearn(m, data(), {"num_epochs": 0, "num_blocks": 1, "faithful": faithful}).model
    sd = out.state_dict()
    for k, v in before.items():
        if k.startswith(("conv1", "bn1", "layer1")):
            assert torch.equal(sd[k], v), k
    for blk in out.layer2:
        bound = math.sqrt(2) * math.sqrt(3 / (4 * 9))  # kaiming_uniform, fan_out = 4·3·3
        assert blk.conv.weight.abs().max() <= bound
        assert torch.equal(blk.bn.weight, torch.ones(4)) and torch.equal(
            blk.bn.bias, torch.zeros(4)
        )
        stats = (blk.bn.running_mean, blk.bn.running_var)
        want = (
            (torch.full((4,), 0.3), torch.full((4,), 2.0))
            if faithful
            else (torch.zeros(4), torch.ones(4))
        )
        assert torch.equal(stats[0], want[0]) and torch.equal(stats[1], want[1])
    assert out.fc.weight.abs().max() <= math.sqrt(6 / (4 + 3))  # xavier_uniform
    assert torch.equal(out.fc.bias, torch.zeros(3))
    diff = changed(before, out)
    assert {k for k in diff if k.endswith("weight")} >= {
        "fc.weight",
        "layer2.0.conv.weight",
        "layer2.1.conv.weight",
    }


def test_training_uses_augmented_retain_batches_and_frozen_front() -> None:
    d = data()
    CALLS.clear()
    m = model()
    before = state(m)
    cfg = {
        "num_epochs": 2,
        "batch_size": 10,
        "augmentation": ("test-euk-spy",),
        "learning_rate": 0.1,
    }
    out = EUk().unlearn(m, d, cfg).model
    batches = [torch.Size([10, 3, 6, 6]), torch.Size([10, 3, 6, 6]), torch.Size([4, 3, 6, 6])]
    assert CALLS == [torch.Size([1, 3, 6, 6])] + batches * 2  # a pre-flight check, then 2 epochs
    diff = changed(before, out)
    assert not any(k.startswith(("conv1", "bn1", "layer1")) for k in diff)
    # corrected mode: re-initialised BN layers re-estimate their statistics on retain
    assert not torch.equal(out.layer2[0].bn.running_mean, torch.zeros(4))
    a = EUk().unlearn(m, d, {**cfg, "augmentation": ("crop4", "hflip")}).model
    b = EUk().unlearn(m, d, {**cfg, "augmentation": ()}).model
    assert not torch.equal(a.fc.weight, b.fc.weight)


def test_faithful_mode_trains_in_eval_mode() -> None:
    m = model()
    out = EUk().unlearn(m, data(), {"num_epochs": 1, "batch_size": 8, "faithful": True}).model
    assert torch.equal(out.layer2[0].bn.running_mean, m.layer2[0].bn.running_mean)


def test_crop_is_a_window_of_the_zero_padded_image_and_flip_mirrors() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 5, 5)
    out = random_crop(x, g, padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        hits = [
            (a, b)
            for a in range(5)
            for b in range(5)
            if torch.equal(out[i], padded[i, :, a : a + 5, b : b + 5])
        ]
        assert hits, i
    offsets = {tuple(out[i].flatten()[:3].tolist()) for i in range(16)}
    assert len(offsets) > 1
    flipped = hflip(x, torch.Generator().manual_seed(1))
    is_flip = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(16)]
    is_same = [torch.equal(flipped[i], x[i]) for i in range(16)]
    assert all(a or b for a, b in zip(is_flip, is_same, strict=True))
    assert 0 < sum(is_flip) < 16


def test_auto_augmentation() -> None:
    assert auto_pipeline(torch.zeros(1, 3, 4, 4), {}) == ("crop4", "hflip")
    assert auto_pipeline(torch.zeros(1, 5), {}) == ()
    assert auto_pipeline(torch.zeros(1, 3, 4, 4), {"augment": ["hflip"]}) == ("hflip",)
    with pytest.raises(ValueError):
        EUk.Config(augmentation=("nope",))
    with pytest.raises(ValueError):
        EUk.Config(augmentation="crop_flip")
