"""``linear``: the SSSE paper's multi-attribute logistic regression, with no bias.

``z = W · vec(x)``, ``W ∈ R^{A×d}``, no bias (SSSE §5.1: "an ℓ2-regularized linear
multi-attribute classifier, with no bias"). Trained with the ``multilabel`` loss, the A rows of
``W`` are A independent logistic regressions and the Fisher is block diagonal (one d×d block per
attribute). Works for any input shape (inputs are flattened).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.models.registry import ModelOptions, any_shape, flat_dim, register_model


class LinearOptions(ModelOptions):
    """No options."""


class LinearNoBias(nn.Module):
    """Flatten, then ``fc = Linear(d, k, bias=False)``."""

    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_outputs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@register_model(
    "linear",
    options=LinearOptions,
    check=any_shape,
    description="multi-attribute logistic regression without bias (SSSE paper)",
    inputs="any shape (flattened)",
    convex=True,
)
def build_linear(input_shape: tuple[int, ...], num_outputs: int, opts: LinearOptions) -> nn.Module:
    return LinearNoBias(flat_dim(input_shape), num_outputs)
