"""``resnet18``: torchvision's ``resnet18`` layout, written here (torchvision is not a dependency).

Same structure and parameter names as ``torchvision.models.resnet18(num_classes=k)`` so a
torchvision state_dict loads unchanged: ``conv1`` (7×7, stride 2) ``bn1`` ``relu`` ``maxpool``
(3×3, stride 2), ``layer1..layer4`` of two BasicBlocks each (64, 128, 256, 512 channels; block
``downsample`` = Sequential(1×1 conv, BN) where the shape changes), ``avgpool`` (adaptive 1×1),
``fc``. He et al. 2016, Table 1. Deep Unlearn uses it unmodified, ImageNet stem included, even on
32×32 inputs. 11,689,512 parameters for 1000 classes on 3 channels.

Initialisation follows torchvision's: Kaiming-normal (fan_out, ReLU) conv weights, BatchNorm
(1, 0), PyTorch's default Linear init; ``zero_init_residual`` zeroes each block's last BN scale.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from unlearnkit.models.registry import ModelOptions, register_model, require_image


class ResNet18Options(ModelOptions):
    zero_init_residual: bool = Field(False, description="zero the last BN weight of each block")


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision-compatible ResNet-18."""

    def __init__(self, in_channels: int, num_outputs: int, zero_init_residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c = 64
        layers = []
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(c, width, stride), BasicBlock(width, width, 1)))
            c = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    "resnet18",
    options=ResNet18Options,
    check=require_image(16, "resnet18"),
    description="torchvision ResNet-18 layout (ImageNet stem), BatchNorm; Deep Unlearn's CNN",
    inputs="(C, H, W) with H, W >= 16, e.g. 3x32x32 or 3x224x224",
)
def build_resnet18(
    input_shape: tuple[int, ...], num_outputs: int, opts: ResNet18Options
) -> nn.Module:
    return ResNet18(input_shape[0], num_outputs, opts.zero_init_residual)
