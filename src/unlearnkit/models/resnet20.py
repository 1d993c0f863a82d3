"""``resnet20``: the CIFAR ResNet-20 of He et al. 2016 (§4.2), as used in the SSSE paper.

Stem ``conv3x3(C→16) + BN + ReLU``; three stages of ``n = 3`` basic blocks with 16, 32, 64
channels (stride 2 at the first block of stages 2 and 3); global average pool; ``fc``.
Depth = 6n + 2 = 20. Shortcuts when the shape changes:

- option ``"A"`` (default, the paper's CIFAR choice): parameter-free identity that subsamples
  by 2 and zero-pads the new channels; 269,722 parameters for 10 classes on 3 channels;
- option ``"B"``: 1×1 stride-2 convolution + BatchNorm projection.

Conv weights use Kaiming-normal (fan_out, ReLU) initialisation; BatchNorm starts at (1, 0).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.models.registry import ModelOptions, register_model, require_image


class ResNet20Options(ModelOptions):
    shortcut: Literal["A", "B"] = Field("A", description="A: zero-pad identity; B: 1x1 conv")


class PadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with the extra channels zero-padded (no parameters)."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


class CifarBasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(stride, c_out - c_in)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """``conv1``/``bn1`` stem, ``layer1..layer3``, global average pool, ``fc``."""

    def __init__(self, in_channels: int, num_outputs: int, shortcut: str, blocks: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c = 16
        stages = []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            layer = []
            for b in range(blocks):
                layer.append(CifarBasicBlock(c, width, stride if b == 0 else 1, shortcut))
                c = width
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model(
    "resnet20",
    options=ResNet20Options,
    check=require_image(8, "resnet20"),
    description="CIFAR ResNet-20 (He et al. 2016; 3x3 basic blocks, 16/32/64 ch, BatchNorm)",
    inputs="(C, H, W) with H, W >= 8, e.g. 3x32x32",
)
def build_resnet20(
    input_shape: tuple[int, ...], num_outputs: int, opts: ResNet20Options
) -> nn.Module:
    return ResNet20(input_shape[0], num_outputs, opts.shortcut)
