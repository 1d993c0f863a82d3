"""``cnn``: a small plain convolutional network for images (C, H, W) and signals (C, L).

Per stage: ``Conv(k×k, padding k//2) -> [BatchNorm, off by default] -> ReLU -> MaxPool(2)``,
then an adaptive average pool to ``pool_output`` cells per spatial axis, flatten, and the
classifier ``fc``. 2-D inputs use Conv2d, 1-D inputs (e.g. MNIST-1D, shape (1, 40)) use Conv1d.
With the defaults (channels 32, 64; pool_output 4) it has about 30k parameters on 28×28 or 32×32
images, so a few epochs on thousands of samples take seconds on a CPU. BatchNorm is off by
default because it couples the samples of a batch, which per-sample gradients must avoid.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.models.registry import ModelOptions, register_model

_LAYERS: dict[int, tuple[type[nn.Module], type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


class CNNOptions(ModelOptions):
    channels: tuple[int, ...] = Field((32, 64), min_length=1, description="channels per stage")
    kernel_size: int = Field(3, ge=1, description="odd kernel size of every conv")
    batchnorm: bool = Field(False, description="BatchNorm after every conv")
    pool_output: int = Field(4, ge=1, description="adaptive-pool cells per spatial axis")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {v}")
        return v


class SmallCNN(nn.Module):
    """``features`` (conv stages) -> ``pool`` (adaptive average) -> flatten -> ``fc``."""

    def __init__(
        self, in_channels: int, spatial_dims: int, num_outputs: int, opts: CNNOptions
    ) -> None:
        super().__init__()
        conv, bn, maxpool, adaptive = _LAYERS[spatial_dims]
        layers: list[nn.Module] = []
        c = in_channels
        for out in opts.channels:
            layers.append(conv(c, out, opts.kernel_size, padding=opts.kernel_size // 2))
            if opts.batchnorm:
                layers.append(bn(out))
            layers += [nn.ReLU(), maxpool(2)]
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = adaptive(opts.pool_output)
        self.fc = nn.Linear(c * opts.pool_output**spatial_dims, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _min_size(opts: CNNOptions) -> int:
    return 2 ** len(opts.channels)


def check_cnn_shape(shape: tuple[int, ...], opts: CNNOptions | None = None) -> None:
    """Accept (C, L) and (C, H, W) whose spatial sizes survive the max-pools."""
    opts = opts or CNNOptions()
    m = _min_size(opts)
    if len(shape) not in (2, 3) or min(shape[1:]) < m:
        raise UnsupportedError(
            f"cnn needs inputs (C, L) or (C, H, W) with every spatial size >= {m} "
            f"({len(opts.channels)} max-pools of 2); got {shape}. "
            "Reshape flat features to (1, d) or use 'mlp'."
        )


@register_model(
    "cnn",
    options=CNNOptions,
    check=check_cnn_shape,
    description="small conv net (conv-ReLU-maxpool stages, adaptive pool, fc); Conv1d for (C, L)",
    inputs="(C, L) or (C, H, W), spatial sizes >= 4 with 2 stages",
)
def build_cnn(input_shape: tuple[int, ...], num_outputs: int, opts: CNNOptions) -> nn.Module:
    check_cnn_shape(input_shape, opts)
    return SmallCNN(input_shape[0], len(input_shape) - 1, num_outputs, opts)
