"""Small synthetic problems for the SSSE state tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset


class TinyMLP(nn.Module):
    def __init__(self, d_in: int = 5, hidden: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh())
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


@pytest.fixture
def blobs() -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    n = 60
    y = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=g) + torch.nn.functional.one_hot(y, 5).float() * 2
    ids = torch.arange(1000, 1000 + n, dtype=torch.int64)
    return ArrayDataset("blobs", x, y, ids, "multiclass", ("a", "b", "c"))


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return TinyMLP().eval()
