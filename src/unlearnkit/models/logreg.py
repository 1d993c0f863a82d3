"""``logreg``: multinomial logistic regression, ``z = W · vec(x) + b``.

With the ``multiclass`` loss this is softmax regression (convex in ``(W, b)``). Works for any
input shape (inputs are flattened).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.models.registry import ModelOptions, any_shape, flat_dim, register_model


class LogRegOptions(ModelOptions):
    """No options."""


class LogisticRegression(nn.Module):
    """Flatten, then ``fc = Linear(d, k)`` with bias."""

    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@register_model(
    "logreg",
    options=LogRegOptions,
    check=any_shape,
    description="multinomial logistic regression (linear layer with bias)",
    inputs="any shape (flattened)",
    convex=True,
)
def build_logreg(input_shape: tuple[int, ...], num_outputs: int, opts: LogRegOptions) -> nn.Module:
    return LogisticRegression(flat_dim(input_shape), num_outputs)
