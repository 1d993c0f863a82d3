"""``mlp``: a fully connected ReLU network, ``fc ∘ (ReLU ∘ Linear)^depth ∘ flatten``.

Defaults: 2 hidden layers of width 256. Works for any input shape (inputs are flattened).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from unlearnkit.models.registry import ModelOptions, any_shape, flat_dim, register_model


class MLPOptions(ModelOptions):
    width: int = Field(256, ge=1, description="units per hidden layer")
    depth: int = Field(2, ge=0, description="number of hidden layers (0 = logistic regression)")


class MLP(nn.Module):
    """``body`` = [Linear, ReLU] × depth; ``fc`` = the output Linear."""

    def __init__(self, in_features: int, num_outputs: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x.flatten(1)))


@register_model(
    "mlp",
    options=MLPOptions,
    check=any_shape,
    description="fully connected ReLU network (default 2 hidden layers of 256)",
    inputs="any shape (flattened)",
)
def build_mlp(input_shape: tuple[int, ...], num_outputs: int, opts: MLPOptions) -> nn.Module:
    return MLP(flat_dim(input_shape), num_outputs, opts.width, opts.depth)
