"""ResNet-18 (torchvision layout) and ResNet-20 (CIFAR): sizes, names, shortcuts, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unlearnkit.models import build_model, count_parameters
from unlearnkit.models.resnet20 import PadShortcut


@pytest.fixture(scope="module")
def resnet18_imagenet() -> nn.Module:
    return build_model("resnet18", (3, 224, 224), 1000, seed=0)


def test_resnet18_matches_torchvision_size_and_names(resnet18_imagenet: nn.Module) -> None:
    m = resnet18_imagenet
    assert count_parameters(m) == 11_689_512  # torchvision.models.resnet18().parameters()
    sd = m.state_dict()
    # torchvision's state_dict: 62 parameter tensors + 20 BatchNorms x 3 buffers = 122 entries
    assert len(list(m.parameters())) == 62 and len(sd) == 122
    shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_mean": (128,),
        "layer3.1.bn2.weight": (256,),
        "layer4.0.downsample.1.bias": (512,),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
        "fc.weight": (1000, 512),
        "fc.bias": (1000,),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    assert "layer2.0.downsample.1.num_batches_tracked" in sd
    assert not any(k.startswith("layer1.0.downsample") for k in sd)


def test_resnet18_init(resnet18_imagenet: nn.Module) -> None:
    w = resnet18_imagenet.layer4[1].conv2.weight
    # Kaiming normal, fan_out mode: std = sqrt(2 / (out_channels * 3 * 3))
    assert float(w.detach().std()) == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert torch.all(resnet18_imagenet.bn1.weight == 1) and torch.all(
        resnet18_imagenet.bn1.bias == 0
    )
    z = build_model("resnet18", (3, 32, 32), 10, seed=0, zero_init_residual=True)
    assert torch.all(z.layer3[0].bn2.weight == 0) and torch.all(z.layer3[0].bn1.weight == 1)


def test_resnet18_forward_on_cifar_and_grey() -> None:
    m = build_model("resnet18", (1, 28, 28), 10, seed=0).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet20_parameter_counts() -> None:
    a = build_model("resnet20", (3, 32, 32), 10, seed=0)
    stem = 3 * 16 * 9 + 2 * 16
    stage1 = 3 * 2 * (16 * 16 * 9 + 2 * 16)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 4 * 32) + 2 * 2 * (32 * 32 * 9 + 2 * 32)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 4 * 64) + 2 * 2 * (64 * 64 * 9 + 2 * 64)
    fc = 64 * 10 + 10
    assert count_parameters(a) == stem + stage1 + stage2 + stage3 + fc == 269_722
    b = build_model("resnet20", (3, 32, 32), 10, seed=0, shortcut="B")
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(b) == 269_722 + projections
    n_conv = sum(isinstance(m, nn.Conv2d) for m in a.modules())
    assert n_conv + 1 == 20  # 19 convolutions + fc: depth 6n + 2 with n = 3


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(stride=2, extra_channels=16)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)


def test_resnet20_trains_a_step_with_batchnorm() -> None:
    m = build_model("resnet20", (3, 32, 32), 10, seed=0)
    out = m(torch.randn(4, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (4, 10) and m.conv1.weight.grad is not None
    assert int(m.bn1.num_batches_tracked) == 1
